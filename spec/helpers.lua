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

function M.tmpname()
	local p = os.tmpname()
	return p
end

return M
