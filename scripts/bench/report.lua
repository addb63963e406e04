-- The benchmark's report: merges the parts' JSON files (server.lua: part A
-- and its part C; dispatch.lua: part B and its part C) into one results
-- file, prints the summary as a Markdown table and draws the ratios with
-- gnuplot into a PNG next to the results file.
--
--   luajit scripts/bench/report.lua --out RESULTS.json [--vm] PART.json...
-- (a plain LuaJIT program: it serves no device, so io.popen is fine here)
local cjson = require("cjson")

local out_path, vm, inputs = nil, false, {}
do
	local i = 1
	while arg[i] do
		if arg[i] == "--out" then
			i = i + 1
			out_path = arg[i]
		elseif arg[i] == "--vm" then
			vm = true
		else
			inputs[#inputs + 1] = arg[i]
		end
		i = i + 1
	end
	if not out_path or #inputs == 0 then
		io.stderr:write("usage: report.lua --out RESULTS.json [--vm] PART.json...\n")
		os.exit(2)
	end
end

local function shell(cmd)
	local p = assert(io.popen(cmd))
	local s = p:read("*a"):gsub("%s+$", "")
	p:close()
	return s
end

local function read_json(path)
	local f = assert(io.open(path))
	local v = cjson.decode(f:read("*a"))
	f:close()
	return v
end

-- Parts A and B as lists of what each run wrote (A may run in two VMs).
local result = {
	date = os.date("!%Y-%m-%dT%H:%M:%SZ"),
	host = shell("hostname -s"),
	machine = {
		cpus = tonumber(shell("nproc")),
		kernel = shell("uname -r"),
		cpu = shell("sed -n 's/^model name[^:]*: //p' /proc/cpuinfo | head -1"),
		luajit = shell("luajit -v"),
	},
	part_a_in_emulated_vm = vm,
	note = vm and "Part A ran in an emulated (TCG) VM: only its ratios carry meaning, not absolute IOPS or CPU." or nil,
	A = {},
	B = {},
	summary = {},
}
for _, path in ipairs(inputs) do
	local part = read_json(path)
	table.insert(part.server and result.A or result.B, part)
	for _, row in ipairs(part.summary) do
		result.summary[#result.summary + 1] = row
	end
	part.summary = nil
end
-- Parts in report order: A, then B, then C; scenarios in their order.
local rank = { A = 1, B = 2, C = 3 }
for k, row in ipairs(result.summary) do
	row.order = k
end
table.sort(result.summary, function(a, b)
	if a.part ~= b.part then
		return rank[a.part] < rank[b.part]
	end
	if a.scenario ~= b.scenario then
		return a.scenario < b.scenario
	end
	return a.order < b.order
end)
for _, row in ipairs(result.summary) do
	row.order = nil
end

local function num(fmt, v)
	return v and fmt:format(v) or ""
end

print("| part | scenario | case | IOPS | server CPU us/IO | ns/IO | instr/IO | ratio | vs | target | measured | met? |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|")
local met, missed = 0, 0
for _, r in ipairs(result.summary) do
	local ratio = num("%.2f", r.ratio)
	if r.ratio and r.instr_ratio then
		ratio = ("%.2f (instr %.2f)"):format(r.ratio, r.instr_ratio)
	elseif r.ratio and r.ratio_of == "IOPS" then
		ratio = ratio .. " IOPS"
	end
	local verdict = ""
	if r.met ~= nil then
		verdict = r.met and "yes" or "**no**"
		met, missed = met + (r.met and 1 or 0), missed + (r.met and 0 or 1)
	end
	print(
		("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |"):format(
			r.part, r.scenario, r.case, num("%.0f", r.iops), num("%.2f", r.cpu_us_per_io), num("%.1f", r.ns_per_io),
			num("%.0f", r.instr_per_io), ratio, r.baseline or "", r.target or "", r.measured or "", verdict
		)
	)
end
print()
print(("targets met: %d, missed: %d"):format(met, missed))
-- Rows part A could not run here (a missing device, a peer server not
-- given, too few CPUs), and why.
for _, part in ipairs(result.A) do
	for _, n in ipairs(part.notes or {}) do
		print("note: " .. n)
	end
	for _, s in ipairs(part.skipped or {}) do
		print("skipped: " .. s)
	end
end
if vm then
	print(result.note)
end

-- The chart: every ratio to a baseline, coloured by its target.
local png = out_path:gsub("%.json$", "") .. ".png"
local data = os.tmpname()
local f = assert(io.open(data, "w"))
local bars = 0
local function bar(label, ratio, target, status)
	bars = bars + 1
	f:write(("%s\t%.4f\t%s\t%d\n"):format(label, ratio, target and ("%.4f"):format(target) or "NaN", status))
end
for _, r in ipairs(result.summary) do
	if r.ratio then
		local status = r.met == nil and 0 or (r.met and 1 or 2)
		local target = tonumber((r.target or ""):match("([%d.]+)x"))
		if r.part == "B" then
			-- B's target is in ns, not a ratio: the bar is coloured by it
			bar("B " .. r.case .. ": ns", r.ratio, nil, status)
			if r.instr_ratio then
				bar("B " .. r.case .. ": instr", r.instr_ratio, nil, 0)
			end
		else
			bar(("A %s %s: %s"):format(r.scenario, r.case, r.ratio_of), r.ratio, target, status)
		end
	end
end
f:close()
if bars > 0 then
	local title = ("luablk: Lua backend / baseline, %s on %s%s"):format(
		result.date:sub(1, 10), result.host, vm and " (part A in an emulated VM)" or ""
	)
	local script = table.concat({
		"set terminal pngcairo size 1600,900 font ',9'",
		("set output '%s'"):format(png),
		"set datafile separator '\\t'",
		("set title \"%s\\nA: server CPU per IO (S3: IOPS), B: dispatch ns and instructions per IO\""):format(title),
		"set style fill solid 0.85 border -1",
		"set boxwidth 0.75",
		"set grid ytics",
		"set yrange [0:*]",
		"set xtics rotate by -55 left noenhanced",
		"set key tmargin horizontal",
		"set tmargin 5",
		"set bmargin 16",
		"set rmargin 10",
		"set ylabel 'ratio to baseline (1 = as fast as the baseline)'",
		"set arrow from graph 0, first 1 to graph 1, first 1 nohead dashtype 2 lc rgb '#444444'",
		"plot '" .. data .. "' using 0:($4==0 ? $2 : 1/0):xtic(1) with boxes lc rgb '#9a9a9a' title 'no target', \\",
		"  '' using 0:($4==1 ? $2 : 1/0) with boxes lc rgb '#2ca02c' title 'target met', \\",
		"  '' using 0:($4==2 ? $2 : 1/0) with boxes lc rgb '#d62728' title 'target missed', \\",
		"  '' using 0:3 with points pt 9 ps 1.6 lc rgb '#000000' title 'target ratio'",
	}, "\n")
	os.remove(png)
	local gp = assert(io.popen("gnuplot", "w"))
	gp:write(script, "\n")
	gp:close()
	local made = io.open(png)
	if made and made:seek("end") > 0 then
		result.chart = png:match("[^/]*$")
	else
		io.stderr:write("report: gnuplot drew no chart\n")
	end
	if made then
		made:close()
	end
end
os.remove(data)

local out = assert(io.open(out_path, "w"))
out:write(cjson.encode(result), "\n")
out:close()
print(("results: %s%s"):format(out_path, result.chart and (", chart: " .. png) or ""))
