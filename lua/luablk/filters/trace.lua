-- trace: records every IO as one JSON line.
--
--   --filter trace:path=/tmp/t.jsonl
--   {"ts":81234567890,"q":0,"op":"write","off":4096,"len":4096,"flags":0,"res":4096,"lat_ns":5120}
--
-- ts is CLOCK_MONOTONIC in ns when the IO reached the filter, res what the
-- application sees (bytes for read/write, 0 for the others, or -errno),
-- lat_ns the time the inner backend took. scripts/replay.lua re-issues a
-- trace against a device.
--
-- Options: path= (required), append=1 to keep what the file holds when
-- the device starts (a reload always keeps it).
--
-- Every queue appends to the same file (O_APPEND) with one write() per
-- line, so lines from different queues never interleave inside a line;
-- they are in completion order per queue, and roughly so across queues
-- (sort by ts for exact order). The line is built in a preallocated
-- buffer with no Lua strings, and written at once, so a trace survives
-- the process being killed.
local ffi = require("ffi")
local posix = require("luablk.posix")
local filters = require("luablk.filters")
local H = require("luablk.filters.helpers")
local errno = require("luablk.errno")
local C = require("luablk").C

if not pcall(function()
	return ffi.C.write
end) then
	ffi.cdef("ssize_t write(int fd, const void *buf, size_t count);")
end
if not pcall(function()
	return ffi.C.snprintf
end) then
	ffi.cdef("int snprintf(char *str, size_t size, const char *format, ...);")
end

local O_APPEND = 1024
local LINE_MAX = 256
-- Lua numbers reach a vararg C function as doubles, hence %.0f; every
-- value is a whole number below 2^53, which %.0f prints exactly. One
-- snprintf, rather than a digit loop in Lua, keeps the path loop-free.
local FORMAT = '{"ts":%.0f,"q":%.0f,"op":"%s","off":%.0f,"len":%.0f,"flags":%.0f,"res":%.0f,"lat_ns":%.0f}\n'

-- Paths this queue's Lua state has opened. The state lives as long as the
-- device, and the filter is built again in it by every reload, including
-- one that is then aborted while the old instance goes on writing: only
-- the first open truncates, so a reload keeps the lines before it.
local opened = {}

local function new(inner, opts, dev)
	H.check_keys("trace", opts, { "path", "append" })
	local path = opts.path
	if not path or path == "" then
		error("give the output file: --filter trace:path=FILE", 0)
	end
	path = tostring(path)
	local flags = posix.O_WRONLY + posix.O_CREAT + O_APPEND
	if not H.flag(opts, "append") and not opened[path] then
		-- Every queue opens the file before any IO, so truncating in each
		-- loses nothing.
		flags = flags + posix.O_TRUNC
	end
	local fd, err = posix.open(path, flags, 420)
	if not fd then
		error(err, 0)
	end
	opened[path] = true

	local buf = ffi.new("char[?]", LINE_MAX)
	local write, snprintf, now, tonumber = ffi.C.write, ffi.C.snprintf, C.luablk_now_ns, tonumber
	local queue, EIO = dev.queue or 0, errno.EIO
	local OP = H.OP_NAMES
	local warned = false

	-- What the application sees for a call's outcome (as dispatch maps it).
	local function result(ok, r, done)
		if ok and (r == nil or r == true) then
			return done
		end
		if ok and type(r) == "number" and r < 0 and r >= -4095 then
			return r
		end
		return -EIO
	end

	local function record(op, off, len, fl, done, t0, ok, r)
		local t1 = tonumber(now())
		local res = result(ok, r, done)
		local pos = snprintf(buf, LINE_MAX, FORMAT, t0, queue, OP[op], off, len, fl, res, t1 - t0)
		if write(fd, buf, pos) ~= pos and not warned then
			warned = true
			io.stderr:write("luablk: trace: cannot write ", tostring(path), "; later lines may be missing\n")
		end
		if not ok then
			error(r, 0)
		end
		return r
	end

	-- Closed by close(), or by the collector for an instance nobody closes.
	local fd_box = ffi.gc(ffi.new("int[1]", fd), function(p)
		posix.close(p[0])
	end)
	local be = { trace_fd = fd_box }
	local inner_close = inner.close
	be.close = function()
		posix.close(fd_box[0])
		ffi.gc(fd_box, nil)
		if inner_close then
			return inner_close(inner)
		end
	end
	local read_at, write_at = inner.read_at, inner.write_at
	be.read_at = function(_, b, off, len, fl)
		local t0 = tonumber(now())
		return record(0, off, len, fl or 0, len, t0, pcall(read_at, inner, b, off, len, fl))
	end
	be.write_at = function(_, b, off, len, fl)
		local t0 = tonumber(now())
		return record(1, off, len, fl or 0, len, t0, pcall(write_at, inner, b, off, len, fl))
	end
	if inner.flush then
		local flush = inner.flush
		be.flush = function()
			local t0 = tonumber(now())
			return record(2, 0, 0, 0, 0, t0, pcall(flush, inner))
		end
	end
	for _, name in ipairs({ "discard", "write_zeroes" }) do
		local fn, op = inner[name], H.OPS[name]
		if fn then
			be[name] = function(_, off, len, fl)
				local t0 = tonumber(now())
				return record(op, off, len, fl or 0, 0, t0, pcall(fn, inner, off, len, fl))
			end
		end
	end
	return filters.wrap(inner, be)
end

return new
