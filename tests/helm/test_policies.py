"""policies/: the manifests every cluster gets, checked the ways they can be checked here.

  - every file parses with mlengine's own YAML reader (libyaml), through a tiny stack, and
    every document is a well-formed object of the five MLOps namespaces;
  - scripts/mlops/policies_data.lua is in sync with the YAML (policies/gen-lua.py --check);
  - the mlops.policies module fills every placeholder, takes a reference as the registry, and
    refuses a malformed registry;
  - against a real kube-apiserver: the namespaces are created, and every NetworkPolicy,
    ResourceQuota and LimitRange passes `kubectl apply --dry-run=server` with strict field
    validation (the API server's own validation of the built-in kinds);
  - Kyverno's ClusterPolicy CRD (from the github.com/kyverno/kyverno Go module, through the Go
    module proxy) is installed there, and the ClusterPolicies pass --dry-run=server against
    its OpenAPI schema with strict field validation. Kyverno's admission webhook (pattern
    semantics) is not running there, so that part is not proven;
  - the way stacks use them: mlops.policies.declare through the kubernetes driver applies
    every document (ClusterPolicies included), a refresh finds no drift, destroy removes them.

These live in tests/helm because they share its apiserver session; they need no helm.
"""
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time

from helmlib import ROOT, binary

POLICIES = ROOT / "policies"
NAMESPACES = ["ml-training", "ml-serving", "mlflow", "argo", "monitoring"]
KYVERNO_MODULE = "github.com/kyverno/kyverno@v1.19.1"
REGISTRY = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/mlops"


def policy_files():
    return sorted(p for p in POLICIES.rglob("*.yaml"))


def substituted(path, registry=REGISTRY, ingress="ingress-nginx"):
    return (path.read_text().replace("${REGISTRY}", registry)
            .replace("${INGRESS_NAMESPACE}", ingress))


def plan_outputs(folder, stack_text):
    """Evaluate a stack (no driver, no cluster) and return its outputs from plan --json."""
    (folder / "stack.lua").write_text(stack_text)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLENGINE_")}
    env.update({"MLENGINE_STATE_KEY": "44" * 32, "HOME": str(folder)})
    r = subprocess.run([binary(), "plan", "--json"], cwd=folder, env=env, capture_output=True,
                       text=True, timeout=120)
    return r, (json.loads(r.stdout)["outputs"] if r.returncode == 0 else None)


def test_every_file_parses_and_is_well_formed(tmp_path):
    files = policy_files()
    assert len(files) >= 10
    for f in files:
        dest = tmp_path / "p" / f.relative_to(POLICIES)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(f, dest)
    rels = [f.relative_to(POLICIES).as_posix() for f in files]
    lines = [f'  [{json.dumps(rel)}] = mle.yamldecode_all(mle.file({json.dumps("p/" + rel)})),'
             for rel in rels]
    r, out = plan_outputs(tmp_path, 'local mle = require("mlengine")\nmle.output("docs", {\n'
                          + "\n".join(lines) + "\n})\n")
    assert r.returncode == 0, r.stderr
    docs = out["docs"]["value"]
    seen = set()
    for rel, items in docs.items():
        assert items, f"{rel}: no documents"
        for d in items:
            assert isinstance(d, dict), f"{rel}: a document is not a mapping: {d!r}"
            kind, meta = d.get("kind"), d.get("metadata", {})
            assert d.get("apiVersion") and kind and meta.get("name"), f"{rel}: {d}"
            key = (kind, meta.get("namespace"), meta["name"])
            assert key not in seen, f"{rel}: {key} declared twice"
            seen.add(key)
            if kind in ("NetworkPolicy", "ResourceQuota", "LimitRange"):
                assert meta.get("namespace") in NAMESPACES, f"{rel}: {key}"
            if kind == "ClusterPolicy":
                assert d["apiVersion"] == "kyverno.io/v1"
                for rule in d["spec"]["rules"]:
                    assert rule["validate"]["failureAction"] in ("Enforce", "Audit")
    kinds = {k for k, _, _ in seen}
    assert kinds == {"Namespace", "NetworkPolicy", "ResourceQuota", "LimitRange",
                     "ClusterPolicy"}
    # One default-deny (ingress and egress), ResourceQuota and LimitRange per namespace.
    for ns in NAMESPACES:
        assert ("NetworkPolicy", ns, "default-deny-all") in seen
        assert ("ResourceQuota", ns, "mlops-quota") in seen
        assert ("LimitRange", ns, "mlops-limits") in seen
    by_name = {(d["kind"], d["metadata"].get("namespace"), d["metadata"]["name"]): d
               for items in docs.values() for d in items}
    deny = by_name[("NetworkPolicy", "ml-training", "default-deny-all")]["spec"]
    assert deny["podSelector"] == {} and deny["policyTypes"] == ["Ingress", "Egress"]
    assert "ingress" not in deny and "egress" not in deny
    quota = by_name[("ResourceQuota", "ml-training", "mlops-quota")]["spec"]["hard"]
    assert int(quota["requests.nvidia.com/gpu"]) > 0
    for ns in ("mlflow", "argo", "monitoring"):
        hard = by_name[("ResourceQuota", ns, "mlops-quota")]["spec"]["hard"]
        assert hard["requests.nvidia.com/gpu"] == "0"


