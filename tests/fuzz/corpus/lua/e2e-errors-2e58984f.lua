
local mle = require("mlengine")
mle.resource("sim_resource", "a", { name = mle.var("n"), value = mle.var("v") })
