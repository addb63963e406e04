-- A RAM disk with planted failures, for error propagation tests:
--   throw_at=OFF   read_at raises a Lua error for the block at OFF
--   enospc_at=OFF  write_at returns -ENOSPC for the block at OFF
--   fail_all=1     every read and write returns -EIO
local ffi = require("ffi")
local errno = require("luablk.errno")

return function(dev, args)
	local mem = dev:shared("mem", dev.size)
	local throw_at = tonumber(args.throw_at or -1)
	local enospc_at = tonumber(args.enospc_at or -1)
	local fail_all = args.fail_all == "1"

	local function hits(target, off, len)
		return target >= off and target < off + len
	end

	return {
		read_at = function(_, buf, off, len)
			if fail_all then
				return -errno.EIO
			end
			if hits(throw_at, off, len) then
				error("planted failure at offset " .. throw_at)
			end
			ffi.copy(buf, mem + off, len)
		end,
		write_at = function(_, buf, off, len)
			if fail_all then
				return -errno.EIO
			end
			if hits(enospc_at, off, len) then
				return -errno.ENOSPC
			end
			ffi.copy(mem + off, buf, len)
		end,
	}
end
