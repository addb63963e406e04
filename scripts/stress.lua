-- stress: device lifecycle under pressure, for leaks, hangs and crashes.
-- Also meant for the ASan build: build-asan/luablk run scripts/stress.lua
--
--   luablk run scripts/stress.lua [--cycles 200] [--rounds 10] [--closers 8]
--       [--devices 32] [--only churn,io-while-close,concurrent-close,many] [--json]
--
-- Four stressors, in order:
--   churn             create -> small IO -> close, --cycles times, in this
--                     process; afterwards its fds, threads, published shared
--                     regions and the machine's ublk nodes must be as before,
--                     and RSS must not keep growing after a warm-up.
--   io-while-close    forked workers hammer the device (write, read back,
--                     compare) while it closes; --rounds times.
--   concurrent-close  --closers devices, each served by its own forked
--                     process, all closed at the same instant; half of them
--                     also deleted at that instant by another process
--                     (luablk.delete, or the `luablk del` command).
--   many              --devices devices alive at once (one server process
--                     each), a writer on each, every written block checked
--                     for its own device's stamp, then all closed in parallel
--                     while the writers are still going.
--
-- DEL_DEV waits until nobody has /dev/ublkbN open. So every IO worker here
-- treats its first failed IO (EIO, or ENOSPC once the capacity is 0) as
-- "the device is going away": it closes its fd and exits, and a synchronous
-- close returns once the workers have seen their IO fail. io-while-close
-- alternates that with the async delete (DEL_DEV_ASYNC, which returns at
-- once; the node goes when the workers do), and serves the device either
-- from this process, with the workers forked from it, or from a forked
-- server process, with the workers forked from here and sharing nothing
-- with it. The first kind relies on the library keeping the queue rings
-- and the char device out of forked children: a child that kept a ring
-- alive would leave its in-flight IO waiting for a server that is gone,
-- and STOP_DEV waiting for that IO, forever (seen on 6.12 before the
-- library's fork guard). A watchdog process, forked before any device
-- exists so that it pins none, turns such a hang into a failure.
local here = (arg and arg[0] or ""):match("^(.*)/[^/]*$") or "."
package.path = here .. "/?.lua;" .. package.path

local ffi = require("ffi")
local luablk = require("luablk")
local posix = require("luablk.posix")
local proc = require("luablk.proc")
local H = require("lib.harness")
local sys = require("lib.stress_sys")
local hammer = require("lib.stress_hammer")
local watchdog = require("lib.stress_watchdog")

local NAME = "stress"
local MiB = 2 ^ 20
local PHASES = { "churn", "io-while-close", "concurrent-close", "many" }

local o = H.options(NAME, {
	cycles = { "number", 200, "churn: create/IO/close cycles" },
	rounds = { "number", 10, "io-while-close: devices closed under IO" },
	workers = { "number", 4, "io-while-close: IO workers per device" },
	closers = { "number", 8, "concurrent-close: devices closed at the same instant, per round" },
	["close-rounds"] = { "number", 5, "concurrent-close: rounds" },
	devices = { "number", 32, "many: devices alive at once" },
	backend = { "value", "mem", "backend for every device" },
	size = { "size", 16 * MiB, "size of each device" },
	only = { "value", "all", "comma-separated stressors to run: " .. table.concat(PHASES, ",") },
	timeout = { "number", 120, "seconds before a step counts as hung" },
	["rss-growth"] = { "number", 16, "churn: MiB of RSS growth allowed after the warm-up (ASan: +256)" },
	seed = { "number", nil, "random seed; without it one is taken from the clock" },
}, arg)

local progress, progress_done, die = H.progress, H.progress_done, H.die

local count = H.whole

local function validate()
	count(o.cycles, "cycles", 0, 1e7)
	count(o.rounds, "rounds", 0, 1e6)
	count(o.workers, "workers", 1, 64)
	count(o.closers, "closers", 1, 1024)
	count(o.close_rounds, "close-rounds", 0, 1e6)
	count(o.devices, "devices", 0, 4096)
	count(o.timeout, "timeout", 1, 86400)
	if type(o.rss_growth) ~= "number" or o.rss_growth < 0 then
		die("--rss-growth must be a number of MiB")
	end
	if o.size <= 0 or o.size % 4096 ~= 0 or o.size < 256 * 1024 then
		die("--size must be a multiple of 4096 and at least 256K")
	end
	local want = {}
	for p in (o.only == "all" and table.concat(PHASES, ",") or o.only):gmatch("[^,]+") do
		local known = false
		for _, q in ipairs(PHASES) do
			known = known or q == p
		end
		if not known then
			die(("--only: unknown stressor '%s' (known: %s)"):format(p, table.concat(PHASES, ", ")))
		end
		want[p] = true
	end
	o.want = want
	if o.seed then
		count(o.seed, "seed", 0, 2 ^ 31 - 1)
	end
	o.seed = o.seed or (os.time() * 1009 + ffi.C.getpid()) % 2 ^ 31
end

local exe = sys.self_exe()
local dog -- the watchdog, started before any device

local function fork(fn, ...)
	return sys.fork(H, fn, ...)
end

-- Waits for a device node to disappear; returns true if it did.
local function gone(path)
	return sys.wait_for(o.timeout, function()
		return not posix.exists(path)
	end, 0.05)
end

-- Devices with shared regions published in /run/luablk, for leak checks.
local function published()
	return #sys.listdir("/run/luablk")
end

-- Our threads, without io_uring's own workers (iou-wrk-*): the kernel
-- starts those for the control ring's blocking commands and lets them
-- linger idle for a while after.
local function threads()
	local n = 0
	for _, tid in ipairs(sys.listdir("/proc/self/task")) do
		local comm = sys.read_file("/proc/self/task/" .. tid .. "/comm") or ""
		if not comm:match("^iou%-") then
			n = n + 1
		end
	end
	return n
end

-- Differences between two fd tables, as "fd 7 -> /dev/ublkc0" strings.
local function fd_leaks(before, after)
	local out = {}
	for fd, target in pairs(after) do
		if before[fd] ~= target then
			out[#out + 1] = ("fd %d -> %s"):format(fd, target)
		end
	end
	table.sort(out)
	return out
end

------------------------------------------------------------------------
-- churn

-- The small IO of one churn cycle, in a forked child: 4 KiB written at a
-- random block, read back, compared.
local function small_io(path, seed)
	math.randomseed(seed)
	local fd = assert(posix.open(path, posix.O_RDWR + posix.O_DIRECT))
	local size = assert(posix.size(fd))
	local a, b = posix.aligned(4096), posix.aligned(4096)
	for i = 0, 4095 do
		a[i] = math.random(0, 255)
	end
	local off = 4096 * math.random(0, size / 4096 - 1)
	assert(posix.pwrite_once(fd, a, 4096, off) == 4096, "write failed")
	assert(posix.pread_once(fd, b, 4096, off) == 4096, "read failed")
	posix.close(fd)
	return ffi.C.memcmp(a, b, 4096) == 0 and 0 or 2
end

-- Under AddressSanitizer freed memory sits in a quarantine (256 MiB by
-- default) before reuse, so RSS climbs that far without any leak; there
-- LeakSanitizer's report at exit is the leak check, and the RSS bound
-- grows by the quarantine size.
ffi.cdef("void __asan_init(void);")
local asan = pcall(function()
	return ffi.C.__asan_init
end)

local function rss_mib()
	collectgarbage("collect")
	return sys.rss_kib() / 1024
end

local function churn(res)
	local failures = res.failures
	local before = { fds = sys.fds(), threads = threads(), nodes = sys.ublk_nodes(), pub = published() }
	local warm_at = math.max(1, math.floor(o.cycles / 4))
	local rss0, rss_warm = rss_mib(), nil
	local ncpu = sys.cpus()
	local t0 = luablk.now()
	local done = 0
	for i = 1, o.cycles do
		-- Alternate one and two queues, so per-queue state churns too.
		local queues = (i % 2 == 0 and ncpu > 1) and 2 or 1
		dog:arm(o.timeout, ("churn cycle %d"):format(i))
		local dev, err = luablk.add({ backend = o.backend, size = o.size, queues = queues })
		if not dev then
			dog:disarm()
			failures[#failures + 1] = ("churn cycle %d: add: %s"):format(i, err)
			break
		end
		local path = dev:path()
		local status = luablk.wait(fork(small_io, path, o.seed + i))
		local ok, cerr = dev:close()
		if dog:disarm() then
			failures[#failures + 1] = ("churn cycle %d hung (watchdog fired)"):format(i)
			break
		end
		if status ~= 0 or not ok or not gone(path) then
			failures[#failures + 1] = ("churn cycle %d: IO child status %s, close %s, node %s"):format(
				i, tostring(status), ok and "ok" or tostring(cerr), posix.exists(path) and "still there" or "gone")
			break
		end
		done = i
		if i == warm_at then
			rss_warm = rss_mib()
		end
		progress("stress: churn %d/%d", i, o.cycles)
	end
	progress_done()
	local elapsed = luablk.now() - t0
	local after = { fds = sys.fds(), threads = threads(), nodes = sys.ublk_nodes(), pub = published() }
	local rss1 = rss_mib()
	rss_warm = rss_warm or rss1
	for _, l in ipairs(fd_leaks(before.fds, after.fds)) do
		failures[#failures + 1] = "churn: fd leaked: " .. l
	end
	if after.threads ~= before.threads then
		failures[#failures + 1] = ("churn: %d threads before, %d after"):format(before.threads, after.threads)
	end
	if sys.nodes_text(after.nodes) ~= sys.nodes_text(before.nodes) then
		failures[#failures + 1] = ("churn: ublk nodes before: %s; after: %s (%s)"):format(
			sys.nodes_text(before.nodes), sys.nodes_text(after.nodes), table.concat(after.nodes.names, " "))
	end
	if after.pub ~= before.pub then
		failures[#failures + 1] = ("churn: %d entries in /run/luablk before, %d after"):format(before.pub, after.pub)
	end
	local growth, limit = rss1 - rss_warm, o.rss_growth + (asan and 256 or 0)
	if growth > limit then
		failures[#failures + 1] = ("churn: RSS grew %.1f MiB over %d cycles after the warm-up (limit %d)"):format(
			growth, done - warm_at, limit)
	end
	res.churn = {
		cycles = done, seconds = elapsed, fds = sys.fd_count(), threads = after.threads,
		rss_start_mib = rss0, rss_warm_mib = rss_warm, rss_end_mib = rss1,
		rss_kib_per_cycle = done > warm_at and growth * 1024 / (done - warm_at) or 0,
		rss_limit_mib = limit, asan = asan,
	}
	res.lines[#res.lines + 1] = ("churn: %d cycles in %.1f s; fds %d -> %d, threads %d -> %d, ublk nodes %d -> %d; "
		.. "RSS %.1f -> %.1f MiB after cycle %d (%+.1f KiB/cycle, limit +%d MiB%s)"):format(
		done, elapsed, #fd_leaks({}, before.fds), #fd_leaks({}, after.fds), before.threads,
		after.threads, before.nodes.block + before.nodes.char, after.nodes.block + after.nodes.char,
		rss_warm, rss1, warm_at, res.churn.rss_kib_per_cycle, limit, asan and " under ASan" or "")
end

------------------------------------------------------------------------
-- servers in their own processes: concurrent-close and many

local OWN = { STATE = 0, ID = 1, CLOSE_S = 2 }
local UP, CLOSED, BROKEN = 1, 2, 3
local GO = 0 -- ctl[GO]: the instant (luablk.now()) every closer starts

local function own_slot(shm, i)
	return ffi.cast("double *", shm + i * 256)
end

local function own_say(shm, i, msg)
	local p = shm + i * 256 + 128
	msg = msg:sub(1, 127)
	ffi.copy(p, msg, #msg)
	p[#msg] = 0
end

local function own_msg(shm, i)
	return ffi.string(shm + i * 256 + 128)
end

-- Sleeps until ctl[GO] is set and reached. Returns false if the harness
-- went away meanwhile.
local function wait_go(ctl, ppid)
	while ctl[GO] == 0 or luablk.now() < ctl[GO] do
		if sys.parent_gone(ppid) then
			return false
		end
		luablk.sleep(0.002)
	end
	return true
end

-- A forked server: adds a device, publishes its id, closes it at GO.
local function server(i, shm, ctl, opts, ppid, close_opts)
	local c = own_slot(shm, i)
	local dev, err = luablk.add(opts)
	if not dev then
		own_say(shm, i, "add: " .. err)
		c[OWN.STATE] = BROKEN
		return 1
	end
	c[OWN.ID] = dev:id()
	c[OWN.STATE] = UP
	wait_go(ctl, ppid)
	local t = luablk.now()
	local ok, cerr = dev:close(close_opts)
	c[OWN.CLOSE_S] = luablk.now() - t
	if not ok then
		own_say(shm, i, "close: " .. cerr)
		c[OWN.STATE] = BROKEN
		return 1
	end
	c[OWN.STATE] = CLOSED
	return 0
end

-- Forks n servers; waits until all are up. Returns pids and ids, or nil
-- and a message.
local function start_servers(shm, ctl, n, opts, close_opts)
	ctl[GO] = 0
	ffi.fill(shm, n * 256)
	local pids = {}
	for i = 0, n - 1 do
		pids[i + 1] = fork(server, i, shm, ctl, opts, ffi.C.getpid(), close_opts)
	end
	local all = sys.wait_for(o.timeout, function()
		for i = 0, n - 1 do
			local st = own_slot(shm, i)[OWN.STATE]
			if st == BROKEN or (st == 0 and sys.exited(pids[i + 1])) then
				return "broken"
			elseif st ~= UP then
				return false
			end
		end
		return "up"
	end, 0.05)
	local ids = {}
	for i = 0, n - 1 do
		ids[i + 1] = own_slot(shm, i)[OWN.ID]
	end
	if all ~= "up" then
		ctl[GO] = luablk.now()
		H.wait_all(pids)
		for i = 0, n - 1 do
			if own_slot(shm, i)[OWN.STATE] == BROKEN then
				return nil, ("server %d: %s"):format(i, own_msg(shm, i))
			end
		end
		return nil, "servers did not come up within " .. o.timeout .. " s"
	end
	return pids, ids
end

-- Checks the servers' exits; returns the longest close.
local function server_results(failures, where, shm, pids, statuses)
	local longest = 0
	for i = 0, #pids - 1 do
		local c = own_slot(shm, i)
		if c[OWN.STATE] ~= CLOSED or statuses[i + 1] ~= 0 then
			failures[#failures + 1] = ("%s: server %d (device %d) exited %s: %s"):format(
				where, i, c[OWN.ID], tostring(statuses[i + 1]), own_msg(shm, i))
		end
		longest = math.max(longest, c[OWN.CLOSE_S])
	end
	return longest
end

local function all_gone(ids)
	return sys.wait_for(o.timeout, function()
		for _, id in ipairs(ids) do
			if posix.exists("/dev/ublkb" .. id) or posix.exists("/dev/ublkc" .. id) then
				return false
			end
		end
		return true
	end, 0.05)
end

------------------------------------------------------------------------
-- io-while-close

-- Forks n hammers on path over equal regions of size bytes; returns pids.
local function start_hammers(shm, n, path, size, tag)
	local region = math.floor(size / n / 4096) * 4096
	local pids = {}
	for i = 0, n - 1 do
		ffi.fill(shm + i * hammer.SLOT, hammer.SLOT)
		local cfg = {
			path = path, index = i, tag = tag + i, base = i * region, len = region,
			seed = o.seed + tag + i, ppid = ffi.C.getpid(),
		}
		pids[i + 1] = fork(hammer.run, cfg, shm)
	end
	return pids
end

-- Waits until each hammer is past `ops` IOs or no longer running.
local function hammers_busy(shm, n, ops)
	return sys.wait_for(o.timeout, function()
		for i = 0, n - 1 do
			local c = hammer.slot(shm, i)
			if c[hammer.STATE] <= hammer.RUNNING and c[hammer.OPS] < ops then
				return false
			end
		end
		return true
	end, 0.02)
end

-- Checks the hammers' exits; adds failures; returns IOs done and the
-- errnos that ended them ({ EIO = 7, ... }).
local function hammer_results(failures, where, shm, pids, statuses, accept)
	local ops, ends = 0, {}
	for i = 0, #pids - 1 do
		local c = hammer.slot(shm, i)
		ops = ops + c[hammer.OPS]
		local p = hammer.problem(shm, i, statuses[i + 1], accept)
		if p then
			failures[#failures + 1] = where .. ": " .. p
		end
		if c[hammer.STATE] == hammer.ENDED then
			local name = hammer.GONE[c[hammer.ERRNO]] or tostring(c[hammer.ERRNO])
			ends[name] = (ends[name] or 0) + 1
		end
	end
	return ops, ends
end

local function ends_text(ends)
	local parts = {}
	for k, v in pairs(ends) do
		parts[#parts + 1] = ("%s x%d"):format(k, v)
	end
	table.sort(parts)
	return #parts > 0 and table.concat(parts, ", ") or "none"
end

local function merge(into, ends)
	for k, v in pairs(ends) do
		into[k] = (into[k] or 0) + v
	end
end

-- The ways a round sets things up, in turn: the device served by this
-- process (its IO workers forked from it) or by a forked server process
-- (the workers forked from this one, so they share nothing with it);
-- closed with DEL_DEV or DEL_DEV_ASYNC.
local VARIANTS = {
	{ here = true, async = false },
	{ here = false, async = false },
	{ here = true, async = true },
	{ here = false, async = true },
}

-- Device served here: hammers forked from this process, then the close.
-- Returns close seconds, hammer pids and statuses, the path, or nil, error.
local function served_here(r, v, shm)
	local dev, err = luablk.add({ backend = o.backend, size = o.size, queues = math.min(2, sys.cpus()) })
	if not dev then
		return nil, "add: " .. err
	end
	local path = dev:path()
	local pids = start_hammers(shm, o.workers, path, o.size, r * 100)
	hammers_busy(shm, o.workers, 10)
	luablk.sleep(math.random() * 0.1)
	dog:arm(o.timeout, ("io-while-close round %d: close"):format(r), pids)
	local t = luablk.now()
	local ok, cerr = dev:close({ async = v.async })
	local close_s = luablk.now() - t
	local statuses = H.wait_all(pids)
	if not ok then
		return nil, "close: " .. cerr
	end
	return close_s, pids, statuses, path
end

-- Device served by a forked server process; hammers forked from here.
local function served_apart(r, v, shm, sshm, ctl, failures, where)
	local spids, ids = start_servers(sshm, ctl, 1, { backend = o.backend, size = o.size,
		queues = math.min(2, sys.cpus()) }, { async = v.async })
	if not spids then
		return nil, ids
	end
	local path = "/dev/ublkb" .. ids[1]
	local pids = start_hammers(shm, o.workers, path, o.size, r * 100)
	hammers_busy(shm, o.workers, 10)
	luablk.sleep(math.random() * 0.1)
	local everyone = { spids[1], unpack(pids) }
	dog:arm(o.timeout, ("io-while-close round %d: close"):format(r), everyone)
	ctl[GO] = luablk.now()
	local sstat = H.wait_all(spids)
	local statuses = H.wait_all(pids)
	local close_s = server_results(failures, where, sshm, spids, sstat)
	return close_s, pids, statuses, path
end

-- One round: a device, hammers, a close in the middle of their IO.
local function io_while_close_round(r, shm, sshm, ctl, st, failures)
	local v = VARIANTS[(r - 1) % #VARIANTS + 1]
	local where = ("io-while-close round %d (served %s, %s close)"):format(
		r, v.here and "here" or "by a child", v.async and "async" or "sync")
	local close_s, pids, statuses, path
	if v.here then
		close_s, pids, statuses, path = served_here(r, v, shm)
	else
		close_s, pids, statuses, path = served_apart(r, v, shm, sshm, ctl, failures, where)
	end
	if dog:disarm() then
		failures[#failures + 1] = where .. ": hung; the watchdog killed the workers"
	end
	if not close_s then
		failures[#failures + 1] = where .. ": " .. pids
		return false
	end
	if not (gone(path) and gone((path:gsub("ublkb", "ublkc")))) then
		failures[#failures + 1] = where .. ": " .. path .. " or its char device still exists"
	end
	-- Workers can only end by an IO error here: nobody tells them to stop.
	local ops, ends = hammer_results(failures, where, shm, pids, statuses, { [hammer.ENDED] = true })
	st.ops = st.ops + ops
	merge(st.ends, ends)
	local key = v.async and "async_close_max_s" or "sync_close_max_s"
	st[key] = math.max(st[key], close_s)
	return #failures == 0
end

local function io_while_close(res)
	local shm, sshm = sys.shm(o.workers * hammer.SLOT), sys.shm(256)
	local ctl = ffi.cast("double *", sys.shm(4096))
	local st = { rounds = 0, ops = 0, ends = {}, sync_close_max_s = 0, async_close_max_s = 0 }
	local t0 = luablk.now()
	for r = 1, o.rounds do
		progress("stress: io-while-close %d/%d", r, o.rounds)
		if not io_while_close_round(r, shm, sshm, ctl, st, res.failures) then
			break
		end
		st.rounds = r
	end
	progress_done()
	st.seconds = luablk.now() - t0
	res.io_while_close = st
	res.lines[#res.lines + 1] = ("io-while-close: %d rounds x %d workers (served here or by a child, sync or "
		.. "async close), %d IOs verified before the closes; close took up to %.2f s sync, %.2f s async; "
		.. "workers ended by %s"):format(
		st.rounds, o.workers, st.ops, st.sync_close_max_s, st.async_close_max_s, ends_text(st.ends))
end

------------------------------------------------------------------------
-- concurrent-close

-- A forked deleter: at GO, deletes device id with luablk.delete, or with
-- the `luablk del` command when cli is set. Exits 0 if the delete worked
-- or found the device already gone (its server won the race), else 1.
local function deleter(id, ctl, cli, ppid)
	wait_go(ctl, ppid)
	if cli then
		local status, _, err = proc.run({ exe, "del", tostring(id) })
		if status == 0 or (status == 1 and err:match("no ublk device")) then
			return 0
		end
		io.stderr:write(("stress: luablk del %d: exit %s: %s"):format(id, tostring(status), err))
		return 1
	end
	local ok, err = luablk.delete(id)
	if ok or err:match("^ENODEV") or err:match("^ENOENT") then
		return 0
	end
	io.stderr:write(("stress: luablk.delete(%d): %s\n"):format(id, err))
	return 1
end

local function concurrent_close(res)
	local failures = res.failures
	local shm, ctl = sys.shm(o.closers * 256), ffi.cast("double *", sys.shm(4096))
	local st = { rounds = 0, devices = 0, raced = 0, close_max_s = 0 }
	local opts = { backend = o.backend, size = o.size }
	for r = 1, o.close_rounds do
		local where = ("concurrent-close round %d"):format(r)
		progress("stress: concurrent-close %d/%d", r, o.close_rounds)
		local pids, ids = start_servers(shm, ctl, o.closers, opts)
		if not pids then
			failures[#failures + 1] = where .. ": " .. ids
			break
		end
		-- Every other device also gets a deleter; odd rounds use the CLI.
		local dels = {}
		for i = 1, #ids, 2 do
			dels[#dels + 1] = fork(deleter, ids[i], ctl, r % 2 == 1, ffi.C.getpid())
		end
		local everyone = { unpack(pids) }
		for _, p in ipairs(dels) do
			everyone[#everyone + 1] = p
		end
		dog:arm(o.timeout, where, everyone)
		ctl[GO] = luablk.now() + 0.2
		local statuses = H.wait_all(pids)
		local dstat = H.wait_all(dels)
		if dog:disarm() then
			failures[#failures + 1] = where .. ": hung; the watchdog killed the closers"
		end
		st.close_max_s = math.max(st.close_max_s, server_results(failures, where, shm, pids, statuses))
		for k, s in ipairs(dstat) do
			if s ~= 0 then
				failures[#failures + 1] = ("%s: the deleter of device %d exited %s"):format(where, ids[2 * k - 1], s)
			end
		end
		if not all_gone(ids) then
			failures[#failures + 1] = where .. ": device nodes remain after every close returned"
		end
		if #failures > 0 then
			break
		end
		st.rounds, st.devices, st.raced = r, st.devices + #ids, st.raced + #dels
	end
	progress_done()
	res.concurrent_close = st
	res.lines[#res.lines + 1] = ("concurrent-close: %d rounds, %d devices closed %d at a time, %d of them raced "
		.. "by DEL_DEV from another process; longest close %.2f s"):format(
		st.rounds, st.devices, o.closers, st.raced, st.close_max_s)
end

------------------------------------------------------------------------
-- many

local function many(res)
	local failures = res.failures
	local n = o.devices
	local have = sys.ublk_nodes().sys
	if n + have > sys.ublks_max() then
		failures[#failures + 1] = ("many: %d devices requested, %d exist, ublks_max is %d"):format(
			n, have, sys.ublks_max())
		return
	end
	local shm, ctl = sys.shm(n * 256), ffi.cast("double *", sys.shm(4096))
	local wshm = sys.shm(n * hammer.SLOT)
	local t0 = luablk.now()
	-- Small buffers: n devices' worth of IO buffers must fit the VM.
	local pids, ids = start_servers(shm, ctl, n, { backend = o.backend, size = o.size, depth = 16, max_io = 65536 })
	if not pids then
		failures[#failures + 1] = "many: " .. ids
		return
	end
	local up_s = luablk.now() - t0
	-- One writer per device, each with its device's id as its stamp; after
	-- 2 s each scans what it wrote, then keeps writing until its device goes.
	local writers = {}
	for i, id in ipairs(ids) do
		ffi.fill(wshm + (i - 1) * hammer.SLOT, hammer.SLOT)
		writers[i] = fork(hammer.run, {
			path = "/dev/ublkb" .. id, index = i - 1, tag = 1000 + id, base = 0,
			len = math.min(o.size, 4 * MiB), seed = o.seed + i, verify_after = 2, ppid = ffi.C.getpid(),
		}, wshm)
	end
	local everyone = { unpack(pids) }
	for _, p in ipairs(writers) do
		everyone[#everyone + 1] = p
	end
	dog:arm(o.timeout + 60, "many", everyone)
	sys.wait_for(o.timeout, function()
		for i = 0, n - 1 do
			if hammer.slot(wshm, i)[hammer.STATE] <= hammer.RUNNING then
				return false
			end
		end
		return true
	end, 0.1)
	local t1 = luablk.now()
	ctl[GO] = t1 + 0.2
	local statuses = H.wait_all(pids)
	local close_s = luablk.now() - t1 - 0.2
	local wstat = H.wait_all(writers)
	if dog:disarm() then
		failures[#failures + 1] = "many: hung; the watchdog killed servers and writers"
	end
	local longest = server_results(failures, "many", shm, pids, statuses)
	-- Each writer must have verified its blocks, then ended by its device
	-- going away.
	local ops, ends = 0, {}
	for i = 0, n - 1 do
		local c = hammer.slot(wshm, i)
		ops = ops + c[hammer.OPS]
		local p = hammer.problem(wshm, i, wstat[i + 1], { [hammer.ENDED] = true })
		if p then
			failures[#failures + 1] = "many: " .. p
		end
		local name = hammer.GONE[c[hammer.ERRNO]] or tostring(c[hammer.ERRNO])
		ends[name] = (ends[name] or 0) + 1
	end
	if not all_gone(ids) then
		failures[#failures + 1] = "many: device nodes remain after every close returned"
	end
	res.many = { devices = n, ops = ops, up_s = up_s, close_all_s = close_s, close_max_s = longest }
	res.lines[#res.lines + 1] = ("many: %d devices up in %.1f s, %d writer IOs, every written block checked; "
		.. "all closed in parallel under IO in %.2f s; writers ended by %s"):format(n, up_s, ops, close_s, ends_text(ends))
end

------------------------------------------------------------------------

validate()
math.randomseed(o.seed)
local res = { failures = {}, lines = {}, seed = o.seed }
local t0 = luablk.now()
local nodes0 = sys.ublk_nodes()
dog = watchdog.start(H, NAME, 60)
local fds0 = sys.fds()
local steps = {
	churn = churn, ["io-while-close"] = io_while_close, ["concurrent-close"] = concurrent_close, many = many,
}
for _, p in ipairs(PHASES) do
	if o.want[p] and #res.failures == 0 then
		steps[p](res)
	end
end
dog:stop()
-- The whole run leaves the machine and this process as it found them.
local nodes1 = sys.ublk_nodes()
if sys.nodes_text(nodes1) ~= sys.nodes_text(nodes0) then
	res.failures[#res.failures + 1] = ("ublk nodes at start: %s; at the end: %s (%s)"):format(
		sys.nodes_text(nodes0), sys.nodes_text(nodes1), table.concat(nodes1.names, " "))
end
for _, l in ipairs(fd_leaks(fds0, sys.fds())) do
	res.failures[#res.failures + 1] = "fd leaked over the run: " .. l
end
res.seconds = luablk.now() - t0
local lines = res.lines
res.lines = nil
lines[#lines + 1] = ("%.1f s in all, seed %d"):format(res.seconds, o.seed)
return H.report(NAME, o, res, lines)
