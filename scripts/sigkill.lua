-- sigkill: the process serving a device is SIGKILLed in the middle of IO;
-- the kernel alone must clean up after it.
--
--   luablk run scripts/sigkill.lua [--rounds 20] [--backend NAME|FILE.lua]
--       [--size S] [--timeout 60] [--seed N] [--json]
--
-- Each round starts a server: odd rounds `luablk add ... --json` (this very
-- binary, through luablk.spawn), even rounds a forked child calling
-- luablk.add. Two IO workers forked from this process (which serves
-- nothing meanwhile, so they inherit nothing of the device) write, read
-- back and compare until their IO fails. Once both are busy, the server
-- gets SIGKILL: no close, no teardown, only the kernel's own cleanup when
-- the process's rings and char device fd are released.
--
-- Then, within --timeout: the server is dead of SIGKILL; /dev/ublkbN is
-- gone; every worker has exited, having seen an IO error and no wrong
-- data; no process is stuck in D state. On 6.12 the driver keeps the
-- device itself (dead, with /dev/ublkcN and its id) until someone sends
-- DEL_DEV, as it would for a recoverable device: the round checks that
-- state, runs `luablk del ID`, and requires the char node gone and the
-- machine's ublk node count back where it started. Last, a fresh device
-- is created here and must serve verified IO and close cleanly.
--
-- Rounds vary what is in flight: queues 1 or 2, and every other pair of
-- rounds a delay filter (2 ms per IO) so that the kill lands while IOs sit
-- in the backend rather than between them.
local here = (arg and arg[0] or ""):match("^(.*)/[^/]*$") or "."
package.path = here .. "/?.lua;" .. package.path

local ffi = require("ffi")
local luablk = require("luablk")
local posix = require("luablk.posix")
local proc = require("luablk.proc")
local H = require("lib.harness")
local sys = require("lib.stress_sys")
local hammer = require("lib.stress_hammer")

local NAME = "sigkill"
local MiB = 2 ^ 20
local WORKERS = 2

local o = H.options(NAME, {
	rounds = { "number", 20, "servers killed" },
	backend = { "value", "mem", "backend of every device" },
	size = { "size", 64 * MiB, "device size" },
	timeout = { "number", 60, "seconds allowed for each cleanup step" },
	seed = { "number", nil, "random seed; without it one is taken from the clock" },
}, arg)

local progress, progress_done, die = H.progress, H.progress_done, H.die

if type(o.rounds) ~= "number" or o.rounds % 1 ~= 0 or o.rounds < 1 or o.rounds > 1e6 then
	die("--rounds must be a whole number from 1 to 1000000")
end
if type(o.timeout) ~= "number" or o.timeout <= 0 then
	die("--timeout must be a positive number of seconds")
end
if o.size % 4096 ~= 0 or o.size < WORKERS * 64 * 1024 then
	die("--size must be a multiple of 4096 and at least 128K")
end
if o.seed and (o.seed % 1 ~= 0 or o.seed < 0 or o.seed >= 2 ^ 31) then
	die("--seed must be a whole number from 0 to 2147483647")
end
o.seed = o.seed or (os.time() * 1009 + ffi.C.getpid()) % 2 ^ 31
math.randomseed(o.seed)

local exe = sys.self_exe()
local ncpu = sys.cpus()

