-- Command-line parsing for the luablk tool: sizes and --flag VALUE lists.
-- Everything returns nil, message on bad input, so the CLI can print one
-- line and exit non-zero.
local M = {}

local UNITS = { [""] = 1, K = 2 ^ 10, M = 2 ^ 20, G = 2 ^ 30, T = 2 ^ 40, P = 2 ^ 50 }

-- "4096", "64K", "1M", "2GiB", "1g" -> bytes (binary units).
function M.size(s)
	if type(s) ~= "string" then
		return nil, "missing size"
	end
	local digits, unit, suffix = s:match("^(%d+)([KkMmGgTtPp]?)(%a*)$")
	suffix = suffix and suffix:lower()
	if not digits or not (suffix == "" or suffix == "b" or (unit ~= "" and suffix == "ib")) then
		return nil, ("bad size '%s' (use bytes or K, M, G, T suffixes)"):format(s)
	end
	local n = tonumber(digits) * UNITS[unit:upper()]
	if n >= 2 ^ 53 then
		return nil, ("size '%s' is too large"):format(s)
	end
	return n
end

-- A whole number within [lo, hi].
function M.integer(s, what, lo, hi)
	local n = tonumber(s)
	if not n or n % 1 ~= 0 or not s:match("^%-?%d+$") then
		return nil, ("%s must be a whole number, not '%s'"):format(what, tostring(s))
	end
	if n < lo or n > hi then
		return nil, ("%s must be between %d and %d, not %d"):format(what, lo, hi, n)
	end
	return n
end

-- A number of seconds ("5", "0.25") within [lo, hi].
function M.seconds(s, what, lo, hi)
	local n = type(s) == "string" and s:match("^%d*%.?%d+$") and tonumber(s)
	if not n then
		return nil, ("%s takes a number of seconds, not '%s'"):format(what, tostring(s))
	end
	if n < lo or n > hi then
		return nil, ("%s must be between %g and %g seconds, not %s"):format(what, lo, hi, s)
	end
	return n
end

local BOOLS = { on = true, yes = true, ["true"] = true, ["1"] = true }
for _, w in ipairs({ "off", "no", "false", "0" }) do
	BOOLS[w] = false
end

-- "on"/"off" and friends -> true/false.
function M.boolean(s, what)
	local v = BOOLS[s:lower()]
	if v == nil then
		return nil, ("%s takes on or off, not '%s'"):format(what, s)
	end
	return v
end

-- Parses argv (a list) against spec, a table of option name -> kind,
-- where kind is "flag", "bool" (--name for on, --name=off to force off),
-- "value" or "list" (repeatable, collected in order). Stops at "--":
-- what follows goes to `rest`. Returns opts, positional, rest or nil,
-- message.
function M.parse(argv, spec)
	local opts, pos, rest = {}, {}, {}
	local i = 1
	while i <= #argv do
		local a = argv[i]
		if a == "--" then
			for j = i + 1, #argv do
				rest[#rest + 1] = argv[j]
			end
			break
		end
		local name, inline = a:match("^%-%-([%w%-]+)=(.*)$")
		name = name or a:match("^%-%-([%w%-]+)$")
		if name then
			local kind = spec[name]
			if not kind then
				return nil, ("unknown option --%s"):format(name)
			end
			if kind == "flag" then
				if inline then
					return nil, ("--%s takes no value"):format(name)
				end
				opts[name] = true
			elseif kind == "bool" then
				local v = true
				if inline then
					local err
					v, err = M.boolean(inline, "--" .. name)
					if v == nil then
						return nil, err
					end
				end
				opts[name] = v
			else
				local v = inline
				if not v then
					i = i + 1
					v = argv[i]
				end
				if v == nil then
					return nil, ("--%s needs a value"):format(name)
				end
				if kind == "list" then
					opts[name] = opts[name] or {}
					table.insert(opts[name], v)
				else
					opts[name] = v
				end
			end
		elseif a:match("^%-.") and not a:match("^%-%d") then
			return nil, ("unknown option %s"):format(a)
		else
			pos[#pos + 1] = a
		end
		i = i + 1
	end
	return opts, pos, rest
end

return M
