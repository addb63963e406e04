-- What a privileged luablk does with LUA_PATH and LUABLK_LUA_DIR: it keeps
-- directories that only root can write and ignores, with one line on
-- stderr, those anyone else can; another user keeps its own. Here because
-- the kernel suite always runs as root (the rest is in
-- spec/unit/lua_search_path_spec.lua).
local posix = require("luablk.posix")
local u = require("kernel.util")

local BIN = assert(posix.realpath(u.luablk_bin))

local fixture = require("search_path_fixture")
local sh = fixture.sh

describe("a privileged luablk's Lua search path", function()
	local dir, marker, probe

	before_each(function()
		dir, marker, probe = fixture.dir()
		fixture.write(dir .. "/cjson.lua", ("io.open(%q, 'w'):write('loaded') return {}\n"):format(marker))
	end)

	after_each(function()
		u.sh({ "rm", "-rf", dir })
	end)

	it("ignores LUA_PATH and LUABLK_LUA_DIR entries that others can write, and says so", function()
		u.sh({ "chmod", "0777", dir }) -- writable by anyone, like /tmp
		local status, out = sh(("cd / && LUA_PATH='%s/?.lua;;' %s run %s"):format(dir, BIN, probe))
		assert.equal(0, status, out)
		assert.matches("cjson=nil", out, 1, true)
		assert.matches("ignoring LUA_PATH " .. dir, out, 1, true)
		status, out = sh(("cd / && LUABLK_LUA_DIR=%s %s run %s"):format(dir, BIN, probe))
		assert.equal(0, status, out)
		assert.matches("ignoring LUABLK_LUA_DIR " .. dir, out, 1, true)
		assert.is_false(posix.exists(marker))
	end)

	it("keeps LUA_PATH entries that only root can write", function()
		local status, out = sh(("cd / && LUA_PATH='/usr/share/lua/5.1/?.lua' %s run %s"):format(BIN, probe))
		assert.equal(0, status, out)
		assert.matches("/usr/share/lua/5.1/?.lua", out, 1, true)
		assert.not_matches("ignoring", out, 1, true)
	end)

	it("lets a user who is not root keep that user's LUA_PATH", function()
		u.sh({ "chmod", "0644", probe })
		local status, out = sh(
			("cd / && setpriv --reuid=65534 --regid=65534 --clear-groups env LUA_PATH='%s/?.lua;;' %s run %s"):format(
				dir,
				BIN,
				probe
			)
		)
		assert.equal(0, status, out)
		assert.matches("cjson=" .. dir .. "/cjson.lua", out, 1, true)
		assert.not_matches("ignoring", out, 1, true)
	end)
end)
