
local mle = require("mlengine")
mle.resource("sim_cbd_resource", "x", { zone = mle.var("zone", { default = "a" }) })
