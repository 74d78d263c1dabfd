"""Token providers of the Kubernetes drivers (drivers/common/k8s_client.c, option
token_provider with host + cluster_ca_certificate): each one against a loopback peer that
checks what it receives the way the real identity service would (tests/peers/token_peer.py),
and the token it gets used against the real test kube-apiserver:

  - gke: a service account key file (GOOGLE_APPLICATION_CREDENTIALS) whose token_uri is the
    peer; the peer verifies the RS256 JWT with the key's public half, its claims and expiry,
    and hands out a token the API server's static token file holds; a ConfigMap applied with
    it is seen by kubectl. GOOGLE_OAUTH_ACCESS_TOKEN is used as given.
  - aks: workload identity (AZURE_CLIENT_ID, AZURE_TENANT_ID, AZURE_FEDERATED_TOKEN_FILE,
    AZURE_AUTHORITY_HOST = the peer); the peer checks the client-credentials form (grant type,
    client id, the AKS server application's scope, the federated token as client assertion).
    A short-lived token is fetched again during one long apply. A wrong assertion fails with
    the service's error.
  - eks: kube-apiserver cannot validate an EKS token (EKS does it in a webhook), so `host`
    points at an HTTPS front (its certificate is the API server's: TLS is verified with the
    cluster CA) that plays the EKS authenticator: it decodes `k8s-aws-v1.<base64url>` and
    recomputes the presigned STS URL's SigV4 signature with the test's secret key, as STS does
    when the authenticator replays it, checks it is bound to the configured cluster name and
    fresh, and forwards the request with the cluster's admin token. A token for another
    cluster name is refused.
  - no token, key, assertion or secret ever shows in mlengine's output, even with -v.
  - misconfigurations fail with a message naming the fix.
"""
import json
import secrets
import subprocess
import sys
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "peers"))

from token_peer import (AzureTokenPeer, EksAuthProxy, GoogleTokenPeer,  # noqa: E402
                        StsWebIdentityPeer)

# Every variable the providers read: tests set only what they mean to.
CLOUD_ENV = ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_REGION",
             "AWS_DEFAULT_REGION", "AWS_PROFILE", "AZURE_CLIENT_ID", "AZURE_TENANT_ID",
             "AZURE_FEDERATED_TOKEN_FILE", "AZURE_CLIENT_SECRET", "AZURE_AUTHORITY_HOST",
             "GOOGLE_OAUTH_ACCESS_TOKEN", "GOOGLE_APPLICATION_CREDENTIALS", "CLOUDSDK_CONFIG",
             "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_ARN", "AWS_ENDPOINT_URL_STS", "AWS_ENDPOINT_URL"]


def clean_env(stack):
    for k in CLOUD_ENV:
        stack.env.pop(k, None)
    # No kubeconfig anywhere: host + CA + the provider alone must do.
    stack.env["KUBECONFIG"] = str(stack.path / "missing")


def provider_stack(stack, k, name, provider, extra="", host=None, resources=None):
    (stack.path / "ca.pem").write_text(k.ca_pem)
    res = resources or f"""
    mle.resource("k8s_manifest", "cm", {{ manifest = {{
      apiVersion = "v1", kind = "ConfigMap",
      metadata = {{ name = "{name}", namespace = "default" }}, data = {{ x = "1" }} }} }})
    """
    stack.write(f"""
    local mle = require("mlengine")
    mle.driver("kubernetes", {{
      host = "{host or k.url}",
      cluster_ca_certificate = mle.file("ca.pem"),
      token_provider = "{provider}",
      {extra}
    }})
    {res}
    """)


def no_leak(r, *values):
    out = r.stdout + r.stderr
    for v in values:
        assert v and v not in out, f"a credential appeared in mlengine's output:\n{out}"


