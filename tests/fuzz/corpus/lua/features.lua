-- Every part of the mlengine module a stack can reach (the fuzz target's stack folder holds
-- values.yaml, policy.json and lib/util.lua).
local mle = require("mlengine")
local util = require("lib.util")

local env = mle.var("environment", { type = "string", default = "dev" })
local count = mle.var("node_count", { type = "number", default = 1 })
local zones = mle.var("zones", { type = "list", default = { "a" } })
local tags = mle.var("tags", { type = "map", default = {} })
local pw = mle.var("db_password", { sensitive = true })
local missing = mle.var("optional", { default = mle.null, description = "may be null" })

mle.driver("sim", { store = ".fuzz/sim", journal = ".fuzz/journal.log" })

local values = mle.yamldecode(mle.file("values.yaml"))
local all = mle.yamldecode_all("a: 1\n---\nb: [2, 3]\n")
local policy = mle.jsondecode(mle.file("policy.json"))
local merged = mle.merge(values, { replicas = count, env = mle.null }, nil, { image = { tag = "v3" } })

local net = mle.resource("sim_resource", "network", {
  name = "net-" .. env,
  tags = mle.merge(tags, { zone = zones[1] }),
  latency_ms = 0,
})
local bucket = util.bucket("artifacts", { policy = mle.jsonencode(policy) })
local nodes = {}
for i = 1, math.min(count, 4) do
  nodes[i] = mle.resource("sim_resource", "node_" .. i, {
    name = mle.format("%s-node-%d", net.name, i),
    value = net.id .. ":" .. i,
    depends_on = { bucket, "sim_resource.network" },
  })
end
local secret = mle.resource("random_password", "db", { length = 20, special = true })
mle.resource("local_file", "values", {
  filename = ".fuzz/values.yaml",
  content = "replicas: " .. tostring(merged.replicas) .. "\npassword: " .. secret.result,
  file_permission = "0600",
})
mle.resource("sim_cbd_resource", "cbd", { zone = zones[#zones] })
mle.resource("sim_resource", "secretive", { secret = mle.sensitive("x" .. pw), name = mle.address(net) })

local ok, err = pcall(function() return net.id + 1 end)
assert(not ok and type(err) == "string")
assert(tostring(net.id) == "${sim_resource.network.id}" and net.id == net.id)
local f = load("return 1 + ...")
assert(f(41) == 42)
local t = setmetatable({}, { __index = function(_, k) return k .. "!" end })
assert(t.x == "x!")
print(string.format("%5.2f %q %s", 1.5, "q\n", utf8.char(233)), os.time() > 0, #all, missing)
for k, v in pairs(merged.image) do assert(type(k) == "string") end
local s = ("mlops"):rep(3, "-"):upper():gsub("O", "0")
assert(s:find("ML0PS", 1, true))
math.randomseed(7)
local r = math.random(1, 6)

mle.output("network_id", net.id, { description = "the network" })
mle.output("password", secret.result, { sensitive = true })
mle.output("nodes", { nodes[1] and nodes[1].id, r, zones, mle.null })
mle.output("expr", "id=" .. bucket.id .. "/" .. env)

mle.hook("pre_plan", function(ctx) assert(ctx.command) end)
mle.hook("pre_apply", function(ctx)
  if ctx.summary.delete > 0 and ctx.workspace == "prod" then
    ctx:veto("deleting resources in prod needs a reviewed plan")
  end
end)
mle.hook("post_plan", function(ctx)
  ctx:write_report("reports/summary.json", mle.jsonencode(ctx.summary))
end)
mle.hook("on_resource", function(ctx) return ctx.resource and ctx.resource.address end)
