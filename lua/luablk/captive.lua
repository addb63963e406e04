-- Captive mode: `luablk add ... --run CMD` (and recover) runs CMD with
-- `sh -c` once the device is ready, serves the device while CMD runs, and
-- tears it down when CMD ends, returning CMD's exit status, as nbdkit's
-- --run does. What CMD learns from its environment:
--   LUABLK_DEV   the block device (/dev/ublkbN)
--   LUABLK_ID    the device id
--   LUABLK_CHAR  its char device (/dev/ublkcN)
--   LUABLK_SIZE  its size in bytes
--   LUABLK_PID   the serving process
-- CMD stays in luablk's process group, so a terminal's SIGINT reaches
-- both; a SIGINT or SIGTERM sent to luablk alone is passed on to CMD.
local ffi = require("ffi")
local luablk = require("luablk")
require("luablk.posix") -- declares getpid and kill

ffi.cdef("int waitpid(int pid, int *status, int options);")

local M = {}

local WNOHANG = 1
local SIGTERM, SIGKILL = 15, 9
M.GRACE_S = 10

-- Starts CMD for device info (a Device:info() table); returns its pid,
-- or nil and a message.
function M.start(cmd, info)
	local argv = {
		"env",
		"LUABLK_DEV=" .. info.path,
		"LUABLK_ID=" .. info.id,
		"LUABLK_CHAR=/dev/ublkc" .. info.id,
		("LUABLK_SIZE=%d"):format(info.size),
		"LUABLK_PID=" .. ffi.C.getpid(),
		"sh",
		"-c",
		cmd,
	}
	local pid, err = luablk.spawn(argv)
	if not pid then
		return nil, "--run: " .. tostring(err)
	end
	return pid
end

local status = ffi.new("int[1]")

-- CMD's exit status (0-255, 128 + N if signal N killed it) once it has
-- ended, else nil.
function M.poll(pid)
	local r = ffi.C.waitpid(pid, status, WNOHANG)
	if r ~= pid then
		return nil
	end
	local s = status[0]
	if bit.band(s, 0x7f) == 0 then
		return bit.band(bit.rshift(s, 8), 0xff)
	end
	return 128 + bit.band(s, 0x7f)
end

-- Ends CMD: sig (SIGTERM by default) now, SIGKILL if it is still there
-- M.GRACE_S later; returns its exit status.
function M.stop(pid, sig)
	ffi.C.kill(pid, sig or SIGTERM)
	local deadline = luablk.now() + M.GRACE_S
	while luablk.now() < deadline do
		local s = M.poll(pid)
		if s then
			return s
		end
		luablk.sleep(0.02)
	end
	io.stderr:write(("luablk: --run: the command outlived its signal by %g s, killing it\n"):format(M.GRACE_S))
	ffi.C.kill(pid, SIGKILL)
	return luablk.wait(pid)
end

return M
