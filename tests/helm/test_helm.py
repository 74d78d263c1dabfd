"""The helm driver (helm_release) against a real kube-apiserver on loopback, with the helm
CLI and kubectl as independent witnesses.

Proven here:
  - a release of the local chart in tests/helm/chart installs with values built in the stack
    as mle.merge(common, per-cloud override) from YAML files, and the objects carry the merged
    values (maps merged, lists replaced, a null deleting a key);
  - no change plans nothing, even after a refresh (helm's float64 values are no drift);
  - a changed value upgrades the release (revision 2) and changes the ConfigMap;
  - a change made with helm out of band is drift under `plan --refresh`, and apply puts the
    stack's values back; a failed release plans an upgrade back to "deployed";
  - destroy uninstalls; a release deleted by hand is no error on destroy;
  - `mlengine render --out DIR` writes the merged values.yaml;
  - without helm, plan fails at once with how to install it, and apply never starts;
  - the host + CA + token connection (a generated kubeconfig, private and removed after);
  - a release of the same name made by someone else is refused, then imported; a release of
    this stack's own (ownership label) is taken back after its state was lost;
  - atomic: a failed install is rolled back and reported as a timeout;
  - a chart from a repository (served on loopback) with a pinned version.
"""
import functools
import http.server
import json
import os
import threading

from helmlib import CHART, lua_str

COMMON = """\
# values common to every cloud
replicas: 0
annotation: from-common
image:
  repository: registry.example.com/mlops/echo
  tag: "1.0"
config:
  greeting: hello
  features: [a, b]
  tier: standard
  ratio: 1.0
"""

AWS = """\
# the AWS override: a list replaces, a map merges, null deletes
image:
  tag: "1.1"
config:
  features: [s3]
  tier: null
"""


def release_stack(stack, name, ns, *, extra="", driver=None):
    """A stack with one helm_release whose values are mle.merge(common, aws, {annotation})."""
    stack.write(COMMON, "values/common.yaml")
    stack.write(AWS, "values/aws.yaml")
    driver = driver or f"{{ kubeconfig = {lua_str(stack.cluster.kubeconfig)} }}"
    stack.write(f"""
    local mle = require("mlengine")
    mle.driver("helm", {driver})
    local common = mle.yamldecode(mle.file("values/common.yaml"))
    local aws = mle.yamldecode(mle.file("values/aws.yaml"))
    local annotation = mle.var("annotation", {{ default = "v1" }})
    mle.resource("helm_release", "demo", {{
      name = {lua_str(name)},
      namespace = {lua_str(ns)},
      create_namespace = true,
      chart = {lua_str(CHART)},
      values = mle.merge(common, aws, {{ annotation = annotation }}),
      {extra}
    }})
    """)


def configmap(stack, name, ns):
    return json.loads(stack.cluster.kubectl("get", "configmap", f"{name}-config", "-n", ns,
                                            "-o", "json").stdout)


