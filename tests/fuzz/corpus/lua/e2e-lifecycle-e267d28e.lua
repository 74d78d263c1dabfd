
local mle = require("mlengine")
for i = 1, 5 do
  mle.resource("sim_resource", "slow" .. i, { pending_ms = 3000 })
end
