-- A watchdog process that turns a hang into a failure. Fork it before any
-- device exists (so it holds none of their fds: a forked child of a
-- serving process pins the device until it exits). Arm it around a step
-- that may hang (a close with IO in flight, DEL_DEV racing another
-- closer); if the step outlives its deadline, the watchdog prints what is
-- stuck, SIGKILLs the helper processes named when arming (which releases
-- their fds, so a waiting DEL_DEV can return), and records that it fired.
-- If the harness itself is still stuck a grace period later, it is
-- killed too, so the run ends non-zero instead of hanging.
local ffi = require("ffi")
local luablk = require("luablk")
local sys = require("lib.stress_sys")

local M = {}

local DEADLINE, FIRED, EXIT, NPIDS, PIDS = 0, 1, 2, 3, 4
local MAXPIDS = 200
local LABEL = (PIDS + MAXPIDS) * 8
local SIZE = LABEL + 256

local Dog = {}
Dog.__index = Dog

local function text(p)
	return ffi.string(p + LABEL)
end

local function report(name, label, stuck)
	io.stderr:write(("%s: watchdog: %s is taking too long\n"):format(name, label))
	for _, p in ipairs(stuck) do
		io.stderr:write(("%s: watchdog: %s\n"):format(name, sys.stuck_text(p)))
	end
end

-- The watchdog's loop, in the forked child.
local function watch(w, name, parent, grace)
	local fired_at
	while w[EXIT] == 0 and not sys.parent_gone(parent) do
		local deadline = w[DEADLINE]
		local now = luablk.now()
		if deadline > 0 and now > deadline and not fired_at then
			w[FIRED] = w[FIRED] + 1
			fired_at = now
			report(name, text(ffi.cast("uint8_t *", w)), sys.d_state())
			for i = 0, w[NPIDS] - 1 do
				sys.kill(w[PIDS + i], sys.SIGKILL)
			end
		elseif fired_at and deadline > 0 and now > fired_at + grace then
			local state, _, wchan = sys.proc_state(parent)
			io.stderr:write(("%s: watchdog: the harness is still stuck (%s in %s); killing it\n"):format(
				name, tostring(state), tostring(wchan)))
			sys.kill(parent, sys.SIGKILL)
			return 1
		elseif deadline == 0 then
			fired_at = nil
		end
		luablk.sleep(0.1)
	end
	return 0
end

-- Starts the watchdog for harness `name`; `grace` seconds after firing it
-- kills the harness if the step is still not over.
function M.start(H, name, grace)
	local w = ffi.cast("double *", sys.shm(SIZE))
	local parent = ffi.C.getpid()
	local pid = sys.fork(H, watch, w, name, parent, grace or 60)
	return setmetatable({ w = w, pid = pid }, Dog)
end

-- Arms the watchdog for `seconds`, naming the step and the pids to kill.
function Dog:arm(seconds, label, pids)
	local w = self.w
	local n = math.min(#(pids or {}), MAXPIDS)
	for i = 1, n do
		w[PIDS + i - 1] = pids[i]
	end
	w[NPIDS] = n
	label = label:sub(1, 255)
	local p = ffi.cast("uint8_t *", w) + LABEL
	ffi.copy(p, label, #label)
	p[#label] = 0
	w[DEADLINE] = luablk.now() + seconds
end

-- Disarms; returns true if the watchdog fired since the last arm.
function Dog:disarm()
	local w = self.w
	w[DEADLINE] = 0
	local fired = w[FIRED] > 0
	w[FIRED] = 0
	return fired
end

function Dog:stop()
	self.w[EXIT] = 1
	luablk.wait(self.pid)
end

return M
