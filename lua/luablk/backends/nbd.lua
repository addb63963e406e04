-- nbd: a client of an NBD server (qemu-nbd, nbdkit, nbd-server).
--
--   luablk add nbd -- nbd://HOST[:PORT]/EXPORT [reconnect=SECONDS]
--   luablk add nbd -- nbd+unix:///EXPORT?socket=PATH
--
-- The device takes the export's size (unless --size asks for less), its
-- block size constraints and its transmission flags: READ_ONLY makes a
-- read-only device, SEND_FLUSH a volatile write cache, SEND_FUA FUA,
-- SEND_TRIM discard, SEND_WRITE_ZEROES write-zeroes (NOUNMAP becomes
-- NO_HOLE). Each queue has its own connection, which CAN_MULTI_CONN must
-- allow when there are several queues.
--
-- Async (docs/async.md): any number of requests are on the wire per
-- connection, matched to their IOs by handle. An IO that finds nobody
-- sending sends every queued request, its own and those queued
-- meanwhile; a reader coroutine per connection (aio.spawn) receives every
-- reply, into the buffer of the read it answers, and wakes that IO
-- (aio.suspend/wake).
--
-- A lost connection fails the IOs in flight with EIO and says so once;
-- the device stays, and its IO fails until it is removed. With
-- reconnect=SECONDS the IOs wait instead, and are sent again, while the
-- client connects again with backoff for up to that long; after that
-- they fail, and each later IO tries one connect before failing.
local ffi = require("ffi")
local aio = require("luablk.aio")
local errno = require("luablk.errno")
local net = require("luablk.net")
local nbd = require("luablk.nbd")
local C = require("luablk").C

local CMD, CMD_FLAG, FLAG = nbd.CMD, nbd.CMD_FLAG, nbd.FLAG
local band, bor = bit.band, bit.bor
local IO_FUA, IO_NOUNMAP = C.LUABLK_IO_F_FUA, C.LUABLK_IO_F_NOUNMAP
local EIO = errno.EIO
local STAGE = 256 * 1024 -- the send and receive buffers of a connection
local SMALL_WRITE = 64 * 1024 -- writes up to this are copied into a batch

if not pcall(function()
	return ffi.C.memmove
end) then
	ffi.cdef("void *memmove(void *dst, const void *src, size_t n);")
end

local function log(fmt, ...)
	io.stderr:write("luablk: nbd: ", fmt:format(...), "\n")
end

-- "1 IO", "3 IOs"
local function ios(n)
	return n == 1 and "1 IO" or (n .. " IOs")
end

local function has(flags, f)
	return band(flags, f) ~= 0
end

-- The device's block parameters and caps from the export's info.
local function declare(info, dev)
	local page = 4096
	local lbs = math.max(512, info.min_block)
	if lbs > page or band(lbs, lbs - 1) ~= 0 then
		error(("the export's minimum block size (%d) is not a power of two up to %d"):format(info.min_block, page), 0)
	end
	local pbs = info.pref_block
	if pbs < lbs or band(pbs, pbs - 1) ~= 0 or pbs > dev.max_io then
		pbs = lbs
	end
	local flags = info.flags
	local flush = has(flags, FLAG.SEND_FLUSH)
	return {
		logical_block = lbs,
		physical_block = pbs,
		read_only = has(flags, FLAG.READ_ONLY) or nil,
		rotational = has(flags, FLAG.ROTATIONAL) or nil,
	}, { write_cache = flush, fua = flush and has(flags, FLAG.SEND_FUA) }
end

