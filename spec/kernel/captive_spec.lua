-- Captive mode: `luablk add ... --run CMD` serves the device while CMD
-- runs, removes it when CMD ends, and exits with CMD's status, whatever
-- ends it.
local ffi = require("ffi")
local luablk = require("luablk")
local posix = require("luablk.posix")
local u = require("kernel.util")

local SIGINT, SIGKILL, SIGTERM = 2, 9, 15

local function tmp()
	local f = os.tmpname()
	os.remove(f)
	return f
end

-- Runs `luablk add mem --size 16M ARGS` in the background; returns its pid.
local function start(args)
	local argv = { u.luablk_bin, "add", "mem", "--size", "16M" }
	for _, a in ipairs(args) do
		argv[#argv + 1] = a
	end
	return assert(luablk.spawn(argv))
end

local function read_line(path)
	local text = u.eventually(30, function()
		local t = posix.read_file(path)
		return t and t:find("\n") and t
	end)
	return assert(text, "nothing written to " .. path):match("^[^\n]*")
end

describe("captive mode (--run)", function()
	it("gives CMD the device and its facts, and exits with CMD's status once the device is gone", function()
		local facts = tmp()
		local status, out = u.run({
			u.luablk_bin, "add", "mem", "--size", "16M", "--run",
			'echo "$LUABLK_DEV $LUABLK_ID $LUABLK_CHAR $LUABLK_SIZE $LUABLK_PID" > ' .. facts
				.. ' && dd if=/dev/urandom of="$LUABLK_DEV" bs=64k count=16 oflag=direct status=none'
				.. ' && cmp -n 1048576 "$LUABLK_DEV" "$LUABLK_DEV" && exit 7',
		})
		assert.equal(7, status)
		local path = out:match("^(/dev/ublkb%d+)\n")
		assert.is_truthy(path)
		local dev, id, char, size, pid = posix.read_file(facts):match("^(%S+) (%d+) (%S+) (%d+) (%d+)\n$")
		assert.equal(path, dev)
		assert.equal("/dev/ublkc" .. id, char)
		assert.equal(16 * 2 ^ 20, tonumber(size))
		assert.is_truthy(tonumber(pid))
		assert.is_true(u.gone(path))
		os.remove(facts)
	end)

	it("removes the device and exits 128+N when CMD is killed by signal N", function()
		local pidfile = tmp()
		local pid = start({ "--run", "echo $$ > " .. pidfile .. "; exec sleep 300" })
		local cmd = tonumber(read_line(pidfile))
		ffi.C.kill(cmd, SIGKILL)
		assert.equal(128 + SIGKILL, luablk.wait(pid))
		os.remove(pidfile)
	end)

	for _, sig in ipairs({ SIGINT, SIGTERM }) do
		it("passes signal " .. sig .. " sent to luablk on to CMD, removes the device, and exits with CMD's status", function()
			local pidfile = tmp()
			local pid = start({ "--run", "echo $$ $LUABLK_DEV > " .. pidfile .. "; exec sleep 300" })
			local cmd, path = read_line(pidfile):match("^(%d+) (%S+)$")
			ffi.C.kill(pid, sig)
			assert.equal(128 + sig, luablk.wait(pid))
			assert.is_true(u.gone(path))
			-- The command got the signal and is gone too.
			assert.is_nil(posix.read_file("/proc/" .. cmd .. "/stat"))
			os.remove(pidfile)
		end)
	end

	it("ends CMD and exits 1 when someone else deletes the device", function()
		local pidfile = tmp()
		local pid = start({ "--run", "echo $$ $LUABLK_ID > " .. pidfile .. "; exec sleep 300" })
		local cmd, id = read_line(pidfile):match("^(%d+) (%d+)$")
		u.sh({ u.luablk_bin, "del", id })
		assert.equal(1, luablk.wait(pid))
		assert.is_nil(posix.read_file("/proc/" .. cmd .. "/stat"))
		os.remove(pidfile)
	end)

	it("refuses an empty command before anything exists", function()
		local status, out, err = u.run({ u.luablk_bin, "add", "mem", "--size", "16M", "--run", "" })
		assert.equal(2, status)
		assert.equal("", out)
		assert.equal("luablk: --run needs a command\n", err)
	end)
end)
