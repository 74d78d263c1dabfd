
local mle = require("mlengine")
local pw = mle.resource("random_password", "db", { length = 20 })
mle.resource("sim_resource", "a", { name = "a", secret = pw.result })
mle.output("password", pw.result, { sensitive = true })
