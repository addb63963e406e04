-- Helpers for the real-kernel specs. They run inside `luablk run`, in the
-- same process that serves the devices under test, so every helper
-- command starts through luablk.spawn (plain fork), never os.execute.
local ffi = require("ffi")
local luablk = require("luablk")
local posix = require("luablk.posix")

local M = {}

M.root = os.getenv("LUABLK_ROOT") or "."
M.luablk_bin = M.root .. "/" .. (os.getenv("LUABLK_BUILD") or "build") .. "/luablk"

local proc = require("luablk.proc")

-- Runs argv; returns exit status, stdout and stderr text.
M.run = proc.run

-- Runs argv and fails the test with its stderr unless it exits 0.
M.sh = proc.check

-- Polls fn every 20 ms for up to `seconds`; returns its first truthy value.
function M.eventually(seconds, fn)
	for _ = 1, seconds * 50 do
		local v = fn()
		if v then
			return v
		end
		ffi.C.usleep(20000)
	end
	return fn()
end

function M.sleep(seconds)
	ffi.C.usleep(math.floor(seconds * 1e6))
end

-- O_DIRECT IO on a block device. Returns bytes or nil, "ENAME: msg", errno.
function M.open_direct(path)
	return assert(posix.open(path, posix.O_RDWR + posix.O_DIRECT))
end

M.pwrite = posix.pwrite_once
M.pread = posix.pread_once

-- A page-aligned buffer filled with a pattern derived from seed.
function M.pattern(len, seed)
	local buf = posix.aligned(len)
	local x = seed
	for i = 0, len - 1 do
		x = (x * 1103515245 + 12345) % 2147483648
		buf[i] = bit.band(bit.rshift(x, 16), 0xff)
	end
	return buf
end

-- Adds a device and fails the test with the library's message if it can't.
function M.add(opts)
	local dev, err = luablk.add(opts)
	assert(dev, err)
	return dev
end

function M.gone(path)
	return M.eventually(10, function()
		return not posix.exists(path)
	end)
end

-- Starts `luablk add ARGS` in the background, run through the command
-- prefix `wrap` (such as setpriv ...) if given; returns its pid and its
-- first stdout line once the device is up (nil if it never printed one).
function M.start_add(args, wrap)
	return M.start_cli("add", args, wrap)
end

-- The same for any serving command (`luablk recover ARGS`).
function M.start_cli(cmd, args, wrap)
	local out = os.tmpname()
	local ofd = assert(posix.open(out, posix.O_WRONLY + posix.O_TRUNC))
	local argv = { unpack(wrap or {}) }
	argv[#argv + 1] = M.luablk_bin
	argv[#argv + 1] = cmd
	for _, a in ipairs(args) do
		argv[#argv + 1] = a
	end
	local pid = assert(luablk.spawn(argv, { stdout = ofd }))
	posix.close(ofd)
	local line = M.eventually(30, function()
		return (posix.read_file(out) or ""):match("^[^\n]+\n")
	end)
	os.remove(out)
	return pid, line and line:sub(1, -2)
end

M.fixtures = M.root .. "/spec/kernel/backends"

-- Whether the running kernel reports feature name (luablk features).
function M.kernel_has(name)
	for _, n in ipairs(assert(luablk.features())) do
		if n == name then
			return true
		end
	end
	return false
end

-- Runs fn(dir) with dir on a fresh 64 MiB ext4 (loop-mounted from a file
-- in /tmp), for tests that need a file system that allocates blocks and
-- writes pages back, unlike the guest's tmpfs /tmp. Cleans up, then
-- raises what fn raised.
function M.with_ext4(fn)
	local fs, mnt = os.tmpname(), os.tmpname()
	os.remove(mnt)
	M.sh({ "truncate", "-s", "64M", fs })
	M.sh({ "mkfs.ext4", "-q", "-F", "-E", "lazy_itable_init=0,lazy_journal_init=0", fs })
	M.sh({ "mkdir", mnt })
	M.sh({ "mount", "-o", "loop", fs, mnt })
	local ok, err = pcall(fn, mnt)
	M.run({ "umount", mnt })
	M.run({ "rmdir", mnt })
	os.remove(fs)
	assert(ok, err)
end

local OPS = { "reads", "writes", "flushes", "discards", "zeroes", "discarded", "zeroed", "lo", "hi", "lo_len" }

-- The counters of the ops.lua fixture backend of a device, as numbers.
function M.ops(dev)
	local n = ffi.cast("uint64_t *", dev:shared("ops"))
	local out = {}
	for i, name in ipairs(OPS) do
		out[name] = tonumber(n[i - 1])
	end
	return out
end

-- /sys/block/ublkbN/ATTR of a device, without the newline.
function M.sysfs(dev, attr)
	local text = posix.read_file(("/sys/block/ublkb%d/%s"):format(dev:id(), attr))
	return text and text:gsub("\n$", "")
end

-- fio crc32c write-then-verify over path, one job per queue; returns its
-- pid and a function that waits for it and checks that it passed. o:
-- depth (default 128), size per job (8M), jobs (2), loops, bs (4k).
function M.fio_verify(path, o)
	local out = os.tmpname()
	local argv = {
		"fio", "--name=async", "--filename=" .. path, "--direct=1", "--ioengine=io_uring",
		"--rw=randwrite", "--bs=" .. (o.bs or "4k"), "--iodepth=" .. (o.depth or 128), "--size=" .. (o.size or "8M"),
		"--numjobs=" .. (o.jobs or 2), "--offset_increment=" .. (o.size or "8M"),
		"--cpus_allowed=0-1", "--cpus_allowed_policy=split", "--group_reporting=1",
		"--verify=crc32c", "--do_verify=1", "--verify_fatal=1", "--verify_state_save=0",
		"--allow_file_create=0", "--output-format=json", "--output=" .. out,
	}
	if o.loops then
		argv[#argv + 1] = "--loops=" .. o.loops
	end
	local pid = assert(luablk.spawn(argv))
	return pid, function()
		local status = luablk.wait(pid)
		local text = posix.read_file(out) or ""
		os.remove(out)
		local ok, res = pcall(require("cjson").decode, text:match("{.*}") or "")
		local job = ok and res.jobs and res.jobs[1]
		assert(status == 0 and job and job.error == 0, ("fio exited %s: %s"):format(tostring(status), text))
		return job
	end
end

-- Stops a `luablk add` (SIGTERM), which must exit 0 and take its device.
function M.stop(pid, path)
	local check = require("luassert")
	ffi.C.kill(pid, 15)
	check.equal(0, luablk.wait(pid))
	check.is_true(M.gone(path))
end

return M
