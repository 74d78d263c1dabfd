
local mle = require("mlengine")
mle.hook("post_apply", function(ctx) ctx:write_report("../escape.txt", "x") end)
