"""The kubernetes driver (k8s_manifest) against a real kube-apiserver on loopback.

What is proven here, each with kubectl as the independent witness:
  - namespaces, a ConfigMap, a CRD and a custom resource of it apply in one stack (the custom
    resource waits for the CRD through depends_on and the CRD's wait = "established");
  - a change of one field in the stack changes that field and nothing else;
  - a field changed out of band by kubectl is drift under `plan --refresh`, a re-apply hits
    the field-manager conflict, and force_conflicts takes the field back;
  - an object removed from the stack is deleted; an object kubectl made without the
    ownership label survives both that and destroy; destroy removes everything it made;
  - create refuses to take over an object it did not make, and import adopts it;
  - the connection through host + cluster_ca_certificate + token (a cluster's outputs);
  - a Deployment's wait = "available" is an in-progress operation polled by the engine,
    and it survives a kill -9 of mlengine while waiting; a wait that times out fails the
    apply without leaving the state stuck;
  - crash recovery adopts only objects carrying the stack's labels for the address, and an
    adopted object's unfinished wait goes on;
  - kubeconfig handling: client certificates and CA by relative paths, a named context and
    its namespace; refused: insecure-skip-tls-verify, exec plugins, a wrong CA;
  - API discovery is fetched again on a cache miss (a second CRD of a cached group);
    a kind nobody serves fails with a hint; a rename moves the object; multi-document YAML.
"""
import json
import signal
import sqlite3
import time

CRD_YAML = """
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: {plural}.{group}
spec:
  group: {group}
  scope: Namespaced
  names: {{plural: {plural}, singular: {singular}, kind: {kind}}}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
              size: {{type: integer}}
              color: {{type: string}}
"""


def lifecycle_stack(n, *, b_value="2", with_extra=True, force=False):
    """Two namespaces, a ConfigMap, a CRD + a custom resource of it, and (with_extra) a
    second ConfigMap to be removed later."""
    crd = CRD_YAML.format(plural="gadgets", singular="gadget", kind="Gadget",
                          group=f"{n}.example.com")
    extra = f"""
    mle.resource("k8s_manifest", "extra", {{ manifest = {{
      apiVersion = "v1", kind = "ConfigMap",
      metadata = {{ name = "extra", namespace = a.manifest.metadata.name }},
      data = {{ k = "v" }} }} }})
    """ if with_extra else ""
    return f"""
    local mle = require("mlengine")
    mle.driver("kubernetes", {{}})
    local a = mle.resource("k8s_manifest", "ns_a", {{ wait = "active", manifest = {{
      apiVersion = "v1", kind = "Namespace", metadata = {{ name = "{n}-a" }} }} }})
    local b = mle.resource("k8s_manifest", "ns_b", {{ manifest = {{
      apiVersion = "v1", kind = "Namespace",
      metadata = {{ name = "{n}-b", labels = {{ team = "ml" }} }} }} }})
    mle.resource("k8s_manifest", "settings", {{ force_conflicts = {str(force).lower()},
      manifest = {{
        apiVersion = "v1", kind = "ConfigMap",
        metadata = {{ name = "settings", namespace = a.manifest.metadata.name,
                      labels = {{ app = "demo" }} }},
        data = {{ a = "1", b = "{b_value}" }} }} }})
    local crd = mle.resource("k8s_manifest", "crd", {{ wait = "established",
      manifest = mle.yamldecode([[{crd}]]) }})
    mle.resource("k8s_manifest", "gadget", {{ depends_on = {{ crd }}, manifest = {{
      apiVersion = "{n}.example.com/v1", kind = "Gadget",
      metadata = {{ name = "g1", namespace = b.manifest.metadata.name }},
      spec = {{ size = 3, color = "red" }} }} }})
    {extra}
    """


def rv(k, *args):
    return k.kubectl_json("get", *args)["metadata"]["resourceVersion"]


