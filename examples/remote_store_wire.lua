-- The wire format and the socket calls that examples/remote_store.lua (an
-- async backend) and examples/remote_store_server.lua (the store it talks
-- to) share. A request is a 24-byte header, then the data of a write; the
-- answer is an 8-byte header, then the data of a read that succeeded.
local ffi = require("ffi")

ffi.cdef([[
struct store_request { uint32_t magic, op; uint64_t off; uint32_t len, pad; };
struct store_reply { uint32_t magic; int32_t result; };
struct store_sockaddr_un { unsigned short family; char path[108]; };
int socket(int domain, int type, int protocol);
int bind(int fd, const void *addr, uint32_t len);
int listen(int fd, int backlog);
int accept(int fd, void *addr, void *len);
]])

local M = {
	MAGIC = 0x6c627273, -- "lbrs"
	READ = 0,
	WRITE = 1,
	FLUSH = 2,
	AF_UNIX = 1,
	SOCK_STREAM = 1,
	MSG_WAITALL = 256,
	REQUEST = ffi.sizeof("struct store_request"),
	REPLY = ffi.sizeof("struct store_reply"),
}

-- A sockaddr_un for path, and its length.
function M.address(path)
	local a = ffi.new("struct store_sockaddr_un")
	a.family = M.AF_UNIX
	ffi.copy(a.path, path)
	return a, ffi.sizeof(a)
end

-- A listening unix socket at path (replacing a stale one).
function M.listen(path)
	os.remove(path)
	local fd = ffi.C.socket(M.AF_UNIX, M.SOCK_STREAM, 0)
	local a, len = M.address(path)
	assert(fd >= 0 and ffi.C.bind(fd, a, len) == 0 and ffi.C.listen(fd, 64) == 0, "cannot listen on " .. path)
	return fd
end

-- Moves exactly len bytes with step(fd, p, n, flags) (a send or a recv
-- that may be partial); returns len or a negative errno (-EPIPE on EOF).
function M.all(step, fd, buf, len, flags)
	local p, done = ffi.cast("uint8_t *", buf), 0
	while done < len do
		local n = step(fd, p + done, len - done, flags or 0)
		if n == 0 then
			return -32
		elseif n < 0 then
			return n
		end
		done = done + n
	end
	return len
end

return M
