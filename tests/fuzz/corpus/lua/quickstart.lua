-- quickstart.lua — an MLOps platform in miniature that needs no cloud account.
--
-- The `sim` driver stands in for a cloud (its resources are files under .quickstart/sim,
-- created with the latency and "in progress" phases a real cloud has); the `local` driver
-- makes real things: a generated database password and a rendered Helm values file.
--
--   mlengine apply scripts/examples/quickstart.lua          # plan, confirm, apply
--   mlengine plan  scripts/examples/quickstart.lua          # a second plan: no changes
--   mlengine apply scripts/examples/quickstart.lua --var environment=prod
--   mlengine destroy scripts/examples/quickstart.lua
local mle = require("mlengine")

local env = mle.var("environment", { default = "dev", description = "dev, staging or prod" })
local workdir = mle.var("workdir", { default = ".quickstart", description = "where local files go" })

mle.driver("sim", { store = workdir .. "/sim", journal = workdir .. "/sim-journal.log" })

local name = "mlops-" .. env

-- The network and the cluster: the cluster takes a while, as EKS, AKS and GKE do.
local network = mle.resource("sim_resource", "network", {
  name = name .. "-vpc",
  tags = { environment = env, team = "ml-platform" },
  latency_ms = 50,
})

local cluster = mle.resource("sim_resource", "cluster", {
  name = name .. "-cluster",
  value = network.id,          -- a reference: an edge in the graph
  pending_ms = 1500,           -- answers "in progress", polled without holding a worker
  tags = { environment = env },
})

local pools = {}
for _, pool in ipairs({ "cpu", "gpu" }) do
  pools[pool] = mle.resource("sim_resource", "pool_" .. pool, {
    name = mle.format("%s-%s", cluster.name, pool),
    zone = pool == "gpu" and "gpu-zone" or "general",
    latency_ms = 100,
  })
end

local artifacts = mle.resource("sim_resource", "artifacts", {
  name = name .. "-artifacts",
  tags = { purpose = "mlflow-artifacts" },
})

-- A secret: generated once, redacted everywhere, sealed in state.
local db_password = mle.resource("random_password", "mlflow_db", { length = 24, special = false })

local tracking = mle.resource("sim_resource", "mlflow", {
  name = name .. "-mlflow",
  value = artifacts.id,
  secret = db_password.result,
  depends_on = { pools.cpu },
})

-- The values file a Helm release of MLflow would take.
mle.resource("local_file", "mlflow_values", {
  filename = workdir .. "/mlflow-values.yaml",
  content = "artifactRoot: sim://" .. artifacts.id .. "\n"
    .. "trackingServer: " .. tracking.id .. "\n"
    .. "cluster: " .. cluster.name .. "\n",
  file_permission = "0600",
})

mle.output("cluster_name", cluster.name)
mle.output("artifact_store", artifacts.id)
mle.output("mlflow_db_password", db_password.result, { sensitive = true })
