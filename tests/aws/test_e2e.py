"""End to end: scripts/examples/aws.lua applied by the built mlengine against moto server, and
checked with boto3 (an independent client) against the same server.

What moto cannot prove (see drivers/aws/README.md): EKS clusters, node groups and NAT gateways
are ready at once there (the long-operation path runs one poll), add-ons are not implemented,
client tokens are not deduplicated, and STS does not validate web identity tokens.
"""
import collections
import json
import re
import signal
import subprocess
import time
import urllib.parse

import pytest

from conftest import binary

NAME = "mlops-dev"
OWN_ADDR = "mlengine:address"
OWN_STACK = "mlengine:stack"

# Every resource the example declares (data sources aside).
EXAMPLE_ADDRESSES = {
    "aws_vpc.main", "aws_internet_gateway.main", "aws_eip.nat", "aws_nat_gateway.main",
    "aws_route_table.public", "aws_route_table.private", "aws_security_group.cluster",
    "aws_iam_role.cluster", "aws_iam_role_policy_attachment.cluster", "aws_iam_role.node",
    "aws_iam_role_policy_attachment.node_1", "aws_iam_role_policy_attachment.node_2",
    "aws_iam_role_policy_attachment.node_3", "aws_eks_cluster.main", "aws_eks_node_group.cpu",
    "aws_eks_node_group.gpu", "aws_iam_openid_connect_provider.cluster", "aws_s3_bucket.artifacts",
    "aws_ecr_repository.models", "random_password.mlflow_db", "aws_secretsmanager_secret.mlflow_db",
    "aws_iam_role.mlflow", "aws_iam_policy.mlflow", "aws_iam_role_policy_attachment.mlflow",
} | {f"aws_subnet.{k}_{i}" for k in ("public", "private") for i in (1, 2, 3)}


def tagmap(tags, k="Key", v="Value"):
    return {t[k]: t[v] for t in tags or []}


def inventory(aws):
    """What moto holds that an mlengine stack made: owner-tagged EC2 resources by address
    (with counts), and EKS/IAM/S3/ECR/Secrets Manager resources by name."""
    ec2 = aws.client("ec2")
    inv = collections.Counter()
    lineages = set()

    def add(tags, extra=""):
        t = tagmap(tags)
        if OWN_ADDR in t:
            inv[t[OWN_ADDR] + extra] += 1
            lineages.add(t.get(OWN_STACK))

    for v in ec2.describe_vpcs()["Vpcs"]:
        add(v.get("Tags"))
    for s in ec2.describe_subnets()["Subnets"]:
        add(s.get("Tags"))
    for g in ec2.describe_internet_gateways()["InternetGateways"]:
        add(g.get("Tags"))
    for a in ec2.describe_addresses()["Addresses"]:
        add(a.get("Tags"))
    for n in ec2.describe_nat_gateways()["NatGateways"]:
        if n["State"] not in ("deleted", "deleting"):
            add(n.get("Tags"))
    for r in ec2.describe_route_tables()["RouteTables"]:
        add(r.get("Tags"))
    for g in ec2.describe_security_groups()["SecurityGroups"]:
        add(g.get("Tags"))
    eks = aws.client("eks")
    for c in eks.list_clusters()["clusters"]:
        inv["eks:" + c] += 1
        for ng in eks.list_nodegroups(clusterName=c)["nodegroups"]:
            inv[f"nodegroup:{c}/{ng}"] += 1
    iam = aws.client("iam")
    for r in iam.list_roles()["Roles"]:
        if r["RoleName"].startswith(NAME):
            inv["role:" + r["RoleName"]] += 1
    for p in iam.list_policies(Scope="Local")["Policies"]:
        inv["policy:" + p["PolicyName"]] += 1
    for p in iam.list_open_id_connect_providers()["OpenIDConnectProviderList"]:
        inv["oidc:" + p["Arn"].split("/", 1)[1]] += 1
    for b in aws.client("s3").list_buckets()["Buckets"]:
        inv["bucket:" + b["Name"]] += 1
    for r in aws.client("ecr").describe_repositories()["repositories"]:
        inv["ecr:" + r["repositoryName"]] += 1
    for s in aws.client("secretsmanager").list_secrets()["SecretList"]:
        inv["secret:" + s["Name"]] += 1
    return inv, lineages


def one(items, what):
    assert len(items) == 1, f"expected exactly one {what}, found {len(items)}: {items}"
    return items[0]