def test_lifecycle(stack, kube_cluster, names):
    k, n = kube_cluster, names
    stack.write(lifecycle_stack(n))
    stack.apply()

    # kubectl sees everything, with the fields the stack set and the ownership labels.
    lineage_labels = k.kubectl_json("get", "ns", f"{n}-a")["metadata"]["labels"]
    assert lineage_labels["mlengine.io/address"] == "k8s_manifest.ns_a"
    lineage = lineage_labels["mlengine.io/stack"]
    assert len(lineage) == 36
    assert k.kubectl_json("get", "ns", f"{n}-b")["metadata"]["labels"]["team"] == "ml"
    cm = k.kubectl_json("get", "configmap", "settings", "-n", f"{n}-a")
    assert cm["data"] == {"a": "1", "b": "2"}
    assert cm["metadata"]["labels"]["app"] == "demo"
    assert cm["metadata"]["labels"]["mlengine.io/stack"] == lineage
    assert cm["metadata"]["annotations"]["mlengine.io/address"] == "k8s_manifest.settings"
    crd = k.kubectl_json("get", "crd", f"gadgets.{n}.example.com")
    assert any(c["type"] == "Established" and c["status"] == "True"
               for c in crd["status"]["conditions"])
    g = k.kubectl_json("get", f"gadgets.{n}.example.com", "g1", "-n", f"{n}-b")
    assert g["spec"] == {"size": 3, "color": "red"}
    managers = {m["manager"]: m["operation"] for m in cm["metadata"]["managedFields"]}
    assert managers == {"mlengine": "Apply"}

    st = stack.state_show("k8s_manifest.settings")
    assert st["id"] == f"apiVersion=v1,kind=ConfigMap,namespace={n}-a,name=settings"
    assert st["attributes"]["uid"] == cm["metadata"]["uid"]
    assert st["attributes"]["live"]["data"] == {"a": "1", "b": "2"}

    # A second apply changes nothing, and a refresh finds no drift.
    r = stack.ok("plan", "stack.lua", "--refresh", "--detailed-exitcode")
    assert "No changes" in r.stdout, r.stdout

    # An object kubectl makes without the label, in a namespace the stack does not own.
    k.kubectl("create", "configmap", f"{n}-stray", "-n", "default", "--from-literal=x=1")
    # A field another manager adds to the stack's ConfigMap is not the stack's business.
    k.kubectl("label", "configmap", "settings", "-n", f"{n}-a", "owner=someone-else")

    # Change one field in the stack: that field changes, nothing else does.
    before = {what: rv(k, *what) for what in [
        ("ns", f"{n}-a"), ("ns", f"{n}-b"), ("crd", f"gadgets.{n}.example.com"),
        (f"gadgets.{n}.example.com", "g1", "-n", f"{n}-b"),
        ("configmap", "extra", "-n", f"{n}-a")]}
    stack.write(lifecycle_stack(n, b_value="3"))
    r = stack.apply()
    assert "1 updated" in r.stdout and "0 created" in r.stdout, r.stdout
    cm2 = k.kubectl_json("get", "configmap", "settings", "-n", f"{n}-a")
    assert cm2["data"] == {"a": "1", "b": "3"}
    assert cm2["metadata"]["labels"]["owner"] == "someone-else"
    assert cm2["metadata"]["uid"] == cm["metadata"]["uid"]
    for what, version in before.items():
        assert rv(k, *what) == version, f"{what} changed though the stack did not change it"

    # Drift: kubectl changes a field the stack sets.
    k.kubectl("patch", "configmap", "settings", "-n", f"{n}-a", "--type", "merge",
              "-p", '{"data":{"a":"changed-by-kubectl"}}')
    r = stack.run("plan", "stack.lua", "--refresh", "--detailed-exitcode")
    assert r.returncode == 2, r.stdout + r.stderr
    assert "k8s_manifest.settings changed outside mlengine" in r.stdout, r.stdout
    assert "changed-by-kubectl" in r.stdout
    assert "k8s_manifest.settings (update in place)" in r.stdout
    for other in ("ns_a", "ns_b", "crd", "gadget", "extra"):
        assert f"k8s_manifest.{other} changed outside" not in r.stdout
    # The field now belongs to kubectl's field manager: taking it back is a conflict...
    r = stack.run("apply", "stack.lua", "--auto-approve")
    assert r.returncode != 0
    assert "conflict" in (r.stdout + r.stderr).lower()
    assert "force_conflicts" in r.stdout + r.stderr
    assert k.kubectl_json("get", "configmap", "settings", "-n",
                          f"{n}-a")["data"]["a"] == "changed-by-kubectl"
    # ... that force_conflicts resolves.
    stack.write(lifecycle_stack(n, b_value="3", force=True))
    stack.apply()
    cm3 = k.kubectl_json("get", "configmap", "settings", "-n", f"{n}-a")
    assert cm3["data"] == {"a": "1", "b": "3"}
    r = stack.ok("plan", "stack.lua", "--refresh", "--detailed-exitcode")
    assert "No changes" in r.stdout, r.stdout

    # An object removed from the stack is deleted; the kubectl-made one is not touched.
    stack.write(lifecycle_stack(n, b_value="3", force=True, with_extra=False))
    r = stack.apply()
    assert "1 deleted" in r.stdout, r.stdout
    assert not k.exists("configmap", "extra", "-n", f"{n}-a")
    assert k.exists("configmap", f"{n}-stray", "-n", "default")
    assert "k8s_manifest.extra" not in stack.state_list()

    # Destroy: everything the stack made is gone (the namespaces really, not Terminating).
    stack.ok("destroy", "stack.lua", "--auto-approve")
    assert not k.exists("ns", f"{n}-a")
    assert not k.exists("ns", f"{n}-b")
    assert not k.exists("crd", f"gadgets.{n}.example.com")
    assert stack.state_list() == []
    assert k.exists("configmap", f"{n}-stray", "-n", "default")
    k.kubectl("delete", "configmap", f"{n}-stray", "-n", "default")


