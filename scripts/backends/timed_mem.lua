-- timed_mem: a RAM disk (like mem) that records every call it gets, with
-- CLOCK_MONOTONIC timestamps taken on entry and on return, into a ring in
-- shared memory. scripts/flushbench.lua reads the ring to find the gaps
-- between consecutive backend calls.
--
-- Arguments: ring=N entries (default 262144, 8 MiB).
--
-- Regions:
--   "mem"        the device's bytes
--   "trace.head" uint64 [0]: entries ever written (the next slot is
--                head % N), reserved with an atomic add so queues can share
--   "trace"      N entries of 4 uint64 words:
--                  start ns, end ns, byte offset,
--                  len * 65536 + queue * 8 + op   (op as in LUABLK_OP_*)
-- The device advertises a volatile write cache, so fsync sends FLUSH.
local ffi = require("ffi")
local C = require("luablk").C

local OP_READ, OP_WRITE, OP_FLUSH, OP_DISCARD, OP_WRITE_ZEROES = 0, 1, 2, 3, 5

return function(dev, args)
	local n = tonumber(args.ring or 262144)
	local mem = dev:shared("mem", dev.size)
	local head = ffi.cast("uint64_t *", dev:shared("trace.head", 64))
	local ring = ffi.cast("uint64_t *", dev:shared("trace", n * 32))
	local qtag = dev.queue * 8

	local function record(t0, op, off, len)
		local slot = tonumber(C.luablk_atomic_add(head, 1) - 1) % n
		local e = ring + slot * 4
		e[0] = t0
		e[1] = C.luablk_now_ns()
		e[2] = off
		e[3] = len * 65536 + qtag + op
	end

	local function zero(op)
		return function(_, off, len)
			local t0 = C.luablk_now_ns()
			ffi.fill(mem + off, len)
			record(t0, op, off, len)
		end
	end

	return {
		caps = { write_cache = true },
		read_at = function(_, buf, off, len)
			local t0 = C.luablk_now_ns()
			ffi.copy(buf, mem + off, len)
			record(t0, OP_READ, off, len)
		end,
		write_at = function(_, buf, off, len)
			local t0 = C.luablk_now_ns()
			ffi.copy(mem + off, buf, len)
			record(t0, OP_WRITE, off, len)
		end,
		flush = function()
			record(C.luablk_now_ns(), OP_FLUSH, 0, 0)
		end,
		discard = zero(OP_DISCARD),
		write_zeroes = zero(OP_WRITE_ZEROES),
	}
end
