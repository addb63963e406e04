-- A write cache and FUA are advertised only for a backend that honours
-- them: `luablk add` refuses --write-cache without flush and --fua
-- without a declared fua, in one line and before any device exists; the
-- file backend declares FUA and makes a FUA write durable on return.
local cjson = require("cjson")
local u = require("kernel.util")

local MiB = 2 ^ 20
local FUA = 8192

local function devices()
	local _, out = u.run({ "sh", "-c", "ls /dev | grep -c '^ublkb' || true" })
	return tonumber(out:match("%d+"))
end

describe("luablk add", function()
	local cases = {
		{ u.root .. "/examples/ramdisk.lua", { "--write-cache" }, "has no flush method, so it cannot have a write cache" },
		{ u.fixtures .. "/ops.lua", { "--write-cache", "--fua" }, "does not declare caps.fua" },
	}
	for _, case in ipairs(cases) do
		local backend, flags, message = unpack(case)
		it("refuses " .. table.concat(flags, " ") .. " for " .. backend .. " in one line", function()
			local before = devices()
			local argv = { u.luablk_bin, "add", backend, "--size", "1M" }
			for _, f in ipairs(flags) do
				argv[#argv + 1] = f
			end
			local status, out, err = u.run(argv)
			assert.equal(1, status)
			assert.equal("", out)
			assert.matches("^luablk: backend '[^\n]*" .. message:gsub("%.", "%%.") .. "[^\n]*\n$", err)
			assert.equal(before, devices())
		end)
	end
end)

describe("the file backend", function()
	it("advertises FUA and makes a FUA write durable before it returns", function()
		u.with_ext4(function(dir)
			local img, trace = dir .. "/img", os.tmpname()
			u.sh({ "truncate", "-s", "16M", img })
			local below = u.sh({ "findmnt", "-n", "-o", "SOURCE", dir }):match("/dev/(%S+)")
			local dev = u.add({
				backend = u.fixtures .. "/fua_probe.lua",
				args = { "path=" .. img, "below=/sys/block/" .. below .. "/stat" },
				size = 16 * MiB,
				filters = { "trace:path=" .. trace },
			})
			local ok, err = pcall(function()
				assert.equal("1", u.sysfs(dev, "queue/fua"))
				assert.equal("write back", u.sysfs(dev, "queue/write_cache"))
				u.sh({ "dd", "if=/dev/urandom", "of=" .. dev:path(), "bs=64k", "count=4", "oflag=direct,dsync", "status=none" })
			end)
			local n = require("ffi").cast("uint64_t *", dev:shared("fua_probe"))
			local fua, durable = tonumber(n[0]), tonumber(n[1])
			assert.is_true(dev:close())
			assert(ok, err)
			local flagged = 0
			for line in assert(io.lines(trace)) do
				local r = cjson.decode(line)
				if r.op == "write" and bit.band(r.flags, FUA) ~= 0 then
					flagged = flagged + 1
				end
			end
			os.remove(trace)
			assert.is_true(flagged >= 4, "the trace shows " .. flagged .. " FUA writes")
			assert.equal(flagged, fua)
			assert.equal(fua, durable)
		end)
	end)
end)
