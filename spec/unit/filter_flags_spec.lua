-- Every shipped filter passes the IO flags on to the backend it wraps, for
-- every operation that has them, as the dispatch loop hands them over.
local h = require("helpers")
local luablk = require("luablk")
local filters = require("luablk.filters")
local dispatch = require("luablk.dispatch")

local READ, WRITE, DISCARD, WRITE_ZEROES = 0, 1, 3, 5
local FUA, NOUNMAP = luablk.C.LUABLK_IO_F_FUA, luablk.C.LUABLK_IO_F_NOUNMAP

-- Options that let each filter pass every IO through untouched.
local function passing(name)
	return ({
		fault = { rate = 0 },
		delay = { ms = 0 },
		crash = {},
		trace = { path = os.tmpname() },
		stats = {},
	})[name]
end

-- A backend that records the flags each method got.
local function recorder()
	local seen = {}
	local be = {}
	for _, m in ipairs({ "read_at", "write_at" }) do
		be[m] = function(_, _, _, _, flags)
			seen[m] = flags
		end
	end
	for _, m in ipairs({ "discard", "write_zeroes" }) do
		be[m] = function(_, _, _, flags)
			seen[m] = flags
		end
	end
	return be, seen
end

describe("filters", function()
	for _, name in ipairs(filters.SHIPPED) do
		it(name .. " passes the IO flags on", function()
			local opts = assert(passing(name), "no options for this shipped filter in the spec")
			local inner, seen = recorder()
			local be = filters.load(name)(inner, opts, h.fake_dev({}))
			local b = h.batch(4, 4096)
			h.set(b, 0, READ, 0, 512)
			h.set(b, 1, WRITE, 0, 512)
			h.set(b, 2, DISCARD, 0, 4096)
			h.set(b, 3, WRITE_ZEROES, 0, 4096)
			b.batch[0].flags, b.batch[1].flags = FUA, FUA
			b.batch[2].flags, b.batch[3].flags = NOUNMAP, NOUNMAP
			dispatch.make(be, b.batch, b.bufs, error)(4)
			assert.equal(FUA, seen.read_at)
			assert.equal(FUA, seen.write_at)
			-- crash keeps discards and zeroes in its volatile layer
			if name ~= "crash" then
				assert.equal(NOUNMAP, seen.discard)
				assert.equal(NOUNMAP, seen.write_zeroes)
			end
			if opts.path then
				os.remove(opts.path)
			end
		end)
	end
end)
