-- Loading a backend: resolve a name or path, call its factory, check the
-- result, and build the `dev` object the factory receives.
local ffi = require("ffi")

local M = {}

M.SHIPPED = { "null", "mem", "file", "nbd" }

-- luablk's own module directory. A backend or filter given by name is
-- looked up there only, never along package.path: a name that is not
-- shipped must not find a file that someone left in a directory on the
-- search path (or the working directory). Anything else is given by path.
local LUA_DIR = debug.getinfo(1, "S").source:match("^@(.*)/luablk/[^/]+$") or "."

-- The file of shipped module modname ("luablk.backends.mem"), or nil.
function M.shipped(modname)
	return package.searchpath(modname, LUA_DIR .. "/?.lua")
end

-- The methods of the backend contract (README), the required ones first.
-- Filters forward each one they do not implement (filters.wrap).
M.REQUIRED = { "read_at", "write_at" }
M.METHODS = { "read_at", "write_at", "flush", "discard", "write_zeroes", "close", "handoff" }

-- {"path=/x", "ro"} -> { path = "/x", "ro" }: key=value pairs by key,
-- everything else by position.
function M.parse_args(list)
	local out = {}
	for _, a in ipairs(list or {}) do
		local k, v = a:match("^([%a_][%w_%-]*)=(.*)$")
		if k then
			out[k] = v
		else
			out[#out + 1] = a
		end
	end
	return out
end

local function is_path(spec)
	return spec:find("/", 1, true) or spec:match("%.lua$")
end

-- Returns the module's value (table or factory function) for a spec.
-- fresh: read a shipped module from disk again rather than reuse it.
function M.resolve(spec, fresh)
	if is_path(spec) then
		local chunk, err = loadfile(spec)
		if not chunk then
			error(err, 0)
		end
		return chunk()
	end
	local name = "luablk.backends." .. spec
	if not spec:match("^[%w_%-]+$") or not M.shipped(name) then
		error(
			("unknown backend (shipped: %s, c-null, c-mem; or give a path to a .lua file)"):format(
				table.concat(M.SHIPPED, ", ")
			),
			0
		)
	end
	if fresh then
		package.loaded[name] = nil
	end
	return require(name)
end

-- Checks that a backend table is usable; returns it or raises.
function M.validate(be, spec)
	if type(be) ~= "table" then
		error(("backend '%s' must return a table or a function returning one, not a %s"):format(spec, type(be)), 0)
	end
	for _, m in ipairs(M.REQUIRED) do
		if type(be[m]) ~= "function" then
			error(("backend '%s' has no %s method"):format(spec, m), 0)
		end
	end
	for _, m in ipairs(M.METHODS) do
		if be[m] ~= nil and type(be[m]) ~= "function" then
			error(("backend '%s': %s must be a function"):format(spec, m), 0)
		end
	end
	return be
end

-- Turns a module's value (table or factory) into a checked backend table.
-- handoff: what the backend it replaces handed over, if any.
function M.instantiate(mod, spec, dev, args, handoff)
	local be = mod
	if type(mod) == "function" then
		local ok
		ok, be = pcall(mod, dev, args or {}, handoff)
		if not ok then
			error(("backend '%s': %s"):format(spec, tostring(be)), 0)
		end
	end
	return M.validate(be, spec)
end

-- Loads `spec` for one queue and wraps it in `filters` (a list of
-- "NAME:k=v,..." strings, innermost first). dev is what the factory
-- sees; args a table. A reload passes what the old backend handed over,
-- and gets shipped modules read from disk again.
function M.load(spec, dev, args, filters, handoff, fresh)
	local ok, mod = pcall(M.resolve, spec, fresh)
	if not ok then
		error(("backend '%s': %s"):format(spec, tostring(mod)), 0)
	end
	local be = M.instantiate(mod, spec, dev, args, handoff)
	if filters and #filters > 0 then
		be = require("luablk.filters").apply(be, filters, dev)
	end
	return be
end

-- For a factory that needs the device's size before it can start (dev.size
-- is 0 when none was given, for backends with a size of their own):
-- raises the one-line refusal that the core gives too.
function M.need_size(dev)
	if dev.size == 0 then
		error("no size given, and it has none of its own (give --size)", 0)
	end
end

-- The `dev` a backend factory receives: the device's settings, this
-- queue's number, and shared memory. ptr is a struct luablk_dev *; C is
-- the luablk library namespace.
function M.device(C, ptr, queue, info)
	local dev = {
		size = tonumber(info.size),
		block_size = info.block_size,
		queues = info.queues,
		depth = info.depth,
		max_io = info.max_io,
		queue = queue,
		params = require("luablk.params").effective(C, ptr),
	}
	-- The kernel id is only known once the device is added.
	setmetatable(dev, {
		__index = function(_, k)
			if k == "id" then
				return C.luablk_dev_id(ptr)
			end
		end,
	})
	-- The same zero-filled mapping in every queue, as a uint8_t pointer,
	-- and its size.
	function dev.shared(_, name, size)
		local p = ffi.new("void *[1]")
		local sz = ffi.new("uint64_t[1]")
		local rc = C.luablk_dev_shared(ptr, name, size or 0, p, sz)
		if rc < 0 then
			error(("shared(%q): %s"):format(name, ffi.string(C.luablk_last_error())), 2)
		end
		return ffi.cast("uint8_t *", p[0]), tonumber(sz[0])
	end
	return dev
end

return M
