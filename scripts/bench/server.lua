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
--       [--guest-cpus N] [--json FILE]
-- (as root on a ublk kernel; scripts/bench/run starts it in the VM, once
-- per guest size with --guest-cpus: the scenarios that want that size)
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

-- One row: scenario, case (unique, how baselines are named), the server
-- (arguments of `luablk add` after the backend, or { dev = PATH } for a
-- kernel device), fio's job, and options:
--   base    the case this row is compared with
--   metric  "cpu" (default: ratio of CPU per IO) or "iops" (ratio of IOPS)
--   max     target: ratio at most this;  above: target: ratio above this
--   quick   run in --quick
local function row(scenario, case, server, fio, o)
	o = o or {}
	return {
		scenario = scenario, case = case, server = server, fio = fio, base = o.base,
		metric = o.metric or "cpu", max = o.max, above = o.above, quick = o.quick,
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

-- The size of VM a scenario wants when it runs in one (--guest-cpus);
-- scenarios not named here want 2 vCPUs. S3 needs a CPU per queue, with
-- the vCPUs running in parallel (see scripts/bench/run).
local GUEST_CPUS = { S3 = 4 }

local opts = { quick = false }
do
	local i = 1
	while arg[i] do
		local a = arg[i]
		if a == "--quick" then
			opts.quick = true
		elseif a == "--json" or a == "--scenarios" or a == "--guest-cpus" then
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

local REPS = opts.quick and 1 or 3
local RUNTIME = opts.quick and 2 or 4 -- seconds per measurement
local WARMUP = 1 -- seconds of the row's own job before it is measured
local bin = (os.getenv("LUABLK_ROOT") or ".") .. "/build/luablk"
local ncpu = tonumber((proc.check({ "nproc" }))) or 1

-- The rows this run measures, in order.
local function selected()
	local want
	if opts.scenarios then
		want = {}
		for s in opts.scenarios:gmatch("[^,]+") do
			want[s] = true
		end
	end
	local guest = tonumber(opts.guest_cpus)
	local out = {}
	for _, r in ipairs(ROWS) do
		local size_ok = not guest or (GUEST_CPUS[r.scenario] or 2) == guest
		if size_ok and (not want or want[r.scenario]) and (not opts.quick or r.quick) then
			out[#out + 1] = r
		end
	end
	return out
end

-- One timed run of row r on its server s (nil for a kernel device).
local function measure(r, s, seconds)
	local path = s and s.path or r.server.dev
	local cpus = s and rig.job_cpus(s.name, r.fio.jobs)
	local t0 = s and rig.queue_ticks(s)
	local iops, ios = rig.fio(path, r.fio, seconds, cpus)
	local cpu = s and rig.cpu_between(t0, rig.queue_ticks(s))
	return { iops = iops, ios = ios, cpu_us_per_io = cpu and ios > 0 and cpu * 1e6 / ios or nil }
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
	return r.server.dev or table.concat(r.server, " ")
end

local function needs_cpus(r)
	return math.max(r.server.dev and 1 or rig.queues(r.server), r.fio.jobs)
end

-- Measures the rows of one scenario: servers side by side, turns taken.
local function run_scenario(rows)
	local servers, order = {}, {}
	for _, r in ipairs(rows) do
		local key = server_key(r)
		if not r.server.dev and not servers[key] then
			servers[key] = rig.start(bin, SIZE, r.server)
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

local rows = selected()
local by_case = {}
for _, r in ipairs(rows) do
	by_case[r.case] = r
end

-- Measure, scenario by scenario, what this machine can run.
local skipped, scenario_rows, scenarios = {}, {}, {}
for _, r in ipairs(rows) do
	if r.server.dev and not posix.exists(r.server.dev) then
		skipped[#skipped + 1] = r.case .. " (no " .. r.server.dev .. ")"
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
	run_scenario(scenario_rows[sc])
end

-- Ratios and targets, as summary rows for the report.
local summary, detail = {}, {}
local function fmt_target(r)
	if r.max then
		return ("<= %.2fx"):format(r.max)
	elseif r.above then
		return ("> %.2fx"):format(r.above)
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
		end
		detail[#detail + 1] = {
			scenario = r.scenario, case = r.case, server = r.server.dev or r.server, fio = r.fio,
			runs = r.runs, iops = r.iops, cpu_us_per_io = r.cpu_us_per_io,
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
		if not r.server.dev and not r.server[1]:find("^c%-") and not seen[key] then
			seen[key] = true
			io.stderr:write("bench: JIT health of ", r.case, "\n")
			local s = jit_health(r)
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
	settings = {
		reps = REPS, runtime_s = RUNTIME, warmup_s = WARMUP, size = SIZE, cpus = ncpu,
		vm = os.getenv("LUABLK_BENCH_VM"),
		kernel = (proc.check({ "uname", "-r" }):gsub("%s+$", "")),
	},
}
if #skipped > 0 then
	io.stderr:write("bench: skipped ", table.concat(skipped, "; "), "\n")
end
local text = cjson.encode(result)
if opts.json then
	local f = assert(io.open(opts.json, "w"))
	f:write(text, "\n")
	f:close()
else
	print(text)
end
