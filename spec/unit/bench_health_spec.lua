-- The benchmark's part C arithmetic (scripts/bench/health.lua): windows
-- over the JIT logs of several queues, from a mark or an IO count, with
-- the heap weighed where the JIT was quiet.
package.path = "scripts/bench/?.lua;" .. package.path
local health = require("health")

local function write(path, lines)
	local f = assert(io.open(path, "a"))
	f:write(table.concat(lines, "\n"), "\n")
	f:close()
end

describe("bench health", function()
	local dir
	before_each(function()
		dir = health.tmpdir()
	end)
	after_each(function()
		health.remove(dir)
	end)

	it("sums queues over the window that starts at an IO count", function()
		write(dir .. "/7.q0.log", {
			"[TRACE 1 dispatch.lua:80 loop]",
			"[TRACE --- dispatch.lua:80 -- leaving loop in root trace at dispatch.lua:106]",
			"[IOS 1000 100 1 1 0]",
			"[IOS 2000 100 1 1 0]",
			"[IOS 3000 100.5 1 1 0]",
		})
		write(dir .. "/7.q1.log", { "[IOS 1000 90 1 0 0]", "[IOS 2000 90 1 0 0]", "[IOS 3000 90 1 0 0]" })
		write(dir .. "/unrelated.txt", { "[IOS 1 1 1 1 1]" })
		local s = health.summary(dir, 2000)
		assert.equal(2, s.queues)
		assert.equal(2000, s.ios)
		assert.equal(512 / 2000, s.heap_bytes_per_io)
		assert.same({ 0, 0, 0 }, { s.aborts, s.nyi, s.traces })
		assert.equal(1, s.aborts_total)
		assert.same({ ["[TRACE --- dispatch.lua:80 -- leaving loop in root trace at dispatch.lua:106]"] = 1 }, s.reasons)
		-- 0.26 B/IO: an allocation now and then, none per IO (16 B at least)
		assert.is_true(health.met(s))
	end)

	it("starts the window at a mark and counts what comes after it", function()
		local log = dir .. "/9.q0.log"
		write(log, { "[TRACE 1 a.lua:1 loop]", "[IOS 100 50 1 0 0]", "[IOS 200 50 1 0 0]" })
		local marks = health.mark(dir)
		write(log, {
			"[TRACE --- a.lua:9 -- NYI: bytecode 51]",
			"[IOS 300 50 1 1 1]",
			"[IOS 400 50 1 1 1]",
		})
		local s = health.summary(dir, marks)
		assert.equal(200, s.ios)
		assert.same({ 1, 1, 0 }, { s.aborts, s.nyi, s.traces })
		assert.equal(0, s.heap_bytes_per_io)
		assert.is_false(health.met(s))
	end)

	it("weighs the heap only where no trace was made or aborted", function()
		write(dir .. "/5.q0.log", {
			"[IOS 1000 100 1 0 0]",
			"[TRACE 2 jitlog.lua:95 stitch]",
			"[IOS 2000 103 2 0 0]",
			"[IOS 3000 103 2 0 0]",
			"[TRACE --- dispatch.lua:80 -- leaving loop in root trace at dispatch.lua:106]",
			"[IOS 4000 104 2 1 0]",
			"[IOS 5000 104 2 1 0]",
		})
		local s = health.summary(dir, 1000)
		assert.equal(4000, s.ios)
		assert.same({ 1, 1, 0 }, { s.traces, s.aborts, s.nyi })
		assert.equal(2000, s.heap_ios)
		assert.equal(0, s.heap_bytes_per_io)
		assert.is_false(health.met(s)) -- the abort
		-- an allocation where the JIT was quiet is weighed
		write(dir .. "/5.q0.log", { "[IOS 6000 106 2 1 0]" })
		s = health.summary(dir, 1000)
		assert.equal(3000, s.heap_ios)
		assert.equal(2 * 1024 / 3000, s.heap_bytes_per_io)
	end)

	it("reports an empty window when there is no IOS line after its start", function()
		assert.equal(0, health.least_ios(dir))
		write(dir .. "/3.q0.log", { "[IOS 100 50 0 0 0]" })
		write(dir .. "/3.q1.log", { "[IOS 100 50 0 0 0]", "[IOS 200 50 0 0 0]" })
		assert.equal(100, health.least_ios(dir))
		local s = health.summary(dir, 5000)
		assert.equal(0, s.ios)
		assert.is_nil(s.heap_bytes_per_io)
		assert.is_false(health.met(s))
	end)
end)
