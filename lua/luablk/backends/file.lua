-- file: an image file or a block device, through pread/pwrite. Each queue
-- opens its own fd and closes it in close(). flush is fdatasync, and the
-- device advertises a volatile write cache so that flushes arrive. It
-- advertises FUA too: a write that carries it is written with RWF_DSYNC,
-- so it is durable when the backend returns.
-- Discard becomes hole punching on a file and BLKDISCARD on a block
-- device. Write-zeroes punches a hole too, unless the IO carries
-- LUABLK_IO_F_NOUNMAP (fallocate -z on the device): then the range is
-- zeroed in place and stays allocated, so a later write cannot meet
-- ENOSPC (FALLOC_FL_ZERO_RANGE, or written zeros where the file system
-- lacks it, as tmpfs does). On a block device it is BLKZEROOUT, which
-- never deallocates. A regular file shorter than the
-- device is extended (sparsely); a shorter block device is refused.
-- Without --size the device has the file's or block device's size.
--
-- Arguments: path=FILE (or the first bare argument), direct=1 for O_DIRECT
-- (IO buffers are page aligned, so any block device accepts them),
-- async=0 to serve one IO at a time per queue.
--
-- Reads, writes, flushes and the file's fallocate calls go through
-- luablk.aio: the backend is async (docs/async.md), so a queue keeps many
-- IOs in flight on its own io_uring; with async=0 the same calls block,
-- as plain pread/pwrite would. The block device ioctls always block.
local ffi = require("ffi")
local aio = require("luablk.aio")
local posix = require("luablk.posix")
local errno = require("luablk.errno")
local C = require("luablk").C

local BLKZEROOUT = 0x127f
local FUA, band = C.LUABLK_IO_F_FUA, bit.band

local function open(path, args, dev)
	local flags = posix.O_RDWR
	if args.direct == "1" then
		flags = bit.bor(flags, posix.O_DIRECT)
	end
	local fd, err = posix.open(path, flags)
	if not fd then
		error(err, 0)
	end
	local size = posix.size(fd)
	if dev.size == 0 and size == 0 then
		posix.close(fd)
		error(("%s is empty: give the device's size (--size)"):format(path), 0)
	end
	if size < dev.size and ffi.C.ftruncate(fd, dev.size) ~= 0 then
		local _, msg = posix.fail(("%s has %d bytes, fewer than the device's %d"):format(path, size, dev.size))
		posix.close(fd)
		error(msg, 0)
	end
	return fd, math.max(size, dev.size)
end

-- discard and write_zeroes for a block device: ioctls on a byte range.
local function block_ops(fd)
	local range = ffi.new("uint64_t[2]")
	local function ioctl(req, off, len)
		range[0], range[1] = off, len
		if ffi.C.ioctl(fd, req, range) ~= 0 then
			return -ffi.errno()
		end
	end
	return function(_, off, len)
		return ioctl(posix.BLKDISCARD, off, len)
	end, function(_, off, len)
		return ioctl(BLKZEROOUT, off, len)
	end
end

-- Moves len bytes with an aio call, resuming after a short transfer;
-- returns the bytes moved (fewer only at the end of a file) or -errno.
-- The first call is outside the loop: a loop entered once per IO turns
-- hot, and the JIT then tries to record a trace through the wait's
-- coroutine yield, aborting every time, until it blacklists the loop.
local function full(op, fd, buf, len, off, flags)
	local done = op(fd, buf, len, off, flags)
	if done < 0 or done == len or done == 0 then
		return done
	end
	while done < len do
		local n = op(fd, buf + done, len - done, off + done, flags)
		if n < 0 then
			return n
		elseif n == 0 then
			break
		end
		done = done + n
	end
	return done
end

local ZEROS = 65536 -- bytes of the zero buffer written where ZERO_RANGE is missing

-- Zeros [off, off + len) of fd by writing them.
local function write_zeros(fd, zeros, off, len)
	while len > 0 do
		local n = math.min(len, ZEROS)
		local r = full(aio.write, fd, zeros, n, off)
		if r < 0 then
			return r
		end
		off, len = off + n, len - n
	end
end

-- discard and write_zeroes for a file: deallocate or zero the range.
local function file_ops(fd)
	local function falloc(mode, off, len)
		local r = aio.fallocate(fd, mode, off, len)
		if r < 0 then
			return r
		end
	end
	local punch = bit.bor(posix.FALLOC_FL_PUNCH_HOLE, posix.FALLOC_FL_KEEP_SIZE)
	local zero_range = bit.bor(posix.FALLOC_FL_ZERO_RANGE, posix.FALLOC_FL_KEEP_SIZE)
	local NOUNMAP, EOPNOTSUPP = C.LUABLK_IO_F_NOUNMAP, -errno.EOPNOTSUPP
	local zeros -- made on the first write_zeroes that needs it
	return function(_, off, len)
		return falloc(punch, off, len)
	end, function(_, off, len, flags)
		if band(flags or 0, NOUNMAP) == 0 then
			return falloc(punch, off, len)
		end
		if not zeros then
			local r = falloc(zero_range, off, len)
			if r ~= EOPNOTSUPP then
				return r
			end
			zeros = ffi.new("uint8_t[?]", ZEROS)
		end
		return write_zeros(fd, zeros, off, len)
	end
end

return function(dev, args)
	local path = args.path or args[1]
	if not path then
		error("give the image: luablk add file -- path=FILE", 0)
	end
	local fd, size = open(path, args, dev)
	local is_block = ffi.C.ioctl(fd, posix.BLKGETSIZE64, ffi.new("uint64_t[1]")) == 0
	local discard, write_zeroes
	if is_block then
		discard, write_zeroes = block_ops(fd)
	else
		discard, write_zeroes = file_ops(fd)
	end

	return {
		-- Writes land in a page cache or a device cache: say so, so that
		-- the filesystem on top sends FLUSH when it needs durability.
		caps = { write_cache = true, fua = true },
		size = size, -- the device's, unless --size says otherwise
		async = args.async ~= "0",
		read_at = function(_, buf, off, len)
			local n = full(aio.read, fd, buf, len, off)
			if n < 0 then
				return n
			end
			if n < len then
				if is_block then
					return -errno.EIO
				end
				ffi.fill(buf + n, len - n) -- past the end of a file
			end
		end,
		write_at = function(_, buf, off, len, flags)
			-- A FUA write is durable when it returns, as with O_DSYNC.
			local rw = band(flags or 0, FUA) ~= 0 and aio.RWF_DSYNC or 0
			local n = full(aio.write, fd, buf, len, off, rw)
			if n < 0 then
				return n
			end
			if n < len then
				return -errno.ENOSPC
			end
		end,
		flush = function()
			local r = aio.fsync(fd, true)
			if r < 0 then
				return r
			end
		end,
		discard = discard,
		write_zeroes = write_zeroes,
		close = function()
			posix.close(fd)
		end,
	}
end
