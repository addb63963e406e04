-- Crash recovery on the real kernel: a device added with --recoverable
-- outlives its server's SIGKILL (quiesced, IO waiting), `luablk recover`
-- serves it again with the mem data kept, --reissue hands over the IO the
-- dead server held, and bad input to recover leaves the device as it was.
local ffi = require("ffi")
local cjson = require("cjson")
local luablk = require("luablk")
local posix = require("luablk.posix")
local u = require("kernel.util")

local bin = u.luablk_bin
local SIGKILL, SIGTERM, EIO, EREMOTEIO = 9, 15, 5, 121

-- The pid a quiesced device reports: its dead server's on 6.12; from 6.17
-- the kernel reports -1 once that process is gone.
local function dead_server_pid(reported, pid)
	assert.is_true(reported == pid or reported == -1, ("pid %d reported for dead server %d"):format(reported, pid))
	return reported
end
local LEN = 64 * 1024

-- Starts `luablk CMD ARGS` (ARGS with --json); returns its pid and the
-- device's JSON line.
local function serve(cmd, args)
	local pid, line = u.start_cli(cmd, args)
	assert(line, "luablk " .. cmd .. " printed no device line")
	return pid, cjson.decode(line)
end

local function kill(pid, sig)
	assert.equal(0, ffi.C.kill(pid, sig))
end

-- Stops a server with SIGTERM: exit 0 and the device gone.
local function stop(pid, path)
	kill(pid, SIGTERM)
	assert.equal(0, luablk.wait(pid))
	assert.is_true(u.gone(path))
end

local function state(id)
	local info = luablk.query(id)
	return info and info.state
end

-- SIGKILLs a server and waits until the kernel has quiesced its device.
local function crash(pid, id)
	kill(pid, SIGKILL)
	assert.equal(128 + SIGKILL, luablk.wait(pid))
	assert.equal(
		"quiesced",
		u.eventually(30, function()
			return state(id) == "quiesced" and "quiesced"
		end)
	)
end

local function running(pid)
	local stat = posix.read_file("/proc/" .. pid .. "/stat")
	local st = stat and stat:match("^%d+ %(.*%) (%a)")
	return st ~= nil and st ~= "Z"
end

-- A forked child running fn, exiting with its number (99 if it raises).
local function child(fn)
	io.stdout:flush()
	io.stderr:flush()
	local pid = assert(luablk.fork())
	if pid == 0 then
		local ok, code = pcall(fn)
		luablk.exit(ok and code or 99)
	end
	return pid
end

-- A child that reads len bytes at 0 and exits 0 if they equal pattern, 1
-- if not, or with the errno of a failed read.
local function reader(path, pattern, len)
	return child(function()
		local buf = posix.aligned(len)
		local n, _, e = u.pread(u.open_direct(path), buf, len, 0)
		if n ~= len then
			return e or 98
		end
		return ffi.C.memcmp(buf, pattern, len) == 0 and 0 or 1
	end)
end

-- A child that writes pattern at 0; exits 0, or with the write's errno.
local function writer(path, pattern, len)
	return child(function()
		local n, _, e = u.pwrite(u.open_direct(path), pattern, len, 0)
		return n == len and 0 or (e or 98)
	end)
end

local function write_pattern(path, pattern, len)
	local fd = u.open_direct(path)
	assert.equal(len, u.pwrite(fd, pattern, len, 0))
	posix.close(fd)
end

