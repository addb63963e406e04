-- A RAM disk that, with hold=1, never finishes a write at offset 0: it
-- raises the flag in shared region "held" and waits there for good, so a
-- test can kill the server while it holds that IO.
local ffi = require("ffi")
local C = require("luablk").C

return function(dev, args)
	local mem = dev:shared("mem", dev.size)
	local held = ffi.cast("uint64_t *", dev:shared("held", 8))
	local hold = args.hold == "1"

	return {
		read_at = function(_, buf, off, len)
			ffi.copy(buf, mem + off, len)
		end,
		write_at = function(_, buf, off, len)
			if hold and off == 0 then
				C.luablk_atomic_store(held, 1)
				while true do
					C.luablk_sleep_ns(10e6)
				end
			end
			ffi.copy(mem + off, buf, len)
		end,
	}
end
