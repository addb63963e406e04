-- NBD servers that specs start and stop: nbdkit (its memory plugin, with
-- filters) and qemu-nbd (a qcow2 image), listening on a unix socket in a
-- fresh directory or on 127.0.0.1 only.
local ffi = require("ffi")
local luablk = require("luablk")
local posix = require("luablk.posix")
local proc = require("luablk.proc")

local M = {}

local seq = 0

-- A fresh directory for one server's socket, image and pid file.
local function scratch()
	seq = seq + 1
	local dir = ("%s/luablk-nbd-%d-%d"):format(os.getenv("TMPDIR") or "/tmp", ffi.C.getpid(), seq)
	assert(proc.run({ "mkdir", "-p", dir }) == 0)
	return dir
end

-- A TCP port nothing listens on now (the kernel's choice for a socket
-- bound to port 0 would need the socket kept; a pseudo-random pick from
-- a range that no service uses is simpler, and a clash shows as a
-- failed start).
local function free_port()
	return 20000 + (ffi.C.getpid() * 7 + seq * 131) % 20000
end

-- Starts argv and waits for its pid file, which both servers write once
-- they listen; returns the server.
local function start(s, argv)
	s.argv = argv
	os.remove(s.pidfile)
	if s.socket then
		os.remove(s.socket) -- left behind by a killed server
	end
	s.pid = assert(luablk.spawn(argv))
	for _ = 1, 1000 do
		if posix.exists(s.pidfile) then
			return s
		end
		luablk.sleep(0.02)
	end
	M.stop(s)
	error("the NBD server did not start: " .. table.concat(argv, " "))
end

-- Where a server listens, as a URI for export.
local function uri(s, export)
	if s.port then
		return ("nbd://127.0.0.1:%d/%s"):format(s.port, export or "")
	end
	return ("nbd+unix:///%s?socket=%s"):format(export or "", s.socket)
end

local function listen(s, o, unix_flag, host_flag, port_flag)
	if o.tcp then
		s.port = free_port()
		return { host_flag, "127.0.0.1", port_flag, tostring(s.port) }
	end
	s.socket = s.dir .. "/sock"
	return { unix_flag, s.socket }
end

local function new()
	local s = { dir = scratch() }
	s.pidfile = s.dir .. "/pid"
	s.uri = function(export)
		return uri(s, export)
	end
	return s
end

-- nbdkit serving size bytes of RAM. o: tcp (listen on 127.0.0.1), filters
-- (list of filter names), params (list of "key=value" for the plugin and
-- filters, or a function of the server's directory that returns it),
-- readonly.
function M.nbdkit(size, o)
	o = o or {}
	local s = new()
	local argv = { "nbdkit", "--exit-with-parent", "-f", "-P", s.pidfile }
	for _, a in ipairs(listen(s, o, "-U", "-i", "-p")) do
		argv[#argv + 1] = a
	end
	if o.readonly then
		argv[#argv + 1] = "-r"
	end
	for _, f in ipairs(o.filters or {}) do
		argv[#argv + 1] = "--filter=" .. f
	end
	argv[#argv + 1] = "memory"
	argv[#argv + 1] = tostring(size)
	local params = o.params or {}
	if type(params) == "function" then
		params = params(s.dir)
	end
	for _, p in ipairs(params) do
		argv[#argv + 1] = p
	end
	return start(s, argv)
end

-- qemu-nbd serving a new qcow2 image of size bytes (qemu-img's size
-- syntax) as export name. o: tcp, shared (clients at once, default 4),
-- image (serve this file instead).
function M.qemu_nbd(size, export, o)
	o = o or {}
	local s = new()
	s.image = o.image or (s.dir .. "/disk.qcow2")
	if not o.image then
		assert(proc.run({ "qemu-img", "create", "-q", "-f", "qcow2", s.image, tostring(size) }) == 0)
	end
	local argv = { "qemu-nbd", "-f", "qcow2", "-x", export, "-t", "-e", tostring(o.shared or 4), "--pid-file", s.pidfile }
	for _, a in ipairs(listen(s, o, "-k", "-b", "-p")) do
		argv[#argv + 1] = a
	end
	argv[#argv + 1] = s.image
	return start(s, argv)
end

-- Kills the server (SIGKILL) and waits for it; keeps its directory, so
-- that it can start again on the same socket (M.restart).
function M.kill(s)
	if s.pid then
		ffi.C.kill(s.pid, 9)
		luablk.wait(s.pid)
		s.pid = nil
	end
end

-- Starts a killed server again, on the same socket or port.
function M.restart(s)
	return start(s, s.argv)
end

-- Stops the server and removes its directory.
function M.stop(s)
	M.kill(s)
	proc.run({ "rm", "-rf", s.dir })
end

return M
