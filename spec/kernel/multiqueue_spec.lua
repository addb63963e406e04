-- Two queues at depth 64: writers pinned to different CPUs reach both
-- queues, and every byte lands where it was written.
local ffi = require("ffi")
local posix = require("luablk.posix")
local u = require("kernel.util")

local MiB = 2 ^ 20

describe("a device with --queues 2 --depth 64", function()
	it("serves IO on both queues and keeps it intact", function()
		local dev = u.add({ backend = u.fixtures .. "/recording.lua", size = 64 * MiB, queues = 2, depth = 64 })
		local info = dev:info()
		assert.equal(2, info.queues)
		assert.equal(64, info.depth)
		local path = dev:path()
		local data = u.pattern(8 * MiB, 3)
		local src = os.tmpname()
		local f = assert(io.open(src, "wb"))
		f:write(ffi.string(data, 8 * MiB))
		f:close()
		-- Two writers on different CPUs, each to its own half.
		local pids = {}
		for cpu = 0, 1 do
			pids[#pids + 1] = require("luablk").spawn({
				"taskset", "-c", tostring(cpu), "dd", "if=" .. src, "of=" .. path, "bs=64K",
				"skip=" .. (cpu * 64), "seek=" .. (cpu * 64), "count=64", "oflag=direct", "status=none",
			})
		end
		for _, pid in ipairs(pids) do
			assert.equal(0, require("luablk").wait(pid))
		end
		os.remove(src)
		local fd = u.open_direct(path)
		local back = posix.aligned(8 * MiB)
		assert.equal(8 * MiB, u.pread(fd, back, 8 * MiB, 0))
		posix.close(fd)
		local mem = dev:shared("mem")
		local stats = ffi.cast("uint32_t *", dev:shared("stats"))
		local q0, q1 = stats[0], stats[2]
		local same_back = ffi.C.memcmp(data, back, 8 * MiB)
		local same_mem = ffi.C.memcmp(data, mem, 8 * MiB)
		dev:close()
		assert.equal(0, same_back)
		assert.equal(0, same_mem)
		assert.is_true(q0 > 0 and q1 > 0, ("queue IO counts %d and %d"):format(q0, q1))
	end)
end)
