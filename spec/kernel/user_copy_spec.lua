-- USER_COPY mode (--user-copy): the core moves IO data with pread/pwrite
-- on /dev/ublkcN. Every size up to the largest IO, on both queues,
-- through the page cache, a filesystem, backend errors and the C
-- baseline: the bytes must land and come back exactly.
local ffi = require("ffi")
local luablk = require("luablk")
local errno = require("luablk.errno")
local posix = require("luablk.posix")
local u = require("kernel.util")

local MiB = 2 ^ 20

local function negotiated(dev)
	return bit.band(dev:info().flags, 128) ~= 0 -- UBLK_F_USER_COPY
end

describe("--user-copy", function()
	it("is negotiated with the kernel, and the default mode does not use it", function()
		local uc = u.add({ backend = "null", size = MiB, user_copy = true })
		local plain = u.add({ backend = "null", size = MiB })
		local on, off = negotiated(uc), negotiated(plain)
		assert.is_true(uc:close())
		assert.is_true(plain:close())
		assert.is_true(on)
		assert.is_false(off)
	end)

	it("moves every IO size up to max_io intact, both ways", function()
		local max_io = 128 * 1024
		local size = 16 * MiB
		local dev = u.add({ backend = "mem", size = size, user_copy = true, max_io = max_io })
		local mem = dev:shared("mem")
		local fd = u.open_direct(dev:path())
		local data = u.pattern(2 * MiB, 7)
		local back = posix.aligned(2 * MiB)
		local bad = {}
		local off = 0
		for len = 512, max_io, 512 do
			off = (off + 4096 * 7) % (size - max_io - 4096)
			off = off - off % 512
			local src = data + (len % 4096)
			if u.pwrite(fd, src, len, off) ~= len or ffi.C.memcmp(mem + off, src, len) ~= 0 then
				bad[#bad + 1] = "write " .. len
			end
			-- change it behind the device, so a read must fetch it anew
			ffi.copy(mem + off, data + 4096, len)
			if u.pread(fd, back, len, off) ~= len or ffi.C.memcmp(back, data + 4096, len) ~= 0 then
				bad[#bad + 1] = "read " .. len
			end
		end
		-- larger than max_io: the kernel splits it into several requests
		assert.equal(2 * MiB, u.pwrite(fd, data, 2 * MiB, 4 * MiB))
		assert.equal(2 * MiB, u.pread(fd, back, 2 * MiB, 4 * MiB))
		local big_ok = ffi.C.memcmp(back, data, 2 * MiB) == 0 and ffi.C.memcmp(mem + 4 * MiB, data, 2 * MiB) == 0
		posix.close(fd)
		assert.is_true(dev:close())
		assert.same({}, bad)
		assert.is_true(big_ok)
	end)

	it("keeps data through the page cache and on both queues", function()
		local size = 64 * MiB
		local dev = u.add({
			backend = u.fixtures .. "/recording.lua",
			size = size,
			queues = 2,
			user_copy = true,
		})
		local path = dev:path()
		local src = os.tmpname()
		local data = u.pattern(8 * MiB, 11)
		local f = assert(io.open(src, "wb"))
		f:write(ffi.string(data, 8 * MiB))
		f:close()
		-- buffered writers on each CPU, each into its own half
		local pids = {}
		for cpu = 0, 1 do
			pids[#pids + 1] = luablk.spawn({
				"taskset", "-c", tostring(cpu), "dd", "if=" .. src, "of=" .. path, "bs=256K",
				"skip=" .. (cpu * 16), "seek=" .. (cpu * 16), "count=16", "conv=fsync,notrunc", "status=none",
			})
		end
		for _, pid in ipairs(pids) do
			assert.equal(0, luablk.wait(pid))
		end
		u.sh({ "sh", "-c", "echo 3 > /proc/sys/vm/drop_caches" })
		local copy = os.tmpname()
		u.sh({ "dd", "if=" .. path, "of=" .. copy, "bs=1M", "count=8", "status=none" })
		local read_back = assert(posix.read_file(copy))
		os.remove(src)
		os.remove(copy)
		local stats = ffi.cast("uint32_t *", dev:shared("stats"))
		local q0, q1 = stats[0], stats[2]
		local same_mem = ffi.C.memcmp(dev:shared("mem"), data, 8 * MiB) == 0
		assert.is_true(dev:close())
		assert.is_true(same_mem, "backend memory differs from what was written")
		assert.is_true(read_back == ffi.string(data, 8 * MiB), "data read back differs")
		assert.is_true(q0 > 0 and q1 > 0, ("queue IO counts %d and %d"):format(q0, q1))
	end)

	it("carries ext4 through remount and fsck", function()
		local dev = u.add({ backend = "mem", size = 128 * MiB, user_copy = true })
		local path = dev:path()
		local mnt = os.tmpname()
		os.remove(mnt)
		u.sh({ "mkdir", "-p", mnt })
		local ok, err = pcall(function()
			u.sh({ "mkfs.ext4", "-q", "-F", path })
			u.sh({ "mount", path, mnt })
			u.sh({ "dd", "if=/dev/urandom", "of=" .. mnt .. "/a", "bs=1M", "count=20", "status=none" })
			u.sh({ "cp", mnt .. "/a", mnt .. "/b" })
			local sum = u.sh({ "md5sum", mnt .. "/a" }):match("^%x+")
			u.sh({ "umount", mnt })
			u.sh({ "e2fsck", "-fn", path })
			u.sh({ "sh", "-c", "echo 3 > /proc/sys/vm/drop_caches" })
			u.sh({ "mount", path, mnt })
			assert.equal(sum, u.sh({ "md5sum", mnt .. "/a" }):match("^%x+"))
			assert.equal(sum, u.sh({ "md5sum", mnt .. "/b" }):match("^%x+"))
			u.sh({ "umount", mnt })
		end)
		u.run({ "umount", mnt })
		u.run({ "rmdir", mnt })
		assert.is_true(dev:close())
		assert(ok, err)
	end)

	it("fails only the IO whose backend call fails", function()
		local dev = u.add({
			backend = u.fixtures .. "/faulty.lua",
			size = 4 * MiB,
			user_copy = true,
			args = { "throw_at=" .. MiB, "enospc_at=" .. 2 * MiB },
		})
		local fd = u.open_direct(dev:path())
		local buf = u.pattern(4096, 5)
		local _, _, e = u.pread(fd, buf, 4096, MiB)
		assert.equal(errno.EIO, e)
		_, _, e = u.pwrite(fd, buf, 4096, 2 * MiB)
		assert.equal(errno.ENOSPC, e)
		local back = posix.aligned(4096)
		assert.equal(4096, u.pwrite(fd, buf, 4096, 0))
		assert.equal(4096, u.pread(fd, back, 4096, 0))
		posix.close(fd)
		assert.is_true(dev:close())
		assert.equal(0, ffi.C.memcmp(buf, back, 4096))
	end)

	it("serves the C baseline the same way", function()
		local dev = u.add({ backend = "c-mem", size = 16 * MiB, user_copy = true })
		local fd = u.open_direct(dev:path())
		local data = u.pattern(MiB, 13)
		local back = posix.aligned(MiB)
		assert.equal(MiB, u.pwrite(fd, data, MiB, 3 * MiB))
		assert.equal(MiB, u.pread(fd, back, MiB, 3 * MiB))
		posix.close(fd)
		local same = ffi.C.memcmp(data, back, MiB) == 0 and ffi.C.memcmp(dev:shared("mem") + 3 * MiB, data, MiB) == 0
		assert.is_true(dev:close())
		assert.is_true(same)
	end)
end)
