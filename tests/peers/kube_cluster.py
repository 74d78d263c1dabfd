"""tests/peers/kube_cluster.py — a real Kubernetes API on loopback for the tests: etcd,
kube-apiserver and kube-controller-manager (namespace and garbage-collector controllers only),
started the way controller-runtime's envtest starts its control plane, from the binaries
tests/peers/kube.sh builds.

    from kube_cluster import KubeCluster, kube_cluster   # kube_cluster: a session fixture
    with KubeCluster() as k:           # fails loudly (PeerError) if anything cannot start
        k.url                          # https://127.0.0.1:PORT
        k.kubeconfig                   # path of an admin kubeconfig (CA data, bearer token)
        k.ca_pem, k.token              # the same, for a driver's host/CA/token options
        k.client_cert(dir)             # a client certificate + key in system:masters
        k.kubectl("get", "ns", "-o", "json")        # CompletedProcess, check=True
        k.kubectl_json("get", "configmap", "x", "-n", "default")

What is generated per cluster, in a private temporary folder:
  - a CA and a serving certificate for 127.0.0.1/localhost signed by it (ECDSA P-256: fast to
    make), so clients verify TLS against the CA as they would against a real cluster;
  - a service-account signing key pair;
  - a static token file with one user, `admin`, in group system:masters.

No kubelet runs, so nothing is scheduled and a Deployment never becomes Available on its own.
The namespace controller runs so a deleted Namespace really goes away.

As a program it starts a cluster, prints its kubeconfig path, and runs until interrupted:
    python tests/peers/kube_cluster.py
"""
import json
import os
import pathlib
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = pathlib.Path(__file__).resolve().parent


class PeerError(RuntimeError):
    """The peer could not be built or started: tests that need it must fail, never skip."""


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def kube_bin_dir():
    """The directory with kube-apiserver, etcd, kubectl, helm: $MLE_KUBE_BIN, else what
    tests/peers/kube.sh prints (it builds them on a cold machine, which takes minutes)."""
    env = os.environ.get("MLE_KUBE_BIN")
    if env:
        return pathlib.Path(env)
    r = subprocess.run(["bash", str(HERE / "kube.sh")], capture_output=True, text=True)
    if r.returncode != 0:
        raise PeerError("the Kubernetes peer (tests/peers/kube.sh) could not be installed:\n"
                        + r.stderr[-6000:])
    return pathlib.Path(r.stdout.strip().splitlines()[-1])


def _die_with_parent():
    """In the child before exec: SIGKILL it when the test process dies, however it dies
    (kill -9 included), so no control plane outlives its tests. (SIGKILL: a kube-apiserver
    whose etcd went first hangs in its graceful shutdown; the data is thrown away anyway.)
    Best effort: some sandbox kernels accept PR_SET_PDEATHSIG but never send the signal, so
    stop() also runs at interpreter exit (atexit) besides the fixture's teardown."""
    try:
        import ctypes
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:  # not Linux: the fixture's teardown still stops it
        pass


def _openssl(*args, cwd):
    r = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True)
    if r.returncode != 0:
        raise PeerError(f"openssl {' '.join(args)} failed:\n{r.stderr}")


def make_certs(d):
    """CA, serving cert (SAN 127.0.0.1, localhost), service-account key pair, in folder d."""
    if not shutil.which("openssl"):
        raise PeerError("openssl not found: the Kubernetes peer needs it to make certificates "
                        "(apt-get install openssl)")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    _openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "2",
             "-subj", "/CN=mlengine-test-ca", "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=d)
    _openssl("req", *ec, "-keyout", "serving.key", "-out", "serving.csr",
             "-subj", "/CN=kube-apiserver", cwd=d)
    (d / "serving.ext").write_text(
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
        "extendedKeyUsage=serverAuth\nkeyUsage=critical,digitalSignature\n")
    _openssl("x509", "-req", "-in", "serving.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
             "-CAcreateserial", "-out", "serving.crt", "-days", "2", "-extfile", "serving.ext",
             cwd=d)
    _openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "sa.key", cwd=d)
    _openssl("ec", "-in", "sa.key", "-pubout", "-out", "sa.pub", cwd=d)


