"""Saved plans, drift, import, secrets at rest, hooks and progress events."""
import json
import os
import subprocess

SECRET = "Zq8-known-secret-value-7741"

STACK = '''
local mle = require("mlengine")
local pw = mle.var("db_password", { sensitive = true })
local a = mle.resource("sim_resource", "a", { name = "a", value = mle.var("value", { default = "v1" }) })
local b = mle.resource("sim_resource", "b", { name = a.id, secret = pw })
mle.output("password", pw, { sensitive = true })
mle.output("a_id", a.id)
'''


def sim_file(work, address):
    for p in work.store.glob("sim-*.json"):
        doc = json.loads(p.read_text())
        if doc["address"] == address:
            return p, doc
    raise AssertionError(f"{address} not in the sim store")


def test_saved_plan_applies_exactly_and_refuses_stale(work):
    work.write(STACK)
    v = ["--var", f"db_password={SECRET}"]
    r = work.ok("plan", *v, "-out", "first.plan")
    plan = work.path / "first.plan"
    assert plan.exists() and oct(plan.stat().st_mode & 0o777) == "0o600"
    assert SECRET not in plan.read_text()
    # Applying the plan needs neither the stack's variables nor a confirmation.
    r = work.ok("apply", "first.plan")
    assert "2 created" in r.stdout
    assert len(work.creates()) == 2
    # The same plan again: the state moved on since, so it is refused.
    r = work.run("apply", "first.plan")
    assert r.returncode == 1 and "state changed since" in r.stderr
    assert len(work.creates()) == 2


def test_secrets_never_in_plaintext(work):
    work.write(STACK)
    v = ["--var", f"db_password={SECRET}"]
    logs = []
    for args in (["plan", *v, "-out", "p.plan", "-v"], ["apply", "p.plan", "-v"],
                 ["plan", *v, "--json"], ["plan", *v, "--refresh", "-v"],
                 ["state", "pull"], ["state", "show", "sim_resource.b"],
                 ["apply", *v, "--auto-approve", "--json-events", "-v"]):
        r = work.ok(*args)
        logs += [r.stdout, r.stderr]
    assert "(sensitive)" in "".join(logs)
    for text in logs:
        assert SECRET not in text
    for suffix in ("", "-wal", "-shm"):
        p = work.path / ".mlengine" / f"state.db{suffix}"
        if p.exists():
            assert SECRET.encode() not in p.read_bytes(), f"secret found in {p.name}"
    assert SECRET.encode() not in (work.path / "p.plan").read_bytes()
    # The value did reach the "cloud": sealing is at rest in our files, not a lost value.
    _, doc = sim_file(work, "sim_resource.b")
    assert doc["attributes"]["secret"] == SECRET
    # A secret changed outside mlengine is drift, and drift is redacted too.
    path, doc = sim_file(work, "sim_resource.b")
    doc["attributes"]["secret"] = "Drifted-secret-5521"
    path.write_text(json.dumps(doc))
    for args in (["plan", *v, "--refresh"], ["plan", *v, "--refresh", "--json"],
                 ["plan", *v, "--refresh", "-out", "d.plan"]):
        r = work.run(*args)
        assert "Drifted-secret-5521" not in r.stdout + r.stderr
    assert "Changed outside mlengine" in work.run("plan", *v, "--refresh").stdout
    assert b"Drifted-secret-5521" not in (work.path / "d.plan").read_bytes()
    # Another key cannot open the state: a clear error, nothing changed.
    r = work.run("plan", *v, env={"MLENGINE_STATE_KEY": "22" * 32})
    assert r.returncode == 1 and "another key" in r.stderr


