-- Reload requests from other processes. `luablk reload ID` leaves a
-- request file in the device's publish directory and sends SIGHUP
-- to the serving process; that process (cli.lua's add loop) reloads and
-- answers in a result file next to it. A bare SIGHUP, with no request
-- waiting, reloads the current backend from disk.
local ffi = require("ffi")
local cjson = require("cjson")
local posix = require("luablk.posix")

local M = {}

local SIGHUP = 1

-- The device's publish directory (core/shared.c): /run/luablk/ID, or
-- $XDG_RUNTIME_DIR/luablk/ID for a server that is not root.
local function dir_of(id)
	local dir = ("/run/luablk/%d"):format(id)
	local xdg = os.getenv("XDG_RUNTIME_DIR")
	if not posix.exists(dir) and xdg and xdg:sub(1, 1) == "/" then
		local user = ("%s/luablk/%d"):format(xdg, id)
		if posix.exists(user) then
			return user
		end
	end
	return dir
end

-- Writes text to path all at once: a reader never sees half of it.
local function put(path, text)
	local tmp = path .. ".tmp"
	local f, err = io.open(tmp, "w")
	if not f then
		return nil, err
	end
	f:write(text)
	f:close()
	return os.rename(tmp, path)
end

local function alive(pid)
	return ffi.C.kill(pid, 0) == 0
end

-- Asks the process serving device id to reload. spec: a backend name or
-- path, or nil for the current one; args: a list of strings, or nil to
-- keep the current ones. Waits up to timeout_s (default 60) for the
-- answer. Returns true, or nil and a message.
function M.request(id, spec, args, timeout_s)
	local luablk = require("luablk")
	local info, err = luablk.query(id)
	if not info then
		return nil, err
	end
	local dir = dir_of(id)
	if info.pid <= 0 or not alive(info.pid) then
		return nil, ("device %d has no server running"):format(id)
	end
	if not posix.exists(dir) then
		return nil, ("device %d is not served by luablk (no %s)"):format(id, dir)
	end
	local base = ("%s/reload-%d"):format(dir, ffi.C.getpid())
	local request = { backend = spec }
	if args then
		request.args = #args > 0 and args or nil
		request.keep_args = false
	end
	local ok
	ok, err = put(base .. ".req", cjson.encode(request))
	if not ok then
		return nil, ("cannot write the request: %s"):format(err)
	end
	if ffi.C.kill(info.pid, SIGHUP) ~= 0 then
		os.remove(base .. ".req")
		return nil, ("cannot signal server %d of device %d"):format(info.pid, id)
	end
	local deadline = luablk.now() + (timeout_s or 60)
	while luablk.now() < deadline do
		local text = posix.read_file(base .. ".res")
		if text then
			os.remove(base .. ".res")
			local okj, res = pcall(cjson.decode, text)
			if not okj or type(res) ~= "table" then
				return nil, "unreadable answer from the server"
			end
			if res.ok then
				return true
			end
			return nil, tostring(res.error)
		end
		if not alive(info.pid) then
			return nil, ("server %d of device %d exited before answering"):format(info.pid, id)
		end
		luablk.sleep(0.02)
	end
	os.remove(base .. ".req")
	return nil, ("no answer from server %d of device %d within %d s"):format(info.pid, id, timeout_s or 60)
end

-- The requests waiting for device id, oldest first by name; each is
-- { path, reply, backend, args } with args nil to keep the current ones.
local function pending(id)
	local dir = dir_of(id)
	local out = {}
	for _, name in ipairs(posix.list_dir(dir) or {}) do
		local base = name:match("^(reload%-%d+)%.req$")
		if base then
			local text = posix.read_file(dir .. "/" .. name)
			os.remove(dir .. "/" .. name)
			local ok, req = pcall(cjson.decode, text or "")
			local r = { reply = dir .. "/" .. base .. ".res" }
			if ok and type(req) == "table" then
				r.backend = type(req.backend) == "string" and req.backend or nil
				if req.keep_args == false then
					r.args = type(req.args) == "table" and req.args or {}
				end
			else
				r.bad = true
			end
			out[#out + 1] = r
		end
	end
	return out
end

-- Serves what a SIGHUP asks of dev: each waiting request, or else a
-- reload of the current backend. log(text) reports each outcome.
function M.serve(dev, log)
	local reqs = pending(dev:id())
	if #reqs == 0 then
		reqs[1] = {}
	end
	for _, r in ipairs(reqs) do
		local ok, err
		if r.bad then
			ok, err = nil, "malformed reload request"
		else
			ok, err = dev:reload({ backend = r.backend, args = r.args })
		end
		if ok then
			log(("reloaded %s"):format(r.backend or "the backend"))
		else
			err = tostring(err):gsub("^E%u+: ", "")
			log(("reload failed, the old backend serves on: %s"):format(err))
		end
		if r.reply then
			put(r.reply, cjson.encode({ ok = ok == true, error = err }))
		end
	end
end

return M
