-- Block parameters as the kernel applies them, read back from sysfs: the
-- defaults, every command-line flag, a backend's declared defaults and
-- the command line overriding them, read-only devices, and bad values
-- refused before any device exists.
local cjson = require("cjson")
local ffi = require("ffi")
local luablk = require("luablk")
local errno = require("luablk.errno")
local posix = require("luablk.posix")
local u = require("kernel.util")

local MiB, GiB = 2 ^ 20, 2 ^ 30
local ops_backend = u.fixtures .. "/ops.lua"

-- The sysfs view of the parameters, as numbers and words.
local function seen(dev)
	local q = function(name)
		return u.sysfs(dev, "queue/" .. name)
	end
	return {
		logical_block = tonumber(q("logical_block_size")),
		physical_block = tonumber(q("physical_block_size")),
		io_min = tonumber(q("minimum_io_size")),
		io_opt = tonumber(q("optimal_io_size")),
		rotational = q("rotational") == "1",
		write_cache = q("write_cache") == "write back",
		fua = q("fua") == "1",
		read_only = u.sysfs(dev, "ro") == "1",
		max_discard = tonumber(q("discard_max_bytes")),
		discard_granularity = tonumber(q("discard_granularity")),
		max_write_zeroes = tonumber(q("write_zeroes_max_bytes")),
	}
end

-- A device of another process, by id, for the sysfs helpers.
local function by_id(id)
	return {
		id = function()
			return id
		end,
	}
end

describe("block parameters", function()
	it("default to 512-byte blocks, no cache, 1 GiB discards for mem", function()
		local dev = u.add({ backend = "mem", size = 16 * MiB })
		local got = seen(dev)
		local p = dev:params()
		assert.is_true(dev:close())
		assert.same({
			logical_block = 512,
			physical_block = 512,
			io_min = 512,
			io_opt = 512,
			rotational = false,
			write_cache = false,
			fua = false,
			read_only = false,
			max_discard = GiB,
			discard_granularity = 512,
			max_write_zeroes = GiB,
		}, got)
		assert.equal(0, p.discard_alignment)
		for k, v in pairs(got) do
			assert.equal(v, p[k], k)
		end
	end)

	it("take every command-line flag", function()
		local pid, line = u.start_add({
			ops_backend,
			"--size",
			"64M",
			"--json",
			"--logical-block",
			"4096",
			"--physical-block",
			"8K",
			"--io-min",
			"16K",
			"--io-opt",
			"1M",
			"--rotational",
			"--write-cache",
			"--fua",
			"--discard-granularity",
			"64K",
			"--discard-alignment",
			"8K",
			"--max-discard",
			"16M",
			"--max-write-zeroes",
			"8M",
			-- --fua needs a backend that declares it
			"--",
			"fua=1",
		})
		assert.is_string(line, "luablk add printed nothing")
		local info = cjson.decode(line)
		local got = seen(by_id(info.id))
		assert.equal(0, ffi.C.kill(pid, 15))
		assert.equal(0, luablk.wait(pid))
		assert.equal(4096, info.block_size)
		assert.same({
			logical_block = 4096,
			physical_block = 8192,
			io_min = 16384,
			io_opt = MiB,
			rotational = true,
			write_cache = true,
			fua = true,
			read_only = false,
			max_discard = 16 * MiB,
			discard_granularity = 65536,
			max_write_zeroes = 8 * MiB,
		}, got)
	end)

	it("keep --block-size as the logical block size", function()
		local pid, line = u.start_add({ "mem", "--size", "16M", "--block-size", "4096", "--json" })
		assert.is_string(line, "luablk add printed nothing")
		local info = cjson.decode(line)
		local got = seen(by_id(info.id))
		assert.equal(0, ffi.C.kill(pid, 15))
		assert.equal(0, luablk.wait(pid))
		assert.equal(4096, got.logical_block)
		assert.equal(4096, got.physical_block)
	end)

	it("come from the backend's declared defaults, and the command line wins", function()
		local declares = {
			"logical_block=4096",
			"io_opt=65536",
			"rotational=1",
			"write_cache=1",
			"discard_granularity=65536",
			"max_discard=8388608",
		}
		local dev = u.add({ backend = ops_backend, size = 16 * MiB, args = declares })
		local got = seen(dev)
		assert.is_true(dev:close())
		assert.equal(4096, got.logical_block)
		assert.equal(4096, got.physical_block)
		assert.equal(65536, got.io_opt)
		assert.is_true(got.rotational)
		assert.is_true(got.write_cache)
		assert.equal(65536, got.discard_granularity)
		assert.equal(8 * MiB, got.max_discard)

		dev = u.add({
			backend = ops_backend,
			size = 16 * MiB,
			args = declares,
			logical_block = 512,
			rotational = false,
			write_cache = false,
			max_discard = MiB,
		})
		got = seen(dev)
		assert.is_true(dev:close())
		assert.equal(512, got.logical_block)
		-- not given: the declared io_opt stays, physical follows logical
		assert.equal(512, got.physical_block)
		assert.equal(65536, got.io_opt)
		assert.is_false(got.rotational)
		assert.is_false(got.write_cache)
		assert.equal(MiB, got.max_discard)
		assert.equal(65536, got.discard_granularity)
	end)

	it("advertise no discard or write-zeroes for a backend without them", function()
		local dev = u.add({ backend = ops_backend, size = 16 * MiB, args = { "discard=0", "write_zeroes=0" } })
		local got = seen(dev)
		local status, _, err = u.run({ "blkdiscard", "-o", "0", "-l", "65536", dev:path() })
		local ops = u.ops(dev)
		assert.is_true(dev:close())
		assert.equal(0, got.max_discard)
		assert.equal(0, got.discard_granularity)
		assert.equal(0, got.max_write_zeroes)
		assert.are_not.equal(0, status)
		assert.matches("not supported", err)
		assert.equal(0, ops.discards)
	end)

	it("make a read-only device whose backend never sees a write", function()
		local dev = u.add({ backend = ops_backend, size = 16 * MiB, read_only = true })
		local path = dev:path()
		assert.equal("1", u.sysfs(dev, "ro"))
		assert.is_true(dev:params().read_only)
		-- an application's write fails, however it is made
		local refused = { [errno.EPERM] = true, [errno.EROFS] = true, [errno.EACCES] = true }
		local fd, _, e = posix.open(path, posix.O_RDWR + posix.O_DIRECT)
		if fd then
			local buf = u.pattern(4096, 1)
			local n
			n, _, e = u.pwrite(fd, buf, 4096, 0)
			assert.is_nil(n, "a write to a read-only device succeeded")
			posix.close(fd)
		end
		assert.is_true(refused[e], "unexpected errno " .. tostring(e))
		local status = u.run({ "dd", "if=/dev/zero", "of=" .. path, "bs=4k", "count=1", "oflag=direct", "status=none" })
		assert.are_not.equal(0, status)
		-- root cannot turn the disk writable: the kernel keeps it read-only
		u.run({ "blockdev", "--setrw", path })
		status = u.run({ "dd", "if=/dev/zero", "of=" .. path, "bs=4k", "count=1", "oflag=direct", "status=none" })
		assert.are_not.equal(0, status)
		assert.are_not.equal(0, (u.run({ "blkdiscard", path })))
		-- reads still work
		u.sh({ "dd", "if=" .. path, "of=/dev/null", "bs=64k", "count=4", "iflag=direct", "status=none" })
		local ops = u.ops(dev)
		assert.is_true(dev:close())
		assert.equal(0, ops.writes)
		assert.equal(0, ops.discards)
		assert.equal(0, ops.zeroes)
		assert.is_true(ops.reads > 0)
	end)
end)