def test_drift_is_shown_and_corrected(work):
    work.write(STACK)
    v = ["--var", f"db_password={SECRET}"]
    work.ok("apply", "--auto-approve", *v)
    path, doc = sim_file(work, "sim_resource.a")
    doc["attributes"]["value"] = "changed-by-hand"
    path.write_text(json.dumps(doc))
    r = work.ok("plan", *v)
    assert "changed outside" not in r.stdout  # no refresh: the state is believed
    r = work.run("plan", *v, "--refresh", "--detailed-exitcode")
    assert r.returncode == 2, r.stdout + r.stderr
    assert "Changed outside mlengine" in r.stdout
    assert '"v1" -> "changed-by-hand"' in r.stdout
    assert '"changed-by-hand" -> "v1"' in r.stdout  # and the update that corrects it
    work.ok("apply", "--auto-approve", *v)
    _, doc = sim_file(work, "sim_resource.a")
    assert doc["attributes"]["value"] == "v1"
    assert work.run("plan", *v, "--refresh", "--detailed-exitcode").returncode == 0
    # Deleted outside mlengine: refresh notices, apply recreates.
    path.unlink()
    r = work.run("plan", *v, "--refresh")
    assert "sim_resource.a was deleted outside mlengine" in r.stdout
    work.ok("apply", "--auto-approve", *v)
    assert len(work.creates("sim_resource.a")) == 2


def test_import_adopts_existing(work):
    work.write('''
    local mle = require("mlengine")
    mle.resource("sim_resource", "a", { name = "a", value = "v1" })
    ''')
    work.ok("apply", "--auto-approve")
    sim_id = work.creates("sim_resource.a")[0][2]
    work.ok("state", "rm", "sim_resource.a")
    r = work.run("import", "stack.lua", "sim_resource.a", "sim-0000000000000000")
    assert r.returncode == 1 and "no sim_resource with ID" in r.stderr
    work.ok("import", "stack.lua", "sim_resource.a", sim_id)
    assert work.state_list() == ["sim_resource.a"]
    assert work.run("plan", "--detailed-exitcode").returncode == 0
    r = work.run("import", "stack.lua", "sim_resource.a", sim_id)
    assert r.returncode == 1 and "already in state" in r.stderr
    assert len(work.creates()) == 1


HOOKS = '''
local mle = require("mlengine")
mle.resource("sim_resource", "a", { name = "a" })
mle.resource("sim_resource", "b", { name = "b" })
mle.hook("post_plan", function(ctx)
  ctx:write_report("reports/plan.txt", "changes=" .. #ctx.plan.changes)
end)
mle.hook("on_resource", function(ctx)
  if ctx.phase == "after" then
    ctx:write_report("reports/" .. ctx.address .. ".txt", ctx.action .. " " .. ctx.result)
  end
end)
mle.hook("pre_apply", function(ctx)
  if os.time() > 0 and VETO then ctx:veto("change freeze until Monday") end
end)
'''


def test_hooks_report_and_veto(work):
    work.write(HOOKS.replace("VETO", "true"))
    r = work.run("apply", "--auto-approve")
    assert r.returncode == 1
    assert "change freeze until Monday" in r.stderr
    assert not work.creates()  # vetoed before any change
    assert (work.path / "reports" / "plan.txt").read_text() == "changes=2"
    work.write(HOOKS.replace("VETO", "false"))
    work.ok("apply", "--auto-approve")
    assert (work.path / "reports" / "sim_resource.a.txt").read_text() == "create done"


def test_hooks_file_and_escape_refused(work):
    work.write('''
    local mle = require("mlengine")
    mle.resource("sim_resource", "a", { name = "a" })
    ''')
    (work.path / "ci-hooks.lua").write_text('''
    local mle = require("mlengine")
    mle.hook("post_apply", function(ctx) ctx:write_report("../escape.txt", "x") end)
    ''')
    r = work.run("apply", "--auto-approve", "--hooks", "ci-hooks.lua")
    assert r.returncode != 0
    assert "post_apply" in r.stderr
    assert not (work.path.parent / "escape.txt").exists()
    assert work.state_list() == ["sim_resource.a"]  # the apply itself happened


def test_json_events(work):
    work.write('''
    local mle = require("mlengine")
    local a = mle.resource("sim_resource", "a", { name = "a", pending_ms = 300 })
    mle.resource("sim_resource", "b", { name = a.id })
    ''')
    r = work.ok("apply", "--auto-approve", "--json-events")
    events = [json.loads(l) for l in r.stderr.splitlines() if l.startswith("{")]
    kinds = [(e["address"], e["event"]) for e in events]
    assert ("sim_resource.a", "start") in kinds
    assert ("sim_resource.a", "waiting") in kinds
    assert ("sim_resource.b", "done") in kinds
    assert kinds.index(("sim_resource.a", "done")) < kinds.index(("sim_resource.b", "start"))
    assert all({"ts", "address", "action", "event", "elapsed_ms"} <= set(e) for e in events)
