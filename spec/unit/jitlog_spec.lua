-- The benchmark's JIT health log: it must see trace aborts and NYI, weigh
-- the heap per IO exactly, and be turned on by LUABLK_JIT_LOG in a real
-- queue state (build/bench-dispatch runs the production host).
local jitlog = require("luablk.jitlog")
local posix = require("luablk.posix")

local function tmpdir()
	local p = os.tmpname()
	os.remove(p)
	assert(os.execute("mkdir " .. p) == 0)
	return p
end

-- The names in dir (ls sorts them).
local function names(dir)
	local p = io.popen("ls " .. dir)
	local list = p:read("*a")
	p:close()
	return list
end

-- Runs `batches` batches of 16 IOs through run wrapped by the log; returns
-- what the log holds and its text.
local function logged(run, batches)
	local dir = tmpdir()
	local wrapped = jitlog.start(dir, 3, run)
	for _ = 1, batches do
		wrapped(16)
	end
	jitlog.stop()
	local pid = require("ffi").C.getpid()
	assert.equal(pid .. ".q3.log\n", names(dir))
	local log = ("%s/%d.q3.log"):format(dir, pid)
	local got = jitlog.read(log)
	local text = posix.read_file(log)
	os.execute("rm -r " .. dir)
	return got, text
end

-- Heap bytes per IO from the first IOS line after the last new trace.
local function per_io(rows)
	local b = rows[#rows]
	local from = 1
	while rows[from].traces < b.traces do
		from = from + 1
	end
	local a = rows[from]
	return (b.heap_kib - a.heap_kib) * 1024 / (b.ios - a.ios)
end

describe("luablk.jitlog", function()
	it("writes a stats line every EVERY IOs and weighs no heap for a loop that allocates nothing", function()
		local buf = require("ffi").new("int[16]")
		local got, text = logged(function(n)
			for i = 0, n - 1 do
				buf[i] = buf[i] + 1
			end
		end, 5000)
		local rows = got.ios
		local every, last = jitlog.EVERY, rows[#rows]
		assert.equal(80000 / every, #rows)
		-- the first batch of 16 to reach EVERY IOs
		assert.equal(math.ceil(every / 16) * 16, rows[1].ios)
		assert.equal(80000, last.ios)
		assert.is_true(last.traces >= 1)
		assert.is_true(last.traces <= got.traces) -- more may follow the last line
		-- Root traces started around this spec's nested loops may meet
		-- another loop and give up; LuaJIT retries and then blacklists
		-- that start. Nothing else may abort.
		for _, a in ipairs(got.aborts) do
			assert.truthy(a:find("-- inner loop in root trace", 1, true) or a:find("-- leaving loop in root trace", 1, true), a)
		end
		assert.is_true(last.aborts <= #got.aborts)
		assert.equal(0, last.nyi)
		assert.truthy(text:find("%[TRACE %d+ [^\n]*jitlog_spec%.lua:%d+ loop%]"))
		assert.is_true(per_io(rows) == 0, "heap bytes per IO " .. per_io(rows))
	end)

	it("counts the bytes a loop allocates per IO", function()
		local keep
		local got = logged(function(n)
			for i = 1, n do
				keep = { i }
			end
		end, 2000)
		assert.truthy(keep)
		assert.is_true(per_io(got.ios) >= 16, "heap bytes per IO " .. per_io(got.ios))
	end)

	it("counts trace aborts and NYI, and the trace log names them", function()
		local got, text = logged(function(n)
			for _ = 1, n do
				local f = function() end -- closure creation is NYI
				f()
			end
		end, 200)
		local last = got.ios[#got.ios]
		local nyi = 0
		for _, a in ipairs(got.aborts) do
			nyi = nyi + (a:find(" -- NYI: ", 1, true) and 1 or 0)
		end
		assert.is_true(last.nyi > 0)
		-- there may be more events after the last IOS line
		assert.is_true(#got.aborts >= last.aborts and nyi >= last.nyi)
		assert.truthy(text:find("%[TRACE %-%-%- [^\n]*jitlog_spec%.lua:%d+ %-%- NYI: bytecode 51"))
	end)

	it("rejects a directory that does not exist with one clear error", function()
		local ok, err = pcall(jitlog.start, "/nonexistent/dir", 0, function() end)
		assert.is_false(ok)
		assert.truthy(err:find("^LUABLK_JIT_LOG: cannot write /nonexistent/dir/%d+%.q0%.log: "), err)
	end)

	it("reads only complete lines after an offset", function()
		local p = os.tmpname()
		local f = io.open(p, "w")
		f:write("[TRACE 1 x.lua:1 loop]\n[IOS 1000 10 1 0 0]\n[IOS 2000 10 1 0 0]\n[TRACE --- x.lua:2 -- NYI")
		f:close()
		local got, off = jitlog.read(p)
		assert.equal(2, #got.ios)
		assert.equal(1, got.traces)
		assert.same({}, got.aborts)
		f = io.open(p, "a")
		f:write(": bytecode 51]\n[IOS 3000 11 1 1 1]\n")
		f:close()
		got = jitlog.read(p, off)
		assert.same({ { ios = 3000, heap_kib = 11, traces = 1, aborts = 1, nyi = 1 } }, got.ios)
		assert.same({ "[TRACE --- x.lua:2 -- NYI: bytecode 51]" }, got.aborts)
		os.remove(p)
	end)

	it("is turned on in a queue's Lua state by LUABLK_JIT_LOG", function()
		local dir = tmpdir()
		local p = io.popen("LUABLK_JIT_LOG=" .. dir .. " build/bench-dispatch null 16 4096 1000 2>&1")
		local out = p:read("*a")
		assert.is_true(p:close(), out)
		local name = names(dir):match("^%d+%.q0%.log\n$")
		assert.truthy(name, "one log for queue 0")
		local rows = jitlog.read(dir .. "/" .. name:sub(1, -2)).ios
		-- warm-up (64 MiB in 4 KiB IOs, plus 100 batches) and 16000 IOs
		assert.equal(math.floor((16384 + 1600 + 16000) / jitlog.EVERY), #rows)
		assert.is_true(rows[#rows].traces > 0)
		os.execute("rm -r " .. dir)
	end)
end)
