-- chain: two devices served by one process, stacked. A storage device
-- (the shipped mem backend, wrapped in scripts/backends/counting.lua so
-- the harness sees what reaches it) and a proxy device served by the
-- shipped file backend on the storage device's node with direct=1, so
-- every IO is forwarded with O_DIRECT from the proxy's own queue threads.
--
--   luablk run scripts/chain.lua [--size 64M] [--queues 2] [--json]
--
-- Bytes written to the proxy must land at the same offset in the storage
-- device's memory and read back through the proxy; bytes put into the
-- storage memory must read back through the proxy; discard and
-- write-zeroes must pass through. The proxy is closed first: its queue
-- states hold the storage node open, and DEL_DEV waits for openers.
local here = arg[0]:match("^(.*)/[^/]*$") or "."
package.path = here .. "/?.lua;" .. package.path

local ffi = require("ffi")
local posix = require("luablk.posix")
local H = require("lib.harness")
local S = require("lib.probe_steps")

local MiB = S.MiB
local BLKZEROOUT = 0x127f

local opts = H.options("chain", {
	size = { "size", 64 * MiB, "size of both devices" },
	queues = { "number", 2, "hardware queues of each device" },
	workers = { "number", 4, "concurrent IO processes through the proxy" },
	ops = { "number", 200, "random IOs per concurrent worker" },
	timeout = { "number", 180, "deadline of each step, seconds" },
}, arg)
S.require("chain", opts.size >= 8 * MiB and opts.size % MiB == 0, "--size must be a whole number of MiB, at least 8M")
S.require("chain", opts.workers >= 1 and opts.ops >= 1 and opts.queues >= 1,
	"--workers, --ops and --queues must be at least 1")

local run = S.start("chain", opts)
local storage, proxy, mem, counts, ranges

local function storage_counts()
	return S.counts(counts)
end

local function step_add_storage()
	storage = H.device({
		backend = here .. "/backends/counting.lua",
		args = { "inner=mem" },
		size = opts.size,
		queues = opts.queues,
	})
	mem = assert(storage:shared("mem"))
	counts = assert(storage:shared("counts"))
	return ("%s, mem backend, %d MiB, %d queues"):format(storage:path(), opts.size / MiB, storage:info().queues)
end

local function step_add_proxy()
	proxy = H.device({
		backend = "file",
		args = { "path=" .. storage:path(), "direct=1" },
		size = opts.size,
		queues = opts.queues,
	})
	return ("%s -> %s, %d queues"):format(proxy:path(), storage:path(), proxy:info().queues)
end

local function step_size()
	local size = run:work(S.device_size, proxy:path())
	if size ~= opts.size then
		error(("the proxy reports %d bytes, expected %d"):format(size, opts.size), 0)
	end
	return ("%d bytes"):format(size)
end

local function step_zeros()
	local before = storage_counts()
	local n = run:work(S.read_zeros, proxy:path(), { 0, opts.size / 2, opts.size - MiB }, MiB)
	local d = S.delta(before, storage_counts())
	if d.reads == 0 then
		error("reads through the proxy never reached the storage backend", 0)
	end
	return ("%d x 1 MiB through the proxy read as zeros; %d storage reads"):format(n, d.reads)
end

