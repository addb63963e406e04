-- A backend's failures reach the application as errno values on exactly
-- the IOs that failed, and the device keeps serving everything else.
local posix = require("luablk.posix")
local errno = require("luablk.errno")
local u = require("kernel.util")

local MiB = 2 ^ 20

describe("backend errors", function()
	it("a Lua error fails only that IO with EIO", function()
		local bad = 5 * MiB
		local dev = u.add({
			backend = u.fixtures .. "/faulty.lua",
			size = 16 * MiB,
			args = { "throw_at=" .. bad },
		})
		local fd = u.open_direct(dev:path())
		local buf = posix.aligned(4096)
		local n, err, e = u.pread(fd, buf, 4096, bad)
		assert.is_nil(n)
		assert.equal(errno.EIO, e, err)
		for _, off in ipairs({ 0, bad - 4096, bad + 4096, 15 * MiB }) do
			assert.equal(4096, u.pread(fd, buf, 4096, off))
		end
		-- again: the device is still serving, the error still maps to EIO
		n, err, e = u.pread(fd, buf, 4096, bad)
		assert.is_nil(n)
		assert.equal(errno.EIO, e, err)
		assert.equal(4096, u.pwrite(fd, buf, 4096, bad))
		posix.close(fd)
		assert.is_true(dev:close())
	end)

	it("a returned -ENOSPC reaches the application as ENOSPC", function()
		local dev = u.add({
			backend = u.fixtures .. "/faulty.lua",
			size = 16 * MiB,
			args = { "enospc_at=" .. MiB },
		})
		local fd = u.open_direct(dev:path())
		local buf = posix.aligned(4096)
		local n, err, e = u.pwrite(fd, buf, 4096, MiB)
		assert.is_nil(n)
		assert.equal(errno.ENOSPC, e, err)
		assert.equal(4096, u.pwrite(fd, buf, 4096, 2 * MiB))
		posix.close(fd)
		assert.is_true(dev:close())
	end)

	it("closing does not hang while failing IO is in flight", function()
		local luablk = require("luablk")
		local dev = u.add({ backend = u.fixtures .. "/faulty.lua", size = 16 * MiB, args = { "fail_all=1" } })
		local path = dev:path()
		-- Readers keep failing IO in flight through the whole close; each
		-- dd holds the device only briefly, so DEL_DEV can complete.
		local pid = luablk.spawn({
			"sh", "-c", "while :; do dd if=" .. path .. " of=/dev/null bs=4k count=1 iflag=direct 2>/dev/null; done",
		})
		u.sleep(0.3)
		local ok, err = dev:close()
		require("ffi").C.kill(pid, 9)
		luablk.wait(pid)
		assert(ok, err)
		assert.is_true(u.gone(path))
	end)
end)
