"""Crash safety, interruption and retries, proven against the sim's journal (one line per real
create or delete in the "cloud").

- kill -9 at 20 seeded points of applies of 200 resources: exactly one create per resource,
  all in state, none pending, one file each in the store, and a clean plan afterwards. The
  same torture with 50 kills and 1,000 resources is tests/bench/crash (shared logic:
  tests/bench/crashlib.py).
- SIGINT once during long operations: exit 130, the operations stay recorded in progress,
  and the next apply resumes them without creating anything twice.
- Throttling on 30% of calls: the apply converges, creates each resource once, and logs its
  retries.
"""
import pathlib
import signal
import subprocess
import sys
import time

from conftest import binary

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "bench"))
from crashlib import Torture, result_line  # noqa: E402


def test_kill9_at_20_points_of_200_resources(tmp_path):
    t = Torture(tmp_path / "torture", binary(), n_resources=200, n_kills=20, seed=20260501,
                parallelism=16)
    v = t.run()
    detail = f"{result_line(v)}\nproblems: {v['problems']}\nplan:\n{v['plan_output']}\n" \
             f"kills: {v['kill_log']}"
    assert v["creates"] == 200, detail
    assert not v["problems"], detail
    assert v["in_state"] == 200 and v["store_files"] == 200, detail
    assert v["plan_exit"] == 0, detail
    assert v["ok"], detail
    # The kills must have hit running applies, not finished ones, to prove anything.
    assert v["landed"] >= 10, detail


LONG = '''
local mle = require("mlengine")
for i = 1, 6 do
  mle.resource("sim_resource", "slow" .. i, { pending_ms = 4000, value = "s" .. i })
end
mle.resource("sim_resource", "quick", { value = "q" })
'''


def wait_for(cond, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


def test_sigint_keeps_in_progress_operations_and_resumes_them(work):
    work.write(LONG)
    p = subprocess.Popen([binary(), "apply", "--auto-approve"], cwd=work.path, env=work.env,
                         text=True, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    # Every create has reached the cloud and answered "in progress".
    wait_for(lambda: len(work.creates()) == 7, 20, "7 creates in the journal")
    time.sleep(0.2)  # let the coordinator commit the in-progress answers
    t0 = time.monotonic()
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=30)
    assert p.returncode == 130, out + err
    # Parked operations hold no worker, so nothing was in flight: it stops at once rather
    # than waiting out the 4 s operations.
    assert time.monotonic() - t0 < 3, out + err
    assert "interrupted" in err

    listed = work.ok("state", "list").stdout.splitlines()
    in_progress = [l for l in listed if "(operation in progress)" in l]
    assert len(in_progress) == 6, listed
    assert "sim_resource.quick" in listed, listed
    assert all("slow" in l for l in in_progress), listed

    r = work.ok("apply", "--auto-approve")
    assert len(work.creates()) == 7, work.journal_lines()
    for i in range(1, 7):
        assert len(work.creates(f"sim_resource.slow{i}")) == 1
    listed = work.ok("state", "list").stdout.splitlines()
    assert sorted(listed) == sorted([f"sim_resource.slow{i}" for i in range(1, 7)] +
                                    ["sim_resource.quick"]), listed
    assert len(list(work.store.glob("sim-*.json"))) == 7
    assert work.run("plan", "--detailed-exitcode").returncode == 0, r.stdout + r.stderr


def test_throttling_converges_with_retries(work):
    work.write('''
    local mle = require("mlengine")
    for i = 1, 50 do
      mle.resource("sim_resource", "t" .. i, { throttle_rate = 0.3, value = "v" .. i })
    end
    ''')
    r = work.run("apply", "--auto-approve")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "50 created" in r.stdout
    retries = [l for l in r.stderr.splitlines() if "retry" in l]
    assert retries, r.stderr
    assert any("Throttling" in l or "throttl" in l.lower() for l in retries), retries[:5]
    assert len(work.creates()) == 50
    assert len({l[1] for l in work.creates()}) == 50
    assert len(work.state_list()) == 50
    assert work.run("plan", "--detailed-exitcode").returncode == 0
