-- The luablk command-line tool. main(argv) returns the exit status; user
-- errors print one "luablk: ..." line on stderr and return non-zero.
local errno = require("luablk.errno")
local options = require("luablk.options")

local M = {}

local USAGE = [[
usage: luablk COMMAND [ARGS]

  add BACKEND [--size S] [--queues N] [--depth D] [--max-io B] [--id N]
              [--no-pin] [--no-part-scan] [--user-copy] [--unprivileged]
              [--recoverable] [--reissue] [--fail-io] [--io-timeout S]
              [--filter NAME:K=V,...]... [--json] [--run CMD]
              [block parameters] [-- ARGS...]
        create a device served by BACKEND (null, mem, file, nbd, c-null,
        c-mem, or a path to a .lua file) in the foreground; prints
        /dev/ublkbN once it is usable; SIGINT or SIGTERM tears it down,
        SIGHUP reloads the backend from disk.
        --size S: needed unless the backend has a size of its own
        (file: the image's, nbd: the export's)
        --recoverable: the device outlives a server that dies (IO waits
        for `luablk recover`); --reissue: IO the dead server held is
        reissued to the next one; --fail-io: IO fails while no server runs
        --io-timeout S: an IO that an async backend has not finished
        after S seconds completes with ETIMEDOUT
        --run CMD: captive mode: run `sh -c CMD` with the device in
        $LUABLK_DEV (and LUABLK_ID, LUABLK_CHAR, LUABLK_SIZE, LUABLK_PID),
        remove the device when it ends, and exit with its status
        block parameters, in bytes (K, M, G suffixes); unless given, the
        backend's declared defaults apply, else the built-in ones:
          --logical-block B (or --block-size B)  512..4096, default 512
          --physical-block B   default: the logical block
          --io-min B           default: the physical block
          --io-opt B           default: the minimum IO size
          --discard-granularity B   default: the physical block
          --discard-alignment B     default: 0
          --max-discard B           largest discard, default 1G
          --max-write-zeroes B      largest write-zeroes, default 1G
        (the discard ones only for a backend with discard/write_zeroes)
        attributes, on with --NAME, forced off with --NAME=off:
          --read-only  --rotational  --fua
          --write-cache   volatile cache: fsync sends FLUSH to the backend
  recover ID BACKEND [--no-pin] [--takeover] [--filter NAME:K=V,...]...
              [--run CMD] [-- ARGS...]
        serve recoverable device ID, whose server died, with BACKEND;
        then as add; --takeover replaces a running server (6.16+)
  reload ID [BACKEND] [-- ARGS...]  swap a running device's backend (default:
        the current one, read again; ARGS replace its arguments) without
        failing IO; on error the old backend serves on
  resize ID SIZE                    change a running device's size (6.16+)
  list [--json]                     devices on this machine
  del ID|--all [--async] [--safe]   delete devices
  features [--json]                 what the running kernel supports
  crash ID [--json]                 cut the power of a device's crash filter
  run SCRIPT.lua [ARGS...]          run a Lua script with luablk loaded
  stats ID [--name N] [--interval S] [--json]
        counters of a device's stats filter, then a live rate over S
        seconds (default 1)
  fault ID [on|off] [--name N] [--log] [--json]
        turn a device's fault flag on or off, or show the fault filter's
        state (--log: every IO it failed); SIGUSR1 and SIGUSR2 to the
        `add` process turn the flag on and off too
  udev-owner NODE                   what the udev rule runs: give an
                                    unprivileged device's node to its owner
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
	["no-part-scan"] = "flag",
	unprivileged = "flag",
	["user-copy"] = "flag",
	filter = "list",
	recoverable = "flag",
	reissue = "flag",
	["fail-io"] = "flag",
	["io-timeout"] = "value",
	run = "value",
}

