-- fault: fails chosen IOs with a chosen errno, and logs every IO it failed.
--
--   --filter fault:op=read+write,rate=0.1,errno=EIO,seed=7
--
-- Options (all optional; see docs/filters.md):
--   op=      read, write, flush, discard, write_zeroes, joined with '+';
--            default all
--   rate=    probability of failing a selected IO (default 1)
--   from=, to=  byte range [from, to): only IOs overlapping it (sizes take
--            K/M/G suffixes); flush has no range and never matches
--   flag=1   fail only while the device's fault flag is on
--   nth=N    fail only the Nth selected IO (1-based, counted across queues)
--   after=N  fail only selected IOs after the first N
--   errno=   a name (EIO, ENOSPC) or a number; default EIO
--   seed=    RNG seed for rate (default 1); each queue draws its own stream
--   name=    instance name when a device has several fault filters
--   log=     capacity of the failure log in records (default 65536)
--
-- The selectors apply in the order op, range, flag, count (nth/after),
-- rate, and all must agree. nth and after count the IOs that passed op,
-- range and flag, in one counter shared by every queue.
--
-- The module is also the control API: set() flips the device's fault flag
-- (from the serving process, or from any process by device id), log()
-- reads back the failed IOs, state() the counters.
local ffi = require("ffi")
local errno = require("luablk.errno")
local filters = require("luablk.filters")
local H = require("luablk.filters.helpers")
local lb = require("luablk")

local C = lb.C

if not pcall(ffi.typeof, "struct luablk_fault_record") then
	ffi.cdef([[
	struct luablk_fault_record {
		uint64_t seq;     /* 1 + the record's position; 0 while unwritten */
		double off;
		uint32_t len;
		int32_t err;      /* positive errno */
		uint8_t op;       /* LUABLK_OP_* */
		uint8_t reserved;
		uint16_t queue;
		uint32_t reserved2;
	};
	]])
end

local M = {}

local MAGIC = 0x6661756c74 -- "fault"
local HEADER = 64 -- bytes before the first record
-- Header words (uint64) of an instance region.
local W_MAGIC, W_CAPACITY, W_MATCHED, W_FAILED = 0, 1, 2, 3

-- Region names: one control region per device holds the flag that every
-- fault filter of the device obeys; each instance has its own log.
M.CTL = "fault.ctl"
-- Control region words: the flag, then a magic that tells the region from
-- any other file before another process writes into it.
local CTL_SIZE, CTL_FLAG, CTL_MAGIC, CTL_MAGIC_VALUE = 64, 0, 1, 0x6661756c74637463 -- "faultctc"

function M.region_name(name)
	if name == nil or name == "" then
		return "fault"
	end
	return "fault." .. name
end

------------------------------------------------------------------------
-- The filter.

local KNOWN = { "op", "rate", "from", "to", "flag", "nth", "after", "errno", "seed", "name", "log" }

local function parse(opts)
	H.check_keys("fault", opts, KNOWN)
	local cfg = {
		ops = H.parse_ops(opts.op),
		rate = H.number(opts, "rate", 1, 0, 1),
		from = H.bytes(opts, "from"),
		to = H.bytes(opts, "to"),
		flag = H.flag(opts, "flag"),
		nth = H.number(opts, "nth", nil, 1),
		after = H.number(opts, "after", nil, 0),
		seed = H.number(opts, "seed", 1, 0, 2 ^ 53),
		name = opts.name and tostring(opts.name),
		log = H.number(opts, "log", 65536, 1, 2 ^ 24),
	}
	local e = opts.errno == nil and errno.EIO or errno.number(tostring(opts.errno))
	if not e or e % 1 ~= 0 or e < 1 or e > 4095 then
		error(("errno= must be an errno name (EIO, ENOSPC) or a number 1..4095, not '%s'"):format(tostring(opts.errno)), 0)
	end
	cfg.errno = e
	if cfg.name and not cfg.name:match("^[%w_%-]+$") then
		error(("name= must be letters, digits, '_' or '-', not '%s'"):format(cfg.name), 0)
	end
	if cfg.from or cfg.to then
		cfg.from, cfg.to = cfg.from or 0, cfg.to or 2 ^ 53
		if cfg.to <= cfg.from then
			error(("to= (%d) must be above from= (%d)"):format(cfg.to, cfg.from), 0)
		end
	end
	return cfg
end

-- The filter's shared state: the device's flag word and this instance's
-- header words and record ring.
local function shared_state(dev, cfg)
	local size = HEADER + cfg.log * ffi.sizeof("struct luablk_fault_record")
	local region = dev:shared(M.region_name(cfg.name), size)
	local words = ffi.cast("uint64_t *", region)
	words[W_MAGIC] = MAGIC
	words[W_CAPACITY] = cfg.log
	local flag = ffi.cast("uint64_t *", dev:shared(M.CTL, CTL_SIZE))
	flag[CTL_MAGIC] = CTL_MAGIC_VALUE
	return words, ffi.cast("struct luablk_fault_record *", region + HEADER), flag
end