def service_account_key(d, token_uri):
    """A real RSA service account key file (as `gcloud iam service-accounts keys create` writes
    it) and its public key PEM."""
    subprocess.run(["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048",
                    "-out", str(d / "sa.key")], check=True, capture_output=True)
    pub = subprocess.run(["openssl", "pkey", "-in", str(d / "sa.key"), "-pubout"], check=True,
                         capture_output=True, text=True).stdout
    key = {
        "type": "service_account", "project_id": "mle-test",
        "private_key_id": secrets.token_hex(20),
        "private_key": (d / "sa.key").read_text(),
        "client_email": "deployer@mle-test.iam.gserviceaccount.com",
        "client_id": "1234567890", "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": token_uri,
    }
    (d / "sa.json").write_text(json.dumps(key))
    return key, pub


# ----------------------------------------------------------------------------------------- gke

def test_gke_service_account_key(stack, kube_cluster, names):
    k, name = kube_cluster, f"{names}-cm"
    clean_env(stack)
    peer = GoogleTokenPeer(None, "deployer@mle-test.iam.gserviceaccount.com", None, k.token)
    with peer:
        key, pub = service_account_key(stack.path, peer.url + "/token")
        peer.public_key_pem, peer.key_id = pub, key["private_key_id"]
        provider_stack(stack, k, name, "gke")
        env = {"GOOGLE_APPLICATION_CREDENTIALS": str(stack.path / "sa.json")}
        r = stack.ok("apply", "stack.lua", "--auto-approve", "-v", env=env)
        assert peer.rejections == []
        assert len(peer.requests) == 1, peer.requests  # one token for the whole run
        claims = peer.requests[0]["claims"]
        assert claims["iss"] == key["client_email"]
        assert k.kubectl_json("get", "configmap", name, "-n", "default")["data"] == {"x": "1"}
        no_leak(r, k.token, peer.requests[0]["form"]["assertion"],
                key["private_key"].splitlines()[1])

        stack.ok("destroy", "stack.lua", "--auto-approve", env=env)
        assert not k.exists("configmap", name, "-n", "default")
        assert peer.rejections == []


def test_gke_key_signed_by_another_key_is_refused(stack, kube_cluster, names):
    k, name = kube_cluster, f"{names}-cm"
    clean_env(stack)
    other = stack.path / "other"
    other.mkdir()
    with GoogleTokenPeer(None, "deployer@mle-test.iam.gserviceaccount.com", None, k.token) as peer:
        key, _ = service_account_key(stack.path, peer.url + "/token")
        _, other_pub = service_account_key(other, peer.url + "/token")
        peer.public_key_pem, peer.key_id = other_pub, key["private_key_id"]
        provider_stack(stack, k, name, "gke")
        r = stack.run("apply", "stack.lua", "--auto-approve",
                      env={"GOOGLE_APPLICATION_CREDENTIALS": str(stack.path / "sa.json")})
        assert r.returncode != 0
        assert "invalid_grant" in r.stdout + r.stderr, r.stdout + r.stderr
        assert any("signature" in why for why in peer.rejections), peer.rejections
        assert not k.exists("configmap", name, "-n", "default")


def test_gke_access_token_from_environment(stack, kube_cluster, names):
    k, name = kube_cluster, f"{names}-cm"
    clean_env(stack)
    provider_stack(stack, k, name, "gke")
    env = {"GOOGLE_OAUTH_ACCESS_TOKEN": k.token}
    r = stack.ok("apply", "stack.lua", "--auto-approve", "-v", env=env)
    no_leak(r, k.token)
    assert k.exists("configmap", name, "-n", "default")
    stack.ok("destroy", "stack.lua", "--auto-approve", env=env)
    assert not k.exists("configmap", name, "-n", "default")


# ----------------------------------------------------------------------------------------- aks

def aks_env(stack, peer, federated):
    (stack.path / "azure-identity-token").write_text(federated + "\n")
    return {"AZURE_CLIENT_ID": peer.client_id, "AZURE_TENANT_ID": peer.tenant,
            "AZURE_FEDERATED_TOKEN_FILE": str(stack.path / "azure-identity-token"),
            "AZURE_AUTHORITY_HOST": peer.url + "/"}


