-- Waiting primitives for async backends (see README, "Async backends").
--
-- Inside a method of a backend that declares `async = true`, each of these
-- submits one SQE on the queue's own io_uring and yields the IO's
-- coroutine until the completion comes back (core/aio.c, luablk/async.lua):
-- the queue serves other IOs meanwhile. Each returns the kernel's answer,
-- a count of bytes or 0 (revents for poll), or a negative errno; none
-- raises for an IO error.
--
-- Called anywhere else (a factory, a sync backend, a script), the same
-- functions do the plain blocking system call, with the same results, so
-- code written with them works in both worlds.
local ffi = require("ffi")
local errno = require("luablk.errno")

ffi.cdef([[
int poll(struct pollfd *fds, unsigned long nfds, int timeout);
int connect(int fd, const void *addr, uint32_t len);
ssize_t send(int fd, const void *buf, size_t len, int flags);
ssize_t recv(int fd, void *buf, size_t len, int flags);
ssize_t read(int fd, void *buf, size_t count);
]])
if not pcall(ffi.typeof, "struct pollfd") then
	ffi.cdef("struct pollfd { int fd; short events; short revents; };")
end
local posix = require("luablk.posix") -- also declares pread, pwrite, fsync...

local C = require("luablk").C -- the core (the binary, or libluablk.so)
local libc = ffi.C
local running, yield = coroutine.running, coroutine.yield

local M = {}

M.RWF_DSYNC = 2
M.POLLIN, M.POLLOUT = 1, 4

-- Per Lua state (one per queue): the handler the waits go to, the free
-- slots, and the coroutine waiting in each busy slot.
local h, free, nfree = nil, {}, 0
local waiting = {} -- slot -> coroutine
local slot_of = setmetatable({}, { __mode = "k" }) -- coroutine -> slot
local ours = setmetatable({}, { __mode = "k" }) -- the scheduler's coroutines

-- For luablk/async.lua: binds the module to this queue's handler (once;
-- slots outlive a reload, since a timed-out wait may still be out).
function M.bind(handler, turn)
	if h ~= nil then
		return
	end
	h = handler
	for slot = turn.slots - 1, 0, -1 do
		nfree = nfree + 1
		free[nfree] = slot
	end
end

-- For luablk/async.lua: marks a coroutine as one whose waits may yield.
function M.adopt(co)
	ours[co] = true
end

-- For luablk/async.lua: the coroutine a wake of slot resumes (nil for a
-- wake nobody waits for), with the slot freed.
function M.woken(slot)
	local co = waiting[slot]
	if co then
		waiting[slot], slot_of[co] = nil, nil
		nfree = nfree + 1
		free[nfree] = slot
	end
	return co
end

-- For luablk/async.lua: cancels what coroutine co waits for, if anything.
function M.cancel(co)
	local slot = slot_of[co]
	if slot then
		C.luablk_aio_cancel(h, slot)
	end
end

-- Whether the running code may yield: inside the scheduler's coroutine.
local function in_turn()
	local co = running()
	return co and ours[co] and co
end
M.in_turn = in_turn

-- Waits between IOs of one queue, with no SQE: a coroutine that suspends
-- sleeps until another IO's code wakes it (a reply for it arrived on a
-- shared connection, a lock it waits for was released). The wakes of a
-- turn are run by the scheduler in that same turn (luablk/async.lua).
local suspended = setmetatable({}, { __mode = "k" }) -- coroutine -> true
local wakes, nwakes = {}, 0 -- coroutine, value, coroutine, value...

-- Suspends the running IO until M.wake(co, value); returns that value.
-- co is what M.current() returned. Raises outside an async method, where
-- nothing could ever wake the caller.
function M.suspend()
	local co = in_turn()
	if not co then
		error("aio.suspend: not inside an async backend's method", 2)
	end
	suspended[co] = true
	return yield()
end

-- The running IO's coroutine (to hand to M.wake later), or nil outside
-- an async method.
function M.current()
	return in_turn() or nil
end

-- Resumes co, suspended in M.suspend, with value, once the code running
-- now yields. A coroutine that is not suspended (woken already, or
-- waiting for an SQE) is left alone, so a wake can never resume the
-- wrong wait. Returns whether co will be woken.
function M.wake(co, value)
	if not suspended[co] then
		return false
	end
	suspended[co] = nil
	wakes[nwakes + 1], wakes[nwakes + 2] = co, value
	nwakes = nwakes + 2
	return true
end

-- Runs fn(...) in a coroutine of its own, not tied to any IO, whose waits
-- yield like an IO's: a connection's reader that outlives the requests it
-- answers, say. It starts now and runs until its first wait; called
-- inside an async method only. An error in fn ends it and is logged.
function M.spawn(fn, ...)
	if not in_turn() then
		error("aio.spawn: not inside an async backend's method", 2)
	end
	local co = coroutine.create(fn)
	ours[co] = true
	local ok, err = coroutine.resume(co, ...)
	if not ok then
		io.stderr:write("luablk: aio.spawn: ", tostring(err), "\n")
	end
	return co