-- --recoverable, --reissue and --fail-io (ublksrv's -r 1, -i 1, -e 1);
-- the last two imply the first.
function M.recovery_options(o, opts)
	opts.reissue = o.reissue
	opts.fail_io = o["fail-io"]
	opts.recoverable = o.recoverable or o.reissue or o["fail-io"]
end

-- Block parameters: sizes (with K/M/G suffixes) and on/off attributes,
-- named as in luablk.params.
local PARAM_SIZES = {
	{ "logical-block", "logical_block" },
	{ "physical-block", "physical_block" },
	{ "io-min", "io_min" },
	{ "io-opt", "io_opt" },
	{ "discard-granularity", "discard_granularity" },
	{ "discard-alignment", "discard_alignment" },
	{ "max-discard", "max_discard" },
	{ "max-write-zeroes", "max_write_zeroes" },
}
local PARAM_BOOLS = {
	{ "read-only", "read_only" },
	{ "rotational", "rotational" },
	{ "write-cache", "write_cache" },
	{ "fua", "fua" },
}
for _, it in ipairs(PARAM_SIZES) do
	ADD_SPEC[it[1]] = "value"
end
for _, it in ipairs(PARAM_BOOLS) do
	ADD_SPEC[it[1]] = "bool"
end

-- Copies the block parameters from parsed options o into opts.
local function param_options(o, opts)
	for _, it in ipairs(PARAM_SIZES) do
		local v = o[it[1]]
		if v then
			local n, err = options.size(v)
			if not n then
				return nil, "--" .. it[1] .. ": " .. err
			end
			-- 0 would mean "not given"; only the alignment may be 0.
			if n == 0 and it[1] ~= "discard-alignment" then
				return nil, ("--%s must be more than 0"):format(it[1])
			end
			if n >= 2 ^ 32 then
				return nil, ("--%s: '%s' is too large"):format(it[1], v)
			end
			opts[it[2]] = n
		end
	end
	for _, it in ipairs(PARAM_BOOLS) do
		opts[it[2]] = o[it[1]]
	end
	if opts.block_size == 0 then
		return nil, "--block-size must be more than 0"
	end
	if opts.block_size and opts.logical_block and opts.block_size ~= opts.logical_block then
		return nil, "--block-size is another name for --logical-block: give one of them"
	end
	return opts
end

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
		run = o.run,
		no_pin = o["no-pin"],
		no_part_scan = o["no-part-scan"],
		unprivileged = o.unprivileged,
		user_copy = o["user-copy"],
	}
	M.recovery_options(o, opts)
	if o.run == "" then
		return nil, "--run needs a command"
	end
	local err
	if o["io-timeout"] then
		opts.io_timeout, err = options.seconds(o["io-timeout"], "--io-timeout", 0.001, 86400)
		if not opts.io_timeout then
			return nil, err
		end
	end
	if o.size then
		opts.size, err = options.size(o.size)
		if not opts.size then
			return nil, err
		end
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
			if opts[it[2]] >= 2 ^ 32 then
				return nil, ("--%s: '%s' is too large"):format(it[1], o[it[1]])
			end
		end
	end
	return param_options(o, opts)
end

local SIGUSR1, SIGUSR2 = 10, 12

-- SIGUSR1 turns the device's fault flag on, SIGUSR2 off (filters/fault.lua).
local function fault_signal(dev, sig)
	local on = sig == SIGUSR1
	local name = on and "SIGUSR1" or "SIGUSR2"
	local ok, err = require("luablk.filters.fault").set(dev, on)
	if ok then
		io.stderr:write(("luablk: %s: fault flag %s\n"):format(name, on and "on" or "off"))
	else
		io.stderr:write(("luablk: %s ignored: %s\n"):format(name, err))
	end
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
	return M.serve(opts, luablk.add)
end

-- Serves the device create(opts) makes in the foreground until SIGINT or
-- SIGTERM, or until someone else deletes it; returns the exit status.
function M.serve(opts, create)
	local luablk = require("luablk")
	luablk.block_signals()
	local dev, err = create(opts)
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
	local captive, child = require("luablk.captive"), nil
	if opts.run then
		child, err = captive.start(opts.run, info)
		if not child then
			dev:close({ give_up = true })
			return fail(err)
		end
	end
	local code = 0
	while true do
		local sig, e
		sig, err, e = dev:wait(child and 100 or -1)
		if child and e == errno.ETIMEDOUT then
			-- Captive: the device goes when the command ends.
			local status = captive.poll(child)
			if status then
				code, child = status, nil
				break
			end
		elseif sig == 1 then
			require("luablk.reload").serve(dev, function(text)
				io.stderr:write("luablk: ", text, "\n")
			end)
		elseif sig == SIGUSR1 or sig == SIGUSR2 then
			fault_signal(dev, sig)
		elseif sig == 0 then
			if dev:handed_over() then
				io.stderr:write("luablk: device taken over by a new server\n")
			else
				io.stderr:write("luablk: device stopped by someone else\n")
			end
			code = child and 1 or 0
			break
		elseif sig then
			-- SIGINT or SIGTERM: a captive command gets it too, and the
			-- exit status is the command's.
			if child then
				code, child = captive.stop(child, sig), nil
			end
			break
		else
			code = fail(err)
			break
		end
	end
	if child then
		captive.stop(child)
	end
	-- A close stuck on a backend call can be given up with a second
	-- signal; the kernel then fails the IO that call held.
	local ok
	ok, err = dev:close({ give_up = true })
	if not ok then
		return fail(err)
	end
	return code
