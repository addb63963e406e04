-- probe: one readable walk through a Lua-backed device, first at the
-- block level (O_DIRECT, page cache bypassed) and then with ext4 on it,
-- each step timed and given a deadline.
--
--   luablk run scripts/probe.lua [--size 128M] [--queues 2] [--json]
--
-- The device is the shipped mem backend wrapped in scripts/backends/
-- counting.lua, so the harness sees the backend's storage ("mem") and how
-- many calls each kind of work caused ("counts"). Every IO comes from
-- forked workers or helper programs; this process only serves the device,
-- checks its memory and keeps time. After the usual remount it also
-- replays the journal from a copy of the storage taken while mounted: a
-- crash image, so recovery really runs.
local here = arg[0]:match("^(.*)/[^/]*$") or "."
package.path = here .. "/?.lua;" .. package.path

local ffi = require("ffi")
local luablk = require("luablk")
local posix = require("luablk.posix")
local H = require("lib.harness")
local S = require("lib.probe_steps")

ffi.cdef("ssize_t read(int fd, void *buf, size_t count);")

local MiB = S.MiB
local UNIT = 512 -- data.txt is made of self-describing 512-byte units
local DATA_UNITS = 4096 -- 2 MiB

local opts = H.options("probe", {
	size = { "size", 128 * MiB, "device size" },
	queues = { "number", 2, "hardware queues" },
	writers = { "number", 4, "concurrent writer processes" },
	timeout = { "number", 180, "deadline of each step, seconds" },
}, arg)
S.require("probe", opts.size >= 32 * MiB and opts.size % MiB == 0, "--size must be a whole number of MiB, at least 32M")
S.require("probe", opts.writers >= 1 and opts.queues >= 1, "--writers and --queues must be at least 1")

local run = S.start("probe", opts)
local state = { token = bit.tohex(bit.bxor(ffi.C.getpid(), os.time())) }
local dev, mem, counts, path, mnt

local function count_now()
	return S.counts(counts)
end

local function kib(n)
	return ("%.0f KiB"):format(n / 1024)
end

