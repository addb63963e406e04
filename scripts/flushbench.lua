-- flushbench: where does time go between backend calls during flush-heavy
-- work? ext4 on a RAM disk with a volatile write cache, and a worker that
-- writes many small files, each followed by fsync (so each brings data
-- writes, journal writes and FLUSHes). The backend,
-- scripts/backends/timed_mem.lua, stamps every call on entry and return
-- into a shared ring; afterwards the harness computes the idle gaps
-- between consecutive calls while the worker was active and reports the
-- largest, with the calls around it and what the worker was doing.
--
--   luablk run scripts/flushbench.lua [--count 300] [--file-size 4K] [--json]
--
-- A gap is time the device had work pending or coming but no backend
-- call running: the kernel, the ublk round trip, our queue loop and Lua
-- dispatch, and the worker itself. It fails only on errors, never on
-- timing: the VM is emulated and shared.
local here = arg[0]:match("^(.*)/[^/]*$") or "."
package.path = here .. "/?.lua;" .. package.path

local ffi = require("ffi")
local luablk = require("luablk")
local posix = require("luablk.posix")
local H = require("lib.harness")
local S = require("lib.probe_steps")

local MiB = S.MiB
local OPS = { [0] = "R", "W", "F", "D", [5] = "Z" }

local opts = H.options("flushbench", {
	size = { "size", 64 * MiB, "device size" },
	queues = { "number", 1, "hardware queues" },
	count = { "number", 300, "files written, each followed by fsync" },
	["file-size"] = { "size", 4096, "bytes per file" },
	top = { "number", 5, "largest gaps to list" },
	timeout = { "number", 300, "deadline of each step, seconds" },
}, arg)
S.require("flushbench", opts.size >= 32 * MiB and opts.size % MiB == 0,
	"--size must be a whole number of MiB, at least 32M")
S.require("flushbench", opts.count >= 1 and opts.file_size >= 1 and opts.queues >= 1,
	"--count, --file-size and --queues must be at least 1")

local run = S.start("flushbench", opts)
local dev, path, mnt, head, ring, capacity
local state = { phases = {} }

local function step_add()
	dev = H.device({
		backend = here .. "/backends/timed_mem.lua",
		size = opts.size,
		queues = opts.queues,
		write_cache = true,
	})
	path = dev:path()
	head = ffi.cast("uint64_t *", (assert(dev:shared("trace.head"))))
	local p, bytes = dev:shared("trace")
	ring, capacity = ffi.cast("uint64_t *", p), bytes / 32
	local cache = S.sysfs("/sys/block/" .. path:match("[^/]+$") .. "/queue/write_cache")
	if cache and cache ~= "write back" then
		error("the device's write cache is '" .. cache .. "', so fsync would send no FLUSH", 0)
	end
	return ("%s, %d MiB, %d queues, write cache: %s"):format(path, opts.size / MiB, dev:info().queues,
		cache or "?")
end

local function step_mkfs()
	run:sh({ "mkfs.ext4", "-q", "-F", path })
	mnt = S.mkdir(("/tmp/luablk-flushbench-%d"):format(ffi.C.getpid()))
	run:sh({ "mount", path, mnt })
	state.mounted = true
	return "mounted on " .. mnt
end

local function now_ns()
	return tonumber(luablk.C.luablk_now_ns())
end

