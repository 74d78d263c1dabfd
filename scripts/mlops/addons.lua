-- mlops.addons: the cluster add-ons of ADR-004 — Karpenter (AWS only), KEDA and Kyverno —
-- each as its Helm release plus the add-on's own custom resources, ordered so that the
-- custom resources are applied only after the release installed their CRDs.
--
--   local addons = require("mlops.addons")
--   local karp = addons.karpenter{
--     cluster_name = cluster.name, cluster_endpoint = cluster.endpoint,
--     oidc_provider_arn = oidc.arn, oidc_condition_prefix = oidc.condition_prefix,
--     node_role_arn = node_role.arn, node_role_name = node_role.name,
--     values = { replicas = 1 },               -- overrides, merged over the common values
--   }
--   karp.ec2_node_class("default", { name = "default", role = node_role.name, ... })
--   karp.node_pool("gpu", { name = "gpu", node_class = "default", requirements = {...} })
--
--   local keda = addons.keda{}
--   keda.scaled_object("predictor", { name = "predictor", namespace = "ml-serving", ... })
--
--   local kyv = addons.kyverno{}
--   kyv.cluster_policy("privileged", { policy = mle.yamldecode(mle.file(...)) })
--
-- Every function returns a table: `release` (the helm_release handle), the add-on's other
-- resources (karpenter: `role`, `policy`), and one declaring function per custom resource
-- type, which adds the release to the resource's depends_on. The add-on types also wait for
-- their CRD to be Established themselves (polled, bounded by wait_timeout), so the
-- depends_on orders the graph and the wait covers the moment between "release deployed" and
-- "CRD served". A stack declares the drivers (mle.driver "helm", "karpenter", ...) itself.
--
-- Common options of each function: name (release name), namespace, chart, repository,
-- version, values (overrides deep-merged over the add-on's common values with mle.merge:
-- maps merge, lists replace, mle.null deletes), helm (extra helm_release attributes such as
-- atomic = true, wait = true), depends_on (what the release waits for, e.g. the node group).
local mle = require("mlengine")

local M = {}

-- Chart versions the module was written against; override with `version`.
M.versions = { karpenter = "1.15.1", keda = "2.21.0", kyverno = "3.7.1" }

