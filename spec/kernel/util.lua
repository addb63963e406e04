-- Helpers for the real-kernel specs. They run inside `luablk run`, in the
-- same process that serves the devices under test, so every helper
-- command starts through luablk.spawn (plain fork), never os.execute.
local ffi = require("ffi")
local luablk = require("luablk")
local posix = require("luablk.posix")

local M = {}

M.root = os.getenv("LUABLK_ROOT") or "."
M.luablk_bin = M.root .. "/" .. (os.getenv("LUABLK_BUILD") or "build") .. "/luablk"

-- Runs argv; returns exit status, stdout and stderr text.
function M.run(argv)
	local out, err = os.tmpname(), os.tmpname()
	local ofd = assert(posix.open(out, posix.O_WRONLY + posix.O_TRUNC))
	local efd = assert(posix.open(err, posix.O_WRONLY + posix.O_TRUNC))
	local status = assert(luablk.execute(argv, { stdout = ofd, stderr = efd }))
	posix.close(ofd)
	posix.close(efd)
	local function slurp(p)
		local f = assert(io.open(p, "rb"))
		local s = f:read("*a")
		f:close()
		os.remove(p)
		return s
	end
	return status, slurp(out), slurp(err)
end

-- Runs argv and fails the test with its stderr unless it exits 0.
function M.sh(argv)
	local status, out, err = M.run(argv)
	assert(status == 0, table.concat(argv, " ") .. " exited " .. tostring(status) .. ": " .. err)
	return out
end

-- Polls fn every 20 ms for up to `seconds`; returns its first truthy value.
function M.eventually(seconds, fn)
	for _ = 1, seconds * 50 do
		local v = fn()
		if v then
			return v
		end
		ffi.C.usleep(20000)
	end
	return fn()
end

function M.sleep(seconds)
	ffi.C.usleep(math.floor(seconds * 1e6))
end

-- O_DIRECT IO on a block device. Returns bytes or nil, "ENAME: msg", errno.
function M.open_direct(path)
	return assert(posix.open(path, posix.O_RDWR + posix.O_DIRECT))
end

function M.pwrite(fd, buf, len, off)
	local n = ffi.C.pwrite(fd, buf, len, off)
	if n < 0 then
		return posix.fail("pwrite")
	end
	return tonumber(n)
end

function M.pread(fd, buf, len, off)
	local n = ffi.C.pread(fd, buf, len, off)
	if n < 0 then
		return posix.fail("pread")
	end
	return tonumber(n)
end

-- A page-aligned buffer filled with a pattern derived from seed.
function M.pattern(len, seed)
	local buf = posix.aligned(len)
	local x = seed
	for i = 0, len - 1 do
		x = (x * 1103515245 + 12345) % 2147483648
		buf[i] = bit.band(bit.rshift(x, 16), 0xff)
	end
	return buf
end

-- Adds a device and fails the test with the library's message if it can't.
function M.add(opts)
	local dev, err = luablk.add(opts)
	assert(dev, err)
	return dev
end

function M.gone(path)
	return M.eventually(10, function()
		return not posix.exists(path)
	end)
end

M.fixtures = M.root .. "/spec/kernel/backends"

return M
