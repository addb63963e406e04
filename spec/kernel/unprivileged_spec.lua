-- Unprivileged devices as users meet them. The VM has no way to add a
-- user, so uid 65534 (nobody) and 65533 act through setpriv, and gid 65530
-- stands for group ublk: /dev/ublk-control is given to it here the way
-- etc/97-ublk-device.rules does, and put back afterwards. The VM has no
-- udevd either: udev_emulator.lua runs the shipped rule's RUN programs as
-- root when device nodes appear, as udevd would.
local ffi = require("ffi")
local cjson = require("cjson")
local luablk = require("luablk")
local posix = require("luablk.posix")
local u = require("kernel.util")

local bin = u.luablk_bin
local RULES = u.root .. "/etc/97-ublk-device.rules"
local RULES_DIR = "/run/udev/rules.d"
local UBLK_GID = 65530
local NOBODY = { uid = 65534, gid = 65534, groups = { UBLK_GID } }
local OTHER = { uid = 65533, gid = 65533, groups = { UBLK_GID } }
-- Same group as nobody's devices, so the nodes' mode lets it in.
local NOBODY_GROUP = { uid = 65533, gid = 65533, groups = { UBLK_GID, 65534 } }
local OUTSIDER = { uid = 65534, gid = 65534, groups = {} }
local XDG = "/tmp/luablk-xdg-65534"

