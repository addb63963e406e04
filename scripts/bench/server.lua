-- Part A of `make bench`: what the server itself costs per IO on a real
-- ublk kernel. For each scenario it starts `luablk add` as a separate
-- process, drives the device with fio (io_uring, O_DIRECT, scheduler
-- none), and divides the server's CPU time (utime+stime of all its
-- threads, from /proc/PID/stat) by the IOs fio completed. IOPS are
-- reported too, but under an emulated CPU fio and the kernel dominate
-- them; CPU per IO is the figure that separates servers.
--
--   build/luablk run scripts/bench/server.lua [--quick] [--json FILE]
-- (run as root on a ublk kernel; scripts/bench/run starts it in the VM)
local cjson = require("cjson")
local ffi = require("ffi")
local luablk = require("luablk")
local posix = require("luablk.posix")
local proc = require("luablk.proc")

ffi.cdef("long sysconf(int name);")
local CLK_TCK = tonumber(ffi.C.sysconf(2)) -- _SC_CLK_TCK

local quick, json_path = false, nil
local i = 1
while arg[i] do
	if arg[i] == "--quick" then
		quick = true
	elseif arg[i] == "--json" then
		i = i + 1
		json_path = arg[i]
	else
		io.stderr:write("server.lua: unknown argument ", tostring(arg[i]), "\n")
		os.exit(2)
	end
	i = i + 1
end

local RUNTIME = quick and 3 or 10
local bin = (os.getenv("LUABLK_ROOT") or ".") .. "/build/luablk"

local read_file = posix.read_file

