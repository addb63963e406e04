-- A RAM disk that also records, per queue, how many IOs it served and the
-- largest one, in a shared region the test reads ("stats": uint32 pairs).
local ffi = require("ffi")

return function(dev)
	local mem = dev:shared("mem", dev.size)
	local stats = ffi.cast("uint32_t *", dev:shared("stats", 8 * 64))
	local slot = dev.queue * 2

	local function note(len)
		stats[slot] = stats[slot] + 1
		if len > stats[slot + 1] then
			stats[slot + 1] = len
		end
	end

	return {
		read_at = function(_, buf, off, len)
			note(len)
			ffi.copy(buf, mem + off, len)
		end,
		write_at = function(_, buf, off, len)
			note(len)
			ffi.copy(mem + off, buf, len)
		end,
	}
end
