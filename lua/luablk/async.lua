-- The per-queue scheduler of an async backend (one that declares
-- `async = true`). Each IO runs in a coroutine from a pool; when its
-- method waits (luablk/aio.lua) the coroutine yields, the IO is parked
-- (LUABLK_RESULT_PARKED) and the queue serves on. Each turn of the queue
-- (core/queue.c) is one call of the function made here: it resumes the
-- coroutines whose waits completed, starts the new IOs, and reports the
-- parked IOs that finished in turn.done.
--
-- Deadlines: with an io_timeout, an IO still held when it passes is
-- completed with -ETIMEDOUT. Its tag gets a spare buffer first, so that a
-- wait still writing into the old one can never touch the next IO's data;
-- the wait is cancelled, and what the method does after is ignored. A
-- close gives held IOs CLOSE_GRACE_S to finish, then fails them with EIO.
local aio = require("luablk.aio")
local errno = require("luablk.errno")

local M = {}

local OP_READ, OP_WRITE, OP_FLUSH, OP_DISCARD, OP_WRITE_ZEROES = 0, 1, 2, 3, 5
local EIO, EOPNOTSUPP, ETIMEDOUT = errno.EIO, errno.EOPNOTSUPP, errno.ETIMEDOUT
M.CLOSE_GRACE_S = 30

local IDLE = {} -- what a worker yields when its IO is done
local METHOD = { [OP_READ] = "read_at", [OP_WRITE] = "write_at", [OP_FLUSH] = "flush" }

