
local mle = require("mlengine")
local bad = mle.resource("sim_resource", "bad", { fail = true })
local child = mle.resource("sim_resource", "child", { name = bad.id })
local sibling = mle.resource("sim_resource", "sibling", { name = "ok" })
local cousin = mle.resource("sim_resource", "cousin", { name = sibling.id })
