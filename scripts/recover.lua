-- recover: a recoverable device's server is SIGKILLed in the middle of IO
-- and `luablk recover` takes over; the applications on top never notice.
--
--   luablk run scripts/recover.lua [--backends file,mem] [--size 64M]
--       [--kills 2] [--files 300] [--timeout 120] [--seed N] [--json]
--
-- For each backend (file: an image in the temporary directory; mem: the
-- RAM disk, whose memory is kept across the crash), a device is added with
-- `luablk add --recoverable --reissue` and two scenarios run against it:
--
-- fio  fio (io_uring, O_DIRECT, 4k random writes with verify=crc32c, then
--      its read-back verify) over the whole device; the server is killed
--      --kills times at evenly spread points of progress, and each time a
--      new server is started with `luablk recover` once the kernel has
--      quiesced the device. Then a second, verify-only fio pass re-reads
--      everything with one more kill in its middle. Both passes must end
--      with status 0: no IO error, no verify error.
-- ext4 ext4 on the device, mounted; a writer writes --files files, each
--      fsynced, while the server is killed --kills times and recovered.
--      The writer must see no error and finish; every file must read back
--      intact after the page cache is dropped; after unmounting,
--      e2fsck -fn must find nothing.
--
-- Each kill is checked: the block device stays, the device is quiesced,
-- and IO is waiting in it while no server runs. IO comes from fio and a
-- forked writer; this process serves nothing.
local here = (arg and arg[0] or ""):match("^(.*)/[^/]*$") or "."
package.path = here .. "/?.lua;" .. package.path

local ffi = require("ffi")
local cjson = require("cjson")
local luablk = require("luablk")
local posix = require("luablk.posix")
local proc = require("luablk.proc")
local H = require("lib.harness")
local sys = require("lib.stress_sys")

local NAME = "recover"
local MiB = 2 ^ 20
local BS = 4096

local o = H.options(NAME, {
	backends = { "value", "file,mem", "backends, comma-separated (file, mem)" },
	size = { "size", 64 * MiB, "device size (fio covers all of it)" },
	kills = { "number", 2, "server kills per fio pass and per ext4 run" },
	files = { "number", 300, "files the ext4 writer writes and fsyncs" },
	timeout = { "number", 120, "seconds allowed for each step" },
	seed = { "number", nil, "random seed for fio; without it one is taken from the clock" },
}, arg)

