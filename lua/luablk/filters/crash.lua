-- crash: a power-cut simulator. The filter is a volatile write cache in
-- front of the inner backend, which stands for durable storage.
--
--   luablk add file --size 64M --filter crash:tear=0.3,seed=5 -- path=/tmp/img
--
-- Writes land in a volatile layer (shared memory the size of the device
-- plus a dirty byte per block); reads see it first. FLUSH writes every
-- dirty block through to the inner backend (then flushes that), and a FUA
-- write goes through at once, so the device advertises a write cache and
-- FUA and the filesystem above sends both. crash() freezes the device:
-- every later IO fails with EIO and whatever is still volatile is lost.
-- The harness then closes the device and opens the inner storage (the
-- `file` backend's image) under a fresh one.
--
-- Options:
--   tear=P   each unflushed block written reaches durable storage early
--            with probability P (default 0: a crash drops every unflushed
--            block). Drawn per block from the seeded RNG, so a write that
--            spans blocks can tear.
--   seed=N   RNG seed (default 1).
--
-- Tearing is decided when a block is written, not at crash time, as a
-- drive's cache may write any block back early. That keeps crash() a
-- single atomic store that works at once from any process (it needs no
-- IO to arrive), and gives the same outcomes as tearing at the cut.
--
-- One queue only: a flush on one queue writing the volatile layer back
-- while another queue writes into it would need a lock on the IO path.
local ffi = require("ffi")
local errno = require("luablk.errno")
local filters = require("luablk.filters")
local H = require("luablk.filters.helpers")
local C = require("luablk").C

local M = {}

if not pcall(ffi.typeof, "struct luablk_crash_ctl") then
	ffi.cdef([[
	struct luablk_crash_ctl {
		uint64_t magic;
		uint64_t frozen;          /* atomic: 1 after crash() */
		double block_size;
		double nblocks;
		double lo, hi;            /* dirty blocks lie in [lo, hi) */
		double crashes;
		double lost_at_crash;     /* dirty blocks when crash() ran */
		double flushes;
		double flushed_blocks;    /* written through by flushes */
		double fua_writes;
		double early_blocks;      /* written through early (tear=) */
		double reserved[4];
	};
	]])
end
if not pcall(function()
	return ffi.C.memchr
end) then
	ffi.cdef("void *memchr(const void *s, int c, size_t n);")
end

local MAGIC = 0x6372617368 -- "crash"
local FUA = C.LUABLK_IO_F_FUA
local EIO, EINVAL = errno.EIO, errno.EINVAL

M.CTL = "crash"

-- The shared state: control block, volatile data, and a dirty map of one
-- byte per block. Marking is ffi.fill and finding is memchr, so the IO
-- path has no per-block Lua loop (a loop exit that returns from its
-- function falls back to the interpreter in this LuaJIT).
local function shared_state(dev, bs)
	local nblocks = dev.size / bs
	local ctl = ffi.cast("struct luablk_crash_ctl *", dev:shared(M.CTL, ffi.sizeof("struct luablk_crash_ctl")))
	-- A reload or recover builds the filter again over the same regions,
	-- while the dirty map still holds unflushed blocks (and, for a reload,
	-- the old instance still serves from it): only a fresh region starts
	-- with an empty dirty range.
	if ctl.magic ~= MAGIC then
		ctl.block_size, ctl.nblocks = bs, nblocks
		ctl.lo, ctl.hi = nblocks, 0
		ctl.magic = MAGIC
	end
	return ctl, dev:shared("crash.data", dev.size), dev:shared("crash.dirty", nblocks)
end

local function parse(opts, dev)
	H.check_keys("crash", opts, { "tear", "seed" })
	if (dev.queues or 1) > 1 then
		error("needs a single queue (--queues 1): flushes and writes on different queues would race", 0)
	end
	local bs = dev.block_size or 512
	if not dev.size or dev.size % bs ~= 0 then
		error("device size must be a multiple of the block size", 0)
	end
	return {
		bs = bs,
		tear = H.number(opts, "tear", 0, 0, 1),
		seed = H.number(opts, "seed", 1, 0, 2 ^ 53),
	}
end

local function failed(r)
	return r ~= nil and r ~= true
end

local function new(inner, opts, dev)
	local cfg = parse(opts, dev)
	local bs, tear = cfg.bs, cfg.tear
	local ctl, data, dirty = shared_state(dev, bs)
	local nblocks = ctl.nblocks
	local frozen_p = ffi.cast("uint64_t *", ctl) + 1
	local random = H.rng(cfg.seed, dev.queue or 0)
	local read_at, write_at, inner_flush = inner.read_at, inner.write_at, inner.flush
	local atomic_load, copy, fill, band = C.luablk_atomic_load, ffi.copy, ffi.fill, bit.band
	local memchr, min, max = ffi.C.memchr, math.min, math.max

	local function frozen()
		return atomic_load(frozen_p) ~= 0ULL
	end

	local function mark(first, count)
		fill(dirty + first, count, 1)
		ctl.lo, ctl.hi = min(ctl.lo, first), max(ctl.hi, first + count)
	end

	local function aligned(off, len)
		return off % bs == 0 and len % bs == 0
	end

	-- The first block in [from, to) whose dirty byte is `value`, or to.
	local function find(value, from, to)
		if from >= to then
			return to
		end
		local p = memchr(dirty + from, value, to - from)
		if p == nil then
			return to
		end
		-- A pointer difference is an int64 cdata: make it a Lua number.
		return tonumber(ffi.cast("uint8_t *", p) - dirty)
	end

	-- tear=: writes a random subset of a just-written range through now,
	-- in runs of adjacent chosen blocks. One draw per block.
	local function persist_early(src, off, count)
		local i = 0
		while i < count do
			if random() < tear then
				local j = i + 1
				while j < count and random() < tear do
					j = j + 1
				end
				local r = write_at(inner, src + i * bs, off + i * bs, (j - i) * bs, 0)
				if failed(r) then
					return r
				end
				ctl.early_blocks = ctl.early_blocks + (j - i)
				i = j
			end
			i = i + 1
		end
	end

	-- Never async: the write-back walks the volatile layer, and another
	-- IO of the queue must not change it while an inner write waits. An
	-- async inner backend's waits simply block here (luablk.aio).
	local be = { caps = { write_cache = true, fua = true }, async = false }

	be.write_at = function(_, buf, off, len, flags)
		if frozen() then
			return -EIO
		end
		if not aligned(off, len) then
			return -EINVAL
		end
		copy(data + off, buf, len)
		if band(flags or 0, FUA) ~= 0 then
			-- Durable now; the blocks may stay dirty with the same bytes.
			ctl.fua_writes = ctl.fua_writes + 1
			return write_at(inner, buf, off, len, flags)
		end
		mark(off / bs, len / bs)
		if tear > 0 then
			return persist_early(buf, off, len / bs)
		end
	end

	-- Mixed ranges go run by run: clean runs from the inner backend,
	-- dirty ones from the volatile layer.
	local function read_runs(buf, first, count, flags)
		local i, last = first, first + count
		while i < last do
			local d = dirty[i]
			local j = find(d == 0 and 1 or 0, i, last)
			if d ~= 0 then
				copy(buf + (i - first) * bs, data + i * bs, (j - i) * bs)
			else
				local r = read_at(inner, buf + (i - first) * bs, i * bs, (j - i) * bs, flags)
				if failed(r) then
					return r
				end
			end
			i = j
		end
	end

	be.read_at = function(_, buf, off, len, flags)
		if frozen() then
			return -EIO
		end
		if not aligned(off, len) then
			return -EINVAL
		end
		local first, count = off / bs, len / bs
		local last = first + count
		if last <= ctl.lo or first >= ctl.hi or find(1, first, last) == last then
			return read_at(inner, buf, off, len, flags)
		end
		if find(0, first, last) == last then
			copy(buf, data + off, len)
			return
		end
		return read_runs(buf, first, count, flags)
	end

	-- Writes the dirty runs through in block order. A crash in the middle
	-- stops it, as the power cut would; a failure keeps the rest dirty.
	local function write_back()
		local i, hi = ctl.lo, ctl.hi
		while true do
			i = find(1, i, hi)
			if i >= hi or frozen() then
				break
			end
			local j = find(0, i, hi)
			local r = write_at(inner, data + i * bs, i * bs, (j - i) * bs, 0)
			if failed(r) then
				ctl.lo = i
				return r
			end
			fill(dirty + i, j - i, 0)
			ctl.flushed_blocks = ctl.flushed_blocks + (j - i)
			i = j
		end
		ctl.lo, ctl.hi = i < hi and i or nblocks, i < hi and hi or 0
	end

	be.flush = function()
		local r = write_back()
		if failed(r) then
			return r
		end
		if frozen() then
			return -EIO
		end
		ctl.flushes = ctl.flushes + 1
		if inner_flush then
			return inner_flush(inner)
		end
	end

	-- Zeroing is a write of zeros into the volatile layer.
	local function zero(_, off, len)
		if frozen() then
			return -EIO
		end
		if not aligned(off, len) then
			return -EINVAL
		end
		fill(data + off, len)
		mark(off / bs, len / bs)
	end
	be.write_zeroes = zero
	if inner.discard then
		be.discard = zero
	end
	return filters.wrap(inner, be)
end

setmetatable(M, {
	__call = function(_, inner, opts, dev)
		return new(inner, opts or {}, dev)
	end,
})

local function control(target)
	local p, err, release = H.region(target, M.CTL)
	if not p then
		return nil, H.missing("crash filter", err)
	end
	local ctl = ffi.cast("struct luablk_crash_ctl *", p)
	if ctl.magic ~= MAGIC then
		release()
		return nil, "region " .. M.CTL .. " is not a crash control block"
	end
	return ctl, release
end

-- Dirty blocks right now (a scan of the dirty map, off the IO path).
local function count_dirty(target, ctl)
	local lo, hi = ctl.lo, ctl.hi
	if hi <= lo then
		return 0
	end
	local map, _, release = H.region(target, "crash.dirty")
	if not map then
		return nil
	end
	local n = 0
	for b = lo, hi - 1 do
		if map[b] ~= 0 then
			n = n + 1
		end
	end
	release()
	return n
end

-- Cuts the power: freezes the device (every later IO fails with EIO) and
-- loses what is still volatile. target: a luablk Device, a backend's dev,
-- or a device id (from any process). Returns true or nil, message.
function M.crash(target)
	local ctl, release = control(target)
	if not ctl then
		return nil, release
	end
	C.luablk_atomic_store(ffi.cast("uint64_t *", ctl) + 1, 1)
	ctl.crashes = ctl.crashes + 1
	ctl.lost_at_crash = count_dirty(target, ctl) or -1
	release()
	return true
end

-- The control block's counters as a table, or nil, message.
function M.state(target)
	local ctl, release = control(target)
	if not ctl then
		return nil, release
	end
	local st = {
		frozen = C.luablk_atomic_load(ffi.cast("uint64_t *", ctl) + 1) ~= 0ULL,
		block_size = ctl.block_size,
		volatile_blocks = count_dirty(target, ctl),
		crashes = ctl.crashes,
		lost_at_crash = ctl.lost_at_crash,
		flushes = ctl.flushes,
		flushed_blocks = ctl.flushed_blocks,
		fua_writes = ctl.fua_writes,
		early_blocks = ctl.early_blocks,
	}
	release()
	return st
end

return M
