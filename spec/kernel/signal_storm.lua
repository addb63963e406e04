-- `luablk run spec/kernel/signal_storm.lua ROUNDS`: creates, queries and
-- closes a device ROUNDS times while SIGALRM arrives every 200 µs, caught
-- by a handler installed without SA_RESTART, as in a program that uses
-- timers. Every control command's wait is interrupted many times over;
-- each call must still give its own command's answer. Prints "ok ROUNDS"
-- and exits 0, or prints what went wrong and exits 1.
local ffi = require("ffi")
local luablk = require("luablk")
local errno = require("luablk.errno")
require("luablk.posix") -- declares getpid

ffi.cdef([[
struct storm_sigaction {
	void *handler;
	unsigned long mask[16];
	int flags;
	void *restorer;
};
int sigaction(int sig, const struct storm_sigaction *act, void *old);
struct storm_itimerval {
	long interval_sec, interval_usec, value_sec, value_usec;
};
int setitimer(int which, const struct storm_itimerval *value, void *old);
]])

local SIGALRM, ITIMER_REAL = 14, 0
local rounds = tonumber(arg and arg[1]) or 100

-- The handler must do nothing and may not be Lua (it runs between any two
-- instructions): getpid ignores its argument and touches no state.
local act = ffi.new("struct storm_sigaction")
act.handler = ffi.cast("void *", ffi.C.getpid)
assert(ffi.C.sigaction(SIGALRM, act, nil) == 0, "sigaction")

local function timer(usec)
	local t = ffi.new("struct storm_itimerval", 0, usec, 0, usec)
	assert(ffi.C.setitimer(ITIMER_REAL, t, nil) == 0, "setitimer")
end

local failures = {}
local function check(ok, what, detail)
	if not ok then
		failures[#failures + 1] = what .. ": " .. tostring(detail)
	end
	return ok
end

local function round(i)
	local dev, err = luablk.add({ backend = "null", size = 2 ^ 20 })
	if not check(dev, ("round %d: add"):format(i), err) then
		return
	end
	local id = dev:id()
	local info
	info, err = luablk.query(id)
	if check(info, ("round %d: query %d"):format(i, id), err) then
		local got = ("%s %s %s"):format(info.id, info.state, info.size)
		check(got == ("%d live %d"):format(id, 2 ^ 20), ("round %d: query %d"):format(i, id), got)
	end
	local ok
	ok, err = dev:close()
	check(ok, ("round %d: close %d"):format(i, id), err)
	local gone, _, e = luablk.query(id)
	check(not gone and e == errno.ENODEV, ("round %d: %d after close"):format(i, id), gone and gone.state or e)
end

local before = table.concat(assert(luablk.list()), " ")
timer(200)
for i = 1, rounds do
	round(i)
	if #failures > 10 then
		break
	end
end
timer(0)

local after = table.concat(assert(luablk.list()), " ")
check(after == before, "devices before and after", before .. " / " .. after)
if #failures > 0 then
	io.stdout:write(table.concat(failures, "\n"), "\n")
	os.exit(1)
end
io.stdout:write(("ok %d\n"):format(rounds))