return function(dev, args)
	local uri = args.uri
		or args[1]
		or error("give the server: -- nbd://HOST[:PORT]/EXPORT or nbd+unix:///EXPORT?socket=PATH", 0)
	for k in pairs(args) do
		if k ~= 1 and k ~= "uri" and k ~= "reconnect" then
			error(("unknown argument '%s' (nbd takes the URI and reconnect=SECONDS)"):format(tostring(k)), 0)
		end
	end
	local target, err = nbd.parse_uri(uri)
	if not target then
		error(err, 0)
	end
	local reconnect = tonumber(args.reconnect or "0")
	if not reconnect or reconnect < 0 or reconnect > 86400 then
		error(("reconnect=%s: give seconds from 0 to 86400"):format(tostring(args.reconnect)), 0)
	end
	local addrs
	addrs, err = nbd.addresses(target)
	if not addrs then
		error(err, 0)
	end
	local where = target.socket or ("%s:%d"):format(target.host, target.port)

	-- A connected socket and the export's info, or nil and a message.
	local function open()
		local fd = net.connect(addrs)
		if fd < 0 then
			return nil, ("cannot connect to %s: %s"):format(where, errno.name(fd))
		end
		local info, why = nbd.handshake(fd, target.export)
		if not info then
			net.close(fd)
			return nil, ("%s: %s"):format(where, why)
		end
		return fd, info
	end

	local fd, info = open()
	if not fd then
		error(info, 0)
	end
	if dev.queues > 1 and not has(info.flags, FLAG.CAN_MULTI_CONN) then
		nbd.disconnect(fd)
		error(("%s does not allow several connections (no CAN_MULTI_CONN): use --queues 1"):format(where), 0)
	end
	if dev.size > 0 and dev.size > info.size then
		nbd.disconnect(fd)
		error(("the export has %d bytes, fewer than the device's %d"):format(info.size, dev.size), 0)
	end
	local flags = info.flags
	local params, caps = declare(info, dev)
	-- Requests with a payload larger than the server takes are split.
	local chunk = math.min(info.max_block, 2 ^ 31)

	-- The connection: state "up", "reconnecting" or "down"; gen counts
	-- its sockets, so that a sender of an old one stops quietly.
	local c = { fd = fd, gen = 1, state = "up", sending = 0, reader = false, closing = false }
	local req = ffi.new("struct luablk_nbd_request")
	local rep = ffi.new("struct luablk_nbd_reply")

	-- Requests by handle; each is in use from its send to its reply.
	local recs, free, nfree = {}, {}, 0
	local outq, qhead, qtail = {}, 1, 0 -- handles waiting to be sent
	local inflight = 0 -- requests in use

	local function take_rec()
		local i = free[nfree]
		if i then
			free[nfree] = nil
			nfree = nfree - 1
		else
			i = #recs + 1
			recs[i] = { gen = 0, busy = false }
		end
		local r = recs[i]
		r.gen = (r.gen + 1) % 4294967296
		r.busy, r.done, r.result, r.sleeping = true, false, 0, false
		inflight = inflight + 1
		return i, r
	end

	local function give_rec(i)
		local r = recs[i]
		r.co, r.buf, r.busy = nil, nil, false
		nfree = nfree + 1
		free[nfree] = i
		inflight = inflight - 1
	end

	-- Completes request r; its IO, if it waits, runs on.
	local function finish(r, result)
		r.done, r.result = true, result
		if r.sleeping then
			r.sleeping = false
			aio.wake(r.co)
		end
	end

	local function clear_queue()
		for k = qhead, qtail do
			outq[k] = nil
		end
		qhead, qtail = 1, 0
	end

	-- Requests go out in batches: the headers of every queued request and
	-- the data of its small writes, copied into one buffer, in one send;
	-- a large write's data is sent from its IO buffer. Requests that IOs
	-- queue while a batch is on its way make the next one.
	local out = ffi.new("uint8_t[?]", STAGE)

	-- Sends len bytes at p on connection generation gen. A send that fails
	-- shuts the socket, and the reader (which then fails to receive) deals
	-- with the broken connection. Returns whether it went.
	local function send(gen, p, len)
		local n = net.send_all(c.fd, p, len)
		if n >= 0 then
			return true
		end
		if c.gen == gen then
			c.why = "send: " .. errno.name(n)
			ffi.C.shutdown(c.fd, 2)
		end
		return false
	end

	-- Sends every queued request; one IO at a time does, for all.
	local function pump()
		local gen = c.gen
		c.sending = gen
		local fill = 0
		while c.gen == gen and c.state == "up" do
			if qhead > qtail then
				if fill == 0 or not send(gen, out, fill) then
					break
				end
				fill = 0
			else
				local i = outq[qhead]
				outq[qhead] = nil
				qhead = qhead + 1
				local r = recs[i]
				if not r.done then
					local data = r.cmd == CMD.WRITE and r.len or 0
					local copy = data <= SMALL_WRITE
					if fill + nbd.REQUEST + (copy and data or 0) > STAGE then
						if not send(gen, out, fill) then
							break
						end
						fill = 0
					end
					nbd.request(req, r.cmd, r.cflags, i, r.gen, r.off, r.len)
					ffi.copy(out + fill, req, nbd.REQUEST)
					fill = fill + nbd.REQUEST
					if copy then
						ffi.copy(out + fill, r.buf, data)
						fill = fill + data
					else
						if not send(gen, out, fill) or not send(gen, r.buf, data) then
							break
						end
						fill = 0
					end
				end
			end
		end
		if c.gen == gen then
			if qhead > qtail then
				qhead, qtail = 1, 0
			end
			c.sending = 0
		end
	end

	-- Connects again, with backoff, until the reconnect window closes.
	-- Returns whether the connection is up.
	local function reconnect_loop()
		local deadline = tonumber(C.luablk_now_ns()) / 1e9 + reconnect
		local wait = 0.05
		while not c.closing do
			local nfd, ninfo = open()
			if nfd then
				if ninfo.size < dev.size then
					nbd.disconnect(nfd)
					log("%s came back with %d bytes, fewer than the device's %d", where, ninfo.size, dev.size)
					return false
				end
				c.fd, c.gen, c.state = nfd, c.gen + 1, "up"
				log("reconnected to %s", where)
				return true
			end
			local left = deadline - tonumber(C.luablk_now_ns()) / 1e9
			if left <= 0 then
				log("%s (giving up after reconnect=%g s)", ninfo, reconnect)
				return false
			end
			-- A cancelled sleep (its IO timed out) just ends early.
			aio.sleep(math.min(wait, left))
			wait = math.min(wait * 2, 2)
		end
		return false
	end

	-- The connection broke (why): fail what is in flight, or connect again
	-- and send it again. Returns whether the connection is up again.
	local function broken(why)
		net.close(c.fd)
		c.fd, c.state = -1, "reconnecting"
		clear_queue()
		if reconnect > 0 then
			local held = ios(inflight)
			log("lost the connection to %s (%s); %s held for up to %g s while reconnecting", where, why, held, reconnect)
			if reconnect_loop() then
				clear_queue() -- what IOs queued meanwhile is among the below
				-- Every request not answered is sent again, in handle order,
				-- by a coroutine of its own, so that the reader reads on.
				for i = 1, #recs do
					local r = recs[i]
					if r.busy and not r.done then
						qtail = qtail + 1
						outq[qtail] = i
					end
				end
				aio.spawn(pump)
				return true
			end
		else
			log("lost the connection to %s (%s); %s in flight failed with EIO", where, why, ios(inflight))
		end
		c.state = "down"
		for i = 1, #recs do
			local r = recs[i]
			if r.busy and not r.done then
				finish(r, -EIO)
			end
		end
		clear_queue()
		return false
	end

	-- Replies come in through a buffer: one receive takes whatever has
	-- arrived, often several replies and their data, which is copied to
	-- the reads' buffers; only what has not arrived yet of a read's data
	-- is received straight into its buffer.
	local inb = ffi.new("uint8_t[?]", STAGE)
	local have, pos = 0, 0 -- bytes in inb, of which those before pos are used

	-- Makes n bytes (at most STAGE) available at inb + pos; 0 or -errno.
	local function fill_in(n)
		while have - pos < n do
			if pos == have then
				pos, have = 0, 0
			elseif pos > 0 then
				ffi.C.memmove(inb, inb + pos, have - pos)
				have, pos = have - pos, 0
			end
			local r = aio.recv(c.fd, inb + have, STAGE - have, 0)
			if r <= 0 then
				return r == 0 and -errno.EPIPE or r
			end
			have = have + r
		end
		return 0
	end

	-- The data of read r: what the buffer has, then the rest straight
	-- from the socket. 0 or -errno.
	local function read_data(r)
		local k = math.min(have - pos, r.len)
		if k > 0 then
			ffi.copy(r.buf, inb + pos, k)
			pos = pos + k
		end
		if k < r.len then
			return math.min(0, net.recv_all(c.fd, r.buf + k, r.len - k))
		end
		return 0
	end

	-- The connection's reader, a coroutine of its own (aio.spawn): reads
	-- every reply, with the data of the read it answers, and completes
	-- that request. It always waits in a receive, so that the server can
	-- always send, whatever the IOs do.
	local function reader()
		while not c.closing do
			local n = fill_in(nbd.REPLY)
			local why
			if n < 0 then
				why = c.why or (n == -errno.EPIPE and "the server closed the connection" or ("receive: " .. errno.name(n)))
			else
				ffi.copy(rep, inb + pos, nbd.REPLY)
				pos = pos + nbd.REPLY
				local magic, e = nbd.reply(rep)
				local r = recs[rep.handle]
				if magic ~= nbd.REPLY_MAGIC or not r or not r.busy or r.gen ~= rep.gen or r.done then
					why = "a reply that matches no request"
				elseif e == 0 and r.cmd == CMD.READ then
					n = read_data(r)
					if n < 0 then
						why = "receive: " .. errno.name(n)
					end
				end
				if not why then
					finish(r, e == 0 and 0 or -e)
				end
			end
			if why and not c.closing then
				c.why = nil
				have, pos = 0, 0 -- what is left belongs to the old socket
				if not broken(why) then
					break
				end
			end
		end
		c.reader = false
	end

	-- One request and its reply; returns 0 or -errno.
	local function call(cmd, cflags, off, len, buf)
		if c.state == "down" then
			if reconnect <= 0 then
				return -EIO
			end
			local nfd = open()
			if not nfd then
				return -EIO
			end
			c.fd, c.gen, c.state = nfd, c.gen + 1, "up"
			log("reconnected to %s", where)
		end
		if not c.reader then
			c.reader = true
			aio.spawn(reader)
		end
		local i, r = take_rec()
		r.cmd, r.cflags, r.off, r.len, r.buf, r.co = cmd, cflags, off, len, buf, aio.current()
		qtail = qtail + 1
		outq[qtail] = i
		if c.state == "up" and c.sending ~= c.gen then
			pump()
		end
		while not r.done do
			r.sleeping = true
			aio.suspend()
		end
		local result = r.result
		give_rec(i)
		return result
	end

	-- A read or write, split into requests the server accepts.
	local function transfer(cmd, cflags, buf, off, len)
		if len <= chunk then
			return call(cmd, cflags, off, len, buf)
		end
		local done = 0
		while done < len do
			local n = math.min(chunk, len - done)
			local r = call(cmd, cflags, off + done, n, buf + done)
			if r < 0 then
				return r
			end
			done = done + n
		end
		return 0
	end

	local be = {
		async = true,
		size = info.size,
		params = params,
		caps = caps,
		read_at = function(_, buf, off, len)
			local r = transfer(CMD.READ, 0, buf, off, len)
			if r < 0 then
				return r
			end
		end,
		write_at = function(_, buf, off, len, ioflags)
			local r = transfer(CMD.WRITE, band(ioflags, IO_FUA) ~= 0 and CMD_FLAG.FUA or 0, buf, off, len)
			if r < 0 then
				return r
			end
		end,
		close = function()
			c.closing = true
			if c.fd >= 0 and c.state == "up" then
				nbd.disconnect(c.fd)
				c.fd = -1
			end
		end,
	}
	if caps.write_cache then
		be.flush = function()
			local r = call(CMD.FLUSH, 0, 0, 0, nil)
			if r < 0 then
				return r
			end
		end
	end
	if has(flags, FLAG.SEND_TRIM) then
		be.discard = function(_, off, len)
			local r = call(CMD.TRIM, 0, off, len, nil)
			if r < 0 then
				return r
			end
		end
	end
	if has(flags, FLAG.SEND_WRITE_ZEROES) then
		be.write_zeroes = function(_, off, len, ioflags)
			local f = band(ioflags, IO_NOUNMAP) ~= 0 and CMD_FLAG.NO_HOLE or 0
			if band(ioflags, IO_FUA) ~= 0 then
				f = bor(f, CMD_FLAG.FUA)
			end
			local r = call(CMD.WRITE_ZEROES, f, off, len, nil)
			if r < 0 then
				return r
			end
		end
	end
	return be
end
