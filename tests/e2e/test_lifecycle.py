"""apply -> no-op plan -> update in place -> replace -> destroy, counted in the sim journal."""
import json
import subprocess
import time

import conftest

STACK = '''
local mle = require("mlengine")
local value = mle.var("value", { default = "v1" })
local zone = mle.var("zone", { default = "z1" })
local a = mle.resource("sim_resource", "a", { name = "alpha", value = value, zone = zone })
local b = mle.resource("sim_resource", "b", { name = "beta-" .. a.id, value = "fixed" })
local c = mle.resource("sim_resource", "c", { name = mle.format("gamma-%s", b.name), depends_on = { a } })
mle.output("a_id", a.id)
mle.output("b_name", b.name)
'''


def test_full_lifecycle(work):
    work.write(STACK)
    r = work.ok("apply", "--auto-approve")
    assert "3 created" in r.stdout
    assert sorted(work.state_list()) == ["sim_resource.a", "sim_resource.b", "sim_resource.c"]
    assert len(work.creates()) == 3
    a_id = work.creates("sim_resource.a")[0][2]
    assert f'a_id = "{a_id}"' in r.stdout
    assert f'b_name = "beta-{a_id}"' in r.stdout

    # A second plan changes nothing.
    r = work.run("plan", "--detailed-exitcode")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "No changes" in r.stdout

    # A changed value is an update in place: no new create in the journal.
    r = work.run("plan", "--detailed-exitcode", "--var", "value=v2")
    assert r.returncode == 2, r.stdout + r.stderr
    assert "sim_resource.a (update in place)" in r.stdout
    assert '"v1" -> "v2"' in r.stdout
    work.ok("apply", "--auto-approve", "--var", "value=v2")
    assert len(work.creates()) == 3
    doc = json.loads((work.store / f"{a_id}.json").read_text())
    assert doc["attributes"]["value"] == "v2"
    assert work.run("plan", "--detailed-exitcode", "--var", "value=v2").returncode == 0

    # A force-new attribute replaces: delete then create, and the dependents follow.
    r = work.run("plan", "--var", "value=v2", "--var", "zone=z2")
    assert "sim_resource.a (replace)" in r.stdout
    assert "forces replacement" in r.stdout
    work.ok("apply", "--auto-approve", "--var", "value=v2", "--var", "zone=z2")
    assert len(work.deletes("sim_resource.a")) == 1
    assert len(work.creates("sim_resource.a")) == 2
    new_a = work.creates("sim_resource.a")[1][2]
    r = work.ok("state", "show", "sim_resource.b")
    assert json.loads(r.stdout)["attributes"]["name"] == f"beta-{new_a}"
    assert work.run("plan", "--detailed-exitcode", "--var", "value=v2", "--var", "zone=z2").returncode == 0

    # Destroy deletes everything, dependents first.
    r = work.ok("destroy", "--auto-approve", "--var", "value=v2", "--var", "zone=z2")
    assert work.state_list() == []
    order = [l[1] for l in work.deletes()][-3:]
    assert order.index("sim_resource.c") < order.index("sim_resource.a")
    assert order.index("sim_resource.b") < order.index("sim_resource.a")
    assert list(work.store.glob("sim-*.json")) == []


def test_plan_json_and_targets(work):
    work.write(STACK)
    r = work.ok("plan", "--json")
    plan = json.loads(r.stdout)
    assert plan["summary"]["create"] == 3
    b = next(c for c in plan["changes"] if c["address"] == "sim_resource.b")
    assert b["action"] == "create"
    assert "name" in b["after_unknown"]
    r = work.ok("apply", "--auto-approve", "-target", "sim_resource.b")
    # b and what it needs (a), not c.
    assert sorted(work.state_list()) == ["sim_resource.a", "sim_resource.b"]


def test_apply_without_terminal_refuses(work):
    work.write(STACK)
    r = work.run("apply")
    assert r.returncode == 1
    assert "--auto-approve" in r.stderr
    assert not work.creates()


def test_failure_stops_only_dependents(work):
    work.write('''
    local mle = require("mlengine")
    local bad = mle.resource("sim_resource", "bad", { fail = true })
    local child = mle.resource("sim_resource", "child", { name = bad.id })
    local sibling = mle.resource("sim_resource", "sibling", { name = "ok" })
    local cousin = mle.resource("sim_resource", "cousin", { name = sibling.id })
    ''')
    r = work.run("apply", "--auto-approve")
    assert r.returncode == 1
    assert "sim_resource.bad" in r.stdout and "SimFailure" in r.stdout
    assert "1 skipped" in r.stdout
    assert sorted(work.state_list()) == ["sim_resource.cousin", "sim_resource.sibling"]
    assert not work.creates("sim_resource.child")


