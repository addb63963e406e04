-- delay: adds latency to chosen operations before passing them on.
--
--   --filter delay:ms=1                 1 ms before every IO
--   --filter delay:op=write,min=0.5,max=5,seed=3
--
-- Options: ms= (fixed), or min= and max= (uniform, drawn from a seeded
-- RNG per queue); milliseconds, fractions allowed. op= as for fault
-- (default all). seed= (default 1). serial=1 (see below).
--
-- Each delayed IO waits on a timer of its own (luablk.aio), and the
-- filter is async (docs/async.md), so the delay adds latency without
-- capping throughput: ms=1 at queue depth 32 serves about 32 times the
-- IOs per second of depth 1. With serial=1 the queue thread itself sleeps
-- instead, so the IOs of one queue are delayed one after another (ms=1
-- caps a queue near 1000 IOs per second whatever the depth): a device
-- that serves one request at a time.
local filters = require("luablk.filters")
local H = require("luablk.filters.helpers")
local aio = require("luablk.aio")
local C = require("luablk").C

local M = {
	-- How the filter waits (ns), read when it is built: specs swap in a
	-- recorder. Inside an async method the timer yields; elsewhere it
	-- blocks.
	sleep = function(ns)
		aio.sleep(ns / 1e9)
	end,
}

local KNOWN = { "op", "ms", "min", "max", "seed", "serial" }

local function parse(opts)
	H.check_keys("delay", opts, KNOWN)
	local cfg = {
		ops = H.parse_ops(opts.op),
		ms = H.number(opts, "ms", nil, 0, 3600e3),
		min = H.number(opts, "min", nil, 0, 3600e3),
		max = H.number(opts, "max", nil, 0, 3600e3),
		seed = H.number(opts, "seed", 1, 0, 2 ^ 53),
		serial = H.flag(opts, "serial"),
	}
	if cfg.ms and (cfg.min or cfg.max) then
		error("give either ms= or min= and max=, not both", 0)
	end
	if not cfg.ms then
		if not (cfg.min and cfg.max) then
			error("give ms= (fixed) or min= and max= (random), in milliseconds", 0)
		end
		if cfg.max < cfg.min then
			error(("max= (%s) is below min= (%s)"):format(cfg.max, cfg.min), 0)
		end
	end
	return cfg
end

local function new(inner, opts, dev)
	local cfg = parse(opts or {})
	local sleep = cfg.serial and C.luablk_sleep_ns or M.sleep
	local base, span = (cfg.ms or cfg.min) * 1e6, cfg.ms and 0 or (cfg.max - cfg.min) * 1e6
	local random = H.rng(cfg.seed, dev.queue or 0)

	local function wait()
		local ns = base
		if span > 0 then
			ns = ns + random() * span
		end
		if ns >= 1 then
			sleep(ns)
		end
	end

	local be = { async = not cfg.serial or inner.async }
	local ops, read_at, write_at = cfg.ops, inner.read_at, inner.write_at
	local slow_read, slow_write = ops.read, ops.write
	be.read_at = function(_, buf, off, len, flags)
		if slow_read then
			wait()
		end
		return read_at(inner, buf, off, len, flags)
	end
	be.write_at = function(_, buf, off, len, flags)
		if slow_write then
			wait()
		end
		return write_at(inner, buf, off, len, flags)
	end
	if inner.flush then
		local flush, slow = inner.flush, ops.flush
		be.flush = function()
			if slow then
				wait()
			end
			return flush(inner)
		end
	end
	for _, name in ipairs({ "discard", "write_zeroes" }) do
		local fn, slow = inner[name], ops[name]
		if fn then
			be[name] = function(_, off, len, flags)
				if slow then
					wait()
				end
				return fn(inner, off, len, flags)
			end
		end
	end
	return filters.wrap(inner, be)
end

return setmetatable(M, {
	__call = function(_, inner, opts, dev)
		return new(inner, opts, dev)
	end,
})
