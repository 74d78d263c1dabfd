
local mle = require("mlengine")
local a = mle.resource("sim_resource", "a", { name = "a" })
