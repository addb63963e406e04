-- A filesystem on a Lua-backed device: mkfs, mount, write, sync, read
-- back from the backend after dropping caches, remount (journal replay),
-- umount, fsck, and the device node gone after close.
local ffi = require("ffi")
local u = require("kernel.util")

local MiB = 2 ^ 20

local function write_file(path, text)
	local f = assert(io.open(path, "wb"))
	f:write(text)
	f:close()
end

local function read_file(path)
	return assert(require("luablk.posix").read_file(path))
end

local function contains(mem, size, needle)
	local n = #needle
	for off = 0, size - n do
		if mem[off] == needle:byte(1) and ffi.string(mem + off, n) == needle then
			return true
		end
	end
	return false
end

describe("ext4 on a mem device", function()
	it("survives write, sync, drop caches, remount and fsck", function()
		local size = 128 * MiB
		local dev = u.add({ backend = u.fixtures .. "/recording.lua", size = size })
		local path = dev:path()
		local mnt = os.tmpname()
		os.remove(mnt)
		u.sh({ "mkdir", "-p", mnt })
		local stats = ffi.cast("uint32_t *", dev:shared("stats"))
		local ok, err = pcall(function()
			u.sh({ "mkfs.ext4", "-q", "-F", path })
			u.sh({ "mount", path, mnt })
			local magic = "luablk-magic-" .. ("0123456789abcdef"):rep(64)
			local text = magic:rep(300)
			write_file(mnt .. "/data.txt", text)
			local before = stats[0]
			u.sh({ "sync", "-f", mnt .. "/data.txt" })
			assert.is_true(stats[0] > before, "sync -f produced no backend IO")
			u.sh({ "sh", "-c", "echo 3 > /proc/sys/vm/drop_caches" })
			before = stats[0]
			assert.equal(text, read_file(mnt .. "/data.txt"))
			assert.is_true(stats[0] > before, "read after drop_caches did not reach the backend")
			assert.is_true(contains(dev:shared("mem"), size, magic), "file bytes not in backend memory")
			u.sh({ "umount", mnt })
			u.sh({ "mount", path, mnt })
			assert.equal(text, read_file(mnt .. "/data.txt"))
			u.sh({ "umount", mnt })
			u.sh({ "e2fsck", "-fn", path })
		end)
		u.run({ "umount", mnt })
		u.run({ "rmdir", mnt })
		assert(ok, err)
		assert.is_true(dev:close())
		assert.is_true(u.gone(path), path .. " still exists after close")
	end)
end)
