-- The luablk command-line tool. main(argv) returns the exit status; user
-- errors print one "luablk: ..." line on stderr and return non-zero.
local options = require("luablk.options")

local M = {}

local USAGE = [[
usage: luablk COMMAND [ARGS]

  add BACKEND [--size S] [--queues N] [--depth D] [--max-io B]
              [--block-size B] [--id N] [--no-pin] [--write-cache] [--fua]
              [--filter NAME:K=V,...]... [--json] [-- ARGS...]
        create a device served by BACKEND (null, mem, file, c-null, c-mem,
        or a path to a .lua file) in the foreground; prints /dev/ublkbN
        once it is usable; SIGINT or SIGTERM tears it down
  list [--json]                     devices on this machine
  del ID|--all [--async]            delete devices
  features [--json]                 what the running kernel supports
  run SCRIPT.lua [ARGS...]          run a Lua script with luablk loaded
  help                              this text
]]

local function fail(msg, code)
	io.stderr:write("luablk: ", msg, "\n")
	return code or 1
end

-- Drops the "ENAME: " prefix of a library error for a human reader.
local function human(err)
	return (tostring(err):gsub("^E%u+: ", ""))
end

local function json()
	return require("cjson")
end

local ADD_SPEC = {
	size = "value",
	queues = "value",
	depth = "value",
	["max-io"] = "value",
	["block-size"] = "value",
	id = "value",
	json = "flag",
	["no-pin"] = "flag",
	["write-cache"] = "flag",
	fua = "flag",
	filter = "list",
}

-- Turns add's command line into luablk.add options, or nil, message.
function M.add_options(argv)
	local o, pos, rest = options.parse(argv, ADD_SPEC)
	if not o then
		return nil, pos
	end
	if #pos ~= 1 then
		return nil, "add needs exactly one BACKEND (see luablk help)"
	end
	local opts = {
		backend = pos[1],
		args = rest,
		filters = o.filter,
		json = o.json,
		no_pin = o["no-pin"],
		write_cache = o["write-cache"],
		fua = o.fua,
	}
	local err
	opts.size, err = options.size(o.size or "")
	if not o.size then
		return nil, "add needs --size (for example --size 1G)"
	end
	if not opts.size then
		return nil, err
	end
	local ints = {
		{ "queues", "queues", 1, 4096 },
		{ "depth", "depth", 1, 4096 },
		{ "id", "id", 0, 2 ^ 20 - 1 },
	}
	for _, it in ipairs(ints) do
		if o[it[1]] then
			opts[it[2]], err = options.integer(o[it[1]], "--" .. it[1], it[3], it[4])
			if not opts[it[2]] then
				return nil, err
			end
		end
	end
	for _, it in ipairs({ { "max-io", "max_io" }, { "block-size", "block_size" } }) do
		if o[it[1]] then
			opts[it[2]], err = options.size(o[it[1]])
			if not opts[it[2]] then
				return nil, "--" .. it[1] .. ": " .. err
			end
		end
	end
	return opts
end

local function cmd_add(argv)
	local opts, err = M.add_options(argv)
	if not opts then
		return fail(err, 2)
	end
	local luablk = require("luablk")
	local ok, msg = luablk.check(opts)
	if not ok then
		return fail(human(msg), 2)
	end
	luablk.block_signals()
	local dev
	dev, err = luablk.add(opts)
	if not dev then
		return fail(human(err))
	end
	local info = dev:info()
	if opts.queues and info.queues < opts.queues then
		io.stderr:write(("luablk: the kernel limits this device to %d queues\n"):format(info.queues))
	end
	if opts.json then
		info.backend = opts.backend
		info.char = "/dev/ublkc" .. info.id
		io.stdout:write(json().encode(info), "\n")
	else
		io.stdout:write(info.path, "\n")
	end
	io.stdout:flush()
	local code = 0
	while true do
		local sig
		sig, err = dev:wait(-1)
		if sig == 1 then
			io.stderr:write("luablk: SIGHUP ignored (live reload is not available yet)\n")
		elseif sig == 0 then
			io.stderr:write("luablk: device stopped by someone else\n")
			break
		elseif sig then
			break
		else
			code = fail(err)
			break
		end
	end
	ok, err = dev:close()
	if not ok then
		return fail(err)
	end
	return code
