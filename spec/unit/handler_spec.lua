-- The production path without a kernel: luablk_dev_create loads the
-- backend in per-queue Lua states; luablk_handler_run serves a batch.
local ffi = require("ffi")
local luablk = require("luablk")
local C = luablk.C

local READ, WRITE, FLUSH, WRITE_ZEROES = 0, 1, 2, 5

local function create(backend, size, queues, args)
	local cfg = ffi.new("struct luablk_config")
	C.luablk_config_init(cfg)
	cfg.backend = backend
	cfg.size = size
	cfg.queues = queues or 1
	cfg.depth = 4
	cfg.max_io = 65536
	local argv = ffi.new("const char *[?]", #(args or {}) + 1)
	for i, a in ipairs(args or {}) do
		argv[i - 1] = a
	end
	cfg.args, cfg.argc = argv, #(args or {})
	local out = ffi.new("struct luablk_dev *[1]")
	local rc = C.luablk_dev_create(cfg, out)
	if rc < 0 then
		return nil, ffi.string(C.luablk_last_error()), rc
	end
	return out[0]
end

local function handler(dev, q)
	local out = ffi.new("struct luablk_handler *[1]")
	assert.equal(0, C.luablk_handler_new(dev, q, out))
	return out[0]
end

-- Runs one IO through handler h and returns its result.
local function run_io(h, op, off, len, tag, flags)
	tag = tag or 0
	local b = C.luablk_handler_batch(h)
	b[0].op, b[0].off, b[0].len, b[0].tag, b[0].result = op, off, len, tag, -5
	b[0].flags = flags or 0
	C.luablk_handler_run(h, 1)
	-- An IO that an async backend parks is waited for on the handler's
	-- own ring.
	local result = b[0].result
	local turn = C.luablk_handler_turn(h)
	for _ = 1, 500 do
		if result ~= C.LUABLK_RESULT_PARKED then
			break
		end
		assert(C.luablk_handler_poll(h, 10) >= 0)
		for i = 0, turn.ndone - 1 do
			if turn.done[i].tag == tag then
				result = turn.done[i].result
			end
		end
	end
	return result, C.luablk_handler_buf(h, tag)
end

describe("handlers", function()
	for _, name in ipairs({ "mem", "c-mem" }) do
		it(name .. " keeps data across queues in shared memory", function()
			local dev = assert(create(name, 2 ^ 20, 2))
			local h0, h1 = handler(dev, 0), handler(dev, 1)
			local _, buf = run_io(h0, READ, 0, 0)
			ffi.copy(buf, ("payload"):rep(100), 700)
			assert.equal(700, (run_io(h0, WRITE, 12288, 700)))
			local r, rbuf = run_io(h1, READ, 12288, 700, 3)
			assert.equal(700, r)
			assert.equal(("payload"):rep(100), ffi.string(rbuf, 700))
			-- what the backend stored sits at the same offset of the region
			local mem = ffi.new("void *[1]")
			assert.equal(0, C.luablk_dev_shared(dev, "mem", 0, mem, nil))
			assert.equal("payload", ffi.string(ffi.cast("uint8_t *", mem[0]) + 12288, 7))
			assert.equal(0, (run_io(h1, FLUSH, 0, 0)))
			C.luablk_handler_free(h0)
			C.luablk_handler_free(h1)
			assert.equal(0, C.luablk_dev_close(dev, 0))
		end)
	end

	for _, name in ipairs({ "null", "c-null" }) do
		it(name .. " reads zeros and accepts writes", function()
			local dev = assert(create(name, 2 ^ 20))
			local h = handler(dev, 0)
			local _, buf = run_io(h, READ, 0, 0)
			ffi.fill(buf, 4096, 0x55)
			assert.equal(4096, (run_io(h, WRITE, 0, 4096)))
			assert.equal(4096, (run_io(h, READ, 0, 4096)))
			assert.equal(0, buf[0])
			assert.equal(0, buf[4095])
			C.luablk_handler_free(h)
			C.luablk_dev_close(dev, 0)
		end)
	end

	it("file with async=0 answers in the batch call, without parking", function()
		local path = os.tmpname()
		local dev = assert(create("file", 2 ^ 20, 1, { "path=" .. path, "async=0" }))
		local h = handler(dev, 0)
		local b = C.luablk_handler_batch(h)
		b[0].op, b[0].off, b[0].len, b[0].tag, b[0].flags, b[0].result = WRITE, 0, 4096, 0, 0, -5
		C.luablk_handler_run(h, 1)
		assert.equal(4096, b[0].result)
		C.luablk_handler_free(h)
		C.luablk_dev_close(dev, 0)
		os.remove(path)
	end)

	it("file reads and writes an image, zero-filling past its end", function()
		local path = os.tmpname()
		local f = assert(io.open(path, "wb"))
		f:write(("x"):rep(1024))
		f:close()
		local dev = assert(create("file", 2 ^ 20, 1, { "path=" .. path }))
		local h = handler(dev, 0)
		local r, buf = run_io(h, READ, 512, 1024)
		assert.equal(1024, r)
		assert.equal(("x"):rep(512), ffi.string(buf, 512))
		assert.equal(("\0"):rep(512), ffi.string(buf + 512, 512))
		ffi.copy(buf, "hello", 5)
		assert.equal(512, (run_io(h, WRITE, 4096, 512)))
		assert.equal(0, (run_io(h, FLUSH, 0, 0)))
		C.luablk_handler_free(h)
		C.luablk_dev_close(dev, 0)
		f = assert(io.open(path, "rb"))
		local data = f:read("*a")
		f:close()
		os.remove(path)
		assert.equal(2 ^ 20, #data)
		assert.equal("hello", data:sub(4097, 4101))
	end)

	-- /tmp has FALLOC_FL_ZERO_RANGE here (ext4); tmpfs does not, and the
	-- backend writes the zeros instead.
	for _, where in ipairs({ "/tmp", "/dev/shm" }) do
		it("file zeroes in place with NOUNMAP and punches a hole without, in " .. where, function()
			local MiB = 2 ^ 20
			local path = where .. "/luablk-zeroes-" .. ("%.0f"):format(tonumber(C.luablk_now_ns()))
			local f = assert(io.open(path, "wb"))
			f:write(("x"):rep(MiB))
			f:close()
			local function blocks()
				local p = io.popen("stat -c %b " .. path)
				local n = tonumber(p:read("*l"))
				p:close()
				return n
			end
			local full = blocks()
			local dev = assert(create("file", MiB, 1, { "path=" .. path }))
			local h = handler(dev, 0)
			assert.equal(0, (run_io(h, WRITE_ZEROES, 0, MiB / 2, 0, C.LUABLK_IO_F_NOUNMAP)))
			assert.equal(full, blocks())
			local r, buf = run_io(h, READ, MiB / 2 - 4096, 8192)
			assert.equal(8192, r)
			assert.equal(("\0"):rep(4096) .. ("x"):rep(4096), ffi.string(buf, 8192))
			assert.equal(0, (run_io(h, WRITE_ZEROES, MiB / 2, MiB / 2)))
			assert.is_true(blocks() <= full / 2, "write-zeroes without NOUNMAP kept the blocks")
			r, buf = run_io(h, READ, MiB - 4096, 4096)
			assert.equal(4096, r)
			assert.equal(("\0"):rep(4096), ffi.string(buf, 4096))
			C.luablk_handler_free(h)
			C.luablk_dev_close(dev, 0)
			os.remove(path)
		end)
	end

	it("refuses unknown backends, scripts that do not load, and bad factories", function()
		local bad = os.tmpname()
		local f = assert(io.open(bad, "w"))
		f:write("return { read_at = 1 }")
		f:close()
		local cases = {
			{ "nosuch", "unknown backend" },
			{ "/nonexistent/x.lua", "cannot open" },
			{ "file", "give the image" },
			{ bad, "no read_at method" },
		}
		for _, c in ipairs(cases) do
			local dev, err, rc = create(c[1], 2 ^ 20)
			assert.is_nil(dev)
			assert.equal(-22, rc)
			assert.matches(c[2], err, 1, true)
		end
		os.remove(bad)
	end)

	it("refuses a bad size before loading anything", function()
		local dev, err = create("mem", 1000)
		assert.is_nil(dev)
		assert.matches("positive multiple", err)
	end)

	it("calls the backend's close hook when the queue's state goes away", function()
		local path = os.tmpname() .. ".lua"
		local f = assert(io.open(path, "w"))
		f:write([[
			local ffi = require("ffi")
			return function(dev)
				local flag = ffi.cast("uint64_t *", dev:shared("closed", 8))
				return {
					read_at = function() end,
					write_at = function() end,
					close = function() flag[0] = flag[0] + 1 end,
				}
			end
		]])
		f:close()
		local dev = assert(create(path, 2 ^ 20))
		local h = handler(dev, 0)
		local p = ffi.new("void *[1]")
		assert.equal(0, C.luablk_dev_shared(dev, "closed", 0, p, nil))
		local flag = ffi.cast("uint64_t *", p[0])
		assert.equal(0, tonumber(flag[0]))
		C.luablk_handler_free(h)
		assert.equal(1, tonumber(flag[0]))
		C.luablk_dev_close(dev, 0)
		os.remove(path)
	end)

	it("mem discard reads back zeros, partial pages included", function()
		local dev = assert(create("mem", 2 ^ 20))
		local h = handler(dev, 0)
		local _, buf = run_io(h, READ, 0, 0)
		ffi.fill(buf, 65536, 0x77)
		assert.equal(65536, (run_io(h, WRITE, 0, 65536)))
		assert.equal(0, (run_io(h, 3, 1000, 20000))) -- DISCARD
		assert.equal(65536, (run_io(h, READ, 0, 65536)))
		assert.equal(0x77, buf[999])
		for _, i in ipairs({ 1000, 4095, 4096, 12000, 20999 }) do
			assert.equal(0, buf[i], "byte " .. i)
		end
		assert.equal(0x77, buf[21000])
		C.luablk_handler_free(h)
		C.luablk_dev_close(dev, 0)
	end)
end)
