-- An async backend: a block device whose bytes live in another process,
-- examples/remote_store_server.lua, reached over a unix socket.
--
--   build/luablk run examples/remote_store_server.lua /tmp/store.sock 256M &
--   build/luablk add examples/remote_store.lua --size 256M -- socket=/tmp/store.sock
--
-- Each queue keeps conns= connections (default 8) and puts one request at
-- a time on each, so up to that many IOs per queue are on the wire at
-- once. Sends and receives go through luablk.aio, which yields the IO's
-- coroutine instead of blocking the queue. A lost connection fails the IO
-- with the errno the socket call gave, and is made again for the next.
local ffi = require("ffi")
local aio = require("luablk.aio")
local errno = require("luablk.errno")
local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
local wire = dofile(here .. "/remote_store_wire.lua")

-- A connected socket, or a negative errno. In the factory, outside any
-- IO, aio.connect simply blocks; inside a method it yields.
local function connect(path)
	local fd = ffi.C.socket(wire.AF_UNIX, wire.SOCK_STREAM, 0)
	if fd < 0 then
		return -ffi.errno()
	end
	local r = aio.connect(fd, wire.address(path))
	if r < 0 then
		ffi.C.close(fd)
		return r
	end
	return fd
end

return function(_, args)
	local path = args.socket or error("give the store: -- socket=PATH", 0)
	local n = tonumber(args.conns or "8")
	local free, nfree = {}, 0
	for _ = 1, n do
		nfree = nfree + 1
		local fd = connect(path)
		if fd < 0 then
			error(("cannot connect to %s: %s"):format(path, errno.name(fd)), 0)
		end
		free[nfree] = {
			fd = fd,
			req = ffi.new("struct store_request"),
			rep = ffi.new("struct store_reply"),
		}
	end

	-- A free connection; while all are busy, wait a little and look again.
	local function take()
		while nfree == 0 do
			aio.sleep(0.0002)
		end
		local c = free[nfree]
		free[nfree] = nil
		nfree = nfree - 1
		return c
	end
	local function give(c)
		nfree = nfree + 1
		free[nfree] = c
	end

	-- One request and its answer on connection c; returns the result.
	local function call(c, op, off, len, out, inp)
		c.req.magic, c.req.op, c.req.off, c.req.len = wire.MAGIC, op, off, len
		local r = wire.all(aio.send, c.fd, c.req, wire.REQUEST)
		if r >= 0 and inp then
			r = wire.all(aio.send, c.fd, inp, len)
		end
		if r >= 0 then
			r = wire.all(aio.recv, c.fd, c.rep, wire.REPLY, wire.MSG_WAITALL)
		end
		if r >= 0 and c.rep.magic ~= wire.MAGIC then
			r = -errno.EPROTO
		elseif r >= 0 then
			r = c.rep.result
			if r >= 0 and out then
				r = wire.all(aio.recv, c.fd, out, len, wire.MSG_WAITALL)
			end
		end
		return r
	end

	-- A connection that failed mid-request is out of step: it is closed,
	-- and connected again when it is next taken.
	local function run(op, off, len, out, inp)
		local c = take()
		if c.fd < 0 then
			c.fd = connect(path)
		end
		local r = c.fd
		if r >= 0 then
			r = call(c, op, off, len, out, inp)
			if r < 0 and r ~= -errno.ENOSPC then
				ffi.C.close(c.fd)
				c.fd = -1
			end
		end
		give(c)
		if r < 0 then
			return r
		end
	end

	return {
		async = true,
		caps = { write_cache = true },
		read_at = function(_, buf, off, len)
			return run(wire.READ, off, len, buf, nil)
		end,
		write_at = function(_, buf, off, len)
			return run(wire.WRITE, off, len, nil, buf)
		end,
		flush = function()
			return run(wire.FLUSH, 0, 0, nil, nil)
		end,
		close = function()
			for i = 1, nfree do
				if free[i].fd >= 0 then
					ffi.C.close(free[i].fd)
				end
			end
		end,
	}
end