-- CPU seconds used so far by process pid, all threads (alive or exited).
local function cpu_seconds(pid)
	local stat = assert(read_file("/proc/" .. pid .. "/stat"), "server exited")
	local after = stat:match("%) (.*)$")
	local fields = {}
	for f in after:gmatch("%S+") do
		fields[#fields + 1] = f
	end
	-- utime and stime are fields 14 and 15 of stat; 12 and 13 after ")".
	return (tonumber(fields[12]) + tonumber(fields[13])) / CLK_TCK
end

-- Starts `luablk add ARGS` in the background; returns pid and the path.
local function start_server(args)
	local out = os.tmpname()
	local fd = assert(posix.open(out, posix.O_WRONLY + posix.O_TRUNC))
	local argv = { bin, "add" }
	for _, a in ipairs(args) do
		argv[#argv + 1] = a
	end
	local pid = assert(luablk.spawn(argv, { stdout = fd }))
	posix.close(fd)
	local path
	for _ = 1, 1500 do
		path = (read_file(out) or ""):match("(/dev/ublkb%d+)")
		if path then
			break
		end
		luablk.sleep(0.02)
	end
	os.remove(out)
	assert(path, "luablk add " .. table.concat(args, " ") .. " did not start")
	local f = io.open("/sys/block/" .. path:match("ublkb%d+") .. "/queue/scheduler", "w")
	if f then
		f:write("none")
		f:close()
	end
	return pid, path
end

local function stop_server(pid)
	ffi.C.kill(pid, 15)
	luablk.wait(pid)
end

-- Runs fio on path; returns IOPS and the number of IOs completed.
local function fio(path, rw, bs, qd, jobs)
	local out = proc.check({
		"fio", "--name=bench", "--filename=" .. path, "--rw=" .. rw, "--bs=" .. bs,
		"--iodepth=" .. qd, "--numjobs=" .. jobs, "--ioengine=io_uring", "--direct=1",
		"--runtime=" .. RUNTIME, "--time_based", "--group_reporting", "--output-format=json",
	})
	local job = cjson.decode(out).jobs[1]
	local side = rw:find("write") and job.write or job.read
	return side.iops, side.total_ios
end

-- One measurement: a server with `args`, fio with the rest.
local function measure(args, rw, bs, qd, jobs)
	local pid, path = start_server(args)
	local c0 = cpu_seconds(pid)
	local iops, ios = fio(path, rw, bs, qd, jobs)
	local cpu = cpu_seconds(pid) - c0
	stop_server(pid)
	return { iops = iops, ios = ios, cpu_us_per_io = ios > 0 and cpu * 1e6 / ios or 0 }
end

local rows = {}
local function report(scenario, label, base_label, r, base)
	local row = {
		scenario = scenario,
		case = label,
		baseline = base_label,
		iops = r.iops,
		cpu_us_per_io = r.cpu_us_per_io,
		ratio = base and r.cpu_us_per_io / base.cpu_us_per_io or nil,
	}
	rows[#rows + 1] = row
	print(
		("| %s | %s | %.0f | %.2f | %s |"):format(
			scenario,
			label,
			r.iops,
			r.cpu_us_per_io,
			row.ratio and ("%.2f vs %s"):format(row.ratio, base_label) or "baseline"
		)
	)
	io.stdout:flush()
end

local SIZE = "1G"
print("| scenario | case | IOPS | server CPU us/IO | ratio |")
print("|---|---|---|---|---|")

-- S1: null, 4k randread at several queue depths; kernel null_blk for IOPS.
for _, qd in ipairs(quick and { 16 } or { 1, 16, 128 }) do
	local c = measure({ "c-null", "--size", SIZE }, "randread", "4k", qd, 1)
	report("S1 null", "c-null qd" .. qd, nil, c)
	report("S1 null", "lua null qd" .. qd, "c-null", measure({ "null", "--size", SIZE }, "randread", "4k", qd, 1), c)
	if luablk.execute({ "test", "-b", "/dev/nullb0" }) == 0 then
		local iops = fio("/dev/nullb0", "randread", "4k", qd, 1)
		print(("| S1 null | kernel null_blk qd%d | %.0f | - | - |"):format(qd, iops))
		rows[#rows + 1] = { scenario = "S1 null", case = "null_blk qd" .. qd, iops = iops }
	end
end

-- S2: mem, read and write, small to copy-bound sizes, QD 16.
for _, rw in ipairs({ "randread", "randwrite" }) do
	for _, bs in ipairs(quick and { "4k" } or { "4k", "64k", "512k" }) do
		local c = measure({ "c-mem", "--size", SIZE }, rw, bs, 16, 1)
		local label = rw .. " " .. bs
		report("S2 mem", "c-mem " .. label, nil, c)
		report("S2 mem", "lua mem " .. label, "c-mem", measure({ "mem", "--size", SIZE }, rw, bs, 16, 1), c)
	end
end

-- S3: queues with one fio job per queue.
local ncpu = tonumber((proc.check({ "nproc" }))) or 1
local one
for _, q in ipairs({ 1, 2, 4 }) do
	if q <= ncpu then
		local r = measure({ "mem", "--size", SIZE, "--queues", tostring(q) }, "randread", "4k", 16, q)
		one = one or r
		report("S3 queues", ("mem %d queues, %d jobs"):format(q, q), "1 queue", r, q > 1 and one or nil)
	end
end

-- S4: each filter present but doing nothing, against mem alone.
local base = measure({ "mem", "--size", SIZE }, "randread", "4k", 16, 1)
report("S4 filters", "mem", nil, base)
for _, f in ipairs({ "fault:rate=0", "delay:ms=0", "stats", "trace:path=/dev/null" }) do
	local r = measure({ "mem", "--size", SIZE, "--filter", f }, "randread", "4k", 16, 1)
	report("S4 filters", "mem + " .. f, "mem", r, base)
end

-- S5: USER_COPY (a pread or pwrite per IO on the char device) against the
-- default mode (the kernel copies into the tag buffers).
for _, rw in ipairs({ "randread", "randwrite" }) do
	for _, bs in ipairs(quick and { "4k" } or { "4k", "64k", "512k" }) do
		local label = rw .. " " .. bs
		local plain = measure({ "mem", "--size", SIZE }, rw, bs, 16, 1)
		report("S5 user copy", "mem " .. label, nil, plain)
		local uc = measure({ "mem", "--size", SIZE, "--user-copy" }, rw, bs, 16, 1)
		report("S5 user copy", "mem --user-copy " .. label, "mem", uc, plain)
	end
end

if json_path then
	local f = assert(io.open(json_path, "w"))
	f:write(cjson.encode({ server = rows, runtime_s = RUNTIME }), "\n")
	f:close()
end
