"""The crash torture shared by tests/e2e/test_crash.py (20 kills, 200 resources, in CI) and
tests/bench/crash (50 kills, 1,000 resources, for benchmarks and release checks).

A stack of sim resources (some referring to others, some answering "in progress" for a
while, every call with some latency) is applied again and again, and each apply is killed
with SIGKILL at a point drawn from a seeded generator (see Torture.plan_kills): most are
points along the apply's progress (the sim journal's line count, across runs) plus a few
milliseconds, so they land just after a real create reached the "cloud" — before the engine
committed it, the window in which other tools lose track of resources — or a little later;
the others land during start-up, recovery, refresh or planning. Then apply runs until it
exits 0, and the verdict checks what the cloud and the state hold:

- the sim journal has exactly one `create` per resource address (none twice, none missing)
  and no `delete`;
- the store holds exactly one ready file per address, and nothing else;
- `state list` lists every address, none pending ("create interrupted" or "operation in
  progress"), and the IDs in state are the IDs in the store;
- `plan --detailed-exitcode` exits 0.

The kill schedule is reproducible from the seed; where each kill lands within the engine's
work depends on the machine, which is the point of running many.
"""
import json
import random
import signal
import time

from common import Sandbox


def stack_text(n, latency_ms=50, pending_ms=500, depth=4):
    """n sim resources in `depth` bands: in every band after the first, each even resource
    refers to the id of its counterpart in the band before (chains up to `depth` long), and
    every third resource answers "in progress" for pending_ms on create."""
    band = max(1, n // depth)
    return f'''local mle = require("mlengine")
-- fsync off: kill -9 loses nothing the kernel has; the torture measures the engine.
mle.driver("sim", {{ fsync = false }})
local r = {{}}
for i = 1, {n} do
  local cfg = {{ latency_ms = {latency_ms}, value = "v" .. i }}
  if i % 3 == 0 then cfg.pending_ms = {pending_ms} end
  if i > {band} and i % 2 == 0 then cfg.name = r[i - {band}].id end
  r[i] = mle.resource("sim_resource", "r" .. i, cfg)
end
'''


def addresses(n):
    return {f"sim_resource.r{i}" for i in range(1, n + 1)}


class Torture:
    def __init__(self, path, binary, n_resources=200, n_kills=20, seed=1, parallelism=16,
                 log=None):
        self.sb = Sandbox(path, binary)
        self.n = n_resources
        self.kills = n_kills
        self.parallelism = parallelism
        self.log = log or (lambda msg: None)
        self.schedule = self.plan_kills(random.Random(seed))
        self.landed = 0      # kills that hit a running process
        self.kill_log = []   # (kind, journal point, delay s, landed, journal lines written)

    def plan_kills(self, rng):
        """The kill points, from the seed alone. Three in four are points on the journal's
        timeline, spread over the whole apply: kill once the journal (across runs) holds that
        many lines, plus a random 0-30 ms, so the kill lands anywhere from "the cloud just
        made it" to "the engine moved on". The rest are a random 0-300 ms after the start:
        during start-up, recovery of the previous kill's leftovers, refresh or planning."""
        n_time = self.kills // 4
        thresholds = sorted(rng.sample(range(1, self.n), min(self.n - 1, self.kills - n_time)))
        kinds = ["journal"] * len(thresholds) + ["time"] * (self.kills - len(thresholds))
        rng.shuffle(kinds)
        schedule, t = [], iter(thresholds)
        for k in kinds:
            if k == "journal":
                schedule.append(("journal", next(t), rng.uniform(0.0, 0.03)))
            else:
                schedule.append(("time", 0, rng.uniform(0.0, 0.3)))
        return schedule

    def apply_args(self):
        return ["apply", "--auto-approve", "--parallelism", str(self.parallelism)]

    def journal_count(self):
        try:
            with open(self.sb.journal, "rb") as f:
                return f.read().count(b"\n")
        except FileNotFoundError:
            return 0

    def one_kill(self, i):
        kind, threshold, delay = self.schedule[i]
        before = self.journal_count()
        p = self.sb.start(*self.apply_args())
        if kind == "journal":
            # A point an earlier run already passed is taken as "the first create of this
            # run" instead, so every such kill lands while creates are under way. The cap is
            # generous: a run first finishes what the previous one left (recovery, refresh).
            target = max(threshold, before + 1)
            cap = time.monotonic() + 30
            while p.poll() is None and time.monotonic() < cap:
                if self.journal_count() >= target:
                    break
                time.sleep(0.001)
        deadline = time.monotonic() + delay
        while p.poll() is None and time.monotonic() < deadline:
            time.sleep(0.001)
        landed = p.poll() is None
        if landed:
            p.send_signal(signal.SIGKILL)
            self.landed += 1
        p.wait()
        written = self.journal_count() - before
        self.kill_log.append((kind, threshold, round(delay, 3), landed, written))
        self.log(f"kill {i + 1}/{self.kills}: {kind} "
                 f"{'at journal line ' + str(threshold) + ' + ' if kind == 'journal' else ''}"
                 f"{delay * 1000:.0f} ms: "
                 f"{'landed' if landed else 'the run had exited ' + str(p.returncode)}, "
                 f"{written} journal lines")

    def finish(self, max_runs=5):
        """Apply until it exits 0: the number of runs it took, or None when it never did
        (the output of the last run is kept for the verdict)."""
        self.final_output = ""
        for run in range(1, max_runs + 1):
            r = self.sb.run(*self.apply_args(), timeout=600)
            if r.returncode == 0:
                return run
            self.final_output = f"{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
            self.log(f"final apply {run} exited {r.returncode}")
        return None

    def run(self):
        t0 = time.monotonic()
        self.sb.write_stack(stack_text(self.n))
        for i in range(self.kills):
            self.one_kill(i)
        runs = self.finish()
        verdict = self.verdict()
        verdict["final_runs"] = runs
        if runs is None:
            verdict["ok"] = False
            verdict["problems"]["final_apply"] = ["apply never exited 0 (5 runs); last output:",
                                                  self.final_output]
        verdict["seconds"] = round(time.monotonic() - t0, 1)
        return verdict

    def verdict(self):
        """What the cloud and the state hold, as counts and lists of what is wrong."""
        want = addresses(self.n)
        lines = self.sb.journal_lines()
        creates = [l for l in lines if l[0] == "create"]
        per_addr = {}
        for l in creates:
            # "create <address> <id> <token>": take the ID and token from the right.
            per_addr.setdefault(" ".join(l[1:-2]), []).append(l[-2])
        duplicates = sorted(a for a, ids in per_addr.items() if len(ids) > 1)
        missing = sorted(want - set(per_addr))
        unexpected = sorted(set(per_addr) - want)
        deletes = [l for l in lines if l[0] == "delete"]

        docs = self.sb.store_docs()
        store = {}
        for d in docs:
            store.setdefault(d["address"], []).append(d)
        store_dupes = sorted(a for a, ds in store.items() if len(ds) > 1)
        store_missing = sorted(want - set(store))
        not_ready = sorted(d["address"] for d in docs
                           if d.get("status") != "ready" or "journal_pending" in d)

        listed = self.sb.ok("state", "list").stdout.splitlines()
        in_state = [l.split()[0] for l in listed if l.strip()]
        pending = [l for l in listed if "(" in l]
        pulled = json.loads(self.sb.ok("state", "pull").stdout)
        id_mismatch = sorted(
            r["address"] for r in pulled["resources"]
            if len(store.get(r["address"], [])) != 1 or store[r["address"]][0]["id"] != r.get("id"))
        plan = self.sb.run("plan", "--detailed-exitcode")

        problems = {
            "duplicates": duplicates, "missing": missing, "unexpected": unexpected,
            "deletes": [" ".join(l) for l in deletes],
            "store_duplicates": store_dupes, "store_missing": store_missing,
            "store_not_ready": not_ready,
            "state_missing": sorted(want - set(in_state)),
            "state_unexpected": sorted(set(in_state) - want),
            "state_pending": pending, "state_id_mismatch": id_mismatch,
        }
        return {
            "ok": not any(problems.values()) and plan.returncode == 0,
            "kills": self.kills, "landed": self.landed, "resources": self.n,
            "creates": len(creates), "in_state": len(in_state), "store_files": len(docs),
            "plan_exit": plan.returncode,
            "problems": {k: v[:10] for k, v in problems.items() if v},
            "plan_output": plan.stdout[-2000:] if plan.returncode else "",
            "kill_log": self.kill_log,
        }


def result_line(v):
    return (f"crash {'PASS' if v['ok'] else 'FAIL'} kills={v['kills']} landed={v['landed']} "
            f"resources={v['resources']} creates={v['creates']} "
            f"duplicates={len(v['problems'].get('duplicates', []))} "
            f"missing={len(v['problems'].get('missing', []))} in_state={v['in_state']} "
            f"pending={len(v['problems'].get('state_pending', []))} "
            f"store_files={v['store_files']} plan_exit={v['plan_exit']} "
            f"final_runs={v.get('final_runs')} seconds={v.get('seconds')}")
