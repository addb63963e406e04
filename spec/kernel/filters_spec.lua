-- Filters on real devices: the fault flag flipped from outside (the
-- luablk fault command and signals to luablk add), luablk stats on a
-- running device, a trace replayed against another device, and the crash
-- filter's flush and freeze through the kernel.
local ffi = require("ffi")
local cjson = require("cjson")
local luablk = require("luablk")
local posix = require("luablk.posix")
local errno = require("luablk.errno")
local crash = require("luablk.filters.crash")
local u = require("kernel.util")

local bin = u.luablk_bin
local MiB = 2 ^ 20
local SIGTERM, SIGUSR1, SIGUSR2 = 15, 10, 12

-- `luablk add ARGS` in the background: pid, path and id once it is up.
local function start_add(args)
	local pid, path = u.start_add(args)
	assert.matches("^/dev/ublkb%d+$", path)
	return pid, path, tonumber(path:match("%d+$"))
end

local function stop(pid)
	assert.equal(0, ffi.C.kill(pid, SIGTERM))
	assert.equal(0, luablk.wait(pid))
end

-- Reads one block with O_DIRECT; returns nil or the errno.
local function read_errno(path, off)
	local fd = u.open_direct(path)
	local buf = posix.aligned(4096)
	local n, _, e = u.pread(fd, buf, 4096, off or 0)
	posix.close(fd)
	return (not n) and e or nil
end

