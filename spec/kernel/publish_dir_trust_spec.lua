-- What root does with a device's publish directory (/run/luablk/ID, or a
-- user's $XDG_RUNTIME_DIR/luablk/ID): it maps only what the device's live
-- server published, writes only into regions whose magic it knows, never
-- follows a planted link, and never signals a process that is not the
-- luablk server of the device.
local ffi = require("ffi")
local luablk = require("luablk")
local posix = require("luablk.posix")
local u = require("kernel.util")

local SIGTERM, SIGKILL = 15, 9
local VICTIM_TEXT = "root:x:0:0:root:/root:/bin/sh\n"

local function id_of(path)
	return tonumber(path:match("(%d+)$"))
end

local function write(path, text)
	local f = assert(io.open(path, "wb"))
	f:write(text)
	f:close()
end

local function luablk_cmd(...)
	return u.run({ u.luablk_bin, ... })
end

local function stop(pid)
	ffi.C.kill(pid, SIGTERM)
	assert.equal(0, luablk.wait(pid))
end

-- Runs fn(pid, id) with a device served by `luablk add ARGS`, then stops it.
local function with_device(args, fn)
	local pid, path = u.start_add(args)
	assert(path, "luablk add printed no device")
	local ok, err = pcall(fn, pid, id_of(path))
	stop(pid)
	assert(ok, err)
end

-- A file that must never change, and a check that it did not.
local function victim()
	local path = os.tmpname()
	write(path, VICTIM_TEXT)
	return path, function()
		assert.equal(VICTIM_TEXT, posix.read_file(path))
		os.remove(path)
	end
end

-- Expects the command to fail with exactly one line on stderr.
local function refused(status, stderr, pattern)
	assert.not_equal(0, status)
	local lines = select(2, stderr:gsub("\n", ""))
	assert.equal(1, lines, stderr)
	if pattern then
		assert.matches(pattern, stderr)
	end
end

