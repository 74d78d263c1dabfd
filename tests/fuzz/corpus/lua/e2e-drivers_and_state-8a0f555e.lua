
local mle = require("mlengine")
mle.driver("hello", {{ dir = "{out}" }})
local g = mle.resource("hello_greeting", "hi", {{ greeting = "hello, world" }})
mle.output("id", g.id)
