-- `luablk udev-owner NODE`, which etc/97-ublk-device.rules runs as root
-- for every ublk device node udev adds or changes. An unprivileged device
-- is usable only by the user who created it, and only through nodes that
-- user can open: the kernel checks every control command against access
-- to /dev/ublkcN, and the user opens /dev/ublkbN for IO. udev creates both
-- as root's, so this gives them to the device's owner (owner_uid and
-- owner_gid from GET_DEV_INFO2). Nodes of ordinary devices stay as they are.
local errno = require("luablk.errno")
local posix = require("luablk.posix")

local M = {}

-- "ublkc3", "ublkb3", "ublkb3p1" or the same under /dev/ -> the node's
-- name and the device id; nil for anything else.
function M.parse(node)
	local name = node:match("^/dev/([^/]+)$") or node
	local kind, id, part = name:match("^ublk([bc])(%d+)(.*)$")
	if not kind or #id > 7 or not (part == "" or (kind == "b" and part:match("^p%d+$"))) then
		return nil
	end
	return name, tonumber(id)
end

-- Returns true, or nil, message, exit code.
function M.owner(argv)
	if #argv ~= 1 then
		return nil, "udev-owner needs one NODE (ublkcN, ublkbN or its /dev path)", 2
	end
	local name, id = M.parse(argv[1])
	if not name then
		return nil, ("udev-owner: '%s' is not a ublk device node"):format(argv[1]), 2
	end
	local info, err, e = require("luablk").query(id)
	if not info then
		if e == errno.ENODEV then
			return true -- deleted since udev saw it
		end
		return nil, (err:gsub("^E%u+: ", "")), 1
	end
	if not info.unprivileged then
		return true
	end
	local ok
	ok, err, e = posix.lchown("/dev/" .. name, info.owner_uid, info.owner_gid)
	if not ok and e ~= errno.ENOENT then
		return nil, (err:gsub("^E%u+: ", "")), 1
	end
	return true
end

return M