describe("fault flag from outside", function()
	it("follows luablk fault ID on|off and SIGUSR1/SIGUSR2", function()
		local pid, path, id = start_add({ "mem", "--size", "16M", "--filter", "fault:flag=1,op=read" })
		assert.is_nil(read_errno(path))
		u.sh({ bin, "fault", tostring(id), "on" })
		assert.equal(errno.EIO, read_errno(path, 8192))
		assert.matches("fault flag on; 1 IOs failed", u.sh({ bin, "fault", tostring(id) }))
		u.sh({ bin, "fault", tostring(id), "off" })
		assert.is_nil(read_errno(path))

		assert.equal(0, ffi.C.kill(pid, SIGUSR1))
		assert.is_true(u.eventually(10, function()
			return read_errno(path) == errno.EIO
		end))
		assert.equal(0, ffi.C.kill(pid, SIGUSR2))
		assert.is_true(u.eventually(10, function()
			return read_errno(path) == nil
		end))

		local st = cjson.decode(u.sh({ bin, "fault", tostring(id), "--log", "--json" }))
		assert.is_false(st.flag)
		assert.equal(st.failed, #st.log)
		assert.equal(8192, st.log[1].off)
		assert.equal("read", st.log[1].op)
		stop(pid)
	end)

	it("refuses bad input with one line", function()
		local pid, path, id = start_add({ "mem", "--size", "16M" })
		local cases = {
			{ { bin, "fault", tostring(id), "on" }, 1, "no fault filter" },
			{ { bin, "fault", tostring(id), "maybe" }, 2, "expected on or off" },
			{ { bin, "fault" }, 2, "needs a device ID" },
			{ { bin, "stats", tostring(id) }, 1, "no stats filter" },
			{ { bin, "stats", "x" }, 2, "ID must be a whole number" },
		}
		for _, c in ipairs(cases) do
			local status, out, err = u.run(c[1])
			assert.equal(c[2], status, table.concat(c[1], " "))
			assert.equal("", out)
			assert.matches(c[3], err, 1, true)
			assert.equal(1, select(2, err:gsub("\n", "")), err)
		end
		-- SIGUSR1 without a fault filter is reported, not fatal
		assert.equal(0, ffi.C.kill(pid, SIGUSR1))
		u.sleep(0.2)
		assert.is_nil(read_errno(path))
		stop(pid)
	end)
end)

describe("luablk stats", function()
	it("shows counters and a live rate of a running device", function()
		local pid, path, id = start_add({ "mem", "--size", "16M", "--filter", "stats" })
		u.sh({ "dd", "if=/dev/zero", "of=" .. path, "bs=4k", "count=64", "oflag=direct", "status=none" })
		u.sh({ "dd", "if=" .. path, "of=/dev/null", "bs=4k", "count=32", "iflag=direct", "status=none" })
		local s = cjson.decode(u.sh({ bin, "stats", tostring(id), "--json", "--interval", "0.2" }))
		assert.equal(64, s.ops.write.count)
		assert.equal(64 * 4096, s.ops.write.bytes)
		assert.is_true(s.ops.read.count >= 32)
		assert.equal(0, s.ops.write.errors)
		assert.is_number(s.live.iops)
		local text = u.sh({ bin, "stats", tostring(id), "--interval", "0.2" })
		assert.matches("\nwrite +64 ", text)
		assert.matches("\nlive: [%d.]+ IOPS, [%d.]+ MiB/s, [%d.]+ errors/s %(over [%d.]+ s%)\n$", text)
		stop(pid)
	end)
end)

describe("trace and replay", function()
	local replay = u.root .. "/scripts/replay.lua"

	-- A device whose writes to [1M, 1M+4K) fail, optionally traced.
	local function device(trace)
		local filters = { ("fault:op=write,from=1M,to=%d"):format(MiB + 4096) }
		if trace then
			filters[2] = "trace:path=" .. trace
		end
		return u.add({ backend = "mem", size = 16 * MiB, filters = filters })
	end

	-- IO from a child: this process serves the device.
	local function workload(path)
		local pid = assert(luablk.fork())
		if pid == 0 then
			local fd = posix.open(path, posix.O_RDWR + posix.O_DIRECT)
			local buf = posix.aligned(65536)
			for i = 0, 15 do
				posix.pwrite_once(fd, buf, 4096 * (1 + i % 4), MiB + i * 16384)
				posix.pread_once(fd, buf, 8192, i * 8192)
			end
			posix.fdatasync(fd)
			luablk.exit(0)
		end
		assert.equal(0, luablk.wait(pid))
	end

	it("replays a trace with the same results, and reports where they differ", function()
		local trace = os.tmpname()
		local dev = device(trace)
		workload(dev:path())
		assert.is_true(dev:close())
		local lines = {}
		for l in io.lines(trace) do
			lines[#lines + 1] = cjson.decode(l)
		end
		assert.is_true(#lines >= 32, "trace has " .. #lines .. " lines")
		local failed = 0
		for _, l in ipairs(lines) do
			failed = failed + (l.res == -errno.EIO and 1 or 0)
		end
		assert.equal(1, failed)

		local same = device()
		local status, out = u.run({ bin, "run", replay, "--trace", trace, "--device", same:path(), "--json" })
		assert.equal(0, status, out)
		local r = cjson.decode(out)
		assert.equal(#lines, r.ios)
		assert.equal(0, r.mismatch_count)
		assert.is_true(same:close())

		local plain = u.add({ backend = "mem", size = 16 * MiB })
		status, out = u.run({ bin, "run", replay, "--trace", trace, "--device", plain:path() })
		assert.equal(1, status, out)
		assert.matches("replay: FAIL", out)
		assert.matches("write at 1048576%+4096: recorded EIO, replayed 4096 bytes", out)
		assert.is_true(plain:close())
		os.remove(trace)
	end)
end)

describe("crash filter on a device", function()
	it("advertises a write cache, makes flushed data durable, and freezes on crash", function()
		local img = os.tmpname()
		local dev = u.add({ backend = "file", args = { "path=" .. img }, size = 16 * MiB, filters = { "crash" } })
		local name = dev:path():match("[^/]+$")
		local function sysfs(attr)
			local f = assert(io.open("/sys/block/" .. name .. "/queue/" .. attr))
			local v = f:read("*l")
			f:close()
			return v
		end
		assert.equal("write back", sysfs("write_cache"))
		assert.equal("1", sysfs("fua"))
		local pid = assert(luablk.fork())
		if pid == 0 then
			local fd = posix.open(dev:path(), posix.O_RDWR + posix.O_DIRECT)
			local buf = posix.aligned(4096)
			ffi.fill(buf, 4096, 0x5a)
			posix.pwrite_once(fd, buf, 4096, 0)
			posix.fdatasync(fd) -- FLUSH: block 0 is durable
			ffi.fill(buf, 4096, 0xa5)
			posix.pwrite_once(fd, buf, 4096, 8192) -- stays volatile
			luablk.exit(0)
		end
		assert.equal(0, luablk.wait(pid))
		assert.is_true(crash.crash(dev:id()))
		assert.equal(errno.EIO, read_errno(dev:path()))
		assert.is_true(dev:close())
		local f = assert(io.open(img, "rb"))
		local data = f:read(12288)
		f:close()
		os.remove(img)
		assert.equal(("\x5a"):rep(4096), data:sub(1, 4096))
		assert.equal(("\0"):rep(4096), data:sub(8193, 12288))
	end)
end)