-- data.txt unit `n`: a header naming the run and the unit, then a pattern.
-- Finding every unit intact in the backend memory proves where the
-- filesystem's bytes live.
local function make_unit(buf, n)
	local hdr = ("LBPROBE %s %08d\n"):format(state.token, n)
	ffi.copy(buf, hdr .. ("#"):rep(32 - #hdr), 32)
	S.fill(buf + 32, UNIT - 32, n * 7919 + tonumber(state.token, 16) % 65536)
end

local function data_file()
	local buf = posix.aligned(DATA_UNITS * UNIT)
	for n = 0, DATA_UNITS - 1 do
		make_unit(buf + n * UNIT, n)
	end
	return buf, DATA_UNITS * UNIT
end

-- Every file the filesystem steps write: name -> length and content.
local files = { { name = "data.txt", len = DATA_UNITS * UNIT, make = data_file } }

local function add_file(name, len, seed)
	local f = {
		name = name,
		len = len,
		make = function()
			return S.pattern(len, seed), len
		end,
	}
	files[#files + 1] = f
	return f
end

-- Worker helpers: write a file (optionally fsync it), check its content.
local function write_file(f, sync)
	local buf, len = f.make()
	local fd, err = posix.open(mnt .. "/" .. f.name, posix.O_WRONLY + posix.O_CREAT + posix.O_TRUNC)
	if not fd then
		error(err, 0)
	end
	local n, werr = posix.pwrite(fd, buf, len, 0)
	if n ~= len then
		error(("writing %s: %s"):format(f.name, werr or "short write"), 0)
	end
	if sync and ffi.C.fsync(fd) ~= 0 then
		error(select(2, posix.fail("fsync " .. f.name)), 0)
	end
	posix.close(fd)
end

local function check_file(f)
	local want, len = f.make()
	local fd, err = posix.open(mnt .. "/" .. f.name, posix.O_RDONLY)
	if not fd then
		error(err, 0)
	end
	local back = posix.aligned(len + 4096)
	local n = posix.pread(fd, back, len + 4096, 0)
	posix.close(fd)
	if n ~= len or ffi.C.memcmp(want, back, len) ~= 0 then
		error(("%s reads back wrong (%s of %d bytes)"):format(f.name, tostring(n), len), 0)
	end
end

local function check_all_files()
	for _, f in ipairs(files) do
		check_file(f)
	end
	return #files
end

-- Device level ----------------------------------------------------------

local function step_add()
	dev = H.device({
		backend = here .. "/backends/counting.lua",
		args = { "inner=mem" },
		size = opts.size,
		queues = opts.queues,
		write_cache = true,
	})
	path = dev:path()
	mem = assert(dev:shared("mem"))
	counts = assert(dev:shared("counts"))
	local info = dev:info()
	return ("%s, %d MiB, %d queues, depth %d, volatile write cache"):format(
		path, opts.size / MiB, info.queues, info.depth)
end

local function step_size()
	local size = run:work(S.device_size, path)
	if size ~= opts.size then
		error(("BLKGETSIZE64 says %d bytes, expected %d"):format(size, opts.size), 0)
	end
	local sectors = tonumber(S.sysfs("/sys/block/" .. path:match("[^/]+$") .. "/size"))
	if sectors and sectors * 512 ~= size then
		error(("sysfs size is %d sectors, not %d bytes"):format(sectors, size), 0)
	end
	return ("%d bytes"):format(size)
end

local function step_zeros()
	local offsets = { 0, opts.size - MiB }
	for _ = 1, 6 do
		offsets[#offsets + 1] = MiB * math.random(1, opts.size / MiB - 2)
	end
	local before = count_now()
	local n = run:work(S.read_zeros, path, offsets, MiB)
	local d = S.delta(before, count_now())
	if d.reads == 0 then
		error("the reads never reached the backend", 0)
	end
	return ("%d x 1 MiB read as zeros (%d backend reads)"):format(n, d.reads)
end

local function step_roundtrip()
	local ranges = S.ranges(32, opts.size, 512, 4096, 256 * 1024)
	local bytes = 0
	for _, r in ipairs(ranges) do
		bytes = bytes + r.len
	end
	run:work(S.write_ranges, path, ranges, 1000)
	S.check_exact(mem, opts.size, ranges, 1000)
	return ("%d random ranges, %s: read back equal; backend holds them"
		.. " at the same offsets, zeros elsewhere"):format(#ranges, kib(bytes))
end

-- Filesystem level ------------------------------------------------------

local function step_mkfs()
	local before = count_now()
	run:sh({ "mkfs.ext4", "-q", "-F", path })
	local d = S.delta(before, count_now())
	return ("%d writes (%s), %d discards"):format(d.writes, kib(d.written_bytes), d.discards)
end

local function step_mount()
	mnt = S.mkdir(("/tmp/luablk-probe-%d"):format(ffi.C.getpid()))
	run:sh({ "mount", path, mnt })
	state.mounted = true
	return "on " .. mnt
end

local function step_write_sync()
	run:work(write_file, files[1], false)
	local before = count_now()
	run:sh({ "sync", "-f", mnt .. "/data.txt" })
	local d = S.delta(before, count_now())
	if d.writes == 0 then
		error("sync -f caused no backend writes", 0)
	end
	return ("2 MiB file; sync -f: %d writes (%s), %d flushes"):format(d.writes, kib(d.written_bytes), d.flushes)
end

-- The worker measures around fsync itself, so the page-cache write
-- before it does not count.
local function fsync_alone(f)
	write_file(f, false)
	local fd = assert(posix.open(mnt .. "/" .. f.name, posix.O_WRONLY))
	local before = count_now()
	local rc = ffi.C.fsync(fd)
	local d = S.delta(before, count_now())
	posix.close(fd)
	if rc ~= 0 then
		error(select(2, posix.fail("fsync")), 0)
	end
	return d
end

local function step_fsync()
	local d = run:work(fsync_alone, add_file("fsync.dat", 256 * 1024, 77))
	if d.writes == 0 then
		error("fsync caused no backend writes", 0)
	end
	if d.flushes == 0 then
		error("fsync sent no FLUSH, though the device has a volatile write cache", 0)
	end
	return ("256 KiB file; fsync: %d writes (%s), %d flushes"):format(d.writes, kib(d.written_bytes), d.flushes)
end

local function step_readback()
	run:sh({ "sync", "-f", mnt })
	run:sh({ "sh", "-c", "echo 3 > /proc/sys/vm/drop_caches" })
	local before = count_now()
	local n = run:work(check_all_files)
	local d = S.delta(before, count_now())
	if d.reads == 0 then
		error("reading after drop_caches did not reach the backend", 0)
	end
	return ("%d files equal; %d backend reads (%s)"):format(n, d.reads, kib(d.read_bytes))
end

-- Looks at every 512-byte boundary of the backend memory for data.txt's
-- units and checks each one found in full.
local function step_scan()
	local prefix = ("LBPROBE %s "):format(state.token)
	local want = ffi.new("uint8_t[?]", UNIT)
	local found, nfound, corrupt = {}, 0, 0
	for off = 0, opts.size - UNIT, UNIT do
		if mem[off] == 76 and ffi.C.memcmp(mem + off, prefix, #prefix) == 0 then
			local n = tonumber(ffi.string(mem + off + #prefix, 8))
			if n and n < DATA_UNITS then
				make_unit(want, n)
				if ffi.C.memcmp(want, mem + off, UNIT) ~= 0 then
					corrupt = corrupt + 1
				elseif not found[n] then
					found[n], nfound = true, nfound + 1
				end
			end
		end
	end
	if corrupt > 0 or nfound ~= DATA_UNITS then
		error(("found %d of %d units of data.txt in backend memory, %d damaged"):format(
			nfound, DATA_UNITS, corrupt), 0)
	end
	return ("all %d units of data.txt found intact in backend memory"):format(DATA_UNITS)
end

local function writer(i, mine)
	S.pin(i - 1)
	for _, f in ipairs(mine) do
		write_file(f, true)
	end
	return #mine
end

local function step_writers()
	local workers, nfiles = {}, 0
	local before = S.queue_counts(counts, dev:info().queues)
	for i = 1, opts.writers do
		local mine = {}
		for j = 1, 8 do
			mine[j] = add_file(("w%d-%d.dat"):format(i, j), 128 * 1024, i * 100 + j)
		end
		nfiles = nfiles + #mine
		workers[i] = run:fork(writer, i, mine)
	end
	run:wait(workers)
	local after = S.queue_counts(counts, #before)
	local per = {}
	for q = 1, #before do
		per[q] = tostring(after[q] - before[q])
	end
	return ("%d writers, %d files of 128 KiB, each fsynced; IOs per queue: %s"):format(
		opts.writers, nfiles, table.concat(per, "/"))
end

-- ext4's superblock sits at byte 1024; its incompat features at +0x60
-- include RECOVER (0x4) while the journal may hold unreplayed work.
local function needs_recovery(p)
	local sb = p + 1024
	if ffi.cast("uint16_t *", sb + 0x38)[0] ~= 0xef53 then
		error("no ext4 superblock in backend memory", 0)
	end
	return bit.band(ffi.cast("uint32_t *", sb + 0x60)[0], 4) ~= 0
end

-- Copies the pages of the storage that hold data (S.resident_pages; the
-- rest are zeros) into the crash image; returns how many.
local function copy_image()
	local pages = S.resident_pages(mem, opts.size)
	if not pages then
		ffi.copy(state.image, mem, opts.size)
		return math.ceil(opts.size / 4096)
	end
	for _, pg in ipairs(pages) do
		ffi.copy(state.image + pg * 4096, mem + pg * 4096, 4096)
	end
	state.image_pages = pages
	return #pages
end

-- Puts the crash image back: its pages, and zeros over every other page
-- that holds data now.
local function restore_image()
	local pages = S.resident_pages(mem, opts.size)
	if not (pages and state.image_pages) then
		ffi.copy(mem, state.image, opts.size)
		return
	end
	local in_image = {}
	for _, pg in ipairs(state.image_pages) do
		in_image[pg] = true
		ffi.copy(mem + pg * 4096, state.image + pg * 4096, 4096)
	end
	for _, pg in ipairs(pages) do
		if not in_image[pg] then
			ffi.fill(mem + pg * 4096, 4096)
		end
	end
end

-- Copies the storage while the filesystem is mounted, at a moment when
-- no write is in flight: what the disk would hold after a power cut.
local function step_crash_image()
	state.image = posix.aligned(opts.size)
	for attempt = 1, 100 do
		local a = count_now()
		if a.changes_started == a.changes_done then
			local n = copy_image()
			local b = count_now()
			if b.changes_started == a.changes_started and b.changes_done == a.changes_done then
				if not needs_recovery(state.image) then
					error("the image of a mounted ext4 lacks needs_recovery", 0)
				end
				return ("copied %s of data on try %d; needs_recovery set"):format(kib(n * 4096), attempt)
			end
		end
		luablk.sleep(0.05)
	end
	error("the device never stayed quiet long enough to copy it", 0)
end

local function step_remount()
	run:sh({ "umount", mnt })
	state.mounted = false
	run:sh({ "mount", path, mnt })
	state.mounted = true
	return ("%d files equal after remount"):format(run:work(check_all_files))
end

-- The kernel log from now on: /dev/kmsg positioned at its end, or nil.
local function kmsg_open()
	local fd = posix.open("/dev/kmsg", posix.O_RDONLY + 2048) -- O_NONBLOCK
	if fd then
		ffi.C.lseek(fd, 0, posix.SEEK_END)
	end
	return fd
end

-- Reads the records logged since kmsg_open and closes it; true if one
-- contains `needle`.
local function kmsg_has(fd, needle)
	local buf = ffi.new("char[8192]")
	local hit = false
	while true do
		local n = ffi.C.read(fd, buf, 8192)
		if n < 0 and ffi.errno() == 32 then -- EPIPE: records were overwritten
			goto continue
		elseif n <= 0 then
			break
		end
		hit = hit or ffi.string(buf, n):find(needle, 1, true) ~= nil
		::continue::
	end
	posix.close(fd)
	return hit
end

local function flush_buffers()
	local fd = assert(posix.open(path, posix.O_RDONLY))
	local rc = ffi.C.ioctl(fd, posix.BLKFLSBUF, 0)
	posix.close(fd)
	if rc ~= 0 then
		error(select(2, posix.fail("BLKFLSBUF")), 0)
	end
end

-- Puts the crash image back (the block device's cache dropped, so the
-- kernel reads it) and mounts: ext4 must replay its journal and every
-- file synced before the copy must be there.
local function step_replay()
	run:sh({ "umount", mnt })
	state.mounted = false
	restore_image()
	state.image, state.image_pages = nil, nil
	run:work(flush_buffers)
	local log = kmsg_open()
	run:sh({ "mount", path, mnt })
	state.mounted = true
	local said = "kernel log unreadable"
	if log then
		if not kmsg_has(log, path:match("[^/]+$") .. "): recovery complete") then
			error("mount did not log 'recovery complete': the journal was not replayed", 0)
		end
		said = "kernel logged 'recovery complete'"
	end
	local n = run:work(check_all_files)
	return ("%s; %d files equal"):format(said, n)
end

local function step_umount()
	run:sh({ "umount", mnt })
	state.mounted = false
	if needs_recovery(mem) then
		error("needs_recovery still set after a clean umount", 0)
	end
	return "clean"
end

local function step_fsck()
	run:sh({ "e2fsck", "-fn", path })
	return "clean"
end

-- Cleanup (runs after failures too) -------------------------------------

local function step_cleanup_mount()
	if state.mounted then
		run:sh({ "umount", mnt })
		state.mounted = false
		return "unmounted"
	end
	return "nothing mounted"
end

local function step_close()
	local ok, err = dev:close()
	if not ok then
		error(err, 0)
	end
	if not S.gone(path, 10) then
		error(path .. " still exists 10 s after close", 0)
	end
	return path .. " gone"
end

math.randomseed(os.time())
local t = opts.timeout
run:step("add device", t, step_add)
run:step("BLKGETSIZE64", t, step_size)
run:step("zero read before mkfs", t, step_zeros)
run:step("random-block round trip", t, step_roundtrip)
run:step("mkfs.ext4", t, step_mkfs)
run:step("mount", t, step_mount)
run:step("write + sync -f", t, step_write_sync)
run:step("fsync alone", t, step_fsync)
run:step("drop caches + read back", t, step_readback)
run:step("scan backend for data.txt", t, step_scan)
run:step("concurrent writers", t, step_writers)
run:step("crash image while mounted", t, step_crash_image)
run:step("remount", t, step_remount)
run:step("replay journal of the image", t, step_replay)
run:step("umount", t, step_umount)
run:step("e2fsck -fn", t, step_fsck)
if run.failed and mnt then
	run:step("cleanup: umount", t, step_cleanup_mount, true)
end
if dev then
	run:step("close, node gone", t, step_close, true)
end
if mnt then
	S.rmdir(mnt)
end
return run:finish({ device = path, size = opts.size, queues = opts.queues })
