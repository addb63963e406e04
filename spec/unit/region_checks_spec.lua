-- Readers of another process's regions (luablk stats, luablk fault) check
-- the region's magic and that its header fits its size before they read
-- or write anything.
local ffi = require("ffi")
local fault = require("luablk.filters.fault")
local stats = require("luablk.filters.stats")

-- A target whose regions are the given byte strings, with their sizes.
local function target(regions)
	local keep = {}
	return {
		shared = function(_, name)
			local text = regions[name]
			if not text then
				error("no region " .. name)
			end
			keep[name] = keep[name] or ffi.new("uint8_t[?]", #text)
			ffi.copy(keep[name], text, #text)
			return keep[name], #text
		end,
		bytes = function(name)
			return ffi.string(keep[name], #regions[name])
		end,
	}
end

local function words(list, total)
	local n = math.max(#list, total / 8)
	local w = ffi.new("uint64_t[?]", n)
	for i, v in ipairs(list) do
		w[i - 1] = v
	end
	return ffi.string(w, n * 8)
end

describe("region readers", function()
	it("write no fault flag into a region without the control magic", function()
		local t = target({ ["fault.ctl"] = ("x"):rep(64) })
		local ok, err = fault.set(t, true)
		assert.is_nil(ok)
		assert.matches("not a fault control region", err, 1, true)
		assert.equal(("x"):rep(64), t.bytes("fault.ctl"))
		assert.is_nil((fault.get(t)))
	end)

	it("write no fault flag into a control region that is too small", function()
		local t = target({ ["fault.ctl"] = "\1" })
		assert.is_nil((fault.set(t, true)))
		assert.equal("\1", t.bytes("fault.ctl"))
	end)

	it("refuse a stats header that claims more queues than the region holds", function()
		local t = target({ stats = words({ 0x7374617473, 1, 2 ^ 40, 0 }, 64) })
		local s, err = stats.read(t)
		assert.is_nil(s)
		assert.matches("not a stats region", err, 1, true)
	end)

	it("refuse a stats header with no queues", function()
		local t = target({ stats = words({ 0x7374617473, 1, 0, 0 }, 4096) })
		assert.is_nil((stats.read(t)))
	end)

	it("refuse a fault log whose capacity does not fit, or is zero", function()
		for _, capacity in ipairs({ 0, 2 ^ 40, 100 }) do
			local t = target({ fault = words({ 0x6661756c74, capacity, 0, 5 }, 128) })
			local st, err = fault.state(t)
			assert.is_nil(st, "capacity " .. capacity)
			assert.matches("not a fault log", err, 1, true)
			assert.is_nil((fault.log(t)))
		end
	end)
end)
