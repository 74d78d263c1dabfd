"""tests/peers/token_peer.py — loopback stand-ins for the identity endpoints a managed cluster's
token comes from, for the token-provider tests of the Kubernetes drivers. Each one CHECKS what
it receives the way the real service would, records it, and answers like the real service.

    GoogleTokenPeer(public_key_pem, client_email, access_token)
        POST /token  (a service account key file's token_uri)
        grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer&assertion=<JWT>: the JWT's RS256
        signature is verified with the service account's public key (`openssl dgst -verify`),
        its header (alg RS256, typ JWT, kid), and claims iss = client_email,
        scope = https://www.googleapis.com/auth/cloud-platform, aud = this token_uri, iat about
        now and exp = iat + at most an hour. Answers {"access_token", "expires_in": 3600,
        "token_type": "Bearer"}; anything wrong: 400 {"error": "invalid_grant", ...}.

    AzureTokenPeer(tenant, client_id, federated_token, access_token)
        POST /<tenant>/oauth2/v2.0/token  (AZURE_AUTHORITY_HOST = peer.url + "/")
        grant_type=client_credentials, client_id, scope=6dae42f8-...-3960e28e3630/.default,
        client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer,
        client_assertion = the federated token file's contents. Same answers.

    EksAuthProxy(kube_cluster, access_key_id, secret_access_key, cluster_name, region)
        An HTTPS front for the test kube-apiserver (its serving certificate: clients verify it
        with the cluster CA) that plays the EKS authenticator: the bearer token must be
        "k8s-aws-v1." + base64url(a presigned STS GetCallerIdentity URL) whose SigV4 signature
        it recomputes with the secret key (what STS does when the authenticator replays the
        URL), bound to the cluster name by the signed x-k8s-aws-id header, signed within the
        last 15 minutes. A good token is replaced by the cluster's admin token and the request
        forwarded; a bad one gets 401 with the reason. kube-apiserver itself cannot validate an
        EKS token without a webhook, so this is where it is checked.

Every peer keeps `requests` (what it saw) and `rejections` (why it refused, if it did), and
runs in a thread of the test process: `with Peer(...) as p: p.url`.
"""
import base64
import calendar
import hashlib
import hmac
import http.client
import json
import os
import ssl
import subprocess
import tempfile
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

AKS_SCOPE = "6dae42f8-4368-4678-94ff-3960e28e3630/.default"
GKE_SCOPE = "https://www.googleapis.com/auth/cloud-platform"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def b64url_decode(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


class _Peer:
    scheme = "http"

    def __init__(self):
        self.requests = []
        self.rejections = []
        self.lock = threading.Lock()
        self.server = None
        self.thread = None

    def __enter__(self):
        peer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):  # quiet
                pass

            def _body(self):
                n = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(n) if n else b""

            def _answer(self, status, body, ctype="application/json"):
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                peer.handle(self, "GET", b"")

            def do_POST(self):
                peer.handle(self, "POST", self._body())

            def do_PATCH(self):
                peer.handle(self, "PATCH", self._body())

            def do_PUT(self):
                peer.handle(self, "PUT", self._body())

            def do_DELETE(self):
                peer.handle(self, "DELETE", self._body())

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.wrap()
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return self

    def wrap(self):
        pass

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

    @property
    def url(self):
        return f"{self.scheme}://127.0.0.1:{self.server.server_address[1]}"

    def reject(self, req, why, status=400, error="invalid_grant"):
        with self.lock:
            self.rejections.append(why)
        req._answer(status, {"error": error, "error_description": why})

    expires_in = 3600

    def grant(self, req, token):
        req._answer(200, {"access_token": token, "expires_in": self.expires_in,
                          "token_type": "Bearer"})


def _form(req, body):
    if req.headers.get("Content-Type", "").split(";")[0].strip() != \
            "application/x-www-form-urlencoded":
        return None
    f = urllib.parse.parse_qs(body.decode(), keep_blank_values=True, strict_parsing=True)
    return {k: v[0] for k, v in f.items() if len(v) == 1}