def owned(ec2_describe, key, address):
    return [x for x in ec2_describe[key] if tagmap(x.get("Tags")).get(OWN_ADDR) == address]


def check_example(aws):
    """boto3 sees every resource of the example with its attributes and ownership tags."""
    ec2 = aws.client("ec2")
    vpc = one(owned(ec2.describe_vpcs(), "Vpcs", "aws_vpc.main"), "VPC")
    vt = tagmap(vpc["Tags"])
    lineage = vt[OWN_STACK]
    assert lineage and vt["Name"] == NAME and vt["project"] == NAME
    assert vpc["CidrBlock"] == "10.0.0.0/16"
    assert ec2.describe_vpc_attribute(VpcId=vpc["VpcId"], Attribute="enableDnsHostnames")[
        "EnableDnsHostnames"]["Value"] is True
    vpc_id = vpc["VpcId"]

    subnets = {}
    for kind in ("public", "private"):
        for i in (1, 2, 3):
            s = one(owned(ec2.describe_subnets(), "Subnets", f"aws_subnet.{kind}_{i}"), "subnet")
            assert s["VpcId"] == vpc_id
            assert tagmap(s["Tags"])[OWN_STACK] == lineage
            assert s["AvailabilityZone"] == f"us-east-1{'abc'[i - 1]}"
            assert s["MapPublicIpOnLaunch"] is (kind == "public")
            subnets[f"{kind}_{i}"] = s["SubnetId"]
    assert ec2.describe_subnets(SubnetIds=[subnets["public_2"]])["Subnets"][0]["CidrBlock"] == "10.0.1.0/24"
    assert ec2.describe_subnets(SubnetIds=[subnets["private_3"]])["Subnets"][0]["CidrBlock"] == "10.0.96.0/19"

    igw = one(owned(ec2.describe_internet_gateways(), "InternetGateways", "aws_internet_gateway.main"), "IGW")
    assert [a["VpcId"] for a in igw["Attachments"]] == [vpc_id]
    eip = one(owned(ec2.describe_addresses(), "Addresses", "aws_eip.nat"), "EIP")
    nat = one([n for n in owned(ec2.describe_nat_gateways(), "NatGateways", "aws_nat_gateway.main")
               if n["State"] == "available"], "NAT gateway")
    assert nat["SubnetId"] == subnets["public_1"]
    assert nat["NatGatewayAddresses"][0]["AllocationId"] == eip["AllocationId"]

    pub = one(owned(ec2.describe_route_tables(), "RouteTables", "aws_route_table.public"), "public RT")
    assert {r.get("GatewayId") for r in pub["Routes"] if r.get("DestinationCidrBlock") == "0.0.0.0/0"} == {igw["InternetGatewayId"]}
    assert {a["SubnetId"] for a in pub["Associations"] if a.get("SubnetId")} == {subnets[f"public_{i}"] for i in (1, 2, 3)}
    priv = one(owned(ec2.describe_route_tables(), "RouteTables", "aws_route_table.private"), "private RT")
    assert {r.get("NatGatewayId") for r in priv["Routes"] if r.get("DestinationCidrBlock") == "0.0.0.0/0"} == {nat["NatGatewayId"]}
    assert {a["SubnetId"] for a in priv["Associations"] if a.get("SubnetId")} == {subnets[f"private_{i}"] for i in (1, 2, 3)}

    sg = one(owned(ec2.describe_security_groups(), "SecurityGroups", "aws_security_group.cluster"), "SG")
    assert sg["GroupName"] == f"{NAME}-cluster" and sg["VpcId"] == vpc_id
    ingress = [(p["IpProtocol"], p.get("FromPort"), p.get("ToPort"), [r["CidrIp"] for r in p["IpRanges"]])
               for p in sg["IpPermissions"]]
    assert ingress == [("tcp", 443, 443, ["10.0.0.0/16"])]

    iam = aws.client("iam")
    roles = {}
    for r in ("eks-cluster", "eks-node", "mlflow"):
        role = iam.get_role(RoleName=f"{NAME}-{r}")["Role"]
        t = tagmap(role["Tags"])
        assert t[OWN_STACK] == lineage and t[OWN_ADDR].startswith("aws_iam_role.")
        roles[r] = role
    attached = lambda name: sorted(p["PolicyArn"] for p in
                                   iam.list_attached_role_policies(RoleName=name)["AttachedPolicies"])
    assert attached(f"{NAME}-eks-cluster") == ["arn:aws:iam::aws:policy/AmazonEKSClusterPolicy"]
    assert attached(f"{NAME}-eks-node") == sorted(f"arn:aws:iam::aws:policy/{p}" for p in (
        "AmazonEKSWorkerNodePolicy", "AmazonEKS_CNI_Policy", "AmazonEC2ContainerRegistryReadOnly"))
    policy = one([p for p in iam.list_policies(Scope="Local")["Policies"]
                  if p["PolicyName"] == f"{NAME}-mlflow"], "MLflow policy")
    assert attached(f"{NAME}-mlflow") == [policy["Arn"]]
    assert tagmap(iam.get_policy(PolicyArn=policy["Arn"])["Policy"].get("Tags"))[OWN_ADDR] == "aws_iam_policy.mlflow"

    eks = aws.client("eks")
    cluster = eks.describe_cluster(name=NAME)["cluster"]
    assert cluster["status"] == "ACTIVE"
    assert cluster["version"] == "1.30"
    assert cluster["roleArn"] == roles["eks-cluster"]["Arn"]
    assert set(cluster["resourcesVpcConfig"]["subnetIds"]) == set(subnets.values())
    assert cluster["tags"][OWN_ADDR] == "aws_eks_cluster.main" and cluster["tags"][OWN_STACK] == lineage
    cpu = eks.describe_nodegroup(clusterName=NAME, nodegroupName="cpu")["nodegroup"]
    assert cpu["scalingConfig"] == {"minSize": 1, "maxSize": 6, "desiredSize": 2}
    assert cpu["instanceTypes"] == ["m6i.xlarge"] and cpu["labels"] == {"workload": "general"}
    assert cpu["nodeRole"] == roles["eks-node"]["Arn"]
    assert cpu["tags"][OWN_ADDR] == "aws_eks_node_group.cpu"
    gpu = eks.describe_nodegroup(clusterName=NAME, nodegroupName="gpu")["nodegroup"]
    assert gpu["scalingConfig"]["minSize"] == 0
    assert gpu["amiType"] == "AL2_x86_64_GPU" and gpu["instanceTypes"] == ["g5.xlarge"]
    assert gpu["taints"] == [{"key": "nvidia.com/gpu", "value": "true", "effect": "NO_SCHEDULE"}]
    assert gpu["tags"][OWN_ADDR] == "aws_eks_node_group.gpu"

    issuer = cluster["identity"]["oidc"]["issuer"]
    host = issuer.split("://", 1)[1]
    oidc = one([p["Arn"] for p in iam.list_open_id_connect_providers()["OpenIDConnectProviderList"]
                if p["Arn"].endswith("/" + host)], "OIDC provider")
    op = iam.get_open_id_connect_provider(OpenIDConnectProviderArn=oidc)
    assert op["ClientIDList"] == ["sts.amazonaws.com"]
    assert tagmap(op["Tags"])[OWN_ADDR] == "aws_iam_openid_connect_provider.cluster"
    trust = roles["mlflow"]["AssumeRolePolicyDocument"]
    if isinstance(trust, str):
        trust = json.loads(urllib.parse.unquote(trust))
    st = trust["Statement"][0]
    assert st["Principal"]["Federated"] == oidc
    assert st["Action"] == "sts:AssumeRoleWithWebIdentity"
    assert st["Condition"]["StringEquals"][f"{host}:sub"] == "system:serviceaccount:mlflow:mlflow"

    s3 = aws.client("s3")
    bucket = f"{NAME}-mlflow-artifacts-123456789012"
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
    rule = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"][0]
    assert rule["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    assert all(s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"].values())
    bt = tagmap(s3.get_bucket_tagging(Bucket=bucket)["TagSet"])
    assert bt[OWN_ADDR] == "aws_s3_bucket.artifacts" and bt["purpose"] == "mlflow-artifacts"

    ecr = aws.client("ecr")
    repo = ecr.describe_repositories(repositoryNames=[f"{NAME}/models"])["repositories"][0]
    assert repo["imageTagMutability"] == "IMMUTABLE"
    assert repo["imageScanningConfiguration"]["scanOnPush"] is True
    assert tagmap(ecr.list_tags_for_resource(resourceArn=repo["repositoryArn"])["tags"])[OWN_ADDR] == "aws_ecr_repository.models"

    sm = aws.client("secretsmanager")
    secret = sm.describe_secret(SecretId=f"{NAME}/mlflow/db")
    assert tagmap(secret["Tags"])[OWN_ADDR] == "aws_secretsmanager_secret.mlflow_db"
    value = sm.get_secret_value(SecretId=f"{NAME}/mlflow/db")["SecretString"]
    assert len(value) == 24 and value.isalnum()
    doc = iam.get_policy_version(PolicyArn=policy["Arn"], VersionId=policy["DefaultVersionId"])["PolicyVersion"]["Document"]
    if isinstance(doc, str):
        doc = json.loads(urllib.parse.unquote(doc))
    assert f"arn:aws:s3:::{bucket}" in json.dumps(doc) and secret["ARN"] in json.dumps(doc)
    return lineage, value


