-- Each of these is refused with a message (the fuzz target checks that it is).
local mle = require("mlengine")
local a = mle.resource("sim_resource", "a", { name = "a" })
local ok = pcall(mle.resource, "sim_resource", "a", {})             -- duplicate address
ok = pcall(mle.resource, "sim_resource", "bad name", {})            -- bad name
ok = pcall(mle.resource, "sim_resource", "b", { ["$ref"] = 1 })     -- reserved marker key
ok = pcall(mle.resource, "sim_resource", "c", { x = { 1, nil, 3 } })
ok = pcall(mle.resource, "sim_resource", "d", { name = a })         -- a handle as a value
ok = pcall(mle.file, "../../etc/passwd")
ok = pcall(require, "../x")
ok = pcall(function() return os.execute("true") end)
ok = pcall(function() return io.open("/etc/passwd") end)
ok = pcall(setmetatable, {}, { __concat = function() end })
ok = pcall(string.rep, "x", 1 << 40)
ok = pcall(mle.jsonencode, { id = a.id })
ok = pcall(mle.yamldecode, "a: [1, 2")
ok = pcall(mle.jsondecode, "{\"a\": }")
ok = pcall(mle.output, "o", function() end)
ok = pcall(mle.var, "v", { defualt = 1 })
ok = pcall(mle.hook, "no_such_hook", function() end)
ok = pcall(load, "\27Lua")
local deep = {}
local cur = deep
for i = 1, 300 do cur.x = {}; cur = cur.x end
mle.resource("sim_resource", "deep", { tags = deep })
