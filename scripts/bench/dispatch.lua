-- Part B of `make bench`: the dispatch path without a kernel. For each case
-- it reports CPU ns per IO (best of several runs of build/bench-dispatch) and
-- instructions per IO from callgrind, which stay the same on a busy
-- machine. Each Lua case is also shown as a ratio to its C baseline. Then
-- part C for the same path: each Lua case once more with LUABLK_JIT_LOG,
-- reads and writes mixed, for trace aborts, NYI and heap per IO after
-- warm-up.
--
--   luajit scripts/bench/dispatch.lua [--quick] [--json FILE]
-- (a plain LuaJIT program: it serves no device, so io.popen is fine here)
local here = arg[0]:match("^(.*)/[^/]*$") or "."
package.path = here .. "/?.lua;" .. here .. "/../../lua/?.lua;" .. package.path

local cjson = require("cjson")
local health = require("health")

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
-- The device the synthetic IOs walk; bench-dispatch warms up over all of
-- it first. Callgrind counts only the timed pass, so a small device will
-- do there and saves minutes of emulated warm-up.
local TIMED_MIB, COUNTED_MIB = 64, 4

-- Output (with stderr) of a shell command, and whether it exited 0.
local function capture(cmd)
	local p = assert(io.popen(cmd .. " 2>&1; echo \"exit $?\""))
	local out = p:read("*a")
	p:close()
	local status = out:match("exit (%d+)\n$")
	return out:gsub("exit %d+\n$", ""), status == "0"
end

local function command(backend, batch, len, iters, op, mib)
	return ("%s %s %d %d %d %s %d"):format(bin, backend, batch, len, iters, op or "read", mib or TIMED_MIB)
end

-- Best ns/IO over `runs` runs of `ios` IOs.
local function ns_per_io(backend, batch, len, ios, runs)
	local best
	for _ = 1, runs do
		local out, ok = capture(command(backend, batch, len, math.max(1, math.floor(ios / batch))))
		local ns = tonumber(out:match("([%d%.]+)%s*$"))
		if not ok or not ns then
			error("bench-dispatch failed: " .. out)
		end
		best = best and math.min(best, ns) or ns
	end
	return best
end

-- Instructions per IO in the timed pass alone (bench-dispatch's
-- measured()), sized to move about the same number of bytes whatever the
-- batch and IO size, to bound valgrind's time.
local function instr_per_io(backend, batch, len)
	local iters = math.max(10, math.floor(8000 / batch / (len / 4096)))
	local out = capture(
		"valgrind --tool=callgrind --callgrind-out-file=/dev/null --toggle-collect=measured "
			.. command(backend, batch, len, iters, "read", COUNTED_MIB)
	)
	local n = out:match("Collected : (%d+)")
	if not n then
		error("callgrind failed: " .. out)
	end
	return tonumber(n) / (iters * batch)
end

