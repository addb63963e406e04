-- A backend's own size (be.size), which a device without --size takes,
-- without a kernel (spec/handler_fixture.lua).
local ffi = require("ffi")
local C = require("luablk").C
local fixture = require("handler_fixture")

describe("a device without --size", function()
	it("is refused for a backend that has no size of its own", function()
		for _, be in ipairs({ "mem", "null" }) do
			local err = fixture.create({}, { backend = be, size = 0, fails = true })
			assert.equal("backend '" .. be .. "': no size given, and it has none of its own (give --size)", err)
		end
	end)

	it("takes the file's size for the file backend, through filters too", function()
		local img = os.tmpname()
		require("luablk.proc").check({ "truncate", "-s", "3M", img })
		for _, filters in ipairs({ {}, { "stats", "delay:ms=0" } }) do
			local dev, h = fixture.create({ "path=" .. img }, { backend = "file", size = 0, filters = filters })
			local i = ffi.new("struct luablk_dev_info")
			C.luablk_dev_info(dev, i)
			assert.equal(3 * 2 ^ 20, tonumber(i.size))
			fixture.free(dev, h)
		end
		local err = fixture.create({ "path=/dev/null" }, { backend = "file", size = 0, fails = true })
		assert.equal("backend 'file': /dev/null is empty: give the device's size (--size)", err)
		os.remove(img)
	end)

	it("lets --size ask for less than the file has", function()
		local img = os.tmpname()
		require("luablk.proc").check({ "truncate", "-s", "3M", img })
		local dev, h = fixture.create({ "path=" .. img }, { backend = "file", size = 2 ^ 20 })
		local i = ffi.new("struct luablk_dev_info")
		C.luablk_dev_info(dev, i)
		assert.equal(2 ^ 20, tonumber(i.size))
		fixture.free(dev, h)
		os.remove(img)
	end)
end)
