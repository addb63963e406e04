-- One torture worker: a forked process that owns a disjoint region of the
-- device, does random O_DIRECT reads and writes inside it, and checks every
-- read against its own shadow copy of the region.
--
-- Every 512-byte sector it writes starts with a stamp (magic + worker,
-- op number, device offset) followed by pseudo-random words, so a mismatch
-- can say whose data came back instead: a stale sector (an older op of
-- ours), a misdirected one (another offset or another worker) or garbage.
--
-- The worker reports through its slot in a MAP_SHARED page the parent
-- reads: counters while it runs, then a state and, on failure, a message.
local ffi = require("ffi")
local luablk = require("luablk")
local posix = require("luablk.posix")
local sys = require("lib.stress_sys")

ffi.cdef("int fsync(int fd);")

local C = ffi.C
local bxor, lshift, rshift = bit.bxor, bit.lshift, bit.rshift

local M = {}

M.SLOT = 1024 -- bytes per worker slot
M.HEADER = 64 -- bytes before the first slot: [0] stop flag
M.MSG = 256 -- byte offset of the message inside a slot
M.MSG_LEN = M.SLOT - M.MSG - 1

-- Counter indexes in a slot (doubles: exact far past any run's counts).
M.STATE, M.OPS, M.READS, M.WRITES = 0, 1, 2, 3
M.BYTES_READ, M.BYTES_WRITTEN, M.VERIFIES, M.REGION_VERIFIES = 4, 5, 6, 7
M.FSYNCS, M.PROGRESS, M.VERIFY_BYTES = 8, 9, 10
M.BAD_OFF, M.BAD_EXPECTED, M.BAD_GOT = 11, 12, 13
M.RUNNING, M.DONE, M.FAILED, M.MISMATCH = 1, 2, 3, 4

local MAGIC = 0x6c750000 -- "lu" in the top half, the worker in the bottom

function M.slot(shm, w)
	return ffi.cast("double *", shm + M.HEADER + w * M.SLOT)
end

function M.stop_flag(shm)
	return ffi.cast("double *", shm)
end

function M.message(shm, w)
	return ffi.string(shm + M.HEADER + w * M.SLOT + M.MSG)
end

-- Random bytes from xorshift32, n a multiple of 4.
local function random_bytes(n, x)
	local p = posix.aligned(n)
	local w = ffi.cast("uint32_t *", p)
	x = x ~= 0 and x or 0x2545f491
	for i = 0, n / 4 - 1 do
		x = bxor(x, lshift(x, 13))
		x = bxor(x, rshift(x, 17))
		x = bxor(x, lshift(x, 5))
		w[i] = x
	end
	return p
end

-- Fills len bytes at p for op `seq` at device offset `off`: a slice of the
-- worker's random pool, starting where the op number says, then the stamp
-- over the first 16 bytes of each sector. The stamp alone makes every
-- sector of every write unique; the pool makes the rest of it non-trivial.
local function fill(p, len, off, seq, wid, pool, pool_len)
	local from = (seq * 4093) % (pool_len - len + 1)
	ffi.copy(p, pool + from, len)
	local w = ffi.cast("uint32_t *", p)
	for i = 0, len / 4 - 1, 128 do
		local soff = off + i * 4
		w[i] = MAGIC + wid
		w[i + 1] = seq
		w[i + 2] = soff % 4294967296
		w[i + 3] = math.floor(soff / 4294967296)
	end
end

-- Worker, op and device offset from a sector's stamp, or nil.
local function unstamp(p)
	local w = ffi.cast("uint32_t *", p)
	local who = w[0] - MAGIC
	if who < 0 or who > 0xffff then
		return nil
	end
	return who, w[1], w[2] + w[3] * 4294967296
end

local function stamp_text(p)
	local who, op, off = unstamp(p)
	if not who then
		return "no stamp"
	end
	return ("worker %d op %d for offset %d"):format(who, op, off)
end

-- What kind of wrong the got sector is, next to the expected one.
local function diagnose(want, got)
	if C.memcmp(want + 16, got + 16, 496) == 0 then
		return "the right data under a damaged stamp"
	end
	local ww, wop, woff = unstamp(want)
	local gw, gop, goff = unstamp(got)
	if not gw then
		return "data no torture worker wrote"
	elseif gw ~= ww then
		return "another worker's data"
	elseif goff ~= woff then
		return "data written for another offset (misdirected)"
	elseif gop < wop then
		return "stale data (an older write to this sector)"
	elseif gop == wop then
		return "the right write, damaged after its stamp"
	end
	return "data from a write that had not happened yet"
end

local Worker = {}
Worker.__index = Worker

-- cfg: path, wid, base, len (region bytes), bs, max_io, maxlen, seed,
-- deadline (luablk.now() value), verify_every (s), ppid.
function M.new(cfg, shm)
	local self = setmetatable({}, Worker)
	self.cfg = cfg
	self.shm = shm
	self.c = M.slot(shm, cfg.wid)
	self.stop = M.stop_flag(shm)
	self.shadow = posix.aligned(cfg.len)
	self.buf = posix.aligned(cfg.maxlen + 4096)
	self.seq = 0
	self.pool_len = 2 * cfg.maxlen
	self.pool = random_bytes(self.pool_len, bit.tobit(cfg.seed * 7919 + cfg.wid * 104729))
	return self
end

-- Records a failure in the slot, stops every worker, returns exit code 1.
function Worker:fail(msg, state)
	local dst = self.shm + M.HEADER + self.cfg.wid * M.SLOT + M.MSG
	local n = math.min(#msg, M.MSG_LEN)
	ffi.copy(dst, msg, n)
	dst[n] = 0
	self.c[M.STATE] = state or M.FAILED
	self.stop[0] = 1
	return 1
end

function Worker:io_fail(what, len, off, err)
	return self:fail(("worker %d: %s of %d bytes at offset %d: %s"):format(self.cfg.wid, what, len, off, err))
end

-- The first differing byte between got and the shadow at device offset off,
-- with what each sector's stamp says and whether a second read agrees.
function Worker:mismatch(got, off, len)
	local cfg = self.cfg
	local want = self.shadow + (off - cfg.base)
	local i = 0
	while i < len and got[i] == want[i] do
		i = i + 1
	end
	local sector = i - i % 512
	local at = off + i
	self.c[M.BAD_OFF], self.c[M.BAD_EXPECTED], self.c[M.BAD_GOT] = at, want[i], got[i]
	local expected_stamp, got_stamp = stamp_text(want + sector), stamp_text(got + sector)
	-- Read the sector again: does the device still return the bad bytes?
	local again = "re-read failed"
	local blk = off + sector - (off + sector) % cfg.bs
	local tmp = posix.aligned(cfg.bs)
	if posix.pread_once(self.fd, tmp, cfg.bs, blk) == cfg.bs then
		local same = tmp[at - blk] == got[i]
		again = same and "a re-read returns the same bad byte"
			or ("a re-read returns 0x%02x"):format(tmp[at - blk])
	end
	return self:fail(("worker %d: read of %d bytes at offset %d differs first at device offset %d: "
		.. "expected 0x%02x, got 0x%02x: %s (expected sector: %s; got: %s); %s"):format(
		cfg.wid, len, off, at, want[i], got[i], diagnose(want + sector, got + sector), expected_stamp,
		got_stamp, again), M.MISMATCH)
end

function Worker:write(off, len, p)
	self.seq = self.seq + 1
	fill(p, len, off, self.seq, self.cfg.wid, self.pool, self.pool_len)
	local n, err = posix.pwrite_once(self.fd, p, len, off)
	if n ~= len then
		return self:io_fail("write", len, off, err or ("short write of " .. tostring(n)))
	end
	ffi.copy(self.shadow + (off - self.cfg.base), p, len)
	local c = self.c
	c[M.WRITES] = c[M.WRITES] + 1
	c[M.BYTES_WRITTEN] = c[M.BYTES_WRITTEN] + len
end

function Worker:read(off, len, p)
	local n, err = posix.pread_once(self.fd, p, len, off)
	if n ~= len then
		return self:io_fail("read", len, off, err or ("short read of " .. tostring(n)))
	end
	if C.memcmp(p, self.shadow + (off - self.cfg.base), len) ~= 0 then
		return self:mismatch(p, off, len)
	end
	local c = self.c
	c[M.READS] = c[M.READS] + 1
	c[M.BYTES_READ] = c[M.BYTES_READ] + len
	c[M.VERIFIES] = c[M.VERIFIES] + 1
end

-- Writes the whole region once, so every later read has stamped data to
-- compare against whatever the backend held before.
function Worker:fill_region()
	local cfg = self.cfg
	for off = cfg.base, cfg.base + cfg.len - 1, cfg.maxlen do
		local len = math.min(cfg.maxlen, cfg.base + cfg.len - off)
		if self:write(off, len, self.buf) then
			return 1
		end
		self.c[M.PROGRESS] = self.c[M.PROGRESS] + 1
	end
end

-- Reads the whole region back and compares it with the shadow.
function Worker:verify_region()
	local cfg = self.cfg
	for off = cfg.base, cfg.base + cfg.len - 1, cfg.maxlen do
		local len = math.min(cfg.maxlen, cfg.base + cfg.len - off)
		local n, err = posix.pread_once(self.fd, self.buf, len, off)
		if n ~= len then
			return self:io_fail("verify read", len, off, err or ("short read of " .. tostring(n)))
		end
		if C.memcmp(self.buf, self.shadow + (off - cfg.base), len) ~= 0 then
			return self:mismatch(self.buf, off, len)
		end
		self.c[M.VERIFY_BYTES] = self.c[M.VERIFY_BYTES] + len
		self.c[M.PROGRESS] = self.c[M.PROGRESS] + 1
	end
	self.c[M.REGION_VERIFIES] = self.c[M.REGION_VERIFIES] + 1
end

function Worker:fsync()
	if C.fsync(self.fd) ~= 0 then
		return self:fail(("worker %d: fsync: %s"):format(self.cfg.wid, select(2, posix.fail("fsync"))))
	end
	self.c[M.FSYNCS] = self.c[M.FSYNCS] + 1
end

-- A random length in blocks: mostly small or up to one max-io request,
-- sometimes several requests' worth, which the kernel splits.
function Worker:pick_blocks()
	local cfg = self.cfg
	local most = cfg.maxlen / cfg.bs
	local u = math.random()
	if u < 0.4 then
		return math.random(1, math.min(most, math.max(1, 8192 / cfg.bs)))
	elseif u < 0.8 then
		return math.random(1, math.min(most, cfg.max_io / cfg.bs))
	end
	return math.random(1, most)
end

-- One random op. Returns non-nil to stop (already recorded).
function Worker:step()
	local cfg = self.cfg
	local nb = self:pick_blocks()
	local len = nb * cfg.bs
	local off = cfg.base + cfg.bs * math.random(0, cfg.len / cfg.bs - nb)
	-- A quarter of the IOs use a buffer that is only 512-byte aligned:
	-- the block layer allows it (dma alignment 511) and it maps differently.
	local p = self.buf
	if math.random() < 0.25 then
		p = p + 512 * math.random(1, 7)
	end
	local r
	if math.random() < 0.5 then
		r = self:write(off, len, p)
	else
		r = self:read(off, len, p)
	end
	self.c[M.OPS] = self.c[M.OPS] + 1
	self.c[M.PROGRESS] = self.c[M.PROGRESS] + 1
	if r == nil and math.random() < 1 / 64 then
		r = self:fsync()
	end
	return r
end

function Worker:stopping()
	return self.stop[0] ~= 0 or luablk.now() >= self.cfg.deadline
end

function Worker:run()
	local cfg = self.cfg
	math.randomseed(cfg.seed + cfg.wid)
	if cfg.cpu then
		sys.pin(cfg.cpu)
	end
	local fd, err = posix.open(cfg.path, posix.O_RDWR + posix.O_DIRECT)
	if not fd then
		return self:fail(("worker %d: open %s"):format(cfg.wid, err))
	end
	self.fd = fd
	self.c[M.STATE] = M.RUNNING
	if self:fill_region() then
		return 1
	end
	local next_verify = luablk.now() + cfg.verify_every * (1 + cfg.wid / 8)
	local ops = 0
	while not self:stopping() do
		if self:step() then
			return 1
		end
		ops = ops + 1
		if ops % 64 == 0 and sys.parent_gone(cfg.ppid) then
			return self:fail(("worker %d: the harness went away"):format(cfg.wid))
		end
		if luablk.now() >= next_verify then
			if self:verify_region() then
				return 1
			end
			next_verify = luablk.now() + cfg.verify_every
		end
	end
	-- A worker stopped because another one failed does not verify again.
	if self.stop[0] == 0 then
		if self:fsync() or self:verify_region() then
			return 1
		end
	end
	posix.close(fd)
	self.c[M.STATE] = M.DONE
	return 0
end

function M.run(cfg, shm)
	return M.new(cfg, shm):run()
end

return M