def cm_stack(n, name, data='{ x = "1" }', extra_driver=""):
    return f"""
    local mle = require("mlengine")
    mle.driver("kubernetes", {{ {extra_driver} }})
    mle.resource("k8s_manifest", "cm", {{ manifest = {{
      apiVersion = "v1", kind = "ConfigMap",
      metadata = {{ name = "{name}", namespace = "default" }}, data = {data} }} }})
    """


def test_create_refuses_an_object_it_did_not_make_and_import_adopts_it(stack, kube_cluster,
                                                                       names):
    k, name = kube_cluster, f"{names}-cm"
    k.kubectl("create", "configmap", name, "-n", "default", "--from-literal=x=0",
              "--from-literal=mine=yes")
    stack.write(cm_stack(names, name))
    r = stack.run("apply", "stack.lua", "--auto-approve")
    assert r.returncode != 0
    out = r.stdout + r.stderr
    assert "already exists and is not managed by this stack" in out, out
    assert "mlengine import" in out
    cm = k.kubectl_json("get", "configmap", name, "-n", "default")
    assert cm["data"] == {"x": "0", "mine": "yes"}
    assert "mlengine.io/stack" not in cm["metadata"].get("labels", {})
    assert stack.state_list() == []

    stack.ok("import", "stack.lua", "k8s_manifest.cm",
             f"apiVersion=v1,kind=ConfigMap,namespace=default,name={name}")
    # Imported: the stack's fields differ from the live ones, and no labels yet.
    r = stack.run("plan", "stack.lua", "--detailed-exitcode")
    assert r.returncode == 2 and "update in place" in r.stdout, r.stdout + r.stderr
    # kubectl create's field manager owns x: the stack's value conflicts until forced.
    stack.write(cm_stack(names, name).replace("manifest = {", "force_conflicts = true, "
                                              "manifest = {", 1))
    stack.apply()
    cm = k.kubectl_json("get", "configmap", name, "-n", "default")
    assert cm["data"]["x"] == "1"
    assert cm["data"]["mine"] == "yes"  # not the stack's field: left alone
    assert cm["metadata"]["labels"]["mlengine.io/address"] == "k8s_manifest.cm"
    stack.ok("destroy", "stack.lua", "--auto-approve")
    assert not k.exists("configmap", name, "-n", "default")