-- Starts serving commands for one test, and registers a finally handler
-- that kills whatever they (or forked children, added with keep) left
-- running and deletes their devices, so a failed test leaves nothing. The
-- devices go before the waits: that fails IO still waiting for a server.
local function tracked()
	local pids, ids = {}, {}
	finally(function()
		for _, pid in ipairs(pids) do
			ffi.C.kill(pid, SIGKILL)
		end
		for _, id in ipairs(ids) do
			if luablk.query(id) then
				luablk.delete(id)
			end
		end
		for _, pid in ipairs(pids) do
			luablk.wait(pid)
		end
	end)
	local t = {}
	function t.keep(pid)
		pids[#pids + 1] = pid
		return pid
	end
	function t.serve(cmd, args)
		local pid, info = serve(cmd, args)
		t.keep(pid)
		ids[#ids + 1] = info.id
		return pid, info
	end
	return t
end

local function listed(id)
	for _, d in ipairs(cjson.decode(u.sh({ bin, "list", "--json" }))) do
		if d.id == id then
			return d
		end
	end
end

describe("a recoverable device", function()
	it("outlives its server: IO waits, and luablk recover serves it with the data kept", function()
		local t = tracked()
		local args = { "mem", "--size", "16M", "--queues", "2", "--recoverable", "--reissue", "--json" }
		local pid, info = t.serve("add", args)
		local id, path = info.id, info.path
		assert.equal("reissue", info.recovery)
		local pattern = u.pattern(LEN, 7)
		write_pattern(path, pattern, LEN)

		crash(pid, id)
		assert.is_true(posix.exists(path), "the block device went away with its server")
		local d = listed(id)
		assert.equal("quiesced", d.state)
		local shown = dead_server_pid(d.pid, pid) == -1 and "%-" or ("%%(%d%%)"):format(pid)
		assert.equal("reissue", d.recovery)
		assert.matches(("\n%d +quiesced .* %s +root +reissue "):format(id, shown), u.sh({ bin, "list" }))
		local r = reader(path, pattern, LEN)
		u.sleep(1)
		assert.is_true(running(r), "a read completed while no server ran")

		local pid2, info2 = t.serve("recover", { tostring(id), "mem", "--json" })
		assert.equal(0, luablk.wait(r))
		assert.equal(id, info2.id)
		assert.equal("live", info2.state)
		assert.equal(pid2, info2.pid)
		assert.equal(info.queues, info2.queues)
		assert.equal(16 * 2 ^ 20, info2.size)
		assert.equal("reissue", info2.recovery)

		-- The recovered server dies too; a third one takes over.
		crash(pid2, id)
		local pid3, line = u.start_cli("recover", { tostring(id), "mem" })
		t.keep(pid3)
		assert.equal(path, line)
		assert.equal(0, luablk.wait(reader(path, pattern, LEN)))
		assert.equal(pid3, listed(id).pid)
		stop(pid3, path)
		assert.is_false(posix.exists("/run/luablk/" .. id), "the kept regions outlived the device")
	end)

	for _, reissue in ipairs({ true, false }) do
		local what = reissue and "hands the IO its dead server held to the new one (--reissue)"
			or "fails the IO its dead server held with EIO (no --reissue)"
		it(what, function()
			local t = tracked()
			local backend = u.fixtures .. "/held_write.lua"
			local args = { backend, "--size", "4M", "--recoverable", "--json" }
			if reissue then
				args[#args + 1] = "--reissue"
			end
			args[#args + 1] = "--"
			args[#args + 1] = "hold=1"
			local pid, info = t.serve("add", args)
			local pattern = u.pattern(4096, 11)
			local w = t.keep(writer(info.path, pattern, 4096))
			local held = u.eventually(30, function()
				local p = luablk.shared_open(info.id, "held")
				local v = p and ffi.cast("uint64_t *", p)[0]
				if p then
					luablk.unmap(p, 8)
				end
				return v == 1
			end)
			assert.is_true(held, "the write never reached the backend")

			crash(pid, info.id)
			if reissue then
				u.sleep(1)
				assert.is_true(running(w), "the held write ended while no server ran")
			else
				assert.equal(EIO, luablk.wait(w))
			end
			local pid2 = t.serve("recover", { tostring(info.id), backend, "--json", "--", "hold=0" })
			if reissue then
				assert.equal(0, luablk.wait(w))
				assert.equal(0, luablk.wait(reader(info.path, pattern, 4096)))
			end
			stop(pid2, info.path)
		end)
	end
end)

describe("a recoverable device's regions on the /run tmpfs", function()
	local function devices()
		local n = 0
		for _, name in ipairs(posix.list_dir("/dev")) do
			n = n + (name:match("^ublkb%d+$") and 1 or 0)
		end
		return n
	end

	it("are reserved up front: one that does not fit is refused with one line, and no device stays", function()
		u.sh({ "mkdir", "-p", "/run/luablk" })
		u.sh({ "mount", "-t", "tmpfs", "-o", "size=8M,mode=0755", "luablk-small", "/run/luablk" })
		local ok, err = pcall(function()
			local before = devices()
			local status, _, stderr = u.run({ bin, "add", "mem", "--size", "64M", "--recoverable" })
			assert.not_equal(0, status)
			assert.equal(1, select(2, stderr:gsub("\n", "")), stderr)
			assert.matches("does not fit in /run/luablk", stderr, 1, true)
			assert.equal(before, devices())
			-- One that fits is served, and its memory is all there.
			local pid, info = serve("add", { "mem", "--size", "4M", "--recoverable", "--json" })
			write_pattern(info.path, u.pattern(LEN, 3), LEN)
			stop(pid, info.path)
		end)
		u.sh({ "umount", "/run/luablk" })
		assert(ok, err)
	end)
end)

describe("a recoverable device's server", function()
	it("still tears it down on SIGTERM under IO: the IO fails and the device goes", function()
		local t = tracked()
		local pid, info = t.serve("add", { "mem", "--size", "8M", "--recoverable", "--reissue", "--json" })
		local done = t.keep(child(function()
			local fd = u.open_direct(info.path)
			local buf = u.pattern(4096, 5)
			for i = 0, math.huge do
				local n, _, e = u.pwrite(fd, buf, 4096, (i % 2048) * 4096)
				if n ~= 4096 then
					return e or 98
				end
			end
		end))
		u.sleep(1)
		stop(pid, info.path)
		assert.equal(EIO, luablk.wait(done))
	end)
end)

describe("luablk recover refuses", function()
	local function refused(argv, pattern, code)
		local status, out, err = u.run(argv)
		assert.are_not.equal(0, status)
		if code then
			assert.equal(code, status)
		end
		assert.equal("", out)
		assert.equal(1, select(2, err:gsub("\n", "")), "expected one line on stderr, got: " .. err)
		assert.matches(pattern, err)
	end

	it("bad command lines and unknown devices", function()
		refused({ bin, "recover" }, "needs a device ID and a BACKEND", 2)
		refused({ bin, "recover", "0" }, "needs a device ID and a BACKEND", 2)
		refused({ bin, "recover", "x", "mem" }, "ID must be a whole number", 2)
		refused({ bin, "recover", "0", "mem", "--size", "1M" }, "unknown option %-%-size", 2)
		refused({ bin, "recover", "4000", "mem" }, "no ublk device 4000", 1)
	end)

	it("a device that is not recoverable, or whose server is alive, and leaves it serving", function()
		local t = tracked()
		local pid, info = t.serve("add", { "mem", "--size", "4M", "--json" })
		assert.equal("no", info.recovery)
		local pid2, info2 = t.serve("add", { "mem", "--size", "4M", "--recoverable", "--json" })
		assert.equal("yes", info2.recovery)
		refused({ bin, "recover", tostring(info.id), "mem" }, ("device %d is not recoverable"):format(info.id))
		local busy = ("device %d is live, served by pid %d"):format(info2.id, pid2)
		refused({ bin, "recover", tostring(info2.id), "mem" }, busy)
		for i, d in ipairs({ { pid, info }, { pid2, info2 } }) do
			local now = luablk.query(d[2].id)
			assert.equal("live", now.state)
			assert.equal(d[1], now.pid)
			local pattern = u.pattern(LEN, i)
			write_pattern(d[2].path, pattern, LEN)
			assert.equal(0, luablk.wait(reader(d[2].path, pattern, LEN)))
			stop(d[1], d[2].path)
		end
	end)

	it("a backend that does not load, and leaves the device quiesced for one that does", function()
		local t = tracked()
		local bad = os.tmpname() .. ".lua"
		local raising = os.tmpname() .. ".lua"
		finally(function()
			os.remove(bad)
			os.remove(raising)
		end)
		for path, text in pairs({ [bad] = "return {", [raising] = "return function() error('no disk today') end" }) do
			local f = assert(io.open(path, "w"))
			f:write(text)
			f:close()
		end
		local pid, info = t.serve("add", { "mem", "--size", "8M", "--recoverable", "--reissue", "--json" })
		local pattern = u.pattern(LEN, 3)
		write_pattern(info.path, pattern, LEN)
		crash(pid, info.id)
		local id = tostring(info.id)
		refused({ bin, "recover", id, "nosuch" }, "unknown backend")
		refused({ bin, "recover", id, bad }, "expected")
		refused({ bin, "recover", id, raising }, "no disk today")
		refused({ bin, "recover", id, "file", "--", "path=/nonexistent/img" }, "ENOENT")
		local now = luablk.query(info.id)
		assert.equal("quiesced", now.state)
		dead_server_pid(now.pid, pid)

		local pid2 = t.serve("recover", { id, "mem", "--json" })
		assert.equal(0, luablk.wait(reader(info.path, pattern, LEN)))
		stop(pid2, info.path)
	end)

	it("a stopped (dead) device, which luablk del then removes", function()
		-- STOP_DEV without DEL_DEV, as other ublk tools send it. The
		-- control commands are internal to the core, but the luablk
		-- binary exports them.
		ffi.cdef([[
			struct lb_ctrl;
			int lb_ctrl_open(struct lb_ctrl **out);
			int lb_ctrl_simple(struct lb_ctrl *c, unsigned int nr, uint32_t id, uint64_t data);
			void lb_ctrl_close(struct lb_ctrl *c);
		]])
		local t = tracked()
		local pid, info = t.serve("add", { "mem", "--size", "4M", "--recoverable", "--json" })
		crash(pid, info.id)
		local c = ffi.new("struct lb_ctrl *[1]")
		assert.equal(0, ffi.C.lb_ctrl_open(c))
		local rc = ffi.C.lb_ctrl_simple(c[0], 7, info.id, 0) -- UBLK_CMD_STOP_DEV
		ffi.C.lb_ctrl_close(c[0])
		assert.equal(0, rc)
		assert.equal("dead", state(info.id))
		refused({ bin, "recover", tostring(info.id), "mem" }, ("device %d is dead"):format(info.id))
		u.sh({ bin, "del", tostring(info.id) })
		assert.is_nil(luablk.query(info.id))
		assert.is_true(u.gone("/dev/ublkc" .. info.id))
		assert.is_false(posix.exists("/run/luablk/" .. info.id))
	end)
end)

describe("luablk del", function()
	it("removes a quiesced device that has no server, and the regions it kept", function()
		local t = tracked()
		local pid, info = t.serve("add", { "mem", "--size", "4M", "--recoverable", "--json" })
		crash(pid, info.id)
		assert.is_true(posix.exists("/run/luablk/" .. info.id .. "/mem"))
		-- An IO waiting for a server ends with an error once the device goes.
		local r = reader(info.path, u.pattern(4096, 1), 4096)
		u.sh({ bin, "del", tostring(info.id) })
		assert.is_nil(listed(info.id))
		assert.is_true(u.gone(info.path))
		assert.is_true(u.gone("/dev/ublkc" .. info.id))
		assert.is_false(posix.exists("/run/luablk/" .. info.id))
		assert.are_not.equal(0, luablk.wait(r))
	end)
end)

describe("--fail-io", function()
	it("is refused in one line where the kernel lacks USER_RECOVERY_FAIL_IO, else fails IO without a server", function()
		local names = assert(luablk.features())
		local supported = false
		for _, n in ipairs(names) do
			supported = supported or n == "user_recovery_fail_io"
		end
		local t = tracked()
		if not supported then
			local before = #assert(luablk.list())
			local status, out, err = u.run({ bin, "add", "mem", "--size", "4M", "--fail-io" })
			assert.equal(1, status)
			assert.equal("", out)
			assert.equal("luablk: the running kernel does not support UBLK_F_USER_RECOVERY_FAIL_IO "
				.. "(--fail-io needs Linux 6.13 or later)\n", err)
			assert.equal(before, #assert(luablk.list()), "a device was left behind")
			return
		end
		local pid, info = t.serve("add", { "mem", "--size", "4M", "--fail-io", "--json" })
		assert.equal("fail-io", info.recovery)
		kill(pid, SIGKILL)
		luablk.wait(pid)
		assert.equal("fail-io", u.eventually(30, function()
			return state(info.id) == "fail-io" and "fail-io"
		end))
		-- 7.x fails IO in FAIL_IO state with BLK_STS_TARGET, which reads EREMOTEIO.
		local e = luablk.wait(reader(info.path, u.pattern(4096, 1), 4096))
		assert.is_true(e == EIO or e == EREMOTEIO, "the read ended with " .. tostring(e))
		local pid2 = t.serve("recover", { tostring(info.id), "mem", "--json" })
		stop(pid2, info.path)
	end)
end)

describe("luablk features", function()
	it("says which recovery options the kernel allows", function()
		local got = cjson.decode(u.sh({ bin, "features", "--json" }))
		local set = {}
		for _, n in ipairs(got.features) do
			set[n] = true
		end
		assert.is_true(got.recovery.recoverable)
		assert.is_true(got.recovery.reissue)
		assert.equal(set.user_recovery_fail_io == true, got.recovery.fail_io)
		assert.matches("\nrecovery: %-%-recoverable yes, %-%-reissue yes, %-%-fail%-io ", u.sh({ bin, "features" }))
	end)
end)
