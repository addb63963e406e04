-- Steps with deadlines for the probe, chain and flushbench harnesses.
--
-- A harness is a list of named steps, each timed and each given a
-- deadline, so that a stuck kernel or backend fails the step instead of
-- hanging the run. Three layers enforce it:
--
--   * helper programs run under timeout(1) with what is left of the step;
--   * forked workers are polled with waitpid(WNOHANG) and SIGKILLed when
--     the step's time is up;
--   * what the harness does itself (add, close, memory scans) is watched by
--     one watchdog process, forked before any device exists (so it holds
--     no device fd). It polls a deadline word in a shared page; once a
--     step overruns by GRACE seconds it prints the kernel stacks of the
--     harness and its children to stderr and SIGKILLs the harness.
--
-- The first two let the harness report the stuck step and still clean up
-- (unmount, close); the watchdog is the backstop for hangs in-process.
local ffi = require("ffi")
local luablk = require("luablk")
local posix = require("luablk.posix")
local proc = require("luablk.proc")
local H = require("lib.harness")

ffi.cdef([[
int waitpid(int pid, int *status, int options);
int getppid(void);
void *mmap(void *addr, size_t len, int prot, int flags, int fd, int64_t off);
int mkdir(const char *path, int mode);
int rmdir(const char *path);
int sched_setaffinity(int pid, size_t size, const void *mask);
int mincore(void *addr, size_t length, unsigned char *vec);
]])

local C = ffi.C
local WNOHANG, SIGKILL = 1, 9
local PROT_RW, MAP_SHARED_ANON = 3, 0x21
local GRACE = 20 -- seconds the watchdog allows past a step's deadline
local NAME_AT, NAME_MAX = 64, 190 -- step name in the watchdog page

local S = {}

-- Kernel stacks of pid's threads and of its children, for a hang report.
local DUMP = [[
p=$1
kids=$(for s in /proc/[0-9]*/stat; do
	read -r pid _ _ pp _ < "$s" 2>/dev/null && [ "$pp" = "$p" ] && echo "$pid"
done)
for q in $p $kids; do
	[ "$q" = "$PPID" ] && continue # the watchdog itself
	for t in /proc/$q/task/*; do
		echo "-- pid $q task ${t##*/} $(cat "$t/comm" 2>/dev/null)" \
			"wchan=$(cat "$t/wchan" 2>/dev/null)"
		cat "$t/stack" 2>/dev/null
	done
done
]]

local function watch(page, parent, name)
	while C.getppid() == parent do
		local deadline = page[0]
		if deadline ~= 0 and C.luablk_now_ns() > deadline then
			local step = ffi.string(ffi.cast("char *", page) + NAME_AT)
			io.stderr:write(("%s: watchdog: step '%s' is %d s past its deadline;"
				.. " kernel stacks follow, then the harness is killed\n"):format(name, step, GRACE))
			io.stderr:flush()
			luablk.execute({ "sh", "-c", DUMP, "sh", tostring(parent) }, { stdout = 2 })
			C.kill(parent, SIGKILL)
			return 3
		end
		luablk.sleep(0.2)
	end
	return 0
end

-- Forks the watchdog; returns its pid and the shared page it reads.
local function start_watchdog(name)
	local p = C.mmap(nil, 4096, PROT_RW, MAP_SHARED_ANON, -1, 0)
	assert(ffi.cast("intptr_t", p) ~= -1, "mmap for the watchdog failed")
	local page = ffi.cast("uint64_t *", p)
	local parent = C.getpid()
	return H.fork(watch, page, parent, name), page
end

local slurp = posix.read_file

-- The kernel function a task sleeps in, from /proc/PID/wchan.
function S.wchan(pid)
	local w = slurp("/proc/" .. pid .. "/wchan")
	return (w and w ~= "" and w ~= "0") and w or "?"
end

-- Decodes a waitpid status as luablk.wait does: exit code, or 128 + signal.
local function decode(status)
	local sig = bit.band(status, 0x7f)
	if sig ~= 0 then
		return 128 + sig
	end
	return bit.band(bit.rshift(status, 8), 0xff)
end

local Run = {}
Run.__index = Run

