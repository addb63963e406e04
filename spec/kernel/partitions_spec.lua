-- A device's partitions exist when `luablk add` prints its path, on every
-- kernel: 6.12 scans inside START_DEV, 7.x would scan later in a worker
-- unless luablk scans itself (NO_AUTO_PART_SCAN); --no-part-scan skips it.
local ffi = require("ffi")
local luablk = require("luablk")
local posix = require("luablk.posix")
local u = require("kernel.util")

local function le32(n)
	return string.char(n % 256, math.floor(n / 256) % 256, math.floor(n / 65536) % 256, math.floor(n / 16777216))
end

-- A 16 MiB image with an MBR of two Linux partitions of 4 MiB each.
local function image_with_partitions()
	local img = os.tmpname()
	u.sh({ "truncate", "-s", "16M", img })
	local function entry(first, sectors)
		return "\0\0\0\0" .. "\131" .. "\0\0\0" .. le32(first) .. le32(sectors)
	end
	local mbr = ("\0"):rep(446) .. entry(2048, 8192) .. entry(10240, 8192) .. ("\0"):rep(32) .. "\85\170"
	local f = assert(io.open(img, "r+b"))
	assert(f:write(mbr))
	f:close()
	return img
end

describe("partitions", function()
	it("exist as soon as luablk add prints the device's path", function()
		local img = image_with_partitions()
		finally(function()
			os.remove(img)
		end)
		local pid, path = u.start_add({ "file", "--size", "16M", "--", "path=" .. img })
		assert.matches("^/dev/ublkb%d+$", path)
		local present = posix.exists(path .. "p1") and posix.exists(path .. "p2")
		assert.equal(0, ffi.C.kill(pid, 15))
		assert.equal(0, luablk.wait(pid))
		assert.is_true(present, "no " .. path .. "p1 and p2 when add returned")
	end)

	it("are not scanned with --no-part-scan, where the kernel allows it, and refused in one line where not", function()
		local img = image_with_partitions()
		finally(function()
			os.remove(img)
		end)
		local allowed = u.kernel_has("no_auto_part_scan")
		local args = { "file", "--size", "16M", "--no-part-scan", "--", "path=" .. img }
		if not allowed then
			local before = #assert(luablk.list())
			local status, out, err = u.run({ u.luablk_bin, "add", unpack(args) })
			assert.equal(1, status)
			assert.equal("", out)
			assert.equal("luablk: this kernel always scans partitions (--no-part-scan needs Linux 7.0, "
				.. "UBLK_F_NO_AUTO_PART_SCAN)\n", err)
			assert.equal(before, #assert(luablk.list()), "a device was left behind")
			return
		end
		local pid, path = u.start_add(args)
		assert.matches("^/dev/ublkb%d+$", path)
		local absent = not posix.exists(path .. "p1")
		u.sh({ "blockdev", "--rereadpt", path })
		local later = posix.exists(path .. "p1") and posix.exists(path .. "p2")
		assert.equal(0, ffi.C.kill(pid, 15))
		assert.equal(0, luablk.wait(pid))
		assert.is_true(absent, "partitions were scanned despite --no-part-scan")
		assert.is_true(later, "BLKRRPART did not scan them later")
	end)
end)
