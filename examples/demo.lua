-- The demo behind `make demo`: a Lua-backed RAM disk with ext4 on it.
-- Run as root on a kernel with ublk: build/luablk run examples/demo.lua
local ffi = require("ffi")
local luablk = require("luablk")

local here = arg[0]:match("^(.*)/[^/]*$") or "."
local MiB = 2 ^ 20

-- Helpers run through plain fork (luablk.execute): this process serves
-- the device, and system()/popen()-style spawning would break it.
local posix = require("luablk.posix")
local devnull = assert(posix.open("/dev/null", posix.O_WRONLY))
local function run(argv, quiet)
	local status, err = luablk.execute(argv, { stdout = devnull, stderr = quiet and devnull or nil })
	if status ~= 0 then
		error(table.concat(argv, " ") .. " failed: " .. tostring(err or status), 0)
	end
end

local dev = assert(luablk.add({ backend = here .. "/ramdisk.lua", size = 256 * MiB }))
local counts = ffi.cast("uint64_t *", (dev:shared("ramdisk.counts")))
local function io_counts()
	return ("%d reads, %d writes so far"):format(tonumber(counts[0]), tonumber(counts[1]))
end
local path = dev:path()
local mnt = "/tmp/luablk-demo"

local function step(what, fn)
	io.write(("  %-44s"):format(what))
	io.flush()
	local ok, result = pcall(fn)
	if not ok then
		print("FAILED")
		error(result, 0)
	end
	print((result or "ok") .. "   [" .. io_counts() .. "]")
end

print(("luablk demo: %s, 256 MiB, served by examples/ramdisk.lua"):format(path))
local ok, err = pcall(function()
	step("mkfs.ext4 " .. path, function()
		run({ "mkfs.ext4", "-q", "-F", path })
	end)
	step("mount on " .. mnt, function()
		run({ "mkdir", "-p", mnt })
		run({ "mount", path, mnt })
	end)
	local text = "hello from a block device written in Lua\n"
	step("write hello.txt, sync -f", function()
		local f = assert(io.open(mnt .. "/hello.txt", "w"))
		f:write(text)
		f:close()
		run({ "sync", "-f", mnt .. "/hello.txt" })
	end)
	step("drop caches, read hello.txt back", function()
		run({ "sh", "-c", "echo 3 > /proc/sys/vm/drop_caches" })
		local f = assert(io.open(mnt .. "/hello.txt"))
		local back = f:read("*a")
		f:close()
		assert(back == text, "read back differs")
		return ("%q"):format(back:sub(1, -2))
	end)
	step("umount, e2fsck -fn", function()
		run({ "umount", mnt })
		run({ "e2fsck", "-fn", path }, true)
		return "clean"
	end)
end)
if not ok then
	luablk.execute({ "umount", mnt })
end
assert(dev:close())
print(("  closed: %s is %s"):format(path, io.open(path) and "still there" or "gone"))
if not ok then
	io.stderr:write("demo failed: ", tostring(err), "\n")
	os.exit(1)
end