def test_install_upgrade_drift_uninstall(stack, names):
    name = ns = names
    release_stack(stack, name, ns)
    stack.apply()

    rel = stack.releases(ns)[name]
    assert rel["status"] == "deployed" and rel["revision"] == "1"
    assert rel["chart"] == "mle-test-0.1.0"
    cm = configmap(stack, name, ns)
    assert cm["metadata"]["annotations"]["mlengine.test/annotation"] == "v1"
    assert cm["data"]["greeting"] == "hello"                 # from common
    assert cm["data"]["image"] == "registry.example.com/mlops/echo:1.1"  # map merged
    assert cm["data"]["features"] == '["s3"]'                # list replaced, not appended
    values = json.loads(cm["data"]["values.json"])
    assert "tier" not in values["config"]                    # null deleted the key
    dep = json.loads(stack.cluster.kubectl("get", "deployment", name, "-n", ns, "-o",
                                           "json").stdout)
    assert dep["spec"]["replicas"] == 0
    assert dep["metadata"]["annotations"]["mlengine.test/annotation"] == "v1"

    st = stack.state_show("helm_release.demo")["attributes"]
    assert st["revision"] == 1 and st["status"] == "deployed"
    assert st["chart_version"] == "0.1.0" and st["app_version"] == "1.0.0"
    assert st["id"] == f"{ns}/{name}"

    # Nothing changed: nothing planned, also after reading the release back (helm keeps
    # values as float64, so ratio 1.0 comes back as 1: that must not be drift).
    assert stack.run("plan", "--detailed-exitcode").returncode == 0
    r = stack.run("plan", "--refresh", "--detailed-exitcode")
    assert r.returncode == 0, r.stdout + r.stderr

    # A changed value upgrades in place.
    r = stack.apply("--var", "annotation=v2")
    assert "1 updated" in r.stdout
    assert stack.releases(ns)[name]["revision"] == "2"
    assert configmap(stack, name, ns)["metadata"]["annotations"][
        "mlengine.test/annotation"] == "v2"
    assert stack.state_show("helm_release.demo")["attributes"]["revision"] == 2

    # Out of band: someone sets replicas with helm. plan --refresh shows it; apply undoes it.
    stack.helm_cmd("upgrade", name, CHART, "-n", ns, "--reuse-values", "--set", "replicas=1")
    r = stack.run("plan", "--refresh", "--detailed-exitcode", "--var", "annotation=v2")
    assert r.returncode == 2, r.stdout + r.stderr
    assert "changed outside mlengine" in r.stdout and '"replicas":1' in r.stdout
    stack.apply("--refresh", "--var", "annotation=v2")
    assert configmap(stack, name, ns)["data"]["replicas"] == "0"
    got = json.loads(stack.helm_cmd("get", "values", name, "-n", ns, "-o", "json").stdout)
    assert got["replicas"] == 0 and got["annotation"] == "v2"

    # A failed release (an out-of-band upgrade the apiserver refused) plans an upgrade back.
    stack.helm_cmd("upgrade", name, CHART, "-n", ns, "--reuse-values", "--set", "replicas=-1",
                   check=False)
    assert stack.releases(ns)[name]["status"] == "failed"
    r = stack.run("plan", "--refresh", "--var", "annotation=v2")
    assert '"failed" -> "deployed"' in r.stdout, r.stdout
    stack.apply("--refresh", "--var", "annotation=v2")
    assert stack.releases(ns)[name]["status"] == "deployed"

    # Destroy uninstalls: helm knows nothing of it and its objects are gone.
    stack.ok("destroy", "stack.lua", "--auto-approve", "--var", "annotation=v2")
    assert name not in stack.releases(ns)
    assert not stack.cluster.exists("configmap", f"{name}-config", "-n", ns)
    assert not stack.cluster.exists("deployment", name, "-n", ns)
    # The driver's private files (values, kubeconfig) never outlive a call.
    assert list(stack.tmp.iterdir()) == []


def test_render_writes_merged_values(stack, names):
    release_stack(stack, names, names)
    r = stack.ok("render", "stack.lua", "--out", "out", "--var", "annotation=from-render")
    assert "Rendered 1 file" in r.stdout
    text = (stack.path / "out" / "helm_release.demo" / "values.yaml").read_text()
    # The whole document: keys in order, the AWS override merged in, tier deleted.
    assert text == (
        "annotation: from-render\n"
        "config:\n"
        "  features:\n"
        "  - s3\n"
        "  greeting: hello\n"
        "  ratio: 1.0\n"
        "image:\n"
        "  repository: registry.example.com/mlops/echo\n"
        "  tag: \"1.1\"\n"
        "replicas: 0\n"), text
    # render installs nothing.
    assert not stack.cluster.exists("namespace", names)