-- Part C on this path: a run with the JIT log on; the steady window
-- starts a quarter into the timed pass, after bench-dispatch's warm-up
-- pass over the device (and after the log's own code has been compiled).
local function jit_health(backend, batch, len, ios)
	local dir = health.tmpdir()
	local iters = math.max(1, math.floor(ios / batch))
	local out, ok = capture("LUABLK_JIT_LOG=" .. dir .. " " .. command(backend, batch, len, iters, "mix"))
	if not ok then
		error("bench-dispatch failed: " .. out)
	end
	local warm_ios = (math.floor(TIMED_MIB * 2 ^ 20 / (batch * len)) + 100) * batch
	local s = health.summary(dir, warm_ios + math.floor(ios / 4))
	health.remove(dir)
	return s
end

local cases = {}
for _, be in ipairs({ { "null", "c-null" }, { "mem", "c-mem" } }) do
	for _, len in ipairs(be[1] == "mem" and { 4096, 65536 } or { 4096 }) do
		for _, batch in ipairs({ 1, 16, 128 }) do
			-- --quick counts instructions and runs part C at batch 16 only
			local counted = not quick or batch == 16
			cases[#cases + 1] = { lua = be[1], c = be[2], len = len, batch = batch, counted = counted }
		end
	end
end

local ios = quick and 20000 or 400000
local runs = quick and 1 or 5
local rows = {}
print("| case | batch | len | C ns/IO | Lua ns/IO | ratio | +ns/IO | C instr/IO | Lua instr/IO | ratio |")
print("|---|---|---|---|---|---|---|---|---|---|")
for _, c in ipairs(cases) do
	local n = c.len > 4096 and math.floor(ios / 8) or ios
	local r = {
		case = c.lua,
		baseline = c.c,
		batch = c.batch,
		len = c.len,
		c_ns = ns_per_io(c.c, c.batch, c.len, n, runs),
		lua_ns = ns_per_io(c.lua, c.batch, c.len, n, runs),
	}
	if c.counted then
		r.c_instr = instr_per_io(c.c, c.batch, c.len)
		r.lua_instr = instr_per_io(c.lua, c.batch, c.len)
		r.instr_ratio = r.lua_instr / r.c_instr
	end
	r.ns_ratio = r.lua_ns / r.c_ns
	r.ns_added = r.lua_ns - r.c_ns
	rows[#rows + 1] = r
	local function opt(fmt, v)
		return v and fmt:format(v) or "-"
	end
	print(
		("| %s | %d | %d | %.1f | %.1f | %.2f | %+.1f | %s | %s | %s |"):format(
			r.case, r.batch, r.len, r.c_ns, r.lua_ns, r.ns_ratio, r.ns_added,
			opt("%.0f", r.c_instr), opt("%.0f", r.lua_instr), opt("%.2f", r.instr_ratio)
		)
	)
	io.stdout:flush()
end

print()
print("JIT health (part C) on the same path, reads and writes mixed, after warm-up:")
print()
print("| case | batch | len | IOs | aborts | NYI | new traces | heap B/IO | aborts in warm-up |")
print("|---|---|---|---|---|---|---|---|---|")
local jit_rows = {}
for _, c in ipairs(cases) do
	if c.counted then -- --quick: batch 16 only
		local s = jit_health(c.lua, c.batch, c.len, quick and 20000 or 200000)
		s.case, s.batch, s.len = c.lua, c.batch, c.len
		jit_rows[#jit_rows + 1] = s
		print(
			("| %s | %d | %d | %d | %d | %d | %d | %.2f | %d |"):format(
				c.lua, c.batch, c.len, s.ios, s.aborts, s.nyi, s.traces, s.heap_bytes_per_io or -1,
				s.aborts_total - s.aborts
			)
		)
		io.stdout:flush()
	end
end

-- Summary rows for the report. Target: Lua null adds at most 25 ns per
-- IO over C null at batch 16 and more; part C: nothing after warm-up.
local ADDED_NS_MAX = 25
local summary = {}
for _, r in ipairs(rows) do
	local where = ("batch %d, %d B"):format(r.batch, r.len)
	summary[#summary + 1] = {
		part = "B", scenario = "B dispatch", case = r.baseline .. " " .. where,
		ns_per_io = r.c_ns, instr_per_io = r.c_instr,
	}
	local s = {
		part = "B", scenario = "B dispatch", case = r.case .. " " .. where, ns_per_io = r.lua_ns,
		instr_per_io = r.lua_instr, ratio = r.ns_ratio, ratio_of = "ns/IO", instr_ratio = r.instr_ratio,
		baseline = r.baseline .. " " .. where, measured = ("%+.1f ns"):format(r.ns_added),
	}
	if r.case == "null" and r.batch >= 16 then
		s.target = ("<= +%d ns"):format(ADDED_NS_MAX)
		s.met = r.ns_added <= ADDED_NS_MAX
	end
	summary[#summary + 1] = s
end
for _, j in ipairs(jit_rows) do
	summary[#summary + 1] = {
		part = "C", scenario = "C in B", case = ("%s batch %d, %d B"):format(j.case, j.batch, j.len),
		target = "0 aborts, 0 NYI, 0 B/IO",
		measured = ("%d aborts, %d NYI, %.2f B/IO"):format(j.aborts, j.nyi, j.heap_bytes_per_io or -1),
		met = health.met(j),
	}
end

local text = cjson.encode({
	dispatch = rows,
	jit = jit_rows,
	summary = summary,
	settings = { ios = ios, runs = runs, quick = quick },
})
if json_path then
	local f = assert(io.open(json_path, "w"))
	f:write(text, "\n")
	f:close()
end