class GoogleTokenPeer(_Peer):
    def __init__(self, public_key_pem, client_email, key_id, access_token):
        super().__init__()
        self.public_key_pem = public_key_pem
        self.client_email = client_email
        self.key_id = key_id
        self.access_token = access_token

    def _verify_rs256(self, signing_input, sig):
        with tempfile.TemporaryDirectory() as d:
            for name, data in (("pub.pem", self.public_key_pem.encode()),
                               ("in", signing_input), ("sig", sig)):
                with open(os.path.join(d, name), "wb") as f:
                    f.write(data)
            r = subprocess.run(["openssl", "dgst", "-sha256", "-verify",
                                os.path.join(d, "pub.pem"), "-signature", os.path.join(d, "sig"),
                                os.path.join(d, "in")], capture_output=True, text=True)
            return r.returncode == 0

    def handle(self, req, method, body):
        f = _form(req, body) if method == "POST" else None
        with self.lock:
            self.requests.append({"path": req.path, "form": f})
        if method != "POST" or req.path != "/token" or f is None:
            return self.reject(req, f"unexpected {method} {req.path}", 404, "not_found")
        if f.get("grant_type") != JWT_BEARER or set(f) != {"grant_type", "assertion"}:
            return self.reject(req, f"bad form fields {sorted(f)} / grant_type "
                                    f"{f.get('grant_type')}")
        parts = f["assertion"].split(".")
        if len(parts) != 3:
            return self.reject(req, "the assertion is not a JWS compact serialization")
        try:
            header, claims = json.loads(b64url_decode(parts[0])), json.loads(b64url_decode(parts[1]))
            sig = b64url_decode(parts[2])
        except Exception as e:  # noqa: BLE001
            return self.reject(req, f"undecodable JWT: {e}")
        if header.get("alg") != "RS256" or header.get("typ") != "JWT" or \
                header.get("kid") != self.key_id:
            return self.reject(req, f"bad JWT header {header}")
        if not self._verify_rs256((parts[0] + "." + parts[1]).encode(), sig):
            return self.reject(req, "the JWT signature does not verify with the service "
                                    "account's public key")
        now = time.time()
        want = {"iss": self.client_email, "scope": GKE_SCOPE, "aud": self.url + "/token"}
        for k, v in want.items():
            if claims.get(k) != v:
                return self.reject(req, f"claim {k} is {claims.get(k)!r}, want {v!r}")
        iat, exp = claims.get("iat"), claims.get("exp")
        if not isinstance(iat, int) or not isinstance(exp, int) or abs(iat - now) > 300 or \
                not (iat < exp <= iat + 3600) or exp < now:
            return self.reject(req, f"bad iat/exp {iat}/{exp} (now {int(now)})")
        with self.lock:
            self.requests[-1]["claims"] = claims
        self.grant(req, self.access_token)


class AzureTokenPeer(_Peer):
    def __init__(self, tenant, client_id, federated_token, access_token):
        super().__init__()
        self.tenant = tenant
        self.client_id = client_id
        self.federated_token = federated_token
        self.access_token = access_token

    def handle(self, req, method, body):
        f = _form(req, body) if method == "POST" else None
        with self.lock:
            self.requests.append({"path": req.path, "form": f})
        if method != "POST" or req.path != f"/{self.tenant}/oauth2/v2.0/token" or f is None:
            return self.reject(req, f"unexpected {method} {req.path}", 404, "invalid_request")
        want = {"grant_type": "client_credentials", "client_id": self.client_id,
                "scope": AKS_SCOPE, "client_assertion_type": ASSERTION_TYPE,
                "client_assertion": self.federated_token}
        if set(f) != set(want):
            return self.reject(req, f"form fields {sorted(f)}, want {sorted(want)}",
                               error="invalid_request")
        for k, v in want.items():
            if f[k] != v:
                return self.reject(req, f"{k} is {f[k]!r}, want {v!r}",
                                   error="invalid_client" if k.startswith("client") else
                                   "invalid_request")
        self.grant(req, self.access_token)


