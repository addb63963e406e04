-- Async backends without a kernel: the handler's own ring stands in for
-- the queue's (luablk_handler_poll), so parking, out-of-order completion,
-- deadlines and spare buffers are checked exactly as a queue runs them.
local ffi = require("ffi")
local luablk = require("luablk")
local aio = require("luablk.aio")
local C = luablk.C

local READ, WRITE = 0, 1
local FIXTURE = "spec/kernel/backends/async_mem.lua"

local function create(args, o)
	o = o or {}
	local cfg = ffi.new("struct luablk_config")
	C.luablk_config_init(cfg)
	cfg.backend = o.backend or FIXTURE
	cfg.size = 2 ^ 20
	cfg.depth = o.depth or 8
	cfg.max_io = 65536
	cfg.io_timeout_ms = o.timeout_ms or 0
	local argv = ffi.new("const char *[?]", #args + 1)
	for i, a in ipairs(args) do
		argv[i - 1] = a
	end
	cfg.args, cfg.argc = argv, #args
	local out = ffi.new("struct luablk_dev *[1]")
	assert.equal(0, C.luablk_dev_create(cfg, out), ffi.string(C.luablk_last_error()))
	local h = ffi.new("struct luablk_handler *[1]")
	assert.equal(0, C.luablk_handler_new(out[0], 0, h))
	return out[0], h[0]
end

-- Polls until every tag in want has finished; returns tag -> result.
local function collect(h, want, seconds)
	local turn = C.luablk_handler_turn(h)
	local got, left = {}, 0
	for _ in pairs(want) do
		left = left + 1
	end
	local deadline = luablk.now() + (seconds or 5)
	while left > 0 and luablk.now() < deadline do
		assert(C.luablk_handler_poll(h, 50) >= 0)
		for i = 0, turn.ndone - 1 do
			local d = turn.done[i]
			assert.is_nil(got[d.tag], "tag " .. d.tag .. " finished twice")
			got[d.tag] = d.result
			left = left - 1
		end
	end
	return got
end

local function submit(h, ios)
	local b = C.luablk_handler_batch(h)
	for i, io in ipairs(ios) do
		local e = b[i - 1]
		e.op, e.off, e.len, e.tag, e.flags, e.result = io[1], io[2], io[3], io[4], 0, -5
	end
	C.luablk_handler_run(h, #ios)
	return b
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
	end)
end)
