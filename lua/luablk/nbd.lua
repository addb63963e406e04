-- The NBD protocol as a client speaks it: URIs, the fixed newstyle
-- handshake with NBD_OPT_GO, and the transmission phase's request and
-- simple reply headers (https://github.com/NetworkBlockDevice/nbd,
-- doc/proto.md). Structured replies are not negotiated, so every reply
-- is a simple one. The backend that serves a device over it is
-- luablk/backends/nbd.lua.
local ffi = require("ffi")
local errno = require("luablk.errno")
local net = require("luablk.net")

ffi.cdef([[
struct __attribute__((packed)) luablk_nbd_request {
	uint32_t magic;
	uint16_t flags, type;
	uint32_t handle, gen;
	uint32_t off_hi, off_lo;
	uint32_t len;
};
struct __attribute__((packed)) luablk_nbd_reply {
	uint32_t magic, error;
	uint32_t handle, gen;
};
]])

local M = {}

M.REQUEST = ffi.sizeof("struct luablk_nbd_request")
M.REPLY = ffi.sizeof("struct luablk_nbd_reply")
M.REQUEST_MAGIC, M.REPLY_MAGIC = 0x25609513, 0x67446698
M.DEFAULT_PORT = 10809

M.CMD = { READ = 0, WRITE = 1, DISC = 2, FLUSH = 3, TRIM = 4, WRITE_ZEROES = 6 }
M.CMD_FLAG = { FUA = 1, NO_HOLE = 2 }
-- Transmission flags.
M.FLAG = {
	HAS_FLAGS = 1,
	READ_ONLY = 2,
	SEND_FLUSH = 4,
	SEND_FUA = 8,
	ROTATIONAL = 16,
	SEND_TRIM = 32,
	SEND_WRITE_ZEROES = 64,
	CAN_MULTI_CONN = 256,
}

local NBDMAGIC, IHAVEOPT = "NBDMAGIC", "IHAVEOPT"
local OPT_REPLY_MAGIC = "\0\3\232\137\4\85\101\169" -- 0x3e889045565a9
local FIXED_NEWSTYLE, NO_ZEROES = 1, 2
local OPT_ABORT, OPT_GO = 2, 7
local REP_ACK, REP_INFO = 1, 3
local INFO_EXPORT, INFO_BLOCK_SIZE = 0, 3
local REP_ERRORS = {
	[1] = "unsupported option",
	[2] = "denied by the server's policy",
	[3] = "invalid request",
	[4] = "not supported on this platform",
	[5] = "TLS required",
	[6] = "no such export",
	[7] = "server shutting down",
	[8] = "block size required",
	[9] = "request too big",
}

-- Big-endian fields of the handshake, as strings.
local function be16(n)
	return string.char(bit.band(bit.rshift(n, 8), 255), bit.band(n, 255))
end
local function be32(n)
	return be16(bit.band(bit.rshift(n, 16), 0xffff)) .. be16(bit.band(n, 0xffff))
end
local function num(s, i, n)
	local v = 0
	for k = i, i + n - 1 do
		v = v * 256 + s:byte(k)
	end
	return v
end

local function unescape(s)
	return (s:gsub("%%(%x%x)", function(h)
		return string.char(tonumber(h, 16))
	end))
end

-- Parses an NBD URI (nbd://HOST[:PORT]/EXPORT, nbd+unix:///EXPORT?socket=
-- PATH). Returns { export, host, port } or { export, socket }, or nil and
-- a message.
function M.parse_uri(uri)
	local scheme, rest = tostring(uri):match("^([%w+]+)://(.*)$")
	if not scheme then
		return nil, ("'%s' is not an NBD URI (nbd://HOST[:PORT]/EXPORT or nbd+unix:///EXPORT?socket=PATH)"):format(
			tostring(uri)
		)
	end
	if scheme == "nbds" or scheme == "nbds+unix" then
		return nil, ("'%s': TLS (nbds) is not supported"):format(uri)
	end
	local auth, path, query = rest:match("^([^/?]*)(/?[^?]*)%??(.*)$")
	local export = unescape(path:sub(2))
	local q = {}
	for k, v in query:gmatch("([^&=]+)=([^&]*)") do
		q[k] = unescape(v)
	end
	if scheme == "nbd+unix" then
		if auth ~= "" then
			return nil, ("'%s': an nbd+unix URI has no host (nbd+unix:///EXPORT?socket=PATH)"):format(uri)
		end
		if not q.socket or q.socket == "" then
			return nil, ("'%s': nbd+unix needs ?socket=PATH"):format(uri)
		end
		return { export = export, socket = q.socket }
	elseif scheme ~= "nbd" then
		return nil, ("'%s': unknown scheme '%s' (nbd or nbd+unix)"):format(uri, scheme)
	end
	local host, port = auth:match("^%[([^%]]+)%]:?(%d*)$")
	if not host then
		host, port = auth:match("^([^:]+):?(%d*)$")
	end
	if not host then
		return nil, ("'%s': no host (nbd://HOST[:PORT]/EXPORT)"):format(uri)
	end
	port = port ~= "" and tonumber(port) or M.DEFAULT_PORT
	if port < 1 or port > 65535 then
		return nil, ("'%s': port must be 1..65535"):format(uri)
	end
	return { export = export, host = host, port = port }
end