class KubeCluster:
    def __init__(self, bin_dir=None, start_timeout=90, controllers=True):
        self.bin = pathlib.Path(bin_dir) if bin_dir else None
        self.start_timeout = start_timeout
        self.controllers = controllers
        self.dir = None
        self.procs = {}
        self.logs = {}
        self.url = None
        self.token = secrets.token_hex(16)
        self.kubeconfig = None
        self.ca_pem = None

    # -------------------------------------------------------------- start / stop
    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def _spawn(self, name, argv):
        log = open(self.dir / f"{name}.log", "w")
        self.logs[name] = self.dir / f"{name}.log"
        try:
            self.procs[name] = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                                stdin=subprocess.DEVNULL,
                                                start_new_session=True,
                                                preexec_fn=_die_with_parent)
        except OSError as e:
            raise PeerError(f"{name} could not be started ({argv[0]}): {e}") from e
        finally:
            log.close()

    def _log_tail(self, name, n=4000):
        try:
            return self.logs[name].read_text()[-n:]
        except OSError:
            return "(no log)"

    def _check_alive(self):
        for name, p in self.procs.items():
            if p.poll() is not None:
                raise PeerError(f"{name} exited with {p.returncode} while starting:\n"
                                + self._log_tail(name))

    def start(self):
        import atexit
        atexit.register(self.stop)
        try:
            return self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self):
        if self.bin is None:
            self.bin = kube_bin_dir()
        for b in ("etcd", "kube-apiserver", "kubectl"):
            if not (self.bin / b).exists():
                raise PeerError(f"{self.bin / b} is missing: run tests/peers/kube.sh")
        self.dir = pathlib.Path(tempfile.mkdtemp(prefix="mle-kube-"))
        make_certs(self.dir)
        self.ca_pem = (self.dir / "ca.crt").read_text()

        etcd_port, etcd_peer, api_port = free_port(), free_port(), free_port()
        etcd_url = f"http://127.0.0.1:{etcd_port}"
        self._spawn("etcd", [
            str(self.bin / "etcd"),
            "--data-dir", str(self.dir / "etcd"),
            "--listen-client-urls", etcd_url, "--advertise-client-urls", etcd_url,
            "--listen-peer-urls", f"http://127.0.0.1:{etcd_peer}",
            "--initial-advertise-peer-urls", f"http://127.0.0.1:{etcd_peer}",
            "--initial-cluster", f"default=http://127.0.0.1:{etcd_peer}",
            # A test cluster's data is thrown away: no fsync (as envtest does), no metrics.
            "--unsafe-no-fsync", "--log-level", "warn",
        ])
        self._wait(lambda: _http_ok(etcd_url + "/health"), "etcd", etcd_url + "/health")

        (self.dir / "tokens.csv").write_text(f'{self.token},admin,admin-uid,"system:masters"\n')
        self.url = f"https://127.0.0.1:{api_port}"
        self._spawn("kube-apiserver", [
            str(self.bin / "kube-apiserver"),
            "--etcd-servers", etcd_url,
            "--bind-address", "127.0.0.1", "--advertise-address", "127.0.0.1",
            "--secure-port", str(api_port),
            "--tls-cert-file", str(self.dir / "serving.crt"),
            "--tls-private-key-file", str(self.dir / "serving.key"),
            "--client-ca-file", str(self.dir / "ca.crt"),
            "--token-auth-file", str(self.dir / "tokens.csv"),
            "--service-account-issuer", self.url,
            "--service-account-key-file", str(self.dir / "sa.pub"),
            "--service-account-signing-key-file", str(self.dir / "sa.key"),
            "--service-cluster-ip-range", "10.0.0.0/24",
            "--authorization-mode", "RBAC",
            "--allow-privileged=true",
            # Start fast and do only what the tests use: no ServiceAccount admission (there is
            # no token controller), no API priority and fairness bootstrap, no endpoint
            # reconciler for the kubernetes service, and no OpenAPI/aggregation extras.
            "--disable-admission-plugins", "ServiceAccount",
            "--enable-priority-and-fairness=false",
            "--endpoint-reconciler-type", "none",
            "--profiling=false",
            "--v", "1",
        ])
        self._wait(self._ready, "kube-apiserver", self.url + "/readyz")

        self.kubeconfig = self.dir / "kubeconfig"
        self.kubeconfig.write_text(self.kubeconfig_text())
        if self.controllers:
            kcm = self.bin / "kube-controller-manager"
            if not kcm.exists():
                raise PeerError(f"{kcm} is missing: run tests/peers/kube.sh")
            self._spawn("kube-controller-manager", [
                str(kcm),
                "--kubeconfig", str(self.kubeconfig),
                "--controllers", "namespace,garbagecollector",
                "--leader-elect=false",
                "--secure-port", "0",
                "--v", "1",
            ])
            time.sleep(0.2)
            self._check_alive()
        return self

    def _ready(self):
        return _http_ok(self.url + "/readyz", ca=str(self.dir / "ca.crt"), token=self.token)

    def _wait(self, probe, name, what):
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            self._check_alive()
            if probe():
                return
            time.sleep(0.1)
        raise PeerError(f"{name} did not answer {what} within {self.start_timeout}s:\n"
                        + self._log_tail(name))

    def stop(self):
        for name in ("kube-controller-manager", "kube-apiserver", "etcd"):
            p = self.procs.get(name)
            if not p or p.poll() is not None:
                continue
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.procs.clear()
        if self.dir and not os.environ.get("MLE_KUBE_KEEP"):
            shutil.rmtree(self.dir, ignore_errors=True)

    # -------------------------------------------------------------- clients
    def kubeconfig_text(self, context="test"):
        import base64
        ca = base64.b64encode(self.ca_pem.encode()).decode()
        return json.dumps({
            "apiVersion": "v1", "kind": "Config", "current-context": context,
            "clusters": [{"name": "test", "cluster": {"server": self.url,
                                                      "certificate-authority-data": ca}}],
            "users": [{"name": "admin", "user": {"token": self.token}}],
            "contexts": [{"name": context, "context": {"cluster": "test", "user": "admin"}}],
        }, indent=1)

    def client_cert(self, out_dir, user="cert-admin", group="system:masters"):
        """A client certificate (and key) the API server accepts, signed by the cluster CA,
        written to out_dir as client.crt / client.key. Returns their paths."""
        out_dir = pathlib.Path(out_dir)
        ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        _openssl("req", *ec, "-keyout", str(out_dir / "client.key"),
                 "-out", str(out_dir / "client.csr"), "-subj", f"/O={group}/CN={user}",
                 cwd=self.dir)
        (out_dir / "client.ext").write_text(
            "extendedKeyUsage=clientAuth\nkeyUsage=critical,digitalSignature\n")
        _openssl("x509", "-req", "-in", str(out_dir / "client.csr"), "-CA", "ca.crt",
                 "-CAkey", "ca.key", "-CAcreateserial", "-out", str(out_dir / "client.crt"),
                 "-days", "2", "-extfile", str(out_dir / "client.ext"), cwd=self.dir)
        return out_dir / "client.crt", out_dir / "client.key"

    def kubectl(self, *args, check=True, input=None):
        r = subprocess.run([str(self.bin / "kubectl"), "--kubeconfig", str(self.kubeconfig),
                            *map(str, args)], capture_output=True, text=True, input=input,
                           timeout=60)
        if check and r.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(map(str, args))} failed "
                                 f"({r.returncode}):\n{r.stdout}\n{r.stderr}")
        return r

    def kubectl_json(self, *args):
        """`kubectl ARGS -o json`, decoded; for `get`, with metadata.managedFields."""
        extra = ["--show-managed-fields"] if args and args[0] == "get" else []
        return json.loads(self.kubectl(*args, *extra, "-o", "json").stdout)

    def exists(self, *args):
        """True when `kubectl get ARGS` finds the object."""
        r = self.kubectl("get", *args, "--ignore-not-found", "-o", "name", check=False)
        if r.returncode != 0:
            # The kind itself is gone (a deleted CRD): no object of it exists.
            if "the server doesn't have a resource type" in r.stderr:
                return False
            raise AssertionError(f"kubectl get {' '.join(args)}: {r.stderr}")
        return bool(r.stdout.strip())


def _http_ok(url, ca=None, token=None):
    ctx = None
    if url.startswith("https"):
        ctx = ssl.create_default_context(cafile=ca)
    req = urllib.request.Request(url)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=2, context=ctx) as r:
            return r.status == 200
    except Exception:
        return False


try:
    import pytest

    @pytest.fixture(scope="session")
    def kube_cluster():
        """One cluster for the session; a peer that cannot start fails the tests using it."""
        with KubeCluster() as k:
            yield k
except ImportError:  # used as a program without pytest
    pass


if __name__ == "__main__":
    with KubeCluster() as k:
        print(k.kubeconfig, flush=True)
        try:
            signal.pause()
        except KeyboardInterrupt:
            pass
