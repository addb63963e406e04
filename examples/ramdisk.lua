-- A complete luablk backend: a RAM disk that also counts its IO.
--
--   sudo build/luablk add examples/ramdisk.lua --size 256M
--
-- The module returns a factory. luablk calls it once per queue, in that
-- queue's own Lua state, with the device (`dev`) and the arguments given
-- after `--` on the command line (`args`).
local ffi = require("ffi")

return function(dev, args)
	-- Memory shared by every queue: a plain Lua table would be private to
	-- one queue's state. Zero-filled, committed only as it is written.
	local mem = dev:shared("ramdisk", dev.size)
	-- Counters every queue can update, readable from outside (demo.lua).
	local counts = ffi.cast("uint64_t *", dev:shared("ramdisk.counts", 8 * 2))
	local verbose = args.verbose == "1"

	return {
		-- buf is a uint8_t * into the kernel-visible IO buffer, valid only
		-- during the call. off and len are byte counts, plain numbers.
		read_at = function(_, buf, off, len)
			ffi.copy(buf, mem + off, len)
			counts[0] = counts[0] + 1
		end,
		write_at = function(_, buf, off, len)
			ffi.copy(mem + off, buf, len)
			counts[1] = counts[1] + 1
			if verbose then
				io.stderr:write(("queue %d: write %d bytes at %d\n"):format(dev.queue, len, off))
			end
		end,
		-- Returning nothing means success; a negative errno fails the IO.
		discard = function(_, off, len)
			ffi.fill(mem + off, len)
		end,
	}
end