-- Runs body(i) count times, timing the sync call inside it with mark();
-- returns the start time (a string: JSON numbers keep 14 digits) and each
-- sync's [start, end) relative to it.
local function timed_loop(count, body)
	local marks = {}
	local t0 = now_ns()
	local function mark(sync, what)
		local f0 = now_ns()
		if sync() ~= 0 then
			error(select(2, posix.fail(what)), 0)
		end
		marks[#marks + 1] = f0 - t0
		marks[#marks + 1] = now_ns() - t0
	end
	for i = 1, count do
		body(i, mark)
	end
	return { t0 = ("%.0f"):format(t0), stop = now_ns() - t0, marks = marks }
end

-- Worker: 4 KiB O_DIRECT writes to the bare device, each followed by
-- fdatasync (a FLUSH): the round trip through the kernel and our stack
-- with no filesystem in the way.
local function raw_loop(count)
	local fd = S.open_direct(path)
	local buf = S.pattern(4096, 3)
	local r = timed_loop(count, function(i, mark)
		S.pwrite(fd, buf, 4096, 4096 * (i % 1024))
		mark(function()
			return ffi.C.fdatasync(fd)
		end, "fdatasync")
	end)
	posix.close(fd)
	return r
end

-- Worker: the ext4 fsync loop, one new file per round.
local function fsync_loop(count, size)
	local buf = S.pattern(size, 9)
	return timed_loop(count, function(i, mark)
		local name = ("%s/f%05d"):format(mnt, i)
		local fd, err = posix.open(name, posix.O_WRONLY + posix.O_CREAT + posix.O_TRUNC)
		if not fd then
			error(err, 0)
		end
		local n, werr = posix.pwrite(fd, buf, size, 0)
		if n ~= size then
			error(("writing %s: %s"):format(name, werr or "short write"), 0)
		end
		mark(function()
			return ffi.C.fsync(fd)
		end, "fsync " .. name)
		posix.close(fd)
	end)
end

-- Runs a loop worker and keeps, as phase `name`, the trace slots it
-- covered, its time window and its sync calls.
local function traced(name, fn, ...)
	local phase = { name = name, first = tonumber(head[0]) }
	local r = run:work(fn, ...)
	phase.last = tonumber(head[0])
	local t0 = tonumber(r.t0)
	phase.window = { t0, t0 + r.stop }
	phase.syncs = {}
	for i = 1, #r.marks, 2 do
		local a, b = t0 + r.marks[i], t0 + r.marks[i + 1]
		phase.syncs[#phase.syncs + 1] = { a, b, ns = b - a }
	end
	state.phases[#state.phases + 1] = phase
	return r.stop / 1e9
end

local function step_raw()
	local secs = traced("raw", raw_loop, opts.count)
	return ("%d x (4 KiB O_DIRECT write + fdatasync) in %.2f s"):format(opts.count, secs)
end

local function step_loop()
	local secs = traced("ext4", fsync_loop, opts.count, opts.file_size)
	return ("%d files of %d bytes, each fsynced, in %.2f s"):format(opts.count, opts.file_size, secs)
end

-- The calls recorded while a phase's worker ran, sorted by start time.
local function calls_of(phase)
	local first, last = phase.first, phase.last
	phase.lost = math.max(0, last - first - capacity)
	first = first + phase.lost
	local w0, w1 = phase.window[1], phase.window[2]
	local calls = {}
	for i = first, last - 1 do
		local e = ring + (i % capacity) * 4
		local start = tonumber(e[0])
		if start >= w0 and start <= w1 then
			local word = tonumber(e[3])
			calls[#calls + 1] = {
				start = start,
				stop = tonumber(e[1]),
				off = tonumber(e[2]),
				len = math.floor(word / 65536),
				queue = math.floor(word % 65536 / 8),
				op = OPS[word % 8] or "?",
			}
		end
	end
	table.sort(calls, function(a, b)
		return a.start < b.start
	end)
	return calls
end

-- Gaps between consecutive calls: from the latest end so far to the next
-- start (calls on other queues may overlap: that is no gap). Largest first.
local function gaps_of(calls)
	local gaps, busy_until = {}, nil
	for i, c in ipairs(calls) do
		if busy_until then
			gaps[#gaps + 1] = { ns = math.max(0, c.start - busy_until), after = calls[i - 1], before = c }
		end
		busy_until = math.max(busy_until or 0, c.stop)
	end
	table.sort(gaps, function(a, b)
		return a.ns > b.ns
	end)
	return gaps
end

-- p50, p99 and max of a list of numbers (or of one field of a list).
local function spread(list, field)
	local v = {}
	for i, x in ipairs(list) do
		v[i] = field and x[field] or x
	end
	table.sort(v)
	return { p50 = S.percentile(v, 0.5), p99 = S.percentile(v, 0.99), max = v[#v] or 0, n = #v }
end

local function ms(ns)
	return ("%.3f ms"):format(ns / 1e6)
end

local function spread_text(x)
	return ("p50 %s p99 %s max %s"):format(ms(x.p50), ms(x.p99), ms(x.max))
end

-- The sync call running at time t: its number and window, or nil.
local function sync_at(phase, t)
	for i, f in ipairs(phase.syncs) do
		if t >= f[1] and t <= f[2] then
			return i, f
		end
	end
end

-- Where a gap from g0 (a call returned) to g1 (the next call started)
-- went, as far as the worker's sync calls tell: inside one sync (kernel
-- and filesystem work between two requests), or split at a sync's return
-- (before: completing the request back to the worker; after: the worker
-- and the submission of the next request).
local function gap_place(phase, g0, g1)
	local i, f = sync_at(phase, g0)
	local j, h = sync_at(phase, g1)
	if i and i == j then
		return ("inside sync #%d (%s)"):format(i, ms(f.ns))
	elseif i then
		return ("sync #%d returned %s after the call, the next call came %s later"):format(
			i, ms(f[2] - g0), ms(g1 - f[2]))
	elseif j then
		return ("worker outside sync calls, then sync #%d started %s before the next call"):format(
			j, ms(g1 - h[1]))
	end
	return "worker outside sync calls"
end

local function describe_call(c)
	if c.op == "F" then
		return ("F (q%d)"):format(c.queue)
	end
	return ("%s %d@%d (q%d, %s)"):format(c.op, c.len, c.off, c.queue, ms(c.stop - c.start))
end

-- The largest gaps with the calls around them, for lines and --json.
local function top_gaps(phase, gaps, lines)
	local out = {}
	for i = 1, math.min(opts.top, #gaps) do
		local gap = gaps[i]
		local at = gap.before.start - phase.window[1]
		out[i] = {
			ns = gap.ns,
			at_ns = at,
			after = describe_call(gap.after),
			before = describe_call(gap.before),
			where = gap_place(phase, gap.before.start - gap.ns, gap.before.start),
		}
		lines[#lines + 1] = ("  gap #%d: %s at +%.3f s, after %s, before %s, %s"):format(
			i, ms(gap.ns), at / 1e9, out[i].after, out[i].before, out[i].where)
	end
	return out
end

-- Summarises one phase of the trace: a table for --json, report lines.
local function analyse(phase, lines)
	local calls = calls_of(phase)
	local per_op, busy, ops = {}, 0, {}
	for _, c in ipairs(calls) do
		per_op[c.op] = (per_op[c.op] or 0) + 1
		c.ns = c.stop - c.start
		busy = busy + c.ns
	end
	if (per_op.F or 0) == 0 then
		error(("no FLUSH reached the backend during the %s loop"):format(phase.name), 0)
	end
	for _, k in ipairs({ "R", "W", "F", "D", "Z" }) do
		ops[#ops + 1] = per_op[k] and (k .. " " .. per_op[k]) or nil
	end
	local wall = phase.window[2] - phase.window[1]
	local gaps = gaps_of(calls)
	local r = {
		calls = #calls,
		per_op = per_op,
		lost = phase.lost,
		work_ns = wall,
		backend_busy_ns = busy,
		gap_ns = spread(gaps, "ns"),
		call_ns = spread(calls, "ns"),
		sync_ns = spread(phase.syncs, "ns"),
	}
	lines[#lines + 1] = ("%s: %d calls (%s) in %.2f s; backend busy %.1f%%%s"):format(phase.name, #calls,
		table.concat(ops, ", "), wall / 1e9, 100 * busy / wall,
		phase.lost > 0 and (", ring overflowed: " .. phase.lost .. " calls lost") or "")
	lines[#lines + 1] = "  gaps between calls: " .. spread_text(r.gap_ns)
	lines[#lines + 1] = "  backend call time:  " .. spread_text(r.call_ns)
	lines[#lines + 1] = "  sync call latency:  " .. spread_text(r.sync_ns)
	r.top_gaps = top_gaps(phase, gaps, lines)
	return r
end

local function step_analyse()
	state.lines, state.phase_results = {}, {}
	local parts = {}
	for _, phase in ipairs(state.phases) do
		local r = analyse(phase, state.lines)
		state.phase_results[phase.name] = r
		parts[#parts + 1] = ("%s largest gap %s"):format(phase.name, ms(r.gap_ns.max))
	end
	return table.concat(parts, "; ")
end

local function step_umount()
	run:sh({ "umount", mnt })
	state.mounted = false
	run:sh({ "e2fsck", "-fn", path })
	return "unmounted, e2fsck clean"
end

local function step_cleanup()
	if state.mounted then
		run:sh({ "umount", mnt })
		state.mounted = false
	end
	return "done"
end

local function step_close()
	local ok, err = dev:close()
	if not ok then
		error(err, 0)
	end
	if not S.gone(path, 10) then
		error(path .. " still exists 10 s after close", 0)
	end
	return path .. " gone"
end

local t = opts.timeout
local loop_t = math.max(t, opts.count)
run:step("add device", t, step_add)
run:step("raw write+fdatasync loop", loop_t, step_raw)
run:step("mkfs.ext4 + mount", t, step_mkfs)
run:step("ext4 write+fsync loop", loop_t, step_loop)
run:step("analyse trace", t, step_analyse)
run:step("umount + e2fsck -fn", t, step_umount)
if run.failed and mnt then
	run:step("cleanup: umount", t, step_cleanup, true)
end
if dev then
	run:step("close, node gone", t, step_close, true)
end
if mnt then
	S.rmdir(mnt)
end
return run:finish({ device = path, phases = state.phase_results }, state.lines)
