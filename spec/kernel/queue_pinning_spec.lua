-- Queue threads are named luablk-qN and pinned to one CPU of their queue's
-- affinity set (GET_QUEUE_AFFINITY, the same map as the kernel's
-- /sys/block/ublkbN/mq/N/cpu_list); --no-pin leaves them free. They run
-- in IO_FLUSHER state.
local ffi = require("ffi")
local luablk = require("luablk")
local posix = require("luablk.posix")
local u = require("kernel.util")

local MiB = 2 ^ 20

-- "0-2,5" -> { [0] = true, [1] = true, [2] = true, [5] = true }
local function cpu_set(list)
	local set = {}
	for item in list:gmatch("[^,%s]+") do
		local lo, hi = item:match("^(%d+)%-(%d+)$")
		lo, hi = tonumber(lo or item), tonumber(hi or item)
		for cpu = lo, hi do
			set[cpu] = true
		end
	end
	return set
end

local function count(set)
	local n = 0
	for _ in pairs(set) do
		n = n + 1
	end
	return n
end

-- name -> what(dir) for every thread of process pid, dir being its
-- /proc/PID/task/TID/ directory.
local function per_thread(pid, what)
	local out = {}
	local _, listing = u.run({ "ls", ("/proc/%d/task"):format(pid) })
	for tid in listing:gmatch("%d+") do
		local dir = ("/proc/%d/task/%s/"):format(pid, tid)
		local name = (posix.read_file(dir .. "comm") or ""):gsub("\n$", "")
		out[name] = what(dir)
	end
	return out
end

-- name -> allowed CPU set, for every thread of process pid.
local function threads(pid)
	return per_thread(pid, function(dir)
		local allowed = (posix.read_file(dir .. "status") or ""):match("Cpus_allowed_list:%s*([^\n]+)")
		return allowed and cpu_set(allowed)
	end)
end

local function the_cpu(set)
	return next(set)
end

describe("queue threads", function()
	it("are named luablk-qN and each pinned to one CPU of its queue's set", function()
		local dev = u.add({ backend = "mem", size = 16 * MiB, queues = 2 })
		local id = dev:id()
		local mine = threads(ffi.C.getpid())
		local maps = {}
		for q = 0, 1 do
			maps[q] = cpu_set(assert(posix.read_file(("/sys/block/ublkb%d/mq/%d/cpu_list"):format(id, q))))
		end
		assert.is_true(dev:close())
		for q = 0, 1 do
			local set = mine["luablk-q" .. q]
			assert.is_table(set, "no thread named luablk-q" .. q)
			assert.equal(1, count(set), "queue " .. q .. " is not pinned to one CPU")
			assert.is_true(maps[q][the_cpu(set)], ("queue %d runs on CPU %d, outside its set"):format(q, the_cpu(set)))
		end
		-- two queues on a machine with two or more CPUs get different ones
		assert.are_not.equal(the_cpu(mine["luablk-q0"]), the_cpu(mine["luablk-q1"]))
	end)

	it("in a luablk add process are pinned, and --no-pin leaves them free", function()
		local ncpu = count(cpu_set(assert(posix.read_file("/sys/devices/system/cpu/online"))))
		assert.is_true(ncpu >= 2, "needs two CPUs to tell pinned from free")
		for _, no_pin in ipairs({ false, true }) do
			local args = { "mem", "--size", "16M" }
			if no_pin then
				args[#args + 1] = "--no-pin"
			end
			local pid, line = u.start_add(args)
			assert.is_string(line)
			local seen = threads(pid)
			assert.equal(0, ffi.C.kill(pid, 15))
			assert.equal(0, luablk.wait(pid))
			local q0, main = seen["luablk-q0"], seen["luablk"]
			assert.is_table(q0, "no thread named luablk-q0")
			if no_pin then
				assert.same(main, q0)
				assert.equal(ncpu, count(q0))
			else
				assert.equal(1, count(q0))
			end
		end
	end)

	it("run in IO_FLUSHER state, so that writeback through the device cannot wait on itself", function()
		-- /proc/TID/stat field 9 holds the task flags.
		local PF_MEMALLOC_NOIO, PF_LOCAL_THROTTLE = 0x00080000, 0x00100000
		local pid, line = u.start_add({ "mem", "--size", "16M" })
		assert.is_string(line)
		local flags = per_thread(pid, function(dir)
			-- comm, in parentheses, may hold spaces: count after it
			return tonumber((posix.read_file(dir .. "stat") or ""):match("%) %S+ %S+ %S+ %S+ %S+ %S+ (%d+)"))
		end)
		assert.equal(0, ffi.C.kill(pid, 15))
		assert.equal(0, luablk.wait(pid))
		local q0, main = flags["luablk-q0"], flags["luablk"]
		assert.is_number(q0, "no thread named luablk-q0")
		assert.equal(PF_MEMALLOC_NOIO + PF_LOCAL_THROTTLE, bit.band(q0, PF_MEMALLOC_NOIO + PF_LOCAL_THROTTLE))
		assert.equal(0, bit.band(main, PF_MEMALLOC_NOIO))
	end)
end)