def test_connection_from_host_ca_and_token(stack, kube_cluster, names):
    k, name = kube_cluster, f"{names}-cm"
    (stack.path / "ca.pem").write_text(k.ca_pem)
    stack.write(f"""
    local mle = require("mlengine")
    mle.driver("kubernetes", {{
      host = "{k.url}",
      cluster_ca_certificate = mle.file("ca.pem"),
      token = mle.var("token", {{ sensitive = true }}),
    }})
    mle.resource("k8s_manifest", "cm", {{ manifest = {{
      apiVersion = "v1", kind = "ConfigMap",
      metadata = {{ name = "{name}", namespace = "default" }}, data = {{ x = "1" }} }} }})
    """)
    # No kubeconfig anywhere: the options alone must do.
    env = {"KUBECONFIG": str(stack.path / "missing")}
    r = stack.ok("apply", "stack.lua", "--auto-approve", "-v", env={
        **env, "MLENGINE_VAR_token": k.token})
    assert k.token not in r.stdout + r.stderr
    assert k.kubectl_json("get", "configmap", name, "-n", "default")["data"] == {"x": "1"}

    # A wrong token is an authentication error that names the fix.
    r = stack.run("plan", "stack.lua", "--refresh", env={**env, "MLENGINE_VAR_token": "nope"})
    assert r.returncode != 0
    assert "credentials" in r.stdout + r.stderr
    stack.ok("destroy", "stack.lua", "--auto-approve", env={**env, "MLENGINE_VAR_token": k.token})
    assert not k.exists("configmap", name, "-n", "default")


def test_kubeconfig_with_client_certificate_files(stack, kube_cluster, names):
    """A kubeconfig that names its CA and client certificate by paths relative to itself,
    and a context other than the current one."""
    k, name = kube_cluster, f"{names}-cm"
    conf = stack.path / "conf"
    conf.mkdir()
    k.client_cert(conf)
    (conf / "ca.crt").write_text(k.ca_pem)
    (conf / "config").write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "broken",
        "clusters": [{"name": "c", "cluster": {"server": k.url,
                                               "certificate-authority": "ca.crt"}}],
        "users": [{"name": "u", "user": {"client-certificate": "client.crt",
                                         "client-key": "client.key"}}],
        "contexts": [{"name": "certs", "context": {"cluster": "c", "user": "u",
                                                   "namespace": "kube-public"}},
                     {"name": "broken", "context": {"cluster": "nope", "user": "u"}}],
    }))
    stack.write(f"""
    local mle = require("mlengine")
    mle.driver("kubernetes", {{ kubeconfig = "conf/config", context = "certs" }})
    mle.resource("k8s_manifest", "cm", {{ manifest = {{
      apiVersion = "v1", kind = "ConfigMap", metadata = {{ name = "{name}" }},
      data = {{ x = "1" }} }} }})
    """)
    stack.apply()
    # No namespace in the manifest: the context's.
    cm = k.kubectl_json("get", "configmap", name, "-n", "kube-public")
    assert cm["data"] == {"x": "1"}
    assert [m["manager"] for m in cm["metadata"]["managedFields"]] == ["mlengine"]
    assert stack.state_show("k8s_manifest.cm")["id"] == \
        f"apiVersion=v1,kind=ConfigMap,namespace=kube-public,name={name}"
    stack.ok("destroy", "stack.lua", "--auto-approve")
    assert not k.exists("configmap", name, "-n", "kube-public")


