-- A device's partitions exist when `luablk add` prints its path, on every
-- kernel: 6.12 scans inside START_DEV, 7.x would scan later in a worker
-- unless luablk scans itself (NO_AUTO_PART_SCAN).
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
end)
