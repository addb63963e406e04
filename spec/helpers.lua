-- Shared helpers for specs: synthetic batches and buffers, so the
-- dispatch loop can be driven exactly as a queue thread drives it.
local ffi = require("ffi")
require("luablk") -- declares struct luablk_io and friends

local M = {}

-- A batch of `depth` entries, a buffer per tag, and the bufs table the
-- dispatch loop indexes by tag.
function M.batch(depth, bufsize)
	local batch = ffi.new("struct luablk_io[?]", depth)
	local area = ffi.new("uint8_t[?]", depth * bufsize)
	local bufs = {}
	for tag = 0, depth - 1 do
		bufs[tag] = area + tag * bufsize
	end
	return { batch = batch, area = area, bufs = bufs }
end

-- Fills entry i like the queue thread does (result preset to -EIO).
function M.set(b, i, op, off, len, tag)
	local io = b.batch[i]
	io.op, io.off, io.len, io.tag, io.flags, io.result = op, off, len, tag or i, 0, -5
end

-- A reporter that collects messages instead of printing them.
function M.collector()
	local got = {}
	return got, function(msg)
		got[#got + 1] = msg
	end
end

-- The `dev` a backend or filter factory receives, without a kernel: real
-- zero-filled memory per shared region name. Queues of one device share
-- o.regions. o: size, block_size, queues, queue, regions.
local anchor = {} -- filters keep raw pointers: the memory must stay alive
function M.fake_dev(o)
	local regions = o.regions or {}
	local dev = {
		size = o.size or 2 ^ 20,
		block_size = o.block_size or 512,
		queues = o.queues or 1,
		queue = o.queue or 0,
		regions = regions,
	}
	function dev.shared(_, name, rsize)
		if not regions[name] then
			if not rsize or rsize == 0 then
				error("no shared region '" .. name .. "'")
			end
			regions[name] = ffi.new("uint8_t[?]", rsize)
			anchor[#anchor + 1] = regions[name]
		end
		return ffi.cast("uint8_t *", regions[name]), ffi.sizeof(regions[name])
	end
	return dev
end

-- JIT checks. A watcher records, per phase, trace aborts in luablk's own
-- code and the sources of completed traces.
function M.trace_watcher()
	local jutil = require("jit.util")
	local vmdef = require("jit.vmdef")
	local w = { phase = "warmup", aborts = { warmup = {}, steady = {} }, stopped = {} }
	function w.cb(what, _, func, pc, otr, oex)
		local info = jutil.funcinfo(func, pc)
		if not (info.source and info.source:find("luablk/", 1, true)) then
			return
		end
		if what == "abort" then
			local why = tostring(vmdef.traceerr[otr] or otr):format(oex)
			table.insert(w.aborts[w.phase], info.loc .. ": " .. why)
		elseif what == "stop" then
			w.stopped[#w.stopped + 1] = info.source
		end
	end
	return w
end

-- Runs turn() `warm` times, then `steady` times with w recording the
-- steady phase, then weighs the Lua heap over `rounds` more turns with
-- the watcher detached (it allocates on trace events). Returns the heap
-- bytes allocated per turn.
function M.steady_heap(w, turn, warm, steady, rounds)
	local jit = require("jit")
	jit.flush()
	jit.attach(w.cb, "trace")
	local ok, err = pcall(function()
		for _ = 1, warm do
			turn()
		end
		w.phase = "steady"
		for _ = 1, steady do
			turn()
		end
	end)
	jit.attach(w.cb)
	assert(ok, err)
	collectgarbage()
	collectgarbage("stop")
	local before = collectgarbage("count")
	for _ = 1, rounds do
		turn()
	end
	local growth = (collectgarbage("count") - before) * 1024
	collectgarbage("restart")
	return growth / rounds
end

function M.tmpname()
	local p = os.tmpname()
	return p
end

return M
