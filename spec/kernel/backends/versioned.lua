-- A backend for reload tests. Reads fill the buffer with its version
-- (argument v), except byte 1, which holds the version it took over from
-- (0 for none). The shared region "closes" counts closes (word 0) and
-- slow reads begun (word 1). It can
-- be told to fail in its factory on one queue (fail_queue=Q) or in its
-- handoff (bad_handoff=error|number), and to take slow_ms milliseconds
-- over a read at byte offset slow_at. Once closed, it fails reads with
-- EBADF, as a backend whose fd is gone would.
local ffi = require("ffi")

return function(dev, args, handoff)
	local v = tonumber(args.v or 1)
	if args.fail_queue and tonumber(args.fail_queue) == dev.queue then
		error("refusing queue " .. dev.queue)
	end
	local closes = ffi.cast("uint32_t *", dev:shared("closes", 4096))
	local from = handoff and handoff.v or 0
	local slow_at, slow_ns = tonumber(args.slow_at or -1), tonumber(args.slow_ms or 0) * 1e6
	local C = require("luablk").C
	local closed = false
	return {
		read_at = function(_, buf, off, len)
			if closed then
				return -9
			end
			if off == slow_at then
				closes[1] = closes[1] + 1
				C.luablk_sleep_ns(slow_ns)
			end
			ffi.fill(buf, len, v)
			buf[1] = from
		end,
		write_at = function() end,
		handoff = function()
			if args.bad_handoff == "error" then
				error("cannot hand over")
			elseif args.bad_handoff == "number" then
				return 42
			end
			return { v = v }
		end,
		close = function()
			closed = true
			closes[0] = closes[0] + 1
		end,
	}
end
