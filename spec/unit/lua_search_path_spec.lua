-- Where the luablk binary takes Lua code from: never the working
-- directory, and a backend or filter name only from luablk's own modules.
-- What a privileged process does with LUA_PATH and friends needs root:
-- spec/kernel/lua_search_path_as_root_spec.lua.
local BIN = os.getenv("PWD") .. "/" .. (os.getenv("LUABLK_BUILD") or "build") .. "/luablk"

local fixture = require("search_path_fixture")
local sh, write = fixture.sh, fixture.write

local exists = require("luablk.posix").exists

-- A directory full of modules that leave a marker file when loaded.
local function plant(dir, marker)
	local code = ("io.open(%q, 'w'):write('loaded') return function() return {} end\n"):format(marker)
	os.execute(("mkdir -p %s/luablk/backends %s/luablk/filters"):format(dir, dir))
	for _, name in ipairs({ "cjson.lua", "luablk/backends/planted.lua", "luablk/filters/planted.lua" }) do
		write(dir .. "/" .. name, code)
	end
end

describe("the luablk binary's Lua search path", function()
	local dir, marker, probe

	before_each(function()
		dir, marker, probe = fixture.dir()
		plant(dir, marker)
	end)

	after_each(function()
		os.execute("rm -rf " .. dir)
	end)

	it("has no entries relative to the working directory", function()
		local status, out = sh(("cd %s && %s run %s"):format(dir, BIN, probe))
		assert.equal(0, status, out)
		local path = out:match("path=([^\n]*)")
		for entry in path:gmatch("[^;]+") do
			assert.equal("/", entry:sub(1, 1), entry)
		end
		assert.matches("cjson=nil", out, 1, true)
	end)

	it("does not load a backend, a filter or cjson planted in the working directory", function()
		local status, out = sh(("cd %s && %s add planted --size 1M"):format(dir, BIN))
		assert.not_equal(0, status)
		assert.matches("unknown backend", out, 1, true)
		status, out = sh(("cd %s && %s add null --size 1M --filter planted"):format(dir, BIN))
		assert.not_equal(0, status)
		assert.matches("unknown filter 'planted'", out, 1, true)
		sh(("cd %s && %s list --json"):format(dir, BIN))
		assert.is_false(exists(marker))
	end)

	it("takes a backend by name only from its own directory, even along LUA_PATH", function()
		local status, out = sh(("cd / && LUA_PATH='%s/?.lua;;' %s add planted --size 1M"):format(dir, BIN))
		assert.not_equal(0, status)
		assert.matches("unknown backend", out, 1, true)
		assert.is_false(exists(marker))
	end)
end)