end

-- A refusal of one device to a user who may use /dev/ublk-control: not
-- theirs. (Not being allowed to open the control device is no such thing.)
local function not_mine(err, e)
	return (e == errno.EPERM or e == errno.EACCES) and not err:find("/dev/ublk-control", 1, true)
end

local RECOVER_SPEC = {
	json = "flag",
	["no-pin"] = "flag",
	filter = "list",
	takeover = "flag",
	run = "value",
}

-- Turns recover's command line into luablk.recover options, or nil, message.
function M.recover_options(argv)
	local o, pos, rest = options.parse(argv, RECOVER_SPEC)
	if not o then
		return nil, pos
	end
	if #pos ~= 2 then
		return nil, "recover needs a device ID and a BACKEND (see luablk help)"
	end
	local id, err = options.integer(pos[1], "ID", 0, 2 ^ 20 - 1)
	if not id then
		return nil, err
	end
	if o.run == "" then
		return nil, "--run needs a command"
	end
	return {
		id = id,
		backend = pos[2],
		args = rest,
		filters = o.filter,
		json = o.json,
		run = o.run,
		no_pin = o["no-pin"],
		takeover = o.takeover,
	}
end

-- luablk recover ID BACKEND: a new server for a device whose server died,
-- served in the foreground like add.
local function cmd_recover(argv)
	local opts, err = M.recover_options(argv)
	if not opts then
		return fail(err, 2)
	end
	return M.serve(opts, require("luablk").recover)
end