def test_kubeconfig_errors_are_clear(stack, kube_cluster, names):
    stack.write(cm_stack(names, f"{names}-cm", extra_driver='context = "nope"'))
    r = stack.run("apply", "stack.lua", "--auto-approve")
    assert r.returncode != 0
    assert 'has no context "nope"' in r.stdout + r.stderr
    stack.write(cm_stack(names, f"{names}-cm"))
    r = stack.run("apply", "stack.lua", "--auto-approve",
                  env={"KUBECONFIG": str(stack.path / "none")})
    assert r.returncode != 0
    assert "no kubeconfig file found" in r.stdout + r.stderr
    # TLS verification cannot be switched off, and credential plugins are not run.
    conf = json.loads(kube_cluster.kubeconfig_text())
    conf["clusters"][0]["cluster"]["insecure-skip-tls-verify"] = True
    (stack.path / "insecure").write_text(json.dumps(conf))
    r = stack.run("apply", "stack.lua", "--auto-approve",
                  env={"KUBECONFIG": str(stack.path / "insecure")})
    assert r.returncode != 0 and "insecure-skip-tls-verify" in r.stdout + r.stderr
    conf = json.loads(kube_cluster.kubeconfig_text())
    conf["users"][0]["user"] = {"exec": {"command": "aws", "args": ["eks", "get-token"]}}
    (stack.path / "exec").write_text(json.dumps(conf))
    r = stack.run("apply", "stack.lua", "--auto-approve",
                  env={"KUBECONFIG": str(stack.path / "exec")})
    assert r.returncode != 0 and "exec or auth-provider plugin" in r.stdout + r.stderr
    # A server whose certificate the given CA did not sign is refused (TLS verified).
    other = json.loads(kube_cluster.kubeconfig_text())
    import base64
    bogus_ca = kube_cluster.client_cert(stack.path)[0].read_text()  # a cert, not the CA
    other["clusters"][0]["cluster"]["certificate-authority-data"] = \
        base64.b64encode(bogus_ca.encode()).decode()
    (stack.path / "wrong-ca").write_text(json.dumps(other))
    r = stack.run("apply", "stack.lua", "--auto-approve",
                  env={"KUBECONFIG": str(stack.path / "wrong-ca")})
    assert r.returncode != 0
    assert "not signed by the cluster CA" in r.stdout + r.stderr, r.stdout + r.stderr
    assert not kube_cluster.exists("configmap", f"{names}-cm", "-n", "default")


def deployment_stack(n, timeout=600):
    return f"""
    local mle = require("mlengine")
    mle.driver("kubernetes", {{}})
    mle.resource("k8s_manifest", "web", {{ wait = "available", wait_timeout = {timeout},
      manifest = {{
        apiVersion = "apps/v1", kind = "Deployment",
        metadata = {{ name = "{n}-web", namespace = "default" }},
        spec = {{
          replicas = 1,
          selector = {{ matchLabels = {{ app = "{n}" }} }},
          template = {{
            metadata = {{ labels = {{ app = "{n}" }} }},
            spec = {{ containers = {{ {{ name = "web", image = "registry.invalid/web:1" }} }} }},
          }},
        }} }} }})
    """


def mark_available(k, name):
    """Play the deployment controller (none runs here): report the rollout Available."""
    gen = k.kubectl_json("get", "deployment", name, "-n", "default")["metadata"]["generation"]
    status = {"status": {"observedGeneration": gen, "replicas": 1, "readyReplicas": 1,
                         "updatedReplicas": 1, "availableReplicas": 1,
                         "conditions": [{"type": "Available", "status": "True",
                                         "reason": "MinimumReplicasAvailable",
                                         "message": "test", "lastUpdateTime":
                                         "2026-01-01T00:00:00Z", "lastTransitionTime":
                                         "2026-01-01T00:00:00Z"}]}}
    k.kubectl("patch", "deployment", name, "-n", "default", "--subresource=status",
              "--type=merge", "-p", json.dumps(status))