-- Builds the turn function for backend be on handler h (a struct
-- luablk_handler *). report(text) logs a backend error (once per distinct
-- text); settle(ok, r, done, what) maps a protected call's outcome to an
-- IO result (dispatch.settler). info: the device info.
function M.make(be, batch, bufs, report, settle, C, h, info)
	local turn = C.luablk_handler_turn(h)
	aio.bind(h, turn)
	local read_at, write_at = be.read_at, be.write_at
	local flush, discard, write_zeroes = be.flush, be.discard, be.write_zeroes
	local xpcall, traceback = xpcall, debug.traceback
	local resume, create = coroutine.resume, coroutine.create
	local timeout_ns = tonumber(info.io_timeout_ms) * 1e6
	local now = C.luablk_now_ns
	local pool, npool = {}, 0 -- idle workers of this scheduler
	local mine = setmetatable({}, { __mode = "k" })
	local spare_jobs, nspare = {}, 0
	local held = {} -- job -> true: parked IOs
	local next_deadline, close_deadline = math.huge, nil
	local done_tags = turn.done

	local function call(job)
		local op, len = job.op, job.len
		if op == OP_READ then
			local ok, r = xpcall(read_at, traceback, be, job.buf, job.off, len, job.flags)
			return settle(ok, r, len, "read_at")
		elseif op == OP_WRITE then
			local ok, r = xpcall(write_at, traceback, be, job.buf, job.off, len, job.flags)
			return settle(ok, r, len, "write_at")
		elseif op == OP_FLUSH then
			if not flush then
				return -EOPNOTSUPP
			end
			local ok, r = xpcall(flush, traceback, be)
			return settle(ok, r, 0, "flush")
		end
		local fn, what = discard, "discard"
		if op == OP_WRITE_ZEROES then
			fn, what = write_zeroes, "write_zeroes"
		elseif op ~= OP_DISCARD then
			return -EOPNOTSUPP
		end
		if not fn then
			return -EOPNOTSUPP
		end
		local ok, r = xpcall(fn, traceback, be, job.off, len, job.flags)
		return settle(ok, r, 0, what)
	end

	local function report_done(tag, result)
		local d = done_tags[turn.ndone]
		d.tag, d.result = tag, result
		turn.ndone = turn.ndone + 1
	end

	local function release(job)
		if job.lent then
			C.luablk_handler_return(h, job.lent)
			job.lent = nil
		end
		job.co, job.buf = nil, nil
		nspare = nspare + 1
		spare_jobs[nspare] = job
	end

	-- Where a finished method's result goes: back to the starting turn,
	-- to turn.done, or nowhere for an IO completed already (timed out).
	local function finish(job, r)
		if job.orphan then
			release(job)
		elseif job.sync then
			job.result, job.finished = r, true
		else
			held[job] = nil
			report_done(job.tag, r)
			release(job)
		end
	end

	local function worker(job)
		while true do
			finish(job, call(job))
			job = coroutine.yield(IDLE)
		end
	end

	-- Resumes co with v; a worker that went idle returns to the pool.
	local function step(co, v)
		local ok, what = resume(co, v)
		if not ok then
			-- The worker itself failed (out of memory): its IO stays
			-- held until a deadline or the close fails it.
			io.stderr:write("luablk: async worker: ", tostring(what), "\n")
		elseif what == IDLE and mine[co] then
			npool = npool + 1
			pool[npool] = co
		end
	end

	-- Completes a held IO with result now, unless its buffer cannot be
	-- swapped yet (no spare left: try again at the next turn).
	local function expire(job, result, need_spare)
		local nb = C.luablk_handler_spare(h, job.tag)
		if nb == nil and need_spare then
			return false
		end
		if nb ~= nil then
			bufs[job.tag] = nb
			job.lent = job.buf
		end
		job.orphan = true
		held[job] = nil
		report_done(job.tag, result)
		aio.cancel(job.co)
		return true
	end

	local function check_deadlines(t, flags)
		if bit.band(flags, C.LUABLK_TURN_GIVE_UP) ~= 0 then
			close_deadline = 0
		elseif bit.band(flags, C.LUABLK_TURN_CLOSING) ~= 0 and not close_deadline then
			close_deadline = t + M.CLOSE_GRACE_S * 1e9
		end
		if close_deadline and t >= close_deadline then
			for job in pairs(held) do
				expire(job, -EIO, false)
			end
			return
		end
		if t < next_deadline then
			return
		end
		next_deadline = math.huge
		for job in pairs(held) do
			if t >= job.deadline and expire(job, -ETIMEDOUT, true) then
				local what = METHOD[job.op] or "a call"
				report(("%s outlived the IO timeout (%g s) and failed with ETIMEDOUT"):format(what, timeout_ns / 1e9))
			elseif held[job] and job.deadline < next_deadline then
				next_deadline = job.deadline
			end
		end
	end

	local function start(io, t)
		local job = spare_jobs[nspare]
		if job then
			spare_jobs[nspare] = nil
			nspare = nspare - 1
		else
			job = {}
		end
		local tag = io.tag
		job.tag, job.op, job.off, job.len, job.flags = tag, io.op, io.off, io.len, io.flags
		job.buf, job.sync, job.finished, job.orphan = bufs[tag], true, false, false
		local co = pool[npool]
		if co then
			pool[npool] = nil
			npool = npool - 1
		else
			co = create(worker)
			mine[co] = true
			aio.adopt(co)
		end
		job.co = co
		step(co, job)
		job.sync = false
		if job.finished then
			io.result = job.result
			release(job)
			return
		end
		io.result = C.LUABLK_RESULT_PARKED
		held[job] = true
		if timeout_ns > 0 then
			job.deadline = t + timeout_ns
			if job.deadline < next_deadline then
				next_deadline = job.deadline
			end
		else
			job.deadline = math.huge
		end
	end

	return function(n)
		for k = 0, turn.nwake - 1 do
			local w = turn.wake[k]
			local co = aio.woken(w.slot)
			if co then
				step(co, w.res)
			end
		end
		local t = tonumber(now())
		for i = 0, n - 1 do
			start(batch[i], t)
		end
		aio.run_wakes(step)
		if turn.flags ~= 0 or (timeout_ns > 0 and t >= next_deadline) then
			check_deadlines(t, turn.flags)
		end
	end
end

-- Whether a loaded backend is served by this scheduler.
function M.wanted(be)
	return type(be) == "table" and be.async == true
end

return M
