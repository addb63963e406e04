-- Reload requests from other processes. `luablk reload ID` leaves a
-- request file in the device's publish directory (core/publish.c) and
-- sends SIGHUP to the serving process; that process (cli.lua's add loop)
-- reloads and answers in a result file next to it, with the request's
-- nonce. A bare SIGHUP, with no request waiting, reloads the current
-- backend from disk. Client and server are the same user: the directory
-- is that user's alone, and nobody writes into another user's.
local ffi = require("ffi")
local cjson = require("cjson")
local posix = require("luablk.posix")

local M = {}

local SIGHUP = 1

-- Writes text to path all at once: a reader never sees half of it. The
-- file is created new (never through a link), then renamed into place.
local function put(path, text)
	local tmp = path .. ".tmp"
	os.remove(tmp)
	local ok, err = posix.write_new(tmp, text)
	if not ok then
		return nil, err
	end
	return os.rename(tmp, path)
end

local function alive(pid)
	return ffi.C.kill(pid, 0) == 0
end

-- 16 hex digits from the kernel's random pool: a request's answer must
-- carry them, so an answer left over from an earlier client is ignored.
local function nonce()
	local f = assert(io.open("/dev/urandom", "rb"))
	local bytes = f:read(8)
	f:close()
	return (bytes:gsub(".", function(c)
		return ("%02x"):format(c:byte())
	end))
end

-- The publish directory of the luablk server of device info, checked to
-- be this user's own and to name the server the kernel reports; or nil,
-- message. Requests are files there: never in another user's directory.
local function server_dir(info)
	local luablk = require("luablk")
	local id = info.id
	if info.pid <= 0 or info.state ~= "live" or not alive(info.pid) then
		return nil, ("device %d has no server running"):format(id)
	end
	if info.owner_uid ~= posix.geteuid() then
		return nil,
			("device %d belongs to user %d: reload it as that user (e.g. runuser -u USER -- luablk reload %d)"):format(
				id,
				info.owner_uid,
				id
			)
	end
	local dir = luablk.publish_dir(id)
	local pid = dir and tonumber(posix.read_file(dir .. "/pid") or "")
	if pid ~= info.pid then
		return nil, ("device %d is not served by luablk (process %d serves it)"):format(id, info.pid)
	end
	return dir
end

-- A backend path is resolved here, in the client's directory, not in the
-- server's; a name (or nil, the current backend) is passed on as it is.
local function resolve(spec)
	if not (spec and (spec:find("/", 1, true) or spec:match("%.lua$"))) then
		return true, spec
	end
	local path, err = posix.realpath(spec)
	if not path then
		return nil, ("backend %s: %s"):format(spec, (tostring(err):gsub("^E%u+: [^:]*: ", "")))
	end
	return true, path
end

-- Waits for the answer at path that carries tag; the table, or nil if
-- none came by deadline or the server exited (then also a message).
local function answer(path, tag, info, deadline)
	local luablk = require("luablk")
	while luablk.now() < deadline do
		local text = posix.read_file(path)
		if text then
			os.remove(path)
			local okj, res = pcall(cjson.decode, text)
			if okj and type(res) == "table" and res.nonce == tag then
				return res
			end
		end
		if not alive(info.pid) then
			return nil, ("server %d of device %d exited before answering"):format(info.pid, info.id)
		end
		luablk.sleep(0.02)
	end
	return nil
end

-- Asks the process serving device id to reload. spec: a backend name or
-- path, or nil for the current one; args: a list of strings, or nil to
-- keep the current ones. With size, it asks for a resize to size bytes
-- instead (the current backend, reloaded at that size). Waits up to
-- timeout_s (default 60) for the answer. Returns true, or nil and a
-- message.
function M.request(id, spec, args, timeout_s, size)
	local luablk = require("luablk")
	local info, err = luablk.query(id)
	if not info then
		return nil, err
	end
	local dir, ok, backend
	dir, err = server_dir(info)
	if not dir then
		return nil, err
	end
	ok, backend = resolve(spec)
	if not ok then
		return nil, backend
	end
	local tag = nonce()
	local base = ("%s/reload-%d-%s"):format(dir, ffi.C.getpid(), tag)
	local request = { backend = backend, nonce = tag, size = size }
	if args then
		request.args = #args > 0 and args or nil
		request.keep_args = false
	end
	ok, err = put(base .. ".req", cjson.encode(request))
	if not ok then
		return nil, ("cannot write the request: %s"):format(err)
	end
	if ffi.C.kill(info.pid, SIGHUP) ~= 0 then
		os.remove(base .. ".req")
		return nil, ("cannot signal server %d of device %d"):format(info.pid, id)
	end
	local res
	res, err = answer(base .. ".res", tag, info, luablk.now() + (timeout_s or 60))
	if res then
		return res.ok == true or nil, not res.ok and tostring(res.error) or nil
	end
	os.remove(base .. ".req")
	return nil, err or ("no answer from server %d of device %d within %d s"):format(info.pid, id, timeout_s or 60)
end

-- The requests waiting for device id in this process's own publish
-- directory, oldest first by name; each is { reply, nonce, backend, args }
-- with args nil to keep the current ones.
local function pending(id)
	local dir = require("luablk").publish_dir(id)
	local out = {}
	for _, name in ipairs(dir and posix.list_dir(dir) or {}) do
		local base = name:match("^(reload%-%d+%-%x+)%.req$")
		if base then
			local text = posix.read_file(dir .. "/" .. name)
			os.remove(dir .. "/" .. name)
			local ok, req = pcall(cjson.decode, text or "")
			local r = { reply = dir .. "/" .. base .. ".res" }
			if ok and type(req) == "table" then
				r.nonce = type(req.nonce) == "string" and req.nonce or nil
				r.backend = type(req.backend) == "string" and req.backend or nil
				if req.size ~= nil then
					local n = req.size
					r.size = type(n) == "number" and n > 0 and n % 1 == 0 and n or nil
					r.bad = r.size == nil
				end
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
		elseif r.size then
			ok, err = dev:resize(r.size)
		else
			ok, err = dev:reload({ backend = r.backend, args = r.args })
		end
		if ok and r.size then
			log(("resized to %d bytes"):format(r.size))
		elseif ok then
			log(("reloaded %s"):format(r.backend or "the backend"))
		elseif r.size then
			err = tostring(err):gsub("^E%u+: ", "")
			log(("resize failed, the device keeps its size: %s"):format(err))
		else
			err = tostring(err):gsub("^E%u+: ", "")
			log(("reload failed, the old backend serves on: %s"):format(err))
		end
		if r.reply then
			put(r.reply, cjson.encode({ ok = ok == true, error = err, nonce = r.nonce }))
		end
	end
end

return M
