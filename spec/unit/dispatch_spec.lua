local ffi = require("ffi")
local dispatch = require("luablk.dispatch")
local h = require("helpers")

local READ, WRITE, FLUSH, DISCARD, WRITE_SAME, WRITE_ZEROES = 0, 1, 2, 3, 4, 5

describe("dispatch loop", function()
	local b, got, report

	before_each(function()
		b = h.batch(8, 4096)
		got, report = h.collector()
	end)

	it("maps success to bytes for READ/WRITE and 0 for the rest", function()
		local seen = {}
		local be = {
			read_at = function(_, buf, off, len)
				ffi.fill(buf, len, 0xab)
				seen[#seen + 1] = { "r", off, len }
			end,
			write_at = function(_, _, off, len)
				seen[#seen + 1] = { "w", off, len }
				return true
			end,
			flush = function()
				seen[#seen + 1] = { "f" }
			end,
			discard = function(_, off, len)
				seen[#seen + 1] = { "d", off, len }
			end,
			write_zeroes = function(_, off, len)
				seen[#seen + 1] = { "z", off, len }
			end,
		}
		h.set(b, 0, READ, 4096, 1024)
		h.set(b, 1, WRITE, 2 ^ 40, 512)
		h.set(b, 2, FLUSH, 0, 0)
		h.set(b, 3, DISCARD, 8192, 65536)
		h.set(b, 4, WRITE_ZEROES, 512, 1024)
		dispatch.make(be, b.batch, b.bufs, report)(5)
		assert.same({ 1024, 512, 0, 0, 0 }, {
			b.batch[0].result, b.batch[1].result, b.batch[2].result, b.batch[3].result, b.batch[4].result,
		})
		assert.same({ { "r", 4096, 1024 }, { "w", 2 ^ 40, 512 }, { "f" }, { "d", 8192, 65536 }, { "z", 512, 1024 } }, seen)
		assert.equal(0xab, b.bufs[0][1023])
		assert.same({}, got)
	end)

	it("passes the tag's own buffer", function()
		local ptrs = {}
		local be = {
			read_at = function(_, buf)
				ptrs[#ptrs + 1] = buf
			end,
			write_at = function() end,
		}
		h.set(b, 0, READ, 0, 512, 5)
		h.set(b, 1, READ, 0, 512, 2)
		dispatch.make(be, b.batch, b.bufs, report)(2)
		assert.equal(b.bufs[5], ptrs[1])
		assert.equal(b.bufs[2], ptrs[2])
	end)

	it("passes a negative errno through to that IO only", function()
		local be = {
			read_at = function(_, _, off)
				if off == 0 then
					return -28
				end
			end,
			write_at = function() end,
		}
		h.set(b, 0, READ, 0, 512)
		h.set(b, 1, READ, 512, 512)
		dispatch.make(be, b.batch, b.bufs, report)(2)
		assert.equal(-28, b.batch[0].result)
		assert.equal(512, b.batch[1].result)
	end)

	it("fails an IO whose backend call raises with EIO, logs once, keeps going", function()
		local be = {
			read_at = function(_, _, off)
				if off < 1024 then
					error("boom at low offsets")
				end
			end,
			write_at = function()
				error({ "a table error" })
			end,
		}
		h.set(b, 0, READ, 0, 512)
		h.set(b, 1, READ, 512, 512)
		h.set(b, 2, READ, 4096, 512)
		h.set(b, 3, WRITE, 0, 512)
		local run = dispatch.make(be, b.batch, b.bufs, dispatch.reporter("x: ", report))
		run(4)
		assert.same({ -5, -5, 512, -5 }, {
			b.batch[0].result, b.batch[1].result, b.batch[2].result, b.batch[3].result,
		})
		assert.equal(2, #got)
		assert.matches("boom at low offsets", got[1])
		assert.matches("stack traceback", got[1])
		run(4)
		assert.equal(2, #got)
	end)

	it("treats a bad return value as EIO and says what came back", function()
		local be = {
			read_at = function()
				return 512
			end,
			write_at = function()
				return "ok"
			end,
			flush = function()
				return -5000
			end,
		}
		h.set(b, 0, READ, 0, 512)
		h.set(b, 1, WRITE, 0, 512)
		h.set(b, 2, FLUSH, 0, 0)
		dispatch.make(be, b.batch, b.bufs, report)(3)
		assert.same({ -5, -5, -5 }, { b.batch[0].result, b.batch[1].result, b.batch[2].result })
		assert.matches("read_at returned 512", got[1])
		assert.matches("write_at returned ok", got[2])
		assert.matches("flush returned %-5000", got[3])
	end)

	it("answers EOPNOTSUPP for missing optional ops and unknown ops", function()
		local be = { read_at = function() end, write_at = function() end }
		h.set(b, 0, FLUSH, 0, 0)
		h.set(b, 1, DISCARD, 0, 4096)
		h.set(b, 2, WRITE_ZEROES, 0, 4096)
		h.set(b, 3, WRITE_SAME, 0, 4096)
		dispatch.make(be, b.batch, b.bufs, report)(4)
		assert.same({ -95, -95, -95, -95 }, {
			b.batch[0].result, b.batch[1].result, b.batch[2].result, b.batch[3].result,
		})
	end)
end)

describe("dispatch.reporter", function()
	it("writes each distinct first line once", function()
		local out = {}
		local r = dispatch.reporter("p: ", function(s)
			out[#out + 1] = s
		end)
		r("a\ntrace 1")
		r("a\ntrace 2")
		r("b")
		assert.same({ "p: a\ntrace 1\n", "p: b\n" }, out)
	end)
end)