def test_aks_workload_identity(stack, kube_cluster, names):
    k, name = kube_cluster, f"{names}-cm"
    clean_env(stack)
    federated = "eyJhbGciOiJSUzI1NiJ9." + secrets.token_urlsafe(48) + "." + secrets.token_urlsafe(64)
    tenant, client = "72f988bf-86f1-41af-91ab-2d7cd011db47", "a1b2c3d4-0000-4000-8000-000000000001"
    with AzureTokenPeer(tenant, client, federated, k.token) as peer:
        provider_stack(stack, k, name, "aks")
        env = aks_env(stack, peer, federated)
        r = stack.ok("apply", "stack.lua", "--auto-approve", "-v", env=env)
        assert peer.rejections == []
        assert len(peer.requests) == 1, peer.requests
        assert k.kubectl_json("get", "configmap", name, "-n", "default")["data"] == {"x": "1"}
        no_leak(r, k.token, federated)

        # A federated token the service does not accept: its error, and nothing applied.
        (stack.path / "azure-identity-token").write_text("not-the-token")
        stack.write(stack.stack.read_text().replace('x = "1"', 'x = "2"'))
        r = stack.run("apply", "stack.lua", "--auto-approve", env=env)
        assert r.returncode != 0
        assert "invalid_client" in r.stdout + r.stderr, r.stdout + r.stderr
        assert k.kubectl_json("get", "configmap", name, "-n", "default")["data"] == {"x": "1"}

        (stack.path / "azure-identity-token").write_text(federated)
        stack.ok("destroy", "stack.lua", "--auto-approve", env=env)
        assert not k.exists("configmap", name, "-n", "default")


def test_aks_token_is_refreshed_during_a_long_apply(stack, kube_cluster, names):
    """A token that lives 2 s is fetched again while one apply polls a wait for ~4 s."""
    k, name = kube_cluster, f"{names}-web"
    clean_env(stack)
    federated = secrets.token_urlsafe(40)
    with AzureTokenPeer("contoso.onmicrosoft.com", "c1", federated, k.token) as peer:
        peer.expires_in = 2
        provider_stack(stack, k, name, "aks", resources=f"""
        mle.resource("k8s_manifest", "web", {{ wait = "available", wait_timeout = 4, manifest = {{
          apiVersion = "apps/v1", kind = "Deployment",
          metadata = {{ name = "{name}", namespace = "default" }},
          spec = {{ replicas = 1, selector = {{ matchLabels = {{ app = "{name}" }} }},
            template = {{ metadata = {{ labels = {{ app = "{name}" }} }},
              spec = {{ containers = {{ {{ name = "w", image = "registry.invalid/w:1" }} }} }} }} }}
        }} }})
        """)
        env = aks_env(stack, peer, federated)
        r = stack.run("apply", "stack.lua", "--auto-approve", env=env)
        # No kubelet runs: the wait times out, having polled with fresh tokens all along.
        assert r.returncode != 0 and "gave up after 4 s" in r.stdout + r.stderr, r.stdout + r.stderr
        assert "Unauthorized" not in r.stdout + r.stderr
        assert peer.rejections == []
        assert len(peer.requests) >= 2, peer.requests
        # (The state keeps the timed-out wait as unfinished; the folder is thrown away.)
        k.kubectl("delete", "deployment", name, "-n", "default")


# ----------------------------------------------------------------------------------------- eks

def test_eks_token_through_an_authenticating_front(stack, kube_cluster, names):
    k, name = kube_cluster, f"{names}-cm"
    clean_env(stack)
    ak, sk = "AKIA" + secrets.token_hex(8).upper(), secrets.token_urlsafe(30)
    st = secrets.token_urlsafe(60)
    with EksAuthProxy(k, ak, sk, "ml-prod", "eu-west-1", session_token=st) as front:
        provider_stack(stack, k, name, "eks", host=front.url,
                       extra='eks_cluster_name = "ml-prod", aws_region = "eu-west-1",')
        env = {"AWS_ACCESS_KEY_ID": ak, "AWS_SECRET_ACCESS_KEY": sk, "AWS_SESSION_TOKEN": st}
        r = stack.ok("apply", "stack.lua", "--auto-approve", "-v", env=env)
        assert front.rejections == [], front.rejections
        assert front.requests and all(q["ok"] for q in front.requests)
        assert k.kubectl_json("get", "configmap", name, "-n", "default")["data"] == {"x": "1"}
        no_leak(r, sk, st, *front.tokens)

        # Bound to the cluster: a token made for another cluster name is refused.
        stack.write(stack.stack.read_text().replace('"ml-prod"', '"ml-staging"'))
        r = stack.run("destroy", "stack.lua", "--auto-approve", env=env)
        assert r.returncode != 0
        assert any("signature" in why for why in front.rejections), front.rejections
        assert k.exists("configmap", name, "-n", "default")

        stack.write(stack.stack.read_text().replace('"ml-staging"', '"ml-prod"'))
        stack.ok("destroy", "stack.lua", "--auto-approve", env=env)
        assert not k.exists("configmap", name, "-n", "default")