end

local function cmd_list(argv)
	local o, pos = options.parse(argv, { json = "flag" })
	if not o then
		return fail(pos, 2)
	end
	local luablk = require("luablk")
	local ids, err = luablk.list()
	if not ids then
		return fail(err)
	end
	local rows = {}
	for _, id in ipairs(ids) do
		local info = luablk.query(id)
		if info then
			rows[#rows + 1] = info
		end
	end
	if o.json then
		local encoded = #rows == 0 and "[]" or json().encode(rows)
		io.stdout:write(encoded, "\n")
		return 0
	end
	io.stdout:write(("%-4s %-9s %6s %6s %14s %8s  %s\n"):format("ID", "STATE", "QUEUES", "DEPTH", "SIZE", "PID", "PATH"))
	for _, r in ipairs(rows) do
		io.stdout:write(
			("%-4d %-9s %6d %6d %14d %8d  %s\n"):format(r.id, r.state, r.queues, r.depth, r.size, r.pid, r.path)
		)
	end
	return 0
end

local function cmd_del(argv)
	local o, pos = options.parse(argv, { all = "flag", async = "flag" })
	if not o then
		return fail(pos, 2)
	end
	local luablk = require("luablk")
	local ids
	if o.all then
		if #pos > 0 then
			return fail("give either ID or --all", 2)
		end
		local err
		ids, err = luablk.list()
		if not ids then
			return fail(err)
		end
	else
		if #pos ~= 1 then
			return fail("del needs a device ID or --all", 2)
		end
		local id, err = options.integer(pos[1], "ID", 0, 2 ^ 20 - 1)
		if not id then
			return fail(err, 2)
		end
		ids = { id }
	end
	local code = 0
	for _, id in ipairs(ids) do
		local ok, err = luablk.delete(id, o.async)
		if not ok then
			code = fail(human(err))
		end
	end
	return code
end

local function cmd_features(argv)
	local o, pos = options.parse(argv, { json = "flag" })
	if not o then
		return fail(pos, 2)
	end
	local luablk = require("luablk")
	local names, raw = luablk.features()
	if not names then
		return fail(human(raw))
	end
	if o.json then
		local cjson = json()
		io.stdout:write(cjson.encode({ features = #names > 0 and names or cjson.empty_array, raw = raw }), "\n")
	else
		for _, n in ipairs(names) do
			io.stdout:write(n, "\n")
		end
	end
	return 0
end

-- Runs a script as `luajit SCRIPT ARGS` would, with luablk preloaded.
local function cmd_run(argv)
	local script = argv[1]
	if not script then
		return fail("run needs a SCRIPT.lua", 2)
	end
	local chunk, err = loadfile(script)
	if not chunk then
		return fail(err, 1)
	end
	local arg = { [0] = script }
	for i = 2, #argv do
		arg[i - 1] = argv[i]
	end
	_G.arg = arg
	package.loaded.luablk = require("luablk")
	local ok, res = xpcall(chunk, debug.traceback, unpack(arg))
	if not ok then
		-- error() with no value is how some Lua 5.1 tools (busted) ask
		-- for a plain failing exit.
		if res == nil then
			return 1
		end
		return fail(tostring(res), 1)
	end
	return type(res) == "number" and res or 0
end

local COMMANDS = {
	add = cmd_add,
	list = cmd_list,
	del = cmd_del,
	features = cmd_features,
	run = cmd_run,
}

function M.main(argv)
	local cmd = argv[1]
	if cmd == nil or cmd == "help" or cmd == "--help" or cmd == "-h" then
		io.stdout:write(USAGE)
		return cmd == nil and 2 or 0
	end
	local fn = COMMANDS[cmd]
	if not fn then
		return fail(("unknown command '%s' (see luablk help)"):format(cmd), 2)
	end
	local rest = {}
	for i = 2, #argv do
		rest[#rest + 1] = argv[i]
	end
	return fn(rest)
end

return M
