-- Block parameters without a kernel: the configuration over a backend's
-- declared defaults over the built-in ones, what each queue's backend
-- sees as dev.block_size and dev.params, and the command line's flags.
local ffi = require("ffi")
local luablk = require("luablk")
local C = luablk.C
local params = require("luablk.params")

local MiB = 2 ^ 20
local ops_backend = "spec/kernel/backends/ops.lua"

-- A device from luablk.add-style options, created but never started.
local function create(opts)
	local cfg = ffi.new("struct luablk_config")
	C.luablk_config_init(cfg)
	cfg.backend = opts.backend or ops_backend
	cfg.size = opts.size or 16 * MiB
	cfg.queues = opts.queues or 1
	cfg.depth = 2
	cfg.max_io = 65536
	params.fill(cfg.params, opts, "test")
	local argv, keep = luablk.cstrings(opts.args)
	cfg.args, cfg.argc = argv, #(opts.args or {})
	local filters, keep2 = luablk.cstrings(opts.filters)
	cfg.filters, cfg.nfilters = filters, #(opts.filters or {})
	local out = ffi.new("struct luablk_dev *[1]")
	local rc = C.luablk_dev_create(cfg, out)
	local _ = { keep, keep2 }
	if rc < 0 then
		return nil, ffi.string(C.luablk_last_error())
	end
	return ffi.gc(out[0], function(d)
		C.luablk_dev_close(d, 0)
	end)
end

local function effective(dev)
	return params.effective(C, dev)
end

describe("block parameters", function()
	it("default to 512-byte blocks and 1 GiB discards", function()
		local p = effective(assert(create({})))
		assert.equal(512, p.logical_block)
		assert.equal(512, p.physical_block)
		assert.equal(512, p.io_min)
		assert.equal(512, p.io_opt)
		assert.equal(512, p.discard_granularity)
		assert.equal(0, p.discard_alignment)
		assert.equal(2 ^ 30, p.max_discard)
		assert.equal(2 ^ 30, p.max_write_zeroes)
		assert.is_false(p.read_only or p.rotational or p.write_cache or p.fua)
	end)

	it("take the backend's declared defaults", function()
		local p = effective(assert(create({
			args = { "logical_block=4096", "io_min=8192", "rotational=1", "write_cache=1", "max_discard=65536" },
		})))
		assert.equal(4096, p.logical_block)
		assert.equal(4096, p.physical_block)
		assert.equal(8192, p.io_min)
		assert.equal(8192, p.io_opt)
		assert.equal(4096, p.discard_granularity)
		assert.equal(65536, p.max_discard)
		assert.is_true(p.rotational)
		assert.is_true(p.write_cache)
	end)

	it("let the configuration override them, and defaults give way", function()
		local p = effective(assert(create({
			args = { "logical_block=4096", "physical_block=4096", "rotational=1", "write_cache=1" },
			logical_block = 512,
			io_opt = 65536,
			rotational = false,
			physical_block = 2048,
		})))
		assert.equal(512, p.logical_block)
		assert.equal(2048, p.physical_block)
		assert.equal(65536, p.io_opt)
		assert.is_false(p.rotational)
		assert.is_true(p.write_cache)
		-- a declared physical block below a given logical one is raised
		p = effective(assert(create({ args = { "physical_block=512" }, logical_block = 4096 })))
		assert.equal(4096, p.physical_block)
	end)

	it("keep FUA only with a write cache", function()
		assert.is_false(effective(assert(create({ fua = true }))).fua)
		local p = effective(assert(create({ fua = true, write_cache = true, args = { "fua=1" } })))
		assert.is_true(p.fua and p.write_cache)
		p = effective(assert(create({ fua = true, args = { "write_cache=1", "fua=1" } })))
		assert.is_true(p.fua)
	end)

	it("refuse a write cache without flush, and FUA the backend does not declare", function()
		local ramdisk = "examples/ramdisk.lua" -- no flush method
		local dev, err = create({ backend = ramdisk, write_cache = true })
		assert.is_nil(dev)
		assert.equal("backend '" .. ramdisk .. "' has no flush method, so it cannot have a write cache (--write-cache)", err)
		dev, err = create({ write_cache = true, fua = true })
		assert.is_nil(dev)
		assert.matches("backend '.*ops.lua' does not declare caps.fua, so its writes are not durable", err)
		-- what honours them is accepted: file, mem and the C baselines
		local img = os.tmpname()
		for _, o in ipairs({
			{ backend = "file", args = { "path=" .. img } },
			{ backend = "mem" },
			{ backend = "c-mem", fua = false },
		}) do
			o.write_cache, o.fua = true, o.fua == nil
			local p = effective(assert(create(o)))
			assert.is_true(p.write_cache)
			assert.equal(o.fua, p.fua)
		end
		os.remove(img)
	end)

	it("leave discard out for a backend without the methods", function()
		local p = effective(assert(create({ args = { "discard=0", "write_zeroes=0" } })))
		assert.equal(0, p.max_discard)
		assert.equal(0, p.discard_granularity)
		assert.equal(0, p.max_write_zeroes)
		p = effective(assert(create({ backend = "c-null" })))
		assert.equal(0, p.max_discard)
		p = effective(assert(create({ backend = "c-mem" })))
		assert.equal(2 ^ 30, p.max_discard)
	end)

	it("refuse discard settings for a backend without discard", function()
		local dev, err = create({ args = { "discard=0" }, discard_granularity = 4096 })
		assert.is_nil(dev)
		assert.matches("has no discard method", err)
		dev, err = create({ args = { "write_zeroes=0" }, max_write_zeroes = 4096 })
		assert.is_nil(dev)
		assert.matches("has no write_zeroes method", err)
	end)

	it("blame a bad declared value on the backend", function()
		local dev, err = create({ args = { "io_opt=3000" } })
		assert.is_nil(dev)
		assert.matches("backend '.*ops.lua' declares: optimal IO size must be", err)
	end)

	it("refuse an unknown key in a backend's params", function()
		local path = os.tmpname() .. ".lua"
		local f = assert(io.open(path, "w"))
		f:write("return { params = { logical_blocks = 4096 }, read_at = function() end, write_at = function() end }")
		f:close()
		local dev, err = create({ backend = path })
		os.remove(path)
		assert.is_nil(dev)
		assert.matches("unknown key 'logical_blocks' in params", err)
	end)

	it("are what every queue's backend sees, from its factory on", function()
		-- a backend that writes what it saw to a file when it closes
		local path, out = os.tmpname() .. ".lua", os.tmpname()
		local f = assert(io.open(path, "w"))
		f:write([[
return function(dev, args)
	local at_start = dev.block_size
	return {
		params = { logical_block = 4096, rotational = true },
		read_at = function() end,
		write_at = function() end,
		close = function()
			local f = assert(io.open(args.out, "a"))
			f:write(("%d %d %d %s\n"):format(dev.queue, at_start, dev.block_size, tostring(dev.params.rotational)))
			f:close()
		end,
	}
end
]])
		f:close()
		local dev = assert(create({ backend = path, queues = 2, args = { "out=" .. out } }))
		C.luablk_dev_close(ffi.gc(dev, nil), 0)
		local seen = require("luablk.posix").read_file(out)
		os.remove(path)
		os.remove(out)
		-- queue 0's factory ran before the declaration; afterwards its
		-- dev shows the effective values, as queue 1's does from the start
		assert.equal("0 512 4096 true\n1 4096 4096 true\n", seen)
	end)

	it("carry through filters", function()
		local p = effective(assert(create({ args = { "logical_block=4096" }, filters = { "stats", "delay:ms=0" } })))
		assert.equal(4096, p.logical_block)
	end)
end)

