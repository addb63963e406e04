-- A RAM disk that counts what reaches it, for tests of what the kernel
-- sends: the shared region "ops" holds uint64 counters (read by ops() in
-- spec/kernel/util.lua): reads, writes, flushes, discards and
-- write-zeroes, bytes discarded and zeroed, the lowest offset and highest
-- end of the discarded ranges, and the length of the lowest one.
-- Arguments:
--   discard=0, write_zeroes=0   leave that method out
--   KEY=VALUE                   declare a default block parameter
--                               (luablk.params names; sizes in bytes,
--                               1 or 0 for read_only, rotational,
--                               write_cache, fua)
local ffi = require("ffi")
local params = require("luablk.params")
local posix = require("luablk.posix")

local READS, WRITES, FLUSHES, DISCARDS, ZEROES = 0, 1, 2, 3, 4
local DISCARDED, ZEROED, LO, HI, LO_LEN = 5, 6, 7, 8, 9

local function declared(args)
	local out = {}
	for _, k in ipairs(params.SIZES) do
		out[k] = tonumber(args[k])
	end
	for k in pairs(params.ATTRS) do
		if args[k] then
			out[k] = args[k] == "1"
		end
	end
	return out
end

return function(dev, args)
	local mem = dev:shared("mem", dev.size)
	local n = ffi.cast("uint64_t *", dev:shared("ops", 8 * 16))
	n[LO] = dev.size
	local add = require("luablk").C.luablk_atomic_add

	local be = {
		params = declared(args),
		read_at = function(_, buf, off, len)
			add(n + READS, 1)
			ffi.copy(buf, mem + off, len)
		end,
		write_at = function(_, buf, off, len)
			add(n + WRITES, 1)
			ffi.copy(mem + off, buf, len)
		end,
		flush = function()
			add(n + FLUSHES, 1)
		end,
	}
	if args.discard ~= "0" then
		be.discard = function(_, off, len)
			add(n + DISCARDS, 1)
			add(n + DISCARDED, len)
			-- one queue in these tests: plain updates are enough
			if off < n[LO] then
				n[LO], n[LO_LEN] = off, len
			end
			if off + len > n[HI] then
				n[HI] = off + len
			end
			posix.zero_shared(mem + off, len)
		end
	end
	if args.write_zeroes ~= "0" then
		be.write_zeroes = function(_, off, len)
			add(n + ZEROES, 1)
			add(n + ZEROED, len)
			posix.zero_shared(mem + off, len)
		end
	end
	return be
end
