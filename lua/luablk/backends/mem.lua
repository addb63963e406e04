-- mem: a RAM disk. The bytes live in a region shared by every queue's Lua
-- state, so any queue sees what another wrote. Memory is committed only
-- as it is written, and discard gives it back.
local ffi = require("ffi")
local posix = require("luablk.posix")

return function(dev)
	require("luablk.backend").need_size(dev)
	local mem = dev:shared("mem", dev.size)

	local function zero(_, off, len)
		posix.zero_shared(mem + off, len)
	end

	return {
		-- A write is in the region when it returns: FUA costs nothing.
		caps = { fua = true },
		read_at = function(_, buf, off, len)
			ffi.copy(buf, mem + off, len)
		end,
		write_at = function(_, buf, off, len)
			ffi.copy(mem + off, buf, len)
		end,
		flush = function() end,
		discard = zero,
		write_zeroes = zero,
	}
end
