-- The per-queue dispatch loop. The C core calls the function made here
-- once per batch; it walks the batch array, calls the backend for each
-- IO and writes each result back. Everything per IO is plain Lua and FFI
-- field access, so LuaJIT compiles the loop (see spec/unit/jit_spec.lua).
local ffi = require("ffi")
local errno = require("luablk.errno")
local backend = require("luablk.backend")
local async = require("luablk.async")

local M = {}

local OP_READ, OP_WRITE, OP_FLUSH, OP_DISCARD, OP_WRITE_ZEROES = 0, 1, 2, 3, 5
local EIO, EOPNOTSUPP = errno.EIO, errno.EOPNOTSUPP

-- Error values that are not strings get a stable text, so that the same
-- failure is recognised as such (a table's address changes every time).
local function describe(err)
	if type(err) == "string" then
		return err
	end
	local mt = getmetatable(err)
	if mt and mt.__tostring then
		return tostring(err)
	end
	return "error value of type " .. type(err) .. " (raise a string to see a message)"
end
M.describe = describe

-- A reporter that writes each distinct error (by its first line) once.
function M.reporter(prefix, write)
	write = write or function(s)
		io.stderr:write(s)
	end
	local seen, count = {}, 0
	return function(msg)
		msg = describe(msg)
		local key = msg:match("^[^\n]*")
		if seen[key] then
			return
		end
		if count < 1000 then
			seen[key] = true
			count = count + 1
		end
		write(prefix .. msg .. "\n")
	end
end

-- The function that maps a protected backend call's outcome (ok, r) to
-- an IO result: done for nothing or true, r for a negative errno, and
-- -EIO, reported, for an error or any other value. what names the method.
function M.settler(report)
	local type = type
	return function(ok, r, done, what)
		if ok then
			if r == nil or r == true then
				return done
			end
			if type(r) == "number" and r < 0 and r >= -4095 and r % 1 == 0 then
				return r
			end
			report(what .. " returned " .. tostring(r) .. " (expected nothing, true or a negative errno)")
			return -EIO
		end
		report(r)
		return -EIO
	end
end

-- Builds the batch function. batch: struct luablk_io array; bufs: table
-- of uint8_t pointers indexed by tag; report: called with error text.
function M.make(be, batch, bufs, report)
	local read_at, write_at = be.read_at, be.write_at
	local flush, discard, write_zeroes = be.flush, be.discard, be.write_zeroes
	local xpcall, traceback = xpcall, debug.traceback
	local settle = M.settler(report)

	local function ranged(fn, io, what)
		if not fn then
			return -EOPNOTSUPP
		end
		local ok, r = xpcall(fn, traceback, be, io.off, io.len, io.flags)
		return settle(ok, r, 0, what)
	end

	return function(n)
		for i = 0, n - 1 do
			local io = batch[i]
			local op = io.op
			if op == OP_READ then
				local len = io.len
				local ok, r = xpcall(read_at, traceback, be, bufs[io.tag], io.off, len, io.flags)
				io.result = settle(ok, r, len, "read_at")
			elseif op == OP_WRITE then
				local len = io.len
				local ok, r = xpcall(write_at, traceback, be, bufs[io.tag], io.off, len, io.flags)
				io.result = settle(ok, r, len, "write_at")
			elseif op == OP_FLUSH then
				if flush then
					local ok, r = xpcall(flush, traceback, be)
					io.result = settle(ok, r, 0, "flush")
				else
					io.result = -EOPNOTSUPP
				end
			elseif op == OP_DISCARD then
				io.result = ranged(discard, io, "discard")
			elseif op == OP_WRITE_ZEROES then
				io.result = ranged(write_zeroes, io, "write_zeroes")
			else
				io.result = -EOPNOTSUPP
			end
		end
	end
end

-- What the device should advertise for a loaded backend: discard and
-- write_zeroes when it has them, a volatile cache and FUA when it says so
-- in be.caps.
function M.caps(be)
	local declared = be.caps or {}
	return {
		write_cache = declared.write_cache == true,
		fua = declared.fua == true,
		discard = be.discard ~= nil,
		write_zeroes = be.write_zeroes ~= nil,
	}
end

-- The hook the host calls before closing the queue's state: the
-- backend's close(self), protected and reported like any backend error.
function M.closer(be, report)
	return function()
		if be.close then
			local ok, err = xpcall(be.close, debug.traceback, be)
			if not ok then
				report(err)
			end
		end
	end
end

-- This queue's state holds one running backend (`current`) and, during a
-- reload, the one about to replace it (`pending`). Each is { be, spec,
-- args, report }; dev, batch, bufs and filters belong to the queue.
local queue, current, pending

local function serving(be, spec, args)
	local prefix = ("luablk: %s queue %d: backend error: "):format(spec, queue.dev.queue)
	return { be = be, spec = spec, args = args, report = M.reporter(prefix) }
end

local function hooks(s)
	local run
	if async.wanted(s.be) then
		local settle = M.settler(s.report)
		run = async.make(s.be, queue.batch, queue.bufs, s.report, settle, queue.C, queue.h, queue.info)
	else
		run = M.make(s.be, queue.batch, queue.bufs, s.report)
	end
	-- The benchmark's JIT health log (luablk/jitlog.lua); when the variable
	-- is unset, the batch function is the plain one.
	local jit_log = os.getenv("LUABLK_JIT_LOG")
	if jit_log then
		run = require("luablk.jitlog").start(jit_log, queue.dev.queue, run)
	end
	return run, M.caps(s.be), M.closer(s.be, s.report)
end

-- Entry point from the C host (host.c): loads the backend for queue q of
-- the device, wraps its filters, and returns the batch function, the
-- backend's capabilities and its close hook.
function M.start(h, devp, q, spec, args, filters)
	local lb = require("luablk")
	local C = lb.C
	h = ffi.cast("struct luablk_handler *", h)
	devp = ffi.cast("struct luablk_dev *", devp)
	local info = ffi.new("struct luablk_dev_info")
	C.luablk_dev_info(devp, info)
	local dev = backend.device(C, devp, q, info)
	local be = backend.load(spec, dev, backend.parse_args(args), filters)
	if q == 0 then
		require("luablk.params").declare(C, devp, dev, be, spec)
	end
	local bufs = {}
	for tag = 0, info.depth - 1 do
		bufs[tag] = C.luablk_handler_buf(h, tag)
	end
	queue = {
		C = C,
		h = h,
		info = info,
		devp = devp,
		dev = dev,
		batch = C.luablk_handler_batch(h),
		bufs = bufs,
		filters = filters,
	}
	current = serving(be, spec, args)
	return hooks(current)
end

-- Capability advertised -> the method it makes the kernel send.
local REQUIRED = { { "write_cache", "flush" }, { "discard", "discard" }, { "write_zeroes", "write_zeroes" } }

-- The device's size as the core has it now: a resize (reload.c) opens the
-- new backend with the new size, and puts the old size back on abort.
local function refresh_size()
	queue.C.luablk_dev_info(queue.devp, queue.info)
	queue.dev.size = tonumber(queue.info.size)
end

local function prepare(spec, args, need)
	local old = current.be
	local state
	if old.handoff then
		local ok, r = xpcall(old.handoff, debug.traceback, old)
		if not ok then
			error("handoff: " .. describe(r), 0)
		end
		if r ~= nil and type(r) ~= "table" then
			error("handoff returned a " .. type(r) .. " (expected a table or nothing)", 0)
		end
		state = r
	end
	local be = backend.load(spec, queue.dev, backend.parse_args(args), queue.filters, state, true)
	for _, r in ipairs(REQUIRED) do
		local cap, method = r[1], r[2]
		if need[cap] and old[method] and not be[method] then
			error(("backend '%s' has no %s method, and the device advertises it"):format(spec, method), 0)
		end
	end
	-- Block parameters are the running device's: the new ones must agree.
	if queue.dev.queue == 0 then
		local ok, err = pcall(require("luablk.params").declare, queue.C, queue.devp, queue.dev, be, spec)
		if not ok then
			error(("cannot reload into '%s': %s"):format(spec, err), 0)
		end
	end
	pending = serving(be, spec, args)
end

-- Reload, step one (reload.c): builds the new backend next to the running
-- one, handing it what the old one's handoff(self) returns. Raises, with
-- the old backend untouched, if that fails or if the new one lacks a
-- method the device advertises and the old one has. need: the
-- capabilities the device advertises.
function M.prepare(spec, args, need)
	M.abort()
	local old_size = queue.dev.size
	refresh_size()
	local ok, err = pcall(prepare, spec, args, need)
	if not ok then
		queue.dev.size = old_size
		error(err, 0)
	end
end

-- Reload, step two: the new backend takes over and the old one is closed.
-- Returns the new batch function and close hook. They are built before
-- anything changes: if that raises, the host keeps calling the old batch
-- function, so the old backend must stay open and current (the prepared
-- one is dropped).
function M.commit()
	local ok, run, _, close = pcall(hooks, pending)
	if not ok then
		M.abort()
		error(run, 0)
	end
	local old = current
	current, pending = pending, nil
	M.closer(old.be, old.report)()
	return run, close
end

-- Or instead: the prepared backend is closed and dropped.
function M.abort()
	if pending then
		M.closer(pending.be, pending.report)()
		pending = nil
	end
	refresh_size()
end

return M
