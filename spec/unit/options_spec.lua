local options = require("luablk.options")

describe("options.size", function()
	it("reads bytes and binary suffixes", function()
		assert.equal(4096, options.size("4096"))
		assert.equal(64 * 1024, options.size("64K"))
		assert.equal(2 ^ 20, options.size("1M"))
		assert.equal(2 ^ 30, options.size("1g"))
		assert.equal(2 * 2 ^ 30, options.size("2GiB"))
		assert.equal(512, options.size("512B"))
		assert.equal(2 ^ 40, options.size("1T"))
	end)

	it("refuses anything else", function()
		for _, bad in ipairs({ "", "x", "-1", "1.5G", "1X", "1iB", "G", "1 G", "1Gx", "99999999P" }) do
			local n, err = options.size(bad)
			assert.is_nil(n, bad)
			assert.is_string(err)
		end
	end)
end)

describe("options.integer", function()
	it("checks the range", function()
		assert.equal(4, options.integer("4", "--queues", 1, 8))
		assert.is_nil(options.integer("0", "--queues", 1, 8))
		assert.is_nil(options.integer("9", "--queues", 1, 8))
		assert.is_nil(options.integer("1.5", "--queues", 1, 8))
		assert.is_nil(options.integer("0x10", "--queues", 1, 64))
	end)
end)

describe("options.parse", function()
	local spec = { size = "value", json = "flag" }

	it("splits options, positionals and what follows --", function()
		local o, pos, rest = options.parse({ "mem", "--size", "1G", "--json", "--", "a=1", "--x" }, spec)
		assert.same({ size = "1G", json = true }, o)
		assert.same({ "mem" }, pos)
		assert.same({ "a=1", "--x" }, rest)
	end)

	it("takes --name=value", function()
		local o = options.parse({ "--size=2M" }, spec)
		assert.equal("2M", o.size)
	end)

	it("takes on/off switches without eating the next word", function()
		local sw = { rotational = "bool", ["write-cache"] = "bool" }
		local o, pos = options.parse({ "--rotational", "mem", "--write-cache=off" }, sw)
		assert.same({ rotational = true, ["write-cache"] = false }, o)
		assert.same({ "mem" }, pos)
		for word, want in pairs({ on = true, yes = true, ["1"] = true, OFF = false, no = false, ["0"] = false }) do
			assert.equal(want, (options.parse({ "--rotational=" .. word }, sw)).rotational, word)
		end
		local bad, err = options.parse({ "--rotational=maybe" }, sw)
		assert.is_nil(bad)
		assert.matches("takes on or off", err)
	end)

	it("reports unknown options, missing values and values on flags", function()
		assert.is_nil((options.parse({ "--bogus" }, spec)))
		assert.is_nil((options.parse({ "--size" }, spec)))
		assert.is_nil((options.parse({ "--json=1" }, spec)))
		assert.is_nil((options.parse({ "-x" }, spec)))
	end)
end)

describe("cli.add_options", function()
	local cli = require("luablk.cli")

	it("maps the command line to luablk.add options", function()
		local o = cli.add_options({
			"file", "--size", "1G", "--queues", "2", "--depth", "64",
			"--max-io", "128K", "--block-size", "4096", "--id", "7", "--", "path=/x",
		})
		assert.same({
			backend = "file", size = 2 ^ 30, queues = 2, depth = 64, max_io = 131072,
			block_size = 4096, id = 7, args = { "path=/x" },
		}, o)
	end)

	it("needs a backend, and leaves a size not given to the backend", function()
		assert.is_nil((cli.add_options({ "--size", "1G" })))
		assert.is_nil(cli.add_options({ "mem" }).size)
		assert.is_nil((cli.add_options({ "mem", "--size", "lots" })))
		assert.is_nil((cli.add_options({ "mem", "--size", "1G", "--queues", "0" })))
		assert.is_nil((cli.add_options({ "mem", "--size", "1G", "--depth", "5000" })))
	end)

	it("takes a captive command, and refuses an empty one", function()
		assert.equal("fsck -n $LUABLK_DEV", cli.add_options({ "mem", "--size", "1G", "--run", "fsck -n $LUABLK_DEV" }).run)
		local o, err = cli.add_options({ "mem", "--size", "1G", "--run", "" })
		assert.is_nil(o)
		assert.equal("--run needs a command", err)
		assert.equal("true", cli.recover_options({ "3", "mem", "--run", "true" }).run)
		assert.is_nil((cli.recover_options({ "3", "mem", "--run", "" })))
	end)

	it("refuses a --max-io that does not fit in 32 bits", function()
		local o, err = cli.add_options({ "mem", "--size", "1G", "--max-io", "4294971392" })
		assert.is_nil(o)
		assert.equal("--max-io: '4294971392' is too large", err)
	end)

	it("passes --unprivileged on", function()
		assert.is_true(cli.add_options({ "mem", "--size", "1M", "--unprivileged" }).unprivileged)
		assert.is_nil(cli.add_options({ "mem", "--size", "1M" }).unprivileged)
	end)
end)

