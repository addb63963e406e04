-- Block parameters between Lua tables and struct luablk_params: the
-- options of luablk.add, a backend's declared `params` and `caps`, and
-- the effective values a backend sees as dev.params.
local ffi = require("ffi")

local M = {}

-- Sizes in bytes, in struct field order.
M.SIZES = {
	"logical_block",
	"physical_block",
	"io_min",
	"io_opt",
	"discard_granularity",
	"discard_alignment",
	"max_discard",
	"max_write_zeroes",
}

-- Booleans and their LUABLK_ATTR_* bit.
M.ATTRS = { read_only = 1, rotational = 2, write_cache = 4, fua = 8 }

local KNOWN = {}
for _, k in ipairs(M.SIZES) do
	KNOWN[k] = true
end
for k in pairs(M.ATTRS) do
	KNOWN[k] = true
end

local function is_size(v)
	return type(v) == "number" and v >= 0 and v < 2 ^ 32 and v % 1 == 0
end

-- Fills the struct luablk_params p from t's fields named in M.SIZES and
-- M.ATTRS (nil: not given; false: an attribute given as off). Raises
-- "WHAT: key must be ..." on a value of the wrong kind.
function M.fill(p, t, what)
	for _, k in ipairs(M.SIZES) do
		local v = t[k]
		if v ~= nil then
			if not is_size(v) then
				error(("%s: %s must be a whole number of bytes, not %s"):format(what, k, tostring(v)), 0)
			end
			p[k] = v
		end
	end
	for k, bit_ in pairs(M.ATTRS) do
		local v = t[k]
		if v ~= nil then
			if type(v) ~= "boolean" then
				error(("%s: %s must be true or false, not %s"):format(what, k, tostring(v)), 0)
			end
			p.attrs_set = bit.bor(p.attrs_set, bit_)
			if v then
				p.attrs = bit.bor(p.attrs, bit_)
			end
		end
	end
	return p
end

-- The effective parameters as a plain table (sizes and booleans).
function M.table(p)
	local t = {}
	for _, k in ipairs(M.SIZES) do
		t[k] = tonumber(p[k])
	end
	for k, bit_ in pairs(M.ATTRS) do
		t[k] = bit.band(p.attrs, bit_) ~= 0
	end
	return t
end

-- Checks a backend's `params` table: known keys only, so that a typo
-- does not silently fall back to a default.
local function check_keys(params, spec)
	for k in pairs(params) do
		if not KNOWN[k] then
			error(("backend '%s': unknown key '%s' in params"):format(spec, tostring(k)), 0)
		end
	end
end

-- What backend table be declares: its params, write_cache and fua from
-- caps (or params), and which optional methods it has. Returns a struct
-- luablk_params and the LUABLK_HAS_* bits.
function M.declared(be, spec)
	local params = be.params or {}
	if type(params) ~= "table" then
		error(("backend '%s': params must be a table"):format(spec), 0)
	end
	check_keys(params, spec)
	local p = M.fill(ffi.new("struct luablk_params"), params, "backend '" .. spec .. "' params")
	local caps = be.caps or {}
	for _, k in ipairs({ "write_cache", "fua" }) do
		if caps[k] == true then
			p.attrs = bit.bor(p.attrs, M.ATTRS[k])
		end
	end
	local ops = 0
	if be.discard then
		ops = ops + 1
	end
	if be.write_zeroes then
		ops = ops + 2
	end
	if be.flush then
		ops = ops + 4
	end
	return p, ops
end

-- The device's effective parameters (struct luablk_dev *devp) as a table.
function M.effective(C, devp)
	local p = ffi.new("struct luablk_params")
	C.luablk_dev_params(devp, p)
	return M.table(p)
end

-- A backend's own size (be.size: bytes, or nil), checked.
local function own_size(be, spec)
	local size = be.size
	if size == nil then
		return 0
	end
	if type(size) ~= "number" or size < 1 or size % 1 ~= 0 or size >= 2 ^ 63 then
		error(("backend '%s': size must be a whole number of bytes, not %s"):format(spec, tostring(size)), 0)
	end
	return size
end

-- Hands queue 0's backend declaration to the core, which merges it under
-- the configuration and checks the result; then dev shows the effective
-- values, and the device's size (the backend's own when none was given).
-- Raises with the core's message if they do not fit.
function M.declare(C, devp, dev, be, spec)
	local p, ops = M.declared(be, spec)
	if C.luablk_dev_declare(devp, p, ops, own_size(be, spec)) < 0 then
		error(ffi.string(C.luablk_last_error()), 0)
	end
	dev.params = M.effective(C, devp)
	dev.block_size = dev.params.logical_block
	local info = ffi.new("struct luablk_dev_info")
	C.luablk_dev_info(devp, info)
	dev.size = tonumber(info.size)
end

return M
