
local mle = require("mlengine")
mle.resource("sim_resource", "a", { name = "a" })
mle.resource("sim_resource", "b", { name = "b" })
mle.hook("post_plan", function(ctx)
  ctx:write_report("reports/plan.txt", "changes=" .. #ctx.plan.changes)
end)
mle.hook("on_resource", function(ctx)
  if ctx.phase == "after" then
    ctx:write_report("reports/" .. ctx.address .. ".txt", ctx.action .. " " .. ctx.result)
  end
end)
mle.hook("pre_apply", function(ctx)
  if os.time() > 0 and VETO then ctx:veto("change freeze until Monday") end
end)
