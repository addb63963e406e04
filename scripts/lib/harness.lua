-- Shared plumbing for the harnesses in scripts/: options, the closing
-- report (a short human summary, or JSON with --json), a progress line on
-- terminals, and IO workers in forked child processes.
--
-- A harness runs under `luablk run scripts/NAME.lua [options]` and exits
-- non-zero on any failure. Its IO comes from forked children (plain fork:
-- see luablk.spawn), never from the process that serves the device.
local ffi = require("ffi")
local luablk = require("luablk")
local options = require("luablk.options")

ffi.cdef("int isatty(int fd);")

local H = {}

-- Parses the script's `arg` against spec: name -> { kind, default, help }
-- with kind "flag", "value", "number", "size" or "list". Prints one line
-- and exits 2 on bad input; prints usage for --help.
function H.options(name, spec, argv)
	local kinds = { json = "flag", help = "flag" }
	for k, s in pairs(spec) do
		kinds[k] = (s[1] == "flag" or s[1] == "list") and s[1] or "value"
	end
	local list = {}
	for i = 1, #(argv or {}) do
		list[i] = argv[i]
	end
	local o, pos = options.parse(list, kinds)
	local function die(msg)
		io.stderr:write(name, ": ", msg, "\n")
		os.exit(2)
	end
	if not o then
		die(pos)
	end
	if o.help then
		io.stdout:write("usage: luablk run scripts/", name, ".lua [options]\n")
		local keys = {}
		for k in pairs(spec) do
			keys[#keys + 1] = k
		end
		table.sort(keys)
		for _, k in ipairs(keys) do
			io.stdout:write(("  --%-14s %s (default %s)\n"):format(k, spec[k][3] or "", tostring(spec[k][2])))
		end
		os.exit(0)
	end
	if #pos > 0 then
		die("unexpected argument '" .. pos[1] .. "'")
	end
	local out = { json = o.json, positional = pos }
	H.name, H.json = name, o.json
	for k, s in pairs(spec) do
		local v = o[k]
		if v == nil then
			v = s[2]
		elseif s[1] == "number" then
			v = tonumber(v) or die(("--%s must be a number, not '%s'"):format(k, v))
		elseif s[1] == "size" then
			local n, err = options.size(v)
			v = n or die("--" .. k .. ": " .. err)
		end
		out[k:gsub("%-", "_")] = v
	end
	return out
end

-- Durations like "20s", "10m", "1h" or plain seconds -> seconds.
function H.duration(s)
	if type(s) == "number" then
		return s
	end
	local n, unit = tostring(s):match("^(%d+%.?%d*)([smh]?)$")
	if not n then
		return nil
	end
	return tonumber(n) * ({ [""] = 1, s = 1, m = 60, h = 3600 })[unit]
end

-- One line on stderr and exit 2: the harness's answer to bad options.
function H.die(msg)
	io.stderr:write(H.name or "harness", ": ", msg, "\n")
	os.exit(2)
end

-- Checks that option --what holds a whole number in [lo, hi]; returns it.
function H.whole(v, what, lo, hi)
	if type(v) ~= "number" or v % 1 ~= 0 or v < lo or v > hi then
		H.die(("--%s must be a whole number from %d to %d"):format(what, lo, hi))
	end
	return v
end

local tty = ffi.C.isatty(1) == 1

-- Rewrites one status line in place on a terminal; silent otherwise, and
-- under --json, where stdout carries only the report.
function H.progress(fmt, ...)
	if tty and not H.json then
		io.stdout:write("\r", fmt:format(...), "\027[K")
		io.stdout:flush()
	end
end

function H.progress_done()
	if tty and not H.json then
		io.stdout:write("\r\027[K")
	end
end

-- Prints the result and returns the exit status: with --json one object
-- { harness, ok, ... result fields }, else "NAME: PASS|FAIL" and the
-- given lines. result.failures (a list of strings) makes it fail.
function H.report(name, opts, result, lines)
	local failures = result.failures or {}
	local ok = #failures == 0
	if opts.json then
		result.harness = name
		result.ok = ok
		result.failures = nil
		io.stdout:write(require("luablk.json").encode_with_list(result, "failures", failures), "\n")
	else
		io.stdout:write(("%s: %s\n"):format(name, ok and "PASS" or "FAIL"))
		for _, l in ipairs(lines or {}) do
			io.stdout:write("  ", l, "\n")
		end
		for _, f in ipairs(failures) do
			io.stdout:write("  failure: ", f, "\n")
		end
	end
	io.stdout:flush()
	return ok and 0 or 1
end

-- Forks a child that runs fn(...) and exits with its return value (0 if
-- it returns nothing, 1 if it raises). Returns the pid.
function H.fork(fn, ...)
	-- Unflushed output would be written once by each process.
	io.stdout:flush()
	io.stderr:flush()
	local pid = assert(luablk.fork())
	if pid == 0 then
		local ok, code = xpcall(fn, debug.traceback, ...)
		if not ok then
			io.stderr:write(tostring(code), "\n")
		end
		luablk.exit(ok and (tonumber(code) or 0) or 1)
	end
	return pid
end

-- Waits for every pid; returns the list of exit statuses.
function H.wait_all(pids)
	local statuses = {}
	for i, pid in ipairs(pids) do
		statuses[i] = luablk.wait(pid)
	end
	return statuses
end

-- Adds a device or raises with the library's message.
function H.device(opts)
	local dev, err = luablk.add(opts)
	if not dev then
		error(err, 0)
	end
	return dev
end


-- Mounts the ext4 filesystem on path at mnt (with mount options o, if
-- given). Returns umount(): true, or nil and mount's stderr after a lazy
-- unmount. If umount is never called, defer unmounts lazily.
function H.mount(defer, path, mnt, o)
	local proc = require("luablk.proc")
	local argv = { "mount", "-t", "ext4" }
	if o then
		argv[#argv + 1] = "-o"
		argv[#argv + 1] = o
	end
	argv[#argv + 1] = path
	argv[#argv + 1] = mnt
	proc.check(argv)
	local mounted = true
	defer(function()
		if mounted then
			proc.run({ "umount", "-l", mnt })
		end
	end)
	return function()
		mounted = false
		local status, _, err = proc.run({ "umount", mnt })
		if status ~= 0 then
			proc.run({ "umount", "-l", mnt })
			return nil, err
		end
		return true
	end
end

return H