describe("bad block parameters", function()
	local bin = u.luablk_bin

	-- argv fails with `code`, one stderr line matching pattern, no device.
	local function refused(code, args, pattern)
		local argv = { bin, "add" }
		for _, a in ipairs(args) do
			argv[#argv + 1] = a
		end
		local before = #assert(luablk.list())
		local status, out, err = u.run(argv)
		assert.equal(code, status, table.concat(args, " ") .. ": " .. err)
		assert.equal("", out)
		assert.equal(1, select(2, err:gsub("\n", "")), "expected one line, got: " .. err)
		assert.matches("^luablk: ", err)
		assert.matches(pattern, err)
		assert.equal(before, #assert(luablk.list()), "a device was left behind")
	end

	it("are refused with one line and exit 2 before anything is created", function()
		local function usage(args, pattern)
			local argv = { "mem", "--size", "16M" }
			for _, a in ipairs(args) do
				argv[#argv + 1] = a
			end
			refused(2, argv, pattern)
		end
		usage({ "--logical-block", "1000" }, "logical block size must be a power of two from 512 to 4096, not 1000")
		usage({ "--logical-block", "8K" }, "not 8192")
		usage({ "--logical-block", "0" }, "more than 0")
		usage({ "--logical-block", "4096", "--physical-block", "512" }, "physical block size must be")
		usage({ "--physical-block", "1M" }, "to the largest IO %(524288%)")
		usage({ "--physical-block", "4096", "--io-min", "512" }, "minimum IO size must be")
		usage({ "--io-opt", "3M" }, "optimal IO size must be")
		usage({ "--discard-granularity", "1000" }, "discard granularity must be")
		usage({ "--discard-granularity", "4K", "--discard-alignment", "4K" }, "discard alignment must be")
		usage({ "--max-discard", "2G" }, "largest discard must be")
		usage({ "--discard-granularity", "64K", "--max-discard", "4K" }, "largest discard must be")
		usage({ "--max-write-zeroes", "1000" }, "largest write%-zeroes must be")
		usage({ "--rotational=maybe" }, "takes on or off")
		usage({ "--read-only", "yes" }, "add needs exactly one BACKEND")
		usage({ "--block-size", "512", "--logical-block", "4096" }, "another name for %-%-logical%-block")
		usage({ "--max-discard", "lots" }, "bad size")
		refused(2, { "mem", "--size", "1049088", "--logical-block", "4096" }, "multiple of the 4096%-byte")
	end)

	it("for discard on a backend without it fail before the device exists", function()
		refused(1, { ops_backend, "--size", "16M", "--max-discard", "1M", "--", "discard=0" }, "has no discard method")
		refused(
			1,
			{ ops_backend, "--size", "16M", "--max-write-zeroes", "1M", "--", "write_zeroes=0" },
			"has no write_zeroes method"
		)
		-- a declared default that the size does not fit is refused too
		refused(1, { ops_backend, "--size", "1049088", "--", "logical_block=4096" }, "multiple of the 4096%-byte")
		refused(1, { ops_backend, "--size", "16M", "--", "physical_block=3000" }, "backend '.*' declares: physical")
	end)
end)
