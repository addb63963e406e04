-- stats: counts every IO that passes through, per operation: IOs, bytes,
-- errors, total latency and a log2 latency histogram.
--
--   --filter stats            then: luablk stats ID [--json]
--
-- Options: name= (instance name when a device has several stats filters).
--
-- The counters live in the shared region "stats" (or "stats.NAME"): a
-- header, then one slot per queue. Each queue writes only its own slot,
-- so the IO path needs no atomics; readers add the slots up. Counters
-- are doubles: exact up to 2^53, and plain Lua arithmetic on the IO path
-- (64-bit integer cdata would box in the interpreter).
local ffi = require("ffi")
local filters = require("luablk.filters")
local H = require("luablk.filters.helpers")
local C = require("luablk").C

local M = {}

M.BUCKETS = 32 -- bucket i holds latencies in [2^i, 2^(i+1)) ns; the last is open

if not pcall(ffi.typeof, "struct luablk_stats_op") then
	ffi.cdef([[
	struct luablk_stats_op {
		double count, bytes, errors, lat_ns;
		double hist[32];
	};
	struct luablk_stats_header {
		uint64_t magic, version, queues, start_ns;
		uint64_t reserved[4];
	};
	]])
end

local MAGIC, VERSION = 0x7374617473, 1 -- "stats"
local NOPS = 6 -- slots indexed by op number 0..5 (4 is unused)
local HEADER = ffi.sizeof("struct luablk_stats_header")
local OP_SIZE = ffi.sizeof("struct luablk_stats_op")

function M.region_name(name)
	if name == nil or name == "" then
		return "stats"
	end
	return "stats." .. name
end

local function size_for(queues)
	return HEADER + queues * NOPS * OP_SIZE
end

-- The op slots of one queue: a table op number -> struct pointer.
local function slots(region, q)
	local base = ffi.cast("struct luablk_stats_op *", region + HEADER) + q * NOPS
	local out = {}
	for _, op in pairs(H.OPS) do
		out[op] = base + op
	end
	return out
end

local POW2 = {}
for i = 0, M.BUCKETS do
	POW2[i] = 2 ^ i
end
local INV_LN2 = 1 / math.log(2)
local LAST = M.BUCKETS - 1

local function bucket(ns)
	if ns < 2 then
		return 0
	end
	local b = math.floor(math.log(ns) * INV_LN2)
	if b >= LAST then
		return LAST
	end
	-- log() may land just below an exact power of two.
	if ns >= POW2[b + 1] then
		b = b + 1
	end
	return b
end
M.bucket = bucket

local function new(inner, opts, dev)
	H.check_keys("stats", opts, { "name" })
	if opts.name and not tostring(opts.name):match("^[%w_%-]+$") then
		error(("name= must be letters, digits, '_' or '-', not '%s'"):format(tostring(opts.name)), 0)
	end
	local queues = dev.queues or 1
	local region = dev:shared(M.region_name(opts.name), size_for(queues))
	local hdr = ffi.cast("struct luablk_stats_header *", region)
	hdr.magic, hdr.version, hdr.queues = MAGIC, VERSION, queues
	if hdr.start_ns == 0 then
		hdr.start_ns = C.luablk_now_ns()
	end
	local mine = slots(region, dev.queue or 0)
	local now, tonumber, pcall, error = C.luablk_now_ns, tonumber, pcall, error

	-- Accounts one finished call; a Lua error is passed on, as an error.
	local function done(s, len, t0, ok, r)
		local ns = tonumber(now()) - t0
		s.count = s.count + 1
		s.lat_ns = s.lat_ns + ns
		if ok and (r == nil or r == true) then
			s.bytes = s.bytes + len
		else
			s.errors = s.errors + 1
		end
		local b = bucket(ns)
		s.hist[b] = s.hist[b] + 1
		if not ok then
			error(r, 0)
		end
		return r
	end

	local be = {}
	local read_at, write_at = inner.read_at, inner.write_at
	local s_read, s_write = mine[0], mine[1]
	be.read_at = function(_, buf, off, len, flags)
		local t0 = tonumber(now())
		return done(s_read, len, t0, pcall(read_at, inner, buf, off, len, flags))
	end
	be.write_at = function(_, buf, off, len, flags)
		local t0 = tonumber(now())
		return done(s_write, len, t0, pcall(write_at, inner, buf, off, len, flags))
	end
	if inner.flush then
		local flush, s = inner.flush, mine[2]
		be.flush = function()
			local t0 = tonumber(now())
			return done(s, 0, t0, pcall(flush, inner))
		end
	end
	for _, name in ipairs({ "discard", "write_zeroes" }) do
		local fn, s = inner[name], mine[H.OPS[name]]
		if fn then
			be[name] = function(_, off, len, flags)
				local t0 = tonumber(now())
				return done(s, len, t0, pcall(fn, inner, off, len, flags))
			end
		end
	end
	return filters.wrap(inner, be)
