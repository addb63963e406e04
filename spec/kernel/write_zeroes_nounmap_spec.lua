-- fallocate -z on the device sends WRITE_ZEROES with NOUNMAP: the file
-- backend zeroes the range and keeps the image's blocks allocated.
-- fallocate -p sends it without NOUNMAP, and the blocks may go. Both on
-- tmpfs (no FALLOC_FL_ZERO_RANGE: the backend writes the zeros) and on
-- ext4 (FALLOC_FL_ZERO_RANGE).
local u = require("kernel.util")

local MiB = 2 ^ 20
local SIZE = 16 * MiB

local function blocks(path)
	return tonumber(u.sh({ "stat", "-c", "%b", path }):match("%d+"))
end

-- Runs fn(dir) with dir on the file system named by `where`.
local function on(where, fn)
	if where == "tmpfs" then
		local dir = os.tmpname()
		os.remove(dir)
		u.sh({ "mkdir", dir })
		local ok, err = pcall(fn, dir)
		u.run({ "rm", "-rf", dir })
		assert(ok, err)
		return
	end
	u.with_ext4(fn)
end

describe("write-zeroes on a file image", function()
	for _, where in ipairs({ "tmpfs", "ext4" }) do
		it("keeps the blocks with NOUNMAP and may free them without, on " .. where, function()
			on(where, function(dir)
				local img = dir .. "/img"
				u.sh({ "dd", "if=/dev/urandom", "of=" .. img, "bs=1M", "count=16", "conv=fsync", "status=none" })
				local full = blocks(img)
				local dev = u.add({ backend = "file", args = { "path=" .. img }, size = SIZE })
				local path = dev:path()
				local ok, err = pcall(function()
					u.sh({ "fallocate", "-z", "-o", "0", "-l", tostring(SIZE / 2), path })
					u.sh({ "cmp", "-n", tostring(SIZE / 2), "/dev/zero", path })
					assert.equal(full, blocks(img))
					u.sh({ "fallocate", "-p", "-o", tostring(SIZE / 2), "-l", tostring(SIZE / 2), path })
					u.sh({ "cmp", "-n", tostring(SIZE), "/dev/zero", path })
					assert.is_true(blocks(img) <= full / 2 + 64, "write-zeroes without NOUNMAP kept the blocks")
				end)
				assert.is_true(dev:close())
				assert(ok, err)
			end)
		end)
	end
end)