local function append(list, more)
  local out = {}
  for _, v in ipairs(list or {}) do out[#out + 1] = v end
  for _, v in ipairs(more or {}) do out[#out + 1] = v end
  return out
end

local function copy(t)
  local out = {}
  for k, v in pairs(t or {}) do out[k] = v end
  return out
end

-- The add-on's helm_release: chart from a repository URL (or OCI), values layered.
local function release(kind, opts, defaults, common_values)
  local attrs = copy(opts.helm)
  attrs.name = opts.name or defaults.name
  attrs.namespace = opts.namespace or defaults.namespace
  attrs.chart = opts.chart or defaults.chart
  attrs.repository = opts.repository or defaults.repository
  attrs.version = opts.version or M.versions[kind]
  attrs.create_namespace = attrs.create_namespace ~= false
  attrs.values = mle.merge(common_values, opts.values)
  attrs.depends_on = append(attrs.depends_on, opts.depends_on)
  return mle.resource("helm_release", opts.resource_name or kind, attrs)
end

-- A declaring function for custom resources of `type`: the resource depends on the release.
local function declarer(type, rel)
  return function(name, attrs)
    local a = copy(attrs)
    a.depends_on = append({ rel }, attrs.depends_on)
    return mle.resource(type, name, a)
  end
end

------------------------------------------------------------------------ Karpenter (AWS)

-- The controller's IAM permissions (Karpenter v1 on EKS): launch and terminate instances
-- through fleets and launch templates, pass the node role, manage the instance profiles it
-- makes, read prices, SSM AMI parameters and the cluster, and (optionally) the interruption
-- queue.
local function karpenter_policy(opts)
  local queue = opts.interruption_queue_arn
  return mle.format([[{"Version":"2012-10-17","Statement":[]]
    .. [[{"Sid":"Ec2","Effect":"Allow","Action":["ec2:CreateFleet","ec2:RunInstances",]]
    .. [["ec2:CreateLaunchTemplate","ec2:DeleteLaunchTemplate","ec2:CreateTags",]]
    .. [["ec2:TerminateInstances","ec2:DescribeAvailabilityZones","ec2:DescribeImages",]]
    .. [["ec2:DescribeInstances","ec2:DescribeInstanceTypeOfferings","ec2:DescribeInstanceTypes",]]
    .. [["ec2:DescribeLaunchTemplates","ec2:DescribeSecurityGroups","ec2:DescribeSpotPriceHistory",]]
    .. [["ec2:DescribeSubnets","ec2:DescribeCapacityReservations"],"Resource":"*"},]]
    .. [[{"Sid":"PassNodeRole","Effect":"Allow","Action":"iam:PassRole","Resource":"%s"},]]
    .. [[{"Sid":"InstanceProfiles","Effect":"Allow","Action":["iam:CreateInstanceProfile",]]
    .. [["iam:TagInstanceProfile","iam:AddRoleToInstanceProfile","iam:RemoveRoleFromInstanceProfile",]]
    .. [["iam:DeleteInstanceProfile","iam:GetInstanceProfile","iam:ListInstanceProfiles"],"Resource":"*"},]]
    .. [[{"Sid":"Lookups","Effect":"Allow","Action":["ssm:GetParameter","pricing:GetProducts",]]
    .. [["eks:DescribeCluster"],"Resource":"*"}]]
    .. (queue and [[,{"Sid":"Interruptions","Effect":"Allow","Action":["sqs:DeleteMessage",]]
      .. [["sqs:GetQueueUrl","sqs:ReceiveMessage"],"Resource":"%s"}]] or "")
    .. [[]}]], opts.node_role_arn, queue or "")
end

-- opts: cluster_name, cluster_endpoint (references to the EKS cluster's outputs),
-- oidc_provider_arn + oidc_condition_prefix (the aws_iam_openid_connect_provider's arn and
-- condition_prefix), node_role_arn (the role Karpenter's nodes run as), optional
-- interruption_queue (name) + interruption_queue_arn, role_name, tags, and the common options.
function M.karpenter(opts)
  opts = opts or {}
  for _, k in ipairs({ "cluster_name", "oidc_provider_arn", "oidc_condition_prefix",
                       "node_role_arn" }) do
    if opts[k] == nil then
      error("mlops.addons.karpenter: " .. k .. " is required", 2)
    end
  end
  local namespace = opts.namespace or "kube-system"
  local sa = opts.service_account or "karpenter"
  local role_name = opts.role_name or mle.format("%s-karpenter", opts.cluster_name)
  -- IRSA: only the controller's service account may assume the role.
  local role = mle.resource("aws_iam_role", opts.resource_name or "karpenter", {
    name = role_name,
    assume_role_policy = mle.format([[{"Version":"2012-10-17","Statement":[{"Effect":"Allow",]]
      .. [["Principal":{"Federated":"%s"},"Action":"sts:AssumeRoleWithWebIdentity",]]
      .. [["Condition":{"StringEquals":{"%s:sub":"system:serviceaccount:%s:%s",]]
      .. [["%s:aud":"sts.amazonaws.com"}}}]}]],
      opts.oidc_provider_arn, opts.oidc_condition_prefix, namespace, sa,
      opts.oidc_condition_prefix),
    tags = opts.tags,
  })
  local policy = mle.resource("aws_iam_policy", opts.resource_name or "karpenter", {
    name = role_name,
    description = "Karpenter controller: launch, tag and terminate nodes",
    policy = karpenter_policy(opts),
    tags = opts.tags,
  })
  local attachment = mle.resource("aws_iam_role_policy_attachment",
                                  opts.resource_name or "karpenter", {
    role = role.name,
    policy_arn = policy.arn,
  })
  local common = {
    serviceAccount = { name = sa, annotations = { ["eks.amazonaws.com/role-arn"] = role.arn } },
    settings = { clusterName = opts.cluster_name, clusterEndpoint = opts.cluster_endpoint,
                 interruptionQueue = opts.interruption_queue },
    controller = { resources = { requests = { cpu = "1", memory = "1Gi" },
                                 limits = { cpu = "1", memory = "1Gi" } } },
  }
  local o = copy(opts)
  o.namespace = namespace
  -- The release needs the role's permissions before the controller starts.
  o.depends_on = append({ attachment }, opts.depends_on)
  local rel = release("karpenter", o, {
    name = "karpenter", namespace = namespace,
    chart = "oci://public.ecr.aws/karpenter/karpenter",
  }, common)
  return {
    release = rel, role = role, policy = policy, attachment = attachment,
    node_pool = declarer("karpenter_node_pool", rel),
    ec2_node_class = declarer("karpenter_ec2_node_class", rel),
  }
end

------------------------------------------------------------------------ KEDA (every cloud)

function M.keda(opts)
  opts = opts or {}
  local common = {
    crds = { install = true },
    resources = { operator = { requests = { cpu = "100m", memory = "128Mi" } } },
  }
  local rel = release("keda", opts, {
    name = "keda", namespace = "keda", chart = "keda",
    repository = "https://kedacore.github.io/charts",
  }, common)
  return { release = rel, scaled_object = declarer("keda_scaled_object", rel) }
end

------------------------------------------------------------------------ Kyverno (every cloud)

-- opts.policies: a list of ClusterPolicy documents (e.g. from require("mlops.policies")
-- .documents{...} filtered to kind ClusterPolicy, with the registry already substituted),
-- each declared as kyverno_cluster_policy "<metadata.name with - as _>".
function M.kyverno(opts)
  opts = opts or {}
  local common = {
    crds = { install = true },
    admissionController = { replicas = 3 },
  }
  local rel = release("kyverno", opts, {
    name = "kyverno", namespace = "kyverno", chart = "kyverno",
    repository = "https://kyverno.github.io/kyverno/",
  }, common)
  local out = { release = rel, cluster_policy = declarer("kyverno_cluster_policy", rel),
                policies = {} }
  for _, doc in ipairs(opts.policies or {}) do
    local name = doc.metadata.name:gsub("[^%w_]", "_")
    out.policies[name] = out.cluster_policy(name, { policy = doc })
  end
  return out
end

return M
