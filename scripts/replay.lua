-- replay: re-issues a trace recorded by the trace filter against a device
-- and reports every IO whose result differs from the recorded one.
--
--   luablk run scripts/replay.lua --trace FILE --device /dev/ublkbN
--       [--keep-time] [--limit N] [--json]
--
-- IOs go out one at a time, in timestamp order, from a forked worker with
-- O_DIRECT: reads with pread, writes with pwrite (of a pattern: the trace
-- holds no data), flushes with fdatasync, discards and write-zeroes with
-- BLKDISCARD and BLKZEROOUT. A result matches when both succeeded with
-- the same byte count, or both failed with the same errno. --keep-time
-- waits out the recorded gaps between IOs.
--
-- A flush only reaches a device that advertises a write cache; on one
-- that does not, fdatasync succeeds without sending it.
local here = arg[0]:match("^(.*)/[^/]*$") or "."
package.path = here .. "/?.lua;" .. package.path

local ffi = require("ffi")
local cjson = require("cjson")
local luablk = require("luablk")
local posix = require("luablk.posix")
local errno = require("luablk.errno")
local H = require("lib.harness")

local NAME = "replay"
local BLKDISCARD, BLKZEROOUT = 0x1277, 0x127f
local SHOWN = 20 -- mismatches listed in the summary

local opts = H.options(NAME, {
	trace = { "value", nil, "JSON-lines file written by --filter trace:path=FILE" },
	device = { "value", nil, "block device to replay against, e.g. /dev/ublkb0" },
	["keep-time"] = { "flag", false, "wait out the recorded gaps between IOs" },
	limit = { "number", nil, "replay only the first N IOs" },
}, arg)

local function die(msg)
	io.stderr:write(NAME, ": ", msg, "\n")
	os.exit(2)
end

local OPS = { read = true, write = true, flush = true, discard = true, write_zeroes = true }

local function valid(rec)
	return type(rec) == "table"
		and OPS[rec.op]
		and type(rec.off) == "number"
		and type(rec.len) == "number"
		and type(rec.res) == "number"
		and type(rec.ts) == "number"
end

-- The trace's records sorted by time (ties keep file order); dies with
-- the first bad line.
local function load_trace(path)
	local f, err = io.open(path, "r")
	if not f then
		die(err)
	end
	local recs, n = {}, 0
	for line in f:lines() do
		n = n + 1
		if line ~= "" then
			local ok, rec = pcall(cjson.decode, line)
			if not ok or not valid(rec) then
				die(("%s:%d: not a trace record"):format(path, n))
			end
			rec.line = n
			recs[#recs + 1] = rec
		end
	end
	f:close()
	table.sort(recs, function(a, b)
		if a.ts ~= b.ts then
			return a.ts < b.ts
		end
		return a.line < b.line
	end)
	return recs
end

------------------------------------------------------------------------
-- Worker side.

local function range_ioctl(fd, req, off, len)
	local range = ffi.new("uint64_t[2]", off, len)
	if ffi.C.ioctl(fd, req, range) < 0 then
		return -ffi.errno()
	end
	return 0
end

-- Issues one record; returns what the application saw (bytes, 0 or -errno).
local function issue(fd, buf, rec, i)
	local op = rec.op
	if op == "read" or op == "write" then
		local n, _, e
		if op == "read" then
			n, _, e = posix.pread_once(fd, buf, rec.len, rec.off)
		else
			ffi.fill(buf, rec.len, i % 251 + 1)
			n, _, e = posix.pwrite_once(fd, buf, rec.len, rec.off)
		end
		return n or -e
	elseif op == "flush" then
		local ok, _, e = posix.fdatasync(fd)
		return ok and 0 or -e
	end
	return range_ioctl(fd, op == "discard" and BLKDISCARD or BLKZEROOUT, rec.off, rec.len)
end

local function replay_worker(device, recs, out, keep_time)
	local fd = assert(posix.open(device, posix.O_RDWR + posix.O_DIRECT))
	local biggest = 4096
	for _, rec in ipairs(recs) do
		biggest = math.max(biggest, rec.len)
	end
	local buf = posix.aligned(biggest)
	local start, t0 = luablk.now(), recs[1] and recs[1].ts or 0
	local got = {}
	for i, rec in ipairs(recs) do
		if keep_time then
			local wait = (rec.ts - t0) / 1e9 - (luablk.now() - start)
			if wait > 0 then
				luablk.sleep(wait)
			end
		end
		got[i] = issue(fd, buf, rec, i)
	end
	posix.close(fd)
	local f = assert(io.open(out, "w"))
	f:write(cjson.encode(got))
	f:close()
end

------------------------------------------------------------------------

local function describe(res)
	if res < 0 then
		return errno.name(-res)
	end
	return res .. " bytes"
end

local function main()
	if not opts.trace or not opts.device then
		die("give --trace FILE and --device /dev/ublkbN")
	end
	if not posix.exists(opts.device) then
		die(opts.device .. ": no such device")
	end
	local recs = load_trace(opts.trace)
	if opts.limit then
		for i = #recs, opts.limit + 1, -1 do
			recs[i] = nil
		end
	end
	local out = ("/tmp/luablk-replay-%d.json"):format(ffi.C.getpid())
	local t0 = luablk.now()
	local status = H.wait_all({ H.fork(replay_worker, opts.device, recs, out, opts.keep_time) })[1]
	local f = io.open(out, "r")
	local got = f and cjson.decode(f:read("*a"))
	if f then
		f:close()
		os.remove(out)
	end
	if status ~= 0 or not got then
		die(("the replay worker exited %s"):format(tostring(status)))
	end
	local result = { ios = #recs, seconds = luablk.now() - t0, mismatches = {}, failures = {} }
	local lines = { ("%d IOs from %s against %s in %.1f s"):format(#recs, opts.trace, opts.device, result.seconds) }
	for i, rec in ipairs(recs) do
		if got[i] ~= rec.res then
			local m = { line = rec.line, op = rec.op, off = rec.off, len = rec.len, recorded = rec.res, replayed = got[i] }
			result.mismatches[#result.mismatches + 1] = m
			if #result.failures < SHOWN then
				result.failures[#result.failures + 1] = ("line %d: %s at %d+%d: recorded %s, replayed %s"):format(
					m.line,
					m.op,
					m.off,
					m.len,
					describe(m.recorded),
					describe(m.replayed)
				)
			end
		end
	end
	lines[#lines + 1] = ("%d mismatching results"):format(#result.mismatches)
	if #result.mismatches > SHOWN then
		result.failures[#result.failures + 1] = ("... and %d more"):format(#result.mismatches - SHOWN)
	end
	-- lua-cjson 2.1.0 writes an empty list as {}: mismatch_count is the
	-- field to test.
	result.mismatch_count = #result.mismatches
	return H.report(NAME, opts, result, lines)
end

return main()
