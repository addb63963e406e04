-- An async RAM disk for tests: every IO waits a random time (a timer on
-- the queue's ring, up to max_us= microseconds, seeded by seed= and the
-- queue) before it touches the data, so IOs finish out of order. stuck=1
-- makes every read wait for an hour instead (deadline tests).
local ffi = require("ffi")
local aio = require("luablk.aio")

return function(dev, args)
	local mem = dev:shared("mem", dev.size)
	local max_s = tonumber(args.max_us or "2000") / 1e6
	local stuck = args.stuck == "1"
	local x = tonumber(args.seed or "1") * 7919 + dev.queue
	local function wait()
		x = (x * 1103515245 + 12345) % 2147483648
		aio.sleep(x / 2147483648 * max_s)
	end
	return {
		async = true,
		caps = { write_cache = true },
		read_at = function(_, buf, off, len)
			if stuck then
				aio.sleep(3600)
			end
			wait()
			ffi.copy(buf, mem + off, len)
		end,
		write_at = function(_, buf, off, len)
			wait()
			ffi.copy(mem + off, buf, len)
		end,
		flush = function()
			wait()
		end,
	}
end
