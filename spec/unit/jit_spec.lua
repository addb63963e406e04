-- The dispatch loop and the shipped backends must compile: no trace
-- aborts in luablk's own code once warmed up, the loop itself compiled,
-- and no Lua heap growth per IO.
local dispatch = require("luablk.dispatch")
local backend = require("luablk.backend")
local h = require("helpers")

local READ, WRITE = 0, 1

-- Heap bytes per IO of `name` serving `len`-byte batches, watched by w.
local function run_backend(name, len, w)
	local depth = 64
	local b = h.batch(depth, len)
	local be = backend.load(name, h.fake_dev({ size = 2 ^ 22 }), {})
	local run = dispatch.make(be, b.batch, b.bufs, error)
	for i = 0, depth - 1 do
		h.set(b, i, (i % 3 == 0) and WRITE or READ, (i * len) % (2 ^ 22 - len), len)
	end
	local per_turn = h.steady_heap(w, function()
		run(depth)
	end, 200, 500, 2000)
	for i = 0, depth - 1 do
		assert.equal(len, b.batch[i].result)
	end
	return per_turn / depth
end

describe("JIT health", function()
	for _, case in ipairs({ { "null", 4096 }, { "mem", 4096 }, { "mem", 65536 } }) do
		local name, len = case[1], case[2]
		it(("%s %d: no trace aborts and no heap growth per IO"):format(name, len), function()
			local w = h.trace_watcher()
			local per_io = run_backend(name, len, w)
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
