-- The nbd backend without a kernel (spec/handler_fixture.lua), against
-- real servers: nbdkit and qemu-nbd, on a unix socket or 127.0.0.1.
local ffi = require("ffi")
local luablk = require("luablk")
local nbd = require("luablk.nbd")
local fixture = require("handler_fixture")
local servers = require("nbd_servers")
local C = luablk.C

local READ, WRITE, FLUSH = fixture.READ, fixture.WRITE, fixture.FLUSH
local EIO = 5

local function device(uri, o)
	o = o or {}
	o.backend = "nbd"
	o.size = o.size or 0
	local args = { uri }
	for _, a in ipairs(o.args or {}) do
		args[#args + 1] = a
	end
	return fixture.create(args, o)
end

local function info(dev)
	local i = ffi.new("struct luablk_dev_info")
	C.luablk_dev_info(dev, i)
	local p = ffi.new("struct luablk_params")
	C.luablk_dev_params(dev, p)
	return i, require("luablk.params").table(p)
end

local function fill(h, tag, byte)
	ffi.fill(C.luablk_handler_buf(h, tag), 4096, byte)
end

describe("NBD URIs", function()
	it("parse the TCP and unix forms", function()
		assert.same({ export = "disk", host = "127.0.0.1", port = 10809 }, nbd.parse_uri("nbd://127.0.0.1/disk"))
		assert.same({ export = "a b", host = "::1", port = 1234 }, nbd.parse_uri("nbd://[::1]:1234/a%20b"))
		assert.same({ export = "", host = "h", port = 10809 }, nbd.parse_uri("nbd://h"))
		assert.same({ export = "e", socket = "/tmp/s" }, nbd.parse_uri("nbd+unix:///e?socket=/tmp/s"))
	end)

	it("refuse what they cannot serve, in one line", function()
		for uri, want in pairs({
			["/dev/sda"] = "is not an NBD URI",
			["nbds://h/e"] = "TLS",
			["http://h/e"] = "unknown scheme",
			["nbd+unix:///e"] = "needs ?socket=PATH",
			["nbd+unix://host/e?socket=/s"] = "has no host",
			["nbd://h:70000/e"] = "port must be",
			["nbd:///e"] = "no host",
		}) do
			local t, err = nbd.parse_uri(uri)
			assert.is_nil(t, uri)
			assert.matches(want, err, 1, true)
			assert.is_nil(err:find("\n"))
		end
	end)
end)

describe("the nbd backend", function()
	it("takes the export's size and flags, and moves data through nbdkit", function()
		local s = servers.nbdkit("4M")
		finally(function()
			servers.stop(s)
		end)
		local dev, h = device(s.uri())
		local i, p = info(dev)
		assert.equal(4 * 2 ^ 20, tonumber(i.size))
		assert.is_true(p.write_cache)
		assert.is_true(p.fua)
		assert.is_false(p.read_only)
		local ios = {}
		for tag = 0, 7 do
			fill(h, tag, 0x30 + tag)
			ios[#ios + 1] = { WRITE, tag * 65536, 4096, tag, tag == 3 and C.LUABLK_IO_F_FUA or 0 }
		end
		local got = fixture.run(h, ios)
		ios = {}
		for tag = 0, 7 do
			assert.equal(4096, got[tag])
			fill(h, tag, 0)
			ios[#ios + 1] = { READ, (7 - tag) * 65536, 4096, tag }
		end
		ios[#ios + 1] = nil
		got = fixture.run(h, ios)
		for tag = 0, 7 do
			assert.equal(4096, got[tag])
			assert.equal(0x30 + 7 - tag, C.luablk_handler_buf(h, tag)[4095])
		end
		assert.equal(0, fixture.run(h, { { FLUSH, 0, 0, 0 } })[0])
		fixture.free(dev, h)
	end)

	it("keeps many requests on the wire: all parked, then all answered", function()
		local s = servers.nbdkit("1M", { filters = { "delay" }, params = { "delay-read=200ms" } })
		finally(function()
			servers.stop(s)
		end)
		local dev, h = device(s.uri())
		local ios = {}
		for tag = 0, 7 do
			ios[#ios + 1] = { READ, tag * 4096, 4096, tag }
		end
		local b = fixture.submit(h, ios)
		for k = 0, 7 do
			assert.equal(C.LUABLK_RESULT_PARKED, b[k].result)
		end
		local want = {}
		for tag = 0, 7 do
			want[tag] = true
		end
		local got = fixture.collect(h, want, 20)
		for tag = 0, 7 do
			assert.equal(4096, got[tag])
		end
		fixture.free(dev, h)
	end)

	it("passes the server's errors to the IO", function()
		local s = servers.nbdkit("1M", { filters = { "error" }, params = { "error-pwrite=ENOSPC", "error-pwrite-rate=1" } })
		finally(function()
			servers.stop(s)
		end)
		local dev, h = device(s.uri())
		local got = fixture.run(h, { { WRITE, 0, 4096, 0 }, { READ, 0, 4096, 1 } })
		assert.equal(-28, got[0])
		assert.equal(4096, got[1])
		fixture.free(dev, h)
	end)

	it("serves a read-only export read-only", function()
		local s = servers.nbdkit("1M", { readonly = true, tcp = true })
		finally(function()
			servers.stop(s)
		end)
		local dev, h = device(s.uri())
		local _, p = info(dev)
		assert.is_true(p.read_only)
		fixture.free(dev, h)
	end)

	it("talks to qemu-nbd over TCP, with its export name and block sizes", function()
		local s = servers.qemu_nbd("2M", "disk0", { tcp = true })
		finally(function()
			servers.stop(s)
		end)
		local dev, h = device(s.uri("disk0"), { size = 2 ^ 20 })
		local i = info(dev)
		assert.equal(2 ^ 20, tonumber(i.size))
		fill(h, 0, 0x5a)
		assert.equal(4096, fixture.run(h, { { WRITE, 8192, 4096, 0 } })[0])
		fill(h, 1, 0)
		assert.equal(4096, fixture.run(h, { { READ, 8192, 4096, 1 } })[1])
		assert.equal(0x5a, C.luablk_handler_buf(h, 1)[17])
		fixture.free(dev, h)
	end)

	it("refuses an unknown export, a device larger than it, and two queues without multi-conn", function()
		local s = servers.qemu_nbd("1M", "disk0", { shared = 1 })
		finally(function()
			servers.stop(s)
		end)
		local err = device(s.uri("nope"), { fails = true })
		assert.matches("refused export 'nope'", err, 1, true)
		assert.is_nil(err:find("\n"))
		err = device(s.uri("disk0"), { size = 2 ^ 21, fails = true })
		assert.matches("fewer than the device's", err, 1, true)
		err = device(s.uri("disk0"), { queues = 2, fails = true })
		assert.matches("CAN_MULTI_CONN", err, 1, true)
		err = device("nbd+unix:///x?socket=" .. s.dir .. "/none", { fails = true })
		assert.matches("cannot connect", err, 1, true)
		err = device(s.uri("disk0"), { args = { "reconect=5" }, fails = true })
		assert.equal("backend 'nbd': unknown argument 'reconect' (nbd takes the URI and reconnect=SECONDS)", err)
		err = device(s.uri("disk0"), { args = { "reconnect=soon" }, fails = true })
		assert.equal("backend 'nbd': reconnect=soon: give seconds from 0 to 86400", err)
	end)

	it("fails the IOs in flight with EIO when the server dies, and those after", function()
		local s = servers.nbdkit("1M", { filters = { "delay" }, params = { "delay-read=5" } })
		finally(function()
			servers.stop(s)
		end)
		local dev, h = device(s.uri())
		local b = fixture.submit(h, { { READ, 0, 4096, 0 }, { READ, 4096, 4096, 1 } })
		assert.equal(C.LUABLK_RESULT_PARKED, b[0].result)
		luablk.sleep(0.2)
		servers.kill(s)
		local got = fixture.collect(h, { [0] = true, [1] = true })
		assert.same({ [0] = -EIO, [1] = -EIO }, got)
		assert.equal(-EIO, fixture.run(h, { { WRITE, 0, 4096, 2 } })[2])
		fixture.free(dev, h)
	end)

	it("with reconnect=, sends the IOs in flight again to the restarted server", function()
		local s = servers.nbdkit("1M", { filters = { "delay" }, params = { "delay-write=1" } })
		finally(function()
			servers.stop(s)
		end)
		local dev, h = device(s.uri(), { args = { "reconnect=20" } })
		fill(h, 0, 0x77)
		local b = fixture.submit(h, { { WRITE, 0, 4096, 0 } })
		assert.equal(C.LUABLK_RESULT_PARKED, b[0].result)
		luablk.sleep(0.2)
		servers.kill(s)
		luablk.sleep(0.3)
		servers.restart(s)
		assert.same({ [0] = 4096 }, fixture.collect(h, { [0] = true }, 20))
		fill(h, 1, 0)
		assert.equal(4096, fixture.run(h, { { READ, 0, 4096, 1 } })[1])
		assert.equal(0x77, C.luablk_handler_buf(h, 1)[0])
		fixture.free(dev, h)
	end)
end)
