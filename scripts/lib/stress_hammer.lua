-- An IO worker for stress and sigkill: a forked process that hammers one
-- block device with O_DIRECT writes, each read straight back and compared,
-- until it is told to stop or an IO fails. An IO failure is the expected
-- end when the device goes away underneath (closed, deleted, its server
-- killed): the worker records which errno ended it and exits 0. Wrong data
-- is never expected: the worker records where and exits 1.
--
-- Every 4 KiB block it writes starts with a stamp (magic, the owner's tag,
-- op number, block number), so a final scan can tell that each block still
-- holds this worker's latest write and nobody else's (a bleed between
-- devices would show another tag).
local ffi = require("ffi")
local luablk = require("luablk")
local posix = require("luablk.posix")
local sys = require("lib.stress_sys")

local C = ffi.C

local M = {}

M.SLOT = 256 -- bytes per worker slot
M.MSG = 128 -- message offset inside a slot

-- Slot fields (doubles).
M.STATE, M.OPS, M.ERRNO, M.BYTES, M.SCANS = 0, 1, 2, 3, 4
M.STARTING, M.RUNNING, M.VERIFIED, M.ENDED, M.STOPPED, M.FAILED = 0, 1, 2, 3, 4, 5

local BLOCK = 4096
local MAGIC = 0x68616d6d -- "hamm"

function M.slot(shm, i)
	return ffi.cast("double *", shm + i * M.SLOT)
end

function M.message(shm, i)
	return ffi.string(shm + i * M.SLOT + M.MSG)
end

local function say(shm, i, msg)
	local dst = shm + i * M.SLOT + M.MSG
	local n = math.min(#msg, M.SLOT - M.MSG - 1)
	ffi.copy(dst, msg, n)
	dst[n] = 0
end

-- Stamps nb blocks at p for op seq starting at block blk.
local function stamp(p, nb, tag, seq, blk)
	local w = ffi.cast("uint32_t *", p)
	for b = 0, nb - 1 do
		local i = b * (BLOCK / 4)
		w[i], w[i + 1], w[i + 2], w[i + 3] = MAGIC, tag, seq, blk + b
		-- The rest of the block varies with the op, cheaply.
		ffi.fill(p + b * BLOCK + 16, BLOCK - 16, (seq + b) % 251)
	end
end

local Hammer = {}
Hammer.__index = Hammer

-- cfg: path, index (slot), tag (a number naming the owner), base and len
-- (bytes, 4 KiB multiples), seed, stop (double * flag or nil),
-- verify_after (seconds: scan every written block once, then go on),
-- limit (seconds: give up, a safety net), ppid.
function M.run(cfg, shm)
	local self = setmetatable({ cfg = cfg, shm = shm, c = M.slot(shm, cfg.index) }, Hammer)
	return self:main()
end

function Hammer:ended(e)
	self.c[M.ERRNO] = e or 0
	self.c[M.STATE] = M.ENDED
	return 0
end

function Hammer:failed(msg)
	say(self.shm, self.cfg.index, msg)
	self.c[M.STATE] = M.FAILED
	return 1
end

-- One write of a random run of blocks, read back and compared. Returns
-- nil to go on, or the exit code.
function Hammer:op()
	local cfg = self.cfg
	local nb = math.random(1, 16)
	local blk = math.random(0, cfg.len / BLOCK - nb)
	local len, off = nb * BLOCK, cfg.base + blk * BLOCK
	self.seq = self.seq + 1
	stamp(self.buf, nb, cfg.tag, self.seq, blk)
	local n, _, e = posix.pwrite_once(self.fd, self.buf, len, off)
	if n ~= len then
		return self:ended(e or -1)
	end
	for b = 0, nb - 1 do
		self.written[blk + b] = self.seq
	end
	n, _, e = posix.pread_once(self.fd, self.back, len, off)
	if n ~= len then
		return self:ended(e or -1)
	end
	if C.memcmp(self.buf, self.back, len) ~= 0 then
		return self:failed(("%s: read back of %d bytes at offset %d differs from what was just written"):format(
			cfg.path, len, off))
	end
	self.c[M.OPS] = self.c[M.OPS] + 1
	self.c[M.BYTES] = self.c[M.BYTES] + 2 * len
end

-- Reads every block written so far and checks that it holds our tag and
-- our latest op for it.
function Hammer:scan()
	local cfg = self.cfg
	local w = ffi.cast("uint32_t *", self.back)
	for blk, seq in pairs(self.written) do
		local n, _, e = posix.pread_once(self.fd, self.back, BLOCK, cfg.base + blk * BLOCK)
		if n ~= BLOCK then
			return self:ended(e or -1)
		end
		if w[0] ~= MAGIC or w[1] ~= cfg.tag or w[2] ~= seq or w[3] ~= blk then
			return self:failed(("%s: block at offset %d holds magic %08x tag %d op %d block %d, expected tag %d op %d"):format(
				cfg.path, cfg.base + blk * BLOCK, w[0], w[1], w[2], w[3], cfg.tag, seq))
		end
	end
	self.c[M.SCANS] = self.c[M.SCANS] + 1
	self.c[M.STATE] = M.VERIFIED
end

function Hammer:main()
	local cfg = self.cfg
	math.randomseed(cfg.seed or cfg.index)
	local fd, _, e = posix.open(cfg.path, posix.O_RDWR + posix.O_DIRECT)
	if not fd then
		return self:ended(e)
	end
	self.fd, self.seq, self.written = fd, 0, {}
	self.buf, self.back = posix.aligned(16 * BLOCK), posix.aligned(16 * BLOCK)
	self.c[M.STATE] = M.RUNNING
	local t0 = luablk.now()
	local code
	while not code do
		if cfg.stop and cfg.stop[0] ~= 0 then
			self.c[M.STATE] = M.STOPPED
			code = 0
		elseif luablk.now() - t0 > (cfg.limit or 600) or (cfg.ppid and sys.parent_gone(cfg.ppid)) then
			code = self:failed(cfg.path .. ": still running at the safety limit, or the harness went away")
		else
			code = self:op()
			if not code and cfg.verify_after and self.c[M.STATE] == M.RUNNING
				and luablk.now() - t0 >= cfg.verify_after then
				code = self:scan()
			end
		end
	end
	posix.close(fd)
	return code
end

-- How an IO may end when its device goes away: EIO once the queues are
-- gone; ENOSPC for a write, and a short (0-byte) read, once del_gendisk()
-- has set the capacity to 0; ENXIO/ENOENT/ENODEV for an open of a node
-- that is going or gone.
M.GONE = {
	[5] = "EIO", [28] = "ENOSPC", [6] = "ENXIO", [19] = "ENODEV", [2] = "ENOENT", [-1] = "short transfer",
}

-- What went wrong with worker i, or nil: a failure message, an unexpected
-- errno, or a state other than the accepted ones.
function M.problem(shm, i, status, accept)
	local c = M.slot(shm, i)
	local state = c[M.STATE]
	if state == M.FAILED then
		return M.message(shm, i)
	end
	if status ~= 0 then
		return ("IO worker %d exited with status %s"):format(i, tostring(status))
	end
	if state == M.ENDED and not M.GONE[c[M.ERRNO]] then
		return ("IO worker %d ended on unexpected errno %d"):format(i, c[M.ERRNO])
	end
	if not accept[state] then
		return ("IO worker %d ended in state %d"):format(i, state)
	end
end

return M
