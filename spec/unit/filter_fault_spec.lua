-- The fault filter without a kernel: which IOs fail (a decision table
-- fixed by the seed), with what errno, the log it keeps, the flag, and
-- the same through the real handler path with command-line options.
local ffi = require("ffi")
local helpers = require("helpers")
local luablk = require("luablk")
local errno = require("luablk.errno")
local fault = require("luablk.filters.fault")
local C = luablk.C

local KiB = 1024


local function fake_dev(size, q, regions, queues)
	return helpers.fake_dev({ size = size, queue = q, regions = regions, queues = queues })
end

-- A RAM backend that counts the calls that reach it.
local function mem_inner(size)
	local mem = ffi.new("uint8_t[?]", size)
	local inner = { mem = mem, reached = 0 }
	function inner.read_at(self, buf, off, len)
		self.reached = self.reached + 1
		ffi.copy(buf, mem + off, len)
	end
	function inner.write_at(self, buf, off, len)
		self.reached = self.reached + 1
		ffi.copy(mem + off, buf, len)
	end
	function inner.flush(self)
		self.reached = self.reached + 1
	end
	function inner.discard(self, off, len)
		self.reached = self.reached + 1
		ffi.fill(mem + off, len)
	end
	return inner
end

local buf = ffi.new("uint8_t[?]", 64 * KiB)

-- "x" for each failed read of n, "." for each success.
local function pattern(be, n)
	local out = {}
	for i = 1, n do
		out[i] = be:read_at(buf, (i % 256) * 4096, 4096, 0) and "x" or "."
	end
	return table.concat(out)
end