end

setmetatable(M, {
	__call = function(_, inner, opts, dev)
		return new(inner, opts or {}, dev)
	end,
})

------------------------------------------------------------------------
-- Reading, from the serving process or any other (by device id).

-- Totals over every queue: { queues, uptime_s, ops = { read = { count,
-- bytes, errors, lat_ns, hist = {...} }, ... } }, or nil, message.
function M.read(target, name)
	local p, size, release = H.region(target, M.region_name(name))
	if not p then
		return nil, H.missing("stats filter", size)
	end
	local hdr = ffi.cast("struct luablk_stats_header *", p)
	-- Another process's region: its header must agree with its size.
	local queues = size >= HEADER and tonumber(hdr.queues) or 0
	if hdr.magic ~= MAGIC or hdr.version ~= VERSION or queues < 1 or size_for(queues) > size then
		release()
		return nil, "region " .. M.region_name(name) .. " is not a stats region of this version"
	end
	local out = {
		queues = queues,
		uptime_s = (tonumber(C.luablk_now_ns()) - tonumber(hdr.start_ns)) / 1e9,
		ops = {},
	}
	for opname, op in pairs(H.OPS) do
		local t = { count = 0, bytes = 0, errors = 0, lat_ns = 0, hist = {} }
		for b = 1, M.BUCKETS do
			t.hist[b] = 0
		end
		for q = 0, queues - 1 do
			local s = slots(p, q)[op]
			t.count, t.bytes = t.count + s.count, t.bytes + s.bytes
			t.errors, t.lat_ns = t.errors + s.errors, t.lat_ns + s.lat_ns
			for b = 1, M.BUCKETS do
				t.hist[b] = t.hist[b] + s.hist[b - 1]
			end
		end
		out.ops[opname] = t
	end
	release()
	return out
end

-- The latency (ns, the top of its bucket) below which a fraction p of the
-- IOs in a histogram fall; nil for an empty one.
function M.percentile(hist, p)
	local total = 0
	for _, n in ipairs(hist) do
		total = total + n
	end
	if total == 0 then
		return nil
	end
	local seen = 0
	for i, n in ipairs(hist) do
		seen = seen + n
		if seen >= p * total then
			return POW2[i]
		end
	end
	return POW2[#hist]
end

-- Rates between two readings taken dt seconds apart: { iops, mib_s,
-- errors_s } over every op.
function M.rates(a, b, dt)
	local ios, bytes, errs = 0, 0, 0
	for opname, t in pairs(b.ops) do
		local s = a.ops[opname]
		ios = ios + t.count - s.count
		bytes = bytes + t.bytes - s.bytes
		errs = errs + t.errors - s.errors
	end
	return { iops = ios / dt, mib_s = bytes / dt / 2 ^ 20, errors_s = errs / dt, interval_s = dt }
end

return M
