-- The delay filter's sleeps (recorded, not timed) and the stats filter's
-- counters, histogram and the readings `luablk stats` prints.
local ffi = require("ffi")
local h = require("helpers")
local errno = require("luablk.errno")
local delay = require("luablk.filters.delay")
local stats = require("luablk.filters.stats")


local function fake_dev(q, regions, queues)
	return h.fake_dev({ queue = q, regions = regions, queues = queues })
end

local function inner()
	return {
		read_at = function(_, _, off)
			if off == 512 then
				return -errno.EIO
			end
			if off == 1024 then
				error("planted")
			end
		end,
		write_at = function() end,
		flush = function() end,
	}
end

local buf = ffi.new("uint8_t[4096]")

describe("delay filter", function()
	local slept, real

	before_each(function()
		slept, real = {}, delay.sleep
		delay.sleep = function(ns)
			slept[#slept + 1] = ns
		end
	end)

	after_each(function()
		delay.sleep = real
	end)

	it("sleeps ms= before each chosen op and passes the result on", function()
		local be = delay(inner(), { ms = "1.5", op = "read+flush" }, fake_dev())
		assert.equal(-errno.EIO, be:read_at(buf, 512, 512, 0))
		be:write_at(buf, 0, 512, 0)
		be:flush()
		assert.same({ 1.5e6, 1.5e6 }, slept)
		assert.is_nil(be.discard)
	end)

	it("is async, so each IO waits on its own timer, unless serial=1", function()
		assert.is_true(delay(inner(), { ms = 1 }, fake_dev()).async)
		assert.is_falsy(delay(inner(), { ms = 1, serial = 1 }, fake_dev()).async)
		local async_inner = inner()
		async_inner.async = true
		assert.is_true(delay(async_inner, { ms = 1, serial = 1 }, fake_dev()).async)
	end)

	it("draws min..max from the seed", function()
		local function run(seed)
			slept = {}
			local be = delay(inner(), { min = 1, max = 3, seed = seed }, fake_dev())
			for _ = 1, 50 do
				be:write_at(buf, 0, 512, 0)
			end
			return slept
		end
		local a = run(1)
		local distinct = {}
		for _, ns in ipairs(a) do
			assert.is_true(ns >= 1e6 and ns <= 3e6, tostring(ns))
			distinct[ns] = true
		end
		assert.is_true(#a == 50 and next(distinct, next(distinct)) ~= nil)
		assert.same(a, run(1))
		assert.are_not.same(a, run(2))
	end)

	it("really sleeps with the default sleep", function()
		delay.sleep = real
		local be = delay(inner(), { ms = 5 }, fake_dev())
		local t0 = require("luablk").now()
		be:write_at(buf, 0, 512, 0)
		-- a lower bound only: a sleep never ends early
		assert.is_true(require("luablk").now() - t0 >= 0.005)
	end)

	it("refuses unclear timing options", function()
		local cases = {
			{ {}, "give ms=" },
			{ { ms = 1, min = 1 }, "either ms= or min=" },
			{ { min = 1 }, "give ms=" },
			{ { min = 3, max = 1 }, "max= (1) is below min= (3)" },
			{ { ms = "-1" }, "ms= must be between" },
		}
		for _, c in ipairs(cases) do
			local ok, err = pcall(delay, inner(), c[1], fake_dev())
			assert.is_false(ok)
			assert.matches(c[2], err, 1, true)
		end
	end)
end)

describe("stats filter", function()
	it("counts ios, bytes, errors and latency per op", function()
		local dev = fake_dev()
		local be = stats(inner(), {}, dev)
		be:read_at(buf, 0, 4096, 0)
		be:read_at(buf, 4096, 2048, 0)
		assert.equal(-errno.EIO, be:read_at(buf, 512, 512, 0))
		local ok, err = pcall(be.read_at, be, buf, 1024, 512, 0)
		assert.is_false(ok)
		assert.matches("planted", err)
		be:write_at(buf, 0, 1024, 0)
		be:flush()
		local s = stats.read(dev)
		assert.equal(1, s.queues)
		local r = s.ops.read
		assert.same({ 4, 6144, 2 }, { r.count, r.bytes, r.errors })
		assert.same({ 1, 1024, 0 }, { s.ops.write.count, s.ops.write.bytes, s.ops.write.errors })
		assert.same({ 1, 0 }, { s.ops.flush.count, s.ops.discard.count })
		local in_hist = 0
		for _, n in ipairs(r.hist) do
			in_hist = in_hist + n
		end
		assert.equal(4, in_hist)
		assert.is_true(r.lat_ns > 0)
	end)

	it("adds up the slots of every queue", function()
		local regions = {}
		local q0 = stats(inner(), {}, fake_dev(0, regions, 2))
		local q1 = stats(inner(), {}, fake_dev(1, regions, 2))
		q0:write_at(buf, 0, 512, 0)
		q1:write_at(buf, 0, 512, 0)
		q1:write_at(buf, 0, 512, 0)
		local s = stats.read(fake_dev(0, regions))
		assert.equal(2, s.queues)
		assert.equal(3, s.ops.write.count)
	end)

	it("puts latencies in log2 buckets", function()
		local cases = { { 0, 0 }, { 1, 0 }, { 2, 1 }, { 3, 1 }, { 4, 2 }, { 1023, 9 }, { 1024, 10 }, { 2 ^ 40, 31 } }
		for _, c in ipairs(cases) do
			assert.equal(c[2], stats.bucket(c[1]), "bucket of " .. c[1])
		end
		local hist = {}
		for i = 1, stats.BUCKETS do
			hist[i] = 0
		end
		hist[11], hist[21] = 98, 2 -- 98 IOs near 1 us, 2 near 1 ms
		assert.equal(2 ^ 11, stats.percentile(hist, 0.5))
		assert.equal(2 ^ 21, stats.percentile(hist, 0.99))
		hist[11], hist[21] = 0, 0
		assert.is_nil(stats.percentile(hist, 0.5))
	end)

	it("turns two readings into rates", function()
		local function reading(n, bytes, errs)
			local ops = {}
			for _, op in ipairs({ "read", "write", "flush", "discard", "write_zeroes" }) do
				ops[op] = { count = 0, bytes = 0, errors = 0 }
			end
			ops.read = { count = n, bytes = bytes, errors = errs }
			return { ops = ops }
		end
		local r = stats.rates(reading(100, 2 ^ 20, 1), reading(300, 5 * 2 ^ 20, 5), 2)
		assert.same({ iops = 100, mib_s = 2, errors_s = 2, interval_s = 2 }, r)
	end)

	it("reports a device without a stats filter", function()
		local s, err = stats.read(fake_dev())
		assert.is_nil(s)
		assert.matches("no stats filter", err)
	end)
end)