end

-- For luablk/async.lua: calls step(co, value) for every pending wake,
-- including those that the woken code makes, until none is left.
function M.run_wakes(step)
	local i = 1
	while i < nwakes do
		local co, v = wakes[i], wakes[i + 1]
		wakes[i], wakes[i + 1] = nil, nil
		i = i + 2
		step(co, v)
	end
	nwakes = 0
end

-- Submits through fn(h, slot, ...) and yields until the wake.
local function wait(co, fn, ...)
	if nfree == 0 then
		return -errno.EAGAIN
	end
	local slot = free[nfree]
	nfree = nfree - 1
	local rc = fn(h, slot, ...)
	if rc < 0 then
		nfree = nfree + 1
		free[nfree] = slot
		return rc
	end
	waiting[slot], slot_of[co] = co, slot
	return yield(slot)
end

local function sysret(n)
	n = tonumber(n)
	if n < 0 then
		return -ffi.errno()
	end
	return n
end

-- Reads len bytes at off from fd into buf (a uint8_t pointer).
function M.read(fd, buf, len, off)
	local co = in_turn()
	if co then
		return wait(co, C.luablk_aio_read, fd, buf, len, off)
	end
	return sysret(libc.pread(fd, buf, len, off))
end

-- Writes len bytes of buf at off; rw_flags: 0 or M.RWF_DSYNC (durable
-- like an O_DSYNC write, for FUA; the only flag the blocking form knows).
function M.write(fd, buf, len, off, rw_flags)
	local co = in_turn()
	if co then
		return wait(co, C.luablk_aio_write, fd, buf, len, off, rw_flags or 0)
	end
	if (rw_flags or 0) == 0 then
		return sysret(libc.pwrite(fd, buf, len, off))
	end
	local n, _, e = posix.pwrite_dsync(fd, buf, len, off)
	return n or -e
end

-- fsync(fd), or fdatasync(fd) when datasync is true.
function M.fsync(fd, datasync)
	local co = in_turn()
	if co then
		return wait(co, C.luablk_aio_fsync, fd, datasync and C.LUABLK_FSYNC_DATASYNC or 0)
	end
	return sysret(datasync and libc.fdatasync(fd) or libc.fsync(fd))
end

function M.fallocate(fd, mode, off, len)
	local co = in_turn()
	if co then
		return wait(co, C.luablk_aio_fallocate, fd, mode, off, len)
	end
	return sysret(libc.fallocate(fd, mode, off, len))
end

-- Waits for seconds (a timer, not a sleep of the queue). Returns 0.
function M.sleep(seconds)
	local ns = math.floor(seconds * 1e9)
	local co = in_turn()
	if co then
		local r = wait(co, C.luablk_aio_sleep, ns)
		-- A timer that expires answers -ETIME: that is its success.
		return r == -errno.ETIME and 0 or r
	end
	C.luablk_sleep_ns(ns)
	return 0
end

-- Waits until fd has one of events (M.POLLIN, M.POLLOUT); returns revents.
function M.poll(fd, events)
	local co = in_turn()
	if co then
		return wait(co, C.luablk_aio_poll, fd, events)
	end
	local p = ffi.new("struct pollfd[1]")
	p[0].fd, p[0].events = fd, events
	local n = sysret(libc.poll(p, 1, -1))
	return n < 0 and n or p[0].revents
end

function M.connect(fd, addr, addrlen)
	local co = in_turn()
	if co then
		return wait(co, C.luablk_aio_connect, fd, addr, addrlen)
	end
	return sysret(libc.connect(fd, addr, addrlen))
end

function M.send(fd, buf, len, flags)
	local co = in_turn()
	if co then
		return wait(co, C.luablk_aio_send, fd, buf, len, flags or 0)
	end
	return sysret(libc.send(fd, buf, len, flags or 0))
end

function M.recv(fd, buf, len, flags)
	local co = in_turn()
	if co then
		return wait(co, C.luablk_aio_recv, fd, buf, len, flags or 0)
	end
	return sysret(libc.recv(fd, buf, len, flags or 0))
end

-- Waits for an eventfd that another library's thread writes (its
-- completion callback), and returns the counter it read, or -errno. buf:
-- optional uint64_t[1] to read into, so that a loop allocates nothing.
function M.wait_eventfd(fd, buf)
	buf = buf or ffi.new("uint64_t[1]")
	local r = M.read(fd, ffi.cast("uint8_t *", buf), 8, 0)
	if r == -errno.ESPIPE or r == -errno.EINVAL then
		-- pread on an eventfd: the blocking fallback reads instead.
		r = sysret(libc.read(fd, buf, 8))
	end
	if r < 0 then
		return r
	end
	return tonumber(buf[0])
end

return M
