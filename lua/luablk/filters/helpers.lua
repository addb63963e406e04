-- What every filter shares: the op names, option parsing with one-line
-- errors, a seeded RNG for the IO path, and access to shared regions from
-- the serving process or another one. Not a filter itself.
local options = require("luablk.options")
local lb = require("luablk")

local M = {}

-- Op numbers (LUABLK_OP_*) by name, and back.
M.OPS = { read = 0, write = 1, flush = 2, discard = 3, write_zeroes = 5 }
M.OP_NAMES = { [0] = "read", "write", "flush", "discard", [5] = "write_zeroes" }

-- The value of opts[key] as a number (strings from the command line,
-- numbers from Lua), or default; raises a one-line message otherwise.
function M.number(opts, key, default, lo, hi)
	local v = opts[key]
	if v == nil then
		return default
	end
	local n = tonumber(v)
	if not n or n ~= n then
		error(("%s= must be a number, not '%s'"):format(key, tostring(v)), 0)
	end
	if (lo and n < lo) or (hi and n > hi) then
		error(("%s= must be between %s and %s, not %s"):format(key, tostring(lo), tostring(hi), tostring(v)), 0)
	end
	return n
end

-- A whole number of bytes, with K/M/G/T suffixes allowed.
function M.bytes(opts, key)
	local v = opts[key]
	if v == nil or type(v) == "number" then
		if v and (v < 0 or v % 1 ~= 0) then
			error(("%s= must be a whole number of bytes, not %s"):format(key, v), 0)
		end
		return v
	end
	local n, err = options.size(tostring(v))
	if not n then
		error(key .. "=: " .. err, 0)
	end
	return n
end

-- true for 1/"1"/true/"true"/"on", false for absent or 0/"0"/false/"off".
function M.flag(opts, key)
	local v = opts[key]
	if v == nil or v == false or v == 0 or v == "0" or v == "false" or v == "off" then
		return false
	end
	if v == true or v == 1 or v == "1" or v == "true" or v == "on" then
		return true
	end
	error(("%s= must be 1 or 0, not '%s'"):format(key, tostring(v)), 0)
end

-- "read+write" -> { read = true, write = true }; nil or "all" -> every op.
function M.parse_ops(s)
	local set = {}
	if s == nil or s == "all" then
		for name in pairs(M.OPS) do
			set[name] = true
		end
		return set
	end
	for name in tostring(s):gmatch("[^+|]+") do
		if name == "zeroes" then
			name = "write_zeroes"
		end
		if not M.OPS[name] then
			error(
				("unknown op '%s' in op=%s (use read, write, flush, discard, write_zeroes, joined with +)"):format(
					name,
					tostring(s)
				),
				0
			)
		end
		set[name] = true
	end
	if next(set) == nil then
		error("op= is empty", 0)
	end
	return set
end

-- Raises if opts holds a key that is not in known (a list of names).
function M.check_keys(filter, opts, known)
	local ok = {}
	for _, k in ipairs(known) do
		ok[k] = true
	end
	for k in pairs(opts) do
		if not ok[k] then
			table.sort(known)
			error(("unknown option '%s' (%s takes %s)"):format(tostring(k), filter, table.concat(known, ", ")), 0)
		end
	end
end

-- A seeded generator of doubles in [0, 1): xoshiro128** on 32-bit words
-- held in upvalues, so a draw is a few bit operations and allocates
-- nothing. stream (the queue number) selects an independent sequence.
function M.rng(seed, stream)
	local bxor, lshift, rol, tobit = bit.bxor, bit.lshift, bit.rol, bit.tobit
	local x = (seed % 4294967296 + math.floor(seed / 4294967296) * 40503 + 2654435761 * ((stream or 0) + 1))
		% 4294967296
	local function lcg()
		x = (x * 1664525 + 1013904223) % 4294967296
		return tobit(x)
	end
	local s0, s1, s2, s3 = lcg(), lcg(), lcg(), lcg()
	if bit.bor(s0, s1, s2, s3) == 0 then
		s0 = 1
	end
	local function next_double()
		local r = tobit(rol(tobit(s1 * 5), 7) * 9)
		local t = lshift(s1, 9)
		s2 = bxor(s2, s0)
		s3 = bxor(s3, s1)
		s1 = bxor(s1, s2)
		s0 = bxor(s0, s3)
		s2 = bxor(s2, t)
		s3 = rol(s3, 11)
		return (r % 4294967296) / 4294967296
	end
	for _ = 1, 8 do
		next_double()
	end
	return next_double
end

-- Region `name` of a target as a uint8_t pointer, its size and a release
-- function. target: a luablk Device, a backend's `dev`, or a device id
-- (mapped through /run/luablk/ID/NAME). Returns nil, message if absent.
function M.region(target, name)
	if type(target) == "number" then
		local p, size = lb.shared_open(target, name)
		if not p then
			return nil, (tostring(size):gsub("^E%u+: ", ""))
		end
		return p, size, function()
			lb.unmap(p, size)
		end
	end
	if type(target) == "table" and type(target.shared) == "function" then
		local ok, p, size = pcall(target.shared, target, name)
		if not ok or not p then
			return nil, ("no shared region '%s'"):format(name)
		end
		return p, size, function() end
	end
	error("expected a luablk device, a backend's dev, or a device id", 3)
end

-- The message for a region that is not there: what is missing, unless
-- the whole device is.
function M.missing(what, err)
	err = tostring(err)
	if err:match("^device %d+ is not served") then
		return err
	end
	return ("no %s on this device (%s)"):format(what, err)
end

return M