-- The serving pid; a quiesced device still names its dead server's.
local function list_pid(r)
	if r.state == "live" then
		return tostring(r.pid)
	end
	return r.pid > 0 and ("(" .. r.pid .. ")") or "-"
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
	local rows, hidden = {}, 0
	for _, id in ipairs(ids) do
		local info, qerr, e = luablk.query(id)
		if info then
			rows[#rows + 1] = info
		elseif not_mine(qerr, e) then
			hidden = hidden + 1
		elseif e == errno.EPERM or e == errno.EACCES then
			return fail(human(qerr))
		end
	end
	if hidden > 0 then
		io.stderr:write(("luablk: %d device(s) of other users not shown (root sees all)\n"):format(hidden))
	end
	if o.json then
		local encoded = #rows == 0 and "[]" or json().encode(rows)
		io.stdout:write(encoded, "\n")
		return 0
	end
	local head = { "ID", "STATE", "QUEUES", "DEPTH", "SIZE", "PID", "OWNER", "RECOVERY", "PATH" }
	io.stdout:write(("%-4s %-9s %6s %6s %14s %8s %-11s %-9s %s\n"):format(unpack(head)))
	for _, r in ipairs(rows) do
		local owner = r.unprivileged and ("%d:%d"):format(r.owner_uid, r.owner_gid) or "root"
		io.stdout:write(("%-4d %-9s %6d %6d %14d %8s %-11s %-9s %s\n"):format(
			r.id,
			r.state,
			r.queues,
			r.depth,
			r.size,
			list_pid(r),
			owner,
			r.recovery,
			r.path
		))
	end
	return 0
end

local function cmd_del(argv)
	local o, pos = options.parse(argv, { all = "flag", async = "flag", safe = "flag" })
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
	local code, denied = 0, 0
	for _, id in ipairs(ids) do
		local ok, err, e = luablk.delete(id, o.async, o.safe)
		-- --all means every device this user may delete.
		if not ok and o.all and not_mine(err, e) then
			denied = denied + 1
		elseif not ok then
			code = fail(human(err))
			-- No access to the control device: the same for every id.
			if e == errno.EPERM or e == errno.EACCES then
				break
			end
		end
	end
	if denied > 0 then
		io.stderr:write(("luablk: %d device(s) of other users left alone\n"):format(denied))
	end
	return code
end

-- Which add options the kernel's features allow, from luablk.recovery().
local function recovery_support(recovery)
	return {
		recoverable = recovery ~= "no",
		reissue = recovery:find("reissue", 1, true) ~= nil,
		fail_io = recovery:find("fail-io", 1, true) ~= nil,
	}
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
	local recovery = luablk.recovery(raw)
	if o.json then
		local out = { raw = raw, recovery = recovery_support(recovery) }
		io.stdout:write(require("luablk.json").encode_with_list(out, "features", names), "\n")
	else
		for _, n in ipairs(names) do
			io.stdout:write(n, "\n")
		end
		local r = recovery_support(recovery)
		local function yes(v)
			return v and "yes" or "no"
		end
		io.stdout:write(("recovery: --recoverable %s, --reissue %s, --fail-io %s\n"):format(
			yes(r.recoverable),
			yes(r.reissue),
			r.fail_io and "yes" or "no (needs Linux 6.13)"
		))
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

-- "device ID: what went wrong", unless the message names the device.
local function about(id, err)
	err = human(err)
	if err:match("device " .. id .. "%f[%D]") then
		return err
	end
	return ("device %d: %s"):format(id, err)
end

-- The device id argument of stats and fault.
local function device_id(pos, cmd, extra)
	if #pos < 1 or #pos > 1 + (extra or 0) then
		return nil, ("%s needs a device ID (see luablk help)"):format(cmd)
	end
	return options.integer(pos[1], "ID", 0, 2 ^ 20 - 1)
end

local function fmt_bytes(n)
	for _, u in ipairs({ { 2 ^ 40, "TiB" }, { 2 ^ 30, "GiB" }, { 2 ^ 20, "MiB" }, { 2 ^ 10, "KiB" } }) do
		if n >= u[1] then
			return ("%.1f %s"):format(n / u[1], u[2])
		end
	end
	return ("%d B"):format(n)
end

local STAT_OPS = { "read", "write", "flush", "discard", "write_zeroes" }

local function stats_text(id, s, live)
	local stats = require("luablk.filters.stats")
	local plural = s.queues == 1 and "" or "s"
	local out = { ("device %d: %d queue%s, counting for %.1f s"):format(id, s.queues, plural, s.uptime_s) }
	local head = { "op", "ios", "bytes", "errors", "avg_us", "p50_us", "p99_us" }
	out[#out + 1] = ("%-13s %10s %11s %8s %9s %9s %9s"):format(unpack(head))
	for _, op in ipairs(STAT_OPS) do
		local t = s.ops[op]
		local function us(v)
			return v and ("%.1f"):format(v / 1e3) or "-"
		end
		out[#out + 1] = ("%-13s %10d %11s %8d %9s %9s %9s"):format(
			op,
			t.count,
			fmt_bytes(t.bytes),
			t.errors,
			us(t.count > 0 and t.lat_ns / t.count or nil),
			us(stats.percentile(t.hist, 0.5)),
			us(stats.percentile(t.hist, 0.99))
		)
	end
	out[#out + 1] = ("live: %.0f IOPS, %.2f MiB/s, %.1f errors/s (over %.1f s)"):format(
		live.iops,
		live.mib_s,
		live.errors_s,
		live.interval_s
	)
	return table.concat(out, "\n") .. "\n"
end

-- luablk stats ID: reads the stats region twice, interval apart.
local function cmd_stats(argv)
	local o, pos = options.parse(argv, { json = "flag", name = "value", interval = "value" })
	if not o then
		return fail(pos, 2)
	end
	local id, err = device_id(pos, "stats")
	if not id then
		return fail(err, 2)
	end
	local interval = tonumber(o.interval or "1")
	if not interval or interval < 0.1 or interval > 3600 then
		return fail("--interval must be between 0.1 and 3600 seconds", 2)
	end
	local luablk, stats = require("luablk"), require("luablk.filters.stats")
	local a
	a, err = stats.read(id, o.name)
	if not a then
		return fail(about(id, err))
	end
	local t0 = luablk.now()
	luablk.sleep(interval)
	local b
	b, err = stats.read(id, o.name)
	if not b then
		return fail(about(id, err))
	end
	local live = stats.rates(a, b, luablk.now() - t0)
	if o.json then
		b.id, b.live = id, live
		io.stdout:write(json().encode(b), "\n")
	else
		io.stdout:write(stats_text(id, b, live))
	end
	return 0
end

local function fault_text(id, on, st, log)
	local flag = on and "on" or "off"
	local out = {
		("device %d: fault flag %s; %d IOs failed, %d counted for nth/after"):format(id, flag, st.failed, st.matched),
	}
	if st.lost > 0 then
		out[#out + 1] = ("(the log keeps the last %d; %d older ones are gone)"):format(st.capacity, st.lost)
	end
	for _, r in ipairs(log or {}) do
		local e = errno.name(r.errno)
		out[#out + 1] = ("%8d %-12s off %d len %d %s queue %d"):format(r.seq, r.op, r.off, r.len, e, r.queue)
	end
	return table.concat(out, "\n") .. "\n"
end

-- luablk fault ID [on|off]: flips the flag (fault.ctl), or shows state.
-- luablk crash ID [--json]: cuts the power of a device's crash filter
-- and prints what it lost.
local function cmd_crash(argv)
	local o, pos = options.parse(argv, { json = "flag" })
	if not o then
		return fail(pos, 2)
	end
	local id, err = device_id(pos, "crash")
	if not id then
		return fail(err, 2)
	end
	local crash = require("luablk.filters.crash")
	local ok
	ok, err = crash.crash(id)
	if not ok then
		return fail(about(id, err))
	end
	local st = assert(crash.state(id))
	if o.json then
		io.stdout:write(json().encode(st), "\n")
	else
		io.stdout:write(("device %d: power cut; %d unflushed blocks lost, %d flushes before it\n"):format(
			id,
			tonumber(st.lost_at_crash),
			tonumber(st.flushes)
		))
	end
	return 0
end

local function cmd_fault(argv)
	local o, pos = options.parse(argv, { json = "flag", name = "value", log = "flag" })
	if not o then
		return fail(pos, 2)
	end
	local id, err = device_id(pos, "fault", 1)
	if not id then
		return fail(err, 2)
	end
	local action = pos[2]
	if action and action ~= "on" and action ~= "off" then
		return fail(("fault: expected on or off, not '%s'"):format(action), 2)
	end
	local fault = require("luablk.filters.fault")
	if action then
		local ok
		ok, err = fault.set(id, action == "on")
		if not ok then
			return fail(about(id, err))
		end
	end
	local on
	on, err = fault.get(id)
	if on == nil then
		return fail(about(id, err))
	end
	local st, log
	st, err = fault.state(id, o.name)
	if st and o.log then
		log, err = fault.log(id, o.name)
	end
	if not st or (o.log and not log) then
		return fail(about(id, err))
	end
	if o.json then
		st.id, st.flag = id, on
		if o.log then
			st.log = log -- lua-cjson 2.1.0 writes an empty one as {}
		end
		io.stdout:write(json().encode(st), "\n")
	else
		io.stdout:write(fault_text(id, on, st, log))
	end
	return 0
end

-- Sends device id's server a reload or resize request (reload.request's
-- arguments after id) and waits for its answer; returns the exit code.
local function ask_server(id, ...)
	local ok, err = require("luablk.reload").request(id, ...)
	if not ok then
		return fail(about(id, err))
	end
	return 0
end

-- luablk reload ID [BACKEND] [-- ARGS]: asks the serving process.
local function cmd_reload(argv)
	local o, pos, rest = options.parse(argv, {})
	if not o then
		return fail(pos, 2)
	end
	if #pos < 1 or #pos > 2 then
		return fail("reload needs a device ID and at most one BACKEND (see luablk help)", 2)
	end
	local id, err = options.integer(pos[1], "ID", 0, 2 ^ 20 - 1)
	if not id then
		return fail(err, 2)
	end
	local args -- without "--", the running backend keeps its arguments
	for _, a in ipairs(argv) do
		if a == "--" then
			args = rest
			break
		end
	end
	return ask_server(id, pos[2], args)
end

-- luablk resize ID SIZE: the serving process reloads its backend at the
-- new size and tells the kernel (luablk/reload.lua).
local function cmd_resize(argv)
	local o, pos = options.parse(argv, {})
	if not o then
		return fail(pos, 2)
	end
	if #pos ~= 2 then
		return fail("resize needs a device ID and a SIZE (see luablk help)", 2)
	end
	local id, err = device_id(pos, "resize", 1)
	if not id then
		return fail(err, 2)
	end
	local size
	size, err = options.size(pos[2])
	if not size or size == 0 then
		return fail(err or "the size must be more than 0", 2)
	end
	return ask_server(id, nil, nil, nil, size)
end

-- luablk udev-owner NODE: see luablk/udev.lua.
local function cmd_udev_owner(argv)
	local ok, err, code = require("luablk.udev").owner(argv)
	if not ok then
		return fail(err, code)
	end
	return 0
end

local COMMANDS = {
	add = cmd_add,
	recover = cmd_recover,
	list = cmd_list,
	del = cmd_del,
	features = cmd_features,
	run = cmd_run,
	stats = cmd_stats,
	fault = cmd_fault,
	crash = cmd_crash,
	reload = cmd_reload,
	resize = cmd_resize,
	["udev-owner"] = cmd_udev_owner,
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
