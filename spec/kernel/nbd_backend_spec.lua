-- The nbd backend on the real kernel, in front of servers this project
-- did not write: qemu-nbd serving a qcow2 image and nbdkit's memory
-- plugin with its error and delay filters, on a unix socket or
-- 127.0.0.1 only, started and stopped here.
local luablk = require("luablk")
local posix = require("luablk.posix")
local u = require("kernel.util")
local servers = require("nbd_servers")

-- `luablk add nbd ARGS -- URI EXTRA...`; returns pid and device path.
local function add(uri, args, extra)
	local argv = { "nbd" }
	for _, a in ipairs(args or {}) do
		argv[#argv + 1] = a
	end
	argv[#argv + 1] = "--"
	argv[#argv + 1] = uri
	for _, a in ipairs(extra or {}) do
		argv[#argv + 1] = a
	end
	local pid, path = u.start_add(argv)
	assert(path and path:match("^/dev/ublkb%d+$"), "luablk add printed no device: " .. tostring(path))
	return pid, path
end

local function size_of(path)
	return tonumber(u.sh({ "blockdev", "--getsize64", path }))
end

-- dd on path; returns its exit status and stderr.
local function dd(args)
	local argv = { "dd", "status=none" }
	for _, a in ipairs(args) do
		argv[#argv + 1] = a
	end
	local status, _, err = u.run(argv)
	return status, err
end

local function ublk_devices()
	local n = 0
	for _, name in ipairs(posix.list_dir("/dev") or {}) do
		if name:match("^ublkb%d+$") then
			n = n + 1
		end
	end
	return n
end

describe("the nbd backend", function()
	setup(function()
		-- The guest starts with its loopback down; the TCP specs need it.
		u.sh({ "ip", "link", "set", "lo", "up" })
	end)

	it("fronts qemu-nbd's qcow2 image: fio crc32c verify at QD32 on 2 queues (multi-conn)", function()
		local s = servers.qemu_nbd("64M", "disk0")
		finally(function()
			servers.stop(s)
		end)
		local pid, path = add(s.uri("disk0"), { "--queues", "2" })
		assert.equal(64 * 2 ^ 20, size_of(path))
		local _, finish = u.fio_verify(path, { depth = 32, size = "16M" })
		local job = finish()
		assert.is_true(job.write.total_ios >= 8192)
		u.stop(pid, path)
	end)

	it("keeps ext4 on qemu-nbd over TCP intact, and e2fsck finds it clean", function()
		local s = servers.qemu_nbd("64M", "fs", { tcp = true })
		finally(function()
			servers.stop(s)
		end)
		local pid, path = add(s.uri("fs"), { "--queues", "2" })
		local mnt = os.tmpname()
		os.remove(mnt)
		u.sh({ "mkfs.ext4", "-q", "-F", path })
		u.sh({ "mkdir", mnt })
		u.sh({ "mount", path, mnt })
		local ok, err = pcall(u.sh, {
			"sh",
			"-c",
			'for i in $(seq 1 20); do dd if=/dev/urandom of="$1/f$i" bs=64k count=4 conv=fsync status=none || exit 1; done;'
				.. ' cd "$1" && sha256sum f* > /tmp/nbd-sums-$$ && sync && sha256sum -c --quiet /tmp/nbd-sums-$$',
			"writers",
			mnt,
		})
		u.run({ "umount", mnt })
		u.run({ "rmdir", mnt })
		assert(ok, err)
		u.sh({ "e2fsck", "-f", "-n", path })
		u.stop(pid, path)
	end)

	it("passes nbdkit's injected errors to the application, live, and serves through its delay filter", function()
		local trigger
		local s = servers.nbdkit("16M", {
			filters = { "error", "delay" },
			params = function(dir)
				trigger = dir .. "/fail-reads"
				return { "error=EIO", "error-pread-rate=1", "error-pread-file=" .. trigger, "delay-write=10ms" }
			end,
		})
		finally(function()
			servers.stop(s)
		end)
		local pid, path = add(s.uri())
		assert.equal(0, (dd({ "if=" .. path, "of=/dev/null", "bs=4k", "count=4", "iflag=direct" })))
		assert(posix.write_new(trigger, ""))
		local status, err = dd({ "if=" .. path, "of=/dev/null", "bs=4k", "count=1", "skip=100", "iflag=direct" })
		assert.is_true(status ~= 0)
		assert.matches("Input/output error", err, 1, true)
		os.remove(trigger)
		local _, finish = u.fio_verify(path, { depth = 16, size = "4M", jobs = 1 })
		finish()
		u.stop(pid, path)
	end)

	it("fails the IOs in flight with EIO when the server dies mid-IO; the device can still be removed", function()
		local s = servers.nbdkit("16M", { filters = { "delay" }, params = { "delay-write=3" } })
		finally(function()
			servers.stop(s)
		end)
		local pid, path = add(s.uri())
		local writer = assert(luablk.spawn({
			"dd", "if=/dev/zero", "of=" .. path, "bs=4k", "count=8", "oflag=direct", "status=none",
		}))
		u.sleep(0.5)
		servers.kill(s)
		assert.is_true(luablk.wait(writer) ~= 0)
		local status = dd({ "if=" .. path, "of=/dev/null", "bs=4k", "count=1", "iflag=direct" })
		assert.is_true(status ~= 0)
		u.stop(pid, path)
	end)

	it("with reconnect=, lets IO wait for a restarted qemu-nbd, and loses nothing", function()
		local s = servers.qemu_nbd("16M", "disk0")
		finally(function()
			servers.stop(s)
		end)
		local pid, path = add(s.uri("disk0"), {}, { "reconnect=30" })
		local src = os.tmpname()
		u.sh({ "dd", "if=/dev/urandom", "of=" .. src, "bs=1M", "count=4", "status=none" })
		-- conv=fsync: qemu-nbd keeps qcow2 metadata in its memory until a
		-- flush, and a server killed before one may lose acknowledged writes.
		assert.equal(0, (dd({ "if=" .. src, "of=" .. path, "bs=64k", "oflag=direct", "conv=fsync" })))
		servers.kill(s)
		-- Reads wait while the server is away, then finish.
		local out = os.tmpname()
		local reader = assert(luablk.spawn({
			"dd", "if=" .. path, "of=" .. out, "bs=64k", "count=64", "iflag=direct", "status=none",
		}))
		u.sleep(1)
		servers.restart(s)
		assert.equal(0, luablk.wait(reader))
		u.sh({ "cmp", src, out })
		os.remove(src)
		os.remove(out)
		u.stop(pid, path)
	end)

	it("refuses in one line, with no device: unknown export, two queues without multi-conn, no server", function()
		local s = servers.qemu_nbd("16M", "disk0", { shared = 1 })
		finally(function()
			servers.stop(s)
		end)
		local before = ublk_devices()
		for _, case in ipairs({
			{ { "nbd", "--", s.uri("nope") }, "refused export 'nope'" },
			{ { "nbd", "--queues", "2", "--", s.uri("disk0") }, "CAN_MULTI_CONN" },
			{ { "nbd", "--", "nbd+unix:///x?socket=" .. s.dir .. "/none" }, "cannot connect" },
			{ { "nbd", "--", "nbds://127.0.0.1/x" }, "TLS" },
			{ { "nbd", "--size", "32M", "--", s.uri("disk0") }, "fewer than the device's" },
		}) do
			local argv = { u.luablk_bin, "add" }
			for _, a in ipairs(case[1]) do
				argv[#argv + 1] = a
			end
			local status, out, err = u.run(argv)
			assert.is_true(status ~= 0, table.concat(argv, " "))
			assert.equal("", out)
			assert.matches(case[2], err, 1, true)
			assert.equal(1, select(2, err:gsub("\n", "")), err)
		end
		assert.equal(before, ublk_devices())
	end)
end)