def assert_nothing_left(aws):
    inv, _ = inventory(aws)
    assert not inv, f"destroy left these behind: {dict(inv)}"


def test_example_lifecycle(aws):
    r = aws.apply()
    assert "Apply complete" in r.stdout
    lineage, secret_value = check_example(aws)
    # The secret never shows in what mlengine prints.
    assert secret_value not in r.stdout + r.stderr
    inv, lineages = inventory(aws)
    assert lineages == {lineage}
    assert all(n == 1 for n in inv.values()), f"duplicates: {dict(inv)}"

    # A second plan is empty.
    p = aws.plan()
    assert p.returncode == 0, p.stdout + p.stderr
    assert "No changes" in p.stdout

    # Out-of-band changes: a tag on the VPC, scan-on-push of the registry.
    ec2 = aws.client("ec2")
    vpc = one(owned(ec2.describe_vpcs(), "Vpcs", "aws_vpc.main"), "VPC")
    ec2.create_tags(Resources=[vpc["VpcId"]], Tags=[{"Key": "Name", "Value": "changed-by-hand"}])
    aws.client("ecr").put_image_scanning_configuration(
        repositoryName=f"{NAME}/models", imageScanningConfiguration={"scanOnPush": False})
    p = aws.plan("--refresh")
    assert p.returncode == 2, f"plan --refresh should report changes:\n{p.stdout}\n{p.stderr}"
    assert "aws_vpc.main" in p.stdout and "changed-by-hand" in p.stdout
    assert "aws_ecr_repository.models" in p.stdout and "scan_on_push" in p.stdout
    # Ownership tags are never drift.
    assert OWN_STACK not in p.stdout

    aws.apply()
    vpc = ec2.describe_vpcs(VpcIds=[vpc["VpcId"]])["Vpcs"][0]
    assert tagmap(vpc["Tags"])["Name"] == NAME
    assert tagmap(vpc["Tags"])[OWN_STACK] == lineage
    assert aws.client("ecr").describe_repositories(repositoryNames=[f"{NAME}/models"])[
        "repositories"][0]["imageScanningConfiguration"]["scanOnPush"] is True
    p = aws.plan("--refresh")
    assert p.returncode == 0 and "No changes" in p.stdout, p.stdout + p.stderr

    aws.destroy()
    assert_nothing_left(aws)


