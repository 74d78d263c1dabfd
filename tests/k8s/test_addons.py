"""The add-on drivers (karpenter, keda, kyverno) against a real kube-apiserver on loopback,
with the add-ons' REAL CustomResourceDefinitions (from their Go module zips, cached by
tests/peers/addon_crds.sh) and kubectl as the independent witness.

What is proven here:
  - the CRDs (applied with k8s_manifest) and the custom resources (karpenter_node_pool,
    karpenter_ec2_node_class, keda_scaled_object, kyverno_cluster_policy) in ONE stack with NO
    depends_on between them: each custom resource waits, polled by the engine, until its CRD
    is Established and served; the real CRDs' schemas and CEL rules accept what they build;
  - kubectl sees the custom resources with the expected fields and the ownership labels; a
    refresh right after shows no drift; a change made with kubectl shows as drift;
  - a change of one field in the stack changes that field and nothing else;
  - destroy removes everything;
  - a custom resource whose CRD never comes fails after wait_timeout naming the CRD;
  - mle.cloud("azure") / ("gcp") with a karpenter type is refused naming AKS / GKE node
    auto-provisioning (the issue's "karpenter on azure -> the clear error");
  - `mlengine render --out DIR` writes k8s_manifest and add-on documents with the ownership
    labels, with no cluster and no kubeconfig.

The Helm releases of the real add-on charts are not installed here: no chart repository is
reachable from the test machines (helm_release itself is proven in tests/helm with a local
chart). The CRDs are cluster-wide and have fixed names, so only one test applies them.
"""
import json
import pathlib
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]

CRD_FILES = {
    "nodepools.karpenter.sh": "nodepools.karpenter.sh.yaml",
    "ec2nodeclasses.karpenter.k8s.aws": "ec2nodeclasses.karpenter.k8s.aws.yaml",
    "scaledobjects.keda.sh": "scaledobjects.keda.sh.yaml",
    "clusterpolicies.kyverno.io": "clusterpolicies.kyverno.io.yaml",
}


@pytest.fixture(scope="session")
def crd_dir():
    r = subprocess.run([str(ROOT / "tests" / "peers" / "addon_crds.sh")], capture_output=True,
                       text=True, timeout=900)
    # A peer that cannot be had fails the suite loudly, never skips.
    assert r.returncode == 0, f"tests/peers/addon_crds.sh failed:\n{r.stderr}"
    d = pathlib.Path(r.stdout.strip())
    for f in CRD_FILES.values():
        assert (d / f).is_file(), f"{d / f} missing"
    return d


