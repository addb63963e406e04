-- The crash filter's volatile layer without a kernel: what reads see,
-- what reaches durable storage (the inner backend) on flush, FUA and
-- crash, and that a crashed device fails everything.
local ffi = require("ffi")
local h = require("helpers")
local luablk = require("luablk")
local errno = require("luablk.errno")
local crash = require("luablk.filters.crash")
local dispatch = require("luablk.dispatch")

local BS = 512
local FUA = luablk.C.LUABLK_IO_F_FUA
local EIO = -errno.EIO


local function fake_dev(size, queues)
	return h.fake_dev({ size = size, block_size = BS, queues = queues })
end

-- Durable storage: a RAM disk that counts flushes and can be told to fail.
local function durable(size)
	local mem = ffi.new("uint8_t[?]", size)
	local d = { mem = mem, flushes = 0, writes = 0 }
	function d.read_at(_, buf, off, len)
		ffi.copy(buf, mem + off, len)
	end
	function d.write_at(self, buf, off, len)
		if self.fail_writes then
			return -errno.ENOSPC
		end
		self.writes = self.writes + 1
		ffi.copy(mem + off, buf, len)
	end
	function d.flush(self)
		self.flushes = self.flushes + 1
	end
	return d
end

local SIZE = 256 * BS

local function setup(opts)
	local d = durable(SIZE)
	local dev = fake_dev(SIZE)
	return crash(d, opts or {}, dev), d, dev
end

local function fill(len, byte)
	local b = ffi.new("uint8_t[?]", len)
	ffi.fill(b, len, byte)
	return b
end

-- The byte values of each block of a range, from the backend or a buffer.
local function blocks_of(p, off, n)
	local out = {}
	for i = 0, n - 1 do
		out[i + 1] = p[off + i * BS]
	end
	return out
end

local function read(be, off, len)
	local b = ffi.new("uint8_t[?]", len)
	local r = be:read_at(b, off, len, 0)
	return r, b
end