describe("cli recovery options", function()
	local cli = require("luablk.cli")

	it("maps --recoverable, --reissue and --fail-io; the last two imply the first", function()
		local o = cli.add_options({ "mem", "--size", "1M", "--recoverable" })
		assert.is_true(o.recoverable)
		assert.is_nil(o.reissue)
		o = cli.add_options({ "mem", "--size", "1M", "--reissue" })
		assert.is_true(o.recoverable)
		assert.is_true(o.reissue)
		o = cli.add_options({ "mem", "--size", "1M", "--fail-io" })
		assert.is_true(o.recoverable)
		assert.is_true(o.fail_io)
		assert.is_nil((cli.add_options({ "mem", "--size", "1M", "--reissue=1" })))
	end)

	it("reads recover ID BACKEND with filters and backend arguments", function()
		local o = cli.recover_options({ "3", "file", "--filter", "stats", "--no-pin", "--json", "--", "path=/x" })
		assert.same({
			id = 3, backend = "file", filters = { "stats" }, no_pin = true, json = true, args = { "path=/x" },
		}, o)
	end)

	it("refuses a recover command line without an ID and a BACKEND, or with add's options", function()
		assert.is_nil((cli.recover_options({})))
		assert.is_nil((cli.recover_options({ "3" })))
		assert.is_nil((cli.recover_options({ "mem", "3" })))
		assert.is_nil((cli.recover_options({ "-1", "mem" })))
		assert.is_nil((cli.recover_options({ "3", "mem", "extra" })))
		assert.is_nil((cli.recover_options({ "3", "mem", "--size", "1M" })))
		assert.is_nil((cli.recover_options({ "3", "mem", "--recoverable" })))
	end)
end)

describe("luablk.recovery", function()
	local luablk = require("luablk")

	it("names what a device does when its server dies, from its flags", function()
		local RECOVERY, REISSUE, ENCODE, FAIL_IO = 8, 16, 64, 512
		assert.equal("no", luablk.recovery(0))
		assert.equal("no", luablk.recovery(ENCODE + REISSUE))
		assert.equal("yes", luablk.recovery(RECOVERY + ENCODE))
		assert.equal("reissue", luablk.recovery(RECOVERY + REISSUE))
		assert.equal("fail-io", luablk.recovery(RECOVERY + FAIL_IO))
		assert.equal("fail-io,reissue", luablk.recovery(RECOVERY + REISSUE + FAIL_IO))
	end)
end)

describe("luablk.add's counts", function()
	local luablk = require("luablk")

	it("refuse values their 32-bit fields would wrap", function()
		for key, v in pairs({ max_io = 2 ^ 32 + 4096, queues = 2 ^ 32 + 1, depth = -1, id = 2 ^ 31 }) do
			local ok, err = pcall(luablk.check, { backend = "mem", size = 2 ^ 20, [key] = v })
			assert.is_false(ok, key)
			assert.matches(key .. " must be a whole number", err)
		end
		assert.is_true(luablk.check({ backend = "mem", size = 2 ^ 20, max_io = 2 ^ 20, id = 2 ^ 20 }))
	end)
end)

-- Runs build/luablk with args; returns its stderr lines and exit status.
local function run_cli(args)
	local p = io.popen("{ build/luablk " .. args .. " 2>&1 >/dev/null; echo \"exit $?\"; }")
	local lines = {}
	for line in p:lines() do
		lines[#lines + 1] = line
	end
	p:close()
	local status = tonumber(table.remove(lines):match("^exit (%d+)$"))
	return lines, status
end

describe("luablk add", function()
	it("refuses options the kernel would wrap or reject with one line, before any kernel call", function()
		for args, want in pairs({
			["--max-io 4294971392"] = "^luablk: %-%-max%-io: '4294971392' is too large$",
			["--max-io 2048"] = "^luablk: max IO size must be a multiple of the %d+%-byte page",
			["--reissue --fail-io"] = "^luablk: reissue and fail%-io recovery exclude each other",
			["--io-opt 512M"] = "^luablk: optimal IO size .* to 256 MiB, not 536870912$",
			["--queues 4294967297"] = "^luablk: %-%-queues must be between 1 and 4096",
		}) do
			local lines, status = run_cli("add mem --size 1M " .. args)
			assert.equal(2, status, args)
			assert.equal(1, #lines, args)
			assert.matches(want, lines[1], nil, false, args)
		end
	end)
end)
