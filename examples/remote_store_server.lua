-- The store that examples/remote_store.lua talks to: SIZE bytes of memory
-- behind a unix socket, any number of connections, one poll loop.
--
--   build/luablk run examples/remote_store_server.lua SOCKET SIZE [DELAY_US]
--
-- DELAY_US (default 0) holds each answer back that long, like a store on
-- another machine; requests on other connections are served meanwhile.
local ffi = require("ffi")
local luablk = require("luablk")
local options = require("luablk.options")
require("luablk.posix") -- close()
local here = arg[0]:match("^(.*)/[^/]*$") or "."
local wire = dofile(here .. "/remote_store_wire.lua")

ffi.cdef([[
ssize_t send(int fd, const void *buf, size_t len, int flags);
ssize_t recv(int fd, void *buf, size_t len, int flags);
]])
if not pcall(ffi.typeof, "struct pollfd") then
	ffi.cdef("struct pollfd { int fd; short events; short revents; };")
end
ffi.cdef("int poll(struct pollfd *fds, unsigned long nfds, int timeout);")

local path, size_text, delay_text = arg[1], arg[2], arg[3]
local size = size_text and options.size(size_text)
if not path or not size then
	io.stderr:write("usage: luablk run examples/remote_store_server.lua SOCKET SIZE [DELAY_US]\n")
	os.exit(2)
end
local delay = tonumber(delay_text or "0") / 1e6
local C = ffi.C
local mem = ffi.new("uint8_t[?]", size)
local listener = wire.listen(path)
local clients = {} -- fd -> { req, rep, due (time its answer may go) }
local MAX = 64

local function send_all(fd, buf, len)
	return wire.all(C.send, fd, buf, len, 0) == len
end

local function recv_all(fd, buf, len)
	return wire.all(C.recv, fd, buf, len, wire.MSG_WAITALL) == len
end

-- Reads one request of client fd and works it out; false if it is gone.
local function take(fd, c)
	local req = c.req
	if not recv_all(fd, req, wire.REQUEST) or req.magic ~= wire.MAGIC then
		return false
	end
	local off, len = tonumber(req.off), req.len
	c.rep.magic, c.rep.result, c.data = wire.MAGIC, 0, nil
	if req.op ~= wire.FLUSH and (off + len > size or len > 32 * 2 ^ 20) then
		c.rep.result = -28 -- ENOSPC
		if req.op == wire.WRITE then
			c.rep.magic = 0 -- the data is still on the wire: drop the client
		end
	elseif req.op == wire.WRITE then
		if not recv_all(fd, mem + off, len) then
			return false
		end
	elseif req.op == wire.READ then
		c.data, c.len = mem + off, len
	end
	c.due = luablk.now() + delay
	return true
end

local function answer(fd, c)
	c.due = nil
	local ok = send_all(fd, c.rep, wire.REPLY) and (not c.data or send_all(fd, c.data, c.len))
	return ok and c.rep.magic == wire.MAGIC
end

local pfd = ffi.new("struct pollfd[?]", MAX + 1)
while true do
	local n, now = 0, luablk.now()
	local wait_ms = -1
	pfd[0].fd, pfd[0].events = listener, 1
	local order = {}
	for fd, c in pairs(clients) do
		n = n + 1
		order[n] = fd
		-- A client with an answer due is not read until it is sent.
		pfd[n].fd, pfd[n].events = fd, c.due and 0 or 1
		if c.due then
			local ms = math.max(0, math.ceil((c.due - now) * 1000))
			wait_ms = wait_ms < 0 and ms or math.min(wait_ms, ms)
		end
	end
	C.poll(pfd, n + 1, wait_ms)
	now = luablk.now()
	for i = 1, n do
		local fd, c = order[i], clients[order[i]]
		local ok = true
		if c.due and now >= c.due then
			ok = answer(fd, c)
		elseif bit.band(pfd[i].revents, 1 + 8 + 16) ~= 0 then
			ok = take(fd, c)
			if ok and c.due <= now then
				ok = answer(fd, c)
			end
		end
		if not ok then
			C.close(fd)
			clients[fd] = nil
		end
	end
	if bit.band(pfd[0].revents, 1) ~= 0 and n < MAX then
		local fd = C.accept(listener, nil, nil)
		if fd >= 0 then
			clients[fd] = { req = ffi.new("struct store_request"), rep = ffi.new("struct store_reply") }
		end
	end
end