describe("a device's publish directory", function()
	it("holds the server's pid and the fault control region it published", function()
		with_device({ "null", "--size", "1M", "--filter", "fault:flag=1" }, function(pid, id)
			local dir = "/run/luablk/" .. id
			assert.equal(tostring(pid), (posix.read_file(dir .. "/pid") or ""):match("%d+"))
			local status, _, stderr = luablk_cmd("fault", tostring(id), "on")
			assert.equal(0, status, stderr)
			status, _, stderr = luablk_cmd("fault", tostring(id), "off")
			assert.equal(0, status, stderr)
		end)
	end)

	it("refuses a planted link to another file, and leaves that file alone", function()
		with_device({ "null", "--size", "1M", "--filter", "fault:flag=1" }, function(_, id)
			local path, unchanged = victim()
			local ctl = ("/run/luablk/%d/fault.ctl"):format(id)
			os.remove(ctl)
			u.sh({ "ln", "-s", path, ctl })
			local status, _, stderr = luablk_cmd("fault", tostring(id), "off")
			refused(status, stderr, "not a region that its server published")
			unchanged()
		end)
	end)

	it("refuses a link to another fd of the server itself", function()
		local image = os.tmpname()
		u.sh({ "truncate", "-s", "1M", image })
		with_device({ "file", "--size", "1M", "--filter", "fault:flag=1", "--", "path=" .. image }, function(pid, id)
			-- The server holds the image open; find its fd and point at it.
			local fd
			for _, n in ipairs(posix.list_dir(("/proc/%d/fd"):format(pid))) do
				local f = io.popen(("readlink /proc/%d/fd/%s"):format(pid, n))
				if f:read("*l") == image then
					fd = n
				end
				f:close()
			end
			assert(fd, "the server does not hold the image open")
			local ctl = ("/run/luablk/%d/fault.ctl"):format(id)
			os.remove(ctl)
			u.sh({ "ln", "-s", ("/proc/%d/fd/%s"):format(pid, fd), ctl })
			local status, _, stderr = luablk_cmd("fault", tostring(id), "on")
			refused(status, stderr, "not a region that its server published")
		end)
		local data = posix.read_file(image)
		assert.equal(("\0"):rep(2 ^ 20), data)
		os.remove(image)
	end)

	it("refuses a planted link in the caller's XDG_RUNTIME_DIR", function()
		with_device({ "null", "--size", "1M" }, function(pid, id)
			local path, unchanged = victim()
			local xdg = os.tmpname()
			os.remove(xdg)
			u.sh({ "mkdir", "-p", ("%s/luablk/%d"):format(xdg, id) })
			write(("%s/luablk/%d/pid"):format(xdg, id), pid .. "\n")
			u.sh({ "ln", "-s", path, ("%s/luablk/%d/fault.ctl"):format(xdg, id) })
			local status, _, stderr = u.run({ "env", "XDG_RUNTIME_DIR=" .. xdg, u.luablk_bin, "fault", tostring(id), "off" })
			refused(status, stderr)
			unchanged()
			u.sh({ "rm", "-rf", xdg })
		end)
	end)

	it("writes nothing into a file without the fault control magic", function()
		with_device({ "null", "--size", "1M", "--filter", "fault:flag=1" }, function(_, id)
			local ctl = ("/run/luablk/%d/fault.ctl"):format(id)
			os.remove(ctl)
			write(ctl, VICTIM_TEXT .. ("\0"):rep(64))
			local status, _, stderr = luablk_cmd("fault", tostring(id), "on")
			refused(status, stderr, "not a fault control region")
			assert.equal(VICTIM_TEXT .. ("\0"):rep(64), posix.read_file(ctl))
		end)
	end)

	it("refuses a stats region whose header claims more than the file holds", function()
		with_device({ "null", "--size", "1M", "--filter", "stats" }, function(_, id)
			local region = ("/run/luablk/%d/stats"):format(id)
			os.remove(region)
			-- magic "stats", version 1, 2^40 queues, start time 0
			local hdr = ffi.new("uint64_t[8]", { 0x7374617473, 1, 2 ^ 40, 0 })
			write(region, ffi.string(hdr, 64))
			local status, _, stderr = luablk_cmd("stats", tostring(id))
			refused(status, stderr, "not a stats region")
		end)
	end)

	it("sends no signal when the directory names another process than the server", function()
		with_device({ "null", "--size", "1M" }, function(pid, id)
			write(("/run/luablk/%d/pid"):format(id), "1\n")
			local status, _, stderr = luablk_cmd("reload", tostring(id))
			refused(status, stderr, "not served by luablk")
			-- The server got no SIGHUP: it would have printed "reloaded".
			write(("/run/luablk/%d/pid"):format(id), pid .. "\n")
			status, _, stderr = luablk_cmd("reload", tostring(id))
			assert.equal(0, status, stderr)
		end)
	end)

	it("treats a directory left by a killed server as stale", function()
		local pid, path = u.start_add({ "null", "--size", "1M", "--filter", "fault:flag=1" })
		local id = id_of(path)
		ffi.C.kill(pid, SIGKILL)
		luablk.wait(pid)
		local status, _, stderr = luablk_cmd("reload", tostring(id))
		refused(status, stderr)
		status, _, stderr = luablk_cmd("fault", tostring(id), "on")
		refused(status, stderr)
		u.sh({ u.luablk_bin, "del", tostring(id) })
		assert.is_false(posix.exists("/run/luablk/" .. id))
	end)

	it("resolves a relative backend path in the client's directory", function()
		with_device({ "null", "--size", "1M" }, function(_, id)
			local dir = os.tmpname()
			os.remove(dir)
			u.sh({ "mkdir", "-p", dir })
			write(dir .. "/client_side.lua", "return require('luablk.backends.null')\n")
			local status, _, stderr = u.run({
				"sh",
				"-c",
				'cd "$1" && exec "$2" reload "$3" ./client_side.lua',
				"reload",
				dir,
				assert(posix.realpath(u.luablk_bin)),
				tostring(id),
			})
			assert.equal(0, status, stderr)
			u.sh({ "rm", "-rf", dir })
		end)
	end)
end)
