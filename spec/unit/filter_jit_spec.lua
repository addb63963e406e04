-- Filters sit on the per-IO path: stacked under the dispatch loop they
-- must compile (no trace aborts in luablk's code in steady state) and
-- must not grow the Lua heap per IO.
local dispatch = require("luablk.dispatch")
local backend = require("luablk.backend")
local h = require("helpers")

local READ, WRITE, FLUSH = 0, 1, 2
local SIZE = 2 ^ 22


local function fake_dev()
	return h.fake_dev({ size = SIZE })
end


-- Runs batches mixing reads, writes (some FUA) and, every flush_every
-- batches, a flush through the filter chain; returns heap bytes per IO
-- in steady state.
local function run_chain(filters, w, flush_every)
	local depth, len = 32, 4096
	local b = h.batch(depth, len)
	local be = backend.load("mem", fake_dev(), {}, filters)
	local run = dispatch.make(be, b.batch, b.bufs, function() end)
	local turns = 0
	local function turn()
		turns = turns + 1
		local flush = turns % flush_every == 0
		for i = 0, depth - 1 do
			local op = (flush and i == depth - 1) and FLUSH or ((i % 3 == 0) and WRITE or READ)
			h.set(b, i, op, (i * 7 * len) % (SIZE - len), len)
			if i % 5 == 0 then
				b.batch[i].flags = 8192
			end
		end
		run(depth)
	end
	return h.steady_heap(w, turn, 150, 300, 1000) / depth
end

describe("JIT health of filters", function()
	-- name, filters, batches per flush, heap bytes allowed per IO, abort
	-- reasons allowed. A table or a string built per IO costs 20 bytes or
	-- more; what stays below the limits is traces being made while the
	-- heap is weighed. crash writes dirty runs back in a loop once per
	-- flush, and how LuaJIT strings that loop into traces varies from run
	-- to run ("inner loop in root trace"; "return to lower frame" when
	-- the loop ends and its function returns, after which the tail of
	-- that flush is interpreted; "loop unroll limit reached" when the
	-- scan of the dirty map is unrolled, or "leaving loop in root trace").
	-- Reads and writes have no loops.
	local loops = {
		"inner loop in root trace",
		"return to lower frame",
		"loop unroll limit reached",
		"leaving loop in root trace",
	}
	local chains = {
		{ "fault(rate) + delay(0) + stats", { "fault:rate=0.1,op=read+write,seed=3", "delay:ms=0", "stats" }, 1, 0.5 },
		{ "fault(flag, after, range)", { "fault:flag=1,after=5,from=4096,to=1M" }, 1, 0.5 },
		{ "trace", { "trace:path=/dev/null,append=1" }, 1, 0.5 },
		{ "crash", { "crash" }, 16, 1, loops },
	}
	for _, c in ipairs(chains) do
		local name, filters, flush_every, limit, allowed = c[1], c[2], c[3], c[4], c[5] or {}
		it(name .. ": no trace aborts and no heap growth per IO", function()
			local w = h.trace_watcher()
			local per_io = run_chain(filters, w, flush_every)
			local aborts = {}
			for _, a in ipairs(w.aborts.steady) do
				local ok_reason = false
				for _, reason in ipairs(allowed) do
					ok_reason = ok_reason or a:find(reason, 1, true) ~= nil
				end
				if not ok_reason then
					aborts[#aborts + 1] = a
				end
			end
			assert.same({}, aborts)
			assert.is_true(per_io < limit, "heap bytes per IO: " .. per_io)
		end)
	end
end)
