-- `make bench-quick`'s only assertion: the benchmark ran and wrote a valid
-- report. It checks the shape of the results file, never a speed.
--
--   luajit scripts/bench/check.lua RESULTS.json
local cjson = require("cjson")

local path = arg[1]
if not path then
	io.stderr:write("usage: check.lua RESULTS.json\n")
	os.exit(2)
end

local problems = {}
local function need(cond, what)
	if not cond then
		problems[#problems + 1] = what
	end
	return cond
end

local function positive(v)
	return type(v) == "number" and v > 0 and v < math.huge
end

local f = io.open(path)
local ok, report = false, nil
if need(f, "cannot open " .. path) then
	ok, report = pcall(cjson.decode, f:read("*a"))
	f:close()
	need(ok and type(report) == "table", "not valid JSON")
end
if ok and type(report) == "table" then
	for _, k in ipairs({ "date", "host", "machine", "A", "B", "summary" }) do
		need(report[k] ~= nil, "no key '" .. k .. "'")
	end
	local a, b = (report.A or {})[1] or {}, (report.B or {})[1] or {}
	need(type(a.server) == "table" and #a.server > 0, "part A has no rows")
	for _, r in ipairs(a.server or {}) do
		need(positive(r.iops), "A " .. tostring(r.case) .. ": no IOPS")
		-- a kernel driver (null_blk, loop) has no server, so no CPU figure
		local kernel = r.kind == "kernel" or r.server == "/dev/nullb0"
		need(kernel or positive(r.cpu_us_per_io), "A " .. tostring(r.case) .. ": no CPU per IO")
	end
	need(type(b.dispatch) == "table" and #b.dispatch > 0, "part B has no rows")
	for _, r in ipairs(b.dispatch or {}) do
		need(positive(r.c_ns) and positive(r.lua_ns), "B " .. tostring(r.case) .. ": no ns per IO")
	end
	for name, part in pairs({ A = a, B = b }) do
		need(type(part.jit) == "table" and #part.jit > 0, "no part C rows in " .. name)
		for _, j in ipairs(part.jit or {}) do
			need(positive(j.ios) and type(j.heap_bytes_per_io) == "number", "C in " .. name .. ": empty window")
		end
	end
	local parts = {}
	for _, r in ipairs(report.summary or {}) do
		parts[r.part or "?"] = true
		need(type(r.case) == "string", "a summary row without a case")
	end
	need(parts.A and parts.B and parts.C, "the summary lacks part A, B or C")
	if report.chart then
		local png = io.open((path:match("^(.*)/") or ".") .. "/" .. report.chart, "rb")
		need(png and png:read(8) == "\137PNG\r\n\26\n", "the chart is not a PNG")
		if png then
			png:close()
		end
	else
		need(false, "no chart")
	end
end

if #problems > 0 then
	io.stderr:write("bench: invalid report ", path, ":\n  ", table.concat(problems, "\n  "), "\n")
	os.exit(1)
end
print(("bench: report %s is valid (%d summary rows)"):format(path, #report.summary))
