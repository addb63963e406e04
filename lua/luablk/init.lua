-- luablk's Lua API: FFI bindings to the C core plus a small object layer.
--
-- Runtime failures return nil, "ENAME: message", errno; misuse raises an
-- error. Inside the luablk binary the core is reached through ffi.C; from a
-- plain LuaJIT (busted, embedding) it is loaded from build/libluablk.so or
-- $LUABLK_LIB.
local ffi = require("ffi")
local errno = require("luablk.errno")
local params = require("luablk.params")

local M = {}

local here = debug.getinfo(1, "S").source:match("^@(.*)/luablk/init%.lua$") or "."

local function read_file(path)
	local f = io.open(path, "rb")
	if not f then
		return nil
	end
	local text = f:read("*a")
	f:close()
	return text
end

-- The embedded header when the core hosts us, else the source or installed copy.
local function header_text()
	local embedded = package.loaded["luablk.cdef"]
	if type(embedded) == "string" then
		return embedded
	end
	for _, path in ipairs({ here .. "/../core/luablk_ffi.h", here .. "/../../../include/luablk_ffi.h" }) do
		local text = read_file(path)
		if text then
			return text
		end
	end
	error("luablk: cannot find luablk_ffi.h next to " .. here)
end

ffi.cdef(header_text())

local function in_process()
	return pcall(function()
		return ffi.C.luablk_version
	end)
end

local function load_library()
	if in_process() then
		return ffi.C
	end
	local path = os.getenv("LUABLK_LIB") or (here .. "/../build/libluablk.so")
	local ok, lib = pcall(ffi.load, path)
	if not ok then
		error("luablk: cannot load the C library (" .. path .. "); build it with make, or set LUABLK_LIB")
	end
	lib.luablk_set_lua_dir(here)
	return lib
end

local C = load_library()
M.C = C

if C.luablk_version() ~= C.LUABLK_ABI_VERSION then
	error(("luablk: the C library has ABI %d but these Lua modules expect %d"):format(
		C.luablk_version(),
		C.LUABLK_ABI_VERSION
	))
end

-- nil, "ENAME: last error text", errno for a -errno result.
local function failure(rc)
	local e = -rc
	local msg = ffi.string(C.luablk_last_error())
	if msg == "" then
		msg = ffi.string(ffi.C.strerror(e))
	end
	return nil, errno.name(e) .. ": " .. msg, e
end
M.failure = failure

ffi.cdef("char *strerror(int errnum);")

local Device = {}
Device.__index = Device
M.Device = Device

