-- torture: random-IO data integrity against a real ublk device.
--
--   luablk run scripts/torture.lua [--duration 20s] [--workers 8] [--queues N]
--       [--depth D] [--size S] [--max-io B] [--seed N] [--backend NAME|FILE.lua]
--       [--arg k=v ...] [--filter SPEC ...] [--reload N] [--self-test] [--json]
--
-- This process serves the device; forked workers (scripts/lib/torture_worker.lua)
-- each own a disjoint region, issue random O_DIRECT reads and writes of 512 B
-- up to 4x max-io, keep a shadow copy and compare every read with it, fsync
-- now and then and re-read their whole region periodically and at the end.
-- The first mismatch stops every worker and fails the run with the device
-- offset and the first differing byte.
--
-- --reload N swaps the backend for a fresh copy of itself N times, spread
-- over the run, while the workers keep going: any IO error or mismatch
-- fails the run as usual, and so does a reload that fails.
--
-- --self-test proves the harness can fail: it runs against a backend that
-- flips one bit on read, one that loses writes to one sector, and a run
-- whose worker is SIGKILLed, and passes only if each of them is caught.
local here = (arg and arg[0] or ""):match("^(.*)/[^/]*$") or "."
package.path = here .. "/?.lua;" .. package.path

local ffi = require("ffi")
local luablk = require("luablk")
local posix = require("luablk.posix")
local H = require("lib.harness")
local sys = require("lib.stress_sys")
local W = require("lib.torture_worker")

local NAME = "torture"
local MiB = 2 ^ 20

local o = H.options(NAME, {
	duration = { "value", "20s", "how long the random IO runs: 30, 20s, 10m, 1h" },
	workers = { "number", 8, "worker processes, each with its own region" },
	queues = { "number", 2, "device queues (capped at the CPU count)" },
	depth = { "number", 128, "queue depth" },
	size = { "size", 64 * MiB, "device size in bytes (K, M, G suffixes)" },
	["max-io"] = { "size", 128 * 1024, "largest request in bytes; IOs go up to 4x this" },
	["block-size"] = { "number", 512, "logical block size, 512 or 4096" },
	seed = { "number", nil, "random seed; without it one is taken from the clock" },
	backend = { "value", "mem", "a shipped backend or a .lua path (file: an image in /tmp)" },
	arg = { "list", nil, "backend argument key=value, repeatable" },
	filter = { "list", nil, "filter NAME:key=value,... around the backend, repeatable" },
	reload = { "number", 0, "live reloads of the backend, spread over the run" },
	["write-cache"] = { "flag", false, "advertise a volatile cache, so fsync reaches the backend" },
	["verify-every"] = { "value", "5s", "period of each worker's full-region re-read" },
	stall = { "value", "120s", "fail when no worker makes progress for this long" },
	["self-test"] = { "flag", false, "check that planted corruption and a dead worker are caught" },
}, arg)

local progress, progress_done, die = H.progress, H.progress_done, H.die

local whole = H.whole

-- Checks the options that H.options leaves to us; dies with one line.
local function validate()
	o.duration_s = H.duration(o.duration) or die("--duration: bad duration '" .. tostring(o.duration) .. "'")
	o.verify_s = H.duration(o.verify_every) or die("--verify-every: bad duration '" .. tostring(o.verify_every) .. "'")
	o.stall_s = H.duration(o.stall) or die("--stall: bad duration '" .. tostring(o.stall) .. "'")
	whole(o.workers, "workers", 1, 256)
	whole(o.reload, "reload", 0, 100000)
	whole(o.queues, "queues", 1, 4096)
	whole(o.depth, "depth", 1, 4096)
	if o.block_size ~= 512 and o.block_size ~= 4096 then
		die("--block-size must be 512 or 4096")
	end
	if o.max_io < 4096 or o.max_io % 4096 ~= 0 then
		die("--max-io must be a positive multiple of 4096")
	end
	if o.size <= 0 or o.size % 4096 ~= 0 then
		die("--size must be a positive multiple of 4096")
	end
	if math.floor(o.size / o.workers / 4096) < 1 then
		die(("--size %d is too small for %d workers (4 KiB each at least)"):format(o.size, o.workers))
	end
	o.seed = o.seed and whole(o.seed, "seed", 0, 2 ^ 31 - 1) or (os.time() * 1009 + ffi.C.getpid()) % 2 ^ 31
	if o.backend == "null" or o.backend == "c-null" then
		die("backend " .. o.backend .. " stores nothing; torture needs one that keeps data")
	end
