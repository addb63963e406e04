-- What applications do reaches the backend as the matching operation:
-- fsync becomes FLUSH when the device has a write cache (and nothing
-- without one), blkdiscard becomes discard, blkdiscard -z write_zeroes.
local ffi = require("ffi")
local posix = require("luablk.posix")
local u = require("kernel.util")

local MiB = 2 ^ 20
local ops_backend = u.fixtures .. "/ops.lua"

local function all_zero(p, len)
	local zero = ffi.new("uint8_t[?]", len)
	return ffi.C.memcmp(p, zero, len) == 0
end

describe("fsync", function()
	-- FLUSHes the backend saw for dd's fsync on the device, for an fsync
	-- of a file in ext4, and the counters at the end.
	local function fsyncs(opts)
		local dev = u.add(opts)
		local path = dev:path()
		local before = u.ops(dev)
		u.sh({ "dd", "if=/dev/urandom", "of=" .. path, "bs=4k", "count=4", "conv=fsync", "status=none" })
		local by_dd = u.ops(dev).flushes - before.flushes
		local mnt = os.tmpname()
		os.remove(mnt)
		u.sh({ "mkdir", "-p", mnt })
		local by_file
		local ok, err = pcall(function()
			u.sh({ "mkfs.ext4", "-q", "-F", path })
			u.sh({ "mount", path, mnt })
			u.sh({ "dd", "if=/dev/zero", "of=" .. mnt .. "/f", "bs=4k", "count=1", "status=none" })
			u.sh({ "sync", "-f", mnt .. "/f" })
			local flushes = u.ops(dev).flushes
			u.sh({ "dd", "if=/dev/urandom", "of=" .. mnt .. "/f", "bs=4k", "count=1", "conv=fsync,notrunc", "status=none" })
			by_file = u.ops(dev).flushes - flushes
		end)
		u.run({ "umount", mnt })
		u.run({ "rmdir", mnt })
		local total = u.ops(dev)
		assert.is_true(dev:close())
		assert(ok, err)
		return by_dd, by_file, total
	end

	it("sends FLUSH to the backend when --write-cache is on", function()
		local by_dd, by_file = fsyncs({ backend = ops_backend, size = 64 * MiB, write_cache = true })
		assert.is_true(by_dd > 0, "dd conv=fsync sent no FLUSH")
		assert.is_true(by_file > 0, "fsync of a file on ext4 sent no FLUSH")
	end)

	it("sends no FLUSH to the backend without a write cache", function()
		local by_dd, by_file, total = fsyncs({ backend = ops_backend, size = 64 * MiB })
		assert.equal(0, by_dd)
		assert.equal(0, by_file)
		assert.equal(0, total.flushes)
		assert.is_true(total.writes > 0)
	end)
end)

describe("blkdiscard", function()
	it("reaches discard with the range asked for", function()
		local size = 64 * MiB
		local dev = u.add({ backend = ops_backend, size = size })
		local mem = dev:shared("mem")
		u.sh({ "dd", "if=/dev/urandom", "of=" .. dev:path(), "bs=1M", "count=8", "oflag=direct", "status=none" })
		u.sh({ "blkdiscard", "-o", tostring(MiB), "-l", tostring(4 * MiB), dev:path() })
		local ops = u.ops(dev)
		local inside, before, after = all_zero(mem + MiB, 4 * MiB), all_zero(mem, MiB), all_zero(mem + 5 * MiB, MiB)
		assert.is_true(dev:close())
		assert.is_true(ops.discards > 0)
		assert.equal(4 * MiB, ops.discarded)
		assert.equal(MiB, ops.lo)
		assert.equal(5 * MiB, ops.hi)
		assert.is_true(inside, "discarded range not zeroed by the backend")
		assert.is_false(before)
		assert.is_false(after)
	end)

	it("is split at --max-discard", function()
		local dev = u.add({ backend = ops_backend, size = 64 * MiB, max_discard = MiB })
		u.sh({ "blkdiscard", "-o", "0", "-l", tostring(8 * MiB), dev:path() })
		local ops = u.ops(dev)
		assert.is_true(dev:close())
		assert.equal(8 * MiB, ops.discarded)
		assert.is_true(ops.discards >= 8, "8 MiB in discards of at most 1 MiB came as " .. ops.discards)
	end)

	-- 6.12's sysfs discard_alignment shows the alignment offset instead,
	-- so the alignment is checked by its effect: a discard longer than
	-- the largest is split so that the next piece starts at the
	-- alignment within a granule.
	it("is split at --discard-alignment within --discard-granularity", function()
		local gran, align = 65536, 8192
		local function first_piece(alignment)
			local dev = u.add({
				backend = ops_backend,
				size = 64 * MiB,
				discard_granularity = gran,
				discard_alignment = alignment,
				max_discard = 4 * gran,
			})
			u.sh({ "blkdiscard", "-o", "0", "-l", tostring(MiB), dev:path() })
			local ops = u.ops(dev)
			assert.is_true(dev:close())
			assert.equal(MiB, ops.discarded)
			assert.equal(0, ops.lo)
			return ops.lo_len
		end
		assert.equal(align, first_piece(align) % gran)
		assert.equal(0, first_piece(nil) % gran)
	end)

	it("with -z reaches write_zeroes and reads back zeros", function()
		local dev = u.add({ backend = ops_backend, size = 64 * MiB })
		u.sh({ "dd", "if=/dev/urandom", "of=" .. dev:path(), "bs=1M", "count=4", "oflag=direct", "status=none" })
		u.sh({ "blkdiscard", "-z", "-o", "0", "-l", tostring(2 * MiB), dev:path() })
		local fd = u.open_direct(dev:path())
		local buf = posix.aligned(2 * MiB)
		assert.equal(2 * MiB, u.pread(fd, buf, 2 * MiB, 0))
		posix.close(fd)
		local ops = u.ops(dev)
		assert.is_true(dev:close())
		assert.is_true(ops.zeroes > 0)
		assert.equal(2 * MiB, ops.zeroed)
		assert.equal(0, ops.discards)
		assert.is_true(all_zero(buf, 2 * MiB))
	end)
end)
