-- Device-level checks with O_DIRECT IO, bypassing the page cache: size,
-- zeros on a fresh device, offsets mapped 1:1 into the backend's storage,
-- and IO larger than max-io split by the kernel.
local ffi = require("ffi")
local posix = require("luablk.posix")
local u = require("kernel.util")

local MiB = 2 ^ 20

describe("a mem device", function()
	local dev, fd, mem

	setup(function()
		dev = u.add({ backend = "mem", size = 64 * MiB })
		fd = u.open_direct(dev:path())
		mem = assert(dev:shared("mem"))
	end)

	teardown(function()
		if fd then
			posix.close(fd)
		end
		if dev then
			dev:close()
		end
	end)

	it("reports its size through BLKGETSIZE64", function()
		assert.equal(64 * MiB, posix.size(fd))
	end)

	it("reads back zeros when fresh", function()
		local buf = posix.aligned(MiB)
		ffi.fill(buf, MiB, 0xff)
		for _, off in ipairs({ 0, 17 * MiB, 63 * MiB }) do
			assert.equal(MiB, u.pread(fd, buf, MiB, off))
			for i = 0, MiB - 1, 4093 do
				assert.equal(0, buf[i])
			end
		end
	end)

	it("stores a random-offset write at the same offset in the backend", function()
		math.randomseed(42)
		for round = 1, 16 do
			local len = 4096 * math.random(1, 64)
			local off = 4096 * math.random(0, (64 * MiB - len) / 4096)
			local data = u.pattern(len, round)
			assert.equal(len, u.pwrite(fd, data, len, off))
			local back = posix.aligned(len)
			assert.equal(len, u.pread(fd, back, len, off))
			assert.equal(0, ffi.C.memcmp(data, back, len), "read-back differs at " .. off)
			assert.equal(0, ffi.C.memcmp(data, mem + off, len), "backend storage differs at " .. off)
		end
	end)
end)

describe("IO larger than max-io", function()
	it("is split by the kernel and lands intact", function()
		local dev = u.add({
			backend = u.fixtures .. "/recording.lua",
			size = 32 * MiB,
			max_io = 64 * 1024,
		})
		local fd = u.open_direct(dev:path())
		local len = 4 * MiB
		local data = u.pattern(len, 7)
		assert.equal(len, u.pwrite(fd, data, len, MiB))
		local back = posix.aligned(len)
		assert.equal(len, u.pread(fd, back, len, MiB))
		posix.close(fd)
		local mem = dev:shared("mem")
		local stats = ffi.cast("uint32_t *", dev:shared("stats"))
		local largest, count = stats[1], stats[0]
		local same_back = ffi.C.memcmp(data, back, len)
		local same_mem = ffi.C.memcmp(data, mem + MiB, len)
		dev:close()
		assert.equal(0, same_back)
		assert.equal(0, same_mem)
		assert.is_true(largest <= 64 * 1024, "backend saw an IO of " .. largest)
		assert.is_true(count >= 2 * len / (64 * 1024), "only " .. count .. " IOs")
	end)
end)