describe("fault filter", function()
	it("fails the same IOs for the same seed: a fixed decision table", function()
		local be = fault(mem_inner(2 ^ 20), { rate = "0.1", seed = "42" }, fake_dev(2 ^ 20))
		-- Pinned: replaying a run depends on this sequence staying put.
		assert.equal("x.........x..x............xx...........x..x.........x.......", pattern(be, 60))
		local again = fault(mem_inner(2 ^ 20), { rate = "0.1", seed = "42" }, fake_dev(2 ^ 20))
		assert.equal(pattern(be, 500), (pattern(again, 560):sub(61)))
	end)

	it("draws another stream for another seed or another queue", function()
		local function run(seed, q)
			return pattern(fault(mem_inner(2 ^ 20), { rate = 0.1, seed = seed }, fake_dev(2 ^ 20, q, nil, 2)), 400)
		end
		local base = run(42, 0)
		assert.are_not.equal(base, run(43, 0))
		assert.are_not.equal(base, run(42, 1))
		local _, failures = base:gsub("x", "")
		-- 400 draws at 10%: the pinned seed gives a count near 40.
		assert.is_true(failures > 20 and failures < 60, "failures: " .. failures)
	end)

	it("fails only the chosen ops, with rate 1 by default", function()
		local inner = mem_inner(2 ^ 20)
		local be = fault(inner, { op = "write+flush" }, fake_dev(2 ^ 20))
		assert.equal(-errno.EIO, be:write_at(buf, 0, 4096, 0))
		assert.equal(-errno.EIO, be:flush())
		assert.is_nil(be:read_at(buf, 0, 4096, 0))
		assert.is_nil(be:discard(0, 4096))
		assert.equal(2, inner.reached)
		assert.is_nil(be.write_zeroes, "a method the inner lacks must stay absent")
	end)

	it("fails with a named or numbered errno", function()
		local cases = { { "ENOSPC", errno.ENOSPC }, { "enodata", errno.ENODATA }, { "61", 61 }, { 28, 28 } }
		for _, c in ipairs(cases) do
			local be = fault(mem_inner(2 ^ 20), { errno = c[1] }, fake_dev(2 ^ 20))
			assert.equal(-c[2], be:write_at(buf, 0, 512, 0))
		end
	end)

	it("fails IOs that overlap from..to, and never a flush", function()
		local be = fault(mem_inner(2 ^ 20), { from = "4K", to = 8192 }, fake_dev(2 ^ 20))
		local cases = {
			{ 0, 4096, nil },
			{ 4096, 4096, -errno.EIO },
			{ 8192 - 512, 1024, -errno.EIO },
			{ 0, 4097, -errno.EIO },
			{ 8192, 4096, nil },
		}
		for _, c in ipairs(cases) do
			assert.equal(c[3], be:read_at(buf, c[1], c[2], 0), ("read at %d+%d"):format(c[1], c[2]))
		end
		assert.is_nil(be:flush())
	end)

	it("nth= fails only the Nth selected IO, counted across queues", function()
		local regions = {}
		local q0 = fault(mem_inner(2 ^ 20), { op = "write", nth = "3" }, fake_dev(2 ^ 20, 0, regions, 2))
		local q1 = fault(mem_inner(2 ^ 20), { op = "write", nth = "3" }, fake_dev(2 ^ 20, 1, regions, 2))
		local got = {}
		for i = 1, 6 do
			local be = (i % 2 == 1) and q0 or q1
			assert.is_nil(be:read_at(buf, 0, 512, 0), "reads are not counted")
			got[i] = be:write_at(buf, 0, 512, 0) or 0
		end
		assert.same({ 0, 0, -errno.EIO, 0, 0, 0 }, got)
		local log = fault.log(fake_dev(2 ^ 20, 0, regions))
		assert.equal(1, #log)
		assert.equal(0, log[1].queue)
	end)

	it("after= fails every selected IO after the first N", function()
		local be = fault(mem_inner(2 ^ 20), { after = 2 }, fake_dev(2 ^ 20))
		local got = {}
		for i = 1, 5 do
			got[i] = be:read_at(buf, 0, 512, 0) or 0
		end
		assert.same({ 0, 0, -5, -5, -5 }, got)
	end)

	it("flag=1 fails only while the device's flag is on", function()
		local dev = fake_dev(2 ^ 20)
		local be = fault(mem_inner(2 ^ 20), { flag = "1" }, dev)
		assert.is_false(fault.get(dev))
		assert.is_nil(be:read_at(buf, 0, 512, 0))
		assert.is_true(fault.set(dev, true))
		assert.is_true(fault.get(dev))
		assert.equal(-errno.EIO, be:read_at(buf, 0, 512, 0))
		assert.is_true(fault.set(dev, false))
		assert.is_nil(be:read_at(buf, 0, 512, 0))
	end)

	it("logs each failure: op, offset, length, errno and queue", function()
		local dev = fake_dev(2 ^ 20, 1, nil, 2)
		local be = fault(mem_inner(2 ^ 20), { op = "read+discard", errno = "ENOSPC" }, dev)
		be:read_at(buf, 12288, 2048, 0)
		be:write_at(buf, 0, 512, 0)
		be:discard(65536, 8192)
		local log = fault.log(dev)
		assert.same({
			{ seq = 1, op = "read", off = 12288, len = 2048, errno = errno.ENOSPC, queue = 1 },
			{ seq = 2, op = "discard", off = 65536, len = 8192, errno = errno.ENOSPC, queue = 1 },
		}, log)
		assert.same({ matched = 0, failed = 2, capacity = 65536, lost = 0 }, fault.state(dev))
		assert.is_true(fault.reset(dev))
		assert.same({}, fault.log(dev))
	end)

	it("keeps the newest records when the log ring wraps", function()
		local dev = fake_dev(2 ^ 20)
		local be = fault(mem_inner(2 ^ 20), { log = 4 }, dev)
		for i = 1, 10 do
			be:read_at(buf, i * 512, 512, 0)
		end
		local log = fault.log(dev)
		assert.equal(4, #log)
		assert.equal(7, log[1].seq)
		assert.equal(10 * 512, log[4].off)
		assert.equal(6, fault.state(dev).lost)
	end)

	it("does not pass a failed write on: the old data stays", function()
		local inner = mem_inner(2 ^ 20)
		ffi.fill(inner.mem, 4096, 0x11)
		local be = fault(inner, { op = "write" }, fake_dev(2 ^ 20))
		ffi.fill(buf, 4096, 0x22)
		assert.equal(-errno.EIO, be:write_at(buf, 0, 4096, 0))
		assert.equal(0x11, inner.mem[0])
		assert.equal(0, inner.reached)
	end)

	it("keeps several instances apart by name=", function()
		local dev = fake_dev(2 ^ 20)
		local a = fault(mem_inner(2 ^ 20), { op = "read", name = "a" }, dev)
		local b = fault(a, { op = "write", name = "b" }, dev)
		b:read_at(buf, 0, 512, 0)
		b:write_at(buf, 512, 512, 0)
		assert.equal("read", fault.log(dev, "a")[1].op)
		assert.equal("write", fault.log(dev, "b")[1].op)
		local none, err = fault.log(dev)
		assert.is_nil(none)
		assert.matches("no fault filter", err)
	end)

	it("refuses bad options with one clear message", function()
		local cases = {
			{ { op = "wirte" }, "unknown op 'wirte'" },
			{ { rate = "2" }, "rate= must be between 0 and 1" },
			{ { rate = "often" }, "rate= must be a number" },
			{ { errno = "EWHAT" }, "errno= must be an errno name" },
			{ { from = "8K", to = "4K" }, "to= (4096) must be above from= (8192)" },
			{ { nth = "0" }, "nth= must be between 1" },
			{ { flag = "maybe" }, "flag= must be 1 or 0" },
			{ { colour = "red" }, "unknown option 'colour'" },
			{ { name = "a/b" }, "name= must be" },
		}
		for _, c in ipairs(cases) do
			local ok, err = pcall(fault, mem_inner(4096), c[1], fake_dev(2 ^ 20))
			assert.is_false(ok)
			assert.matches(c[2], err, 1, true)
			assert.is_nil(err:find("\n"), "one line: " .. err)
		end
	end)

	it("composes from Lua: fault(delay(mem))", function()
		local f = require("luablk.filters")
		local factory = f.fault(f.delay("mem", { ms = 0 }), { op = "write", errno = "ENOSPC" })
		local be = factory(fake_dev(2 ^ 20), {})
		assert.equal(-errno.ENOSPC, be:write_at(buf, 0, 512, 0))
		assert.is_nil(be:read_at(buf, 0, 512, 0))
	end)
end)

-- The real path: options as command-line strings, regions from the core.
describe("fault filter in a handler", function()
	local READ, WRITE = 0, 1

	local function create(filters)
		local cfg = ffi.new("struct luablk_config")
		C.luablk_config_init(cfg)
		cfg.backend, cfg.size, cfg.depth, cfg.max_io = "mem", 2 ^ 20, 4, 65536
		local list = ffi.new("const char *[?]", #filters + 1)
		for i, s in ipairs(filters) do
			list[i - 1] = s
		end
		cfg.filters, cfg.nfilters = list, #filters
		local out = ffi.new("struct luablk_dev *[1]")
		local rc = C.luablk_dev_create(cfg, out)
		if rc < 0 then
			return nil, ffi.string(C.luablk_last_error())
		end
		return out[0]
	end

	it("applies --filter strings and logs into the device's region", function()
		local dev = assert(create({ "fault:op=write,errno=ENOSPC,nth=2" }))
		local h = ffi.new("struct luablk_handler *[1]")
		assert.equal(0, C.luablk_handler_new(dev, 0, h))
		local b = C.luablk_handler_batch(h[0])
		for i = 0, 2 do
			b[i].op, b[i].off, b[i].len, b[i].tag, b[i].flags = WRITE, i * 4096, 4096, i, 0
		end
		b[3].op, b[3].off, b[3].len, b[3].tag, b[3].flags = READ, 0, 4096, 3, 0
		C.luablk_handler_run(h[0], 4)
		assert.same({ 4096, -errno.ENOSPC, 4096, 4096 }, { b[0].result, b[1].result, b[2].result, b[3].result })
		-- A harness in the serving process reads it through its Device.
		local device = setmetatable({ ptr = dev }, luablk.Device)
		local log = fault.log(device)
		assert.equal(1, #log)
		assert.equal(4096, log[1].off)
		C.luablk_handler_free(h[0])
		assert.equal(0, C.luablk_dev_close(dev, 0))
	end)

	it("reports a bad filter option as one line naming the filter", function()
		local dev, err = create({ "fault:rate=lots" })
		assert.is_nil(dev)
		assert.matches("filter 'fault': rate= must be a number", err, 1, true)
	end)
end)
