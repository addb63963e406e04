-- Async backends on the real kernel: many IOs in flight per queue, finished
-- out of order, verified by fio; deadlines; teardown and reload with IOs
-- parked in the backend.
local ffi = require("ffi")
local luablk = require("luablk")
local posix = require("luablk.posix")
local u = require("kernel.util")

local SIGTERM, SIGKILL = 15, 9
local ASYNC_MEM = u.fixtures .. "/async_mem.lua"

local function id_of(path)
	return tonumber(path:match("(%d+)$"))
end

local fio_verify, stop = u.fio_verify, u.stop

describe("an async backend", function()
	it("serves fio crc32c verify at QD128 on 2 queues, out of order", function()
		local pid, path = u.start_add({ ASYNC_MEM, "--size", "16M", "--queues", "2", "--", "max_us=3000" })
		assert(path, "luablk add printed no device")
		local _, finish = fio_verify(path, {})
		local job = finish()
		assert.is_true(job.write.total_ios >= 4096)
		stop(pid, path)
	end)

	for _, direct in ipairs({ "0", "1" }) do
		it("file (direct=" .. direct .. ") serves fio crc32c verify at QD128 on 2 queues", function()
			local img = os.tmpname()
			u.sh({ "truncate", "-s", "16M", img })
			local pid, path =
				u.start_add({ "file", "--size", "16M", "--queues", "2", "--", "path=" .. img, "direct=" .. direct })
			assert(path, "luablk add printed no device")
			local _, finish = fio_verify(path, {})
			finish()
			stop(pid, path)
			os.remove(img)
		end)
	end

	it("file keeps ext4 with fsync-heavy work intact across a restart, and e2fsck finds it clean", function()
		local img, mnt = os.tmpname(), os.tmpname()
		os.remove(mnt)
		u.sh({ "truncate", "-s", "64M", img })
		u.sh({ "mkfs.ext4", "-q", "-F", img })
		local function serve()
			local pid, path = u.start_add({ "file", "--size", "64M", "--queues", "2", "--", "path=" .. img })
			assert(path, "luablk add printed no device")
			return pid, path
		end
		local pid, path = serve()
		u.sh({ "mkdir", "-p", mnt })
		u.sh({ "mount", path, mnt })
		local ok, err = pcall(function()
			-- Four writers, each fsyncing every file, in parallel.
			u.sh({
				"sh",
				"-c",
				'for w in 1 2 3 4; do (for i in $(seq 1 40); do '
					.. 'dd if=/dev/urandom of="$1/w$w-$i" bs=16k count=4 conv=fsync status=none || exit 1; '
					.. 'done) & done; wait; cd "$1" && sha256sum w* > ../sums-$$ && mv ../sums-$$ sums',
				"writers",
				mnt,
			})
		end)
		local sums = posix.read_file(mnt .. "/sums")
		u.run({ "umount", mnt })
		stop(pid, path)
		assert(ok, err)
		assert.is_truthy(sums)
		u.sh({ "e2fsck", "-f", "-n", img })
		pid, path = serve()
		u.sh({ "mount", path, mnt })
		local status, out = u.run({ "sh", "-c", 'cd "$1" && sha256sum -c --quiet sums', "check", mnt })
		u.run({ "umount", mnt })
		stop(pid, path)
		u.sh({ "rmdir", mnt })
		os.remove(img)
		assert.equal(0, status, out)
	end)

	it("keeps fault, stats and trace exact in front of async file", function()
		local img, trace = os.tmpname(), os.tmpname()
		u.sh({ "truncate", "-s", "16M", img })
		local pid, path = u.start_add({
			"file",
			"--size",
			"16M",
			"--filter",
			"trace:path=" .. trace,
			"--filter",
			"stats",
			"--filter",
			-- Far from where the kernel and udev probe the new device.
			"fault:op=read,from=8M,to=9M,nth=5,errno=EIO",
			"--",
			"path=" .. img,
		})
		assert(path, "luablk add printed no device")
		local status = u.run({ "dd", "if=/dev/zero", "of=" .. path, "bs=4k", "count=64", "oflag=direct", "status=none" })
		assert.equal(0, status)
		local _, out = u.run({ u.luablk_bin, "stats", tostring(id_of(path)), "--json", "--interval", "0.1" })
		local st = require("cjson").decode(out)
		assert.is_true(st.ops.write.count >= 64)
		-- The fifth read fails, exactly once.
		local fails = 0
		for i = 1, 8 do
			local s = u.run({
				"dd",
				"if=" .. path,
				"of=/dev/null",
				"bs=4k",
				"count=1",
				"skip=" .. (2048 + i),
				"iflag=direct",
				"status=none",
			})
			fails = fails + (s ~= 0 and 1 or 0)
		end
		assert.equal(1, fails)
		stop(pid, path)
		local lines = 0
		for _ in (posix.read_file(trace) or ""):gmatch("\n") do
			lines = lines + 1
		end
		assert.is_true(lines >= 64 + 8)
		os.remove(img)
		os.remove(trace)
	end)

	it("serves fio verify with --user-copy", function()
		local pid, path = u.start_add({ ASYNC_MEM, "--size", "16M", "--user-copy", "--", "max_us=2000" })
		assert(path, "luablk add printed no device")
		local _, finish = fio_verify(path, { jobs = 1, depth = 32 })
		finish()
		stop(pid, path)
	end)

	it("fails an IO that outlives --io-timeout with ETIMEDOUT, and serves on", function()
		local pid, path = u.start_add({ ASYNC_MEM, "--size", "4M", "--io-timeout", "1", "--", "stuck=1" })
		assert(path, "luablk add printed no device")
		local t0 = luablk.now()
		local status, _, stderr =
			u.run({ "dd", "if=" .. path, "of=/dev/null", "bs=4k", "count=1", "iflag=direct", "status=none" })
		local took = luablk.now() - t0
		assert.not_equal(0, status)
		assert.matches("timed out", stderr)
		assert.is_true(took < 2.5, "the read took " .. took .. " s")
		-- Writes are not stuck: the device keeps serving.
		status, _, stderr = u.run({
			"dd",
			"if=/dev/zero",
			"of=" .. path,
			"bs=4k",
			"count=16",
			"oflag=direct",
			"conv=notrunc",
			"status=none",
		})
		assert.equal(0, status, stderr)
		t0 = luablk.now()
		stop(pid, path)
		assert.is_true(luablk.now() - t0 < 5)
	end)

	it("finishes the IOs it holds when SIGTERM comes, and the device goes", function()
		local pid, path = u.start_add({ ASYNC_MEM, "--size", "16M", "--queues", "2", "--", "max_us=200000" })
		assert(path, "luablk add printed no device")
		local fio = fio_verify(path, { loops = 100 })
		u.sleep(2)
		local t0 = luablk.now()
		ffi.C.kill(pid, SIGTERM)
		assert.equal(0, luablk.wait(pid))
		assert.is_true(luablk.now() - t0 < 10)
		assert.is_true(u.gone(path))
		luablk.wait(fio)
	end)

	it("loses its device, not the machine, to SIGKILL with IOs parked", function()
		local pid, path = u.start_add({ ASYNC_MEM, "--size", "16M", "--", "max_us=200000" })
		assert(path, "luablk add printed no device")
		local fio = fio_verify(path, { jobs = 1, loops = 100 })
		u.sleep(2)
		ffi.C.kill(pid, SIGKILL)
		luablk.wait(pid)
		luablk.wait(fio)
		u.sh({ u.luablk_bin, "del", tostring(id_of(path)) })
		assert.is_true(u.gone(path))
	end)

	it("fronts examples/remote_store_server.lua: fio verify over a socket at QD32", function()
		local sock = os.tmpname()
		os.remove(sock)
		local server = assert(luablk.spawn({
			u.luablk_bin,
			"run",
			u.root .. "/examples/remote_store_server.lua",
			sock,
			"16M",
			"500",
		}))
		local ok, err = pcall(function()
			assert.is_truthy(u.eventually(10, function()
				return posix.exists(sock)
			end))
			u.sleep(0.2)
			local pid, path = u.start_add({
				u.root .. "/examples/remote_store.lua",
				"--size",
				"16M",
				"--queues",
				"2",
				"--",
				"socket=" .. sock,
			})
			assert(path, "luablk add printed no device")
			local _, finish = fio_verify(path, { depth = 32 })
			finish()
			stop(pid, path)
		end)
		ffi.C.kill(server, SIGKILL)
		luablk.wait(server)
		os.remove(sock)
		assert(ok, err)
	end)

	it("is recovered after SIGKILL under fio verify (--reissue): no IO lost or doubled", function()
		local pid, line = u.start_add({
			ASYNC_MEM,
			"--size",
			"16M",
			"--queues",
			"2",
			"--recoverable",
			"--reissue",
			"--json",
			"--",
			"max_us=20000",
		})
		assert(line, "luablk add printed no device")
		local info = require("cjson").decode(line)
		local _, finish = fio_verify(info.path, {})
		u.sleep(2)
		ffi.C.kill(pid, SIGKILL)
		luablk.wait(pid)
		local pid2, line2 =
			u.start_cli("recover", { tostring(info.id), ASYNC_MEM, "--json", "--", "max_us=20000" })
		assert(line2, "luablk recover printed no device")
		finish()
		stop(pid2, info.path)
	end)

	it("is reloaded under fio verify: the IOs in flight drain, none is lost", function()
		local pid, path = u.start_add({ ASYNC_MEM, "--size", "16M", "--queues", "2", "--", "max_us=3000" })
		assert(path, "luablk add printed no device")
		local _, finish = fio_verify(path, { loops = 3 })
		u.sleep(1)
		for _ = 1, 5 do
			local status, _, stderr = u.run({ u.luablk_bin, "reload", tostring(id_of(path)) })
			assert.equal(0, status, stderr)
			u.sleep(0.3)
		end
		finish()
		stop(pid, path)
	end)
end)
