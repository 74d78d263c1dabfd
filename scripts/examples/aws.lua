-- aws.lua — the AWS half of an MLOps platform (ADR-004): a VPC across three availability
-- zones, an EKS cluster with a CPU and a GPU node group, object storage for MLflow artifacts,
-- a container registry, a secret, and the identity plumbing (the cluster's OIDC provider and
-- an IRSA role for MLflow's service account).
--
-- Against AWS (credentials from the environment, web identity or ~/.aws):
--   mlengine apply scripts/examples/aws.lua --var name=mlops-dev
-- Against moto server on loopback (what the tests do):
--   mlengine apply scripts/examples/aws.lua --var aws_endpoint=http://127.0.0.1:5000
--
-- Costs money on AWS: one NAT gateway, the EKS control plane, the CPU nodes (the GPU pool
-- starts at zero nodes). `mlengine destroy scripts/examples/aws.lua` removes everything.
local mle = require("mlengine")

local name = mle.var("name", { default = "mlops-dev", description = "prefix of every name" })
local region = mle.var("region", { default = "us-east-1" })
local endpoint = mle.var("aws_endpoint", {
  default = "",
  description = "one endpoint for every AWS service (moto, LocalStack); empty: AWS itself",
})
local k8s_version = mle.var("kubernetes_version", { default = "1.30" })
local poll_ms = mle.var("poll_interval_ms", {
  default = 0,
  description = "how soon long operations are polled again; 0: the driver's pace",
})

mle.driver("aws", { region = region, endpoint_url = endpoint, poll_interval_ms = poll_ms })

local tags = { project = name, ["managed-by"] = "mlengine" }
local function with(extra)
  local t = {}
  for k, v in pairs(tags) do t[k] = v end
  for k, v in pairs(extra or {}) do t[k] = v end
  return t
end

local azs = mle.data("aws_availability_zones", "azs", {})
local me = mle.data("aws_caller_identity", "me", {})

------------------------------------------------------------------------ network
local vpc = mle.resource("aws_vpc", "main", {
  cidr_block = "10.0.0.0/16",
  enable_dns_support = true,
  enable_dns_hostnames = true,          -- EKS nodes need DNS hostnames
  tags = with({ Name = name }),
})

local igw = mle.resource("aws_internet_gateway", "main", {
  vpc_id = vpc.id,
  tags = with({ Name = name }),
})

-- One public /24 and one private /19 per zone; load balancers find them by these tags.
local public, private = {}, {}
for i = 1, 3 do
  public[i] = mle.resource("aws_subnet", "public_" .. i, {
    vpc_id = vpc.id,
    cidr_block = string.format("10.0.%d.0/24", i - 1),
    availability_zone = azs.names[i],
    map_public_ip_on_launch = true,
    tags = with({ Name = name .. "-public-" .. i, ["kubernetes.io/role/elb"] = "1" }),
  })
  private[i] = mle.resource("aws_subnet", "private_" .. i, {
    vpc_id = vpc.id,
    cidr_block = string.format("10.0.%d.0/19", 32 * i),
    availability_zone = azs.names[i],
    tags = with({
      Name = name .. "-private-" .. i,
      ["kubernetes.io/role/internal-elb"] = "1",
      ["karpenter.sh/discovery"] = name,
    }),
  })
end

-- One NAT gateway (in the first zone) keeps the bill small; put one per zone for production.
local nat_ip = mle.resource("aws_eip", "nat", { tags = with({ Name = name .. "-nat" }) })
local nat = mle.resource("aws_nat_gateway", "main", {
  subnet_id = public[1].id,
  allocation_id = nat_ip.id,
  tags = with({ Name = name }),
  depends_on = { igw },
})

local function ids(list)
  local out = {}
  for i, r in ipairs(list) do out[i] = r.id end
  return out
end

mle.resource("aws_route_table", "public", {
  vpc_id = vpc.id,
  routes = { { cidr_block = "0.0.0.0/0", gateway_id = igw.id } },
  subnet_ids = ids(public),
  tags = with({ Name = name .. "-public" }),
})

mle.resource("aws_route_table", "private", {
  vpc_id = vpc.id,
  routes = { { cidr_block = "0.0.0.0/0", nat_gateway_id = nat.id } },
  subnet_ids = ids(private),
  tags = with({ Name = name .. "-private" }),
})

-- HTTPS from inside the VPC to the control plane's interfaces.
local cluster_sg = mle.resource("aws_security_group", "cluster", {
  name = name .. "-cluster",
  description = "EKS control plane: HTTPS from the VPC",
  vpc_id = vpc.id,
  ingress = { { protocol = "tcp", from_port = 443, to_port = 443, cidr_blocks = { "10.0.0.0/16" } } },
  egress = { { protocol = "-1", from_port = 0, to_port = 0, cidr_blocks = { "0.0.0.0/0" } } },
  tags = with({ Name = name .. "-cluster" }),
})

------------------------------------------------------------------------ identity
local function trust(service)
  return {
    Version = "2012-10-17",
    Statement = { { Effect = "Allow", Principal = { Service = service }, Action = "sts:AssumeRole" } },
  }
end

local cluster_role = mle.resource("aws_iam_role", "cluster", {
  name = name .. "-eks-cluster",
  assume_role_policy = trust("eks.amazonaws.com"),
  tags = tags,
})
local cluster_policy = mle.resource("aws_iam_role_policy_attachment", "cluster", {
  role = cluster_role.name,
  policy_arn = "arn:aws:iam::aws:policy/AmazonEKSClusterPolicy",
})

local node_role = mle.resource("aws_iam_role", "node", {
  name = name .. "-eks-node",
  assume_role_policy = trust("ec2.amazonaws.com"),
  tags = tags,
})
local node_policies = {}
for i, p in ipairs({ "AmazonEKSWorkerNodePolicy", "AmazonEKS_CNI_Policy",
                     "AmazonEC2ContainerRegistryReadOnly" }) do
  node_policies[i] = mle.resource("aws_iam_role_policy_attachment", "node_" .. i, {
    role = node_role.name,
    policy_arn = "arn:aws:iam::aws:policy/" .. p,
  })
end

------------------------------------------------------------------------ cluster
local subnet_ids = ids(private)
for _, s in ipairs(public) do subnet_ids[#subnet_ids + 1] = s.id end

local cluster = mle.resource("aws_eks_cluster", "main", {
  name = name,
  version = k8s_version,
  role_arn = cluster_role.arn,
  subnet_ids = subnet_ids,
  security_group_ids = { cluster_sg.id },
  endpoint_public_access = true,
  endpoint_private_access = true,
  enabled_log_types = { "api", "audit" },
  tags = tags,
  depends_on = { cluster_policy },
})

mle.resource("aws_eks_node_group", "cpu", {
  cluster_name = cluster.name,
  node_group_name = "cpu",
  node_role_arn = node_role.arn,
  subnet_ids = ids(private),
  instance_types = { "m6i.xlarge" },
  min_size = 1,
  max_size = 6,
  desired_size = 2,
  labels = { workload = "general" },
  tags = tags,
  depends_on = node_policies,
})

-- GPUs cost by the hour: the pool idles at zero and only pods that tolerate the taint land.
mle.resource("aws_eks_node_group", "gpu", {
  cluster_name = cluster.name,
  node_group_name = "gpu",
  node_role_arn = node_role.arn,
  subnet_ids = ids(private),
  instance_types = { "g5.xlarge" },
  ami_type = "AL2_x86_64_GPU",
  min_size = 0,
  max_size = 4,
  desired_size = 0,
  labels = { workload = "gpu", ["nvidia.com/gpu.present"] = "true" },
  taints = { { key = "nvidia.com/gpu", value = "true", effect = "NO_SCHEDULE" } },
  tags = tags,
  depends_on = node_policies,
})

-- The cluster's OIDC issuer as an IAM identity provider: what IRSA trusts.
local oidc = mle.resource("aws_iam_openid_connect_provider", "cluster", {
  url = cluster.oidc_issuer,
  client_id_list = { "sts.amazonaws.com" },
  thumbprint_list = { "9e99a48a9960b14926bb7f3b02e22da2b0ab7280" },
  tags = tags,
})

------------------------------------------------------------------------ MLflow's storage
local artifacts = mle.resource("aws_s3_bucket", "artifacts", {
  bucket = mle.format("%s-mlflow-artifacts-%s", name, me.account_id),
  versioning = true,
  sse_algorithm = "AES256",
  force_destroy = true,
  tags = with({ purpose = "mlflow-artifacts" }),
})

local registry = mle.resource("aws_ecr_repository", "models", {
  name = name .. "/models",
  image_tag_mutability = "IMMUTABLE",
  scan_on_push = true,
  force_delete = true,
  tags = tags,
})

local db_password = mle.resource("random_password", "mlflow_db", { length = 24, special = false })

local secret = mle.resource("aws_secretsmanager_secret", "mlflow_db", {
  name = name .. "/mlflow/db",
  description = "MLflow's database password",
  secret_string = db_password.result,
  recovery_window_in_days = 0,          -- an example stack: destroy really deletes
  tags = tags,
})

-- IRSA: pods of the service account mlflow/mlflow may assume this role (and nothing else).
local mlflow_role = mle.resource("aws_iam_role", "mlflow", {
  name = name .. "-mlflow",
  assume_role_policy = mle.format([[{"Version":"2012-10-17","Statement":[{"Effect":"Allow",]]
    .. [["Principal":{"Federated":"%s"},"Action":"sts:AssumeRoleWithWebIdentity",]]
    .. [["Condition":{"StringEquals":{"%s:sub":"system:serviceaccount:mlflow:mlflow",]]
    .. [["%s:aud":"sts.amazonaws.com"}}}]}]],
    oidc.arn, oidc.condition_prefix, oidc.condition_prefix),
  tags = tags,
})

local mlflow_policy = mle.resource("aws_iam_policy", "mlflow", {
  name = name .. "-mlflow",
  description = "MLflow: its artifact bucket and its database secret",
  policy = mle.format([[{"Version":"2012-10-17","Statement":[]]
    .. [[{"Effect":"Allow","Action":["s3:GetObject","s3:PutObject","s3:DeleteObject","s3:ListBucket"],]]
    .. [["Resource":["%s","%s/*"]},]]
    .. [[{"Effect":"Allow","Action":["secretsmanager:GetSecretValue"],"Resource":"%s"}]}]],
    artifacts.arn, artifacts.arn, secret.arn),
  tags = tags,
})

mle.resource("aws_iam_role_policy_attachment", "mlflow", {
  role = mlflow_role.name,
  policy_arn = mlflow_policy.arn,
})

------------------------------------------------------------------------ outputs
mle.output("vpc_id", vpc.id)
mle.output("cluster_name", cluster.name)
mle.output("cluster_endpoint", cluster.endpoint)
mle.output("oidc_provider_arn", oidc.arn)
mle.output("artifact_bucket", artifacts.bucket)
mle.output("registry_url", registry.repository_url)
mle.output("mlflow_role_arn", mlflow_role.arn)
mle.output("mlflow_db_secret_arn", secret.arn)
