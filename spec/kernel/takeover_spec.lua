-- luablk recover --takeover (QUIESCE_DEV, Linux 6.16+): a new server
-- replaces a running one on a recoverable device while ext4 is mounted on
-- it and fio verifies files, and not one IO fails. Older kernels refuse
-- it in one line, and leave the old server serving.
local ffi = require("ffi")
local cjson = require("cjson")
local luablk = require("luablk")
local posix = require("luablk.posix")
local u = require("kernel.util")

local bin = u.luablk_bin
local SIGTERM = 15

local function serve(cmd, args, wrap)
	local pid, line = u.start_cli(cmd, args, wrap)
	assert(line, "luablk " .. cmd .. " printed no device line")
	return pid, cjson.decode(line)
end

-- fio writing and then verifying a file on the mounted filesystem, loops
-- times over, in the background; the returned function waits for it and
-- returns its exit status and output.
local function fio_on(file, loops)
	local out = os.tmpname()
	local pid = assert(luablk.spawn({
		"fio", "--name=takeover", "--filename=" .. file, "--size=8M", "--direct=1",
		"--ioengine=io_uring", "--rw=randwrite", "--bs=4k", "--iodepth=16",
		"--verify=crc32c", "--do_verify=1", "--verify_fatal=1", "--verify_state_save=0",
		"--loops=" .. loops, "--output=" .. out,
	}))
	return function()
		local status = luablk.wait(pid)
		local text = posix.read_file(out) or ""
		os.remove(out)
		return status, text
	end
end

describe("luablk recover --takeover", function()
	it("replaces a running server under ext4 and fio verify without failing one IO", function()
		local mnt = os.tmpname()
		os.remove(mnt)
		u.sh({ "mkdir", mnt })
		local errfile = os.tmpname()
		local pids, id = {}, nil
		finally(function()
			u.run({ "umount", mnt })
			u.run({ "rmdir", mnt })
			os.remove(errfile)
			for _, pid in ipairs(pids) do
				ffi.C.kill(pid, 9)
				luablk.wait(pid)
			end
			if id and luablk.query(id) then
				luablk.delete(id)
			end
		end)
		-- the old server's stderr into a file, keeping its pid
		local wrap = { "sh", "-c", 'exec "$@" 2>"$0"', errfile }
		local pid, info = serve("add", { "mem", "--size", "64M", "--recoverable", "--json" }, wrap)
		pids[1], id = pid, info.id
		if not u.kernel_has("quiesce") then
			local status, out, err = u.run({ bin, "recover", tostring(id), "mem", "--takeover" })
			assert.equal(1, status)
			assert.equal("", out)
			assert.equal(("luablk: device %d cannot be taken over: the kernel could not quiesce it when it "
				.. "was added (--takeover needs Linux 6.16, UBLK_F_QUIESCE)\n"):format(id), err)
			assert.equal("live", assert(luablk.query(id)).state)
			assert.equal(0, ffi.C.kill(pid, SIGTERM))
			assert.equal(0, luablk.wait(pid))
			pids = {}
			return
		end
		u.sh({ "mkfs.ext4", "-q", "-F", info.path })
		u.sh({ "mount", info.path, mnt })
		local finish = fio_on(mnt .. "/data", 6)
		u.sleep(2)
		local pid2, info2 = serve("recover", { tostring(id), "mem", "--takeover", "--json" })
		pids[2] = pid2
		assert.equal(id, info2.id)
		-- the old server leaves on its own, with exit 0 and one line
		assert.equal(0, luablk.wait(pid))
		table.remove(pids, 1)
		assert.matches("device taken over by a new server", posix.read_file(errfile) or "")
		local status, text = finish()
		assert.equal(0, status, "fio failed across the takeover: " .. text)
		assert.is_nil(text:match("err=%s*[1-9]"), text)
		assert.equal("live", assert(luablk.query(id)).state)
		assert.equal(pid2, assert(luablk.query(id)).pid)
		u.sh({ "umount", mnt })
		u.sh({ "e2fsck", "-fn", info.path })
		assert.equal(0, ffi.C.kill(pid2, SIGTERM))
		assert.equal(0, luablk.wait(pid2))
		pids = {}
		assert.is_true(u.gone(info.path))
	end)

	it("is refused for a device that is not recoverable, and the server serves on", function()
		local pid, info = serve("add", { "mem", "--size", "16M", "--json" })
		local status, out, err = u.run({ bin, "recover", tostring(info.id), "mem", "--takeover" })
		assert.equal(1, status)
		assert.equal("", out)
		assert.matches("is not recoverable", err)
		assert.equal("live", assert(luablk.query(info.id)).state)
		assert.equal(0, ffi.C.kill(pid, SIGTERM))
		assert.equal(0, luablk.wait(pid))
	end)
end)
