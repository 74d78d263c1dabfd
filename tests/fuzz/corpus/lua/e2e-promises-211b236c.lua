
local mle = require("mlengine")
local pw = mle.var("db_password", { sensitive = true })
local a = mle.resource("sim_resource", "a", { name = "a", value = mle.var("value", { default = "v1" }) })
local b = mle.resource("sim_resource", "b", { name = a.id, secret = pw })
mle.output("password", pw, { sensitive = true })
mle.output("a_id", a.id)