def test_eks_token_from_a_web_identity_login(stack, kube_cluster, names, tmp_path):
    """The CI path with no static keys: an OIDC token file and a role are exchanged at STS
    for temporary credentials, which then sign the EKS token the front verifies."""
    k, name = kube_cluster, f"{names}-cm"
    clean_env(stack)
    ak, sk = "ASIA" + secrets.token_hex(8).upper(), secrets.token_urlsafe(30)
    st, jwt = secrets.token_urlsafe(60), "eyJ" + secrets.token_urlsafe(80)
    role = "arn:aws:iam::123456789012:role/ci-deployer"
    (tmp_path / "oidc-token").write_text(jwt + "\n")
    with StsWebIdentityPeer(role, jwt, ak, sk, st) as sts, \
            EksAuthProxy(k, ak, sk, "ml-prod", "eu-west-1", session_token=st) as front:
        provider_stack(stack, k, name, "eks", host=front.url,
                       extra='eks_cluster_name = "ml-prod", aws_region = "eu-west-1",')
        env = {"AWS_WEB_IDENTITY_TOKEN_FILE": str(tmp_path / "oidc-token"),
               "AWS_ROLE_ARN": role, "AWS_ENDPOINT_URL_STS": sts.url}
        r = stack.ok("apply", "stack.lua", "--auto-approve", "-v", env=env)
        assert sts.rejections == [] and len(sts.requests) >= 1
        assert front.rejections == [], front.rejections
        assert k.kubectl_json("get", "configmap", name, "-n", "default")["data"] == {"x": "1"}
        no_leak(r, jwt, sk, st, *front.tokens)
        stack.ok("destroy", "stack.lua", "--auto-approve", env=env)
        assert not k.exists("configmap", name, "-n", "default")


# -------------------------------------------------------------------------------------- errors

def test_misconfigured_providers_name_the_fix(stack, kube_cluster, names):
    k, name = kube_cluster, f"{names}-cm"
    clean_env(stack)

    def fails(extra, env, *want, host=None):
        provider_stack(stack, k, name, extra[0], extra=extra[1], host=host)
        r = stack.run("apply", "stack.lua", "--auto-approve", env=env)
        out = r.stdout + r.stderr
        assert r.returncode != 0, out
        for w in want:
            assert w in out, out

    fails(("eks", 'aws_region = "us-east-1",'), {}, "eks_cluster_name")
    fails(("eks", 'eks_cluster_name = "c", aws_region = "us-east-1",'), {},
          "AWS_ACCESS_KEY_ID")
    fails(("aks", ""), {}, "AZURE_CLIENT_ID")
    fails(("aks", ""), {"AZURE_CLIENT_ID": "c", "AZURE_TENANT_ID": "t",
                        "AZURE_CLIENT_SECRET": "s3cr3t-value",
                        "AZURE_AUTHORITY_HOST": "http://login.example.invalid/"},
          "not https")
    fails(("gke", ""), {"HOME": str(stack.path)}, "GOOGLE_APPLICATION_CREDENTIALS")
    (stack.path / "ext.json").write_text(json.dumps({"type": "external_account"}))
    fails(("gke", ""), {"GOOGLE_APPLICATION_CREDENTIALS": str(stack.path / "ext.json")},
          "external_account")
    fails(("k8s", ""), {}, "token_provider")
    assert not k.exists("configmap", name, "-n", "default")
