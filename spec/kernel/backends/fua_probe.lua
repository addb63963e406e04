-- The file backend, watched: around each FUA write it reads the sectors
-- written to the block device under the image's file system (below=, a
-- /sys/block/NAME/stat file). A write that is durable on return has
-- reached that device by then; one left in the page cache has not. The
-- shared region "fua_probe" counts (uint64): FUA writes, FUA writes that
-- had reached the device below on return, and other writes.
local ffi = require("ffi")
local posix = require("luablk.posix")
local filters = require("luablk.filters")
local C = require("luablk").C

local FUA_WRITES, DURABLE, PLAIN = 0, 1, 2

-- Sectors written so far: the 7th field of a block device's stat file.
local function written(stat)
	local fields = {}
	for f in assert(posix.read_file(stat)):gmatch("%d+") do
		fields[#fields + 1] = tonumber(f)
	end
	return fields[7]
end

return function(dev, args, handoff)
	local inner = require("luablk.backends.file")(dev, args, handoff)
	local below = assert(args.below, "give below=/sys/block/NAME/stat")
	local n = ffi.cast("uint64_t *", dev:shared("fua_probe", 64))
	local add, FUA = C.luablk_atomic_add, C.LUABLK_IO_F_FUA

	return filters.wrap(inner, {
		write_at = function(_, buf, off, len, flags)
			if bit.band(flags or 0, FUA) == 0 then
				add(n + PLAIN, 1)
				return inner:write_at(buf, off, len, flags)
			end
			local before = written(below)
			local r = inner:write_at(buf, off, len, flags)
			add(n + FUA_WRITES, 1)
			if written(below) - before >= len / 512 then
				add(n + DURABLE, 1)
			end
			return r
		end,
	})
end
