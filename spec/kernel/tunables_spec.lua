-- Device settings as the kernel sees them: requested ids, block size,
-- the largest queue depth, and no fd of ours leaking into children.
local ffi = require("ffi")
local posix = require("luablk.posix")
local luablk = require("luablk")
local u = require("kernel.util")

local MiB = 2 ^ 20

local function sysfs(dev, attr)
	local f = assert(io.open(("/sys/block/ublkb%d/%s"):format(dev:id(), attr)))
	local v = f:read("*l")
	f:close()
	return v
end

describe("device settings", function()
	it("uses the id asked for, and refuses one already taken", function()
		local dev = u.add({ backend = "null", size = MiB, id = 37 })
		assert.equal(37, dev:id())
		assert.equal("/dev/ublkb37", dev:path())
		local again, err = luablk.add({ backend = "null", size = MiB, id = 37 })
		assert.is_nil(again)
		assert.matches("already in use", err)
		assert.is_true(dev:close())
	end)

	it("serves 4096-byte logical blocks", function()
		local dev = u.add({ backend = "mem", size = 16 * MiB, block_size = 4096 })
		assert.equal("4096", sysfs(dev, "queue/logical_block_size"))
		local fd = u.open_direct(dev:path())
		local data = u.pattern(8192, 9)
		assert.equal(8192, u.pwrite(fd, data, 8192, 4096 * 5))
		-- 512-byte direct IO is below the logical block size
		local _, _, e = u.pwrite(fd, data, 512, 0)
		assert.equal(require("luablk.errno").EINVAL, e)
		posix.close(fd)
		assert.equal(0, ffi.C.memcmp(data, dev:shared("mem") + 4096 * 5, 8192))
		assert.is_true(dev:close())
	end)

	it("runs at the largest queue depth", function()
		local dev = u.add({ backend = "c-mem", size = 16 * MiB, depth = 4096, max_io = 4096 })
		assert.equal(4096, assert(luablk.query(dev:id())).depth)
		-- without a scheduler, the request count is the tag set's depth
		u.sh({ "sh", "-c", ("echo none > /sys/block/ublkb%d/queue/scheduler"):format(dev:id()) })
		assert.equal("4096", sysfs(dev, "queue/nr_requests"))
		u.sh({ "dd", "if=/dev/urandom", "of=" .. dev:path(), "bs=1M", "count=4", "oflag=direct", "status=none" })
		assert.is_true(dev:close())
	end)

	it("leaks no fd into child processes", function()
		local dev = u.add({ backend = "mem", size = MiB, queues = 2 })
		-- ls lists the fds it inherited plus the one it opens for the dir
		local out = u.sh({ "ls", "/proc/self/fd" })
		assert.is_true(dev:close())
		local fds = {}
		for fd in out:gmatch("%d+") do
			fds[#fds + 1] = tonumber(fd)
		end
		assert.is_true(#fds <= 4, "inherited fds: " .. out:gsub("\n", " "))
	end)

	it("publishes shared regions for other processes while it runs", function()
		local dev = u.add({ backend = "mem", size = MiB })
		local id = dev:id()
		local mine = dev:shared("mem")
		local theirs, size = assert(luablk.shared_open(id, "mem"))
		assert.equal(MiB, size)
		theirs[4242] = 99
		assert.equal(99, mine[4242])
		luablk.unmap(theirs, size)
		assert.is_true(dev:close())
		local gone, err = luablk.shared_open(id, "mem")
		assert.is_nil(gone)
		assert.matches("ENOENT", err)
	end)

	it("advertises a write cache for the file backend, not for mem", function()
		local img = os.tmpname()
		local dev = u.add({ backend = "file", size = 8 * MiB, args = { "path=" .. img } })
		assert.equal("write back", sysfs(dev, "queue/write_cache"))
		assert.is_true(dev:close())
		os.remove(img)
		local plain = u.add({ backend = "mem", size = MiB })
		assert.equal("write through", sysfs(plain, "queue/write_cache"))
		assert.is_true(plain:close())
	end)
end)
