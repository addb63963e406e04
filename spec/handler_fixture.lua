-- Runs a backend without a kernel: a device that is never added, and one
-- queue's handler, whose own ring stands in for the queue's
-- (luablk_handler_poll). Parking, completions, deadlines and spare buffers
-- then behave exactly as a queue runs them.
local ffi = require("ffi")
local luablk = require("luablk")
local C = luablk.C
local assert = require("luassert")

local M = { READ = 0, WRITE = 1, FLUSH = 2, DISCARD = 3, WRITE_ZEROES = 5 }

-- A device of backend o.backend with args (strings) and its queue 0
-- handler; o: size (bytes, default 1 MiB, 0 for the backend's own),
-- depth, queues, timeout_ms, filters (list of "NAME:k=v" strings).
-- Returns dev, handler; or, with o.fails,
-- the error message that the creation gave.
function M.create(args, o)
	local cfg = ffi.new("struct luablk_config")
	C.luablk_config_init(cfg)
	cfg.backend = o.backend
	cfg.size = o.size or 2 ^ 20
	cfg.depth = o.depth or 8
	cfg.queues = o.queues or 1
	cfg.max_io = o.max_io or 65536
	cfg.io_timeout_ms = o.timeout_ms or 0
	local argv = ffi.new("const char *[?]", #args + 1)
	for i, a in ipairs(args) do
		argv[i - 1] = a
	end
	cfg.args, cfg.argc = argv, #args
	local filters = o.filters or {}
	local flist = ffi.new("const char *[?]", #filters + 1)
	for i, f in ipairs(filters) do
		flist[i - 1] = f
	end
	cfg.filters, cfg.nfilters = flist, #filters
	local out = ffi.new("struct luablk_dev *[1]")
	local rc = C.luablk_dev_create(cfg, out)
	if o.fails then
		assert.is_true(rc < 0, "the device was created")
		return ffi.string(C.luablk_last_error())
	end
	assert.equal(0, rc, ffi.string(C.luablk_last_error()))
	local h = ffi.new("struct luablk_handler *[1]")
	assert.equal(0, C.luablk_handler_new(out[0], 0, h))
	return out[0], h[0]
end

-- Polls until every tag in want has finished; returns tag -> result.
function M.collect(h, want, seconds)
	local turn = C.luablk_handler_turn(h)
	local got, left = {}, 0
	for _ in pairs(want) do
		left = left + 1
	end
	local deadline = luablk.now() + (seconds or 5)
	while left > 0 and luablk.now() < deadline do
		assert(C.luablk_handler_poll(h, 50) >= 0)
		for i = 0, turn.ndone - 1 do
			local d = turn.done[i]
			assert.is_nil(got[d.tag], "tag " .. d.tag .. " finished twice")
			got[d.tag] = d.result
			left = left - 1
		end
	end
	return got
end

-- Starts ios, a list of { op, off, len, tag [, flags] }; returns the
-- batch, whose results say which finished at once.
function M.submit(h, ios)
	local b = C.luablk_handler_batch(h)
	for i, io in ipairs(ios) do
		local e = b[i - 1]
		e.op, e.off, e.len, e.tag, e.flags, e.result = io[1], io[2], io[3], io[4], io[5] or 0, -5
	end
	C.luablk_handler_run(h, #ios)
	return b
end

-- Runs ios and waits for all of them; returns tag -> result.
function M.run(h, ios, seconds)
	local want = {}
	for _, io in ipairs(ios) do
		want[io[4]] = true
	end
	local b = M.submit(h, ios)
	local got = {}
	for i = 0, #ios - 1 do
		if b[i].result ~= C.LUABLK_RESULT_PARKED then
			got[b[i].tag], want[b[i].tag] = b[i].result, nil
		end
	end
	for tag, r in pairs(M.collect(h, want, seconds)) do
		got[tag] = r
	end
	return got
end

function M.free(dev, h)
	C.luablk_handler_free(h)
	C.luablk_dev_close(dev, 0)
end

return M