-- Proxy -> storage: random writes through the proxy appear byte for byte
-- at the same offsets in the storage backend, and nowhere else.
local function step_write_through()
	ranges = S.ranges(64, opts.size, 512, 512, 256 * 1024)
	local before = storage_counts()
	run:work(S.write_ranges, proxy:path(), ranges, 1000)
	S.check_exact(mem, opts.size, ranges, 1000)
	local d = S.delta(before, storage_counts())
	return ("%d random ranges written and read back through the proxy; storage"
		.. " holds them exactly (%d storage writes)"):format(#ranges, d.writes)
end

-- Worker: reads each range through the proxy and compares with the
-- pattern the harness put straight into the storage memory.
local function read_ranges(path, seed_base)
	local fd = S.open_direct(path)
	for _, r in ipairs(ranges) do
		local back = posix.aligned(r.len)
		S.pread(fd, back, r.len, r.off)
		if ffi.C.memcmp(S.pattern(r.len, seed_base + r.seed), back, r.len) ~= 0 then
			error(("proxy read at %d (+%d) differs from the storage memory"):format(r.off, r.len), 0)
		end
	end
	posix.close(fd)
	return #ranges
end

-- Storage -> proxy: new bytes put into the storage memory directly read
-- back through the proxy (its O_DIRECT path has no cache to hide them).
local function step_read_through()
	for _, r in ipairs(ranges) do
		S.fill(mem + r.off, r.len, 2000 + r.seed)
	end
	local n = run:work(read_ranges, proxy:path(), 2000)
	return ("%d ranges changed in storage memory read back through the proxy"):format(n)
end

-- Worker i owns [base, base+len): random reads and writes through the
-- proxy checked against a private shadow, then the shadow against the
-- storage memory.
local function mixed(i, base, len)
	S.pin(i - 1)
	math.randomseed(i * 7777)
	local shadow = posix.aligned(len)
	ffi.copy(shadow, mem + base, len)
	local fd = S.open_direct(proxy:path())
	local buf = posix.aligned(256 * 1024)
	local writes = 0
	for n = 1, opts.ops do
		local size = 512 * math.random(1, 512)
		local off = 512 * math.random(0, (len - size) / 512)
		if math.random() < 0.5 then
			S.fill(buf, size, i * 100000 + n)
			S.pwrite(fd, buf, size, base + off)
			ffi.copy(shadow + off, buf, size)
			writes = writes + 1
		else
			S.pread(fd, buf, size, base + off)
			if ffi.C.memcmp(buf, shadow + off, size) ~= 0 then
				error(("read of %d bytes at %d differs from what was written"):format(size, base + off), 0)
			end
		end
	end
	posix.close(fd)
	if ffi.C.memcmp(shadow, mem + base, len) ~= 0 then
		error(("storage memory of [%d, %d) differs from the worker's shadow"):format(base, base + len), 0)
	end
	return writes
end

local function step_concurrent()
	local part = math.floor(opts.size / opts.workers / 4096) * 4096
	local workers = {}
	for i = 1, opts.workers do
		workers[i] = run:fork(mixed, i, (i - 1) * part, part)
	end
	local writes = 0
	for _, w in ipairs(run:wait(workers)) do
		writes = writes + w
	end
	return ("%d workers x %d random IOs (%d writes) through the proxy; storage matches"):format(
		opts.workers, opts.ops, writes)
end

-- Worker: fills [off, off+len) through the proxy, then clears it with
-- the ioctl req (BLKDISCARD or BLKZEROOUT) and reads zeros back.
local function clear_range(req, off, len)
	local fd = S.open_direct(proxy:path())
	local buf = S.pattern(len, 31)
	S.pwrite(fd, buf, len, off)
	local range = ffi.new("uint64_t[2]", off, len)
	if ffi.C.ioctl(fd, req, range) ~= 0 then
		error(select(2, posix.fail("ioctl " .. req)), 0)
	end
	S.pread(fd, buf, len, off)
	posix.close(fd)
	local bad = S.nonzero(buf, 0, len)
	if bad then
		error(("byte %d reads back non-zero after clearing"):format(off + bad), 0)
	end
end

local function step_clear(name, req, field)
	return function()
		local off, len = opts.size / 2, MiB
		local before = storage_counts()
		run:work(clear_range, req, off, len)
		local d = S.delta(before, storage_counts())
		if S.nonzero(mem, off, len) then
			error("the storage memory still holds data after " .. name, 0)
		end
		if d[field] == 0 then
			error(name .. " did not reach the storage backend as such", 0)
		end
		return ("1 MiB cleared through the proxy; %d %s at the storage backend"):format(d[field], field)
	end
end

local function close_step(which)
	return function()
		local dev = which == "proxy" and proxy or storage
		local path = dev:path()
		local ok, err = dev:close()
		if not ok then
			error(err, 0)
		end
		if not S.gone(path, 10) then
			error(path .. " still exists 10 s after close", 0)
		end
		return path .. " gone"
	end
end

math.randomseed(os.time())
local t = opts.timeout
run:step("add storage device", t, step_add_storage)
run:step("add proxy device", t, step_add_proxy)
run:step("proxy BLKGETSIZE64", t, step_size)
run:step("zero read through proxy", t, step_zeros)
run:step("proxy -> storage", t, step_write_through)
run:step("storage -> proxy", t, step_read_through)
run:step("concurrent workers", t, step_concurrent)
run:step("discard through proxy", t, step_clear("BLKDISCARD", posix.BLKDISCARD, "discards"))
run:step("write-zeroes through proxy", t, step_clear("BLKZEROOUT", BLKZEROOUT, "write_zeroes"))
if proxy then
	run:step("close proxy", t, close_step("proxy"), true)
end
if storage then
	run:step("close storage", t, close_step("storage"), true)
end
return run:finish({ size = opts.size, queues = opts.queues })