-- The addresses a parsed URI names (net.unix or net.tcp), or nil and a
-- message.
function M.addresses(target)
	if target.socket then
		local a, err = net.unix(target.socket)
		return a and { a }, err
	end
	return net.tcp(target.host, target.port)
end

-- A connection that moves whole strings, for the handshake: send(s) and
-- recv(n) return nil and a message on failure.
local function stream(fd)
	local buf = ffi.new("uint8_t[?]", 4096)
	local s = {}
	function s.send(str)
		local n = #str
		local p = n <= 4096 and buf or ffi.new("uint8_t[?]", n)
		ffi.copy(p, str, n)
		local r = net.send_all(fd, p, n)
		if r < 0 then
			return nil, "send: " .. errno.name(r)
		end
		return true
	end
	function s.recv(n)
		if n == 0 then
			return ""
		end
		local p = n <= 4096 and buf or ffi.new("uint8_t[?]", n)
		local r = net.recv_all(fd, p, n)
		if r < 0 then
			return nil, r == -errno.EPIPE and "the server closed the connection" or ("recv: " .. errno.name(r))
		end
		return ffi.string(p, n)
	end
	return s
end

-- Reads the option replies to NBD_OPT_GO into info until the ACK.
local function go_replies(s, info, export)
	while true do
		local h, err = s.recv(20)
		if not h then
			return nil, err
		end
		if h:sub(1, 8) ~= OPT_REPLY_MAGIC or num(h, 9, 4) ~= OPT_GO then
			return nil, "bad option reply from the server"
		end
		local rtype, len = num(h, 13, 4), num(h, 17, 4)
		if len > 65536 then
			return nil, "option reply too long"
		end
		local data
		data, err = s.recv(len)
		if not data then
			return nil, err
		end
		if rtype == REP_ACK then
			return info
		elseif rtype >= 0x80000000 then
			local why = REP_ERRORS[rtype - 0x80000000] or ("error %d"):format(rtype - 0x80000000)
			local text = data ~= "" and (" (" .. data .. ")") or ""
			return nil, ("the server refused export '%s': %s%s"):format(export, why, text)
		elseif rtype == REP_INFO and len >= 2 then
			local itype = num(data, 1, 2)
			if itype == INFO_EXPORT and len >= 12 then
				info.size, info.flags = num(data, 3, 8), num(data, 11, 2)
			elseif itype == INFO_BLOCK_SIZE and len >= 14 then
				info.min_block, info.pref_block, info.max_block = num(data, 3, 4), num(data, 7, 4), num(data, 11, 4)
			end
		end
	end
end

-- The fixed newstyle handshake on connected socket fd: NBD_OPT_GO for
-- export, asking for the block size constraints. Returns { size, flags,
-- min_block, pref_block, max_block }, or nil and a message.
function M.handshake(fd, export)
	local s = stream(fd)
	local hello, err = s.recv(18)
	if not hello then
		return nil, err
	end
	if hello:sub(1, 8) ~= NBDMAGIC then
		return nil, "not an NBD server"
	end
	if hello:sub(9, 16) ~= IHAVEOPT then
		return nil, "the server speaks the old NBD handshake only (newstyle needed)"
	end
	local hflags = num(hello, 17, 2)
	if bit.band(hflags, FIXED_NEWSTYLE) == 0 then
		return nil, "the server does not speak the fixed newstyle handshake"
	end
	local ok
	ok, err = s.send(be32(bit.bor(FIXED_NEWSTYLE, bit.band(hflags, NO_ZEROES))))
	if not ok then
		return nil, err
	end
	local body = be32(#export) .. export .. be16(1) .. be16(INFO_BLOCK_SIZE)
	ok, err = s.send(IHAVEOPT .. be32(OPT_GO) .. be32(#body) .. body)
	if not ok then
		return nil, err
	end
	local info = { min_block = 1, pref_block = 4096, max_block = 32 * 2 ^ 20 }
	info, err = go_replies(s, info, export)
	if info and not info.size then
		info, err = nil, "the server sent no export size"
	end
	if not info then
		-- Leave politely, so that the server does not log a broken client.
		s.send(IHAVEOPT .. be32(OPT_ABORT) .. be32(0))
	end
	return info, err
end

-- Ends the transmission phase on fd with NBD_CMD_DISC, and closes it.
function M.disconnect(fd)
	local r = ffi.new("struct luablk_nbd_request")
	M.request(r, M.CMD.DISC, 0, 0, 0, 0, 0)
	net.send_all(fd, r, M.REQUEST)
	net.close(fd)
end

-- Fills request header r for command cmd.
function M.request(r, cmd, flags, handle, gen, off, len)
	r.magic = bit.bswap(M.REQUEST_MAGIC)
	r.flags = bit.rshift(bit.bswap(flags), 16)
	r.type = bit.rshift(bit.bswap(cmd), 16)
	r.handle, r.gen = handle, gen
	r.off_hi = bit.bswap(math.floor(off / 4294967296))
	r.off_lo = bit.bswap(off % 4294967296)
	r.len = bit.bswap(len)
end

-- The magic and the error of reply header p, as host numbers.
function M.reply(p)
	return bit.tobit(bit.bswap(p.magic)), bit.bswap(p.error)
end

M.REPLY_MAGIC = bit.tobit(M.REPLY_MAGIC)

return M
