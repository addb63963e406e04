-- Live reload without a kernel: luablk_dev_reload on a created device
-- swaps the backend in the very handlers its queues would serve with.
local ffi = require("ffi")
local luablk = require("luablk")
local C = luablk.C
require("luablk.posix") -- declares getpid

local READ, WRITE, DISCARD = 0, 1, 3

if not pcall(function()
	return ffi.C.setenv
end) then
	ffi.cdef("int setenv(const char *name, const char *value, int overwrite); int unsetenv(const char *name);")
end

-- Reads show which version serves and which one it took over from.
local FIXTURE = "spec/kernel/backends/versioned.lua"
local VERSIONED = assert(require("luablk.posix").read_file(FIXTURE))

local dir = os.tmpname()
os.remove(dir)
local function write_file(name, text)
	local path = dir .. "-" .. name
	local f = assert(io.open(path, "w"))
	f:write(text)
	f:close()
	return path
end

local function create(backend, queues, args, filters)
	local cfg = ffi.new("struct luablk_config")
	C.luablk_config_init(cfg)
	cfg.backend = backend
	cfg.size = 2 ^ 20
	cfg.queues = queues or 1
	cfg.depth = 4
	cfg.max_io = 65536
	local argv = luablk.cstrings(args)
	cfg.args, cfg.argc = argv, #(args or {})
	local fl = luablk.cstrings(filters)
	cfg.filters, cfg.nfilters = fl, #(filters or {})
	local out = ffi.new("struct luablk_dev *[1]")
	local rc = C.luablk_dev_create(cfg, out)
	assert(rc == 0, ffi.string(C.luablk_last_error()))
	return setmetatable({ ptr = out[0] }, luablk.Device)
end

local function run_io(dev, q, op, off, len)
	local h = C.luablk_dev_handler(dev.ptr, q)
	local b = C.luablk_handler_batch(h)
	b[0].op, b[0].off, b[0].len, b[0].tag, b[0].result = op, off, len, 0, -5
	C.luablk_handler_run(h, 1)
	return b[0].result, C.luablk_handler_buf(h, 0)
end

-- The version serving queue q, and the one it took over from.
local function version(dev, q)
	local r, buf = run_io(dev, q, READ, 0, 512)
	assert.equal(512, r)
	return buf[0], buf[1]
end

local function closes(dev)
	local p = assert(dev:shared("closes"))
	return ffi.cast("uint32_t *", p)[0]
end

