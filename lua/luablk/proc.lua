-- Running helper programs from a process that may be serving a device:
-- always through luablk.spawn (plain fork), never os.execute/io.popen.
local luablk = require("luablk")
local posix = require("luablk.posix")

local M = {}

local function slurp(path)
	local s = assert(posix.read_file(path))
	os.remove(path)
	return s
end

-- Runs argv to completion; returns exit status, stdout text, stderr text
-- (status 127: not found; 128+N: killed by signal N).
function M.run(argv)
	local out, err = os.tmpname(), os.tmpname()
	local ofd = assert(posix.open(out, posix.O_WRONLY + posix.O_TRUNC))
	local efd = assert(posix.open(err, posix.O_WRONLY + posix.O_TRUNC))
	local status, msg = luablk.execute(argv, { stdout = ofd, stderr = efd })
	posix.close(ofd)
	posix.close(efd)
	local o, e = slurp(out), slurp(err)
	if not status then
		return nil, o, msg
	end
	return status, o, e
end

-- Like run, but raises with the command's stderr unless it exits 0;
-- returns its stdout.
function M.check(argv)
	local status, out, err = M.run(argv)
	if status ~= 0 then
		error(table.concat(argv, " ") .. " exited " .. tostring(status) .. ": " .. err, 2)
	end
	return out
end

return M
