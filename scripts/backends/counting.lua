-- counting: wraps another backend and counts, per queue, the calls it
-- gets, in a shared region the harness reads ("counts"). The probe uses
-- it to prove that sync, fsync and reads after drop_caches reach the
-- backend, and that the device is quiet while it copies the storage.
--
-- Arguments: inner=BACKEND (default mem; a shipped name or a .lua path);
-- all arguments are passed on to it.
--
-- Region "counts": uint64 words, 8 per queue, queue q at q*8:
--   +0 reads   +1 writes   +2 flushes   +3 discards   +4 write_zeroes
--   +5 bytes read   +6 bytes written
--   +7 finished changes (writes + discards + write_zeroes that returned)
-- Each queue writes only its own words, so no atomics are needed.
local ffi = require("ffi")
local backend = require("luablk.backend")

local MAX_QUEUES = 64

return function(dev, args)
	local inner = backend.load(args.inner or "mem", dev, args)
	local counts = ffi.cast("uint64_t *", dev:shared("counts", 8 * 8 * MAX_QUEUES))
	local c = counts + 8 * (dev.queue % MAX_QUEUES)
	local read_at, write_at = inner.read_at, inner.write_at
	local flush, discard, zeroes = inner.flush, inner.discard, inner.write_zeroes

	-- Only the methods the inner backend has: their presence is what the
	-- device advertises (discard, write_zeroes).
	local be = { caps = inner.caps }

	function be.read_at(_, buf, off, len, flags)
		c[0] = c[0] + 1
		c[5] = c[5] + len
		return read_at(inner, buf, off, len, flags)
	end

	function be.write_at(_, buf, off, len, flags)
		c[1] = c[1] + 1
		c[6] = c[6] + len
		local r = write_at(inner, buf, off, len, flags)
		c[7] = c[7] + 1
		return r
	end

	if flush then
		function be.flush()
			c[2] = c[2] + 1
			return flush(inner)
		end
	end
	if discard then
		function be.discard(_, off, len)
			c[3] = c[3] + 1
			local r = discard(inner, off, len)
			c[7] = c[7] + 1
			return r
		end
	end
	if zeroes then
		function be.write_zeroes(_, off, len)
			c[4] = c[4] + 1
			local r = zeroes(inner, off, len)
			c[7] = c[7] + 1
			return r
		end
	end
	return be
end