def test_create_before_destroy(work):
    work.write('''
    local mle = require("mlengine")
    mle.resource("sim_cbd_resource", "x", { zone = mle.var("zone", { default = "a" }) })
    ''')
    work.ok("apply", "--auto-approve")
    work.ok("apply", "--auto-approve", "--var", "zone=b")
    lines = [l for l in work.journal_lines() if l[1].startswith("sim_cbd_resource.x")]
    kinds = [l[0] for l in lines]
    assert kinds == ["create", "create", "delete"], lines
    assert work.state_list() == ["sim_cbd_resource.x"]


def test_in_progress_operations_hold_no_worker(work):
    """Five operations that each stay in progress for 3 s, one worker: if a waiting
    operation held the worker this would take 15 s; parked on timers it takes about 3."""
    work.write('''
    local mle = require("mlengine")
    for i = 1, 5 do
      mle.resource("sim_resource", "slow" .. i, { pending_ms = 3000 })
    end
    ''')
    t0 = time.monotonic()
    r = work.ok("apply", "--auto-approve", "--parallelism", "1")
    assert time.monotonic() - t0 < 10, "in-progress operations were not parked"
    assert "5 created" in r.stdout
    assert len(work.creates()) == 5
    assert len(work.state_list()) == 5


def test_computed_values_of_an_update_flow_to_dependents(work):
    """An update may change what the provider computes (sim bumps `generation`): a resource
    that refers to it is planned with (known after apply) and updated in the same apply."""
    work.write('''
    local mle = require("mlengine")
    local a = mle.resource("sim_resource", "a", { value = mle.var("v", { default = "1" }) })
    mle.resource("sim_resource", "b", { name = mle.format("gen-%s", a.generation) })
    ''')
    work.ok("apply", "--auto-approve")
    r = work.ok("state", "show", "sim_resource.b")
    assert json.loads(r.stdout)["attributes"]["name"] == "gen-1"
    r = work.run("plan", "--var", "v=2")
    assert "sim_resource.b (update in place)" in r.stdout
    assert "(known after apply)" in r.stdout
    work.ok("apply", "--auto-approve", "--var", "v=2")
    r = work.ok("state", "show", "sim_resource.b")
    assert json.loads(r.stdout)["attributes"]["name"] == "gen-2"
    assert work.run("plan", "--detailed-exitcode", "--var", "v=2").returncode == 0


def test_references_known_at_plan_still_order_the_apply(work):
    """b refers to a.name, which the plan already knows: it is still an edge, so b is
    created only after a (a role before the policy attached to it)."""
    work.write('''
    local mle = require("mlengine")
    local a = mle.resource("sim_resource", "a", { name = "first", latency_ms = 300 })
    mle.resource("sim_resource", "b", { name = a.name .. "-second" })
    ''')
    work.ok("apply", "--auto-approve")
    order = [l[1] for l in work.creates()]
    assert order == ["sim_resource.a", "sim_resource.b"], order


def test_a_resource_that_vanishes_while_polled_leaves_no_stuck_row(work):
    """Deleted by someone else while its create was in progress: the apply fails for it,
    state keeps no in-progress row to resume forever, and the next apply creates it."""
    work.write('''
    local mle = require("mlengine")
    mle.resource("sim_resource", "slow", { pending_ms = 2500 })
    ''')
    p = subprocess.Popen([conftest.binary(), "apply", "--auto-approve"], cwd=work.path,
                         env=work.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not list(work.store.glob("sim-*.json")):
        time.sleep(0.05)
    for f in work.store.glob("sim-*.json"):
        f.unlink()
    out, err = p.communicate(timeout=60)
    assert p.returncode == 1, out + err
    assert "sim_resource.slow (create)" in out.split("Failed:")[1]
    assert "operation in progress" not in work.ok("state", "list").stdout
    work.ok("apply", "--auto-approve")
    assert work.ok("state", "list").stdout.split() == ["sim_resource.slow"]
    assert len(work.creates("sim_resource.slow")) == 2
