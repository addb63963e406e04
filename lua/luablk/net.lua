-- Stream sockets for network backends: resolving an address once, and
-- connecting to it through luablk.aio (a blocking connect outside an
-- async method, a yielding one inside).
local ffi = require("ffi")
local aio = require("luablk.aio")
local errno = require("luablk.errno")

local function declared(name)
	return pcall(function()
		return ffi.C[name]
	end)
end

if not declared("socket") then
	ffi.cdef("int socket(int domain, int type, int protocol);")
end
if not declared("close") then
	ffi.cdef("int close(int fd);")
end
ffi.cdef([[
int setsockopt(int fd, int level, int name, const void *val, uint32_t len);
int shutdown(int fd, int how);
struct luablk_addrinfo {
	int ai_flags, ai_family, ai_socktype, ai_protocol;
	uint32_t ai_addrlen;
	void *ai_addr;
	char *ai_canonname;
	struct luablk_addrinfo *ai_next;
};
int getaddrinfo(const char *node, const char *service,
		const struct luablk_addrinfo *hints, struct luablk_addrinfo **res);
void freeaddrinfo(struct luablk_addrinfo *res);
const char *gai_strerror(int code);
struct luablk_sockaddr_un { unsigned short family; char path[108]; };
]])

local M = {}

local AF_UNIX, SOCK_STREAM, SOCK_CLOEXEC = 1, 1, 0x80000
local IPPROTO_TCP, TCP_NODELAY = 6, 1
local SHUT_RDWR = 2

-- An address: { family, addr (cdata that stays alive), len, name }.

-- The address of unix socket path, or nil and a message.
function M.unix(path)
	if #path == 0 or #path >= 108 then
		return nil, ("unix socket path must have 1 to 107 bytes: '%s'"):format(path)
	end
	local a = ffi.new("struct luablk_sockaddr_un")
	a.family = AF_UNIX
	ffi.copy(a.path, path)
	return { family = AF_UNIX, addr = a, len = ffi.sizeof(a), name = path }
end

-- The addresses of host and TCP port (numbers or names, resolved now,
-- blocking), or nil and a message.
function M.tcp(host, port)
	local hints = ffi.new("struct luablk_addrinfo")
	hints.ai_socktype = SOCK_STREAM
	local res = ffi.new("struct luablk_addrinfo *[1]")
	local rc = ffi.C.getaddrinfo(host, tostring(port), hints, res)
	if rc ~= 0 then
		return nil, ("cannot resolve %s: %s"):format(host, ffi.string(ffi.C.gai_strerror(rc)))
	end
	local list = {}
	local ai = res[0]
	while ai ~= nil do
		local copy = ffi.new("uint8_t[?]", ai.ai_addrlen)
		ffi.copy(copy, ai.ai_addr, ai.ai_addrlen)
		list[#list + 1] = { family = ai.ai_family, addr = copy, len = ai.ai_addrlen, name = ("%s:%s"):format(host, port) }
		ai = ai.ai_next
	end
	ffi.C.freeaddrinfo(res[0])
	return list
end

-- A socket connected to the first of addrs that answers, or -errno (that
-- of the last attempt).
function M.connect(addrs)
	local r = -errno.EADDRNOTAVAIL
	for _, a in ipairs(addrs) do
		local fd = ffi.C.socket(a.family, bit.bor(SOCK_STREAM, SOCK_CLOEXEC), 0)
		if fd < 0 then
			r = -ffi.errno()
		else
			if a.family ~= AF_UNIX then
				-- Requests are small and latency-bound: no Nagle delay.
				local one = ffi.new("int[1]", 1)
				ffi.C.setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, one, 4)
			end
			r = aio.connect(fd, a.addr, a.len)
			if r >= 0 then
				return fd
			end
			ffi.C.close(fd)
		end
	end
	return r
end

-- Ends both directions of fd at once, so that waits on it return, then
-- closes it.
function M.close(fd)
	ffi.C.shutdown(fd, SHUT_RDWR)
	ffi.C.close(fd)
end

-- Moves exactly len bytes of buf with op (aio.send or aio.recv), resuming
-- after short transfers. Returns len, or -errno (-EPIPE when the peer
-- closed the connection).
local function all(op, fd, buf, len, flags)
	local done = op(fd, buf, len, flags)
	if done == len or done < 0 then
		return done
	end
	while done < len do
		if done == 0 then
			return -errno.EPIPE
		end
		local n = op(fd, buf + done, len - done, flags)
		if n < 0 then
			return n
		elseif n == 0 then
			return -errno.EPIPE
		end
		done = done + n
	end
	return len
end

local MSG_NOSIGNAL, MSG_WAITALL = 0x4000, 0x100

-- Sends all len bytes of buf. A peer that is gone is -EPIPE, never a
-- SIGPIPE that would end the process.
function M.send_all(fd, buf, len)
	return all(aio.send, fd, buf, len, MSG_NOSIGNAL)
end

-- Receives exactly len bytes into buf.
function M.recv_all(fd, buf, len)
	return all(aio.recv, fd, buf, len, MSG_WAITALL)
end

return M