describe("crash filter", function()
	it("asks for a write cache and FUA", function()
		local be = setup()
		local caps = dispatch.caps(be)
		assert.is_true(caps.write_cache)
		assert.is_true(caps.fua)
	end)

	it("shows unflushed writes to reads, but keeps them from durable storage", function()
		local be, d, dev = setup()
		assert.is_nil(be:write_at(fill(2 * BS, 0xaa), 4 * BS, 2 * BS, 0))
		local r, b = read(be, 3 * BS, 4 * BS)
		assert.is_nil(r)
		assert.same({ 0, 0xaa, 0xaa, 0 }, blocks_of(b, 0, 4))
		assert.same({ 0, 0 }, blocks_of(d.mem, 4 * BS, 2))
		assert.equal(2, crash.state(dev).volatile_blocks)
		assert.equal(0, d.writes)
	end)

	it("makes data durable on flush, and flushes the inner backend", function()
		local be, d, dev = setup()
		be:write_at(fill(BS, 1), 0, BS, 0)
		be:write_at(fill(3 * BS, 2), 10 * BS, 3 * BS, 0)
		be:write_at(fill(BS, 3), 11 * BS, BS, 0)
		assert.equal(3 + 1, crash.state(dev).volatile_blocks)
		assert.is_nil(be:flush())
		assert.same({ 1 }, blocks_of(d.mem, 0, 1))
		assert.same({ 2, 3, 2 }, blocks_of(d.mem, 10 * BS, 3))
		assert.equal(1, d.flushes)
		-- adjacent dirty blocks go through in one call
		assert.equal(2, d.writes)
		local st = crash.state(dev)
		assert.equal(0, st.volatile_blocks)
		assert.equal(4, st.flushed_blocks)
	end)

	it("keeps unflushed writes when built again on the same device (reload, recover)", function()
		local be, d, dev = setup()
		be:write_at(fill(BS, 0xab), 0, BS, 0)
		local again = crash(d, {}, dev)
		local r, b = read(again, 0, BS)
		assert.is_nil(r)
		assert.equal(0xab, b[0])
		-- the instance that still serves (an aborted reload) sees it too
		r, b = read(be, 0, BS)
		assert.is_nil(r)
		assert.equal(0xab, b[0])
		assert.equal(1, crash.state(dev).volatile_blocks)
		assert.is_nil(again:flush())
		assert.equal(0xab, d.mem[0])
		assert.equal(0, crash.state(dev).volatile_blocks)
	end)

	it("makes a FUA write durable at once, and only that write", function()
		local be, d = setup()
		be:write_at(fill(BS, 7), 0, BS, 0)
		be:write_at(fill(BS, 8), 5 * BS, BS, FUA)
		assert.same({ 8 }, blocks_of(d.mem, 5 * BS, 1))
		assert.same({ 0 }, blocks_of(d.mem, 0, 1))
		local _, b = read(be, 0, 6 * BS)
		assert.same({ 7, 0, 0, 0, 0, 8 }, blocks_of(b, 0, 6))
	end)

	it("drops unflushed writes on crash and keeps flushed ones", function()
		local be, d, dev = setup()
		be:write_at(fill(BS, 1), 0, BS, 0)
		be:flush()
		be:write_at(fill(BS, 2), 0, BS, 0)
		be:write_at(fill(BS, 3), BS, BS, 0)
		assert.is_true(crash.crash(dev))
		assert.same({ 1, 0 }, blocks_of(d.mem, 0, 2))
		local st = crash.state(dev)
		assert.is_true(st.frozen)
		assert.equal(2, st.lost_at_crash)
	end)

	it("fails every IO with EIO once crashed, and writes nothing more", function()
		local be, d, dev = setup()
		be:write_at(fill(BS, 1), 0, BS, 0)
		crash.crash(dev)
		assert.equal(EIO, (read(be, 0, BS)))
		assert.equal(EIO, be:write_at(fill(BS, 2), 0, BS, 0))
		assert.equal(EIO, be:write_at(fill(BS, 2), 0, BS, FUA))
		assert.equal(EIO, be:flush())
		assert.equal(EIO, be:write_zeroes(0, BS))
		assert.equal(0, d.writes)
		assert.equal(0, d.flushes)
	end)

	it("with tear=P, tears unflushed writes per block: each block old or new", function()
		local be, d, dev = setup({ tear = "0.5", seed = "9" })
		ffi.fill(d.mem, SIZE, 0x0f)
		be:write_at(fill(64 * BS, 0xf0), 0, 64 * BS, 0)
		crash.crash(dev)
		local old, new = 0, 0
		for i = 0, 64 * BS - 1 do
			local blk = math.floor(i / BS)
			local first = d.mem[blk * BS]
			assert.equal(first, d.mem[i], "block " .. blk .. " is torn inside")
		end
		for _, v in ipairs(blocks_of(d.mem, 0, 64)) do
			if v == 0x0f then
				old = old + 1
			elseif v == 0xf0 then
				new = new + 1
			end
		end
		assert.equal(64, old + new)
		assert.is_true(old > 0 and new > 0, ("old %d new %d"):format(old, new))
		assert.equal(new, crash.state(dev).early_blocks)
	end)

	it("tears the same blocks for the same seed", function()
		local function run(seed)
			local be, d, dev = setup({ tear = 0.5, seed = seed })
			be:write_at(fill(64 * BS, 1), 0, 64 * BS, 0)
			crash.crash(dev)
			return table.concat(blocks_of(d.mem, 0, 64))
		end
		assert.equal(run(3), run(3))
		assert.are_not.equal(run(3), run(4))
	end)

	it("with tear=1 persists everything, with tear=0 nothing", function()
		for _, c in ipairs({ { 1, 5 }, { 0, 0 } }) do
			local be, d, dev = setup({ tear = c[1] })
			be:write_at(fill(8 * BS, 5), 0, 8 * BS, 0)
			crash.crash(dev)
			assert.same({ c[2], c[2], c[2], c[2], c[2], c[2], c[2], c[2] }, blocks_of(d.mem, 0, 8))
		end
	end)

	it("keeps unwritten blocks dirty when a flush fails", function()
		local be, d, dev = setup()
		be:write_at(fill(BS, 1), 0, BS, 0)
		be:write_at(fill(BS, 2), 8 * BS, BS, 0)
		d.fail_writes = true
		assert.equal(-errno.ENOSPC, be:flush())
		assert.equal(2, crash.state(dev).volatile_blocks)
		d.fail_writes = false
		assert.is_nil(be:flush())
		assert.same({ 1 }, blocks_of(d.mem, 0, 1))
		assert.same({ 2 }, blocks_of(d.mem, 8 * BS, 1))
	end)

	it("turns write_zeroes into volatile zeros", function()
		local be, d, dev = setup()
		ffi.fill(d.mem, SIZE, 9)
		assert.is_nil(be:write_zeroes(BS, 2 * BS))
		local _, b = read(be, 0, 4 * BS)
		assert.same({ 9, 0, 0, 9 }, blocks_of(b, 0, 4))
		assert.same({ 9, 9 }, blocks_of(d.mem, BS, 2))
		crash.crash(dev)
		assert.same({ 9, 9 }, blocks_of(d.mem, BS, 2))
	end)

	it("refuses more than one queue, and says why", function()
		local ok, err = pcall(crash, durable(SIZE), {}, fake_dev(SIZE, 2))
		assert.is_false(ok)
		assert.matches("needs a single queue (--queues 1)", err, 1, true)
	end)

	it("reports a device without a crash filter", function()
		local ok, err = crash.crash(fake_dev(SIZE))
		assert.is_nil(ok)
		assert.matches("no crash filter", err)
	end)
end)