function M.new(inner, opts, dev)
	local cfg = parse(opts or {})
	local words, records, flag_word = shared_state(dev, cfg)
	local matched_p, failed_p = words + W_MATCHED, words + W_FAILED
	local capacity, err, queue = cfg.log, cfg.errno, dev.queue or 0
	local rate, random = cfg.rate, H.rng(cfg.seed, queue)
	local ranged, from, to = cfg.from ~= nil, cfg.from, cfg.to
	local use_flag, nth, after = cfg.flag, cfg.nth, cfg.after
	local counting = nth ~= nil or after ~= nil
	local atomic_add, atomic_load, tonumber = C.luablk_atomic_add, C.luablk_atomic_load, tonumber

	-- Whether this IO fails; has_range is false for flush.
	local function hit(off, len, has_range)
		if ranged and (not has_range or off + len <= from or off >= to) then
			return false
		end
		if use_flag and atomic_load(flag_word) == 0ULL then
			return false
		end
		if counting then
			local n = tonumber(atomic_add(matched_p, 1))
			if (nth and n ~= nth) or (after and n <= after) then
				return false
			end
		end
		return rate >= 1 or random() < rate
	end

	-- Logs the failure in the ring (claiming a slot atomically, so queues
	-- never share one) and returns the IO's result.
	local function fail(op, off, len)
		local slot = tonumber(atomic_add(failed_p, 1)) - 1
		local rec = records[slot % capacity]
		rec.seq = 0
		rec.off, rec.len, rec.err, rec.op, rec.queue = off, len, err, op, queue
		rec.seq = slot + 1
		return -err
	end

	local ops = cfg.ops
	local be = {}
	local read_at, write_at = inner.read_at, inner.write_at
	local fail_read, fail_write = ops.read, ops.write
	be.read_at = function(_, buf, off, len, flags)
		if fail_read and hit(off, len, true) then
			return fail(0, off, len)
		end
		return read_at(inner, buf, off, len, flags)
	end
	be.write_at = function(_, buf, off, len, flags)
		if fail_write and hit(off, len, true) then
			return fail(1, off, len)
		end
		return write_at(inner, buf, off, len, flags)
	end
	if inner.flush then
		local flush, fail_flush = inner.flush, ops.flush
		be.flush = function()
			if fail_flush and hit(0, 0, false) then
				return fail(2, 0, 0)
			end
			return flush(inner)
		end
	end
	for _, name in ipairs({ "discard", "write_zeroes" }) do
		local fn, selected, op = inner[name], ops[name], H.OPS[name]
		if fn then
			be[name] = function(_, off, len, flags)
				if selected and hit(off, len, true) then
					return fail(op, off, len)
				end
				return fn(inner, off, len, flags)
			end
		end
	end
	return filters.wrap(inner, be)
end

setmetatable(M, {
	__call = function(_, inner, opts, dev)
		return M.new(inner, opts, dev)
	end,
})

------------------------------------------------------------------------
-- Control, from a harness or another process.

-- The device's control words and a release function, or nil, message.
local function control(target)
	local p, size, release = H.region(target, M.CTL)
	if not p then
		return nil, H.missing("fault filter", size)
	end
	local words = ffi.cast("uint64_t *", p)
	if size < CTL_SIZE or words[CTL_MAGIC] ~= CTL_MAGIC_VALUE then
		release()
		return nil, "region " .. M.CTL .. " is not a fault control region"
	end
	return words, release
end

-- Turns the device's fault flag on or off. Returns true or nil, message.
function M.set(target, on)
	local words, release = control(target)
	if not words then
		return nil, release
	end
	C.luablk_atomic_store(words + CTL_FLAG, on and 1 or 0)
	release()
	return true
end

-- Whether the device's fault flag is on; nil, message without a filter.
function M.get(target)
	local words, release = control(target)
	if not words then
		return nil, release
	end
	local on = C.luablk_atomic_load(words + CTL_FLAG) ~= 0ULL
	release()
	return on
end

local function instance(target, name)
	local p, size, release = H.region(target, M.region_name(name))
	if not p then
		return nil, H.missing(name and ("fault filter named " .. name) or "fault filter", size)
	end
	local words = ffi.cast("uint64_t *", p)
	-- Another process's region: its header must agree with its size.
	local capacity = size >= HEADER and tonumber(words[W_CAPACITY]) or 0
	if
		size < HEADER
		or words[W_MAGIC] ~= MAGIC
		or capacity < 1
		or HEADER + capacity * ffi.sizeof("struct luablk_fault_record") > size
	then
		release()
		return nil, "region " .. M.region_name(name) .. " is not a fault log"
	end
	return words, ffi.cast("struct luablk_fault_record *", p + HEADER), release
end

-- Counters of a fault filter: { matched, failed, capacity, lost }.
function M.state(target, name)
	local words, err, release = instance(target, name)
	if not words then
		return nil, err
	end
	local failed = tonumber(C.luablk_atomic_load(words + W_FAILED))
	local capacity = tonumber(words[W_CAPACITY])
	local st = {
		matched = tonumber(C.luablk_atomic_load(words + W_MATCHED)),
		failed = failed,
		capacity = capacity,
		lost = math.max(0, failed - capacity),
	}
	release()
	return st
end

-- The IOs a fault filter failed, oldest first (the ring keeps the last
-- `log=` of them): a list of { seq, op, off, len, errno, queue } plus the
-- state table.
function M.log(target, name)
	local words, records, release = instance(target, name)
	if not words then
		return nil, records
	end
	local failed = tonumber(C.luablk_atomic_load(words + W_FAILED))
	local capacity = tonumber(words[W_CAPACITY])
	local out = {}
	for seq = math.max(1, failed - capacity + 1), failed do
		local r = records[(seq - 1) % capacity]
		-- A slot still being written (seq not yet stored) is skipped.
		if tonumber(r.seq) == seq then
			out[#out + 1] = {
				seq = seq,
				op = H.OP_NAMES[r.op] or tostring(r.op),
				off = r.off,
				len = r.len,
				errno = r.err,
				queue = r.queue,
			}
		end
	end
	release()
	return out
end

-- Clears a fault filter's counters and log (nth/after count from 0 again).
function M.reset(target, name)
	local words, err, release = instance(target, name)
	if not words then
		return nil, err
	end
	C.luablk_atomic_store(words + W_MATCHED, 0)
	C.luablk_atomic_store(words + W_FAILED, 0)
	release()
	return true
end

return M