def test_helm_missing_fails_at_plan(stack, names):
    release_stack(stack, names, names)
    no_helm = {"PATH": "/usr/bin:/bin"}
    assert not os.path.exists("/usr/bin/helm") and not os.path.exists("/bin/helm")
    for cmd in (["plan"], ["apply", "stack.lua", "--auto-approve"], ["render", "--out", "o"]):
        r = stack.run(*cmd, env=no_helm)
        assert r.returncode == 1, r.stdout + r.stderr
        assert "driver helm: helm not found on PATH" in r.stderr
        assert "https://helm.sh/docs/intro/install/" in r.stderr
        assert "go install helm.sh/helm/v3/cmd/helm@v3.22.0" in r.stderr
        assert "create start" not in r.stdout + r.stderr   # nothing was attempted
    assert not stack.cluster.exists("namespace", names)

    # The `helm` option names a binary that is not there: the same clear error, naming it.
    release_stack(stack, names, names, driver='{ helm = "/nonexistent/helm" }')
    r = stack.run("plan")
    assert r.returncode == 1 and "/nonexistent/helm" in r.stderr, r.stderr

    # ... and one that is: the option wins over PATH.
    release_stack(stack, names, names,
                  driver=f'{{ helm = {lua_str(stack.helm)}, '
                         f'kubeconfig = {lua_str(stack.cluster.kubeconfig)} }}')
    stack.ok("plan", env=no_helm)


def test_host_ca_token_connection(stack, names):
    """The driver options a cluster resource provides: a kubeconfig is generated for each
    call, private (0600 in a 0700 folder) and removed right after."""
    k = stack.cluster
    stack.write(k.ca_pem, "ca.pem")
    driver = (f'{{ host = {lua_str(k.url)}, cluster_ca_certificate = mle.file("ca.pem"), '
              f'token = mle.sensitive(mle.var("token")) }}')
    release_stack(stack, names, names, driver=driver)
    r = stack.apply("--var", f"token={k.token}", "-v")
    assert stack.releases(names)[names]["status"] == "deployed"
    assert k.token not in r.stdout + r.stderr
    assert list(stack.tmp.iterdir()) == []

    # A wrong token is an authentication error, not retried, and not echoed.
    r = stack.run("plan", "--refresh", "--var", "token=not-the-token")
    assert r.returncode == 1 and "provide credentials" in r.stderr, r.stderr
    assert "not-the-token" not in r.stdout + r.stderr
    assert "retry" not in r.stderr

    stack.ok("destroy", "stack.lua", "--auto-approve", "--var", f"token={k.token}")
    assert names not in stack.releases(names)


def test_foreign_release_refused_then_imported(stack, names):
    """upgrade --install would quietly take over a release of the same name: create refuses
    one this stack did not make; import adopts it deliberately."""
    stack.helm_cmd("install", names, CHART, "-n", names, "--create-namespace",
                   "--set", "annotation=by-hand")
    release_stack(stack, names, names)
    r = stack.run("apply", "stack.lua", "--auto-approve")
    assert r.returncode == 1
    assert f"helm release {names}/{names} already exists and was not installed by this stack" \
        in r.stdout + r.stderr
    assert stack.releases(names)[names]["revision"] == "1"      # untouched

    stack.ok("import", "stack.lua", "helm_release.demo", f"{names}/{names}")
    st = stack.state_show("helm_release.demo")["attributes"]
    assert st["values"] == {"annotation": "by-hand"} and st["revision"] == 1
    stack.apply()
    assert stack.releases(names)[names]["revision"] == "2"
    assert configmap(stack, names, names)["metadata"]["annotations"][
        "mlengine.test/annotation"] == "v1"
    stack.ok("destroy", "stack.lua", "--auto-approve")