-- A const char *[] holding list's strings (nil-terminated). Keep the
-- returned cdata alive while C uses it: it anchors the strings too.
function M.cstrings(list)
	list = list or {}
	local arr = ffi.new("const char *[?]", #list + 1)
	local keep = {}
	for i, a in ipairs(list) do
		keep[i] = tostring(a)
		arr[i - 1] = keep[i]
	end
	return arr, keep
end

-- The LUABLK_F_* crash recovery bits that opts ask for.
local RECOVERY_FLAGS = {
	recoverable = C.LUABLK_F_RECOVERABLE,
	reissue = C.LUABLK_F_REISSUE,
	fail_io = C.LUABLK_F_FAIL_IO,
}
local function recovery_flags(opts)
	local flags = 0
	for opt, flag in pairs(RECOVERY_FLAGS) do
		if opts[opt] then
			flags = bit.bor(flags, flag)
		end
	end
	return flags
end

-- opts[key], nil or a whole number within [lo, hi]: the C field would
-- silently wrap a larger one (2^32 + 4096 becomes 4096).
local function whole(opts, key, lo, hi)
	local v = opts[key]
	if v ~= nil and (type(v) ~= "number" or v < lo or v > hi or v % 1 ~= 0) then
		error(("luablk.add: %s must be a whole number from %d to %d, not %s"):format(key, lo, hi, tostring(v)), 4)
	end
	return v
end

-- Fills a struct luablk_config from a table; returns the cdata and the
-- Lua values that must stay alive while C holds pointers into them.
local function make_config(opts)
	local cfg = ffi.new("struct luablk_config")
	C.luablk_config_init(cfg)
	if type(opts.backend) ~= "string" then
		error("luablk.add: backend must be a name or a path", 3)
	end
	cfg.backend = opts.backend
	local size = opts.size or 0
	if type(size) ~= "number" or size ~= size or size < 0 or size % 1 ~= 0 then
		error("luablk.add: size must be a whole number of bytes", 3)
	end
	cfg.size = size
	cfg.queues = whole(opts, "queues", 0, 2 ^ 32 - 1) or cfg.queues
	cfg.depth = whole(opts, "depth", 0, 2 ^ 32 - 1) or cfg.depth
	cfg.max_io = whole(opts, "max_io", 0, 2 ^ 32 - 1) or cfg.max_io
	cfg.dev_id = whole(opts, "id", 0, 2 ^ 31 - 1) or -1
	local timeout = opts.io_timeout
	if timeout ~= nil and (type(timeout) ~= "number" or not (timeout >= 0.001 and timeout <= 86400)) then
		error("luablk.add: io_timeout must be a number of seconds from 0.001 to 86400", 3)
	end
	cfg.io_timeout_ms = timeout and math.ceil(timeout * 1000) or 0
	local flag_opts = {
		no_pin = C.LUABLK_F_NO_PIN,
		no_part_scan = C.LUABLK_F_NO_PART_SCAN,
		takeover = C.LUABLK_F_TAKEOVER,
		unprivileged = C.LUABLK_F_UNPRIVILEGED,
		user_copy = C.LUABLK_F_USER_COPY,
	}
	for opt, flag in pairs(flag_opts) do
		if opts[opt] then
			cfg.flags = bit.bor(cfg.flags, flag)
		end
	end
	cfg.flags = bit.bor(cfg.flags, recovery_flags(opts))
	local given = opts
	if opts.block_size ~= nil then
		if opts.logical_block ~= nil and opts.logical_block ~= opts.block_size then
			error("luablk.add: block_size and logical_block differ (block_size is the older name)", 3)
		end
		given = setmetatable({ logical_block = opts.block_size }, { __index = opts })
	end
	local ok, err = pcall(params.fill, cfg.params, given, "luablk.add")
	if not ok then
		error(err, 3)
	end
	local argv, filters = M.cstrings(opts.args), M.cstrings(opts.filters)
	cfg.args, cfg.argc = argv, #(opts.args or {})
	cfg.filters, cfg.nfilters = filters, #(opts.filters or {})
	return cfg, { argv, filters, opts.backend }
end

-- Runs make(out), a core call that stores a new device in out[0]; returns
-- it as a Device, or nil, message, errno.
local function construct(make)
	local out = ffi.new("struct luablk_dev *[1]")
	local rc = make(out)
	if rc < 0 then
		return failure(rc)
	end
	return setmetatable({ ptr = out[0] }, Device)
end

-- Creates and starts a device. opts: backend, size (bytes; nil or 0 for
-- the backend's own size, as an nbd export has), and optional
-- queues, depth, max_io, id, no_pin, no_part_scan, user_copy, unprivileged,
-- io_timeout (seconds; async backends), recoverable, reissue, fail_io, args (list of strings), filters (list of
-- "NAME:k=v,..." strings), and the block parameters of luablk.params
-- (logical_block, alias block_size, ..., read_only, rotational,
-- write_cache, fua: true/false to force, nil for the backend's default).
-- Returns a Device, or nil, message, errno.
function M.add(opts)
	local cfg, anchor = make_config(opts)
	return construct(function(out)
		local _ = anchor
		return C.luablk_dev_new(cfg, out)
	end)
end

-- Starts serving device opts.id, a recoverable device whose server died
-- (see luablk_dev_recover). opts: id, backend, and optional args,
-- filters, no_pin, takeover (replace a running server, LUABLK_F_TAKEOVER);
-- the size, queues and the rest are the device's own.
-- Returns a Device, or nil, message, errno.
function M.recover(opts)
	if type(opts.id) ~= "number" or opts.id < 0 or opts.id % 1 ~= 0 then
		error("luablk.recover: id must be a device number", 2)
	end
	local o = {}
	for k, v in pairs(opts) do
		o[k] = v
	end
	o.size = 0 -- taken from the kernel
	local cfg, anchor = make_config(o)
	return construct(function(out)
		local _ = anchor
		return C.luablk_dev_recover(cfg, opts.id, out)
	end)
end

-- Checks opts as luablk.add would, without creating anything.
function M.check(opts)
	local cfg = make_config(opts)
	local rc = C.luablk_config_check(cfg)
	if rc < 0 then
		return failure(rc)
	end
	return true
end

M.UBLK_F_UNPRIVILEGED_DEV = 32

M.STATE_NAMES = { [0] = "dead", "live", "quiesced", "fail-io" }

-- How a device behaves when its server dies, from its UBLK_F_* flags:
-- "no" (it is stopped), "yes" (IO waits for a new server; IO the dead
-- server held fails), "reissue" (that IO is reissued too), "fail-io"
-- (IO fails until a new server runs).
function M.recovery(flags)
	local f = {}
	for _, n in ipairs(M.feature_names(flags)) do
		f[n] = true
	end
	if not f.user_recovery then
		return "no"
	end
	local extra = {}
	if f.user_recovery_fail_io then
		extra[#extra + 1] = "fail-io"
	end
	if f.user_recovery_reissue then
		extra[#extra + 1] = "reissue"
	end
	return #extra > 0 and table.concat(extra, ",") or "yes"
end

local function info_table(i)
	return {
		id = i.id,
		pid = i.pid,
		state = M.STATE_NAMES[i.state] or tostring(i.state),
		recovery = M.recovery(tonumber(i.flags)),
		queues = i.queues,
		depth = i.depth,
		max_io = i.max_io,
		block_size = i.block_size,
		size = tonumber(i.size),
		flags = tonumber(i.flags),
		path = "/dev/ublkb" .. i.id,
		unprivileged = bit.band(tonumber(i.flags), M.UBLK_F_UNPRIVILEGED_DEV) ~= 0,
		owner_uid = tonumber(i.owner_uid),
		owner_gid = tonumber(i.owner_gid),
	}
end

function Device:id()
	return C.luablk_dev_id(self.ptr)
end

function Device:path()
	return "/dev/ublkb" .. self:id()
end

function Device:info()
	local i = ffi.new("struct luablk_dev_info")
	C.luablk_dev_info(self.ptr, i)
	return info_table(i)
end

-- The device's effective block parameters (see luablk.params): sizes in
-- bytes, read_only, rotational, write_cache and fua as booleans.
function Device:params()
	return params.effective(C, self.ptr)
end

-- The shared region `name` as a uint8_t pointer plus its size; size 0 or
-- nil looks up an existing region.
function Device:shared(name, size)
	local p = ffi.new("void *[1]")
	local sz = ffi.new("uint64_t[1]")
	local rc = C.luablk_dev_shared(self.ptr, name, size or 0, p, sz)
	if rc < 0 then
		return failure(rc)
	end
	return ffi.cast("uint8_t *", p[0]), tonumber(sz[0])
end

-- Waits for SIGINT/SIGTERM/SIGHUP (blocked with luablk.block_signals) or
-- for the device to stop on its own. Returns the signal number or 0.
function Device:wait(timeout_ms)
	local rc = C.luablk_dev_wait(self.ptr, timeout_ms or -1)
	if rc < 0 then
		return failure(rc)
	end
	return rc
end

-- Swaps the backend in every queue while the device serves (see
-- luablk_dev_reload). opts.backend: a name or path (default: the current
-- one, read from disk again); opts.args: a list of strings (default: the
-- current ones). Returns true, or nil, message, errno with the old
-- backend still serving.
function Device:reload(opts)
	opts = opts or {}
	local argv = opts.args and M.cstrings(opts.args)
	local rc = C.luablk_dev_reload(self.ptr, opts.backend, argv, opts.args and #opts.args or -1)
	if rc < 0 then
		return failure(rc)
	end
	return true
end

-- Whether a new server took the device over (luablk_dev_handed_over):
-- its queues stopped, and closing it leaves it to that server.
function Device:handed_over()
	return C.luablk_dev_handed_over(self.ptr) == 1
end

-- Changes the device's size to size bytes (see luablk_dev_resize): the
-- backend is reloaded at the new size. Returns true, or nil, message,
-- errno with the old size and backend still serving.
function Device:resize(size)
	if type(size) ~= "number" or size < 0 or size % 1 ~= 0 then
		error("resize: size must be a whole number of bytes", 2)
	end
	local rc = C.luablk_dev_resize(self.ptr, size)
	if rc < 0 then
		return failure(rc)
	end
	return true
end

-- Tears the device down. opts.async uses DEL_DEV_ASYNC; opts.give_up lets
-- a SIGINT or SIGTERM give up on a backend call that never returns (see
-- luablk_dev_close). Closing twice is a no-op.
function Device:close(opts)
	if not self.ptr then
		return true
	end
	local ptr = self.ptr
	self.ptr = nil
	opts = opts or {}
	local flags = bit.bor(opts.async and C.LUABLK_CLOSE_ASYNC or 0, opts.give_up and C.LUABLK_CLOSE_GIVE_UP or 0)
	local rc = C.luablk_dev_close(ptr, flags)
	if rc < 0 then
		return failure(rc)
	end
	return true
end

function M.block_signals()
	C.luablk_signals_block()
end

-- Ids of the ublk devices on this machine, sorted.
function M.list()
	local max = 4096
	local ids = ffi.new("int[?]", max)
	local n = C.luablk_list(ids, max)
	if n < 0 then
		return failure(n)
	end
	local out = {}
	for i = 0, math.min(n, max) - 1 do
		out[#out + 1] = ids[i]
	end
	return out
end

-- What the kernel reports about device `id`, as a table.
function M.query(id)
	local i = ffi.new("struct luablk_dev_info")
	local rc = C.luablk_query(id, i)
	if rc < 0 then
		return failure(rc)
	end
	return info_table(i)
end

-- Deletes device id; async: DEL_DEV_ASYNC; safe: refuse (EBUSY) while the
-- device is in use (TRY_STOP_DEV, Linux 7.0+).
function M.delete(id, async, safe)
	local flags = (async and C.LUABLK_DEL_ASYNC or 0) + (safe and C.LUABLK_DEL_SAFE or 0)
	local rc = C.luablk_delete(id, flags)
	if rc < 0 then
		return failure(rc)
	end
	return true
end

M.FEATURE_NAMES = {
	[0] = "zero_copy",
	"uring_cmd_comp_in_task",
	"need_get_data",
	"user_recovery",
	"user_recovery_reissue",
	"unprivileged_dev",
	"cmd_ioctl_encode",
	"user_copy",
	"zoned",
	"user_recovery_fail_io",
	"update_size",
	"auto_buf_reg",
	"quiesce",
	"per_io_daemon",
	"buf_reg_off_daemon",
	"batch_io",
	"integrity",
	"safe_stop_dev",
	"no_auto_part_scan",
	"shmem_zc",
	"io_desc_size",
}

-- Names of the UBLK_F_* bits set in a flags number.
function M.feature_names(flags)
	local out = {}
	for b = 0, 63 do
		if flags % 2 == 1 then
			out[#out + 1] = M.FEATURE_NAMES[b] or ("bit" .. b)
		end
		flags = math.floor(flags / 2)
		if flags == 0 then
			break
		end
	end
	return out
end

-- The kernel's supported features: a list of names and the raw bits.
function M.features()
	local f = ffi.new("uint64_t[1]")
	local rc = C.luablk_features(f)
	if rc < 0 then
		return failure(rc)
	end
	return M.feature_names(tonumber(f[0])), tonumber(f[0])
end

-- Starts argv with plain fork()+exec (see luablk_spawn). opts.stdin,
-- opts.stdout, opts.stderr are fds. Returns the pid.
function M.spawn(argv, opts)
	opts = opts or {}
	local cargv = ffi.new("const char *[?]", #argv + 1)
	for i, a in ipairs(argv) do
		cargv[i - 1] = tostring(a)
	end
	local pid = C.luablk_spawn(cargv, opts.stdin or -1, opts.stdout or -1, opts.stderr or -1)
	if pid < 0 then
		return failure(pid)
	end
	return pid
end

-- Plain fork(): the child pid, or 0 in the child. Children of a serving
-- process run IO against its devices; they end with luablk.exit().
function M.fork()
	local pid = C.luablk_fork()
	if pid < 0 then
		return failure(pid)
	end
	return pid
end

-- Ends the process at once (no Lua or C cleanup), for forked children.
function M.exit(code)
	io.stdout:flush()
	io.stderr:flush()
	C.luablk_exit(code or 0)
end

-- Monotonic time in seconds (a double, nanosecond resolution).
function M.now()
	return tonumber(C.luablk_now_ns()) / 1e9
end

function M.sleep(seconds)
	C.luablk_sleep_ns(seconds * 1e9)
end

-- Maps region `name` of device `id` (served by any process); returns a
-- uint8_t pointer and the size. Unmap with luablk.unmap(ptr, size).
function M.shared_open(id, name)
	local p = ffi.new("void *[1]")
	local sz = ffi.new("uint64_t[1]")
	local rc = C.luablk_shared_open(id, name, p, sz)
	if rc < 0 then
		return failure(rc)
	end
	return ffi.cast("uint8_t *", p[0]), tonumber(sz[0])
end

-- The directory where this process publishes device id, or nil, message
-- when it does not exist or is not this user's alone (core/publish.c).
function M.publish_dir(id)
	local buf = ffi.new("char[4096]")
	local rc = C.luablk_publish_dir(id, buf, 4096)
	if rc < 0 then
		return nil, ("no publish directory for device %d (%s)"):format(id, ffi.string(buf))
	end
	return ffi.string(buf)
end

function M.unmap(ptr, size)
	C.luablk_shared_unmap(ptr, size)
end

function M.wait(pid)
	local rc = C.luablk_wait(pid)
	if rc < 0 then
		return failure(rc)
	end
	return rc
end

-- Runs argv to completion; returns its exit status (127: not found).
function M.execute(argv, opts)
	local pid, err, e = M.spawn(argv, opts)
	if not pid then
		return nil, err, e
	end
	return M.wait(pid)
end

return M
