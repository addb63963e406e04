-- The udev side of unprivileged devices without a kernel: which nodes
-- `luablk udev-owner` accepts, and what the shipped rule runs for which
-- node (read through the same parser the kernel specs' udev stand-in uses).
local udev = require("luablk.udev")
local emulator = require("kernel.udev_emulator")
local posix = require("luablk.posix")

describe("udev-owner", function()
	it("takes ublk node names, bare or under /dev", function()
		assert.same({ "ublkc3", 3 }, { udev.parse("ublkc3") })
		assert.same({ "ublkb12", 12 }, { udev.parse("/dev/ublkb12") })
		assert.same({ "ublkb0p1", 0 }, { udev.parse("ublkb0p1") })
	end)

	it("refuses anything else, before asking the kernel", function()
		local bad_names = {
			"sda", "ublkc", "ublkcx", "ublkc3p1", "ublkb3x", "/tmp/ublkc3", "../ublkc3", "ublk-control", "ublkc99999999",
		}
		for _, bad in ipairs(bad_names) do
			assert.is_nil(udev.parse(bad), bad)
		end
		local ok, err, code = udev.owner({ "sda" })
		assert.is_nil(ok)
		assert.matches("not a ublk device node", err)
		assert.equal(2, code)
		assert.equal(2, select(3, udev.owner({})))
	end)
end)

describe("udev-owner's decisions", function()
	local errno = require("luablk.errno")

	-- A query that answers `info` (or nil, message, e) and counts its calls.
	local function fake(info, msg, e)
		local q = { calls = 0 }
		q.fn = function()
			q.calls = q.calls + 1
			return info, msg, e
		end
		return q
	end

	it("leave a deleted device and an ordinary one alone", function()
		local q = fake(nil, "ENODEV: gone", errno.ENODEV)
		assert.same({ true }, { udev.owner({ "ublkc4000000" }, q.fn) })
		q = fake({ unprivileged = false })
		assert.same({ true }, { udev.owner({ "ublkb4000000" }, q.fn) })
		assert.equal(1, q.calls)
	end)

	it("report a query that fails otherwise, without its errno name", function()
		local ok, err, code = udev.owner({ "ublkc4000000" }, fake(nil, "EACCES: permission denied", errno.EACCES).fn)
		assert.same({ nil, "permission denied", 1 }, { ok, err, code })
	end)

	it("do nothing for a node that is gone", function()
		local q = fake({ unprivileged = true, owner_uid = 65534, owner_gid = 65534 })
		assert.same({ true }, { udev.owner({ "/dev/ublkc4000000" }, q.fn) })
		assert.equal(1, q.calls)
	end)
end)

describe("etc/97-ublk-device.rules", function()
	local rules = emulator.parse(assert(posix.read_file("etc/97-ublk-device.rules")))

	it("runs udev-owner for both nodes of every device, on add and change", function()
		for _, action in ipairs({ "add", "change" }) do
			for _, node in ipairs({ "ublkc0", "ublkb7", "ublkc123" }) do
				assert.same({ "/usr/local/bin/luablk udev-owner " .. node }, emulator.programs(rules, action, node))
			end
		end
	end)

	it("runs nothing for other nodes or on remove", function()
		assert.same({}, emulator.programs(rules, "add", "ublk-control"))
		assert.same({}, emulator.programs(rules, "add", "sda"))
		assert.same({}, emulator.programs(rules, "add", "loop0"))
		assert.same({}, emulator.programs(rules, "remove", "ublkc0"))
	end)

	it("gives /dev/ublk-control to group ublk", function()
		local text = posix.read_file("etc/97-ublk-device.rules")
		assert.matches('KERNEL=="ublk%-control", GROUP="ublk", MODE="0660"', text)
	end)
end)