WEB_STACK = """
local mle = require("mlengine")
local endpoint = mle.var("aws_endpoint", { default = "" })
mle.var("poll_interval_ms", { default = 0 })
mle.driver("aws", { region = "us-east-1", endpoint_url = endpoint })
local me = mle.data("aws_caller_identity", "me", {})
local vpc = mle.resource("aws_vpc", "ci", { cidr_block = "10.9.0.0/16", tags = { Name = "ci" } })
mle.output("caller_arn", me.arn)
mle.output("vpc_id", vpc.id)
"""


def test_web_identity_login(aws):
    """A CI pipeline's path: an OIDC token file and a role ARN, no static keys anywhere."""
    role_arn = aws.client("iam").create_role(
        RoleName="ci-deployer",
        AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [{
            "Effect": "Allow", "Principal": {"Federated": "token.actions.githubusercontent.com"},
            "Action": "sts:AssumeRoleWithWebIdentity"}]}))["Role"]["Arn"]
    token = aws.path / "oidc-token"
    token.write_text("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJyZXBvOm9yZy9hcHAifQ.c2ln\n")
    aws.stack.write_text(WEB_STACK)
    env = {k: v for k, v in aws.env.items() if k not in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
    env.update({"AWS_WEB_IDENTITY_TOKEN_FILE": str(token), "AWS_ROLE_ARN": role_arn,
                "AWS_ROLE_SESSION_NAME": "pipeline-7"})
    r = aws.apply(env=env)
    assert f"credentials from web identity (role {role_arn})" in r.stderr
    # The apply ran as the assumed role: the caller identity is the role's session.
    m = re.search(r'caller_arn = "([^"]+)"', r.stdout)
    assert m, r.stdout
    assert ":assumed-role/ci-deployer/pipeline-7" in m.group(1)
    # The token is a secret: never printed.
    assert "eyJzdWIiOiJyZXBvOm9yZy9hcHAifQ" not in r.stdout + r.stderr
    ec2 = aws.client("ec2")
    one(owned(ec2.describe_vpcs(), "Vpcs", "aws_vpc.ci"), "VPC")
    # Without the token file and keys, the error lists what was tried.
    bad = dict(env)
    bad.pop("AWS_WEB_IDENTITY_TOKEN_FILE")
    bad.pop("AWS_ROLE_ARN")
    r = aws.run("plan", aws.stack, "--refresh", *aws.vars(), env=bad)
    assert r.returncode != 0
    assert "no credentials found" in r.stderr and "web identity" in r.stderr
    aws.destroy(env=env)


def run_until(aws, marker_count, poll_ms=1000):
    """Start an apply of the example and kill -9 it once `marker_count` creates are done."""
    proc = subprocess.Popen([binary(), "apply", str(aws.stack), "--auto-approve", "--parallelism", "2",
                             *aws.vars(poll_ms=poll_ms)],
                            cwd=aws.path, env=aws.env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    done, lines = 0, []
    deadline = time.monotonic() + 300
    for line in proc.stdout:
        lines.append(line)
        if ": create done" in line:
            done += 1
        if done >= marker_count or time.monotonic() > deadline:
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL, "".join(lines)
    return "".join(lines)


@pytest.mark.parametrize("kill_after", [3, 12, 21])
def test_kill9_mid_apply_then_reapply(aws, kill_after):
    """kill -9 in the middle of the apply, apply again: exactly one of each, all in state."""
    out = run_until(aws, kill_after)
    assert "Apply complete" not in out
    r = aws.apply()
    assert "Apply complete" in r.stdout, r.stdout + r.stderr
    inv, lineages = inventory(aws)
    assert len(lineages) == 1
    dupes = {k: n for k, n in inv.items() if n != 1}
    assert not dupes, f"duplicates after the crash: {dupes}"
    assert inv["aws_vpc.main"] == 1
    assert inv[f"eks:{NAME}"] == 1
    assert inv[f"nodegroup:{NAME}/cpu"] == 1 and inv[f"nodegroup:{NAME}/gpu"] == 1
    assert EXAMPLE_ADDRESSES <= set(aws.state_list())
    check_example(aws)
    p = aws.plan()
    assert p.returncode == 0, p.stdout + p.stderr


def test_throttling_converges_with_retries(aws, throttle_proxy):
    """A proxy answers 429/503 to a share of the requests: the apply still converges, and the
    retries are logged."""
    r = aws.apply(endpoint=throttle_proxy.url)
    assert throttle_proxy.throttled > 10, f"the proxy throttled only {throttle_proxy.throttled}"
    log = r.stdout + r.stderr
    assert re.search(r"retry \d+/\d+", log), "no retry was logged"
    assert "is retryable" in log
    inv, _ = inventory(aws)
    assert all(n == 1 for n in inv.values()), f"duplicates: {dict(inv)}"
    check_example(aws)
    p = aws.plan(endpoint=throttle_proxy.url)
    assert p.returncode == 0, p.stdout + p.stderr
    aws.destroy(endpoint=throttle_proxy.url)
    assert_nothing_left(aws)


UPDATE_STACK = """
local mle = require("mlengine")
local endpoint = mle.var("aws_endpoint", { default = "" })
mle.var("poll_interval_ms", { default = 0 })
local v = mle.var("v", { default = 1 })
mle.driver("aws", { region = "us-east-1", endpoint_url = endpoint, poll_interval_ms = 100 })
local vpc = mle.resource("aws_vpc", "main", { cidr_block = "10.8.0.0/16" })
local a = mle.resource("aws_subnet", "a", { vpc_id = vpc.id, cidr_block = "10.8.1.0/24",
  availability_zone = "us-east-1a", map_public_ip_on_launch = (v == 2) })
local b = mle.resource("aws_subnet", "b", { vpc_id = vpc.id, cidr_block = "10.8.2.0/24",
  availability_zone = "us-east-1b" })
local igw = mle.resource("aws_internet_gateway", "gw", { vpc_id = vpc.id })
mle.resource("aws_security_group", "sg", { name = "upd", vpc_id = vpc.id,
  ingress = v == 1 and { { protocol = "tcp", from_port = 22, to_port = 22, cidr_blocks = { "10.0.0.0/8" } } }
    or { { protocol = "tcp", from_port = 443, to_port = 443, cidr_blocks = { "0.0.0.0/0" }, description = "https" },
         { protocol = "udp", from_port = 53, to_port = 53, cidr_blocks = { "10.8.0.0/16" } } } })
mle.resource("aws_route_table", "rt", { vpc_id = vpc.id,
  routes = { { cidr_block = v == 1 and "0.0.0.0/0" or "1.2.3.0/24", gateway_id = igw.id } },
  subnet_ids = v == 1 and { a.id } or { b.id } })
mle.resource("aws_kms_key", "k", { description = "key v" .. v, enable_key_rotation = (v == 2),
  deletion_window_in_days = 7, tags = { v = tostring(v) } })
mle.resource("aws_iam_role", "r", { name = "upd-role", description = "d" .. v, max_session_duration = 3600 * v,
  assume_role_policy = { Version = "2012-10-17", Statement = { { Effect = "Allow",
    Principal = { Service = "ec2.amazonaws.com" }, Action = "sts:AssumeRole" } } } })
mle.resource("aws_iam_policy", "p", { name = "upd-pol", policy = { Version = "2012-10-17",
  Statement = { { Effect = "Allow", Action = (v == 1 and "s3:GetObject" or "s3:PutObject"), Resource = "*" } } } })
mle.resource("aws_secretsmanager_secret", "s", { name = "upd/secret", secret_string = "value-" .. v,
  description = "v" .. v, recovery_window_in_days = 0 })
mle.resource("aws_ecr_repository", "e", { name = "upd", image_tag_mutability = v == 1 and "MUTABLE" or "IMMUTABLE",
  scan_on_push = v == 2, tags = { v = tostring(v) } })
mle.resource("aws_s3_bucket", "b", { bucket = "upd-bucket", versioning = v == 2, block_public_acls = v == 1,
  tags = { v = tostring(v) } })
"""


def test_updates_in_place(aws):
    """Every updatable attribute of the smaller types, changed and changed back: the apply
    updates in place, AWS holds the new values, and the next plan is empty each time."""
    aws.stack.write_text(UPDATE_STACK)
    for v in (1, 2, 1):
        aws.apply("--var", f"v={v}")
        p = aws.plan("--var", f"v={v}")
        assert p.returncode == 0 and "No changes" in p.stdout, p.stdout + p.stderr
        if v == 2:
            ec2 = aws.client("ec2")
            sg = one(owned(ec2.describe_security_groups(), "SecurityGroups", "aws_security_group.sg"), "SG")
            assert sorted((x["IpProtocol"], x["FromPort"]) for x in sg["IpPermissions"]) == [("tcp", 443), ("udp", 53)]
            rt = one(owned(ec2.describe_route_tables(), "RouteTables", "aws_route_table.rt"), "RT")
            assert {r.get("DestinationCidrBlock") for r in rt["Routes"]} >= {"1.2.3.0/24"}
            assert "0.0.0.0/0" not in {r.get("DestinationCidrBlock") for r in rt["Routes"]}
            sn = one(owned(ec2.describe_subnets(), "Subnets", "aws_subnet.a"), "subnet")
            assert sn["MapPublicIpOnLaunch"] is True
            kms = aws.client("kms")
            key = [k["KeyId"] for k in kms.list_keys()["Keys"]
                   if kms.describe_key(KeyId=k["KeyId"])["KeyMetadata"].get("Description") == "key v2"]
            assert kms.get_key_rotation_status(KeyId=one(key, "KMS key"))["KeyRotationEnabled"] is True
            assert aws.client("iam").get_role(RoleName="upd-role")["Role"]["MaxSessionDuration"] == 7200
            assert aws.client("secretsmanager").get_secret_value(SecretId="upd/secret")["SecretString"] == "value-2"
            assert aws.client("ecr").describe_repositories(repositoryNames=["upd"])["repositories"][0][
                "imageTagMutability"] == "IMMUTABLE"
            assert aws.client("s3").get_bucket_versioning(Bucket="upd-bucket")["Status"] == "Enabled"
    aws.destroy("--var", "v=1")
    assert_nothing_left(aws)
    kms = aws.client("kms")
    assert all(kms.describe_key(KeyId=k["KeyId"])["KeyMetadata"]["KeyState"] == "PendingDeletion"
               for k in kms.list_keys()["Keys"])
