-- JIT health log of a queue's Lua state, for the benchmark (part C of
-- scripts/bench). The dispatch loop turns it on only when LUABLK_JIT_LOG
-- names a directory; otherwise nothing here is loaded or run.
--
-- Each queue's state writes DIR/PID.qQ.log (named after the process and
-- the queue, so that none share a file), one event a line:
--   [TRACE n START LINK]        trace n, started at START, completed
--   [TRACE --- START -- WHY]    a trace aborted (WHY says "NYI: ..." for
--                               something LuaJIT cannot compile)
--   [TRACE flush]               all traces thrown away
--   [IOS ios heap_kib traces aborts nyi]   every EVERY IOs
-- The trace lines come from LuaJIT's trace event hook, the one jit.v
-- prints from (one hook per state, so this log is written here instead of
-- by jit.v). In an IOS line, ios counts IOs served so far, heap_kib is
-- collectgarbage("count") and the rest count events so far. From the
-- first IOS line on the garbage collector is stopped, so the difference in
-- heap_kib between two IOS lines is exactly what Lua allocated between
-- them. Each line goes to the file in one write(2), so a reader may take
-- an offset at any moment and later read only what follows it.
local jit = require("jit")
local ffi = require("ffi")
local posix = require("luablk.posix")

local C = ffi.C
-- write(2) without its result: an int64 result would be boxed on the heap
-- each time the interpreter makes the call.
ffi.cdef("void luablk_jitlog_write(int fd, const void *buf, size_t count) __asm__(\"write\");")

local M = {}

M.EVERY = 32

-- Writes the Lua string s to fd at once, so lines stay whole.
local function put(fd, s)
	C.write(fd, s, #s)
end

-- The trace event handler: counts events in c and writes them to fd.
local function tracer(fd, c)
	local jutil = require("jit.util")
	local vmdef = require("jit.vmdef")
	local function where(func, pc)
		local info = jutil.funcinfo(func, pc)
		return info.loc or (info.ffid and vmdef.ffnames[info.ffid]) or "(C)"
	end
	local start = "?"
	return function(what, tr, func, pc, otr, oex)
		if what == "start" then
			start = where(func, pc)
			return
		elseif what == "stop" then
			c.traces = c.traces + 1
			put(fd, ("[TRACE %d %s %s]\n"):format(tr, start, jutil.traceinfo(tr).linktype))
		elseif what == "abort" then
			c.aborts = c.aborts + 1
			local why = tostring(otr)
			if type(otr) == "number" then
				why = vmdef.traceerr[otr] or why
				c.nyi = c.nyi + (why:find("NYI", 1, true) and 1 or 0)
				local ok, s = pcall(string.format, why, type(oex) == "function" and where(oex) or oex)
				why = ok and s or why
			end
			local at = where(func, pc)
			put(fd, ("[TRACE --- %s -- %s%s]\n"):format(start, why, at ~= start and " at " .. at or ""))
		else
			put(fd, "[TRACE " .. tostring(what) .. "]\n")
		end
	end
end

-- The log running in this Lua state, if any (a state serves one queue).
local active

-- Starts the log for queue q in directory dir and returns the batch
-- function run wrapped to count IOs and write the IOS lines.
function M.start(dir, q, run)
	M.stop()
	local path = ("%s/%d.q%d.log"):format(dir, C.getpid(), q)
	local fd, err = posix.open(path, posix.O_WRONLY + posix.O_CREAT + posix.O_TRUNC, 420)
	if not fd then
		error("LUABLK_JIT_LOG: cannot write " .. path .. ": " .. err, 0)
	end
	local c = { traces = 0, aborts = 0, nyi = 0 }
	active = { fd = fd, cb = tracer(fd, c) }
	jit.attach(active.cb, "trace")
	local every = M.EVERY
	local ios, next_line, stopped = 0, every, false
	local collectgarbage, snprintf, write = collectgarbage, C.snprintf, C.luablk_jitlog_write
	local LINE = 128
	local line = ffi.new("char[?]", LINE)
	return function(n)
		run(n)
		ios = ios + n
		if ios >= next_line then
			if not stopped then
				collectgarbage()
				collectgarbage("stop")
				stopped = true
			end
			-- Formatted in C into a buffer made once: no Lua string is made,
			-- so the line itself weighs nothing on the heap.
			local len = snprintf(line, LINE, "[IOS %.0f %.17g %.0f %.0f %.0f]\n", ios,
				collectgarbage("count"), c.traces, c.aborts, c.nyi)
			write(fd, line, len)
			next_line = ios - ios % every + every
		end
	end
end

-- Ends the log started in this state: detaches from the JIT, closes the
-- file and lets the garbage collector run again.
function M.stop()
	if active then
		jit.attach(active.cb)
		posix.close(active.fd)
		active = nil
		collectgarbage("restart")
	end
end

-- Reads a log from byte `offset` on (complete lines only). Returns
-- { ios = {...}, aborts = {...}, traces = n } and the offset after the
-- last line read: ios holds the IOS lines as { ios, heap_kib, traces,
-- aborts, nyi }, aborts the text of each abort line.
function M.read(path, offset)
	offset = offset or 0
	local got = { ios = {}, aborts = {}, traces = 0 }
	local f = io.open(path)
	if not f then
		return got, offset
	end
	f:seek("set", offset)
	local text = f:read("*a")
	f:close()
	local used = 0
	for line, stop in text:gmatch("([^\n]*)\n()") do
		used = stop - 1
		local a, b, c, d, e = line:match("^%[IOS (%S+) (%S+) (%S+) (%S+) (%S+)%]$")
		if a then
			local v = { ios = a, heap_kib = b, traces = c, aborts = d, nyi = e }
			for k, x in pairs(v) do
				v[k] = tonumber(x)
			end
			got.ios[#got.ios + 1] = v
		elseif line:find("^%[TRACE %-%-%- ") then
			got.aborts[#got.aborts + 1] = line
		elseif line:find("^%[TRACE %d") then
			got.traces = got.traces + 1
		end
	end
	return got, offset + used
end

return M
