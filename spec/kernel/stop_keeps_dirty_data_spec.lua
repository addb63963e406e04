-- A graceful stop must not lose what a mounted filesystem has not written
-- yet: STOP_DEV's final writeback has to reach the backend. Each case
-- writes files into ext4 on `file` without syncing, stops the device one
-- way, then serves the same image again and reads every file back.
local ffi = require("ffi")
local luablk = require("luablk")
local posix = require("luablk.posix")
local u = require("kernel.util")

local SIGINT, SIGTERM = 2, 15
local FILES, FILE_BYTES = 8, 4 * 2 ^ 20

local function content(i)
	return (("file %d of the dirty-data test\n"):format(i)):rep(FILE_BYTES / 32):sub(1, FILE_BYTES)
end

local function write_file(path, text)
	local f = assert(io.open(path, "wb"))
	assert(f:write(text))
	assert(f:close())
end

-- A scratch image and mount point, removed by the returned function.
local function scratch()
	local img, mnt = os.tmpname(), os.tmpname()
	os.remove(mnt)
	u.sh({ "mkdir", mnt })
	return img, mnt, function()
		u.run({ "umount", mnt })
		u.run({ "rmdir", mnt })
		os.remove(img)
	end
end

-- `luablk add file` on img in the background: pid and device path.
local function serve(img, extra)
	local args = { "file", "--size", "128M" }
	for _, a in ipairs(extra or {}) do
		args[#args + 1] = a
	end
	args[#args + 1] = "--"
	args[#args + 1] = "path=" .. img
	local pid, line = u.start_add(args)
	assert.matches("^/dev/ublkb%d+$", line)
	return pid, line
end

-- mkfs, mount and fill the files, leaving them in the page cache.
local function fill(path, mnt)
	u.sh({ "mkfs.ext4", "-q", "-F", path })
	u.sh({ "mount", path, mnt })
	for i = 1, FILES do
		write_file(("%s/f%d"):format(mnt, i), content(i))
	end
end

-- Serves img again and checks every file, then fsck.
local function check(img, mnt)
	local pid, path = serve(img)
	u.sh({ "mount", path, mnt })
	for i = 1, FILES do
		local got = posix.read_file(("%s/f%d"):format(mnt, i))
		assert.is_true(got == content(i), ("f%d lost its content (%d bytes)"):format(i, got and #got or -1))
	end
	u.sh({ "umount", mnt })
	u.sh({ "e2fsck", "-fn", path })
	assert.equal(0, ffi.C.kill(pid, SIGTERM))
	assert.equal(0, luablk.wait(pid))
end

-- stop(pid, path) ends the device; the dead mount is then unmounted,
-- which lets DEL_DEV finish.
local function case(stop, extra)
	local img, mnt, cleanup = scratch()
	local ok, err = pcall(function()
		local pid, path = serve(img, extra)
		fill(path, mnt)
		local waiter = stop(pid, path)
		assert.is_true(u.gone(path), path .. " is still there")
		u.sh({ "umount", mnt })
		assert.equal(0, waiter and waiter() or luablk.wait(pid))
		check(img, mnt)
	end)
	cleanup()
	assert(ok, err)
end

local function signal(sig)
	return function(pid)
		assert.equal(0, ffi.C.kill(pid, sig))
	end
end

describe("stopping a device with a mounted filesystem", function()
	it("keeps unsynced files on SIGTERM", function()
		case(signal(SIGTERM))
	end)

	it("keeps unsynced files on SIGINT", function()
		case(signal(SIGINT))
	end)

	it("keeps unsynced files on luablk del", function()
		case(function(pid, path)
			local id = path:match("(%d+)$")
			local del = assert(luablk.spawn({ u.luablk_bin, "del", id }))
			return function()
				assert.equal(0, luablk.wait(del))
				return luablk.wait(pid)
			end
		end)
	end)

	it("keeps unsynced files of a recoverable device on SIGTERM", function()
		case(signal(SIGTERM), { "--recoverable" })
	end)

	it("keeps unsynced files on dev:close() from Lua", function()
		local img, mnt, cleanup = scratch()
		local ok, err = pcall(function()
			local dev = u.add({ backend = "file", size = 128 * 2 ^ 20, args = { "path=" .. img } })
			local path = dev:path()
			fill(path, mnt)
			-- The async delete returns while the filesystem is mounted.
			assert.is_true(dev:close({ async = true }))
			assert.is_true(u.gone(path))
			u.sh({ "umount", mnt })
			check(img, mnt)
		end)
		cleanup()
		assert(ok, err)
	end)
end)
