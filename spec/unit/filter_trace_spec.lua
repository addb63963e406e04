-- The trace filter writes one JSON line per IO, which parses back to what
-- happened: op, offset, length, flags and the result the application saw.
local ffi = require("ffi")
local cjson = require("cjson")
local errno = require("luablk.errno")
local trace = require("luablk.filters.trace")

local function fake_dev(q)
	return {
		size = 2 ^ 50,
		queue = q or 0,
		queues = 2,
		shared = function()
			error("trace needs no shared region")
		end,
	}
end

-- Succeeds, except at the offsets it is told to fail at.
local function inner()
	return {
		read_at = function(_, buf, off, len)
			if off == 512 then
				return -errno.ENOSPC
			end
			ffi.fill(buf, len, 1)
		end,
		write_at = function(_, _, off)
			if off == 1024 then
				error("planted")
			end
		end,
		flush = function() end,
		discard = function() end,
	}
end

local function lines(path)
	local out = {}
	for l in io.lines(path) do
		out[#out + 1] = cjson.decode(l)
	end
	return out
end

local buf = ffi.new("uint8_t[65536]")

describe("trace filter", function()
	local path

	before_each(function()
		path = os.tmpname()
	end)

	after_each(function()
		os.remove(path)
	end)

	it("round-trips every IO through JSON lines", function()
		local be = trace(inner(), { path = path }, fake_dev(1))
		assert.is_nil(be:read_at(buf, 0, 4096, 0))
		assert.equal(-errno.ENOSPC, be:read_at(buf, 512, 512, 0))
		be:write_at(buf, 2 ^ 40 + 4096, 65536, 8192)
		be:flush()
		be:discard(8192, 1024)
		local got = lines(path)
		assert.equal(5, #got)
		local want = {
			{ "read", 0, 4096, 0, 4096 },
			{ "read", 512, 512, 0, -errno.ENOSPC },
			{ "write", 2 ^ 40 + 4096, 65536, 8192, 65536 },
			{ "flush", 0, 0, 0, 0 },
			{ "discard", 8192, 1024, 0, 0 },
		}
		for i, w in ipairs(want) do
			local g = got[i]
			assert.same(w, { g.op, g.off, g.len, g.flags, g.res }, "line " .. i)
			assert.equal(1, g.q)
			assert.is_true(g.lat_ns >= 0)
			assert.is_true(g.ts > 0)
			assert.is_true(i == 1 or g.ts >= got[i - 1].ts)
		end
		assert.is_nil(be.write_zeroes)
	end)

	it("records a Lua error as EIO and passes the error on", function()
		local be = trace(inner(), { path = path }, fake_dev())
		local ok, err = pcall(be.write_at, be, buf, 1024, 512, 0)
		assert.is_false(ok)
		assert.matches("planted", err)
		assert.equal(-errno.EIO, lines(path)[1].res)
	end)

	it("appends from several queues without mixing lines", function()
		local q0 = trace(inner(), { path = path }, fake_dev(0))
		local q1 = trace(inner(), { path = path }, fake_dev(1))
		for i = 1, 200 do
			q0:read_at(buf, i * 4096, 4096, 0)
			q1:read_at(buf, i * 4096, 4096, 0)
		end
		local got = lines(path)
		assert.equal(400, #got)
		local per = { [0] = 0, [1] = 0 }
		for _, g in ipairs(got) do
			per[g.q] = per[g.q] + 1
		end
		assert.same({ [0] = 200, [1] = 200 }, per)
	end)

	-- Each device's queue has a Lua state of its own: a fresh copy of the
	-- module stands for a new device.
	local function fresh()
		package.loaded["luablk.filters.trace"] = nil
		return require("luablk.filters.trace")
	end

	it("truncates the file when a device starts, unless append=1", function()
		local be = fresh()(inner(), { path = path }, fake_dev())
		be:flush()
		be = fresh()(inner(), { path = path, append = "1" }, fake_dev())
		be:flush()
		assert.equal(2, #lines(path))
		be = fresh()(inner(), { path = path }, fake_dev())
		be:flush()
		assert.equal(1, #lines(path))
	end)

	it("keeps the lines when the filter is built again for the same device", function()
		local new = fresh()
		new(inner(), { path = path }, fake_dev()):flush()
		new(inner(), { path = path }, fake_dev()):flush()
		assert.equal(2, #lines(path))
	end)

	it("needs a path it can open", function()
		local ok, err = pcall(trace, inner(), {}, fake_dev())
		assert.is_false(ok)
		assert.matches("give the output file", err)
		ok, err = pcall(trace, inner(), { path = "/nonexistent/dir/t.jsonl" }, fake_dev())
		assert.is_false(ok)
		assert.matches("ENOENT", err)
	end)
end)
