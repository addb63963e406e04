-- Harness workers are fork()ed from the process that serves the device.
-- Such a child must not keep the queue rings alive: if it did, its IO in
-- flight at close would wait for a server that is gone, and STOP_DEV
-- would wait for that IO forever.
local luablk = require("luablk")
local posix = require("luablk.posix")
local u = require("kernel.util")

describe("closing a device", function()
	it("completes while a forked child has IO in flight", function()
		local dev = u.add({ backend = "mem", size = 16 * 2 ^ 20, queues = 2 })
		local path = dev:path()
		local pid = assert(luablk.fork())
		if pid == 0 then
			-- IO until the device goes away (an error, or the end of a
			-- disk whose size is now 0), then leave.
			local fd = posix.open(path, posix.O_RDWR + posix.O_DIRECT)
			local buf = posix.aligned(65536)
			local off = 0
			while fd do
				local n = posix.pread_once(fd, buf, 65536, off)
				if not n or n == 0 then
					break
				end
				off = (off + 65536) % (16 * 2 ^ 20)
			end
			luablk.exit(0)
		end
		u.sleep(0.5)
		local ok, err = dev:close()
		local status = luablk.wait(pid)
		assert(ok, err)
		assert.equal(0, status)
		assert.is_true(u.gone(path))
	end)
end)