end

-- Backend arguments; the file backend gets a fresh sparse image in /tmp
-- unless a path was given. Returns args and the image to remove, if any.
local function backend_args(backend, given)
	local args = {}
	local has_path = false
	for i, a in ipairs(given or {}) do
		args[i] = a
		has_path = has_path or a:match("^path=") or not a:match("=")
	end
	if backend ~= "file" or has_path then
		return args
	end
	local image = ("/tmp/luablk-torture-%d.img"):format(ffi.C.getpid())
	local fd = assert(posix.open(image, posix.O_RDWR + posix.O_CREAT + posix.O_TRUNC, 384))
	posix.close(fd)
	args[#args + 1] = "path=" .. image
	return args, image
end

-- Sums the workers' counters.
local function totals(shm, n)
	local t = {
		ops = 0, reads = 0, writes = 0, bytes_read = 0, bytes_written = 0, verifies = 0,
		region_verifies = 0, fsyncs = 0, progress = 0, verify_bytes = 0,
	}
	for w = 0, n - 1 do
		local c = W.slot(shm, w)
		t.ops = t.ops + c[W.OPS]
		t.reads = t.reads + c[W.READS]
		t.writes = t.writes + c[W.WRITES]
		t.bytes_read = t.bytes_read + c[W.BYTES_READ]
		t.bytes_written = t.bytes_written + c[W.BYTES_WRITTEN]
		t.verifies = t.verifies + c[W.VERIFIES]
		t.region_verifies = t.region_verifies + c[W.REGION_VERIFIES]
		t.fsyncs = t.fsyncs + c[W.FSYNCS]
		t.progress = t.progress + c[W.PROGRESS]
		t.verify_bytes = t.verify_bytes + c[W.VERIFY_BYTES]
	end
	return t
end

-- Forks the workers over equal, 4 KiB-aligned regions; returns their pids.
local function start_workers(run, shm)
	local region = math.floor(run.size / run.workers / 4096) * 4096
	local ncpu = sys.cpus()
	local pids = {}
	for w = 0, run.workers - 1 do
		local cfg = {
			path = run.path, wid = w, base = w * region, len = region, bs = run.block_size,
			max_io = run.max_io, maxlen = math.min(4 * run.max_io, region), seed = run.seed,
			deadline = run.deadline, verify_every = run.verify_s, ppid = ffi.C.getpid(),
			cpu = w % ncpu,
		}
		pids[w + 1] = sys.fork(H, W.run, cfg, shm)
	end
	run.region = region
	return pids
end

-- What a dead worker's slot and exit status say, or nil if it finished well.
local function worker_problem(shm, w, status)
	local c = W.slot(shm, w)
	local state = c[W.STATE]
	if state == W.FAILED or state == W.MISMATCH then
		return W.message(shm, w)
	end
	if status ~= 0 then
		local how = status and status > 128 and ("was killed by signal " .. (status - 128))
			or ("exited with status " .. tostring(status))
		return ("worker %d %s before finishing"):format(w, how)
	end
	if state ~= W.DONE then
		return ("worker %d exited without finishing"):format(w)
	end
end

-- Does the reloads due by `elapsed` seconds: the i-th of N at
-- i/(N+1) of the run. Returns a failure message, if one failed.
local function reload_due(run, dev, elapsed)
	run.reloads = run.reloads or 0
	while run.reloads < run.reload and elapsed >= (run.reloads + 1) / (run.reload + 1) * run.duration_s do
		local ok, err = dev:reload()
		if not ok then
			return ("reload %d failed: %s"):format(run.reloads + 1, err)
		end
		run.reloads = run.reloads + 1
	end
end

-- Watches the workers until all have exited: progress line, signals,
-- the device stopping on its own, stalls. Returns a list of failures.
local function supervise(run, dev, shm, pids)
	local failures = {}
	local stop = W.stop_flag(shm)
	local last_progress, last_change = -1, luablk.now()
	local function halt(msg)
		failures[#failures + 1] = msg
		stop[0] = 1
	end
	while true do
		local sig = dev:wait(250)
		if sig and sig > 0 and stop[0] == 0 then
			halt("interrupted by signal " .. sig)
		elseif sig == 0 and stop[0] == 0 then
			halt("the device stopped serving during the run")
		end
		local t = totals(shm, run.workers)
		local now = luablk.now()
		local elapsed = now - run.started
		progress("torture: %d ops  %.1f MiB/s  %ds / %ds", t.ops,
			(t.bytes_read + t.bytes_written) / MiB / math.max(elapsed, 1e-3), elapsed, run.duration_s)
		if run.on_tick then
			run.on_tick(run, pids, elapsed)
		end
		if run.reload > 0 then
			local problem = reload_due(run, dev, elapsed)
			if problem and stop[0] == 0 then
				halt(problem)
			end
		end
		local alive = 0
		for _, pid in ipairs(pids) do
			alive = alive + (sys.exited(pid) and 0 or 1)
		end
		if alive == 0 then
			break
		end
		if t.progress ~= last_progress then
			last_progress, last_change = t.progress, now
		elseif now - last_change > run.stall_s then
			local states = {}
			for w, pid in ipairs(pids) do
				local st, _, wchan = sys.proc_state(pid)
				states[#states + 1] = ("worker %d: %s %s"):format(w - 1, tostring(st), tostring(wchan))
			end
			halt(("no worker made progress for %d s (%s); killing them"):format(run.stall_s, table.concat(states, ", ")))
			for _, pid in ipairs(pids) do
				sys.kill(pid, sys.SIGKILL)
			end
			last_change = math.huge
		end
	end
	progress_done()
	return failures
end

-- One torture run with settings `run` (the options, possibly changed by
-- the self-test). Returns the result table for H.report.
local function torture(run)
	local args, image = backend_args(run.backend, run.arg)
	luablk.block_signals()
	local dev, err = luablk.add({
		backend = run.backend, size = run.size, queues = run.queues, depth = run.depth,
		max_io = run.max_io, block_size = run.block_size, args = args, filters = run.filter,
		write_cache = run.write_cache or nil,
	})
	if not dev then
		if image then
			os.remove(image)
		end
		return { failures = { "cannot create the device: " .. err }, seed = run.seed }
	end
	local info = dev:info()
	run.path = dev:path()
	local shm = sys.shm(W.HEADER + run.workers * W.SLOT)
	run.started = luablk.now()
	run.deadline = run.started + run.duration_s
	local pids = start_workers(run, shm)
	local failures = supervise(run, dev, shm, pids)
	local elapsed = luablk.now() - run.started
	local statuses = H.wait_all(pids)
	local mismatch
	for w = 0, run.workers - 1 do
		local problem = worker_problem(shm, w, statuses[w + 1])
		-- Workers stopped by someone else's failure end cleanly; only report
		-- the ones that failed on their own.
		if problem then
			failures[#failures + 1] = problem
		end
		local c = W.slot(shm, w)
		if not mismatch and c[W.STATE] == W.MISMATCH then
			mismatch = { worker = w, offset = c[W.BAD_OFF], expected = c[W.BAD_EXPECTED], got = c[W.BAD_GOT] }
		end
	end
	local closed, cerr = dev:close()
	if not closed then
		failures[#failures + 1] = "closing the device: " .. cerr
	elseif not sys.wait_for(10, function()
		return not posix.exists(run.path)
	end) then
		failures[#failures + 1] = run.path .. " still exists after close"
	end
	if image then
		os.remove(image)
	end
	if (run.reloads or 0) < run.reload and #failures == 0 then
		failures[#failures + 1] = ("only %d of %d reloads happened during the run"):format(run.reloads or 0, run.reload)
	end
	local t = totals(shm, run.workers)
	t.reloads = run.reloads
	t.failures, t.mismatch, t.seed, t.elapsed = failures, mismatch, run.seed, elapsed
	-- The rate covers the random-IO phase, not the final re-read.
	t.mib_per_s = (t.bytes_read + t.bytes_written) / MiB / math.max(math.min(elapsed, run.duration_s), 1e-3)
	t.device = {
		backend = run.backend, size = info.size, queues = info.queues, queues_asked = run.queues,
		depth = info.depth, max_io = info.max_io, block_size = info.block_size,
		filters = run.filter, args = #args > 0 and args or nil,
	}
	t.workers, t.region = run.workers, run.region
	t.progress = nil
	return t
end

local function summary(t)
	local d = t.device or {}
	local lines = {
		("%d ops (%d reads, %d writes) in %.1f s: %.1f MiB/s, %.0f MiB moved"):format(
			t.ops or 0, t.reads or 0, t.writes or 0, t.elapsed or 0, t.mib_per_s or 0,
			((t.bytes_read or 0) + (t.bytes_written or 0)) / MiB),
		("verified %d reads against the shadow, %d full-region passes (%.0f MiB), %d fsyncs"):format(
			t.verifies or 0, t.region_verifies or 0, (t.verify_bytes or 0) / MiB, t.fsyncs or 0),
	}
	if d.backend then
		local q = d.queues == d.queues_asked and tostring(d.queues)
			or ("%d (asked %d)"):format(d.queues, d.queues_asked)
		local fmt = "device: %s%s, %d MiB, %s queues, depth %d, max-io %d KiB, %d-byte blocks; %d workers x %d KiB"
		lines[#lines + 1] = fmt:format(
			d.backend, #(d.filters or {}) > 0 and (" + " .. table.concat(d.filters, " + ")) or "",
			d.size / MiB, q, d.depth, d.max_io / 1024, d.block_size, t.workers, t.region / 1024)
	end
	if (t.reloads or 0) > 0 then
		lines[#lines + 1] = ("backend reloaded %d times while the workers ran"):format(t.reloads)
	end
	lines[#lines + 1] = ("seed %d (--seed %d replays each worker's sequence of ops)"):format(t.seed, t.seed)
	return lines
end

-- A copy of the options with some fields replaced.
local function with(changes)
	local r = {}
	for k, v in pairs(o) do
		r[k] = v
	end
	for k, v in pairs(changes) do
		r[k] = v
	end
	return r
end

-- Runs torture against planted faults; each case must fail the way it
-- should. Returns the report's result table and lines.
local function self_test()
	local broken = here .. "/lib/torture_broken.lua"
	local short = math.min(o.duration_s, 5)
	math.randomseed(o.seed)
	local region = math.floor(o.size / o.workers / 4096) * 4096
	local flip = math.random(0, o.workers * region - 1)
	local drop = math.random(0, o.workers * region / 512 - 1) * 512 + 128
	local cases = {
		{
			what = "one bit flipped on read at offset " .. flip,
			run = with({ backend = broken, arg = { "flip_at=" .. flip }, duration_s = short }),
			caught = function(t)
				local m = t.mismatch
				return m and m.offset == flip and bit.bxor(m.expected, m.got) == 1
			end,
		},
		{
			what = "writes to the sector holding offset " .. drop .. " lost",
			run = with({ backend = broken, arg = { "drop_at=" .. drop }, duration_s = short }),
			caught = function(t)
				local m = t.mismatch
				return m and m.offset >= drop - drop % 512 and m.offset < drop - drop % 512 + 512
			end,
		},
		{
			what = "worker 0 SIGKILLed mid-run",
			run = with({ duration_s = short, on_tick = function(run, pids, elapsed)
				if not run.killed and elapsed > 1 then
					run.killed = sys.kill(pids[1], sys.SIGKILL)
				end
			end }),
			caught = function(t)
				for _, f in ipairs(t.failures) do
					if f:match("^worker 0 was killed by signal 9") then
						return true
					end
				end
			end,
		},
	}
	local result = { failures = {}, cases = {}, seed = o.seed }
	local lines = {}
	for _, case in ipairs(cases) do
		local t = torture(case.run)
		local ok = case.caught(t) and #t.failures > 0
		local said = t.failures[1] or "no failure"
		result.cases[#result.cases + 1] = { what = case.what, caught = ok and true or false, report = said }
		lines[#lines + 1] = ("%s: %s"):format(ok and "caught" or "MISSED", case.what)
		lines[#lines + 1] = "  " .. said
		if not ok then
			result.failures[#result.failures + 1] = "not caught as expected: " .. case.what
		end
	end
	lines[#lines + 1] = ("seed %d"):format(o.seed)
	return result, lines
end

validate()
if o.self_test then
	local result, lines = self_test()
	return H.report(NAME .. " self-test", o, result, lines)
end
local t = torture(o)
return H.report(NAME, o, t, summary(t))
