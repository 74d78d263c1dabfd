"""tests/peers/moto_server.py — the AWS peer on loopback for the tests: moto server on a free
port, and a throttling proxy in front of it.

Run with the python of tests/peers/moto.sh's venv (moto, boto3 installed there).

    from moto_server import MotoServer, ThrottleProxy
    with MotoServer() as moto:            # fails loudly if moto cannot start
        moto.url                          # http://127.0.0.1:PORT
        moto.reset()                      # forget every resource
        with ThrottleProxy(moto.url, share=0.3) as proxy:
            proxy.url                     # answers 429/503 to ~30% of requests, forwards the rest

As a program it starts moto, prints its URL, and runs until interrupted:
    python tests/peers/moto_server.py [--port N]
"""
import http.client
import http.server
import json
import os
import random
import socket
import subprocess
import sys
import threading
import time
import urllib.request


class PeerError(RuntimeError):
    """The peer could not start: tests that need it must fail, never skip."""


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MotoServer:
    """moto server in a child process on 127.0.0.1:<free port>."""

    def __init__(self, port=None, start_timeout=60):
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.start_timeout = start_timeout
        self.proc = None
        self.log_path = None

    def start(self):
        import tempfile
        fd, self.log_path = tempfile.mkstemp(prefix="moto-", suffix=".log")
        log = os.fdopen(fd, "w")
        env = dict(os.environ)
        # moto must not try to reach the internet or docker for anything we use.
        env.setdefault("MOTO_DOCKER_NETWORK_MODE", "none")
        # AWS-managed policies (AmazonEKSClusterPolicy, ...) exist only when asked for.
        env.setdefault("MOTO_IAM_LOAD_MANAGED_POLICIES", "true")
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
                stdout=log, stderr=subprocess.STDOUT, env=env)
        except OSError as e:
            raise PeerError(f"moto server could not be started with {sys.executable}: {e}; "
                            f"run tests/peers/moto.sh and use its python") from e
        deadline = time.monotonic() + self.start_timeout
        last = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise PeerError(f"moto server exited with {self.proc.returncode} while starting:\n"
                                + open(self.log_path).read()[-4000:])
            try:
                with urllib.request.urlopen(self.url + "/moto-api/data.json", timeout=2) as r:
                    # Answered by our child, not by a stranger already on the port.
                    if r.status == 200 and self.proc.poll() is None:
                        return self
            except Exception as e:  # not up yet
                last = e
            time.sleep(0.2)
        self.stop()
        raise PeerError(f"moto server did not answer on {self.url} within "
                        f"{self.start_timeout}s (last error: {last}):\n"
                        + open(self.log_path).read()[-4000:])

    def reset(self):
        req = urllib.request.Request(self.url + "/moto-api/reset", method="POST", data=b"")
        with urllib.request.urlopen(req, timeout=10) as r:
            r.read()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def _throttle_body(content_type, status):
    """An error body in the shape the request's protocol expects."""
    if status == 503:
        return "text/xml", (b"<ErrorResponse><Error><Type>Receiver</Type><Code>ServiceUnavailable</Code>"
                            b"<Message>Service is unavailable (test proxy)</Message></Error>"
                            b"<RequestId>proxy</RequestId></ErrorResponse>")
    if content_type and "json" in content_type:
        return "application/x-amz-json-1.1", json.dumps(
            {"__type": "ThrottlingException", "message": "Rate exceeded (test proxy)"}).encode()
    return "text/xml", (b"<ErrorResponse><Error><Type>Sender</Type><Code>Throttling</Code>"
                        b"<Message>Rate exceeded (test proxy)</Message></Error>"
                        b"<RequestId>proxy</RequestId></ErrorResponse>")


class ThrottleProxy:
    """An HTTP proxy on loopback that answers 429 or 503 to a share of requests BEFORE they
    reach moto (as AWS throttles: the request is refused, not executed) and forwards the rest
    unchanged (the Host header too, so SigV4 signatures stay valid).

    A request refused once is let through when it comes again (same method, path and body),
    so every retry gets further than the one before: the test proves that retries converge,
    not that the retry budget outlasts a run of bad luck."""

    def __init__(self, target_url, share=0.3, seed=20240501, port=None):
        self.target = target_url.split("://", 1)[1]
        self.share = share
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.throttled = 0
        self.forwarded = 0
        self.refused = set()  # requests refused last time they came
        self.server = None
        self.thread = None

    def _decide(self, key):
        with self.lock:
            if key in self.refused:
                self.refused.discard(key)
            elif self.rng.random() < self.share:
                self.refused.add(key)
                self.throttled += 1
                return 429 if self.rng.random() < 0.5 else 503
            self.forwarded += 1
            return 0

    def start(self):
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def _handle(self):
                # One request per connection: a throttled answer never leaves a kept-alive
                # connection out of step with the client.
                self.close_connection = True
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else b""
                status = proxy._decide((self.command, self.path, body))
                if status:
                    ctype, payload = _throttle_body(self.headers.get("Content-Type"), status)
                    self.send_response(status)
                    self.send_header("Connection", "close")
                    self.send_header("Content-Type", ctype)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                conn = http.client.HTTPConnection(proxy.target, timeout=60)
                headers = {k: v for k, v in self.headers.items()}
                conn.request(self.command, self.path, body=body if n or self.command in ("POST", "PUT") else None,
                             headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                self.send_response(resp.status)
                for k, v in resp.getheaders():
                    if k.lower() in ("transfer-encoding", "connection", "content-length"):
                        continue
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Connection", "close")
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)
                conn.close()

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = _handle

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return self

    def stop(self):
        if self.server:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


if __name__ == "__main__":
    import argparse
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=None)
    args = ap.parse_args()
    import signal
    # A SIGTERM ends the child too (the with block's exit runs).
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
    with MotoServer(port=args.port) as m:
        print(m.url, flush=True)
        try:
            while m.proc and m.proc.poll() is None:
                time.sleep(1)
        except KeyboardInterrupt:
            pass