describe("add's block parameter flags", function()
	local cli = require("luablk.cli")

	it("map to luablk.add options", function()
		local o = assert(cli.add_options({
			"mem", "--size", "1G", "--logical-block", "4K", "--physical-block", "8K", "--io-min", "16K",
			"--io-opt", "1M", "--discard-granularity", "64K", "--discard-alignment", "0",
			"--max-discard", "16M", "--max-write-zeroes", "8M", "--read-only", "--rotational=off",
			"--write-cache=on", "--fua", "--user-copy",
		}))
		assert.equal(4096, o.logical_block)
		assert.equal(8192, o.physical_block)
		assert.equal(16384, o.io_min)
		assert.equal(MiB, o.io_opt)
		assert.equal(65536, o.discard_granularity)
		assert.equal(0, o.discard_alignment)
		assert.equal(16 * MiB, o.max_discard)
		assert.equal(8 * MiB, o.max_write_zeroes)
		assert.is_true(o.read_only)
		assert.is_false(o.rotational)
		assert.is_true(o.write_cache)
		assert.is_true(o.fua)
		assert.is_true(o.user_copy)
	end)

	it("leave what is not given unset", function()
		local o = assert(cli.add_options({ "mem", "--size", "1G" }))
		for _, k in ipairs(params.SIZES) do
			assert.is_nil(o[k], k)
		end
		for k in pairs(params.ATTRS) do
			assert.is_nil(o[k], k)
		end
	end)

	it("refuse zeros, bad sizes, bad switches and two block sizes", function()
		local function bad(args, pattern)
			local argv = { "mem", "--size", "1G" }
			for _, a in ipairs(args) do
				argv[#argv + 1] = a
			end
			local o, err = cli.add_options(argv)
			assert.is_nil(o)
			assert.matches(pattern, err)
		end
		bad({ "--io-min", "0" }, "more than 0")
		bad({ "--block-size", "0" }, "more than 0")
		bad({ "--max-discard", "4T" }, "too large")
		bad({ "--io-opt", "x" }, "bad size")
		bad({ "--fua=sometimes" }, "takes on or off")
		bad({ "--block-size", "512", "--logical-block", "4096" }, "another name")
	end)
end)
