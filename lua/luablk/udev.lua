-- `luablk udev-owner NODE`, which etc/97-ublk-device.rules runs as root
-- for every ublk device node udev adds or changes. An unprivileged device
-- is usable only by the user who created it, and only through nodes that
-- user can open: the kernel checks every control command against access
-- to /dev/ublkcN, and the user opens /dev/ublkbN for IO. udev creates both
-- as root's, so this gives them to the device's owner (owner_uid and
-- owner_gid from GET_DEV_INFO2), mode 0600. Nodes of ordinary devices stay
-- as they are.
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

-- "MAJ:MIN" of the kernel's device `name`, or nil once it is gone.
local function kernel_dev(name)
	local class = name:match("^ublkc") and "ublk-char" or "block"
	local text = posix.read_file(("/sys/class/%s/%s/dev"):format(class, name))
	return text and text:match("^%d+:%d+")
end

-- Whether fd is the node of the kernel's device `name` right now.
local function is_node_of(fd, name)
	local st, err = posix.fstat(fd)
	if not st then
		return nil, err
	end
	local kind = name:match("^ublkc") and posix.S_IFCHR or posix.S_IFBLK
	local dev = kernel_dev(name)
	return dev and bit.band(st.mode, posix.S_IFMT) == kind and ("%d:%d"):format(st.rdev_major, st.rdev_minor) == dev
end

local function same_owner(a, b)
	return a.unprivileged and a.owner_uid == b.owner_uid and a.owner_gid == b.owner_gid
end

local function set_owner(fd, uid, gid)
	-- Owner access only: the kernel checks control commands against
	-- access to /dev/ublkcN, so a group bit would let a group in.
	local ok, err = posix.fchmod(fd, tonumber("600", 8))
	if ok then
		ok, err = posix.fchown(fd, uid, gid)
	end
	return ok, err
end

-- Gives node fd (`name`, of device id) to the owner that info, query's
-- first answer, names. The id may have been deleted and taken by another
-- device since that answer, and the node may be the new device's: ask
-- again once the node is given, and give it back to root if id names
-- anything else now.
local function hand_over(fd, name, id, info, query)
	local ok, err = is_node_of(fd, name)
	if not ok then
		return err == nil, err -- gone, or not the kernel's node: leave it
	end
	ok, err = set_owner(fd, info.owner_uid, info.owner_gid)
	if not ok then
		return nil, err
	end
	local now = query(id)
	if now and same_owner(now, info) then
		return true
	end
	return set_owner(fd, 0, 0)
end

-- Returns true, or nil, message, exit code. query (luablk.query unless
-- given) answers what the kernel says about a device id.
function M.owner(argv, query)
	if #argv ~= 1 then
		return nil, "udev-owner needs one NODE (ublkcN, ublkbN or its /dev path)", 2
	end
	local name, id = M.parse(argv[1])
	if not name then
		return nil, ("udev-owner: '%s' is not a ublk device node"):format(argv[1]), 2
	end
	query = query or require("luablk").query
	local info, err, e = query(id)
	if not info then
		if e == errno.ENODEV then
			return true -- deleted since udev saw it
		end
		return nil, (err:gsub("^E%u+: ", "")), 1
	end
	if not info.unprivileged then
		return true
	end
	local fd
	fd, err, e = posix.open("/dev/" .. name, posix.O_PATH + posix.O_NOFOLLOW)
	if not fd then
		if e == errno.ENOENT then
			return true
		end
		return nil, (err:gsub("^E%u+: ", "")), 1
	end
	local ok
	ok, err = hand_over(fd, name, id, info, query)
	posix.close(fd)
	if not ok then
		return nil, (err:gsub("^E%u+: ", "")), 1
	end
	return true
end

return M
