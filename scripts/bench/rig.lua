-- The machinery of part A (server.lua): servers run by `luablk add` in
-- their own processes (or ublksrv's, or a loop device), the CPU time of
-- their queue threads, and fio.
local cjson = require("cjson")
local ffi = require("ffi")
local luablk = require("luablk")
local posix = require("luablk.posix")
local proc = require("luablk.proc")

ffi.cdef("long sysconf(int name);")
local CLK_TCK = tonumber(ffi.C.sysconf(2)) -- _SC_CLK_TCK
local read_file = posix.read_file

local M = {}

-- The server's threads as { [tid] = comm }.
local function tasks(pid)
	local out = {}
	for tid in proc.check({ "ls", "/proc/" .. pid .. "/task" }):gmatch("%d+") do
		local comm = read_file(("/proc/%d/task/%s/comm"):format(pid, tid))
		if comm then
			out[tonumber(tid)] = comm:gsub("%s+$", "")
		end
	end
	return out
end

-- The queue threads: every thread but the main one and the kernel's
-- io_uring workers (iou-wrk-TID, working for thread TID).
local function queue_tids(pid, queues)
	local tids = {}
	for tid, comm in pairs(tasks(pid)) do
		if tid ~= pid and not comm:find("^iou%-") then
			tids[#tids + 1] = tid
		end
	end
	table.sort(tids)
	assert(#tids == queues, ("server %d has %d queue threads, expected %d"):format(pid, #tids, queues))
	return tids
end

-- CPU ticks of one thread as { user, sys }, 0 once it has gone.
local function ticks(pid, tid)
	local stat = read_file(("/proc/%d/task/%d/stat"):format(pid, tid))
	if not stat then
		return { 0, 0 }
	end
	local fields = {}
	for f in stat:match("%) (.*)$"):gmatch("%S+") do
		fields[#fields + 1] = f
	end
	-- utime and stime are fields 14 and 15 of stat; 12 and 13 after ")".
	return { tonumber(fields[12]), tonumber(fields[13]) }
end

-- Per-thread CPU ticks of the queue threads and of the io_uring workers
-- working for them, at this moment.
function M.queue_ticks(s)
	local t = {}
	for _, tid in ipairs(s.tids) do
		t[tid] = ticks(s.pid, tid)
	end
	for tid, comm in pairs(tasks(s.pid)) do
		local owner = tonumber(comm:match("^iou%-wrk%-(%d+)$"))
		if owner and t[owner] and not t[tid] then
			t[tid] = ticks(s.pid, tid)
		end
	end
	return t
end

-- CPU seconds (user+sys, and user alone) between two queue_ticks
-- snapshots (a worker that came and went between them is missed: workers
-- serve blocking work only, which the shipped backends do not ask for).
function M.cpu_between(a, b)
	local sum, user = 0, 0
	for tid, v in pairs(b) do
		local was = a[tid] or { 0, 0 }
		user = user + v[1] - was[1]
		sum = sum + v[1] - was[1] + v[2] - was[2]
	end
	return sum / CLK_TCK, user / CLK_TCK
end

-- CPUs for fio's jobs: job j goes to blk-mq queue j mod Q, on the last
-- CPUs of that queue's list (the queue thread is pinned to the first).
function M.job_cpus(name, jobs)
	local lists = {}
	for q = 0, 63 do
		local text = read_file(("/sys/block/%s/mq/%d/cpu_list"):format(name, q))
		if not text then
			break
		end
		local cpus = {}
		for part in text:gmatch("[^,%s]+") do
			local a, b = part:match("^(%d+)-(%d+)$")
			for c = tonumber(a or part), tonumber(b or part) do
				cpus[#cpus + 1] = c
			end
		end
		lists[#lists + 1] = cpus
	end
	if #lists == 0 then
		return nil
	end
	local out = {}
	for j = 0, jobs - 1 do
		local cpus = lists[j % #lists + 1]
		out[#out + 1] = cpus[math.max(1, #cpus - math.floor(j / #lists))]
	end
	return table.concat(out, ",")
end

local function set_scheduler(name)
	local f = io.open("/sys/block/" .. name .. "/queue/scheduler", "w")
	if f then
		f:write("none")
		f:close()
	end
end

-- Runs fio; returns IOPS and the IOs completed (reads and writes).
function M.fio(path, j, seconds, cpus)
	local argv = {
		"fio", "--name=bench", "--filename=" .. path, "--rw=" .. j.rw, "--bs=" .. j.bs,
		"--iodepth=" .. j.qd, "--numjobs=" .. j.jobs, "--ioengine=io_uring", "--direct=1",
		"--runtime=" .. seconds, "--time_based", "--group_reporting", "--output-format=json",
	}
	if cpus then
		argv[#argv + 1] = "--cpus_allowed=" .. cpus
		argv[#argv + 1] = "--cpus_allowed_policy=split"
	end
	local res = cjson.decode(proc.check(argv)).jobs[1]
	return res.read.iops + res.write.iops, res.read.total_ios + res.write.total_ios
end

-- Writes the whole device once, so that no first touch of a RAM disk's
-- page happens while measuring.
local function fill(path)
	proc.check({
		"fio", "--name=fill", "--filename=" .. path, "--rw=write", "--bs=1M", "--iodepth=8",
		"--ioengine=io_uring", "--direct=1", "--output-format=json",
	})
end

-- The queues a server with `luablk add` (or `ublk add`) arguments args
-- has.
function M.queues(args)
	for k, a in ipairs(args) do
		if a == "--queues" or (args.peer and a == "-q") then
			return tonumber(args[k + 1])
		end
	end
	return 1
end

-- Starts `BIN add BACKEND --size SIZE ARGS` (args = { BACKEND, ARGS... };
-- env: extra environment, e.g. the JIT log), waits for its device and
-- fills it; returns the server as { pid, path, name, tids }.
function M.start(bin, size, args, env)
	local out = os.tmpname()
	local fd = assert(posix.open(out, posix.O_WRONLY + posix.O_TRUNC))
	local argv = { bin, "add", args[1], "--size", size }
	for k = 2, #args do
		argv[#argv + 1] = args[k]
	end
	if env then
		table.insert(argv, 1, "env")
		table.insert(argv, 2, env)
	end
	local pid = assert(luablk.spawn(argv, { stdout = fd }))
	posix.close(fd)
	local path
	for _ = 1, 1500 do
		path = (read_file(out) or ""):match("(/dev/ublkb%d+)")
		if path or (read_file("/proc/" .. pid .. "/stat") or ") Z"):find("^[^)]*%) Z") then
			break
		end
		luablk.sleep(0.02)
	end
	os.remove(out)
	assert(path, "luablk add " .. table.concat(args, " ") .. " did not start")
	local name = path:match("ublkb%d+")
	set_scheduler(name)
	local s = { pid = pid, path = path, name = name, tids = queue_tids(pid, M.queues(args)) }
	fill(path)
	return s
end

-- Waits up to 5 s for a device node to appear.
local function wait_node(path)
	for _ = 1, 250 do
		if posix.exists(path) then
			return
		end
		luablk.sleep(0.02)
	end
	error(path .. " did not appear", 2)
end

-- Starts ublksrv, `DIR/ublk add ARGS` (args: the server's array part),
-- for a row compared with luablk. `ublk add` returns once its daemon has
-- started the device, and prints the device (dev id N) and the daemon's
-- pid; the daemon's queue threads are found as luablk's are (every thread
-- but the main one and the io_uring workers), so that its CPU per IO is
-- taken the same way. Nothing is filled: ublksrv's targets here serve
-- devices that keep no data.
function M.start_ublksrv(dir, args)
	local argv = { dir .. "/ublk", "add" }
	for _, a in ipairs(args) do
		argv[#argv + 1] = a
	end
	local out = proc.check(argv)
	local id, pid = out:match("dev id (%d+)"), tonumber(out:match("daemon pid (%d+)"))
	assert(id and pid, "ublk add printed no dev id and daemon pid: " .. out)
	local name = "ublkb" .. id
	wait_node("/dev/" .. name)
	set_scheduler(name)
	local tids = queue_tids(pid, M.queues(args))
	return { ublksrv = dir, id = id, pid = pid, path = "/dev/" .. name, name = name, tids = tids }
end

-- Attaches the kernel's loop driver to path with direct IO; a kernel
-- driver, so the server has no pid and no CPU figure.
function M.start_loop(path)
	local dev = proc.check({ "losetup", "--direct-io=on", "--find", "--show", path }):gsub("%s+$", "")
	local name = dev:match("[^/]+$")
	wait_node(dev)
	set_scheduler(name)
	return { loop = true, path = dev, name = name }
end

-- An NBD server for the scenarios that compare NBD clients: nbdkit's
-- memory plugin, size bytes, on unix socket sock. Returns it for M.stop.
function M.start_nbdkit(sock, size)
	local pidfile = sock .. ".pid"
	os.remove(sock)
	os.remove(pidfile)
	local pid = assert(luablk.spawn({ "nbdkit", "--exit-with-parent", "-f", "-U", sock, "-P", pidfile, "memory", size }))
	wait_node(pidfile)
	return { nbdkit = true, pid = pid, files = { sock, pidfile } }
end

-- The kernel's NBD driver on /dev/nbd0, connected to the export on unix
-- socket sock by nbd-client (ioctl setup: -L); a kernel driver, so no
-- pid and no CPU figure.
function M.start_nbd_kernel(sock)
	proc.check({ "nbd-client", "-L", "-b", "4096", "-u", sock, "/dev/nbd0" })
	set_scheduler("nbd0")
	return { nbd = true, path = "/dev/nbd0", name = "nbd0" }
end

function M.stop(s)
	if s.nbdkit then
		ffi.C.kill(s.pid, 15)
		luablk.wait(s.pid)
		for _, f in ipairs(s.files) do
			os.remove(f)
		end
	elseif s.nbd then
		proc.check({ "nbd-client", "-d", s.path })
	elseif s.loop then
		proc.check({ "losetup", "--detach", s.path })
	elseif s.ublksrv then
		proc.check({ s.ublksrv .. "/ublk", "del", "-n", s.id })
	else
		ffi.C.kill(s.pid, 15)
		luablk.wait(s.pid)
	end
end

return M
