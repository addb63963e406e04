-- file: an image file or a block device, through pread/pwrite. Each queue
-- opens its own fd. flush is fdatasync, and the device advertises a
-- volatile write cache so that flushes arrive. A regular file shorter than the
-- device is extended (sparsely); a shorter block device is refused.
--
-- Arguments: path=FILE (or the first bare argument), direct=1 for O_DIRECT.
local ffi = require("ffi")
local posix = require("luablk.posix")
local errno = require("luablk.errno")

return function(dev, args)
	local path = args.path or args[1]
	if not path then
		error("give the image: luablk add file --size S -- path=FILE", 0)
	end
	local flags = posix.O_RDWR
	if args.direct == "1" then
		flags = bit.bor(flags, posix.O_DIRECT)
	end
	local fd, err = posix.open(path, flags)
	if not fd then
		error(err, 0)
	end
	local size = posix.size(fd)
	if size < dev.size then
		if ffi.C.ftruncate(fd, dev.size) ~= 0 then
			local _, msg = posix.fail(("%s has %d bytes, fewer than the device's %d"):format(path, size, dev.size))
			posix.close(fd)
			error(msg, 0)
		end
	end

	return {
		fd = fd,
		-- Writes land in the host's page cache: say so, so that the
		-- filesystem on top sends FLUSH when it needs durability.
		caps = { write_cache = true },
		read_at = function(_, buf, off, len)
			local n, _, e = posix.pread(fd, buf, len, off)
			if not n then
				return -e
			end
			if n < len then
				ffi.fill(buf + n, len - n)
			end
		end,
		write_at = function(_, buf, off, len)
			local n, _, e = posix.pwrite(fd, buf, len, off)
			if not n then
				return -e
			end
			if n < len then
				return -errno.ENOSPC
			end
		end,
		flush = function()
			local ok, _, e = posix.fdatasync(fd)
			if not ok then
				return -e
			end
		end,
	}
end