-- What round r runs: server kind, queues, filters.
local function plan(r)
	local p = {
		cli = r % 2 == 1,
		queues = (math.floor((r - 1) / 2) % 2 == 1) and math.min(2, ncpu) or 1,
		filters = (math.floor((r - 1) / 4) % 2 == 1) and { "delay:ms=2" } or {},
	}
	p.text = ("%s, %d queue%s%s"):format(p.cli and "luablk add" or "forked luablk.add", p.queues,
		p.queues > 1 and "s" or "", #p.filters > 0 and (", " .. p.filters[1]) or "")
	return p
end

-- A forked server: serves until it is killed. Publishes its id in ctl[0].
local function forked_server(ctl, opts)
	local dev, err = luablk.add(opts)
	if not dev then
		io.stderr:write(NAME, ": forked server: ", err, "\n")
		ctl[0] = -1
		return 1
	end
	ctl[0] = dev:id()
	while true do
		dev:wait(1000)
	end
end

-- Starts round p's server. Returns pid, id, or nil and a message.
local function start_server(p, ctl)
	if p.cli then
		local args = { o.backend, "--size", tostring(o.size), "--queues", tostring(p.queues) }
		for _, f in ipairs(p.filters) do
			args[#args + 1] = "--filter"
			args[#args + 1] = f
		end
		local h, err = sys.cli_add(args, o.timeout)
		if not h then
			return nil, err
		end
		os.remove(h.err)
		return h.pid, h.info.id
	end
	ctl[0] = -2
	local pid = sys.fork(H, forked_server, ctl, {
		backend = o.backend, size = o.size, queues = p.queues, filters = p.filters,
	})
	local id = sys.wait_for(o.timeout, function()
		return ctl[0] ~= -2 and ctl[0]
	end, 0.02)
	if not id or id < 0 then
		sys.kill(pid, sys.SIGKILL)
		luablk.wait(pid)
		return nil, "the forked server did not come up"
	end
	return pid, id
end

-- Forks the IO workers on path over halves of the device.
local function start_workers(shm, path, tag)
	local region = math.floor(o.size / WORKERS / 4096) * 4096
	local pids = {}
	for i = 0, WORKERS - 1 do
		ffi.fill(shm + i * hammer.SLOT, hammer.SLOT)
		pids[i + 1] = sys.fork(H, hammer.run, {
			path = path, index = i, tag = tag + i, base = i * region, len = region,
			seed = o.seed + tag + i, ppid = ffi.C.getpid(),
		}, shm)
	end
	return pids
end

local function busy(shm, ops)
	return sys.wait_for(o.timeout, function()
		for i = 0, WORKERS - 1 do
			local c = hammer.slot(shm, i)
			if c[hammer.STATE] <= hammer.RUNNING and c[hammer.OPS] < ops then
				return false
			end
		end
		return true
	end, 0.01)
end

-- Waits for the workers to exit; kills and names the ones that do not.
local function reap(pids, fail)
	local all = sys.wait_for(o.timeout, function()
		for _, pid in ipairs(pids) do
			if not sys.exited(pid) then
				return false
			end
		end
		return true
	end, 0.05)
	if not all then
		for i, pid in ipairs(pids) do
			local state, _, wchan = sys.proc_state(pid)
			if state and state ~= "Z" then
				fail(("IO worker %d (pid %d) still running after %d s: state %s in %s"):format(
					i - 1, pid, o.timeout, state, wchan))
				sys.kill(pid, sys.SIGKILL)
			end
		end
	end
	return H.wait_all(pids)
end

-- The kernel's part: block node gone, device left dead until DEL_DEV,
-- which `luablk del` then sends. Returns how the char node went.
local function cleanup(id, fail)
	local bpath, cpath = "/dev/ublkb" .. id, "/dev/ublkc" .. id
	if not sys.wait_for(o.timeout, function()
		return not posix.exists(bpath)
	end, 0.05) then
		fail(bpath .. " still exists " .. o.timeout .. " s after the kill")
	end
	if not posix.exists(cpath) then
		return "kernel"
	end
	-- The driver removes the block node (del_gendisk) a moment before it
	-- marks the device dead, so poll.
	local state = sys.wait_for(o.timeout, function()
		local info = luablk.query(id)
		return (not info or info.state == "dead") and "dead" or nil
	end, 0.05)
	if not state then
		local info = luablk.query(id)
		fail(("device %d is %s %d s after its server was killed, not dead"):format(id, info and info.state or "?", o.timeout))
	end
	local status, _, err = proc.run({ exe, "del", tostring(id) })
	if status ~= 0 then
		fail(("luablk del %d exited %s: %s"):format(id, tostring(status), err))
	end
	if not sys.wait_for(o.timeout, function()
		return not posix.exists(cpath)
	end, 0.05) then
		fail(cpath .. " still exists after luablk del")
	end
	return "del"
end

-- A fresh device served here must take verified IO and close cleanly.
local function fresh(p, shm, fail)
	local dev, err = luablk.add({ backend = o.backend, size = o.size, queues = p.queues })
	if not dev then
		return fail("a fresh device could not be created: " .. err)
	end
	local path = dev:path()
	local stop = ffi.cast("double *", shm + WORKERS * hammer.SLOT)
	stop[0] = 0
	ffi.fill(shm, hammer.SLOT)
	-- Forked from this serving process, and stopped before the close.
	local pid = sys.fork(H, hammer.run, {
		path = path, index = 0, tag = 9999, base = 0, len = math.min(o.size, 8 * MiB), seed = o.seed,
		verify_after = 0.3, stop = stop, ppid = ffi.C.getpid(),
	}, shm)
	sys.wait_for(o.timeout, function()
		return hammer.slot(shm, 0)[hammer.SCANS] > 0 or sys.exited(pid)
	end, 0.02)
	stop[0] = 1
	local status = luablk.wait(pid)
	local c = hammer.slot(shm, 0)
	local problem = hammer.problem(shm, 0, status, { [hammer.STOPPED] = true })
	local ok, cerr = dev:close()
	if problem or c[hammer.SCANS] == 0 then
		fail("the fresh device: " .. (problem or "no verified IO"))
	end
	if not ok then
		fail("closing the fresh device: " .. cerr)
	elseif not sys.wait_for(o.timeout, function()
		return not posix.exists(path)
	end) then
		fail(path .. " of the fresh device still exists after close")
	end
	return c[hammer.OPS]
end

-- One round; returns its record.
local function round(r, shm, ctl, base_nodes)
	local p = plan(r)
	local rec = { round = r, setup = p.text, failures = {} }
	local function fail(msg)
		rec.failures[#rec.failures + 1] = ("round %d (%s): %s"):format(r, p.text, msg)
	end
	local spid, id = start_server(p, ctl)
	if not spid then
		fail("server: " .. id)
		return rec
	end
	rec.id = id
	local pids = start_workers(shm, "/dev/ublkb" .. id, r * 10)
	if not busy(shm, 20) then
		fail("the IO workers did not get going within " .. o.timeout .. " s")
	end
	luablk.sleep(math.random() * 0.05)
	local t0 = luablk.now()
	sys.kill(spid, sys.SIGKILL)
	local sstatus = luablk.wait(spid)
	if sstatus ~= 128 + sys.SIGKILL then
		fail(("the server exited %s, not by SIGKILL"):format(tostring(sstatus)))
	end
	local statuses = reap(pids, fail)
	rec.reap_s = luablk.now() - t0
	for i = 0, WORKERS - 1 do
		local c = hammer.slot(shm, i)
		rec.ops = (rec.ops or 0) + c[hammer.OPS]
		rec.ends = (rec.ends and rec.ends .. "," or "") .. (hammer.GONE[c[hammer.ERRNO]] or tostring(c[hammer.ERRNO]))
		local problem = hammer.problem(shm, i, statuses[i + 1], { [hammer.ENDED] = true })
		if problem then
			fail(problem)
		end
	end
	rec.char_removed_by = cleanup(id, fail)
	rec.gone_s = luablk.now() - t0
	for _, s in ipairs(sys.stuck(2)) do
		fail("stuck: " .. sys.stuck_text(s))
	end
	local nodes = sys.ublk_nodes()
	if sys.nodes_text(nodes) ~= sys.nodes_text(base_nodes) then
		fail(("ublk nodes before: %s, now: %s (%s)"):format(sys.nodes_text(base_nodes), sys.nodes_text(nodes),
			table.concat(nodes.names, " ")))
	end
	rec.fresh_ops = fresh(p, shm, fail)
	return rec
end

local t0 = luablk.now()
local base_nodes = sys.ublk_nodes()
local shm = sys.shm(WORKERS * hammer.SLOT + 64)
local ctl = ffi.cast("double *", sys.shm(4096))
local result = { failures = {}, rounds = {}, seed = o.seed }
local totals = { ops = 0, fresh_ops = 0, by_del = 0, by_kernel = 0, reap_max = 0 }
for r = 1, o.rounds do
	progress("sigkill: round %d/%d", r, o.rounds)
	local rec = round(r, shm, ctl, base_nodes)
	result.rounds[r] = rec
	totals.ops = totals.ops + (rec.ops or 0)
	totals.fresh_ops = totals.fresh_ops + (rec.fresh_ops or 0)
	totals.by_del = totals.by_del + (rec.char_removed_by == "del" and 1 or 0)
	totals.by_kernel = totals.by_kernel + (rec.char_removed_by == "kernel" and 1 or 0)
	totals.reap_max = math.max(totals.reap_max, rec.reap_s or 0)
	for _, f in ipairs(rec.failures) do
		result.failures[#result.failures + 1] = f
	end
	rec.failures = nil
	if #result.failures > 0 then
		break
	end
end
progress_done()
result.seconds = luablk.now() - t0
result.totals = totals
local done = #result.rounds
return H.report(NAME, o, result, {
	("%d rounds in %.1f s: %d servers SIGKILLed under IO (%d worker IOs verified before the kills)"):format(
		done, result.seconds, done, totals.ops),
	("workers unblocked within %.1f s at most; no process left in D state; /dev/ublkbN removed by the kernel"):format(
		totals.reap_max),
	("/dev/ublkcN: removed by the kernel %d times, by luablk del of the dead device %d times"):format(
		totals.by_kernel, totals.by_del),
	("a fresh device served %d verified IOs after each kill; seed %d"):format(totals.fresh_ops, o.seed),
})
