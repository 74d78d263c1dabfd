
local mle = require("mlengine")
local value = mle.var("value", { default = "v1" })
local zone = mle.var("zone", { default = "z1" })
local a = mle.resource("sim_resource", "a", { name = "alpha", value = value, zone = zone })
local b = mle.resource("sim_resource", "b", { name = "beta-" .. a.id, value = "fixed" })
local c = mle.resource("sim_resource", "c", { name = mle.format("gamma-%s", b.name), depends_on = { a } })
mle.output("a_id", a.id)
mle.output("b_name", b.name)
