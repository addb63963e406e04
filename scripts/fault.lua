-- fault: injected failures reach the application exactly, and a power cut
-- under ext4 keeps every fsynced file.
--
--   luablk run scripts/fault.lua [--seed N] [--ios N] [--workers N]
--       [--only NAME[,NAME]] [--json]
--
-- Scenarios (this process serves each device; forked workers do the IO
-- with O_DIRECT, and helpers run through plain fork):
--   rate10    10% of reads and 10% of writes fail (fault:rate=0.1). Every
--             EIO a worker saw is in the filter's own log and nothing
--             else is; every read that succeeded returned what the
--             worker's shadow says; at the end the backend holds exactly
--             the successful writes.
--   all       every write fails (reads still return the old data), then
--             every read fails (writes still land).
--   errno     ENOSPC on a write and ENODATA on a read reach the worker as
--             such (two stacked fault filters), their neighbours succeed.
--   close     closing a device while IO keeps failing does not hang.
--   crash     ext4 on the crash filter over a file image: write files,
--             fsync half of them, cut the power (tearing unflushed blocks),
--             unmount, close; a fresh device on the image must mount,
--             hold every fsynced file intact and pass e2fsck -fn.
--
-- The same --seed gives the same failure decisions per queue, so a run
-- can be repeated; the seed is in the summary.
local here = arg[0]:match("^(.*)/[^/]*$") or "."
package.path = here .. "/?.lua;" .. package.path

local ffi = require("ffi")
local cjson = require("cjson")
local luablk = require("luablk")
local posix = require("luablk.posix")
local errno = require("luablk.errno")
local proc = require("luablk.proc")
local fault = require("luablk.filters.fault")
local crash = require("luablk.filters.crash")
local H = require("lib.harness")

local NAME = "fault"
local MiB = 2 ^ 20
local BLOCK = 4096
local MAXB = 4 -- largest IO, in blocks
local SIZE = 64 * MiB

local opts = H.options(NAME, {
	seed = { "number", 1, "seed for the filters and the workers" },
	ios = { "number", 400, "random IOs per worker in rate10" },
	workers = { "number", 2, "worker processes in rate10" },
	only = { "value", nil, "run only these scenarios (comma-separated)" },
	verbose = { "flag", false, "print each step on stderr" },
}, arg)

local function step(fmt, ...)
	if opts.verbose then
		io.stderr:write(NAME, ": ", fmt:format(...), "\n")
	end
end

local function die(msg)
	io.stderr:write(NAME, ": ", msg, "\n")
	os.exit(2)
end

if opts.seed < 0 or opts.seed % 1 ~= 0 then
	die("--seed must be a whole number")
end
if opts.ios < 1 or opts.ios % 1 ~= 0 or opts.workers < 1 or opts.workers > 16 or opts.workers % 1 ~= 0 then
	die("--ios must be a positive whole number and --workers 1..16")
end

------------------------------------------------------------------------
-- Worker side: runs in forked children.

-- The bytes block b holds after its gen-th write (gen 0: never written).
local function expected(buf, b, gen)
	if gen == 0 then
		ffi.fill(buf, BLOCK)
		return
	end
	ffi.fill(buf, BLOCK, (b * 7 + gen * 13) % 251 + 1)
	local words = ffi.cast("uint32_t *", buf)
	words[0], words[1], words[2] = 0x6c62666c, b, gen
end

-- One pread/pwrite: the byte count, or nil and the errno.
local function once(call, fd, buf, len, off)
	local n, _, e = call(fd, buf, len, off)
	return n, e
end

local function open_dev(path)
	local fd, err = posix.open(path, posix.O_RDWR + posix.O_DIRECT)
	if not fd then
		error(err, 0)
	end
	return fd
end

local function save(path, t)
	local f = assert(io.open(path, "w"))
	f:write(cjson.encode(t))
	f:close()
end