def wait_for(cond, timeout=30, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_wait_available_is_polled_and_survives_kill(stack, kube_cluster, names):
    k, name = kube_cluster, f"{names}-web"
    stack.write(deployment_stack(names))
    p = stack.popen("apply", "stack.lua", "--auto-approve")
    try:
        wait_for(lambda: k.exists("deployment", name, "-n", "default"), what="the deployment")
        time.sleep(1.0)
        assert p.poll() is None, "apply returned before the deployment was available"
        # kill -9 while the wait is in progress: the state knows the operation is pending.
        p.send_signal(signal.SIGKILL)
        p.wait(timeout=10)
    finally:
        if p.poll() is None:
            p.kill()
    mark_available(k, name)
    # The next run resumes the pending wait (no second create) and finishes it.
    uid = k.kubectl_json("get", "deployment", name, "-n", "default")["metadata"]["uid"]
    stack.apply()
    st = stack.state_show("k8s_manifest.web")
    assert st["attributes"]["uid"] == uid
    assert k.kubectl_json("get", "deployment", name, "-n", "default")["metadata"]["uid"] == uid
    r = stack.ok("plan", "stack.lua", "--refresh", "--detailed-exitcode")
    assert "No changes" in r.stdout, r.stdout

    # A wait that cannot finish gives up after wait_timeout with a clear error.
    stack.write(deployment_stack(names, timeout=2).replace('image = "registry.invalid/web:1"',
                                                           'image = "registry.invalid/web:2"'))
    r = stack.run("apply", "stack.lua", "--auto-approve")
    assert r.returncode != 0
    assert "gave up after" in r.stdout + r.stderr and "Available" in r.stdout + r.stderr
    # A later run is not stuck on the failed wait (the engine still records it as in
    # progress): the wait is recorded as timed out, so the plan shows the apply again...
    time.sleep(6)
    r = stack.run("apply", "stack.lua", "--auto-approve")
    assert r.returncode != 0 and "gave up after" in r.stdout + r.stderr, r.stdout + r.stderr
    assert "k8s_manifest.web (update" in r.stdout, r.stdout
    time.sleep(6)
    # ... and destroy goes through.
    stack.ok("destroy", "stack.lua", "--auto-approve")
    assert not k.exists("deployment", name, "-n", "default")


def test_custom_resource_without_its_crd_fails_clearly(stack, kube_cluster, names):
    stack.write(f"""
    local mle = require("mlengine")
    mle.driver("kubernetes", {{}})
    mle.resource("k8s_manifest", "thing", {{ manifest = {{
      apiVersion = "{names}.example.com/v1", kind = "Thing",
      metadata = {{ name = "t", namespace = "default" }} }} }})
    """)
    r = stack.run("apply", "stack.lua", "--auto-approve")
    assert r.returncode != 0
    out = r.stdout + r.stderr
    assert "does not serve kind Thing" in out, out
    assert "CustomResourceDefinition" in out
    assert stack.state_list() == []


def test_rename_moves_the_object(stack, kube_cluster, names):
    k = kube_cluster
    stack.write(cm_stack(names, f"{names}-one"))
    stack.apply()
    stack.write(cm_stack(names, f"{names}-two"))
    stack.apply()
    assert not k.exists("configmap", f"{names}-one", "-n", "default")
    assert k.exists("configmap", f"{names}-two", "-n", "default")
    assert stack.state_show("k8s_manifest.cm")["id"].endswith(f"name={names}-two")
    stack.ok("destroy", "stack.lua", "--auto-approve")
    assert not k.exists("configmap", f"{names}-two", "-n", "default")


def test_delete_of_an_object_already_gone_is_fine(stack, kube_cluster, names):
    k, name = kube_cluster, f"{names}-cm"
    stack.write(cm_stack(names, name))
    stack.apply()
    k.kubectl("delete", "configmap", name, "-n", "default")
    r = stack.ok("plan", "stack.lua", "--refresh")
    assert "k8s_manifest.cm was deleted outside mlengine" in r.stdout, r.stdout
    assert "k8s_manifest.cm (create)" in r.stdout, r.stdout
    # Destroy with the object already gone: the delete's 404 is "not found", which is done.
    r = stack.ok("destroy", "stack.lua", "--auto-approve")
    assert stack.state_list() == []


def test_discovery_is_fetched_again_on_a_miss(stack, kube_cluster, names):
    """Two CRDs of one group, ordered so the group version is discovered (and cached) with
    only the first kind; the second kind, established later in the same run, is a cache miss
    that must fetch discovery again."""
    k, n = kube_cluster, names
    group = f"{n}.example.com"
    crd1 = CRD_YAML.format(plural="sprockets", singular="sprocket", kind="Sprocket", group=group)
    crd2 = CRD_YAML.format(plural="cogs", singular="cog", kind="Cog", group=group)
    stack.write(f"""
    local mle = require("mlengine")
    mle.driver("kubernetes", {{}})
    local crd1 = mle.resource("k8s_manifest", "crd1", {{ wait = "established",
      manifest = mle.yamldecode([[{crd1}]]) }})
    local s = mle.resource("k8s_manifest", "sprocket", {{ depends_on = {{ crd1 }}, manifest = {{
      apiVersion = "{group}/v1", kind = "Sprocket",
      metadata = {{ name = "s1", namespace = "default" }}, spec = {{ size = 1 }} }} }})
    local crd2 = mle.resource("k8s_manifest", "crd2", {{ depends_on = {{ s }},
      manifest = mle.yamldecode([[{crd2}]]) }})
    mle.resource("k8s_manifest", "cog", {{ depends_on = {{ crd2 }}, manifest = {{
      apiVersion = "{group}/v1", kind = "Cog",
      metadata = {{ name = "c1", namespace = "default" }}, spec = {{ size = 2 }} }} }})
    """)
    r = stack.apply("-v")
    discoveries = [l for l in r.stderr.splitlines() if f"GET /apis/{group}/v1" in l
                   and "[kubernetes]" in l]
    assert len(discoveries) >= 2, r.stderr  # cached once, fetched again on the miss
    assert k.kubectl_json("get", f"sprockets.{group}", "s1", "-n", "default")["spec"] == {"size": 1}
    assert k.kubectl_json("get", f"cogs.{group}", "c1", "-n", "default")["spec"] == {"size": 2}
    stack.ok("destroy", "stack.lua", "--auto-approve")
    assert not k.exists("crd", f"sprockets.{group}")
    assert not k.exists("crd", f"cogs.{group}")


def test_multi_document_yaml_file(stack, kube_cluster, names):
    """A manifest file with several documents, one resource each (mle.yamldecode_all)."""
    k, n = kube_cluster, names
    stack.write(f"""
    apiVersion: v1
    kind: Namespace
    metadata: {{name: {n}}}
    ---
    apiVersion: v1
    kind: ConfigMap
    metadata: {{name: one, namespace: {n}}}
    data: {{x: "1"}}
    ---
    apiVersion: v1
    kind: ServiceAccount
    metadata: {{name: runner, namespace: {n}}}
    """, name="objects.yaml")
    stack.write("""
    local mle = require("mlengine")
    mle.driver("kubernetes", {})
    local ns
    for _, doc in ipairs(mle.yamldecode_all(mle.file("objects.yaml"))) do
      local name = string.lower(doc.kind) .. "_" .. doc.metadata.name
      local deps = ns and { ns } or nil
      local r = mle.resource("k8s_manifest", name, { manifest = doc, depends_on = deps })
      if doc.kind == "Namespace" then ns = r end
    end
    """)
    stack.apply()
    assert k.kubectl_json("get", "configmap", "one", "-n", n)["data"] == {"x": "1"}
    assert k.exists("serviceaccount", "runner", "-n", n)
    assert sorted(stack.state_list()) == sorted([
        f"k8s_manifest.namespace_{n}", "k8s_manifest.configmap_one",
        "k8s_manifest.serviceaccount_runner"])
    stack.ok("destroy", "stack.lua", "--auto-approve")
    assert not k.exists("ns", n)


def crash_after_apply(stack, address):
    """Make the state what a kill -9 right after the server applied the object leaves: the
    create's intent (status PENDING_CREATE), with no ID and no attributes."""
    db = sqlite3.connect(stack.path / ".mlengine" / "state.db")
    try:
        with db:
            n = db.execute("UPDATE resources SET status = 1, id = NULL, attrs = NULL, "
                           "token = 'crash-token' WHERE address = ?", (address,)).rowcount
        assert n == 1
    finally:
        db.close()


def test_crash_recovery_adopts_only_what_carries_the_stack_labels(stack, kube_cluster, names):
    k, n = kube_cluster, names
    stack.write(f"""
    local mle = require("mlengine")
    mle.driver("kubernetes", {{}})
    for _, name in ipairs({{ "made", "never", "foreign" }}) do
      mle.resource("k8s_manifest", name, {{ manifest = {{
        apiVersion = "v1", kind = "ConfigMap",
        metadata = {{ name = "{n}-" .. name, namespace = "default" }}, data = {{ x = "1" }} }} }})
    end
    """)
    stack.apply()
    uid_made = k.kubectl_json("get", "configmap", f"{n}-made", "-n", "default")["metadata"]["uid"]
    for name in ("made", "never", "foreign"):
        crash_after_apply(stack, f"k8s_manifest.{name}")
    # "never": the create had not reached the server. "foreign": someone else's object now
    # has the name (kubectl, no labels).
    k.kubectl("delete", "configmap", f"{n}-never", "-n", "default")
    k.kubectl("delete", "configmap", f"{n}-foreign", "-n", "default")
    k.kubectl("create", "configmap", f"{n}-foreign", "-n", "default", "--from-literal=x=theirs")

    r = stack.run("apply", "stack.lua", "--auto-approve")
    out = r.stdout + r.stderr
    # made: adopted, not made again; never: the intent dropped, then created;
    # foreign: not adopted, and the create refuses to take it over.
    assert r.returncode != 0, out
    assert k.kubectl_json("get", "configmap", f"{n}-made", "-n",
                          "default")["metadata"]["uid"] == uid_made
    assert stack.state_show("k8s_manifest.made")["attributes"]["uid"] == uid_made
    assert k.kubectl_json("get", "configmap", f"{n}-never", "-n", "default")["data"] == {"x": "1"}
    assert "k8s_manifest.never" in stack.state_list()
    assert "already exists and is not managed by this stack" in out
    foreign = k.kubectl_json("get", "configmap", f"{n}-foreign", "-n", "default")
    assert foreign["data"] == {"x": "theirs"}
    assert "k8s_manifest.foreign" not in stack.state_list()

    k.kubectl("delete", "configmap", f"{n}-foreign", "-n", "default")
    stack.apply()
    stack.ok("destroy", "stack.lua", "--auto-approve")
    for name in ("made", "never", "foreign"):
        assert not k.exists("configmap", f"{n}-{name}", "-n", "default")


def test_adopt_carries_on_an_unfinished_wait(stack, kube_cluster, names):
    """kill -9 after the server applied a Deployment but before its wait was recorded: the
    next run adopts it (it carries the labels) and still waits for it to be Available."""
    k, name = kube_cluster, f"{names}-web"
    stack.write(deployment_stack(names))
    p = stack.popen("apply", "stack.lua", "--auto-approve")
    try:
        wait_for(lambda: k.exists("deployment", name, "-n", "default"), what="the deployment")
        mark_available(k, name)
        assert p.wait(timeout=60) == 0, p.stderr.read()
    finally:
        if p.poll() is None:
            p.kill()
    crash_after_apply(stack, "k8s_manifest.web")
    unavailable = {"status": {"conditions": [{"type": "Available", "status": "False",
                                              "reason": "MinimumReplicasUnavailable",
                                              "message": "test"}]}}
    k.kubectl("patch", "deployment", name, "-n", "default", "--subresource=status",
              "--type=merge", "-p", json.dumps(unavailable))
    p = stack.popen("apply", "stack.lua", "--auto-approve")
    try:
        time.sleep(2)
        assert p.poll() is None, "the adopted deployment was not waited for"
        mark_available(k, name)
        out, err = p.communicate(timeout=60)
        assert p.returncode == 0, out + err
    finally:
        if p.poll() is None:
            p.kill()
    assert "adopt" in (out + err).lower(), out + err
    st = stack.state_show("k8s_manifest.web")
    assert st["attributes"]["uid"] == k.kubectl_json("get", "deployment", name, "-n",
                                                     "default")["metadata"]["uid"]
    stack.ok("destroy", "stack.lua", "--auto-approve")
    assert not k.exists("deployment", name, "-n", "default")
