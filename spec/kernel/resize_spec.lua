-- luablk resize ID SIZE (UPDATE_SIZE, Linux 6.16+): the serving process
-- reloads its backend at the new size and tells the kernel; a mounted
-- ext4 then grows online. Older kernels refuse it in one line.
local ffi = require("ffi")
local luablk = require("luablk")
local posix = require("luablk.posix")
local u = require("kernel.util")

local MiB = 2 ^ 20
local bin = u.luablk_bin

local function bytes(path)
	return tonumber((u.sh({ "blockdev", "--getsize64", path }):gsub("%s+$", "")))
end

-- Runs argv and checks that it fails with exactly one line on stderr
-- matching pattern; returns that line.
local function refused(argv, pattern, code)
	local status, out, err = u.run(argv)
	assert.equal(code or 1, status)
	assert.equal("", out)
	assert.equal(1, select(2, err:gsub("\n", "")), "expected one line on stderr, got: " .. err)
	assert.matches(pattern, err)
	return err
end

local function stop(pid)
	assert.equal(0, ffi.C.kill(pid, 15))
	assert.equal(0, luablk.wait(pid))
end

describe("luablk resize", function()
	it("refuses bad input in one line", function()
		refused({ bin, "resize" }, "resize needs a device ID and a SIZE", 2)
		refused({ bin, "resize", "x", "1M" }, "ID must be a whole number", 2)
		refused({ bin, "resize", "0", "lots" }, "bad size 'lots'", 2)
		refused({ bin, "resize", "0", "0" }, "more than 0", 2)
		refused({ bin, "resize", "4000", "1M" }, "no ublk device 4000")
	end)

	it("grows a file device under a mounted ext4, which resize2fs then grows online", function()
		local img, mnt = os.tmpname(), os.tmpname()
		os.remove(mnt)
		u.sh({ "mkdir", mnt })
		finally(function()
			u.run({ "umount", mnt })
			u.run({ "rmdir", mnt })
			os.remove(img)
		end)
		local pid, path = u.start_add({ "file", "--size", "64M", "--", "path=" .. img })
		assert.matches("^/dev/ublkb%d+$", path)
		local id = path:match("(%d+)$")
		if not u.kernel_has("update_size") then
			refused({ bin, "resize", id, "128M" }, "resize needs Linux 6%.16, UBLK_F_UPDATE_SIZE")
			assert.equal(64 * MiB, bytes(path))
			stop(pid)
			return
		end
		u.sh({ "mkfs.ext4", "-q", "-F", path })
		u.sh({ "mount", path, mnt })
		u.sh({ "dd", "if=/dev/urandom", "of=" .. mnt .. "/data", "bs=1M", "count=8", "status=none" })
		local sum = u.sh({ "md5sum", mnt .. "/data" }):match("^%x+")
		u.sh({ bin, "resize", id, "128M" })
		assert.equal(128 * MiB, bytes(path))
		assert.equal(128 * MiB, posix.size(assert(posix.open(img, posix.O_RDONLY))))
		assert.equal(128 * MiB, assert(luablk.query(tonumber(id))).size)
		u.sh({ "resize2fs", path })
		local df = u.sh({ "df", "-k", "--output=size", mnt })
		assert.is_true(tonumber(df:match("(%d+)%s*$")) > 100 * 1024, "ext4 did not grow: " .. df)
		-- writes beyond the old end reach the backend
		u.sh({ "dd", "if=/dev/urandom", "of=" .. mnt .. "/more", "bs=1M", "count=60", "status=none" })
		u.sh({ "umount", mnt })
		stop(pid)
		pid, path = u.start_add({ "file", "--size", "128M", "--", "path=" .. img })
		u.sh({ "e2fsck", "-fn", path })
		u.sh({ "mount", path, mnt })
		assert.equal(sum, u.sh({ "md5sum", mnt .. "/data" }):match("^%x+"))
		u.sh({ "umount", mnt })
		stop(pid)
	end)

	it("keeps the size and the backend when the backend cannot take the new one", function()
		local pid, path = u.start_add({ "mem", "--size", "16M" })
		local id = path:match("(%d+)$")
		if u.kernel_has("update_size") then
			refused({ bin, "resize", id, "32M" }, "^luablk: device " .. id .. ": .*shared")
		else
			refused({ bin, "resize", id, "32M" }, "resize needs Linux 6%.16")
		end
		assert.equal(16 * MiB, bytes(path))
		-- and it still serves
		u.sh({ "dd", "if=/dev/zero", "of=" .. path, "bs=4k", "count=4", "oflag=direct", "status=none" })
		stop(pid)
	end)
end)
