-- Part A of `make bench`: what the server itself costs per IO on a real
-- ublk kernel. Each row of ROWS below is one measurement: a server
-- (`luablk add ARGS` as a separate process, or a kernel device such as
-- null_blk) driven by fio (io_uring, O_DIRECT, scheduler none). The cost
-- is the CPU time (user+sys) of the server's queue threads, read from
-- /proc/PID/task/TID/stat before and after fio, divided by the IOs fio
-- completed. IOPS are reported too, but in an emulated VM fio and the
-- kernel dominate them; CPU per IO is the figure that separates servers.
--
-- Noise control: the servers of one scenario run side by side, each row
-- is warmed up once (the device filled once, so that no first-touch page
-- fault lands in a measurement, then a short run of the row's own job),
-- and then the rows take turns, REPS times over, so that a slow spell of
-- the host hits a row and its baseline alike; each row reports its median.
-- fio's jobs are pinned to CPUs of the blk-mq queue they should reach,
-- away from the queue thread where the queue has more than one CPU.
--
-- Part C then runs each distinct Lua row once more with LUABLK_JIT_LOG
-- (lua/luablk/jitlog.lua) for trace aborts, NYI and heap per IO after the
-- warm-up. That pass is separate so that the log never weighs on A.
--
--   build/luablk run scripts/bench/server.lua [--quick] [--scenarios S1,S3]
--       [--guest NAME] [--json FILE]
--   build/luablk run scripts/bench/server.lua [--quick] [--scenarios ...]
--       --list-guests
-- (as root on a ublk kernel; scripts/bench/run starts it in the VM, once
-- per guest of GUESTS with --guest: the scenarios that want that guest.
-- --list-guests prints the guests the selected rows want, one a line:
-- NAME, vCPUs, "icount" or "smp", the kernel arguments, tab-separated.)
-- The rows of ublksrv run when PEER_UBLKSRV names a directory holding
-- ublksrv's `ublk` program; otherwise they are skipped and the report says
-- so. Nothing else needs ublksrv.
local here = arg[0]:match("^(.*)/[^/]*$") or "."
package.path = here .. "/?.lua;" .. package.path

local cjson = require("cjson")
local posix = require("luablk.posix")
local proc = require("luablk.proc")
local health = require("health")
local rig = require("rig")

local SIZE = "128M" -- small enough for five filled RAM disks in the guest

-- fio's job shape: read/write mix, block size, queue depth, jobs.
local function job(rw, bs, qd, jobs)
	return { rw = rw, bs = bs, qd = qd, jobs = jobs or 1 }
end

-- One row: scenario, case (unique, how baselines are named), the server,
-- fio's job, and options. The server is one of
--   { BACKEND, ARGS... }          `luablk add BACKEND --size SIZE ARGS...`
--   { peer = "ublksrv", ARGS... } `$PEER_UBLKSRV/ublk add ARGS...` (rig.lua)
--   { loop = PATH }               the kernel's loop driver over PATH, with
--                                 direct IO: IOPS only, no server CPU
--   { dev = PATH }                a kernel device as it is: IOPS only
--   { nbd = SOCK }                the kernel's NBD driver on the export at
--                                 unix socket SOCK: IOPS only
-- Options:
--   base    the case this row is compared with
--   metric  "cpu" (default: ratio of CPU per IO) or "iops" (ratio of IOPS)
--   max     target: ratio at most this;  above: ratio above this;
--   min     ratio at least this
--   quick   run in --quick
local function row(scenario, case, server, fio, o)
	o = o or {}
	return {
		scenario = scenario, case = case, server = server, fio = fio, base = o.base,
		metric = o.metric or "cpu", max = o.max, above = o.above, min = o.min, quick = o.quick,
	}
end

local NULLB = { dev = "/dev/nullb0" } -- the kernel's null_blk, built into the VM's kernel
local ROWS = {
	-- S1 null: the bare dispatch cost. Target: Lua null <= 1.10x C null
	-- at QD 16 and 128. null_blk shows what the kernel does with no server.
	row("S1", "c-null qd1", { "c-null" }, job("randread", "4k", 1)),
	row("S1", "lua null qd1", { "null" }, job("randread", "4k", 1), { base = "c-null qd1" }),
	row("S1", "null_blk qd1", NULLB, job("randread", "4k", 1)),
	row("S1", "c-null qd16", { "c-null" }, job("randread", "4k", 16), { quick = true }),
	row("S1", "lua null qd16", { "null" }, job("randread", "4k", 16),
		{ base = "c-null qd16", max = 1.10, quick = true }),
	row("S1", "null_blk qd16", NULLB, job("randread", "4k", 16), { quick = true }),
	row("S1", "c-null qd128", { "c-null" }, job("randread", "4k", 128)),
	row("S1", "lua null qd128", { "null" }, job("randread", "4k", 128), { base = "c-null qd128", max = 1.10 }),
	row("S1", "null_blk qd128", NULLB, job("randread", "4k", 128)),
	-- S2 data: RAM disks. Targets: Lua mem <= 1.15x C mem at 4k, <= 1.05x
	-- at 512k where copying dominates.
	row("S2", "c-mem randread 4k", { "c-mem" }, job("randread", "4k", 16)),
	row("S2", "lua mem randread 4k", { "mem" }, job("randread", "4k", 16),
		{ base = "c-mem randread 4k", max = 1.15 }),
	row("S2", "c-mem randread 64k", { "c-mem" }, job("randread", "64k", 16)),
	row("S2", "lua mem randread 64k", { "mem" }, job("randread", "64k", 16), { base = "c-mem randread 64k" }),
	row("S2", "c-mem randread 512k", { "c-mem" }, job("randread", "512k", 16)),
	row("S2", "lua mem randread 512k", { "mem" }, job("randread", "512k", 16),
		{ base = "c-mem randread 512k", max = 1.05 }),
	row("S2", "c-mem randwrite 4k", { "c-mem" }, job("randwrite", "4k", 16)),
	row("S2", "lua mem randwrite 4k", { "mem" }, job("randwrite", "4k", 16), { base = "c-mem randwrite 4k", max = 1.15 }),
	row("S2", "c-mem randwrite 64k", { "c-mem" }, job("randwrite", "64k", 16)),
	row("S2", "lua mem randwrite 64k", { "mem" }, job("randwrite", "64k", 16), { base = "c-mem randwrite 64k" }),
	row("S2", "c-mem randwrite 512k", { "c-mem" }, job("randwrite", "512k", 16)),
	row("S2", "lua mem randwrite 512k", { "mem" }, job("randwrite", "512k", 16),
		{ base = "c-mem randwrite 512k", max = 1.05 }),
	-- S3 queues: one job per queue; and 1 queue under the same two jobs as
	-- 2 queues, for the target: 2 queues complete more IOs per second.
	row("S3", "mem 1 queue, 1 job", { "mem" }, job("randread", "4k", 16, 1)),
	row("S3", "mem 1 queue, 2 jobs", { "mem" }, job("randread", "4k", 16, 2)),
	row("S3", "mem 2 queues, 2 jobs", { "mem", "--queues", "2" }, job("randread", "4k", 16, 2),
		{ base = "mem 1 queue, 2 jobs", metric = "iops", above = 1.0 }),
	row("S3", "mem 4 queues, 4 jobs", { "mem", "--queues", "4" }, job("randread", "4k", 16, 4),
		{ base = "mem 1 queue, 1 job", metric = "iops" }),
	-- S4 filters: each shipped filter present but doing nothing.
	row("S4", "mem", { "mem" }, job("randread", "4k", 16)),
	row("S4", "mem + fault:rate=0", { "mem", "--filter", "fault:rate=0" }, job("randread", "4k", 16), { base = "mem" }),
	row("S4", "mem + delay:ms=0", { "mem", "--filter", "delay:ms=0" }, job("randread", "4k", 16), { base = "mem" }),
	row("S4", "mem + stats", { "mem", "--filter", "stats" }, job("randread", "4k", 16), { base = "mem" }),
	row("S4", "mem + trace:path=/dev/null", { "mem", "--filter", "trace:path=/dev/null" }, job("randread", "4k", 16),
		{ base = "mem" }),
	-- S5 copy mode: --user-copy (a pread or pwrite of the data per IO on
	-- the char device) against the default (the kernel copies it).
	row("S5", "mem randread 4k", { "mem" }, job("randread", "4k", 16)),
	row("S5", "mem --user-copy randread 4k", { "mem", "--user-copy" }, job("randread", "4k", 16),
		{ base = "mem randread 4k" }),
	row("S5", "mem randwrite 4k", { "mem" }, job("randwrite", "4k", 16)),
	row("S5", "mem --user-copy randwrite 4k", { "mem", "--user-copy" }, job("randwrite", "4k", 16),
		{ base = "mem randwrite 4k" }),
	row("S5", "mem randread 512k", { "mem" }, job("randread", "512k", 16)),
	row("S5", "mem --user-copy randread 512k", { "mem", "--user-copy" }, job("randread", "512k", 16),
		{ base = "mem randread 512k" }),
	-- S8 delay: a timer per IO (an async filter) adds latency without
	-- capping throughput. Target: at QD32, more than 20x the IOPS of QD1;
	-- serial=1, one sleep at a time in the queue thread, shows the old cap.
	row("S8", "mem + delay:ms=1 qd1", { "mem", "--filter", "delay:ms=1" }, job("randread", "4k", 1)),
	row("S8", "mem + delay:ms=1 qd32", { "mem", "--filter", "delay:ms=1" }, job("randread", "4k", 32),
		{ base = "mem + delay:ms=1 qd1", metric = "iops", above = 20 }),
	row("S8", "mem + delay:ms=1,serial=1 qd32", { "mem", "--filter", "delay:ms=1,serial=1" },
		job("randread", "4k", 32), { base = "mem + delay:ms=1 qd1", metric = "iops" }),
}

-- S6 and S7: the async `file` backend with O_DIRECT over null_blk, against
-- ublksrv's loop target (the same job in C: io_uring on the backing device)
-- and, for IOPS, the kernel's loop driver and null_blk itself. In S6's
-- guest null_blk completes each IO by a timer 200 us later (GUESTS below),
-- so a server's IOPS show how many IOs it keeps in flight; S7's null_blk
-- completes at once, so what shows is the server's CPU per IO.
-- Targets: S6 luablk >= 0.9x ublksrv's IOPS at QD 32 and 128; S7 luablk's
-- CPU per IO <= 1.3x ublksrv's at QD 32.
local FILE = { "file", "--", "path=/dev/nullb0", "direct=1" }
local UBLKSRV_LOOP = { peer = "ublksrv", "-t", "loop", "-f", "/dev/nullb0" }
local KLOOP = { loop = "/dev/nullb0" }
for _, rw in ipairs({ "randread", "randwrite" }) do
	for _, qd in ipairs({ 1, 32, 128 }) do
		local j, sfx = job(rw, "4k", qd), (" %s qd%d"):format(rw, qd)
		local goal = qd > 1 and 0.9 or nil
		ROWS[#ROWS + 1] = row("S6", "ublksrv loop" .. sfx, UBLKSRV_LOOP, j)
		ROWS[#ROWS + 1] = row("S6", "lua file" .. sfx, FILE, j,
			{ base = "ublksrv loop" .. sfx, metric = "iops", min = goal })
		ROWS[#ROWS + 1] = row("S6", "kernel loop" .. sfx, KLOOP, j, { base = "ublksrv loop" .. sfx, metric = "iops" })
		ROWS[#ROWS + 1] = row("S6", "null_blk" .. sfx, NULLB, j)
	end
end
-- S7 adds, for where the CPU goes: the same backend with async=0 (one IO
-- at a time, plain pread/pwrite), and luablk's null servers (no backend
-- work at all: what the ublk side of a queue costs; on reads they fill
-- the buffer with zeros too).
local FILE_SYNC = { "file", "--", "path=/dev/nullb0", "direct=1", "async=0" }
for _, rw in ipairs({ "randread", "randwrite" }) do
	local j, sfx = job(rw, "4k", 32), (" %s qd32"):format(rw)
	local base, quick = "ublksrv loop" .. sfx, rw == "randread"
	ROWS[#ROWS + 1] = row("S7", base, UBLKSRV_LOOP, j, { quick = quick })
	ROWS[#ROWS + 1] = row("S7", "lua file" .. sfx, FILE, j, { base = base, max = 1.3, quick = quick })
	ROWS[#ROWS + 1] = row("S7", "lua file async=0" .. sfx, FILE_SYNC, j, { base = base })
	ROWS[#ROWS + 1] = row("S7", "c-null" .. sfx, { "c-null" }, j, { base = base })
	ROWS[#ROWS + 1] = row("S7", "lua null" .. sfx, { "null" }, j, { base = base })
	ROWS[#ROWS + 1] = row("S7", "kernel loop" .. sfx, KLOOP, j, { base = base, metric = "iops" })
	ROWS[#ROWS + 1] = row("S7", "null_blk" .. sfx, NULLB, j)
end

-- The guests scenarios run in when part A runs in a VM. scripts/bench/run
-- asks for the ones this run needs (--list-guests), boots each in turn and
-- runs its scenarios there (--guest NAME). cpus: vCPUs; icount: the guest
-- counts instructions (see scripts/bench/run); null_blk: module parameters
-- for the guest's kernel command line, checked before the rows run (on a
-- host's own kernel too, where they are not set for us).
-- S9 null against ublksrv's null target (`ublk add -t null`), the same
-- do-nothing server in C, at QD 16 and 128. Target: Lua null <= 1.0x
-- ublksrv null in CPU per IO. ublksrv's null leaves a read's buffer as it
-- is, while luablk's null servers zero-fill it, so reads cost them more;
-- writes compare the servers alone.
local UBLKSRV_NULL = { peer = "ublksrv", "-t", "null" }
for _, rw in ipairs({ "randread", "randwrite" }) do
	for _, qd in ipairs({ 16, 128 }) do
		local j, sfx = job(rw, "4k", qd), (" %s qd%d"):format(rw, qd)
		local base = "ublksrv null" .. sfx
		ROWS[#ROWS + 1] = row("S9", base, UBLKSRV_NULL, j)
		ROWS[#ROWS + 1] = row("S9", "lua null" .. sfx, { "null" }, j, { base = base, max = 1.0 })
		ROWS[#ROWS + 1] = row("S9", "c-null" .. sfx, { "c-null" }, j, { base = base })
	end
end

-- S10 NBD clients on one nbdkit memory export over a unix socket (started
-- for the scenario, NBD_SOCK): luablk's nbd backend against ublksrv's nbd
-- target and the kernel's NBD driver (nbd-client), 4k random reads and
-- writes at QD 1, 32 and 128. Target: luablk >= 0.9x ublksrv's IOPS at QD
-- 32 and 128; the kernel driver's ratio is reported.
local NBD_SOCK = "/tmp/luablk-bench-nbd.sock"
local LUA_NBD = { "nbd", "--", "nbd+unix:///?socket=" .. NBD_SOCK }
local UBLKSRV_NBD = { peer = "ublksrv", "-t", "nbd", "--unix", NBD_SOCK }
local KERNEL_NBD = { nbd = NBD_SOCK }
for _, rw in ipairs({ "randread", "randwrite" }) do
	for _, qd in ipairs({ 1, 32, 128 }) do
		local j, sfx = job(rw, "4k", qd), (" %s qd%d"):format(rw, qd)
		local base = "ublksrv nbd" .. sfx
		ROWS[#ROWS + 1] = row("S10", base, UBLKSRV_NBD, j)
		ROWS[#ROWS + 1] = row("S10", "lua nbd" .. sfx, LUA_NBD, j,
			{ base = base, metric = "iops", min = qd > 1 and 0.9 or nil })
		ROWS[#ROWS + 1] = row("S10", "kernel nbd" .. sfx, KERNEL_NBD, j, { base = "lua nbd" .. sfx, metric = "iops" })
	end
end
-- What a scenario needs running while its servers run.
local SCENARIO_SERVER = {
	S10 = function()
		return rig.start_nbdkit(NBD_SOCK, SIZE)
	end,
}

-- The program a scenario's own server needs.
local SCENARIO_TOOL = { S10 = "nbdkit" }

-- Runs fn() with scenario's own server, if it has one, running.
local function with_scenario_server(scenario, fn)
	local setup = SCENARIO_SERVER[scenario]
	local shared = setup and setup()
	local ok, err = pcall(fn)
	if shared then
		rig.stop(shared)
	end
	assert(ok, err)
end

local GUESTS = {
	{ name = "2cpu", cpus = 2, icount = true },
	-- S3 needs a CPU per queue, with the vCPUs running in parallel.
	{ name = "4cpu", cpus = 4 },
	-- S6: a device bound by its latency, not by anyone's CPU.
	{ name = "2cpu-nullb-200us", cpus = 2, icount = true, null_blk = { irqmode = "2", completion_nsec = "200000" } },
}
local GUEST_OF = { S3 = "4cpu", S6 = "2cpu-nullb-200us" } -- others: the first

local opts = { quick = false }
do
	local i = 1
	while arg[i] do
		local a = arg[i]
		if a == "--quick" then
			opts.quick = true
		elseif a == "--list-guests" then
			opts.list_guests = true
		elseif a == "--json" or a == "--scenarios" or a == "--guest" then
			i = i + 1
			if not arg[i] then
				io.stderr:write("server.lua: ", a, " needs a value\n")
				os.exit(2)
			end
			opts[a:sub(3):gsub("%-", "_")] = arg[i]
		else
			io.stderr:write("server.lua: unknown argument ", tostring(a), "\n")
			os.exit(2)
		end
		i = i + 1
	end
end

for sc in (opts.scenarios or ""):gmatch("[^,]+") do
	local known = false
	for _, r in ipairs(ROWS) do
		known = known or r.scenario == sc
	end
	if not known then
		io.stderr:write("server.lua: no scenario ", sc, " (S1 to S9)\n")
		os.exit(2)
	end
end

local REPS = opts.quick and 1 or 3
local RUNTIME = opts.quick and 2 or 4 -- seconds per measurement
local WARMUP = 1 -- seconds of the row's own job before it is measured
local bin = (os.getenv("LUABLK_ROOT") or ".") .. "/build/luablk"
local ncpu = tonumber((proc.check({ "nproc" }))) or 1

local function guest_of(r)
	local name = GUEST_OF[r.scenario] or GUESTS[1].name
	for _, g in ipairs(GUESTS) do
		if g.name == name then
			return g
		end
	end
end

-- The guest's kernel command line: its null_blk parameters.
local function guest_append(g)
	local out = {}
	for k, v in pairs(g.null_blk or {}) do
		out[#out + 1] = ("null_blk.%s=%s"):format(k, v)
	end
	table.sort(out)
	return table.concat(out, " ")
end

-- The rows this run measures, in order (all guests' with guest = nil).
local function selected(guest)
	local want
	if opts.scenarios then
		want = {}
		for s in opts.scenarios:gmatch("[^,]+") do
			want[s] = true
		end
	end
	local out = {}
	for _, r in ipairs(ROWS) do
		local guest_ok = not guest or guest_of(r).name == guest
		if guest_ok and (not want or want[r.scenario]) and (not opts.quick or r.quick) then
			out[#out + 1] = r
		end
	end
	return out
end

if opts.list_guests then
	local want = {}
	for _, r in ipairs(selected()) do
		want[guest_of(r).name] = true
	end
	for _, g in ipairs(GUESTS) do
		if want[g.name] then
			print(("%s\t%d\t%s\t%s"):format(g.name, g.cpus, g.icount and "icount" or "smp", guest_append(g)))
		end
	end
	os.exit(0)
end

-- How a row's server runs: "luablk", "peer" (ublksrv) or "kernel" (a
-- kernel driver: no server process, no CPU figure).
local function kind(r)
	if r.server.dev or r.server.loop or r.server.nbd then
		return "kernel"
	end
	return r.server.peer and "peer" or "luablk"
end

-- Why the rows of ublksrv cannot run here, if they cannot.
local PEER = os.getenv("PEER_UBLKSRV")
local function peer_missing()
	if not PEER or PEER == "" then
		return "PEER_UBLKSRV is not set"
	end
	local status = proc.run({ PEER .. "/ublk", "-v" })
	if status ~= 0 then
		return ("%s/ublk does not run (status %s)"):format(PEER, tostring(status))
	end
end

-- Why a guest's null_blk parameters are not in force here, if they are not.
local function nullb_differs(g)
	for k, v in pairs(g.null_blk or {}) do
		local have = (posix.read_file("/sys/module/null_blk/parameters/" .. k) or "?"):gsub("%s+$", "")
		if have ~= v then
			return ("null_blk.%s is %s, not %s"):format(k, have, v)
		end
	end
end

-- One timed run of row r on its server s (nil for a kernel device as it
-- is; a server without a pid, such as a loop device, has no CPU figure).
local function measure(r, s, seconds)
	local path = s and s.path or r.server.dev
	local cpus = s and rig.job_cpus(s.name, r.fio.jobs)
	local t0 = s and s.pid and rig.queue_ticks(s)
	local iops, ios = rig.fio(path, r.fio, seconds, cpus)
	local cpu, user
	if t0 then
		cpu, user = rig.cpu_between(t0, rig.queue_ticks(s))
	end
	local function per_io(v)
		return v and ios > 0 and v * 1e6 / ios or nil
	end
	-- user: the part of it in user mode (the rest is the kernel's, in the
	-- server's system calls and the task work it runs for them)
	return { iops = iops, ios = ios, cpu_us_per_io = per_io(cpu), user_us_per_io = per_io(user) }
end

local function median(list, key)
	local v = {}
	for _, x in ipairs(list) do
		v[#v + 1] = x[key]
	end
	if #v == 0 then
		return nil
	end
	table.sort(v)
	return #v % 2 == 1 and v[(#v + 1) / 2] or (v[#v / 2] + v[#v / 2 + 1]) / 2
end

local function server_key(r)
	return r.server.dev or (r.server.loop and "loop " .. r.server.loop) or (r.server.nbd and "nbd " .. r.server.nbd)
		or (r.server.peer and r.server.peer .. " " or "") .. table.concat(r.server, " ")
end

local function needs_cpus(r)
	return math.max(kind(r) ~= "kernel" and rig.queues(r.server) or 1, r.fio.jobs)
end

local function start(r, env)
	local k = kind(r)
	if r.server.loop then
		return rig.start_loop(r.server.loop)
	elseif r.server.nbd then
		return rig.start_nbd_kernel(r.server.nbd)
	elseif k == "peer" then
		return rig.start_ublksrv(PEER, r.server)
	end
	return rig.start(bin, SIZE, r.server, env)
end

-- Measures the rows of one scenario: servers side by side, turns taken.
local function run_scenario(rows)
	local servers, order = {}, {}
	for _, r in ipairs(rows) do
		local key = server_key(r)
		if not r.server.dev and not servers[key] then
			servers[key] = start(r)
			order[#order + 1] = key
		end
		r.runs = {}
		-- warm-up: the row's own job, not measured
		measure(r, servers[key], WARMUP)
	end
	for _ = 1, REPS do
		for _, r in ipairs(rows) do
			r.runs[#r.runs + 1] = measure(r, servers[server_key(r)], RUNTIME)
		end
	end
	for _, key in ipairs(order) do
		rig.stop(servers[key])
	end
	for _, r in ipairs(rows) do
		r.iops = median(r.runs, "iops")
		r.cpu_us_per_io = median(r.runs, "cpu_us_per_io")
		r.user_us_per_io = median(r.runs, "user_us_per_io")
	end
end

-- Part C: one Lua row with the JIT log on; the window starts after the
-- fill and a warm-up of the row's own job long enough for every queue to
-- serve WARM_IOS IOs (a side trace needs its exit taken a number of times,
-- and 512k IOs are few per second).
local WARM_IOS = 1000
local function jit_health(r)
	local dir = health.tmpdir()
	local s = rig.start(bin, SIZE, r.server, "LUABLK_JIT_LOG=" .. dir)
	for _ = 1, 20 do
		measure(r, s, WARMUP)
		if health.least_ios(dir) >= WARM_IOS then
			break
		end
	end
	local marks = health.mark(dir)
	measure(r, s, RUNTIME)
	rig.stop(s)
	local sum = health.summary(dir, marks)
	health.remove(dir)
	sum.case = r.case
	return sum
end

local rows = selected(opts.guest)
local by_case = {}
for _, r in ipairs(rows) do
	by_case[r.case] = r
end

-- Measure, scenario by scenario, what this machine can run.
local skipped, scenario_rows, scenarios, notes = {}, {}, {}, {}
local no_peer = peer_missing()
local noted = {}
local function note(text)
	if not noted[text] then
		noted[text] = true
		notes[#notes + 1] = text
	end
end
for _, r in ipairs(rows) do
	local dev = r.server.dev or r.server.loop or (r.server.nbd and "/dev/nbd0")
	local nullb = nullb_differs(guest_of(r))
	local tool = SCENARIO_TOOL[r.scenario]
	if tool and proc.run({ "sh", "-c", "command -v " .. tool }) ~= 0 then
		skipped[#skipped + 1] = ("%s %s (no %s)"):format(r.scenario, r.case, tool)
		note(("%s skipped: it needs %s (make deps installs it)"):format(r.scenario, tool))
	elseif r.server.nbd and proc.run({ "sh", "-c", "command -v nbd-client" }) ~= 0 then
		skipped[#skipped + 1] = r.case .. " (no nbd-client)"
	elseif dev and not posix.exists(dev) then
		skipped[#skipped + 1] = r.case .. " (no " .. dev .. ")"
	elseif nullb then
		skipped[#skipped + 1] = ("%s %s (%s)"):format(r.scenario, r.case, nullb)
		note(("%s skipped: it wants a null_blk with %s, and %s"):format(r.scenario, guest_append(guest_of(r)), nullb))
	elseif kind(r) == "peer" and no_peer then
		skipped[#skipped + 1] = ("%s %s (%s)"):format(r.scenario, r.case, no_peer)
		note(("ublksrv rows skipped: %s (a directory holding ublksrv's `ublk`)"):format(no_peer))
	elseif needs_cpus(r) > ncpu then
		skipped[#skipped + 1] = r.case .. (" (needs %d CPUs, %d here)"):format(needs_cpus(r), ncpu)
	else
		if not scenario_rows[r.scenario] then
			scenario_rows[r.scenario] = {}
			scenarios[#scenarios + 1] = r.scenario
		end
		table.insert(scenario_rows[r.scenario], r)
	end
end
for _, sc in ipairs(scenarios) do
	io.stderr:write("bench: ", sc, " (", #scenario_rows[sc], " rows)\n")
	with_scenario_server(sc, function()
		run_scenario(scenario_rows[sc])
	end)
end

-- Ratios and targets, as summary rows for the report.
local summary, detail = {}, {}
local function fmt_target(r)
	if r.max then
		return ("<= %.2fx"):format(r.max)
	elseif r.above then
		return ("> %.2fx"):format(r.above)
	elseif r.min then
		return (">= %.2fx"):format(r.min)
	end
end
for _, sc in ipairs(scenarios) do
	for _, r in ipairs(scenario_rows[sc]) do
		local b = r.base and by_case[r.base]
		local ratio
		if b and b.iops then
			if r.metric == "iops" then
				ratio = r.iops / b.iops
			elseif r.cpu_us_per_io and b.cpu_us_per_io and b.cpu_us_per_io > 0 then
				ratio = r.cpu_us_per_io / b.cpu_us_per_io
			end
		end
		local met
		if ratio and r.max then
			met = ratio <= r.max
		elseif ratio and r.above then
			met = ratio > r.above
		elseif ratio and r.min then
			met = ratio >= r.min
		end
		detail[#detail + 1] = {
			scenario = r.scenario, case = r.case, server = r.server.dev or r.server, kind = kind(r), fio = r.fio,
			runs = r.runs, iops = r.iops, cpu_us_per_io = r.cpu_us_per_io, user_us_per_io = r.user_us_per_io,
		}
		summary[#summary + 1] = {
			part = "A", scenario = r.scenario, case = r.case, iops = r.iops, cpu_us_per_io = r.cpu_us_per_io,
			ratio = ratio, ratio_of = ratio and (r.metric == "iops" and "IOPS" or "CPU/IO") or nil,
			baseline = r.base, target = fmt_target(r), measured = ratio and ("%.2fx"):format(ratio) or nil,
			met = met,
		}
	end
end

-- Part C on each distinct Lua server and fio job measured above.
local seen, jit_rows = {}, {}
for _, sc in ipairs(scenarios) do
	for _, r in ipairs(scenario_rows[sc]) do
		local j = r.fio
		local key = ("%s %s %s %d %d"):format(server_key(r), j.rw, j.bs, j.qd, j.jobs)
		if kind(r) == "luablk" and not r.server[1]:find("^c%-") and not seen[key] then
			seen[key] = true
			io.stderr:write("bench: JIT health of ", r.case, "\n")
			local s
			with_scenario_server(sc, function()
				s = jit_health(r)
			end)
			jit_rows[#jit_rows + 1] = s
			summary[#summary + 1] = {
				part = "C", scenario = "C in A", case = r.case, target = "0 aborts, 0 NYI, 0 B/IO",
				measured = ("%d aborts, %d NYI, %.2f B/IO"):format(s.aborts, s.nyi, s.heap_bytes_per_io or -1),
				met = health.met(s),
			}
		end
	end
end

local result = {
	server = detail,
	jit = jit_rows,
	summary = summary,
	skipped = skipped,
	notes = notes,
	settings = {
		reps = REPS, runtime_s = RUNTIME, warmup_s = WARMUP, size = SIZE, cpus = ncpu,
		vm = os.getenv("LUABLK_BENCH_VM"),
		kernel = (proc.check({ "uname", "-r" }):gsub("%s+$", "")),
	},
}
if #skipped > 0 then
	io.stderr:write("bench: skipped ", table.concat(skipped, "; "), "\n")
end
for _, n in ipairs(notes) do
	io.stderr:write("bench: note: ", n, "\n")
end
local text = cjson.encode(result)
if opts.json then
	local f = assert(io.open(opts.json, "w"))
	f:write(text, "\n")
	f:close()
else
	print(text)
end
