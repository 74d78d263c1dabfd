
local mle = require("mlengine")
mle.resource("sim_resource", "a", { name = "a" })
