-- Live reload on the real kernel, through the command line: `luablk
-- reload` and SIGHUP against a `luablk add` process.
local ffi = require("ffi")
local luablk = require("luablk")
local posix = require("luablk.posix")
local u = require("kernel.util")

local VERSIONED = u.fixtures .. "/versioned.lua"
local SIGHUP, SIGTERM = 1, 15

local function id_of(path)
	return tonumber(path:match("(%d+)$"))
end

local function reload(...)
	return u.run({ u.luablk_bin, "reload", ... })
end

-- The version byte and the taken-over-from byte a read returns.
local function version(path)
	local fd = assert(u.open_direct(path))
	local buf = posix.aligned(4096)
	assert(posix.pread(fd, buf, 4096, 0))
	posix.close(fd)
	return buf[0], buf[1]
end

local function stop(pid)
	ffi.C.kill(pid, SIGTERM)
	assert.equal(0, luablk.wait(pid))
end

local function copy(from, to)
	local text = assert(posix.read_file(from))
	local f = assert(io.open(to, "w"))
	f:write(text)
	f:close()
end

describe("luablk reload", function()
	it("keeps ext4 on a RAM disk mounted and intact while files are written", function()
		local pid, path = u.start_add({ "mem", "--size", "128M", "--queues", "2" })
		assert(path, "luablk add printed no device")
		local id = id_of(path)
		local mnt = os.tmpname()
		os.remove(mnt)
		local ok, err = pcall(function()
			u.sh({ "mkdir", "-p", mnt })
			u.sh({ "mkfs.ext4", "-q", "-F", path })
			u.sh({ "mount", path, mnt })
			u.sh({ "dd", "if=/dev/urandom", "of=" .. mnt .. "/ref", "bs=64k", "count=16", "status=none" })
			local writer = assert(luablk.spawn({
				"sh",
				"-c",
				'for i in $(seq 1 60); do cp "$1/ref" "$1/f$i" && sync "$1/f$i" || exit 1; done',
				"writer",
				mnt,
			}))
			for _ = 1, 10 do
				local status, _, stderr = reload(tostring(id))
				assert.equal(0, status, stderr)
			end
			assert.equal(0, luablk.wait(writer))
			u.sh({ "sh", "-c", "echo 3 > /proc/sys/vm/drop_caches" })
			for i = 1, 60 do
				u.sh({ "cmp", mnt .. "/ref", mnt .. "/f" .. i })
			end
			u.sh({ "umount", mnt })
			u.sh({ "e2fsck", "-fn", path })
		end)
		u.run({ "umount", mnt })
		u.run({ "rmdir", mnt })
		stop(pid)
		assert(ok, err)
	end)

	it("swaps in new arguments with the old state handed over, and keeps the old one on failure", function()
		local pid, path = u.start_add({ VERSIONED, "--size", "16M", "--", "v=1" })
		assert(path, "luablk add printed no device")
		local id = tostring(id_of(path))
		local bad = os.tmpname() .. ".lua"
		local ok, err = pcall(function()
			assert.same({ 1, 0 }, { version(path) })
			local status, _, stderr = reload(id, "--", "v=2")
			assert.equal(0, status, stderr)
			assert.same({ 2, 1 }, { version(path) })

			local f = assert(io.open(bad, "w"))
			f:write("return function(")
			f:close()
			status, _, stderr = reload(id, bad)
			assert.equal(1, status)
			assert.matches("^luablk: device " .. id .. ": backend '" .. bad:gsub("%p", "%%%0"), stderr)
			assert.equal(1, select(2, stderr:gsub("\n", "")))
			assert.same({ 2, 1 }, { version(path) })

			status, _, stderr = reload(id, "--", "v=3", "fail_queue=0")
			assert.equal(1, status)
			assert.matches("refusing queue 0", stderr)
			assert.same({ 2, 1 }, { version(path) })

			-- block parameters are fixed while the device runs
			f = assert(io.open(bad, "w"))
			f:write("return { read_at = function() end, write_at = function() end, params = { logical_block = 4096 } }")
			f:close()
			status, _, stderr = reload(id, bad)
			assert.equal(1, status)
			assert.matches("block parameters other than the running device's", stderr)
			assert.same({ 2, 1 }, { version(path) })
		end)
		os.remove(bad)
		stop(pid)
		assert(ok, err)
	end)

	it("gives up on a backend call that takes too long, and the old backend serves on", function()
		local MiB = 2 ^ 20
		-- 20 s against the reload's 10 s, so that a loaded machine noticing
		-- the slow read late still sees the reload give up.
		local pid, path = u.start_add({ VERSIONED, "--size", "16M", "--", "v=1", "slow_at=" .. MiB, "slow_ms=20000" })
		assert(path, "luablk add printed no device")
		local id = tostring(id_of(path))
		local ok, err = pcall(function()
			local reader = assert(luablk.spawn({
				"dd", "if=" .. path, "of=/dev/null", "bs=4096", "count=1", "skip=256", "iflag=direct", "status=none",
			}))
			local counters = ffi.cast("uint32_t *", assert(luablk.shared_open(tonumber(id), "closes")))
			assert(u.eventually(30, function()
				return counters[1] > 0
			end), "the slow read never reached the backend")
			local status, _, stderr = reload(id, "--", "v=2")
			assert.equal(1, status)
			assert.matches("did not finish its current requests within 10 s", stderr)
			assert.equal(0, luablk.wait(reader))
			assert.same({ 1, 0 }, { version(path) })
			status, _, stderr = reload(id, "--", "v=2")
			assert.equal(0, status, stderr)
			assert.same({ 2, 1 }, { version(path) })
		end)
		stop(pid)
		assert(ok, err)
	end)

	it("reloads the backend file from disk on SIGHUP", function()
		local script = os.tmpname() .. ".lua"
		copy(VERSIONED, script)
		local pid, path = u.start_add({ script, "--size", "16M", "--", "v=1" })
		assert(path, "luablk add printed no device")
		local ok, err = pcall(function()
			assert.same({ 1, 0 }, { version(path) })
			local text = assert(posix.read_file(script))
			local f = assert(io.open(script, "w"))
			f:write((text:gsub("ffi%.fill%(buf, len, v%)", "ffi.fill(buf, len, v + 10)")))
			f:close()
			ffi.C.kill(pid, SIGHUP)
			assert(u.eventually(20, function()
				return version(path) == 11
			end), "SIGHUP did not reload the changed file")
			assert.same({ 11, 1 }, { version(path) })
		end)
		os.remove(script)
		stop(pid)
		assert(ok, err)
	end)

	it("gets one clear line for bad input", function()
		local pid, path = u.start_add({ "c-null", "--size", "16M" })
		assert(path, "luablk add printed no device")
		local id = tostring(id_of(path))
		local cases = {
			{ {}, 2, "needs a device ID" },
			{ { "x" }, 2, "ID" },
			{ { id, "a", "b" }, 2, "at most one BACKEND" },
			{ { "4000" }, 1, "4000" },
			{ { id }, 1, "built into the core and cannot be reloaded" },
		}
		local ok, err = pcall(function()
			for _, c in ipairs(cases) do
				local status, out, stderr = reload(unpack(c[1]))
				assert.equal(c[2], status, stderr)
				assert.equal("", out)
				assert.matches("^luablk: ", stderr)
				assert.matches(c[3], stderr, 1, true)
				assert.equal(1, select(2, stderr:gsub("\n", "")))
			end
		end)
		stop(pid)
		assert(ok, err)
	end)
end)
