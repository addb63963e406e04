-- The dispatch loop and the shipped backends must compile: no trace
-- aborts in luablk's own code, and no Lua heap growth per IO.
local ffi = require("ffi")
local jit = require("jit")
local jutil = require("jit.util")
local vmdef = require("jit.vmdef")
local dispatch = require("luablk.dispatch")
local backend = require("luablk.backend")
local h = require("helpers")

local READ, WRITE = 0, 1

-- Watches trace events for luablk's own code: aborts (with the reason)
-- and completed traces, split by phase so warm-up noise is visible but
-- only steady state has to be clean.
local function watcher()
	local w = { phase = "warmup", aborts = { warmup = {}, steady = {} }, stopped = {} }
	function w.cb(what, tr, func, pc, otr, oex)
		local info = jutil.funcinfo(func, pc)
		if not (info.source and info.source:find("luablk/", 1, true)) then
			return
		end
		if what == "abort" then
			local why = tostring(vmdef.traceerr[otr] or otr):format(oex)
			table.insert(w.aborts[w.phase], info.loc .. ": " .. why)
		elseif what == "stop" then
			local start = jutil.funcinfo(jutil.traceinfo(tr) and func or func)
			w.stopped[#w.stopped + 1] = start.source
		end
	end
	return w
end

local function fake_dev(size)
	local mem = ffi.new("uint8_t[?]", size)
	return {
		size = size,
		shared = function()
			return mem
		end,
	}
end

local function run_backend(name, len, w)
	local depth = 64
	local b = h.batch(depth, len)
	local be = backend.load(name, fake_dev(2 ^ 22), {})
	local run = dispatch.make(be, b.batch, b.bufs, error)
	for i = 0, depth - 1 do
		h.set(b, i, (i % 3 == 0) and WRITE or READ, (i * len) % (2 ^ 22 - len), len)
	end
	local function turn()
		run(depth)
	end
	for _ = 1, 200 do
		turn()
	end
	w.phase = "steady"
	for _ = 1, 500 do
		turn()
	end
	-- The watcher allocates on trace events: detach it to weigh the heap.
	jit.attach(w.cb)
	collectgarbage()
	collectgarbage("stop")
	local before = collectgarbage("count")
	for _ = 1, 2000 do
		turn()
	end
	local growth = (collectgarbage("count") - before) * 1024
	collectgarbage("restart")
	for i = 0, depth - 1 do
		assert.equal(len, b.batch[i].result)
	end
	return growth / (2000 * depth)
end

describe("JIT health", function()
	for _, case in ipairs({ { "null", 4096 }, { "mem", 4096 }, { "mem", 65536 } }) do
		local name, len = case[1], case[2]
		it(("%s %d: no trace aborts and no heap growth per IO"):format(name, len), function()
			jit.flush()
			local w = watcher()
			jit.attach(w.cb, "trace")
			local ok, per_io = pcall(run_backend, name, len, w)
			jit.attach(w.cb)
			assert(ok, per_io)
			assert.same({}, w.aborts.steady)
			local loop_compiled = false
			for _, src in ipairs(w.stopped) do
				loop_compiled = loop_compiled or src:find("luablk/dispatch.lua", 1, true) ~= nil
			end
			assert.is_true(loop_compiled, "no compiled trace in dispatch.lua")
			-- Any allocation per IO costs at least 16 bytes (the smallest
			-- GC object); under 1 byte per IO on average tolerates a
			-- one-off allocation somewhere in the run but no per-IO one.
			assert.is_true(per_io < 1, "heap bytes per IO: " .. per_io)
		end)
	end
end)
