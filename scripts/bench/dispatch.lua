-- Part B of `make bench`: the dispatch path without a kernel. For each case
-- it reports ns per IO (best of several runs of build/bench-dispatch) and
-- instructions per IO from callgrind, which stay the same on a busy
-- machine. Each Lua case is also shown as a ratio to its C baseline.
--
--   luajit scripts/bench/dispatch.lua [--quick] [--json FILE]
-- (a plain LuaJIT program: it serves no device, so io.popen is fine here)
local cjson = require("cjson")

local quick, json_path = false, nil
local i = 1
while arg[i] do
	if arg[i] == "--quick" then
		quick = true
	elseif arg[i] == "--json" then
		i = i + 1
		json_path = arg[i]
	else
		io.stderr:write("dispatch.lua: unknown argument ", arg[i], "\n")
		os.exit(2)
	end
	i = i + 1
end

local bin = os.getenv("LUABLK_BENCH_BIN") or "build/bench-dispatch"

local function capture(cmd)
	local p = assert(io.popen(cmd .. " 2>&1"))
	local out = p:read("*a")
	local ok = p:close()
	return out, ok
end

-- Best ns/IO over `runs` runs of `ios` IOs.
local function ns_per_io(backend, batch, len, ios, runs)
	local best
	for _ = 1, runs do
		local out = capture(("%s %s %d %d %d"):format(bin, backend, batch, len, math.max(1, math.floor(ios / batch))))
		local ns = tonumber(out:match("([%d%.]+)%s*$"))
		if not ns then
			error("bench-dispatch failed: " .. out)
		end
		best = best and math.min(best, ns) or ns
	end
	return best
end

local function instructions(backend, batch, len, iters)
	local out = capture(
		("valgrind --tool=callgrind --callgrind-out-file=/dev/null %s %s %d %d %d"):format(bin, backend, batch, len, iters)
	)
	local n = out:match("Collected : (%d+)")
	if not n then
		error("callgrind failed: " .. out)
	end
	return tonumber(n)
end

-- Instructions per IO: the difference between two run lengths cancels
-- start-up, loading and warm-up. Runs are sized to move about the same
-- number of bytes whatever the batch and IO size, to bound valgrind time.
local function instr_per_io(backend, batch, len)
	local a = math.max(10, math.floor(8000 / batch / (len / 4096)))
	local b = 5 * a
	local ia, ib = instructions(backend, batch, len, a), instructions(backend, batch, len, b)
	return (ib - ia) / ((b - a) * batch)
end

local cases = {}
for _, be in ipairs({ { "null", "c-null" }, { "mem", "c-mem" } }) do
	for _, len in ipairs(be[1] == "mem" and { 4096, 65536 } or { 4096 }) do
		for _, batch in ipairs({ 1, 16, 128 }) do
			cases[#cases + 1] = { lua = be[1], c = be[2], len = len, batch = batch }
		end
	end
end

local ios = quick and 20000 or 400000
local runs = quick and 1 or 5
local rows = {}
print("| case | batch | len | C ns/IO | Lua ns/IO | ratio | C instr/IO | Lua instr/IO | ratio |")
print("|---|---|---|---|---|---|---|---|---|")
for _, c in ipairs(cases) do
	local n = c.len > 4096 and math.floor(ios / 8) or ios
	local r = {
		case = c.lua,
		batch = c.batch,
		len = c.len,
		c_ns = ns_per_io(c.c, c.batch, c.len, n, runs),
		lua_ns = ns_per_io(c.lua, c.batch, c.len, n, runs),
		c_instr = instr_per_io(c.c, c.batch, c.len),
		lua_instr = instr_per_io(c.lua, c.batch, c.len),
	}
	r.ns_ratio = r.lua_ns / r.c_ns
	r.instr_ratio = r.lua_instr / r.c_instr
	rows[#rows + 1] = r
	print(
		("| %s | %d | %d | %.1f | %.1f | %.2f | %.0f | %.0f | %.2f |"):format(
			r.case, r.batch, r.len, r.c_ns, r.lua_ns, r.ns_ratio, r.c_instr, r.lua_instr, r.instr_ratio
		)
	)
	io.stdout:flush()
end

if json_path then
	local f = assert(io.open(json_path, "w"))
	f:write(cjson.encode({ dispatch = rows }), "\n")
	f:close()
end
