-- Stands in for udevd, which the VM does not run: applies the RUN rules of
-- a udev rules file to ublk device nodes as they appear, as udevd does for
-- their "add" events. The unprivileged-device spec runs it as root, so that
-- what it tests is the shipped rule, not a copy of the rule's logic.
--
--   luablk run spec/kernel/udev_emulator.lua RULES_FILE LUABLK_BIN
--
-- A RUN program whose path ends in /luablk runs LUABLK_BIN instead (the
-- build under test, not an installed copy). Failures go to stderr.
local luablk = require("luablk")
local posix = require("luablk.posix")

local M = {}

-- A udev glob ("ublk[bc][0-9]*", alternatives joined by "|") as a Lua
-- pattern list; [...] sets are the same in both.
local function glob(value)
	local alts = {}
	for alt in (value .. "|"):gmatch("([^|]*)|") do
		local out, i = { "^" }, 1
		while i <= #alt do
			local ch = alt:sub(i, i)
			if ch == "[" then
				local close = assert(alt:find("]", i + 1, true), "unclosed [ in " .. value)
				out[#out + 1] = alt:sub(i, close)
				i = close
			elseif ch == "*" then
				out[#out + 1] = ".*"
			elseif ch == "?" then
				out[#out + 1] = "."
			else
				out[#out + 1] = ch:gsub("%p", "%%%0")
			end
			i = i + 1
		end
		alts[#alts + 1] = table.concat(out) .. "$"
	end
	return alts
end

local function matches(alts, s)
	for _, p in ipairs(alts) do
		if s:match(p) then
			return true
		end
	end
	return false
end

-- Each rule line as { matches = {{key, op, patterns}}, run = {program} }.
function M.parse(text)
	local rules = {}
	for line in text:gmatch("[^\n]+") do
		if not line:match("^%s*#") then
			local rule = { matches = {}, run = {} }
			for key, op, value in line:gmatch('([%u_]+)%s*([!=+:]?=)%s*"([^"]*)"') do
				if op == "==" or op == "!=" then
					rule.matches[#rule.matches + 1] = { key, op, glob(value) }
				elseif key == "RUN" then
					rule.run[#rule.run + 1] = value
				end
			end
			rules[#rules + 1] = rule
		end
	end
	return rules
end

-- The programs the rules run for an event on the node `name`.
function M.programs(rules, action, name)
	local props = { ACTION = action, KERNEL = name }
	local out = {}
	for _, rule in ipairs(rules) do
		local ok = true
		for _, m in ipairs(rule.matches) do
			local key, op, alts = m[1], m[2], m[3]
			local v = props[key]
			if v == nil or matches(alts, v) ~= (op == "==") then
				ok = false
			end
		end
		for _, prog in ipairs(ok and rule.run or {}) do
			out[#out + 1] = (prog:gsub("%%k", name):gsub("%$kernel", name):gsub("%$devnode", "/dev/" .. name))
		end
	end
	return out
end

local function run(prog, bin)
	local argv = {}
	for w in prog:gmatch("%S+") do
		argv[#argv + 1] = w
	end
	if argv[1]:match("/luablk$") then
		argv[1] = bin
	end
	local status, err = luablk.execute(argv)
	if status ~= 0 then
		io.stderr:write(("udev-emulator: %s exited %s %s\n"):format(prog, tostring(status), err or ""))
	end
end

local function serve(rules_file, bin)
	local rules = M.parse(assert(posix.read_file(rules_file)))
	local seen = {}
	while true do
		local present = {}
		for _, id in ipairs(assert(luablk.list())) do
			for _, kind in ipairs({ "c", "b" }) do
				local name = ("ublk%s%d"):format(kind, id)
				if posix.exists("/dev/" .. name) then
					present[name] = true
					if not seen[name] then
						for _, prog in ipairs(M.programs(rules, "add", name)) do
							run(prog, bin)
						end
					end
				end
			end
		end
		seen = present
		luablk.sleep(0.02)
	end
end

if arg and arg[0] and arg[0]:match("udev_emulator%.lua$") then
	serve(arg[1], arg[2])
end

return M