-- argv run as user, with XDG_RUNTIME_DIR set as a login would.
local function as(user, argv)
	local out = { "setpriv", "--reuid=" .. user.uid, "--regid=" .. user.gid }
	if #user.groups > 0 then
		out[#out + 1] = "--groups=" .. table.concat(user.groups, ",")
	else
		out[#out + 1] = "--clear-groups"
	end
	out[#out + 1] = "env"
	out[#out + 1] = "XDG_RUNTIME_DIR=" .. XDG
	for _, a in ipairs(argv) do
		out[#out + 1] = a
	end
	return out
end

local function luablk_as(user, ...)
	return as(user, { bin, ... })
end

-- "uid:gid mode" of a path, from stat(1).
local function owner(path)
	return (u.sh({ "stat", "-c", "%u:%g %a", path }):gsub("%s+$", ""))
end

-- Starts `luablk add ARGS` as user; returns its pid and first stdout line.
local function start_add_as(user, args)
	return u.start_add(args, as(user, {}))
end

-- Runs argv and checks it fails with exactly one stderr line matching
-- pattern, prints nothing, and leaves the number of devices unchanged.
local function refused(argv, pattern)
	local before = #assert(luablk.list())
	local status, out, err = u.run(argv)
	assert.are_not.equal(0, status)
	assert.equal("", out)
	assert.equal(1, select(2, err:gsub("\n", "")), "expected one line on stderr, got: " .. err)
	assert.matches(pattern, err)
	assert.equal(before, #assert(luablk.list()), "a device was left behind")
	return err
end

local control_was, emulator, emulator_log
local emulator_output = ""

local function start_emulator()
	emulator_log = os.tmpname()
	local fd = assert(posix.open(emulator_log, posix.O_WRONLY + posix.O_TRUNC))
	local argv = { bin, "run", u.root .. "/spec/kernel/udev_emulator.lua", RULES, bin }
	emulator = assert(luablk.spawn(argv, { stderr = fd }))
	posix.close(fd)
end

local function stop_emulator()
	ffi.C.kill(emulator, 15)
	luablk.wait(emulator)
	emulator_output = emulator_output .. (posix.read_file(emulator_log) or "")
	os.remove(emulator_log)
end

setup(function()
	control_was = owner("/dev/ublk-control")
	u.sh({ "chgrp", tostring(UBLK_GID), "/dev/ublk-control" })
	u.sh({ "chmod", "0660", "/dev/ublk-control" })
	u.sh({ "mkdir", "-p", RULES_DIR })
	u.sh({ "cp", RULES, RULES_DIR .. "/97-ublk-device.rules" })
	u.sh({ "mkdir", "-p", "-m", "0700", XDG })
	u.sh({ "chown", "65534:65534", XDG })
	start_emulator()
end)

teardown(function()
	stop_emulator()
	local ugid, mode = control_was:match("^(%S+) (%S+)$")
	u.sh({ "chown", ugid, "/dev/ublk-control" })
	u.sh({ "chmod", mode, "/dev/ublk-control" })
	os.remove(RULES_DIR .. "/97-ublk-device.rules")
	u.sh({ "rm", "-rf", XDG })
	assert.equal("", emulator_output, "the udev rule's program failed")
end)

describe("an unprivileged device", function()
	it("is added, used, listed and deleted by a non-root user", function()
		local args = { "mem", "--size", "16M", "--unprivileged", "--json", "--filter", "stats" }
		local pid, line = start_add_as(NOBODY, args)
		assert.is_string(line, "add printed nothing")
		local info = cjson.decode(line)
		local id = info.id
		assert.is_true(info.unprivileged)
		assert.equal(65534, info.owner_uid)
		assert.equal(65534, info.owner_gid)
		-- the rule gave both nodes to the owner, and to no one else
		assert.equal("65534:65534 600", owner("/dev/ublkc" .. id))
		assert.equal("65534:65534 600", owner(info.path))

		-- IO through the block device, by the owner
		local data = os.tmpname()
		u.sh({ "dd", "if=/dev/urandom", "of=" .. data, "bs=64k", "count=16", "status=none" })
		u.sh({ "chmod", "0644", data })
		u.sh(as(NOBODY, { "dd", "if=" .. data, "of=" .. info.path, "bs=64k", "oflag=direct", "status=none" }))
		local back = u.sh(as(NOBODY, { "dd", "if=" .. info.path, "bs=64k", "count=16", "iflag=direct", "status=none" }))
		assert.is_true(back == posix.read_file(data), "read back differs from what was written")
		os.remove(data)

		-- list, as the owner and as root
		local function find(rows)
			for _, r in ipairs(rows) do
				if r.id == id then
					return r
				end
			end
		end
		local mine = find(cjson.decode(u.sh(luablk_as(NOBODY, "list", "--json"))))
		assert.is_table(mine, "the owner's list lacks its device")
		assert.equal("live", mine.state)
		assert.equal(pid, mine.pid)
		assert.equal(16 * 2 ^ 20, mine.size)
		assert.is_true(mine.unprivileged)
		assert.equal(65534, find(cjson.decode(u.sh({ bin, "list", "--json" }))).owner_uid)
		assert.matches(("\n%d +live .* 65534:65534 +no +/dev/ublkb%d\n"):format(id, id), u.sh(luablk_as(NOBODY, "list")))

		-- its stats filter, reached through the owner's runtime directory
		local stats = cjson.decode(u.sh(luablk_as(NOBODY, "stats", tostring(id), "--interval", "0.1", "--json")))
		assert.is_true(stats.ops.write.count > 0)

		-- only synchronous deletes are possible; then the owner deletes it
		refused(luablk_as(NOBODY, "del", tostring(id), "--async"), "only synchronously")
		u.sh(luablk_as(NOBODY, "del", tostring(id)))
		assert.equal(0, luablk.wait(pid))
		assert.is_true(u.gone(info.path))
		assert.is_true(u.gone("/dev/ublkc" .. id))
	end)

	it("cannot be controlled or opened by another user", function()
		local pid, line = start_add_as(NOBODY, { "null", "--size", "1M", "--unprivileged" })
		local id = tonumber(line:match("(%d+)$"))
		refused(luablk_as(OTHER, "del", tostring(id)), "device %d+: permission denied: /dev/ublkc%d+ belongs to uid 65534")
		local status, out, err = u.run(luablk_as(OTHER, "list"))
		assert.equal(0, status)
		assert.is_nil(out:match("/dev/ublkb" .. id), "another user's list shows the device")
		assert.matches("not shown", err)
		-- --all means all of one's own: nothing here
		status, out, err = u.run(luablk_as(OTHER, "del", "--all"))
		assert.same({ 0, "" }, { status, out })
		assert.matches("left alone", err)
		-- the node's mode keeps others out ...
		status, out, err = u.run(as(OTHER, { "dd", "if=" .. line, "of=/dev/null", "count=1", "status=none" }))
		assert.are_not.equal(0, status)
		assert.equal("", out)
		assert.matches("Permission denied", err)
		-- ... and the kernel refuses anyone but the owner, mode or not
		-- (udevd would make it 0660 for group disk; devtmpfs makes 0600)
		u.sh({ "chmod", "0660", line })
		status, out, err = u.run(as(NOBODY_GROUP, { "dd", "if=" .. line, "of=/dev/null", "count=1", "status=none" }))
		assert.are_not.equal(0, status)
		assert.equal("", out)
		assert.matches("Operation not permitted", err)
		assert.equal("live", assert(luablk.query(id)).state)
		-- root may still stop it
		assert.equal(0, ffi.C.kill(pid, 15))
		assert.equal(0, luablk.wait(pid))
		assert.is_true(u.gone(line))
	end)

	it("loses its server to SIGKILL when an IO outlives the timeout", function()
		local args = { "null", "--size", "1M", "--unprivileged", "--filter", "delay:op=read,ms=3000" }
		local pid, line = start_add_as(NOBODY, args)
		local id = tonumber(line:match("(%d+)$"))
		-- (for root's devices the kernel just restarts the timer)
		local f = assert(io.open(("/sys/block/ublkb%d/queue/io_timeout"):format(id), "w"))
		f:write("1000")
		f:close()
		local dd = { "dd", "if=" .. line, "of=/dev/null", "bs=4k", "count=1", "iflag=direct", "status=none" }
		local status = u.run(as(NOBODY, dd))
		local dead = u.eventually(30, function()
			return assert(luablk.query(id)).state == "dead"
		end)
		if not dead then
			ffi.C.kill(pid, 15)
		end
		assert.equal(128 + 9, luablk.wait(pid))
		assert.is_true(dead)
		assert.are_not.equal(0, status)
		u.sh(luablk_as(NOBODY, "del", tostring(id)))
		assert.is_true(u.gone("/dev/ublkc" .. id))
	end)
end)

describe("udev-owner", function()
	local udev = require("luablk.udev")

	-- udev-owner NODE of device id, where its first query answers for
	-- nobody's device (pid serves it) and, before udev-owner goes on,
	-- nobody's device is deleted and root's takes its id.
	local function owner_after_reuse(kind)
		local pid, line = start_add_as(NOBODY, { "null", "--size", "1M", "--unprivileged" })
		local id = tonumber(line:match("(%d+)$"))
		local node = ("/dev/ublk%s%d"):format(kind, id)
		assert.matches("^65534:65534 ", owner(node))
		local query, root_dev = luablk.query, nil
		luablk.query = function(q)
			if root_dev then
				return query(q)
			end
			local info = query(q)
			assert.equal(0, ffi.C.kill(pid, 15))
			assert.equal(0, luablk.wait(pid))
			assert.is_true(u.gone(node))
			root_dev = u.add({ backend = "null", size = 2 ^ 20, id = id })
			return info
		end
		local ok, res, msg = pcall(udev.owner, { node })
		luablk.query = query
		local got = root_dev and owner(node)
		if root_dev then
			root_dev:close()
		end
		assert(ok, res)
		assert.is_true(res, msg)
		return got
	end

	it("gives the owner alone access to the nodes", function()
		local pid, line = start_add_as(NOBODY, { "null", "--size", "1M", "--unprivileged" })
		local id = tonumber(line:match("(%d+)$"))
		-- as udevd leaves them on a change event, for instance
		for _, node in ipairs({ "/dev/ublkc" .. id, line }) do
			u.sh({ "chown", "0:6", node })
			u.sh({ "chmod", "0666", node })
			u.sh({ bin, "udev-owner", node })
			assert.equal("65534:65534 600", owner(node))
		end
		assert.equal(0, ffi.C.kill(pid, 15))
		assert.equal(0, luablk.wait(pid))
	end)

	it("gives the nodes back to root when the device's id went to root's device meanwhile", function()
		assert.equal("0:0 600", owner_after_reuse("c"))
		assert.equal("0:0 600", owner_after_reuse("b"))
	end)
end)

describe("a non-root user", function()
	it("cannot control root's devices, and --unprivileged means nothing to root", function()
		local pid, line = u.start_add({ "null", "--size", "1M", "--unprivileged" })
		local id = tonumber(line:match("(%d+)$"))
		local info = assert(luablk.query(id))
		assert.is_false(info.unprivileged)
		assert.matches("^0:0 ", owner("/dev/ublkc" .. id))
		refused(luablk_as(NOBODY, "del", tostring(id)), "created by root, and only root controls it")
		local status, out, err = u.run(luablk_as(NOBODY, "list", "--json"))
		assert.equal(0, status)
		assert.equal("[]\n", out)
		assert.matches("not shown", err)
		status = u.run(luablk_as(NOBODY, "del", "--all"))
		assert.equal(0, status)
		assert.equal("live", assert(luablk.query(id)).state)
		-- without the control device there is nothing to list by
		refused(luablk_as(OUTSIDER, "list"), "permission denied on /dev/ublk%-control")
		refused(luablk_as(OUTSIDER, "del", "--all"), "permission denied on /dev/ublk%-control")
		assert.equal(0, ffi.C.kill(pid, 15))
		assert.equal(0, luablk.wait(pid))
	end)

	it("gets one line and no device for what it may not do", function()
		refused(luablk_as(NOBODY, "add", "mem", "--size", "1M"), "only root can create ordinary devices: use %-%-unpriv")
		refused(luablk_as(OUTSIDER, "add", "mem", "--size", "1M", "--unprivileged"), "join group 65530")
		refused(luablk_as(OUTSIDER, "features"), "permission denied on /dev/ublk%-control")
		refused(luablk_as(NOBODY, "del", "4000"), "no ublk device 4000")
		refused(luablk_as(NOBODY, "udev-owner", "sda"), "not a ublk device node")
		-- the rule's program is quiet about a device that is gone already
		local status, out, err = u.run({ bin, "udev-owner", "/dev/ublkc4000" })
		assert.same({ 0, "", "" }, { status, out, err })
		-- without the udev rule the device would stay root's: refused first
		os.remove(RULES_DIR .. "/97-ublk-device.rules")
		local ok, e = pcall(refused, luablk_as(NOBODY, "add", "mem", "--size", "1M", "--unprivileged"), "no udev rule")
		u.sh({ "cp", RULES, RULES_DIR .. "/97-ublk-device.rules" })
		assert(ok, e)
	end)

	it("is told when udev never hands over the node, and root can clean up", function()
		stop_emulator()
		local before = #assert(luablk.list())
		local status, out, err = u.run(luablk_as(NOBODY, "add", "null", "--size", "1M", "--unprivileged"))
		start_emulator()
		assert.are_not.equal(0, status)
		assert.equal("", out)
		assert.equal(1, select(2, err:gsub("\n", "")), err)
		local id = tonumber(err:match("luablk del (%d+)"))
		assert.matches("/dev/ublkc%d+ did not become yours", err)
		-- the kernel let nobody create it; without udev, only root can delete it
		assert.equal(before + 1, #assert(luablk.list()))
		u.sh({ bin, "del", tostring(id) })
		assert.equal(before, #assert(luablk.list()))
	end)
end)