def test_generated_lua_is_in_sync():
    r = subprocess.run([sys.executable, str(POLICIES / "gen-lua.py"), "--check"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_module_fills_placeholders(tmp_path):
    r, out = plan_outputs(tmp_path, f"""
local mle = require("mlengine")
local p = require("mlops.policies")
local docs = {{}}
for i, d in ipairs(p.documents{{ registry = {json.dumps(REGISTRY)},
                                 ingress_namespace = "istio-system" }}) do
  docs[i] = {{ file = d.file, doc = d.doc }}
end
mle.output("docs", docs)
local n = 0
for _ in ipairs(p.documents{{ kyverno = false }}) do n = n + 1 end
mle.output("without_kyverno", n)
""")
    assert r.returncode == 0, r.stderr
    docs = out["docs"]["value"]
    text = json.dumps(docs)
    assert "${" not in text
    # Everything in policies/, in apply order: namespaces first, Kyverno last.
    assert docs[0]["doc"]["kind"] == "Namespace"
    assert docs[-1]["doc"]["kind"] == "ClusterPolicy"
    n_files = len(policy_files())
    assert len({d["file"] for d in docs}) == n_files
    reg = next(d["doc"] for d in docs if d["doc"]["metadata"]["name"] ==
               "restrict-image-registries")
    spec = reg["spec"]["rules"][0]["validate"]["pattern"]["spec"]
    assert spec["containers"][0]["image"] == REGISTRY + "/*"
    assert spec["=(initContainers)"][0]["image"] == REGISTRY + "/*"
    ing = next(d["doc"] for d in docs if d["doc"]["metadata"]["name"] ==
               "allow-ingress-controller-to-inference")
    assert ing["spec"]["ingress"][0]["from"][0]["namespaceSelector"]["matchLabels"] == {
        "kubernetes.io/metadata.name": "istio-system"}
    kyverno_docs = sum(1 for d in docs if d["doc"]["kind"] == "ClusterPolicy")
    assert out["without_kyverno"]["value"] == len(docs) - kyverno_docs

    # A reference as the registry (a registry resource's URL): an apply-time expression.
    (tmp_path / "ref").mkdir()
    r, out = plan_outputs(tmp_path / "ref", """
local mle = require("mlengine")
local p = require("mlops.policies")
local reg = mle.resource("sim_resource", "registry", { value = "r.example.com" })
for _, d in ipairs(p.documents{ registry = reg.value }) do
  if d.name == "restrict-image-registries" then
    mle.output("image", d.doc.spec.rules[1].validate.pattern.spec.containers[1].image)
  end
end
""")
    assert r.returncode == 0, r.stderr
    # plan --json shows an output that waits for an apply as null: it is an expression.
    assert out["image"]["value"] is None

    for bad, why in (("https://r.example.com", "without scheme"), ("r.example.com/", "trailing"),
                     ("r example", "registry host")):
        (tmp_path / "bad").mkdir(exist_ok=True)
        r, _ = plan_outputs(tmp_path / "bad", f"""
local p = require("mlops.policies")
p.documents{{ registry = {json.dumps(bad)} }}
""")
        assert r.returncode == 1 and "mlops.policies: registry" in r.stderr, r.stderr
    r, _ = plan_outputs(tmp_path / "bad", 'require("mlops.policies").documents{}')
    assert r.returncode == 1 and "registry is required" in r.stderr


def kubectl_dry_run(cluster, text, what):
    r = cluster.kubectl("apply", "--dry-run=server", "--validate=strict", "-f", "-",
                        input=text, check=False)
    assert r.returncode == 0, f"{what} refused by the API server:\n{r.stderr}"
    return r.stdout


def test_builtin_kinds_accepted_by_apiserver(kube_cluster):
    k = kube_cluster
    namespaces_gone(k)
    # The namespaces for real (the rest is namespaced in them), then everything else as a
    # server-side dry run: admission and validation run, nothing is stored.
    r = k.kubectl("apply", "-f", "-", input=substituted(POLICIES / "namespaces.yaml"))
    for ns in NAMESPACES:
        assert f"namespace/{ns}" in r.stdout
        labels = k.kubectl_json("get", "namespace", ns)["metadata"]["labels"]
        assert labels["pod-security.kubernetes.io/enforce"] in ("baseline", "privileged")
    for f in sorted((POLICIES / "network-policies").glob("*.yaml")) + \
            sorted((POLICIES / "quotas").glob("*.yaml")):
        out = kubectl_dry_run(k, substituted(f), f.name)
        n_docs = substituted(f).count("\nkind: ")
        assert out.count("(server dry run)") == n_docs, out
    # Unsubstituted, the ingress placeholder is not a valid label value: it fails loudly.
    r = k.kubectl("apply", "--dry-run=server", "-f", "-", check=False,
                  input=(POLICIES / "network-policies" / "50-allow-ingress-to-serving.yaml")
                  .read_text())
    assert r.returncode != 0
    k.kubectl("delete", "namespace", "--wait=false", *NAMESPACES)
    namespaces_gone(k)


def kyverno_crd():
    """Kyverno's ClusterPolicy CRD from the github.com/kyverno/kyverno Go module (the Go
    module proxy; cached in the Go module cache). A machine without Go fails loudly."""
    go = shutil.which("go")
    if not go:
        raise AssertionError("go not found on PATH: the Kyverno CRD comes from the Go module "
                             f"proxy ({KYVERNO_MODULE})")
    env = dict(os.environ, GOFLAGS="-mod=mod", GOTOOLCHAIN="local")
    with tempfile.TemporaryDirectory() as d:
        r = subprocess.run([go, "mod", "download", "-json", KYVERNO_MODULE], cwd=d, env=env,
                           capture_output=True, text=True, timeout=600)
    info = json.loads(r.stdout) if r.stdout.strip().startswith("{") else {}
    if r.returncode != 0 or "Dir" not in info:
        raise AssertionError(f"go mod download {KYVERNO_MODULE} failed:\n{r.stdout}\n{r.stderr}")
    crd = pathlib.Path(info["Dir"]) / "config" / "crds" / "kyverno" / \
        "kyverno.io_clusterpolicies.yaml"
    assert crd.exists(), f"{crd} missing: has Kyverno moved its CRDs?"
    return crd


def install_kyverno_crd(k):
    crd = kyverno_crd()
    # Server-side: the CRD is larger than the client-side last-applied annotation allows.
    k.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(crd))
    # Polled: `kubectl wait` errors out while the new CRD has no conditions yet.
    deadline = time.monotonic() + 60
    while True:
        conds = k.kubectl_json("get", "crd", "clusterpolicies.kyverno.io").get(
            "status", {}).get("conditions") or []
        if any(c["type"] == "Established" and c["status"] == "True" for c in conds):
            break
        assert time.monotonic() < deadline, f"the Kyverno CRD was not established: {conds}"
        time.sleep(0.2)


def namespaces_gone(k, timeout=90):
    """Wait until none of the MLOps namespaces exists (the namespace controller empties and
    removes a deleted one), so each test that makes them starts clean."""
    deadline = time.monotonic() + timeout
    while any(k.exists("namespace", ns) for ns in NAMESPACES):
        assert time.monotonic() < deadline, "the MLOps namespaces were not deleted in time"
        time.sleep(0.5)


def test_kyverno_policies_match_kyverno_crd_schema(kube_cluster):
    k = kube_cluster
    install_kyverno_crd(k)
    files = sorted((POLICIES / "kyverno").glob("*.yaml"))
    assert len(files) == 4
    for f in files:
        out = kubectl_dry_run(k, substituted(f), f.name)
        assert "(server dry run)" in out
    # The check has teeth: a misspelt field and a wrong enum value are refused.
    good = substituted(POLICIES / "kyverno" / "disallow-privileged-containers.yaml")
    for broken in (good.replace("failureAction: Enforce", "failureActon: Enforce"),
                   good.replace("failureAction: Enforce", "failureAction: Block")):
        assert broken != good
        r = k.kubectl("apply", "--dry-run=server", "--validate=strict", "-f", "-",
                      input=broken, check=False)
        assert r.returncode != 0, r.stdout


def test_policies_apply_through_mlengine(kube_cluster, tmp_path):
    """The way a stack uses them: mlops.policies.declare with the kubernetes driver
    (server-side apply), then no drift on refresh, then destroy."""
    k = kube_cluster
    install_kyverno_crd(k)
    namespaces_gone(k)
    (tmp_path / "stack.lua").write_text(f"""
local mle = require("mlengine")
mle.driver("kubernetes", {{ kubeconfig = {json.dumps(str(k.kubeconfig))} }})
require("mlops.policies").declare{{ registry = {json.dumps(REGISTRY)} }}
""")
    env = {key: v for key, v in os.environ.items()
           if not key.startswith(("MLENGINE_", "KUBECONFIG"))}
    env.update({"MLENGINE_STATE_KEY": "55" * 32, "HOME": str(tmp_path)})

    def mle(*args):
        return subprocess.run([binary(), *args], cwd=tmp_path, env=env, capture_output=True,
                              text=True, timeout=300)

    r = mle("apply", "--auto-approve")
    assert r.returncode == 0, r.stdout + r.stderr
    n_docs = sum(substituted(f).count("\nkind: ") for f in policy_files())
    assert f"{n_docs} created" in r.stdout, r.stdout
    pol = k.kubectl_json("get", "clusterpolicy", "restrict-image-registries")
    rule = pol["spec"]["rules"][0]
    assert rule["validate"]["pattern"]["spec"]["containers"][0]["image"] == REGISTRY + "/*"
    assert rule["validate"]["failureAction"] == "Enforce"
    netpols = k.kubectl_json("get", "networkpolicy", "-n", "ml-serving")["items"]
    assert {p["metadata"]["name"] for p in netpols} == {
        "default-deny-all", "allow-dns-egress", "allow-same-namespace", "allow-https-egress",
        "allow-prometheus-scrape", "allow-ingress-controller-to-inference",
        "allow-mlflow-egress"}
    quota = k.kubectl_json("get", "resourcequota", "mlops-quota", "-n", "ml-training")
    assert quota["spec"]["hard"]["requests.nvidia.com/gpu"] == "16"

    r = mle("plan", "--refresh", "--detailed-exitcode")
    assert r.returncode == 0, r.stdout + r.stderr

    r = mle("destroy", "--auto-approve")
    assert r.returncode == 0, r.stdout + r.stderr
    assert not k.exists("clusterpolicy", "restrict-image-registries")
    namespaces_gone(k)
