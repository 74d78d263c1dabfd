"""Fixtures for the kubernetes driver's tests: one real API server (etcd + kube-apiserver +
the namespace/GC controllers, tests/peers/kube_cluster.py) for the session, and per test a
folder with a stack and its state, driven through the built mlengine binary.

The cluster is shared, so every test names its objects after itself (the `names` fixture)
and a test's objects never meet another's.
"""
import json
import os
import pathlib
import re
import subprocess
import sys
import textwrap

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "peers"))

from kube_cluster import kube_cluster  # noqa: E402,F401  (the session fixture)


def binary():
    b = os.environ.get("MLENGINE") or str(ROOT / "build" / "core" / "mlengine")
    if not os.path.exists(b):
        raise RuntimeError(f"mlengine binary not found at {b}: build first (dev/build)")
    return b


class Stack:
    """A stack folder: write stack.lua, run mlengine commands against the test cluster."""

    def __init__(self, path, cluster):
        self.path = path
        self.cluster = cluster
        self.stack = path / "stack.lua"
        self.env = dict(os.environ)
        self.env.update({
            "MLENGINE_STATE_KEY": "22" * 32,
            "XDG_CONFIG_HOME": str(path / "config"),
            "HOME": str(path),
            # The driver's default connection: $KUBECONFIG.
            "KUBECONFIG": str(cluster.kubeconfig),
        })
        self.env.pop("MLENGINE_DRIVER_PATH", None)

    def write(self, text, name="stack.lua"):
        p = self.path / name
        p.write_text(textwrap.dedent(text))
        return p

    def run(self, *args, timeout=180, env=None):
        e = dict(self.env)
        if env:
            e.update(env)
        return subprocess.run([binary(), *map(str, args)], cwd=self.path, env=e,
                              capture_output=True, text=True, timeout=timeout)

    def popen(self, *args, env=None):
        e = dict(self.env)
        if env:
            e.update(env)
        return subprocess.Popen([binary(), *map(str, args)], cwd=self.path, env=e,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def ok(self, *args, **kw):
        r = self.run(*args, **kw)
        assert r.returncode == 0, (f"mlengine {' '.join(map(str, args))} failed "
                                   f"({r.returncode}):\n{r.stdout}\n{r.stderr}")
        return r

    def apply(self, *extra):
        return self.ok("apply", "stack.lua", "--auto-approve", *extra)

    def state_list(self):
        r = self.ok("state", "list")
        return [l.split()[0] for l in r.stdout.splitlines() if l.strip()]

    def state_show(self, address):
        return json.loads(self.ok("state", "show", address).stdout)


@pytest.fixture
def stack(tmp_path, kube_cluster):
    return Stack(tmp_path, kube_cluster)


@pytest.fixture
def names(request):
    """A short, DNS-safe prefix unique to this test, for namespaces and object names."""
    n = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower().replace("test_", "")).strip("-")
    return n[:40].strip("-")
