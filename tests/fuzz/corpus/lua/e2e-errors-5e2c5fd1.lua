
local mle = require("mlengine")
local a = mle.resource("sim_resource", "a", { name = "a" })
local x = mle.resource("sim_resource", "x", { depends_on = { "sim_resource.y" } })
local y = mle.resource("sim_resource", "y", { name = x.id })