def addons_stack(n, crd_dir, *, weight=10, max_replicas=5, with_crds=True):
    crds = ""
    if with_crds:
        for i, f in enumerate(CRD_FILES.values()):
            # The stack folder only sees its own files: the test copies the CRDs in.
            crds += f"""
    mle.resource("k8s_manifest", "crd{i}", {{
      manifest = mle.yamldecode(mle.file("crds/{f}")) }})"""
    return f"""
    local mle = require("mlengine")
    mle.driver("kubernetes", {{}})
    mle.driver("karpenter", {{}})
    mle.driver("keda", {{}})
    mle.driver("kyverno", {{}})
    {crds}
    local ns = mle.resource("k8s_manifest", "ns", {{ wait = "active", manifest = {{
      apiVersion = "v1", kind = "Namespace", metadata = {{ name = "{n}" }} }} }})

    -- No depends_on on the CRDs: each add-on type waits for its own CRD.
    mle.resource("karpenter_ec2_node_class", "default", {{
      name = "{n}-default",
      role = "KarpenterNodeRole-{n}",
      subnet_selector_terms = {{ {{ tags = {{ ["karpenter.sh/discovery"] = "{n}" }} }} }},
      security_group_selector_terms = {{ {{ tags = {{ ["karpenter.sh/discovery"] = "{n}" }} }} }},
      ami_selector_terms = {{ {{ alias = "al2023@v20240807" }} }},
      tags = {{ team = "ml" }},
      block_device_mappings = {{ {{ deviceName = "/dev/xvda",
        ebs = {{ volumeSize = "100Gi", volumeType = "gp3", encrypted = true }} }} }},
    }})
    mle.resource("karpenter_node_pool", "gpu", {{
      name = "{n}-gpu",
      node_class = "{n}-default",
      requirements = {{
        {{ key = "karpenter.sh/capacity-type", operator = "In", values = {{ "on-demand" }} }},
        {{ key = "karpenter.k8s.aws/instance-family", operator = "In",
           values = {{ "g5", "p4d" }} }},
      }},
      taints = {{ {{ key = "nvidia.com/gpu", value = "true", effect = "NoSchedule" }} }},
      limits = {{ cpu = "1000", memory = "1000Gi", ["nvidia.com/gpu"] = "8" }},
      disruption = {{ consolidationPolicy = "WhenEmpty", consolidateAfter = "5m" }},
      weight = {weight},
    }})
    mle.resource("keda_scaled_object", "predictor", {{
      name = "predictor", namespace = ns.manifest.metadata.name,
      scale_target = {{ apiVersion = "apps/v1", kind = "Deployment", name = "predictor" }},
      min_replicas = 1, max_replicas = {max_replicas},
      triggers = {{ {{ type = "prometheus", metadata = {{
        serverAddress = "http://prometheus.monitoring:9090",
        query = "sum(rate(revision_request_count{{namespace=\\"{n}\\"}}[1m]))",
        threshold = "10" }} }} }},
    }})
    mle.resource("kyverno_cluster_policy", "privileged", {{
      policy = mle.yamldecode(mle.file("policies/disallow-privileged-containers.yaml")),
    }})
    """


def prepare(stack, crd_dir):
    (stack.path / "crds").mkdir(exist_ok=True)
    for f in CRD_FILES.values():
        (stack.path / "crds" / f).write_text((crd_dir / f).read_text())
    (stack.path / "policies").mkdir(exist_ok=True)
    src = ROOT / "policies" / "kyverno" / "disallow-privileged-containers.yaml"
    (stack.path / "policies" / src.name).write_text(src.read_text())


def test_custom_resource_whose_crd_never_comes_fails_naming_it(stack, kube_cluster, names):
    assert not kube_cluster.exists("crd", "scaledobjects.keda.sh")
    stack.write(f"""
    local mle = require("mlengine")
    mle.driver("keda", {{}})
    mle.resource("keda_scaled_object", "so", {{
      name = "{names}", namespace = "default", wait_timeout = 2,
      scale_target = {{ name = "web" }},
      triggers = {{ {{ type = "cpu", metricType = "Utilization",
                       metadata = {{ value = "60" }} }} }},
    }})
    """)
    r = stack.run("apply", "stack.lua", "--auto-approve")
    out = r.stdout + r.stderr
    assert r.returncode != 0, out
    assert "CustomResourceDefinition scaledobjects.keda.sh was not established" in out, out
    assert "KEDA Helm release" in out, out


