-- A backend call that never returns blocks the close that waits for it.
-- luablk cannot interrupt it, but it must say which queue and call the
-- close waits for, and a second SIGTERM must give up on that call, fail
-- its IO and still remove the device.
local ffi = require("ffi")
local luablk = require("luablk")
local posix = require("luablk.posix")
local u = require("kernel.util")

local SIGTERM = 15

describe("closing a device whose backend is stuck", function()
	it("names the stuck call, and a second SIGTERM gives up on it", function()
		local errfile = os.tmpname()
		-- stderr into a file, keeping the pid of luablk itself.
		local wrap = { "sh", "-c", 'exec "$@" 2>"$0"', errfile }
		local pid, path = u.start_add({ u.fixtures .. "/held_write.lua", "--size", "16M", "--", "hold=1" }, wrap)
		assert.matches("^/dev/ublkb%d+$", path)
		local id = path:match("(%d+)$")
		local dd = assert(luablk.spawn({
			"dd",
			"if=/dev/zero",
			"of=" .. path,
			"bs=4k",
			"count=1",
			"oflag=direct",
			"status=none",
		}))
		local held = u.eventually(10, function()
			local p, size = luablk.shared_open(tonumber(id), "held")
			if not p then
				return false
			end
			local v = ffi.cast("uint64_t *", p)[0] ~= 0ULL
			luablk.unmap(p, size)
			return v
		end)
		assert.is_true(held, "the write never reached the backend")
		assert.equal(0, ffi.C.kill(pid, SIGTERM))
		local said = u.eventually(20, function()
			local text = posix.read_file(errfile) or ""
			return text:match("closing waits for queue 0, whose backend has been in write_at %(4096 bytes at 0%)")
		end)
		assert.is_truthy(said, "no line about the stuck call: " .. (posix.read_file(errfile) or ""))
		-- The first signal is being served: the process is still there.
		assert.equal(0, ffi.C.kill(pid, 0))
		assert.equal(0, ffi.C.kill(pid, SIGTERM))
		assert.equal(1, luablk.wait(pid))
		local err = posix.read_file(errfile)
		os.remove(errfile)
		assert.matches("giving up on queue 0, whose backend is still in write_at", err)
		assert.matches("still inside a backend call that never returned", err)
		-- The kernel fails the write the backend held.
		assert.are_not.equal(0, luablk.wait(dd))
		-- The device is gone, not just stopped.
		assert.is_true(u.gone(path))
		assert.is_true(u.gone("/dev/ublkc" .. id))
	end)
end)
