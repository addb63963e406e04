-- A deliberately broken RAM disk for `torture.lua --self-test`: the harness
-- must notice each planted fault, or it could not be trusted to pass.
--   flip_at=OFF   every read covering byte OFF returns it with bit 0 flipped
--                 (the stored byte is intact: a bad read path)
--   drop_at=OFF   writes to the 512-byte sector holding OFF are not stored,
--                 the rest of each write is (a lost write)
local ffi = require("ffi")

return function(dev, args)
	local mem = dev:shared("mem", dev.size)
	local flip_at = tonumber(args.flip_at or -1)
	local drop_at = tonumber(args.drop_at or -1)
	local lost = drop_at >= 0 and drop_at - drop_at % 512 or -1

	return {
		read_at = function(_, buf, off, len)
			ffi.copy(buf, mem + off, len)
			if flip_at >= off and flip_at < off + len then
				buf[flip_at - off] = bit.bxor(buf[flip_at - off], 1)
			end
		end,
		write_at = function(_, buf, off, len)
			if lost >= off and lost < off + len then
				local keep = lost - off
				ffi.copy(mem + off, buf, keep)
				ffi.copy(mem + lost + 512, buf + keep + 512, len - keep - 512)
			else
				ffi.copy(mem + off, buf, len)
			end
		end,
		flush = function() end,
	}
end
