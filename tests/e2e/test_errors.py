"""Each of these is a clear error and leaves state untouched."""
import os
import pathlib
import shutil
import signal
import subprocess
import time

import pytest

from conftest import ROOT

GOOD = '''
local mle = require("mlengine")
local a = mle.resource("sim_resource", "a", { name = "a" })
'''


def applied(work):
    work.write(GOOD)
    work.ok("apply", "--auto-approve")
    return work.state_digest()


def assert_untouched(work, digest, r, *needles):
    assert r.returncode == 1, r.stdout + r.stderr
    for n in needles:
        assert n in r.stderr, f"{n!r} not in:\n{r.stderr}"
    assert work.state_digest() == digest
    assert len(work.creates()) == 1


def test_cycle(work):
    d = applied(work)
    work.write('''
    local mle = require("mlengine")
    local a = mle.resource("sim_resource", "a", { name = "a" })
    local x = mle.resource("sim_resource", "x", { depends_on = { "sim_resource.y" } })
    local y = mle.resource("sim_resource", "y", { name = x.id })
    ''')
    r = work.run("apply", "--auto-approve")
    assert_untouched(work, d, r, "dependency cycle", "sim_resource.x -> sim_resource.y -> sim_resource.x")


def test_unknown_type_suggests(work):
    d = applied(work)
    work.write(GOOD + 'mle.resource("sim_resorce", "b", {})\n')
    r = work.run("apply", "--auto-approve")
    assert_untouched(work, d, r, 'unknown resource type "sim_resorce"', 'did you mean "sim_resource"',
                     "stack.lua:4")


def test_unknown_attribute_suggests(work):
    d = applied(work)
    work.write(GOOD + 'mle.resource("sim_resource", "b", { vaule = "x" })\n')
    r = work.run("apply", "--auto-approve")
    assert_untouched(work, d, r, 'no attribute "vaule"', 'did you mean "value"')


def test_missing_variable(work):
    d = applied(work)
    work.write(GOOD + 'local r = mle.var("region")\n')
    r = work.run("plan")
    assert_untouched(work, d, r, 'variable "region" is required', "--var region=")


def test_variable_from_env_and_file(work):
    work.write('''
    local mle = require("mlengine")
    mle.resource("sim_resource", "a", { name = mle.var("n"), value = mle.var("v") })
    ''')
    (work.path / "vars.yaml").write_text("n: from-file\nv: file-v\n")
    r = work.ok("plan", "--var-file", "vars.yaml", "--var", "v=cli-v", env={"MLENGINE_VAR_n": "from-env"})
    assert '"from-file"' in r.stdout and '"cli-v"' in r.stdout
    r = work.ok("plan", "--var", "v=x", env={"MLENGINE_VAR_n": "from-env"})
    assert '"from-env"' in r.stdout


def test_os_execute_refused(work):
    d = applied(work)
    work.write(GOOD + 'os.execute("touch pwned")\n')
    r = work.run("apply", "--auto-approve")
    assert_untouched(work, d, r, "os.execute", "not available")
    assert not (work.path / "pwned").exists()


def test_io_refused(work):
    d = applied(work)
    work.write(GOOD + 'local f = io.open("/etc/passwd")\n')
    r = work.run("apply", "--auto-approve")
    assert_untouched(work, d, r, "io.open", "not available")


def test_endless_loop_stops(work):
    d = applied(work)
    work.write(GOOD + 'while true do end\n')
    r = work.run("apply", "--auto-approve", timeout=120)
    assert_untouched(work, d, r, "instruction limit")


def test_corrupt_state_refused_and_kept(work):
    work.write(GOOD)
    work.state.parent.mkdir(parents=True)
    junk = os.urandom(8192)
    work.state.write_bytes(junk)
    r = work.run("apply", "--auto-approve")
    assert r.returncode == 1
    assert "not an mlengine state" in r.stderr
    assert work.state.read_bytes() == junk
    assert not work.creates()


def test_lock_held_by_live_process(work):
    d = applied(work)
    work.write(GOOD + 'mle.resource("sim_resource", "slow", { latency_ms = 4000 })\n')
    slow = subprocess.Popen([__import__("conftest").binary(), "apply", "--auto-approve"],
                            cwd=work.path, env=work.env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 20
        r = None
        while time.monotonic() < deadline:
            r = work.run("plan")
            if "locked" in r.stderr:
                break
            time.sleep(0.2)
        assert r is not None and r.returncode == 1
        assert "locked by" in r.stderr and f"pid {slow.pid}" in r.stderr
        assert "apply" in r.stderr
    finally:
        out, err = slow.communicate(timeout=60)
    assert slow.returncode == 0, out + err
    assert "sim_resource.slow" in work.state_list()


def test_stale_lock_taken_over(work):
    """A holder killed with -9 on this host cannot release its lock; like an OS file lock,
    the lock dies with it: the next run says so and goes on. Recovery then finishes what the
    killed run started, without a second create."""
    applied(work)
    work.write(GOOD + 'mle.resource("sim_resource", "slow", { pending_ms = 10000 })\n')
    p = subprocess.Popen([__import__("conftest").binary(), "apply", "--auto-approve"],
                         cwd=work.path, env=work.env, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not work.creates("sim_resource.slow"):
        time.sleep(0.1)
    p.send_signal(signal.SIGKILL)
    p.wait()
    r = work.ok("apply", "--auto-approve")
    assert "took over a stale lock" in r.stderr and f"pid {p.pid}" in r.stderr
    assert len(work.creates("sim_resource.slow")) == 1
    assert "sim_resource.slow" in work.state_list()


def test_driver_for_other_abi_major(work, tmp_path):
    d = applied(work)
    drv = tmp_path / "drivers"
    drv.mkdir()
    cc = shutil.which("cc") or shutil.which("gcc")
    subprocess.run([cc, "-std=c11", "-shared", "-fPIC", "-fvisibility=hidden", "-Wl,-z,defs",
                    f"-I{ROOT / 'include'}", "-DABI_BUMP=1", "-o", str(drv / "hello.so"),
                    str(ROOT / "tests/e2e/hello_driver.c")], check=True)
    r = work.run("apply", "--auto-approve", "--driver-path", drv)
    assert_untouched(work, d, r, "hello.so", "built for ABI 2.", "speaks ABI 1.")


def test_not_a_driver(work, tmp_path):
    d = applied(work)
    drv = tmp_path / "drivers"
    drv.mkdir()
    (drv / "junk.so").write_bytes(b"not an elf file")
    r = work.run("plan", "--driver-path", drv)
    assert_untouched(work, d, r, "junk.so", "not a loadable shared object")


def test_backtracking_pattern_refused(work):
    """Lua's matcher backtracks in C where no instruction limit reaches: a pattern that
    could run for hours is refused up front, ordinary ones still work."""
    d = applied(work)
    work.write(GOOD + '''
    local text = ("key: value\\n"):rep(5000)
    local n = select(2, text:gsub("(%w+): (%w+)", "%1=%2"))
    assert(n == 5000 and ("k=v"):match("^(%w+)=(%w+)$") == "k")
    local s = ("a"):rep(3000):find(".-.-.-.-x")
    ''')
    t0 = time.monotonic()
    r = work.run("plan", timeout=60)
    assert time.monotonic() - t0 < 30
    assert_untouched(work, d, r, "string.find", "could run for hours")
