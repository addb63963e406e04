-- What the two search-path specs (spec/unit/lua_search_path_spec.lua and
-- spec/kernel/lua_search_path_as_root_spec.lua) set up alike.
local proc = require("luablk.proc")

local M = {}

function M.write(path, text)
	local f = assert(io.open(path, "w"))
	f:write(text)
	f:close()
end

-- Runs a shell command line; returns its status and stdout plus stderr.
function M.sh(cmd)
	local status, out, err = proc.run({ "sh", "-c", cmd })
	return status, out .. err
end

-- A fresh directory, mode 0755, holding probe.lua, a script that prints
-- the Lua search path and where cjson would be found. Returns the
-- directory, the path of its marker file (not created) and the probe.
function M.dir()
	local dir = os.tmpname()
	os.remove(dir)
	assert(proc.run({ "mkdir", "-m", "0755", dir }) == 0)
	local probe = dir .. "/probe.lua"
	M.write(
		probe,
		"print('path=' .. package.path)\n" .. "print('cjson=' .. tostring(package.searchpath('cjson', package.path)))\n"
	)
	return dir, dir .. "/marker", probe
end

return M