-- Random reads and writes of 1..MAXB blocks in blocks [first, first+n).
-- Writes carry a new generation per block; reads are compared with the
-- shadow. Saves every failed IO, every wrong read and the final shadow.
local function random_worker(path, out, first, n, ios, mix, seed)
	local fd = open_dev(path)
	local random = require("luablk.filters.helpers").rng(seed, 1000)
	local buf, want = posix.aligned(MAXB * BLOCK), posix.aligned(BLOCK)
	local gens, r = {}, { failures = {}, bad = {}, reads = 0, writes = 0 }
	for _ = 1, ios do
		local count = 1 + math.floor(random() * MAXB)
		local b = first + math.floor(random() * (n - count + 1))
		local off, len = b * BLOCK, count * BLOCK
		local write = random() < mix
		if write then
			r.writes = r.writes + 1
			for i = 0, count - 1 do
				expected(buf + i * BLOCK, b + i, (gens[b + i] or 0) + 1)
			end
		else
			r.reads = r.reads + 1
		end
		local got, e = once(write and posix.pwrite_once or posix.pread_once, fd, buf, len, off)
		if not got then
			r.failures[#r.failures + 1] = { write and "write" or "read", off, len, e }
		elseif got ~= len then
			r.bad[#r.bad + 1] = ("short %s at %d: %d of %d bytes"):format(write and "write" or "read", off, got, len)
		elseif write then
			for i = 0, count - 1 do
				gens[b + i] = (gens[b + i] or 0) + 1
			end
		else
			for i = 0, count - 1 do
				expected(want, b + i, gens[b + i] or 0)
				if ffi.C.memcmp(buf + i * BLOCK, want, BLOCK) ~= 0 then
					r.bad[#r.bad + 1] = ("read at %d: block %d differs from its generation %d"):format(off, b + i, gens[b + i] or 0)
				end
			end
		end
	end
	posix.close(fd)
	r.gens = {}
	for blk, g in pairs(gens) do
		r.gens[#r.gens + 1] = { blk, g }
	end
	save(out, r)
end

-- Runs a list of { op, off, len } and saves the errno of each (0: ok).
local function script_worker(path, out, ios)
	local fd = open_dev(path)
	local buf = posix.aligned(MAXB * BLOCK)
	local got = {}
	for i, io in ipairs(ios) do
		local n, e = once(io[1] == "write" and posix.pwrite_once or posix.pread_once, fd, buf, io[3], io[2])
		got[i] = n and 0 or e
	end
	posix.close(fd)
	save(out, got)
end

if not pcall(function()
	return ffi.C.munmap
end) then
	ffi.cdef("int munmap(void *addr, size_t len);")
end

-- A plain fork() child inherits the server's queue rings (fds and
-- mappings), which keeps them alive after the server closes them: the
-- kernel then never cancels the ublk fetch commands, an IO the child
-- issues during teardown is never failed, and STOP_DEV waits for it until
-- the child exits (seen on 6.12; a core bug, reported). A worker that
-- does IO across a close drops them first.
local function forget_server()
	local maps = {}
	for line in io.lines("/proc/self/maps") do
		local from, to = line:match("^(%x+)-(%x+)")
		if line:find("anon_inode:[io_uring]", 1, true) or line:find("/dev/ublkc", 1, true) then
			maps[#maps + 1] = { tonumber(from, 16), tonumber(to, 16) }
		end
	end
	for _, m in ipairs(maps) do
		ffi.C.munmap(ffi.cast("void *", m[1]), m[2] - m[1])
	end
	for fd = 3, 1023 do
		ffi.C.close(fd)
	end
end

-- Reads the device over and over, each time on a fresh fd so DEL_DEV is
-- never held up for long, until the node is gone or `seconds` pass.
local function failing_reader(path, out, seconds)
	forget_server()
	local buf = posix.aligned(BLOCK)
	local failures, deadline = 0, luablk.now() + seconds
	while luablk.now() < deadline do
		local fd = posix.open(path, posix.O_RDONLY + posix.O_DIRECT)
		if not fd then
			break
		end
		if not posix.pread_once(fd, buf, BLOCK, 0) then
			failures = failures + 1
		end
		posix.close(fd)
	end
	save(out, { failures = failures })
end

------------------------------------------------------------------------
-- Harness side.

local tmp = ("/tmp/luablk-fault-%d"):format(ffi.C.getpid())

local function worker_file(tag)
	return ("%s-%s.json"):format(tmp, tag)
end

local function load(path)
	local f = io.open(path, "r")
	if not f then
		return nil
	end
	local t = cjson.decode(f:read("*a"))
	f:close()
	os.remove(path)
	return t
end

-- Runs fn(out, ...) in a child and returns what it saved, or raises.
local function in_worker(tag, fn, ...)
	local out = worker_file(tag)
	step("worker %s starts", tag)
	local status = H.wait_all({ H.fork(fn, ...) })[1]
	step("worker %s exited %s", tag, tostring(status))
	local got = load(out)
	if status ~= 0 or not got then
		error(("worker %s exited %s"):format(tag, tostring(status)), 0)
	end
	return got
end

-- Resources a scenario must release however it ends, newest first.
local function releaser()
	local list = {}
	return function(fn)
		list[#list + 1] = fn
	end, function()
		for i = #list, 1, -1 do
			pcall(list[i])
		end
	end
end

local function add(defer, o)
	local dev = H.device(o)
	local path = dev:path()
	step("%s: %s %s", path, o.backend, table.concat(o.filters or {}, " "))
	defer(function()
		if dev.ptr then -- not closed by the scenario itself
			step("closing %s", path)
			dev:close()
		end
	end)
	return dev
end

-- "write 4096+8192 EIO" for a failure record.
local function key(op, off, len, e)
	return ("%s %d+%d %s"):format(op, off, len, errno.name(e))
end

-- Compares failures the workers saw with the filter's log; returns a
-- list of problems (empty if they are the same multiset).
local function compare_log(seen, log)
	local count, problems = {}, {}
	for _, f in ipairs(seen) do
		local k = key(f[1], f[2], f[3], f[4])
		count[k] = (count[k] or 0) + 1
	end
	for _, r in ipairs(log) do
		local k = key(r.op, r.off, r.len, r.errno)
		count[k] = (count[k] or 0) - 1
	end
	for k, n in pairs(count) do
		if n > 0 then
			problems[#problems + 1] = ("the application saw %s %d time(s) more than the filter logged"):format(k, n)
		elseif n < 0 then
			problems[#problems + 1] = ("the filter logged %s %d time(s) the application did not see"):format(k, -n)
		end
	end
	table.sort(problems)
	return problems
end

-- Checks the mem backend's bytes against a worker's final shadow.
local function check_backend(dev, gens, problems)
	local mem = assert(dev:shared("mem"))
	local want = ffi.new("uint8_t[?]", BLOCK)
	for _, bg in ipairs(gens) do
		expected(want, bg[1], bg[2])
		if ffi.C.memcmp(mem + bg[1] * BLOCK, want, BLOCK) ~= 0 then
			problems[#problems + 1] = ("backend block %d is not generation %d"):format(bg[1], bg[2])
		end
	end
end

local function append(dst, src, limit)
	for i = 1, math.min(#src, limit or #src) do
		dst[#dst + 1] = src[i]
	end
end

local FIRST, LAST = MiB / BLOCK, (SIZE - MiB) / BLOCK -- the blocks workers use

-- 10% of reads and writes fail; exactly those reach the workers as EIO.
local function scenario_rate10(defer)
	local spec = ("fault:op=read+write,rate=0.1,seed=%d,flag=1,from=1M,to=%d"):format(opts.seed, SIZE - MiB)
	local dev = add(defer, { backend = "mem", size = SIZE, queues = 2, filters = { spec } })
	assert(fault.set(dev, true))
	-- Disjoint regions with a free block between them: two workers' IOs
	-- are never adjacent, so the kernel cannot merge them.
	local per = math.floor((LAST - FIRST) / opts.workers)
	local pids = {}
	for w = 1, opts.workers do
		local first = FIRST + (w - 1) * per
		pids[w] = H.fork(random_worker, dev:path(), worker_file("w" .. w), first, per - 1, opts.ios, 0.5, opts.seed + w)
	end
	local statuses = H.wait_all(pids)
	assert(fault.set(dev, false))
	local seen, problems, reads, writes = {}, {}, 0, 0
	for w = 1, opts.workers do
		local r = load(worker_file("w" .. w))
		if statuses[w] ~= 0 or not r then
			error(("worker %d exited %s"):format(w, tostring(statuses[w])), 0)
		end
		append(seen, r.failures)
		append(problems, r.bad, 10)
		check_backend(dev, r.gens, problems)
		reads, writes = reads + r.reads, writes + r.writes
	end
	local log = assert(fault.log(dev))
	append(problems, compare_log(seen, log), 10)
	local by = { read = 0, write = 0 }
	for _, f in ipairs(seen) do
		by[f[1]] = by[f[1]] + 1
		if f[4] ~= errno.EIO then
			problems[#problems + 1] = "expected EIO, got " .. errno.name(f[4])
		end
	end
	if by.read == 0 or by.write == 0 then
		problems[#problems + 1] = ("expected some failed reads and writes, got %d and %d"):format(by.read, by.write)
	end
	local summary = ("%d of %d reads and %d of %d writes failed; all %d in the filter's log; data verified"):format(
		by.read,
		reads,
		by.write,
		writes,
		#log
	)
	return summary, problems
end

-- One device where every IO of `op` fails inside the workers' range.
local function all_fail(defer, op)
	local spec = ("fault:op=%s,from=1M,to=%d"):format(op, SIZE - MiB)
	local dev = add(defer, { backend = "mem", size = SIZE, filters = { spec } })
	local tag = "all-" .. op
	local r = in_worker(tag, random_worker, dev:path(), worker_file(tag), FIRST, 256, 200, 0.5, opts.seed)
	local problems, failed = {}, 0
	append(problems, r.bad, 10)
	for _, f in ipairs(r.failures) do
		failed = failed + 1
		if f[1] ~= op or f[4] ~= errno.EIO then
			problems[#problems + 1] = ("unexpected failure: %s"):format(key(f[1], f[2], f[3], f[4]))
		end
	end
	local want = op == "read" and r.reads or r.writes
	if failed ~= want then
		problems[#problems + 1] = ("%d of %d %ss failed, expected all"):format(failed, want, op)
	end
	step("checking the backend")
	check_backend(dev, r.gens, problems)
	step("checking the log")
	append(problems, compare_log(r.failures, assert(fault.log(dev))), 10)
	step("closing %s", dev:path())
	dev:close()
	step("closed")
	return ("%d/%d %ss failed"):format(failed, want, op), problems
end

local function scenario_all(defer)
	local s1, p1 = all_fail(defer, "write")
	local s2, p2 = all_fail(defer, "read")
	append(p1, p2)
	return s1 .. " (reads intact), " .. s2 .. " (writes landed)", p1
end

-- Custom errnos: ENOSPC on one write, ENODATA on one read.
local function scenario_errno(defer)
	local dev = add(defer, {
		backend = "mem",
		size = SIZE,
		filters = {
			("fault:op=write,errno=ENOSPC,name=w,from=1M,to=%d"):format(MiB + BLOCK),
			("fault:op=read,errno=61,name=r,from=2M,to=%d"):format(2 * MiB + BLOCK),
		},
	})
	local cases = {
		{ { "write", MiB, BLOCK }, errno.ENOSPC },
		{ { "write", MiB + BLOCK, BLOCK }, 0 },
		{ { "read", MiB, BLOCK }, 0 },
		{ { "read", 2 * MiB, BLOCK }, errno.ENODATA },
		{ { "read", 2 * MiB - BLOCK, 2 * BLOCK }, errno.ENODATA },
		{ { "write", 2 * MiB, BLOCK }, 0 },
	}
	local ios = {}
	for i, c in ipairs(cases) do
		ios[i] = c[1]
	end
	local got = in_worker("errno", script_worker, dev:path(), worker_file("errno"), ios)
	local problems = {}
	for i, c in ipairs(cases) do
		if got[i] ~= c[2] then
			problems[#problems + 1] = ("%s at %d+%d: expected %s, got %s"):format(
				c[1][1],
				c[1][2],
				c[1][3],
				c[2] == 0 and "success" or errno.name(c[2]),
				got[i] == 0 and "success" or errno.name(got[i])
			)
		end
	end
	return "ENOSPC on a write and ENODATA on a read reached the application", problems
end

-- Closing while failing IO keeps arriving must finish, without the
-- reader having to stop first.
local CLOSE_DEADLINE = 120

local function scenario_close(defer)
	local dev = add(defer, { backend = "mem", size = SIZE, filters = { "fault:flag=1" } })
	assert(fault.set(dev, true))
	local path, out = dev:path(), worker_file("close")
	local reader = H.fork(failing_reader, path, out, CLOSE_DEADLINE + 60)
	-- An exec'd watchdog (it inherits nothing that pins the device) ends
	-- the reader if the close does not return in time.
	local dog = assert(luablk.spawn({ "sh", "-c", ("sleep %d && kill -9 %d"):format(CLOSE_DEADLINE, reader) }))
	luablk.sleep(0.3)
	step("closing %s with failing reads in flight", path)
	local t0 = luablk.now()
	local ok, err = dev:close()
	local took = luablk.now() - t0
	ffi.C.kill(dog, 9)
	luablk.wait(dog)
	local status = luablk.wait(reader)
	local r = load(out) or {}
	local problems = {}
	if not ok then
		problems[#problems + 1] = "close failed: " .. tostring(err)
	end
	if status == 137 then
		problems[#problems + 1] = ("close returned only once the reader was killed (%d s)"):format(CLOSE_DEADLINE)
	elseif status ~= 0 or (r.failures or 0) == 0 then
		problems[#problems + 1] = ("the reader saw no failing IO before the close (exit %s)"):format(tostring(status))
	end
	if posix.exists(path) then
		problems[#problems + 1] = path .. " still exists after close"
	end
	return ("closed in %.1f s with reads failing; %d failed reads"):format(took, r.failures or 0), problems
end

------------------------------------------------------------------------
-- crash: ext4 over the crash filter.

local FILES, FILE_SIZE = 24, 48 * 1024

local function file_bytes(i, seed)
	local t = {}
	for k = 1, FILE_SIZE / 16 do
		t[k] = ("%04d:%06d:%04d\n"):format(i, k, seed % 10000)
	end
	return table.concat(t)
end

if not pcall(function()
	return ffi.C.sync_file_range
end) then
	ffi.cdef("int sync_file_range(int fd, int64_t off, int64_t n, unsigned int flags);")
end
local SYNC_FILE_RANGE_ALL = 7 -- WAIT_BEFORE | WRITE | WAIT_AFTER: no cache flush

-- Writes FILES files into dir; the even ones are fsynced (file and
-- directory). The odd ones are then written out with sync_file_range,
-- which sends their data to the device without a FLUSH, so it sits in
-- the crash filter's volatile layer at the cut.
local function fs_writer(dir, out, seed)
	local synced = {}
	local dfd = assert(posix.open(dir, posix.O_RDONLY))
	for i = 1, FILES do
		local fd = assert(posix.open(("%s/f%02d"):format(dir, i), posix.O_WRONLY + posix.O_CREAT + posix.O_TRUNC))
		local data = file_bytes(i, seed)
		local buf = ffi.new("uint8_t[?]", #data)
		ffi.copy(buf, data, #data)
		assert(posix.pwrite(fd, buf, #data, 0) == #data)
		if i % 2 == 0 then
			assert(ffi.C.fsync(fd) == 0 and ffi.C.fsync(dfd) == 0, "fsync failed")
			synced[#synced + 1] = i
		end
		posix.close(fd)
	end
	posix.close(dfd)
	for i = 1, FILES, 2 do
		local fd = assert(posix.open(("%s/f%02d"):format(dir, i), posix.O_WRONLY))
		ffi.C.sync_file_range(fd, 0, 0, SYNC_FILE_RANGE_ALL)
		posix.close(fd)
	end
	save(out, synced)
end

-- Reads back every file; saves which exist and which are intact.
local function fs_checker(dir, out, seed)
	local r = { intact = {}, present = {} }
	for i = 1, FILES do
		local f = io.open(("%s/f%02d"):format(dir, i), "rb")
		if f then
			r.present[#r.present + 1] = i
			if f:read("*a") == file_bytes(i, seed) then
				r.intact[#r.intact + 1] = i
			end
			f:close()
		end
	end
	save(out, r)
end

local function set_of(list)
	local s = {}
	for _, v in ipairs(list) do
		s[v] = true
	end
	return s
end

local function scenario_crash(defer)
	local img, mnt = tmp .. ".img", tmp .. "-mnt"
	defer(function()
		os.remove(img)
		proc.run({ "rmdir", mnt })
	end)
	proc.check({ "truncate", "-s", tostring(SIZE), img })
	proc.check({ "mkdir", "-p", mnt })
	local spec = ("crash:tear=0.5,seed=%d"):format(opts.seed)
	local dev = add(defer, { backend = "file", args = { "path=" .. img }, size = SIZE, filters = { spec } })
	proc.check({ "mkfs.ext4", "-q", "-F", "-E", "lazy_itable_init=0,lazy_journal_init=0", dev:path() })
	-- commit=60 keeps jbd2's periodic commit (and its FLUSH) out of the way.
	local umount = H.mount(defer, dev:path(), mnt, "commit=60")
	local synced = in_worker("fs", fs_writer, mnt, worker_file("fs"), opts.seed)
	-- From "outside": the published control region, by device id.
	assert(crash.crash(dev:id()))
	local st = assert(crash.state(dev))
	umount() -- fails its writes with EIO, as after a power cut
	dev:close()

	local problems = {}
	local fresh = add(defer, { backend = "file", args = { "path=" .. img }, size = SIZE })
	local mounted, why = pcall(H.mount, defer, fresh:path(), mnt, "commit=60") -- replays the journal
	if not mounted then
		local first = tostring(why):match("[^\n]*")
		return "the durable image does not mount", { "after the crash: " .. first }
	end
	umount = why
	local r = in_worker("fscheck", fs_checker, mnt, worker_file("fscheck"), opts.seed)
	assert(umount())
	local intact, present, kept = set_of(r.intact), set_of(r.present), 0
	for _, i in ipairs(synced) do
		if intact[i] then
			kept = kept + 1
		else
			local what = present[i] and "damaged" or "missing"
			problems[#problems + 1] = ("fsynced file f%02d is %s after the crash"):format(i, what)
		end
	end
	local unsynced = 0
	for i = 1, FILES, 2 do
		unsynced = unsynced + (intact[i] and 1 or 0)
	end
	if st.lost_at_crash == 0 then
		problems[#problems + 1] = "nothing was volatile at the cut, so the crash was not exercised"
	end
	local status, out = proc.run({ "e2fsck", "-fn", fresh:path() })
	if status ~= 0 then
		problems[#problems + 1] = ("e2fsck -fn exited %d: %s"):format(status, (out:gsub("\n", " | ")):sub(1, 300))
	end
	fresh:close()
	local fmt = "%d/%d fsynced files intact, %d/%d unsynced intact; %d blocks volatile at the cut, %d written early"
	local summary = fmt:format(
		kept,
		#synced,
		unsynced,
		FILES - #synced,
		st.lost_at_crash,
		st.early_blocks
	)
	if status == 0 then
		summary = summary .. "; e2fsck clean"
	end
	return summary, problems
end

------------------------------------------------------------------------

local SCENARIOS = {
	{ "rate10", scenario_rate10 },
	{ "all", scenario_all },
	{ "errno", scenario_errno },
	{ "close", scenario_close },
	{ "crash", scenario_crash },
}

local function chosen()
	if not opts.only then
		return SCENARIOS
	end
	local want, out = set_of({}), {}
	for name in opts.only:gmatch("[^,]+") do
		want[name] = true
	end
	for _, s in ipairs(SCENARIOS) do
		if want[s[1]] then
			out[#out + 1] = s
			want[s[1]] = nil
		end
	end
	local unknown = next(want)
	if unknown then
		die(("unknown scenario '%s' (rate10, all, errno, close, crash)"):format(unknown))
	end
	return out
end

local function run_scenario(s)
	local defer, release = releaser()
	local t0 = luablk.now()
	local ok, summary, problems = xpcall(s[2], debug.traceback, defer)
	release()
	if not ok then
		summary, problems = "aborted", { tostring(summary) }
	end
	return { name = s[1], ok = #problems == 0, summary = summary, problems = problems, seconds = luablk.now() - t0 }
end

local result = { seed = opts.seed, scenarios = {}, failures = {} }
local lines = { ("seed %d"):format(opts.seed) }
for _, s in ipairs(chosen()) do
	H.progress("%s: %s ...", NAME, s[1])
	local r = run_scenario(s)
	H.progress_done()
	result.scenarios[#result.scenarios + 1] = r
	lines[#lines + 1] = ("%-7s %s  %s (%.1f s)"):format(r.name, r.ok and "PASS" or "FAIL", r.summary, r.seconds)
	for _, p in ipairs(r.problems) do
		result.failures[#result.failures + 1] = r.name .. ": " .. p
	end
end
return H.report(NAME, opts, result, lines)