def test_own_release_taken_back_after_state_loss(stack, names):
    """The ownership label (the stack's lineage) lets a create continue a release this stack
    made, e.g. after its state row was lost."""
    release_stack(stack, names, names)
    stack.apply()
    secrets = json.loads(k_get_secrets(stack, names))
    labels = secrets["items"][0]["metadata"]["labels"]
    assert "mlengine.io/lineage" in labels and "mlengine.io/token" in labels
    stack.ok("state", "rm", "helm_release.demo")
    stack.apply("--var", "annotation=again")
    assert stack.releases(names)[names]["revision"] == "2"
    # Deleted by hand, then destroyed: not an error.
    stack.helm_cmd("uninstall", names, "-n", names)
    stack.ok("destroy", "stack.lua", "--auto-approve")


def k_get_secrets(stack, ns):
    return stack.cluster.kubectl("get", "secrets", "-n", ns, "-l", "owner=helm", "-o",
                                 "json").stdout


def test_atomic_failure_rolls_back(stack, names):
    """The test cluster runs no Deployment controller, so --wait can never see the
    Deployment ready: an atomic install times out and helm removes it again."""
    release_stack(stack, names, names, extra='atomic = true, timeout = "3s",')
    r = stack.run("apply", "stack.lua", "--auto-approve")
    assert r.returncode == 1
    out = r.stdout + r.stderr
    assert "helm install failed" in out and "atomic" in out, out
    assert names not in stack.releases(names)
    assert list(stack.tmp.iterdir()) == []


def test_invalid_inputs_are_refused_before_helm_runs(stack, names):
    release_stack(stack, "Bad_Name", names)
    r = stack.run("apply", "stack.lua", "--auto-approve")
    assert r.returncode == 1 and "is not a valid release name" in r.stdout + r.stderr
    release_stack(stack, names, names, extra='timeout = "five minutes",')
    r = stack.run("apply", "stack.lua", "--auto-approve")
    assert r.returncode == 1 and "is not a duration" in r.stdout + r.stderr
    assert not stack.cluster.exists("namespace", names)
    # A kubeconfig that is not there is a plan-time error, not a retried failure per call.
    release_stack(stack, names, names, driver='{ kubeconfig = "/nonexistent/kubeconfig" }')
    r = stack.run("plan")
    assert r.returncode == 1, r.stdout + r.stderr
    assert "helm driver option `kubeconfig`: /nonexistent/kubeconfig" in r.stderr


def test_chart_from_a_repository(stack, names, tmp_path):
    """chart + repository + version: a chart repository served on loopback (helm package +
    helm repo index, what any chart repository is)."""
    repo = tmp_path / "repo"
    repo.mkdir()
    stack.helm_cmd("package", CHART, "--destination", repo)
    stack.helm_cmd("repo", "index", repo)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(repo))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        stack.write(f"""
        local mle = require("mlengine")
        mle.driver("helm", {{ kubeconfig = {lua_str(stack.cluster.kubeconfig)} }})
        mle.resource("helm_release", "demo", {{
          name = {lua_str(names)}, namespace = {lua_str(names)}, create_namespace = true,
          chart = "mle-test", repository = {lua_str(url)}, version = "0.1.0",
          values = {{ annotation = "from-repo" }},
        }})
        """)
        stack.apply()
        assert stack.releases(names)[names]["chart"] == "mle-test-0.1.0"
        st = stack.state_show("helm_release.demo")["attributes"]
        assert st["chart_version"] == "0.1.0" and st["version"] == "0.1.0"
        r = stack.run("plan", "--refresh", "--detailed-exitcode")
        assert r.returncode == 0, r.stdout + r.stderr
        # A version the repository does not have: helm's own words, not a retry loop.
        stack.write(stack.stack.read_text().replace('version = "0.1.0"', 'version = "9.9.9"'))
        r = stack.run("apply", "stack.lua", "--auto-approve")
        assert r.returncode == 1 and "9.9.9" in r.stdout + r.stderr, r.stdout + r.stderr
        assert "retry" not in r.stderr
        stack.write(stack.stack.read_text().replace('version = "9.9.9"', 'version = "0.1.0"'))
        stack.ok("destroy", "stack.lua", "--auto-approve")
    finally:
        server.shutdown()
