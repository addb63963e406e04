-- Control commands in a process whose signals interrupt system calls: a
-- signal must only interrupt the wait for a command's answer, never stand
-- in for it (see spec/kernel/signal_storm.lua).
local luablk = require("luablk")
local u = require("kernel.util")

describe("control commands under a storm of SIGALRM without SA_RESTART", function()
	it("each get their own answer, and every device goes away", function()
		local before = assert(luablk.list())
		local status, out, err = u.run({ u.luablk_bin, "run", u.root .. "/spec/kernel/signal_storm.lua", "100" })
		local after = assert(luablk.list())
		local was = {}
		for _, id in ipairs(before) do
			was[id] = true
		end
		for _, id in ipairs(after) do
			if not was[id] then
				luablk.delete(id)
			end
		end
		assert.equal("ok 100\n", out, err)
		assert.equal(0, status, err)
		assert.not_matches("Sanitizer", err)
		assert.same(before, after)
	end)
end)
