"""Helpers for tests/helm: the mlengine binary, a stack folder driven through it with helm on
PATH, and helm itself as a witness. A module of its own (not conftest) so that test modules
import it by a name no other test folder uses.
"""
import json
import os
import pathlib
import subprocess
import textwrap

ROOT = pathlib.Path(__file__).resolve().parents[2]
CHART = ROOT / "tests" / "helm" / "chart"


def binary():
    b = os.environ.get("MLENGINE") or str(ROOT / "build" / "core" / "mlengine")
    if not os.path.exists(b):
        raise RuntimeError(f"mlengine binary not found at {b}: build first (dev/build)")
    return b


def lua_str(s):
    """A Lua string literal for s (paths and names in the generated stacks)."""
    return json.dumps(str(s))


class Stack:
    """A stack folder: write stack.lua, run mlengine with helm on PATH."""

    def __init__(self, path, cluster):
        self.path = path
        self.cluster = cluster
        self.stack = path / "stack.lua"
        self.tmp = path / "tmp"          # TMPDIR: where the driver's private files go
        self.tmp.mkdir()
        self.bin = pathlib.Path(cluster.bin)
        self.helm = self.bin / "helm"
        if not self.helm.exists():
            raise RuntimeError(f"{self.helm} is missing: tests/peers/kube.sh builds it")
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("HELM_", "KUBECONFIG", "MLENGINE_"))}
        env.update({
            "MLENGINE_STATE_KEY": "33" * 32,
            "HOME": str(path),
            "XDG_CONFIG_HOME": str(path / "config"),
            "XDG_CACHE_HOME": str(path / "cache"),
            "XDG_DATA_HOME": str(path / "data"),
            "TMPDIR": str(self.tmp),
            "PATH": f"{self.bin}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        })
        if os.environ.get("MLENGINE"):
            env["MLENGINE"] = os.environ["MLENGINE"]
        self.env = env

    def write(self, text, name="stack.lua"):
        p = self.path / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(textwrap.dedent(text))
        return p

    def run(self, *args, timeout=300, env=None):
        e = dict(self.env)
        if env:
            e.update(env)
        return subprocess.run([binary(), *map(str, args)], cwd=self.path, env=e,
                              capture_output=True, text=True, timeout=timeout)

    def ok(self, *args, **kw):
        r = self.run(*args, **kw)
        assert r.returncode == 0, (f"mlengine {' '.join(map(str, args))} failed "
                                   f"({r.returncode}):\n{r.stdout}\n{r.stderr}")
        return r

    def apply(self, *extra, **kw):
        return self.ok("apply", "stack.lua", "--auto-approve", *extra, **kw)

    def state_show(self, address):
        return json.loads(self.ok("state", "show", address).stdout)

    # ---------------------------------------------------------------- witnesses
    def helm_cmd(self, *args, check=True):
        """The helm CLI itself, against the test cluster: the independent witness."""
        r = subprocess.run([str(self.helm), "--kubeconfig", str(self.cluster.kubeconfig),
                            *map(str, args)], capture_output=True, text=True, timeout=120,
                           env=self.env)
        if check and r.returncode != 0:
            raise AssertionError(f"helm {' '.join(map(str, args))} failed:\n{r.stderr}")
        return r

    def releases(self, ns):
        """helm list -a in ns: name -> entry."""
        r = self.helm_cmd("list", "--namespace", ns, "--all", "--output", "json")
        return {x["name"]: x for x in json.loads(r.stdout or "[]")}
