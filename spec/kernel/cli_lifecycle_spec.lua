-- The luablk command as users run it: add in the foreground, list, del,
-- features, signals, and bad input that must leave nothing behind.
local ffi = require("ffi")
local cjson = require("cjson")
local luablk = require("luablk")
local posix = require("luablk.posix")
local u = require("kernel.util")

local bin = u.luablk_bin

local start_add = u.start_add

local function ids()
	return assert(luablk.list())
end

describe("luablk add", function()
	it("prints the device as JSON, shows in list, and tears down on SIGTERM", function()
		local pid, line = start_add({ "mem", "--size", "64M", "--json" })
		assert.is_string(line)
		local info = cjson.decode(line)
		assert.matches("^/dev/ublkb%d+$", info.path)
		assert.equal(64 * 2 ^ 20, info.size)
		local listed = cjson.decode(u.sh({ bin, "list", "--json" }))
		local mine
		for _, d in ipairs(listed) do
			if d.id == info.id then
				mine = d
			end
		end
		assert.is_table(mine, "device not in list --json")
		assert.equal("live", mine.state)
		assert.equal(pid, mine.pid)
		assert.equal(1, mine.queues)
		assert.equal(128, mine.depth)
		assert.equal(64 * 2 ^ 20, mine.size)
		u.sh({ "dd", "if=/dev/zero", "of=" .. info.path, "bs=64k", "count=16", "oflag=direct", "status=none" })
		assert.equal(0, ffi.C.kill(pid, 15))
		assert.equal(0, luablk.wait(pid))
		assert.is_true(u.gone(info.path))
		-- and a second device can be created afterwards
		local pid2, line2 = start_add({ "mem", "--size", "64M" })
		assert.matches("^/dev/ublkb%d+$", line2)
		assert.equal(0, ffi.C.kill(pid2, 15))
		assert.equal(0, luablk.wait(pid2))
	end)

	it("prints the path as the first line, and SIGINT also tears down", function()
		local pid, line = start_add({ "null", "--size", "1G" })
		assert.matches("^/dev/ublkb%d+$", line)
		assert.equal(0, ffi.C.kill(pid, 2))
		assert.equal(0, luablk.wait(pid))
		assert.is_true(u.gone(line))
	end)

	it("exits when the device is deleted with luablk del", function()
		local pid, line = start_add({ "c-mem", "--size", "16M" })
		local id = line:match("(%d+)$")
		u.sh({ bin, "del", id })
		assert.equal(0, luablk.wait(pid))
		assert.is_true(u.gone(line))
	end)

	it("is left serving by luablk del --safe while it is open, where the kernel can refuse", function()
		local safe = u.kernel_has("safe_stop_dev")
		local pid, line = start_add({ "mem", "--size", "16M" })
		local id = line:match("(%d+)$")
		local fd = assert(posix.open(line, posix.O_RDONLY))
		local status, out, err = u.run({ bin, "del", "--safe", id })
		local want = safe and ("luablk: device %s is in use (open, mounted or held by a process): not removed\n"):format(id)
			or "luablk: this kernel cannot refuse to remove a device in use (--safe needs Linux 7.0, UBLK_F_SAFE_STOP_DEV)\n"
		assert.same({ 1, "", want }, { status, out, err })
		assert.equal("live", assert(luablk.query(tonumber(id))).state)
		-- still serving: a read through the open fd works
		local buf = posix.aligned(4096)
		assert.equal(4096, u.pread(fd, buf, 4096, 0))
		posix.close(fd)
		if safe then
			u.sh({ bin, "del", "--safe", id })
		else
			u.sh({ bin, "del", id })
		end
		assert.equal(0, luablk.wait(pid))
		assert.is_true(u.gone(line))
	end)
end)

describe("bad input", function()
	local function refused(argv, pattern)
		local before = #ids()
		local status, out, err = u.run(argv)
		assert.are_not.equal(0, status)
		assert.equal("", out)
		local lines = select(2, err:gsub("\n", ""))
		assert.equal(1, lines, "expected one line on stderr, got: " .. err)
		assert.matches(pattern, err)
		assert.equal(before, #ids(), "a device was left behind")
	end

	it("gets one line and leaves no device behind", function()
		local bad = os.tmpname() .. ".lua"
		local f = assert(io.open(bad, "w"))
		f:write("return {")
		f:close()
		refused({ bin, "add", "mem", "--size", "1000" }, "positive multiple")
		refused({ bin, "add", "nosuch", "--size", "1M" }, "unknown backend")
		refused({ bin, "add", bad, "--size", "1M" }, "expected")
		refused({ bin, "add", "mem", "--size", "1M", "--block-size", "1000" }, "power of two")
		refused({ bin, "add", "file", "--size", "1M", "--", "path=/nonexistent/img" }, "ENOENT")
		refused({ bin, "del", "4000" }, "no ublk device 4000")
		refused({ bin, "frobnicate" }, "unknown command")
		os.remove(bad)
	end)

	it("says to run as root when not privileged", function()
		local nobody = { "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", bin }
		local function as_nobody(...)
			local argv = { unpack(nobody) }
			for _, a in ipairs({ ... }) do
				argv[#argv + 1] = a
			end
			return argv
		end
		refused(as_nobody("add", "mem", "--size", "1M"), "run as root")
		refused(as_nobody("features"), "run as root")
	end)
end)

describe("luablk features", function()
	it("names what the kernel supports", function()
		local got = cjson.decode(u.sh({ bin, "features", "--json" }))
		local set = {}
		for _, n in ipairs(got.features) do
			set[n] = true
			-- Every bit up to 7.3's IO_DESC_SIZE (20) has a name.
			assert.is_nil(n:match("^bit%d+$"), "unnamed feature " .. n)
		end
		assert.is_true(set.cmd_ioctl_encode)
		assert.is_true(set.user_recovery)
		assert.is_true(set.user_copy)
		assert.is_true(got.raw > 0)
		assert.matches("user_copy", u.sh({ bin, "features" }))
	end)
end)

describe("a process serving a device", function()
	it("keeps it through plain-fork helper processes", function()
		local dev = u.add({ backend = "mem", size = 16 * 2 ^ 20 })
		for _ = 1, 10 do
			assert.equal(0, luablk.execute({ "true" }))
		end
		local fd = u.open_direct(dev:path())
		local buf = posix.aligned(4096)
		assert.equal(4096, u.pwrite(fd, buf, 4096, 0))
		assert.equal(4096, u.pread(fd, buf, 4096, 0))
		posix.close(fd)
		assert.is_true(dev:close())
	end)
end)