def sigv4_presigned_ok(url, secret, region, cluster, session_token=None, now=None):
    """None when `url` is a presigned STS GetCallerIdentity URL for `cluster` whose SigV4
    signature verifies with `secret`; else the reason it is not."""
    u = urllib.parse.urlsplit(url)
    host = f"sts.{region}.amazonaws.com"
    if u.scheme != "https" or u.netloc != host or u.path != "/":
        return f"not an STS URL for {region}: {u.scheme}://{u.netloc}{u.path}"
    pairs = urllib.parse.parse_qsl(u.query, keep_blank_values=True, strict_parsing=True)
    q = dict(pairs)
    if len(q) != len(pairs):
        return "repeated query parameters"
    fixed = {"Action": "GetCallerIdentity", "Version": "2011-06-15",
             "X-Amz-Algorithm": "AWS4-HMAC-SHA256", "X-Amz-SignedHeaders": "host;x-k8s-aws-id",
             "X-Amz-Expires": "60"}
    for k, v in fixed.items():
        if q.get(k) != v:
            return f"{k} is {q.get(k)!r}, want {v!r}"
    if session_token is not None and q.get("X-Amz-Security-Token") != session_token:
        return "X-Amz-Security-Token is not the session token"
    date = q.get("X-Amz-Date", "")
    try:
        t = calendar.timegm(time.strptime(date, "%Y%m%dT%H%M%SZ"))
    except ValueError:
        return f"bad X-Amz-Date {date!r}"
    now = time.time() if now is None else now
    if not (now - 15 * 60 <= t <= now + 60):
        return f"X-Amz-Date {date} is not within the last 15 minutes"
    key_id, _, scope = q.get("X-Amz-Credential", "").partition("/")
    if scope != f"{date[:8]}/{region}/sts/aws4_request" or not key_id:
        return f"bad credential scope {q.get('X-Amz-Credential')!r}"
    enc = lambda s: urllib.parse.quote(s, safe="-_.~")  # noqa: E731
    canon_q = "&".join(f"{enc(k)}={enc(v)}" for k, v in sorted(pairs)
                       if k != "X-Amz-Signature")
    canon = "\n".join(["GET", "/", canon_q, f"host:{host}", f"x-k8s-aws-id:{cluster}", "",
                       "host;x-k8s-aws-id", hashlib.sha256(b"").hexdigest()])
    sts = "\n".join(["AWS4-HMAC-SHA256", date, scope,
                     hashlib.sha256(canon.encode()).hexdigest()])
    k = ("AWS4" + secret).encode()
    for part in (date[:8], region, "sts", "aws4_request"):
        k = hmac.new(k, part.encode(), hashlib.sha256).digest()
    want = hmac.new(k, sts.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(want, q.get("X-Amz-Signature", "")):
        return "the SigV4 signature does not verify (wrong key, cluster name or region)"
    return None


class EksAuthProxy(_Peer):
    scheme = "https"

    def __init__(self, kube_cluster, access_key_id, secret_access_key, cluster_name, region,
                 session_token=None):
        super().__init__()
        self.kube = kube_cluster
        self.access_key_id = access_key_id
        self.secret = secret_access_key
        self.cluster = cluster_name
        self.region = region
        self.session_token = session_token
        self.tokens = []  # the distinct EKS tokens seen, in order

    def wrap(self):
        # The API server's own serving certificate (SAN 127.0.0.1), so clients verify this
        # front with the cluster CA exactly as they would the API server.
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(str(self.kube.dir / "serving.crt"), str(self.kube.dir / "serving.key"))
        self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)

    def check(self, auth):
        prefix = "Bearer k8s-aws-v1."
        if not auth.startswith(prefix):
            return "the Authorization header is not `Bearer k8s-aws-v1.<token>`"
        b64 = auth[len(prefix):]
        if "=" in b64 or "+" in b64 or "/" in b64:
            return "the token is not unpadded base64url"
        try:
            url = b64url_decode(b64).decode()
        except Exception as e:  # noqa: BLE001
            return f"undecodable token: {e}"
        why = sigv4_presigned_ok(url, self.secret, self.region, self.cluster, self.session_token)
        if why is None and f"X-Amz-Credential={self.access_key_id}%2F" not in url:
            why = "the token is signed for another access key"
        if why is None:
            with self.lock:
                if not self.tokens or self.tokens[-1] != b64:
                    self.tokens.append(b64)
        return why

    def handle(self, req, method, body):
        auth = req.headers.get("Authorization", "")
        why = self.check(auth)
        with self.lock:
            self.requests.append({"method": method, "path": req.path, "ok": why is None})
        if why:
            with self.lock:
                self.rejections.append(why)
            return req._answer(401, {"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                     "reason": "Unauthorized", "code": 401,
                                     "message": f"EKS token refused: {why}"})
        ctx = ssl.create_default_context(cadata=self.kube.ca_pem)
        u = urllib.parse.urlsplit(self.kube.url)
        c = http.client.HTTPSConnection(u.hostname, u.port, context=ctx, timeout=60)
        hdrs = {k: v for k, v in req.headers.items()
                if k.lower() in ("content-type", "accept", "user-agent")}
        hdrs["Authorization"] = f"Bearer {self.kube.token}"
        try:
            c.request(method, req.path, body=body or None, headers=hdrs)
            r = c.getresponse()
            data = r.read()
            req._answer(r.status, data, r.getheader("Content-Type") or "application/json")
        finally:
            c.close()


class StsWebIdentityPeer(_Peer):
    """STS AssumeRoleWithWebIdentity as a CI runner's OIDC login meets it: checks the Query
    form (action, version, role, the exact web identity token) and answers the XML shape of
    the real service with the credentials it was given."""

    def __init__(self, role_arn, web_token, access_key_id, secret_access_key, session_token):
        super().__init__()
        self.role_arn, self.web_token = role_arn, web_token
        self.creds = (access_key_id, secret_access_key, session_token)

    def handle(self, req, method, body):
        f = _form(req, body) if method == "POST" else None
        with self.lock:
            self.requests.append(f)
        want = {"Action": "AssumeRoleWithWebIdentity", "Version": "2011-06-15",
                "RoleArn": self.role_arn, "WebIdentityToken": self.web_token}
        bad = [k for k, v in want.items() if not f or f.get(k) != v]
        if bad or not (f or {}).get("RoleSessionName"):
            with self.lock:
                self.rejections.append(f"bad or missing {bad or ['RoleSessionName']}")
            req._answer(400, b"<ErrorResponse><Error><Type>Sender</Type><Code>InvalidIdentityToken"
                             b"</Code><Message>rejected</Message></Error></ErrorResponse>",
                        "text/xml")
            return
        ak, sk, st = self.creds
        xml = (f'<AssumeRoleWithWebIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">'
               f"<AssumeRoleWithWebIdentityResult><Credentials><AccessKeyId>{ak}</AccessKeyId>"
               f"<SecretAccessKey>{sk}</SecretAccessKey><SessionToken>{st}</SessionToken>"
               f"<Expiration>2099-01-01T00:00:00Z</Expiration></Credentials>"
               f"</AssumeRoleWithWebIdentityResult></AssumeRoleWithWebIdentityResponse>")
        req._answer(200, xml.encode(), "text/xml")
