#!/usr/bin/env python3
"""http_peer.py — the real HTTP(S) server test_http.c talks to on loopback.

Binds 127.0.0.1 on a free port, prints the port on the first line of stdout, and serves
until its stdin closes (so it never outlives the test that started it). HTTP/1.1 with
keep-alive, one thread per connection.

  --tls CERT KEY      serve HTTPS with this certificate chain and key (PEM files)
  --client-ca CA      with --tls: require a client certificate signed by CA (mutual TLS)

Routes (any method):
  /echo...            200, JSON {method, path, headers (names lower-cased), body,
                      client_port}; response headers X-Mixed-Case and X-Multi (twice)
  /status/NNN         that status, body "status NNN"
  /slow?ms=N          sleeps N ms, then 200 "slow"
  /big?n=N            200 with N bytes of 'x'
"""
import argparse
import json
import os
import ssl
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):  # keep the test output clean
        pass

    def _reply(self, status, body, ctype="text/plain", extra=()):
        data = body.encode() if isinstance(body, str) else body
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        for name, value in extra:
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _handle(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else b""
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        if url.path.startswith("/echo"):
            doc = {
                "method": self.command,
                "path": self.path,
                "headers": {k.lower(): v for k, v in self.headers.items()},
                "body": body.decode("utf-8", "replace"),
                "client_port": self.client_address[1],
            }
            self._reply(200, json.dumps(doc), "application/json",
                        [("X-Mixed-Case", "Yes"), ("X-Multi", "a"), ("X-Multi", "b")])
        elif url.path.startswith("/status/"):
            code = int(url.path.split("/")[2])
            self._reply(code, "status %d" % code)
        elif url.path == "/slow":
            time.sleep(int(query.get("ms", ["1000"])[0]) / 1000.0)
            self._reply(200, "slow")
        elif url.path == "/big":
            self._reply(200, b"x" * int(query.get("n", ["0"])[0]))
        else:
            self._reply(404, "no route " + url.path)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _handle


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tls", nargs=2, metavar=("CERT", "KEY"))
    ap.add_argument("--client-ca")
    args = ap.parse_args()

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.daemon_threads = True
    if args.tls:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(args.tls[0], args.tls[1])
        if args.client_ca:
            ctx.verify_mode = ssl.CERT_REQUIRED
            ctx.load_verify_locations(args.client_ca)
        srv.socket = ctx.wrap_socket(srv.socket, server_side=True)

    def watch_stdin():
        sys.stdin.read()
        os._exit(0)

    threading.Thread(target=watch_stdin, daemon=True).start()
    print(srv.server_address[1], flush=True)
    srv.serve_forever()


if __name__ == "__main__":
    main()
