-- What the stress and sigkill harnesses look at from outside the library:
-- this process's fds and RSS, the ublk nodes on the machine, process states
-- from /proc, anonymous shared memory for forked helpers, and `luablk add`
-- run as a child. Nothing here uses os.execute or io.popen, so it is safe in
-- a process that serves a device.
local ffi = require("ffi")
local cjson = require("cjson")
local luablk = require("luablk")
local posix = require("luablk.posix")

-- Functions only: LuaJIT ignores a repeated function declaration, while a
-- repeated struct would be an error, so the dirent layout gets its own name.
ffi.cdef([[
void *opendir(const char *name);
void *readdir(void *dir);
int closedir(void *dir);
long readlink(const char *path, char *buf, size_t len);
void *mmap(void *addr, size_t len, int prot, int flags, int fd, int64_t off);
int kill(int pid, int sig);
int getppid(void);
int sched_setaffinity(int pid, size_t size, const void *mask);
struct stress_sys_dirent {
	uint64_t ino;
	int64_t off;
	unsigned short reclen;
	unsigned char type;
	char name[256];
};
]])

local C = ffi.C
local M = {}

M.SIGKILL, M.SIGTERM = 9, 15

-- Names in a directory (without . and ..), or an empty list if it is missing.
function M.listdir(path)
	local out = {}
	local d = C.opendir(path)
	if d == nil then
		return out
	end
	while true do
		local e = C.readdir(d)
		if e == nil then
			break
		end
		local name = ffi.string(ffi.cast("struct stress_sys_dirent *", e).name)
		if name ~= "." and name ~= ".." then
			out[#out + 1] = name
		end
	end
	C.closedir(d)
	return out
end

M.read_file = posix.read_file

function M.readlink(path)
	local buf = ffi.new("char[4096]")
	local n = C.readlink(path, buf, 4095)
	if n < 0 then
		return nil
	end
	return ffi.string(buf, n)
end

-- The luablk binary running us, so that children use the same build
-- (build/ or build-asan/).
function M.self_exe()
	return M.readlink("/proc/self/exe") or "luablk"
end

-- Open fds of this process (the directory listing's own fd included, which
-- is the same in every sample).
function M.fd_count()
	return #M.listdir("/proc/self/fd")
end

-- fd number -> what it points at, for naming a leak.
function M.fds()
	local out = {}
	for _, n in ipairs(M.listdir("/proc/self/fd")) do
		out[tonumber(n)] = M.readlink("/proc/self/fd/" .. n) or "?"
	end
	return out
end

-- Resident set size of this process in KiB.
function M.rss_kib()
	local s = M.read_file("/proc/self/status") or ""
	return tonumber(s:match("VmRSS:%s*(%d+)")) or 0
end

-- The ublk devices visible on the machine: block nodes, char nodes, and the
-- ids the driver knows (/sys/class/ublk-char holds one entry per device
-- until DEL_DEV, even after its block device is gone).
function M.ublk_nodes()
	local out = { block = 0, char = 0, sys = 0, names = {} }
	for _, n in ipairs(M.listdir("/dev")) do
		if n:match("^ublkb%d+$") then
			out.block = out.block + 1
			out.names[#out.names + 1] = n
		elseif n:match("^ublkc%d+$") then
			out.char = out.char + 1
			out.names[#out.names + 1] = n
		end
	end
	out.sys = #M.listdir("/sys/class/ublk-char")
	table.sort(out.names)
	return out
end

-- "3 block, 3 char, 3 in sysfs" for messages.
function M.nodes_text(n)
	return ("%d block, %d char, %d in sysfs"):format(n.block, n.char, n.sys)
end

function M.ublks_max()
	return tonumber(M.read_file("/sys/module/ublk_drv/parameters/ublks_max") or "") or 64
end

-- State letter (R, S, D, Z, ...), command name and wait channel of a
-- process, or nil if it is gone (reaped).
function M.proc_state(pid)
	local s = M.read_file("/proc/" .. pid .. "/stat")
	if not s then
		return nil
	end
	local comm, state = s:match("^%d+ %((.*)%) (%a)")
	local wchan = M.read_file("/proc/" .. pid .. "/wchan") or "?"
	return state, comm, wchan
end

-- Whether pid has exited: reaped already, or a zombie waiting for wait().
function M.exited(pid)
	local state = M.proc_state(pid)
	return state == nil or state == "Z" or state == "X"
end

-- Every process in uninterruptible sleep (state D): a list of
-- { pid, comm, wchan, stack }. /proc/PID/stack needs root, which we are.
function M.d_state()
	local out = {}
	for _, n in ipairs(M.listdir("/proc")) do
		local pid = tonumber(n)
		if pid then
			local state, comm, wchan = M.proc_state(pid)
			if state == "D" then
				local stack = (M.read_file("/proc/" .. pid .. "/stack") or ""):gsub("%s+", " ")
				out[#out + 1] = { pid = pid, comm = comm, wchan = wchan, stack = stack }
			end
		end
	end
	return out
end

-- D-state processes that stay in D with the same wait channel across
-- samples over `seconds`: transient D (a 9p read, a page fault) clears fast.
function M.stuck(seconds)
	local first = M.d_state()
	if #first == 0 then
		return first
	end
	local t0 = luablk.now()
	while luablk.now() - t0 < seconds do
		luablk.sleep(0.2)
		local still = {}
		for _, p in ipairs(first) do
			if M.proc_state(p.pid) == "D" then
				still[#still + 1] = p
			end
		end
		first = still
		if #first == 0 then
			break
		end
	end
	return first
end

function M.stuck_text(p)
	return ("pid %d (%s) in D state at %s; stack: %s"):format(p.pid, p.comm, p.wchan, p.stack:sub(1, 300))
end

-- Polls fn every `step` seconds until it returns a true value or `seconds`
-- pass; returns that value (or fn's last result).
function M.wait_for(seconds, fn, step)
	local t0 = luablk.now()
	while true do
		local v = fn()
		if v or luablk.now() - t0 >= seconds then
			return v
		end
		luablk.sleep(step or 0.02)
	end
end

-- Anonymous MAP_SHARED memory, zero-filled: forked children and the parent
-- see the same bytes, and it outlives any device (unlike dev:shared).
-- Never unmapped: the harnesses take a few pages once.
function M.shm(size)
	local p = C.mmap(nil, size, 3, 0x21, -1, 0) -- PROT_READ|WRITE, MAP_SHARED|ANONYMOUS
	if ffi.cast("intptr_t", p) == -1 then
		error("mmap of " .. size .. " shared bytes failed")
	end
	return ffi.cast("uint8_t *", p)
end

function M.kill(pid, sig)
	return C.kill(pid, sig) == 0
end

function M.parent_gone(ppid)
	return C.getppid() ~= ppid
end

-- Pins the calling process to one CPU (best effort: a failure just leaves
-- it where the scheduler puts it).
function M.pin(cpu)
	local mask = ffi.new("uint64_t[16]")
	mask[math.floor(cpu / 64)] = bit.lshift(1ULL, cpu % 64)
	C.sched_setaffinity(0, ffi.sizeof(mask), mask)
end

function M.cpus()
	local s = M.read_file("/sys/devices/system/cpu/online") or "0"
	local n = 0
	for a, b in s:gmatch("(%d+)%-?(%d*)") do
		n = n + (tonumber(b) or tonumber(a)) - tonumber(a) + 1
	end
	return math.max(n, 1)
end

-- Flushes stdio, then forks: a child that inherits unflushed output would
-- print it a second time when it exits.
function M.fork(H, fn, ...)
	io.stdout:flush()
	io.stderr:flush()
	return H.fork(fn, ...)
end

-- Starts `luablk add BACKEND --json ARGS...` from this very binary, with
-- stdout and stderr going to files. Returns a handle { pid, info, err }
-- once the device is up, or nil and the reason (stderr text) if the child
-- exited or printed nothing within `timeout` seconds.
function M.cli_add(args, timeout)
	return M.cli_serve("add", args, timeout)
end

-- The same for any command that serves a device in the foreground
-- (`luablk recover ID BACKEND`); --json goes before a "--" in args.
function M.cli_serve(cmd, args, timeout)
	local tmp = os.tmpname()
	local out, errf = tmp .. ".out", tmp .. ".err"
	os.remove(tmp)
	local flags = posix.O_WRONLY + posix.O_CREAT + posix.O_TRUNC
	local ofd = assert(posix.open(out, flags))
	local efd = assert(posix.open(errf, flags))
	local argv, placed = { M.self_exe(), cmd }, false
	for _, a in ipairs(args) do
		if a == "--" and not placed then
			argv[#argv + 1] = "--json"
			placed = true
		end
		argv[#argv + 1] = a
	end
	if not placed then
		argv[#argv + 1] = "--json"
	end
	local pid, err = luablk.spawn(argv, { stdout = ofd, stderr = efd })
	posix.close(ofd)
	posix.close(efd)
	if not pid then
		os.remove(out)
		os.remove(errf)
		return nil, err
	end
	local line = M.wait_for(timeout or 60, function()
		local s = M.read_file(out) or ""
		return s:match("^([^\n]*)\n") or (M.exited(pid) and "")
	end)
	os.remove(out)
	local ok, info = pcall(cjson.decode, line or "")
	if not ok or type(info) ~= "table" then
		M.kill(pid, M.SIGKILL)
		luablk.wait(pid)
		local text = (M.read_file(errf) or ""):gsub("%s+$", "")
		os.remove(errf)
		return nil, ("luablk %s %s: %s"):format(cmd, table.concat(args, " "), text ~= "" and text or "no device line")
	end
	return { pid = pid, info = info, err = errf }
end

-- The stderr a cli_add child wrote so far (trimmed), and removes the file.
function M.cli_stderr(h)
	local text = (M.read_file(h.err) or ""):gsub("%s+$", "")
	os.remove(h.err)
	return text
end

return M
