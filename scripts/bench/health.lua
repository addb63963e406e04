-- Part C of `make bench`: reads the JIT health logs that LUABLK_JIT_LOG=DIR
-- makes a serving process (or build/bench-dispatch) write, one per queue
-- (see lua/luablk/jitlog.lua), and sums them over a steady window: from a
-- point after warm-up to the end of the run.
local jitlog = require("luablk.jitlog")

local M = {}

-- The logs in dir.
function M.logs(dir)
	local p = assert(io.popen("ls " .. dir .. " 2>/dev/null"))
	local out = {}
	for name in p:lines() do
		if name:match("^%d+%.q%d+%.log$") then
			out[#out + 1] = dir .. "/" .. name
		end
	end
	p:close()
	return out
end

-- Where each log stands now: warm-up ends here. Returns a table of
-- path -> { offset, last IOS row so far }.
function M.mark(dir)
	local marks = {}
	for _, path in ipairs(M.logs(dir)) do
		local got, offset = jitlog.read(path)
		marks[path] = { offset = offset, row = got.ios[#got.ios] }
	end
	return marks
end

-- The fewest IOs any queue's log has counted so far (0 before the first
-- IOS line, or when there is no log).
function M.least_ios(dir)
	local least
	for _, path in ipairs(M.logs(dir)) do
		local rows = jitlog.read(path).ios
		local n = #rows > 0 and rows[#rows].ios or 0
		least = least and math.min(least, n) or n
	end
	return least or 0
end

local function count_reasons(into, lines)
	for _, line in ipairs(lines) do
		into[line] = (into[line] or 0) + 1
	end
end

-- The heap is weighed between consecutive IOS rows of the window with no
-- trace event between them: a trace, completed or aborted, is allocated
-- once on the Lua heap (and so is its line in the log), not per IO.
-- Returns the bytes and the IOs of those quiet stretches.
local function quiet_heap(rows, first, last)
	local bytes, ios = 0, 0
	local prev
	for _, r in ipairs(rows) do
		if r.ios >= first.ios and r.ios <= last.ios then
			if prev and r.traces == prev.traces and r.aborts == prev.aborts then
				bytes = bytes + (r.heap_kib - prev.heap_kib) * 1024
				ios = ios + r.ios - prev.ios
			end
			prev = r
		end
	end
	return bytes, ios
end

-- Sums the logs in dir over the steady window. `from` is either marks
-- taken with M.mark (the window starts there) or a number of IOs per queue
-- (it starts at the first IOS line at or past it). Returns a table:
--   queues, ios (in the window), traces, aborts, nyi (made in the window),
--   heap_bytes_per_io (see quiet_heap), heap_ios (the IOs it is over),
--   aborts_total, nyi_total (the whole run), and reasons: { [abort line]
--   = count } over the whole run.
function M.summary(dir, from)
	local s = {
		queues = 0, ios = 0, heap_bytes = 0, heap_ios = 0, traces = 0, aborts = 0, nyi = 0,
		aborts_total = 0, nyi_total = 0, reasons = {},
	}
	for _, path in ipairs(M.logs(dir)) do
		local all = jitlog.read(path)
		local rows, first = all.ios, nil
		if type(from) == "table" then
			local mark = from[path]
			first = mark and mark.row
			if not first then
				first = jitlog.read(path, mark and mark.offset or 0).ios[1]
			end
		else
			for _, r in ipairs(rows) do
				if r.ios >= from then
					first = r
					break
				end
			end
		end
		local last = rows[#rows]
		s.queues = s.queues + 1
		count_reasons(s.reasons, all.aborts)
		s.aborts_total = s.aborts_total + #all.aborts
		for _, line in ipairs(all.aborts) do
			s.nyi_total = s.nyi_total + (line:find(" -- NYI: ", 1, true) and 1 or 0)
		end
		if first and last and last.ios > first.ios then
			local bytes, ios = quiet_heap(rows, first, last)
			s.ios = s.ios + last.ios - first.ios
			s.heap_ios = s.heap_ios + ios
			s.heap_bytes = s.heap_bytes + bytes
			s.traces = s.traces + last.traces - first.traces
			s.aborts = s.aborts + last.aborts - first.aborts
			s.nyi = s.nyi + last.nyi - first.nyi
		end
	end
	s.heap_bytes_per_io = s.heap_ios > 0 and s.heap_bytes / s.heap_ios or nil
	s.heap_bytes = nil
	return s
end

-- The target of part C: no abort or NYI and no heap per IO in the steady
-- window. Under one byte per IO allows nothing per IO: the smallest Lua
-- allocation is 16 bytes.
function M.met(s)
	return s.ios > 0 and s.aborts == 0 and s.nyi == 0 and s.heap_bytes_per_io < 1
end

-- A new empty directory for one process's logs.
function M.tmpdir()
	local p = os.tmpname()
	os.remove(p)
	assert(os.execute("mkdir -m 700 " .. p) == 0, "cannot make " .. p)
	return p
end

function M.remove(dir)
	os.execute("rm -rf " .. dir)
end

return M