-- Exits 2 with a usage message unless ok, as H.options does for bad input.
function S.require(name, ok, msg)
	if not ok then
		io.stderr:write(name, ": ", msg, "\n")
		os.exit(2)
	end
end

-- Starts a run: opts are the harness options (json, timeout).
function S.start(name, opts)
	local self = setmetatable({
		name = name,
		opts = opts,
		steps = {},
		failures = {},
		started = luablk.now(),
		deadline = math.huge,
	}, Run)
	self.dog, self.page = start_watchdog(name)
	return self
end

-- Seconds left in the current step (at least 1, so helpers get a chance).
function Run:left()
	return math.max(1, self.deadline - luablk.now())
end

function Run:arm(title, seconds)
	self.deadline = luablk.now() + seconds
	local name = ffi.cast("char *", self.page) + NAME_AT
	ffi.fill(name, NAME_MAX + 1)
	ffi.copy(name, title:sub(1, NAME_MAX))
	self.page[0] = C.luablk_now_ns() + math.floor((seconds + GRACE) * 1e9)
end

function Run:disarm()
	self.page[0] = 0
	self.deadline = math.huge
end

function Run:fail(msg)
	self.failures[#self.failures + 1] = msg
	self.failed = true
end

-- Runs fn() as step `title` with a deadline of `seconds`. fn returns a
-- short detail string and optionally a table kept for --json. After a
-- failure later steps are skipped, unless `always` (cleanup steps).
-- Returns fn's results, or nil if it failed or was skipped.
function Run:step(title, seconds, fn, always)
	local rec = { name = title }
	self.steps[#self.steps + 1] = rec
	if self.failed and not always then
		rec.skipped = true
		return nil
	end
	H.progress("%s: %s ...", self.name, title)
	self:arm(title, seconds)
	local t0 = luablk.now()
	local ok, detail, data = pcall(fn)
	rec.seconds = luablk.now() - t0
	self:disarm()
	rec.ok = ok
	if ok then
		rec.detail, rec.data = detail, data
		return detail or true, data
	end
	rec.error = tostring(detail)
	self:fail(title .. ": " .. rec.error)
	return nil
end

-- Human lines for the report: one per step with its duration.
function Run:lines()
	local out = {}
	for _, s in ipairs(self.steps) do
		local what
		if s.skipped then
			what = "skipped"
		elseif s.ok then
			what = s.detail or "ok"
		else
			what = "FAILED"
		end
		local t = s.seconds and ("%7.2f s"):format(s.seconds) or "      -  "
		out[#out + 1] = ("%-30s %s  %s"):format(s.name, t, what)
	end
	out[#out + 1] = ("%-30s %7.2f s"):format("total", luablk.now() - self.started)
	return out
end

-- Stops the watchdog and prints the report; returns the exit status.
-- result holds harness-specific fields for --json; extra are more lines.
function Run:finish(result, extra)
	C.kill(self.dog, SIGKILL)
	luablk.wait(self.dog)
	H.progress_done()
	result = result or {}
	result.steps = {}
	for i, s in ipairs(self.steps) do
		result.steps[i] = {
			name = s.name,
			seconds = s.seconds,
			ok = s.ok or false,
			skipped = s.skipped or nil,
			detail = s.detail,
			error = s.error,
			data = s.data,
		}
	end
	result.seconds = luablk.now() - self.started
	result.workers = self.forks or 0
	result.failures = self.failures
	local lines = self:lines()
	for _, l in ipairs(extra or {}) do
		lines[#lines + 1] = l
	end
	return H.report(self.name, self.opts, result, lines)
end

-- Runs argv under timeout(1) with the step's remaining time; returns
-- its stdout, or raises with its stderr unless it exits 0.
function Run:sh(argv)
	local left = math.ceil(self:left())
	local full = { "timeout", "-k", "5", tostring(left) }
	for _, a in ipairs(argv) do
		full[#full + 1] = a
	end
	local status, out, err = proc.run(full)
	local cmd = table.concat(argv, " ")
	if status == 124 or status == 137 then
		error(("'%s' timed out after %d s"):format(cmd, left), 0)
	elseif status ~= 0 then
		err = (err or ""):gsub("%s+$", "")
		error(("'%s' exited %s: %s"):format(cmd, tostring(status), err), 0)
	end
	return out
end

-- Starts fn(...) in a forked worker. Its return value (anything cjson can
-- encode) or its error comes back through a temporary file.
function Run:fork(fn, ...)
	self.forks = (self.forks or 0) + 1
	local file = os.tmpname()
	local pid = H.fork(function(...)
		local cjson = require("cjson")
		local ok, res = pcall(fn, ...)
		local text
		if ok then
			ok, text = pcall(cjson.encode, { ok = true, result = res })
		end
		if not ok then
			text = cjson.encode({ ok = false, error = tostring(res) })
		end
		local f = io.open(file, "wb")
		if f then
			f:write(text)
			f:close()
		end
		return ok and 0 or 1
	end, ...)
	return { pid = pid, file = file }
end

-- Polls the workers until they all exit or the step's deadline passes;
-- then SIGKILLs the rest. Fills w.status (128 + signal if killed).
function Run:reap(workers)
	local status = ffi.new("int[1]")
	local pending = #workers
	while pending > 0 do
		for _, w in ipairs(workers) do
			if not w.status then
				local r = C.waitpid(w.pid, status, WNOHANG)
				if r == w.pid or (r < 0 and ffi.errno() ~= 4) then
					w.status = r == w.pid and decode(status[0]) or -1
					pending = pending - 1
				end
			end
		end
		if pending > 0 and luablk.now() > self.deadline then
			for _, w in ipairs(workers) do
				if not w.status then
					w.timed_out = S.wchan(w.pid)
					io.stderr:write(("%s: worker %d is stuck; its kernel stack:\n%s"):format(
						self.name, w.pid, slurp("/proc/" .. w.pid .. "/stack") or "(unavailable)\n"))
					C.kill(w.pid, SIGKILL)
				end
			end
			-- Give the kill a moment; a task stuck in D state stays a zombie.
			self.deadline = luablk.now() + 5
		elseif pending > 0 then
			luablk.sleep(0.01)
		end
	end
end

-- Waits for workers started with Run:fork; returns their results in
-- order, or raises with the first worker's error.
function Run:wait(workers)
	self:reap(workers)
	local results, errors = {}, {}
	for i, w in ipairs(workers) do
		local text = slurp(w.file)
		os.remove(w.file)
		local ok, msg = pcall(function()
			return require("cjson").decode(text or "")
		end)
		if w.timed_out then
			errors[#errors + 1] = ("worker %d passed the deadline (waiting in %s) and was killed"):format(
				i, w.timed_out)
		elseif ok and msg.ok then
			results[i] = msg.result
		elseif ok then
			errors[#errors + 1] = ("worker %d: %s"):format(i, msg.error)
		else
			errors[#errors + 1] = ("worker %d exited %d without a result"):format(i, w.status)
		end
	end
	if #errors > 0 then
		error(table.concat(errors, "; "), 0)
	end
	return results
end

-- Runs fn(...) in one worker and returns its result.
function Run:work(fn, ...)
	return self:wait({ self:fork(fn, ...) })[1]
end

-- Creates the directory for a mount point (mode 0755); returns its path.
function S.mkdir(path)
	if C.mkdir(path, 493) ~= 0 and ffi.errno() ~= 17 then
		error(select(2, posix.fail("mkdir " .. path)), 0)
	end
	return path
end

function S.rmdir(path)
	C.rmdir(path)
end

-- Fills buf[0..len) (len a multiple of 4) with a pattern that depends
-- only on seed: xorshift32, fast enough for megabytes under emulation.
function S.fill(buf, len, seed)
	local w = ffi.cast("int32_t *", buf)
	local x = bit.bxor(bit.tobit(seed), 0x5bd1e995)
	if x == 0 then
		x = 1
	end
	for i = 0, len / 4 - 1 do
		x = bit.bxor(x, bit.lshift(x, 13))
		x = bit.bxor(x, bit.rshift(x, 17))
		x = bit.bxor(x, bit.lshift(x, 5))
		w[i] = x
	end
end

-- A page-aligned buffer holding S.fill's pattern for seed.
function S.pattern(len, seed)
	local buf = posix.aligned(len)
	S.fill(buf, len, seed)
	return buf
end

-- The first offset in [off, off+len) where p is not zero, or nil.
function S.nonzero(p, off, len)
	local chunk = 1048576
	local zeros = S.zeros or ffi.new("uint8_t[?]", chunk)
	S.zeros = zeros
	local pos, stop = off, off + len
	while pos < stop do
		local n = math.min(chunk, stop - pos)
		if C.memcmp(p + pos, zeros, n) ~= 0 then
			for i = pos, pos + n - 1 do
				if p[i] ~= 0 then
					return i
				end
			end
		end
		pos = pos + n
	end
	return nil
end

-- Pages of a shared mapping p (page aligned, size bytes) that are backed
-- by memory, as a list of page numbers, or nil if mincore fails. The
-- rest were never written and read as zeros, so a check can skip them
-- instead of making the kernel allocate them. (A page swapped out also
-- counts as absent: on a host that swaps, checks skip it.)
function S.resident_pages(p, size)
	local npages = math.ceil(size / 4096)
	local vec = ffi.new("unsigned char[?]", npages)
	if C.mincore(p, npages * 4096, vec) ~= 0 then
		return nil
	end
	local out = {}
	for i = 0, npages - 1 do
		if bit.band(vec[i], 1) == 1 then
			out[#out + 1] = i
		end
	end
	return out
end

-- S.nonzero over a shared mapping, looking only at resident pages.
function S.nonzero_mapped(p, off, len, pages)
	if len <= 0 then
		return nil
	elseif not pages then
		return S.nonzero(p, off, len)
	end
	for _, pg in ipairs(pages) do
		local a = math.max(pg * 4096, off)
		local b = math.min(pg * 4096 + 4096, off + len)
		if a < b then
			local bad = S.nonzero(p, a, b - a)
			if bad then
				return bad
			end
		end
	end
	return nil
end

-- Non-overlapping random ranges: `count` slots across `size` bytes, one
-- range per slot, offsets and lengths multiples of `align`, lengths in
-- [min_len, max_len]. Sorted by offset.
function S.ranges(count, size, align, min_len, max_len)
	local slot = math.floor(size / count / align) * align
	local out = {}
	for i = 0, count - 1 do
		local len = align * math.random(min_len / align, math.min(max_len, slot) / align)
		local off = i * slot + align * math.random(0, (slot - len) / align)
		out[#out + 1] = { off = off, len = len, seed = i + 1 }
	end
	return out
end

-- Checks that mem holds each range's pattern and zeros everywhere else
-- in [0, size). Raises with the first difference.
function S.check_exact(mem, size, ranges, seed_base)
	local pages = S.resident_pages(mem, size)
	local pos = 0
	for _, r in ipairs(ranges) do
		local bad = S.nonzero_mapped(mem, pos, r.off - pos, pages)
		if bad then
			error(("backend byte %d is not zero, but nothing was written there"):format(bad), 0)
		end
		local want = S.pattern(r.len, seed_base + r.seed)
		if C.memcmp(want, mem + r.off, r.len) ~= 0 then
			error(("backend storage differs from what was written at %d (+%d)"):format(r.off, r.len), 0)
		end
		pos = r.off + r.len
	end
	local bad = S.nonzero_mapped(mem, pos, size - pos, pages)
	if bad then
		error(("backend byte %d is not zero, but nothing was written there"):format(bad), 0)
	end
end

-- Opens a block device for O_DIRECT IO or raises.
function S.open_direct(path)
	local fd, err = posix.open(path, posix.O_RDWR + posix.O_DIRECT)
	if not fd then
		error(err, 0)
	end
	return fd
end

-- One O_DIRECT transfer that must move exactly len bytes.
function S.xfer(call, what, fd, buf, len, off)
	local n, err = call(fd, buf, len, off)
	if not n then
		error(("%s of %d bytes at %d: %s"):format(what, len, off, err), 0)
	elseif n ~= len then
		error(("short %s at %d: %d of %d bytes"):format(what, off, n, len), 0)
	end
end

function S.pwrite(fd, buf, len, off)
	S.xfer(posix.pwrite_once, "pwrite", fd, buf, len, off)
end

function S.pread(fd, buf, len, off)
	S.xfer(posix.pread_once, "pread", fd, buf, len, off)
end

-- Worker side of a device-level round trip: writes each range's pattern
-- through path with O_DIRECT, reads it back and compares.
function S.write_ranges(path, ranges, seed_base)
	local fd = S.open_direct(path)
	for _, r in ipairs(ranges) do
		local data = S.pattern(r.len, seed_base + r.seed)
		S.pwrite(fd, data, r.len, r.off)
		local back = posix.aligned(r.len)
		S.pread(fd, back, r.len, r.off)
		if C.memcmp(data, back, r.len) ~= 0 then
			error(("read back differs from what was written at %d (+%d)"):format(r.off, r.len), 0)
		end
	end
	posix.close(fd)
	return #ranges
end

-- Worker side of a zero check: reads len bytes at each offset of a fresh
-- device with O_DIRECT and raises on any non-zero byte.
function S.read_zeros(path, offsets, len)
	local fd = S.open_direct(path)
	local buf = posix.aligned(len)
	for _, off in ipairs(offsets) do
		ffi.fill(buf, len, 0xa5)
		S.pread(fd, buf, len, off)
		local bad = S.nonzero(buf, 0, len)
		if bad then
			error(("byte %d of a fresh device reads %d, not 0"):format(off + bad, buf[bad]), 0)
		end
	end
	posix.close(fd)
	return #offsets
end

-- The size a block device reports through BLKGETSIZE64.
function S.device_size(path)
	local fd = S.open_direct(path)
	local size, err = posix.size(fd)
	posix.close(fd)
	if not size then
		error(err, 0)
	end
	return size
end

-- One line of a sysfs file, or nil.
function S.sysfs(path)
	local s = slurp(path)
	return s and s:gsub("%s+$", "")
end

-- Waits up to `seconds` for path to disappear; true if it did.
function S.gone(path, seconds)
	local stop = luablk.now() + (seconds or 10)
	while posix.exists(path) do
		if luablk.now() > stop then
			return false
		end
		luablk.sleep(0.02)
	end
	return true
end

-- Sorted-sample percentile (p in [0, 1]) of a list of numbers.
function S.percentile(sorted, p)
	if #sorted == 0 then
		return 0
	end
	local i = math.max(1, math.min(#sorted, math.ceil(p * #sorted)))
	return sorted[i]
end

-- Pins the calling process to one CPU (blk-mq picks the hardware queue
-- by the submitting CPU, so pinned workers spread IO over the queues).
function S.pin(cpu)
	local set = ffi.new("uint64_t[16]")
	set[math.floor(cpu / 64)] = bit.lshift(1ULL, cpu % 64)
	C.sched_setaffinity(0, ffi.sizeof(set), set)
end

-- Per-queue IO counts (reads + writes) from a "counts" region.
function S.queue_counts(region, queues)
	local w = ffi.cast("uint64_t *", region)
	local out = {}
	for q = 0, queues - 1 do
		out[q + 1] = tonumber(w[q * 8] + w[q * 8 + 1])
	end
	return out
end

-- Sums the per-queue words of scripts/backends/counting.lua's "counts"
-- region into a table.
function S.counts(region)
	local w = ffi.cast("uint64_t *", region)
	local t = { 0, 0, 0, 0, 0, 0, 0, 0 }
	for q = 0, 63 do
		for k = 0, 7 do
			t[k + 1] = t[k + 1] + tonumber(w[q * 8 + k])
		end
	end
	return {
		reads = t[1],
		writes = t[2],
		flushes = t[3],
		discards = t[4],
		write_zeroes = t[5],
		read_bytes = t[6],
		written_bytes = t[7],
		changes_started = t[2] + t[4] + t[5],
		changes_done = t[8],
	}
end

-- b - a for every field of two S.counts tables.
function S.delta(a, b)
	local d = {}
	for k, v in pairs(b) do
		d[k] = v - a[k]
	end
	return d
end

S.MiB = 1048576

return S