local backends = {}
for b in o.backends:gmatch("[^,]+") do
	if b ~= "file" and b ~= "mem" then
		H.die("--backends takes file and mem, not '" .. b .. "'")
	end
	backends[#backends + 1] = b
end
if o.size % MiB ~= 0 or o.size < 16 * MiB then
	H.die("--size must be a whole number of MiB, at least 16M")
end
H.whole(o.kills, "kills", 1, 100)
H.whole(o.files, "files", 10, 1e6)
if type(o.timeout) ~= "number" or o.timeout <= 0 then
	H.die("--timeout must be a positive number of seconds")
end
o.seed = o.seed or (os.time() * 1009 + ffi.C.getpid()) % 2 ^ 31
H.whole(o.seed, "seed", 0, 2 ^ 31 - 1)

local tmp = os.tmpname()
os.remove(tmp)
local queues = math.min(2, sys.cpus())

-- Runs fn(defer); the deferred cleanups run afterwards in reverse order,
-- whatever happened. Returns fn's results, or nil and the error.
local function with_cleanup(fn)
	local undo = {}
	local function defer(f)
		undo[#undo + 1] = f
	end
	local res = { xpcall(fn, debug.traceback, defer) }
	for i = #undo, 1, -1 do
		pcall(undo[i])
	end
	if not res[1] then
		return nil, tostring(res[2])
	end
	return unpack(res, 2)
end

-- A device's server: `luablk add` first, then each `luablk recover`.
local Server = {}
Server.__index = Server

local function backend_args(backend, img)
	if backend == "file" then
		return { "file", "--", "path=" .. img }
	end
	return { "mem" }
end

-- Adds a recoverable device; its server is killed on cleanup.
local function start(defer, backend, img)
	local args = backend_args(backend, img)
	local add = { args[1], "--size", tostring(o.size), "--queues", tostring(queues), "--recoverable", "--reissue" }
	for i = 2, #args do
		add[#add + 1] = args[i]
	end
	local h = assert(sys.cli_add(add, o.timeout))
	os.remove(h.err)
	local s = setmetatable({ pid = h.pid, id = h.info.id, path = h.info.path, args = args, kills = {} }, Server)
	defer(function()
		s:cleanup()
	end)
	return s
end

-- IO requests the block layer has in flight for the device (reads + writes).
function Server:inflight()
	local r, w = (sys.read_file("/sys/block/ublkb" .. self.id .. "/inflight") or ""):match("(%d+)%s+(%d+)")
	return (tonumber(r) or 0) + (tonumber(w) or 0)
end

-- Reads and writes the device has completed since it was added.
function Server:ios()
	local f = {}
	for n in (sys.read_file("/sys/block/ublkb" .. self.id .. "/stat") or ""):gmatch("%d+") do
		f[#f + 1] = tonumber(n)
	end
	return (f[1] or 0) + (f[5] or 0)
end

-- SIGKILL, the kernel's part checked, then `luablk recover`. app is the
-- pid of the program doing IO, which must still be waiting meanwhile.
function Server:kill_and_recover(app)
	-- Aim the kill at a moment with IO in flight (up to a second's wait).
	local k = { inflight = sys.wait_for(1, function()
		local n = self:inflight()
		return n > 0 and n
	end, 0.001) or 0 }
	sys.kill(self.pid, sys.SIGKILL)
	local status = luablk.wait(self.pid)
	assert(status == 128 + sys.SIGKILL, ("the server exited %s, not by SIGKILL"):format(tostring(status)))
	local t0 = luablk.now()
	local quiesced = sys.wait_for(o.timeout, function()
		local info = luablk.query(self.id)
		return info and info.state == "quiesced"
	end, 0.01)
	assert(quiesced, ("device %d is not quiesced %d s after its server was killed"):format(self.id, o.timeout))
	assert(posix.exists(self.path), self.path .. " went away with its server")
	-- Nothing completes, and nothing fails, while no server runs.
	local ios = self:ios()
	luablk.sleep(0.3)
	assert(self:ios() == ios, "IO completed while no server ran")
	assert(not sys.exited(app), "the application exited while no server ran")
	local args = { tostring(self.id) }
	for _, a in ipairs(self.args) do
		args[#args + 1] = a
	end
	local h = assert(sys.cli_serve("recover", args, o.timeout))
	os.remove(h.err)
	assert(h.info.id == self.id and h.info.state == "live", "luablk recover served the wrong device")
	self.pid = h.pid
	k.gap_s = luablk.now() - t0
	self.kills[#self.kills + 1] = k
	return k
end

function Server:stop()
	sys.kill(self.pid, sys.SIGTERM)
	local status = luablk.wait(self.pid)
	self.pid = nil
	assert(status == 0, ("the last server exited %s on SIGTERM"):format(tostring(status)))
	assert(sys.wait_for(o.timeout, function()
		return not posix.exists(self.path)
	end), self.path .. " still exists after SIGTERM")
end

function Server:cleanup()
	if self.pid then
		sys.kill(self.pid, sys.SIGKILL)
		luablk.wait(self.pid)
	end
	if luablk.query(self.id) then
		luablk.delete(self.id)
	end
end

-- Waits until progress() reaches `at`, or fails if pid exits first.
local function until_progress(pid, progress, at, what)
	local reached = sys.wait_for(o.timeout, function()
		return progress() >= at or sys.exited(pid)
	end, 0.005)
	assert(reached and progress() >= at, what .. " ended (or stalled) before the kill point; try a larger --size")
end

-- fio over the whole device; returns its pid and the JSON output path.
local function start_fio(path, verify_only)
	local out = tmp .. (verify_only and "-fio-verify.json" or "-fio.json")
	local argv = {
		"fio", "--name=recover", "--filename=" .. path, "--direct=1", "--ioengine=io_uring",
		"--rw=randwrite", "--bs=" .. BS, "--iodepth=16", "--size=" .. o.size,
		"--verify=crc32c", "--do_verify=1", "--verify_fatal=1", "--verify_state_save=0",
		"--randrepeat=0", "--randseed=" .. o.seed, "--output-format=json", "--output=" .. out,
	}
	if verify_only then
		argv[#argv + 1] = "--verify_only=1"
	end
	return assert(luablk.spawn(argv)), out
end

-- Waits for fio; returns its summary or raises with what went wrong.
local function finish_fio(pid, out, what)
	local status = luablk.wait(pid)
	local text = sys.read_file(out) or ""
	os.remove(out)
	local ok, res = pcall(cjson.decode, text:match("{.*}") or "")
	local job = ok and res.jobs and res.jobs[1]
	assert(status == 0 and job and job.error == 0,
		("%s: fio exited %s, error %s"):format(what, tostring(status), job and tostring(job.error) or "?"))
	return { read_ios = job.read.total_ios, write_ios = job.write.total_ios }
end

local function scenario_fio(defer, backend, img)
	local s = start(defer, backend, img)
	local total = 2 * o.size / BS -- the writes, then the verify reads
	local base = s:ios()
	local pid, out = start_fio(s.path, false)
	defer(function()
		sys.kill(pid, sys.SIGKILL)
	end)
	for k = 1, o.kills do
		until_progress(pid, function()
			return s:ios() - base
		end, total * k / (o.kills + 1), "fio")
		s:kill_and_recover(pid)
	end
	local pass1 = finish_fio(pid, out, "write and verify pass")
	base = s:ios()
	pid, out = start_fio(s.path, true)
	until_progress(pid, function()
		return s:ios() - base
	end, o.size / BS / 2, "fio --verify_only")
	s:kill_and_recover(pid)
	local pass2 = finish_fio(pid, out, "verify-only pass")
	s:stop()
	return s, {
		("fio: %d writes and %d verified reads, then %d verified reads"):format(
			pass1.write_ios, pass1.read_ios, pass2.read_ios),
	}
end

-- The bytes of file i: its number and the seed, repeated to 16 KiB.
local function file_bytes(i)
	local line = ("file %06d seed %d\n"):format(i, o.seed)
	return line:rep(math.ceil(16384 / #line)):sub(1, 16384)
end

ffi.cdef("int fsync(int fd);")

-- The writer: writes and fsyncs each file, counting them in done[0].
local function fs_writer(dir, done)
	local dfd = assert(posix.open(dir, posix.O_RDONLY))
	for i = 1, o.files do
		local fd = assert(posix.open(("%s/f%06d"):format(dir, i), posix.O_WRONLY + posix.O_CREAT + posix.O_TRUNC))
		local data = file_bytes(i)
		local buf = ffi.new("uint8_t[?]", #data)
		ffi.copy(buf, data, #data)
		assert(posix.pwrite(fd, buf, #data, 0) == #data, "short write")
		assert(ffi.C.fsync(fd) == 0 and ffi.C.fsync(dfd) == 0, "fsync failed")
		posix.close(fd)
		done[0] = i
	end
	posix.close(dfd)
	return 0
end

local function scenario_ext4(defer, backend, img)
	local s = start(defer, backend, img)
	local mnt = tmp .. "-mnt"
	proc.check({ "mkdir", "-p", mnt })
	defer(function()
		proc.run({ "rmdir", mnt })
	end)
	proc.check({ "mkfs.ext4", "-q", "-F", "-E", "lazy_itable_init=0,lazy_journal_init=0", s.path })
	local umount = H.mount(defer, s.path, mnt)
	local done = ffi.cast("volatile int64_t *", sys.shm(4096))
	local pid = sys.fork(H, fs_writer, mnt, done)
	defer(function()
		sys.kill(pid, sys.SIGKILL)
	end)
	for k = 1, o.kills do
		until_progress(pid, function()
			return tonumber(done[0])
		end, math.floor(o.files * k / (o.kills + 1)), "the ext4 writer")
		s:kill_and_recover(pid)
	end
	local status = luablk.wait(pid)
	assert(status == 0 and done[0] == o.files,
		("the ext4 writer exited %s after %d of %d files"):format(tostring(status), tonumber(done[0]), o.files))
	proc.check({ "sync" })
	proc.check({ "sh", "-c", "echo 3 > /proc/sys/vm/drop_caches" })
	local bad = 0
	for i = 1, o.files do
		if sys.read_file(("%s/f%06d"):format(mnt, i)) ~= file_bytes(i) then
			bad = bad + 1
		end
	end
	assert(bad == 0, ("%d of %d fsynced files do not read back intact"):format(bad, o.files))
	assert(umount())
	local fsck, fout = proc.run({ "e2fsck", "-fn", s.path })
	assert(fsck == 0, ("e2fsck -fn exited %d: %s"):format(fsck, (fout:gsub("\n", " | ")):sub(1, 300)))
	s:stop()
	return s, { ("ext4: %d files written and fsynced, all intact; e2fsck -fn clean"):format(o.files) }
end

local SCENARIOS = { { "fio", scenario_fio }, { "ext4", scenario_ext4 } }

local t0 = luablk.now()
local result = { failures = {}, scenarios = {}, seed = o.seed, size = o.size, queues = queues }
local lines = {}
for _, backend in ipairs(backends) do
	for _, sc in ipairs(SCENARIOS) do
		local name = sc[1] .. "-" .. backend
		H.progress("recover: %s", name)
		local t1 = luablk.now()
		local s, notes = with_cleanup(function(defer)
			local img
			if backend == "file" then
				img = tmp .. "-" .. name .. ".img"
				proc.check({ "truncate", "-s", tostring(o.size), img })
				defer(function()
					os.remove(img)
				end)
			end
			return sc[2](defer, backend, img)
		end)
		local rec = { name = name, seconds = luablk.now() - t1 }
		if not s then
			result.failures[#result.failures + 1] = name .. ": " .. tostring(notes):match("[^\n]*")
			io.stderr:write(name, ": ", tostring(notes), "\n")
		else
			rec.kills = s.kills
			local inflight, gap = 0, 0
			for _, k in ipairs(s.kills) do
				inflight = math.max(inflight, k.inflight)
				gap = math.max(gap, k.gap_s)
			end
			-- fio keeps 16 IOs going: a kill between IOs would prove little.
			if sc[1] == "fio" and inflight == 0 then
				result.failures[#result.failures + 1] = name .. ": no IO was in flight at any kill"
			end
			lines[#lines + 1] = ("%s: %s; %d kills with up to %d IOs in flight, recovered within %.1f s"):format(
				name, table.concat(notes, "; "), #s.kills, inflight, gap)
		end
		result.scenarios[#result.scenarios + 1] = rec
	end
end
H.progress_done()
result.seconds = luablk.now() - t0
lines[#lines + 1] = ("%.1f s, %d queues, seed %d"):format(result.seconds, queues, o.seed)
return H.report(NAME, o, result, lines)