describe("reload", function()
	local path
	before_each(function()
		path = write_file("versioned.lua", VERSIONED)
	end)
	after_each(function()
		os.remove(path)
	end)

	it("keeps a RAM disk's data", function()
		local dev = create("mem", 2)
		local _, buf = run_io(dev, 0, READ, 0, 0)
		ffi.copy(buf, "kept across reloads", 19)
		assert.equal(512, (run_io(dev, 0, WRITE, 4096, 512)))
		for _ = 1, 3 do
			assert.is_true(dev:reload())
		end
		local r, rbuf = run_io(dev, 1, READ, 4096, 512)
		assert.equal(512, r)
		assert.equal("kept across reloads", ffi.string(rbuf, 19))
		assert.is_true(dev:close())
	end)

	it("hands the old backend's state to the new one in every queue, then closes the old", function()
		local dev = create(path, 2, { "v=1" })
		assert.same({ 1, 0 }, { version(dev, 0) })
		assert.is_true(dev:reload({ args = { "v=2" } }))
		for q = 0, 1 do
			assert.same({ 2, 1 }, { version(dev, q) })
		end
		assert.equal(2, closes(dev))
		-- without arguments: the same spec and the arguments of the last reload
		assert.is_true(dev:reload())
		assert.same({ 2, 2 }, { version(dev, 1) })
		assert.is_true(dev:close())
	end)

	it("keeps the old backend open and serving when the new batch function cannot be built", function()
		local dev = create(path, 2, { "v=1" })
		-- The JIT log is started while the batch function is built; a
		-- directory that does not exist makes that raise.
		ffi.C.setenv("LUABLK_JIT_LOG", dir .. "-no-such-dir", 1)
		local ok = dev:reload({ args = { "v=2" } })
		ffi.C.unsetenv("LUABLK_JIT_LOG")
		assert.is_true(ok)
		for q = 0, 1 do
			assert.same({ 1, 0 }, { version(dev, q) })
		end
		-- what was closed is the prepared backend of each queue, not the old
		assert.equal(2, closes(dev))
		assert.is_true(dev:reload({ args = { "v=3" } }))
		assert.same({ 3, 1 }, { version(dev, 1) })
		assert.is_true(dev:close())
	end)

	it("keeps the trace file's earlier lines, also through a reload that is refused", function()
		local trace = write_file("trace.jsonl", "")
		local dev = create(path, 2, { "v=1" }, { "trace:path=" .. trace })
		local function count()
			local n = 0
			for _ in io.lines(trace) do
				n = n + 1
			end
			return n
		end
		assert.equal(512, (run_io(dev, 0, WRITE, 0, 512)))
		assert.equal(512, (run_io(dev, 1, WRITE, 512, 512)))
		assert.is_true(dev:reload({ args = { "v=2" } }))
		assert.equal(2, count())
		assert.equal(512, (run_io(dev, 1, WRITE, 0, 512)))
		-- queue 0 builds its filter, queue 1 refuses: both keep the old one
		local ok, err = dev:reload({ args = { "v=3", "fail_queue=1" } })
		assert.is_nil(ok)
		assert.matches("refusing queue 1", err)
		assert.equal(2, (version(dev, 0)))
		assert.equal(4, count())
		assert.is_true(dev:close())
		os.remove(trace)
	end)

	it("keeps the crash filter's unflushed writes", function()
		local dev = create("mem", 1, nil, { "crash" })
		local _, buf = run_io(dev, 0, READ, 0, 0)
		ffi.fill(buf, 512, 0xab)
		assert.equal(512, (run_io(dev, 0, WRITE, 0, 512)))
		ffi.fill(buf, 512, 0)
		assert.is_true(dev:reload())
		local r, rbuf = run_io(dev, 0, READ, 0, 512)
		assert.equal(512, r)
		assert.equal(0xab, rbuf[511])
		assert.is_true(dev:close())
	end)

	-- Options that let each shipped filter pass every IO through untouched.
	local passing = {
		fault = "fault:rate=0",
		delay = "delay:ms=0",
		crash = "crash",
		trace = "trace:path=" .. dir .. "-trace.jsonl",
		stats = "stats",
	}
	for _, name in ipairs(require("luablk.filters").SHIPPED) do
		it("passes close and handoff through the " .. name .. " filter", function()
			assert.is_string(passing[name], "no options for this shipped filter in the spec")
			local dev = create(path, 1, { "v=1" }, { passing[name] })
			assert.is_true(dev:reload({ args = { "v=2" } }))
			assert.same({ 2, 1 }, { version(dev, 0) })
			assert.equal(1, closes(dev))
			assert.is_true(dev:close())
			os.remove(dir .. "-trace.jsonl")
		end)
	end

	it("leaks no fd over many reloads of a file behind a filter", function()
		local img = write_file("fd.img", "")
		local function fds()
			local ls = io.popen("ls /proc/" .. ffi.C.getpid() .. "/fd")
			local n = 0
			for _ in ls:lines() do
				n = n + 1
			end
			ls:close()
			return n
		end
		local dev = create("file", 2, { "path=" .. img }, { "delay:ms=0" })
		local before = fds()
		for _ = 1, 200 do
			assert.is_true(dev:reload())
		end
		assert.equal(before, fds())
		assert.is_true(dev:close())
		os.remove(img)
	end)

	it("reads a backend file from disk again", function()
		local dev = create(path, 1, { "v=1" })
		local f = assert(io.open(path, "w"))
		f:write((VERSIONED:gsub("ffi%.fill%(buf, len, v%)", "ffi.fill(buf, len, v + 10)")))
		f:close()
		assert.is_true(dev:reload())
		assert.equal(11, (version(dev, 0)))
		dev:close()
	end)

	-- name, the old backend's arguments, the reload's options (given the
	-- versioned backend's path), the error, closes of half-made backends
	local refusals = {
		{
			"a script that does not compile",
			{ "v=1" },
			function()
				return { backend = write_file("syntax.lua", "return function(") }
			end,
			"syntax.lua",
			0,
		},
		{
			"a factory that fails on one queue",
			{ "v=1" },
			function(p)
				return { backend = p, args = { "v=2", "fail_queue=1" } }
			end,
			"refusing queue 1",
			1,
		},
		{
			"a handoff that raises",
			{ "v=1", "bad_handoff=error" },
			function(p)
				return { backend = p, args = { "v=2" } }
			end,
			"handoff: .*cannot hand over",
			0,
		},
		{
			"a handoff that returns a number",
			{ "v=1", "bad_handoff=number" },
			function(p)
				return { backend = p, args = { "v=2" } }
			end,
			"handoff returned a number",
			0,
		},
	}
	for _, case in ipairs(refusals) do
		local name, old_args, opts, message, half_made = unpack(case)
		it("refuses " .. name .. " and the old backend serves on", function()
			local dev = create(path, 2, old_args)
			local ok, err = dev:reload(opts(path))
			assert.is_nil(ok)
			assert.matches(message, err)
			for q = 0, 1 do
				assert.same({ 1, 0 }, { version(dev, q) })
			end
			assert.equal(half_made, closes(dev))
			dev:close()
		end)
	end

	it("refuses a backend that lacks a method the device advertises", function()
		local dev = create("mem", 1)
		local ok, err = dev:reload({ backend = path })
		assert.is_nil(ok)
		assert.matches("no discard method, and the device advertises it", err)
		assert.equal(0, (run_io(dev, 0, DISCARD, 0, 4096)))
		dev:close()
	end)

	it("refuses the C baselines, either way", function()
		local dev = create("c-null", 1)
		local ok, err = dev:reload({ backend = "null" })
		assert.is_nil(ok)
		assert.matches("built into the core and cannot be reloaded", err)
		dev:close()
		dev = create("mem", 1)
		ok, err = dev:reload({ backend = "c-mem" })
		assert.is_nil(ok)
		assert.matches("only Lua backends", err)
		dev:close()
	end)

	it("refuses an unknown backend with the loader's message", function()
		local dev = create("null", 1)
		local ok, err = dev:reload({ backend = "no-such-backend" })
		assert.is_nil(ok)
		assert.matches("unknown backend", err)
		assert.equal(4096, (run_io(dev, 0, READ, 0, 4096)))
		dev:close()
	end)
end)
