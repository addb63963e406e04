-- Async backends without a kernel (spec/handler_fixture.lua): parking,
-- out-of-order completion, deadlines and spare buffers.
local ffi = require("ffi")
local luablk = require("luablk")
local aio = require("luablk.aio")
local C = luablk.C

local fixture = require("handler_fixture")
local READ, WRITE = fixture.READ, fixture.WRITE
local FIXTURE = "spec/kernel/backends/async_mem.lua"
local collect, submit = fixture.collect, fixture.submit

local function create(args, o)
	o = o or {}
	o.backend = o.backend or FIXTURE
	return fixture.create(args, o)
end

describe("an async backend", function()
	it("parks IOs, finishes them out of order, and keeps the data", function()
		local dev, h = create({ "max_us=20000", "seed=3" })
		for tag = 0, 7 do
			ffi.fill(C.luablk_handler_buf(h, tag), 4096, 0x40 + tag)
		end
		local ios, want = {}, {}
		for tag = 0, 7 do
			ios[#ios + 1] = { WRITE, tag * 4096, 4096, tag }
			want[tag] = true
		end
		local b = submit(h, ios)
		for i = 0, 7 do
			assert.equal(C.LUABLK_RESULT_PARKED, b[i].result)
		end
		assert.equal(8, C.luablk_handler_turn(h).parked)
		local got = collect(h, want)
		for tag = 0, 7 do
			assert.equal(4096, got[tag])
		end
		assert.equal(0, C.luablk_handler_turn(h).parked)
		-- Read them back through other tags, in reverse order.
		ios, want = {}, {}
		for tag = 0, 7 do
			ios[#ios + 1] = { READ, (7 - tag) * 4096, 4096, tag }
			want[tag] = true
		end
		submit(h, ios)
		got = collect(h, want)
		for tag = 0, 7 do
			assert.equal(4096, got[tag])
			assert.equal(0x40 + 7 - tag, C.luablk_handler_buf(h, tag)[4095])
		end
		C.luablk_handler_free(h)
		C.luablk_dev_close(dev, 0)
	end)

	it("times an IO out with ETIMEDOUT, gives its tag a spare buffer, and takes the old one back", function()
		local dev, h = create({ "stuck=1" }, { timeout_ms = 200 })
		local turn = C.luablk_handler_turn(h)
		local before = C.luablk_handler_buf(h, 2)
		local t0 = luablk.now()
		submit(h, { { READ, 0, 4096, 2 } })
		local got = collect(h, { [2] = true }, 3)
		assert.equal(-require("luablk.errno").ETIMEDOUT, got[2])
		assert.is_true(luablk.now() - t0 < 1.5)
		-- The old buffer is lent to the wait until its cancel comes back.
		assert.not_equal(before, C.luablk_handler_buf(h, 2))
		for _ = 1, 20 do
			C.luablk_handler_poll(h, 20)
		end
		assert.equal(8, turn.spares)
		assert.equal(0, turn.parked)
		-- The tag serves a new IO at once (writes do not get stuck).
		submit(h, { { WRITE, 0, 4096, 2 } })
		assert.equal(4096, collect(h, { [2] = true }, 3)[2])
		C.luablk_handler_free(h)
		C.luablk_dev_close(dev, 0)
	end)

	it("talks to examples/remote_store_server.lua with many requests on the wire", function()
		local sock = os.tmpname()
		os.remove(sock)
		local server = assert(luablk.spawn({
			(os.getenv("LUABLK_BUILD") or "build") .. "/luablk",
			"run",
			"examples/remote_store_server.lua",
			sock,
			"1M",
			"20000",
		}))
		finally(function()
			ffi.C.kill(server, 9)
			luablk.wait(server)
			os.remove(sock)
		end)
		for _ = 1, 100 do
			if require("luablk.posix").exists(sock) then
				break
			end
			luablk.sleep(0.02)
		end
		luablk.sleep(0.05) -- bound, now listening
		local dev, h = create({ "socket=" .. sock, "conns=4" }, { backend = "examples/remote_store.lua" })
		local ios, want = {}, {}
		for tag = 0, 7 do
			ffi.fill(C.luablk_handler_buf(h, tag), 4096, 0x61 + tag)
			ios[#ios + 1] = { WRITE, tag * 8192, 4096, tag }
			want[tag] = true
		end
		local t0 = luablk.now()
		submit(h, ios)
		local got = collect(h, want)
		-- 8 writes on 4 connections, each answer 20 ms late: two rounds.
		assert.is_true(luablk.now() - t0 < 0.15, "took " .. (luablk.now() - t0))
		ios = {}
		for tag = 0, 7 do
			assert.equal(4096, got[tag])
			ios[#ios + 1] = { READ, (7 - tag) * 8192, 4096, tag }
		end
		submit(h, ios)
		got = collect(h, want)
		for tag = 0, 7 do
			assert.equal(4096, got[tag])
			assert.equal(0x61 + 7 - tag, C.luablk_handler_buf(h, tag)[100])
		end
		C.luablk_handler_free(h)
		C.luablk_dev_close(dev, 0)
	end)

	it("lets IOs wake each other, and a spawned coroutine wake one", function()
		local dev, h = create({}, { backend = "spec/kernel/backends/rendezvous.lua" })
		local b = submit(h, { { READ, 0, 4096, 0 }, { READ, 4096, 4096, 2 } })
		assert.equal(C.LUABLK_RESULT_PARKED, b[0].result)
		assert.equal(C.LUABLK_RESULT_PARKED, b[1].result)
		local w = C.luablk_handler_buf(h, 1)
		w[0], w[1] = 0x99, 7
		b = submit(h, { { WRITE, 0, 4096, 1 } })
		assert.equal(4096, b[0].result) -- the write never waited
		assert.equal(0, w[1]) -- and its second wake was refused
		-- The read it woke finished in the same turn.
		local turn = C.luablk_handler_turn(h)
		assert.equal(1, turn.ndone)
		assert.equal(0, turn.done[0].tag)
		assert.equal(4096, turn.done[0].result)
		assert.same({ [2] = 4096 }, collect(h, { [2] = true }))
		assert.equal(0x99, C.luablk_handler_buf(h, 0)[0])
		assert.equal(0x42, C.luablk_handler_buf(h, 2)[0])
		C.luablk_handler_free(h)
		C.luablk_dev_close(dev, 0)
	end)

	it("falls back to blocking calls outside an async method", function()
		assert.equal(0, aio.sleep(0.001))
		local f = assert(io.open("/dev/zero", "rb"))
		f:close()
		local fd = ffi.C.open("/dev/zero", 0)
		local buf = ffi.new("uint8_t[16]", 7)
		assert.equal(16, aio.read(fd, buf, 16, 0))
		assert.equal(0, buf[15])
		ffi.C.close(fd)
		assert.is_false(aio.in_turn() and true or false)
		assert.is_nil(aio.current())
		assert.has_error(aio.suspend, "aio.suspend: not inside an async backend's method")
		assert.has_error(function()
			aio.spawn(print)
		end, "aio.spawn: not inside an async backend's method")
	end)
end)