def test_addons_with_their_real_crds(stack, kube_cluster, names, crd_dir):
    k, n = kube_cluster, names
    prepare(stack, crd_dir)
    stack.write(addons_stack(n, crd_dir))
    r = stack.apply("-v")
    # The custom resources were dispatched alongside their CRDs and waited (in progress,
    # polled) rather than failing: the log says what each waited for.
    assert "waits for CustomResourceDefinition" in r.stderr, r.stderr[-3000:]

    for crd in CRD_FILES:
        c = k.kubectl_json("get", "crd", crd)
        assert any(x["type"] == "Established" and x["status"] == "True"
                   for x in c["status"]["conditions"]), crd

    np = k.kubectl_json("get", "nodepools.karpenter.sh", f"{n}-gpu")
    spec = np["spec"]["template"]["spec"]
    assert spec["nodeClassRef"] == {"group": "karpenter.k8s.aws", "kind": "EC2NodeClass",
                                    "name": f"{n}-default"}
    assert spec["requirements"][1]["values"] == ["g5", "p4d"]
    assert spec["taints"] == [{"key": "nvidia.com/gpu", "value": "true",
                               "effect": "NoSchedule"}]
    assert np["spec"]["limits"] == {"cpu": "1000", "memory": "1000Gi", "nvidia.com/gpu": "8"}
    assert np["spec"]["disruption"]["consolidationPolicy"] == "WhenEmpty"
    assert np["spec"]["weight"] == 10
    labels = np["metadata"]["labels"]
    assert labels["mlengine.io/address"] == "karpenter_node_pool.gpu"
    lineage = labels["mlengine.io/stack"]
    assert {m["manager"]: m["operation"] for m in np["metadata"]["managedFields"]} == \
        {"mlengine": "Apply"}

    nc = k.kubectl_json("get", "ec2nodeclasses.karpenter.k8s.aws", f"{n}-default")
    assert nc["spec"]["role"] == f"KarpenterNodeRole-{n}"
    assert nc["spec"]["amiSelectorTerms"] == [{"alias": "al2023@v20240807"}]
    assert nc["spec"]["blockDeviceMappings"][0]["ebs"]["volumeSize"] == "100Gi"
    assert nc["metadata"]["labels"]["mlengine.io/stack"] == lineage

    so = k.kubectl_json("get", "scaledobjects.keda.sh", "predictor", "-n", n)
    assert so["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                            "name": "predictor"}
    assert so["spec"]["minReplicaCount"] == 1 and so["spec"]["maxReplicaCount"] == 5
    assert so["spec"]["triggers"][0]["type"] == "prometheus"
    assert so["spec"]["triggers"][0]["metadata"]["threshold"] == "10"
    assert so["metadata"]["annotations"]["mlengine.io/address"] == \
        "keda_scaled_object.predictor"

    pol = k.kubectl_json("get", "clusterpolicies.kyverno.io", "disallow-privileged-containers")
    assert pol["spec"]["rules"][0]["name"]
    assert pol["metadata"]["labels"]["mlengine.io/address"] == \
        "kyverno_cluster_policy.privileged"

    st = stack.state_show("karpenter_node_pool.gpu")
    assert st["id"] == f"apiVersion=karpenter.sh/v1,kind=NodePool,name={n}-gpu"
    assert st["attributes"]["uid"] == np["metadata"]["uid"]

    # Right after an apply, a refresh finds nothing changed (the real CRDs' defaults, such as
    # disruption.budgets, are not drift).
    r = stack.ok("plan", "stack.lua", "--refresh", "--detailed-exitcode")

    # One field changed in the stack: only it changes.
    before_nc = nc["metadata"]["resourceVersion"]
    before_so = so["metadata"]["resourceVersion"]
    before_np = np
    stack.write(addons_stack(n, crd_dir, weight=20))
    r = stack.apply()
    assert "karpenter_node_pool.gpu" in r.stdout
    np2 = k.kubectl_json("get", "nodepools.karpenter.sh", f"{n}-gpu")
    assert np2["spec"]["weight"] == 20
    before_np["spec"]["weight"] = 20
    assert np2["spec"] == before_np["spec"]
    assert np2["metadata"]["labels"] == before_np["metadata"]["labels"]
    assert rv(k, "ec2nodeclasses.karpenter.k8s.aws", f"{n}-default") == before_nc
    assert rv(k, "scaledobjects.keda.sh", "predictor", "-n", n) == before_so

    # A field changed with kubectl is drift on the attribute that declares it.
    k.kubectl("patch", "scaledobjects.keda.sh", "predictor", "-n", n, "--type", "merge",
              "-p", json.dumps({"spec": {"maxReplicaCount": 9}}))
    r = stack.run("plan", "stack.lua", "--refresh", "--detailed-exitcode")
    assert r.returncode == 2, r.stdout + r.stderr
    assert "keda_scaled_object.predictor" in r.stdout and "max_replicas" in r.stdout, r.stdout

    # Destroy: everything goes (the CRDs take their instances with them).
    stack.ok("destroy", "stack.lua", "--auto-approve")
    for crd in CRD_FILES:
        assert not k.exists("crd", crd)
    assert stack.state_list() == []


def rv(k, *args):
    return k.kubectl_json("get", *args)["metadata"]["resourceVersion"]


@pytest.mark.parametrize("cloud,words", [
    ("azure", ["on AKS use node auto-provisioning", "node_provisioning_profile"]),
    ("gcp", ["on GKE use node auto-provisioning"]),
])
def test_karpenter_on_another_cloud_is_refused_naming_the_equivalent(stack, names, cloud,
                                                                      words):
    stack.write(f"""
    local mle = require("mlengine")
    mle.cloud("{cloud}")
    mle.driver("karpenter", {{}})
    mle.resource("karpenter_node_pool", "gpu", {{
      name = "{names}", node_class = "default",
      requirements = {{ {{ key = "kubernetes.io/arch", operator = "In",
                           values = {{ "amd64" }} }} }},
    }})
    """)
    r = stack.run("plan", "stack.lua")
    out = r.stdout + r.stderr
    assert r.returncode == 1, out
    assert "karpenter_node_pool (driver karpenter) is not available on " + cloud in out, out
    assert "Karpenter runs only on AWS" in out, out
    for w in words:
        assert w in out, out
    # KEDA and Kyverno are for every cloud.
    stack.write(f"""
    local mle = require("mlengine")
    mle.cloud("{cloud}")
    mle.driver("keda", {{}})
    mle.driver("kyverno", {{}})
    mle.resource("keda_scaled_object", "so", {{ name = "x", scale_target = {{ name = "w" }},
      triggers = {{ {{ type = "cpu", metadata = {{ value = "50" }} }} }} }})
    mle.resource("kyverno_cluster_policy", "p", {{ policy = {{
      metadata = {{ name = "p" }}, spec = {{ rules = {{}} }} }} }})
    """)
    stack.ok("validate", "stack.lua")


def test_render_writes_manifests_without_a_cluster(stack, names):
    stack.write(f"""
    local mle = require("mlengine")
    mle.driver("kubernetes", {{}})
    mle.driver("karpenter", {{}})
    mle.driver("keda", {{}})
    mle.resource("k8s_manifest", "cm", {{ manifest = {{
      apiVersion = "v1", kind = "ConfigMap",
      metadata = {{ name = "{names}", namespace = "ml" }}, data = {{ a = "1" }} }} }})
    mle.resource("k8s_manifest", "ns", {{ manifest = {{
      apiVersion = "v1", kind = "Namespace", metadata = {{ name = "{names}" }} }} }})
    mle.resource("karpenter_node_pool", "gpu", {{
      name = "{names}-gpu", node_class = "default", weight = 5,
      requirements = {{ {{ key = "kubernetes.io/arch", operator = "In",
                           values = {{ "amd64" }} }} }} }})
    mle.resource("keda_scaled_object", "so", {{ name = "so", namespace = "ml",
      scale_target = {{ name = "w" }},
      triggers = {{ {{ type = "cpu", metadata = {{ value = "50" }} }} }} }})
    """)
    out = stack.path / "out"
    # No kubeconfig and no cluster: render reads neither.
    stack.ok("render", "stack.lua", "--out", out,
             env={"KUBECONFIG": str(stack.path / "no-such-kubeconfig")})
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*.yaml"))
    assert files == [
        f"k8s_manifest.cm/configmap-ml-{names}.yaml",
        f"k8s_manifest.ns/namespace-{names}.yaml",
        f"karpenter_node_pool.gpu/nodepool-{names}-gpu.yaml",
        "keda_scaled_object.so/scaledobject-ml-so.yaml",
    ], files
    cm = (out / f"k8s_manifest.cm/configmap-ml-{names}.yaml").read_text()
    assert "kind: ConfigMap" in cm and f"name: {names}" in cm and "namespace: ml" in cm
    assert "mlengine.io/address: k8s_manifest.cm" in cm, cm
    assert "mlengine.io/stack:" in cm, cm
    np = (out / f"karpenter_node_pool.gpu/nodepool-{names}-gpu.yaml").read_text()
    assert "apiVersion: karpenter.sh/v1" in np and "kind: NodePool" in np, np
    assert "kind: EC2NodeClass" in np and "weight: 5" in np, np
    assert "mlengine.io/address: karpenter_node_pool.gpu" in np, np
