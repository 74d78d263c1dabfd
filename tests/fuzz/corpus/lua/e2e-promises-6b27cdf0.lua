
local mle = require("mlengine")
local a = mle.resource("sim_resource", "a", { name = "a", pending_ms = 300 })
mle.resource("sim_resource", "b", { name = a.id })
