-- An async fixture whose IOs wait for each other (aio.suspend/wake/spawn):
-- a read at offset 0 suspends until a write arrives, which wakes it with
-- the write's first byte; the read returns that byte in its buffer. A
-- read at offset 4096 is woken by a coroutine of its own (aio.spawn)
-- after a timer. The count of wakes refused is kept in buffer byte 1.
local aio = require("luablk.aio")

return function()
	local waiting -- the coroutine of the read at 0
	return {
		async = true,
		read_at = function(_, buf, off)
			if off == 4096 then
				local me = aio.current()
				aio.spawn(function()
					aio.sleep(0.01)
					aio.wake(me, 0x42)
				end)
				buf[0] = aio.suspend()
				return
			end
			waiting = aio.current()
			buf[0] = aio.suspend()
		end,
		write_at = function(_, buf)
			local co = waiting
			waiting = nil
			assert(aio.wake(co, buf[0]))
			-- Woken already: a second wake is refused.
			buf[1] = aio.wake(co, 0) and 1 or 0
		end,
	}
end
