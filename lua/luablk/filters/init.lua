-- Filters: backends that wrap a backend, so they stack.
--
-- A filter module (luablk/filters/NAME.lua) returns a function
--   (inner, opts, dev) -> backend table
-- where inner is the backend table it wraps, opts the table parsed from
-- "NAME:key=value,key=value", and dev the queue's device object. Build
-- the table with M.wrap, so that every method the filter does not
-- implement (close and handoff above all) still reaches the inner backend.
-- luablk.filters.helpers has what the shipped filters share.
--
-- From the command line: luablk add mem --filter delay:ms=1 --filter fault:rate=0.1
-- wraps mem in delay, then that in fault (each --filter wraps the result so
-- far). From Lua, a backend file can compose them directly:
--   local f = require("luablk.filters")
--   return f.fault(f.delay("mem", { ms = 1 }), { op = "write", rate = 0.1 })
local backend = require("luablk.backend")

local M = {}

M.SHIPPED = { "fault", "delay", "crash", "trace", "stats" }

-- Modules in luablk/filters/ that are not filters.
local NOT_FILTERS = { init = true, helpers = true }

-- "fault:op=write,rate=0.1" -> "fault", { op = "write", rate = "0.1" }
function M.parse(spec)
	local name, rest = spec:match("^([%w_%-]+):?(.*)$")
	if not name then
		return nil, ("bad filter '%s' (expected NAME or NAME:key=value,...)"):format(spec)
	end
	local opts = {}
	for item in rest:gmatch("[^,]+") do
		local k, v = item:match("^([%a_][%w_]*)=(.*)$")
		if not k then
			return nil, ("bad filter option '%s' in '%s' (expected key=value)"):format(item, spec)
		end
		opts[k] = v
	end
	return name, opts
end

-- The filter function for a name, or raises a clear error.
function M.load(name)
	local modname = "luablk.filters." .. name
	if not name:match("^[%w_%-]+$") or NOT_FILTERS[name] or not backend.shipped(modname) then
		error(("unknown filter '%s'"):format(name), 0)
	end
	return require(modname)
end

-- Wraps backend table be in each filter spec of the list, in order.
function M.apply(be, specs, dev)
	for _, spec in ipairs(specs) do
		local name, opts = M.parse(spec)
		if not name then
			error(opts, 0)
		end
		local ok, wrapped = pcall(M.load(name), be, opts, dev)
		if not ok then
			error(("filter '%s': %s"):format(name, tostring(wrapped)), 0)
		end
		be = M.keep_params(backend.validate(wrapped, name), be)
	end
	return be
end

-- A filter changes how IO behaves, not the device's geometry: the
-- wrapped backend's declared params and size carry over unless it sets
-- its own.
function M.keep_params(outer, inner)
	if outer.params == nil then
		outer.params = inner.params
	end
	if outer.size == nil then
		outer.size = inner.size
	end
	return outer
end

-- The base of a filter: a new backend table that forwards every method of
-- the contract (backend.METHODS) that inner has, and only those, so
-- capabilities stay accurate; the entries of `over` replace or add some.
-- A filter that replaces close or handoff calls inner's itself.
function M.wrap(inner, over)
	-- An async inner backend makes the filter async too: its methods then
	-- run in the scheduler's coroutines, and the inner waits yield.
	local be = { caps = inner.caps, params = inner.params, size = inner.size, async = inner.async }
	for _, m in ipairs(backend.METHODS) do
		local fn = inner[m]
		if fn then
			-- Fixed arguments rather than varargs, for the JIT; four is the
			-- most any method takes (buf, off, len, flags).
			be[m] = function(_, a, b, c, d)
				return fn(inner, a, b, c, d)
			end
		end
	end
	for k, v in pairs(over or {}) do
		be[k] = v
	end
	return be
end

-- Composition from Lua: M.NAME(inner, opts) returns a factory (dev, args)
-- for use as a backend module's value. inner is a backend name or path,
-- a factory, or a table.
setmetatable(M, {
	__index = function(_, name)
		local filter = M.load(name)
		return function(inner, opts)
			return function(dev, args)
				local mod = type(inner) == "string" and backend.resolve(inner) or inner
				local be = backend.instantiate(mod, tostring(inner), dev, args)
				return M.keep_params(backend.validate(filter(be, opts or {}, dev), name), be)
			end
		end
	end,
})

return M
