"""Fixtures for the AWS driver's end-to-end tests: the built mlengine binary against moto server
on loopback, with boto3 as the independent client that checks what the driver did.

Run with the python of tests/peers/moto.sh (moto, boto3, pytest installed there):
    MLENGINE=build/core/mlengine $(tests/peers/moto.sh) -m pytest -q tests/aws

moto is started once per session on a free port and reset before every test. When it cannot
start, every test fails with the reason (never skipped).
"""
import os
import pathlib
import shutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "peers"))

from moto_server import MotoServer, PeerError, ThrottleProxy  # noqa: E402

EXAMPLE = ROOT / "scripts" / "examples" / "aws.lua"
REGION = "us-east-1"


def binary():
    b = os.environ.get("MLENGINE") or str(ROOT / "build" / "core" / "mlengine")
    if not os.path.exists(b):
        raise RuntimeError(f"mlengine binary not found at {b}: build first (dev/build)")
    return b


@pytest.fixture(scope="session")
def moto_server():
    try:
        server = MotoServer().start()
    except PeerError as e:
        pytest.fail(f"the AWS peer (moto server) could not start: {e}", pytrace=False)
    yield server
    server.stop()


class AwsWork:
    """One test's folder (stack, state) and the environment mlengine runs with."""

    def __init__(self, path, moto):
        self.path = path
        self.moto = moto
        self.endpoint = moto.url
        self.stack = path / "aws.lua"
        shutil.copy(EXAMPLE, self.stack)
        self.env = dict(os.environ)
        for k in list(self.env):
            if k.startswith("AWS_"):
                del self.env[k]
        self.env.pop("MLENGINE_DRIVER_PATH", None)
        self.env.update({
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "MLENGINE_STATE_KEY": "22" * 32,
            "HOME": str(path),
            "XDG_CONFIG_HOME": str(path / "config"),
        })

    def vars(self, endpoint=None, poll_ms=100):
        return ["--var", f"aws_endpoint={endpoint or self.endpoint}",
                "--var", f"poll_interval_ms={poll_ms}"]

    def run(self, *args, timeout=300, env=None):
        e = dict(self.env)
        if env is not None:
            e = env
        return subprocess.run([binary(), *map(str, args)], cwd=self.path, env=e,
                              capture_output=True, text=True, timeout=timeout)

    def ok(self, *args, **kw):
        r = self.run(*args, **kw)
        assert r.returncode == 0, (f"mlengine {' '.join(map(str, args))} failed ({r.returncode}):\n"
                                   f"--- stdout\n{r.stdout}\n--- stderr\n{r.stderr}")
        return r

    def apply(self, *extra, endpoint=None, poll_ms=100, **kw):
        return self.ok("apply", self.stack, "--auto-approve", *self.vars(endpoint, poll_ms), *extra, **kw)

    def plan(self, *extra, endpoint=None, **kw):
        return self.run("plan", self.stack, "--detailed-exitcode", *self.vars(endpoint), *extra, **kw)

    def destroy(self, *extra, endpoint=None, **kw):
        return self.ok("destroy", self.stack, "--auto-approve", *self.vars(endpoint), *extra, **kw)

    def state_list(self):
        r = self.ok("state", "list", "--state", self.path / ".mlengine" / "state.db")
        return [l.split()[0] for l in r.stdout.splitlines() if l.strip()]

    def client(self, service, endpoint=None):
        import boto3
        return boto3.client(service, endpoint_url=endpoint or self.endpoint, region_name=REGION,
                            aws_access_key_id="testing", aws_secret_access_key="testing")


@pytest.fixture
def aws(moto_server, tmp_path):
    moto_server.reset()
    return AwsWork(tmp_path, moto_server)


@pytest.fixture
def throttle_proxy(moto_server):
    proxy = ThrottleProxy(moto_server.url, share=0.25).start()
    yield proxy
    proxy.stop()
