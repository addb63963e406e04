-- Linux errno numbers by name, and names by number, for backends and
-- messages: `return -errno.ENOSPC` from a backend fails that IO with ENOSPC.
local names = {
	EPERM = 1, ENOENT = 2, EINTR = 4, EIO = 5, ENXIO = 6, E2BIG = 7,
	EBADF = 9, EAGAIN = 11, ENOMEM = 12, EACCES = 13, EFAULT = 14,
	EBUSY = 16, EEXIST = 17, ENODEV = 19, EINVAL = 22, ENFILE = 23,
	EMFILE = 24, EFBIG = 27, ENOSPC = 28, ESPIPE = 29, EROFS = 30,
	EPIPE = 32, ERANGE = 34, ENOSYS = 38, ENODATA = 61, ETIME = 62,
	ENOLINK = 67, EPROTO = 71, EOVERFLOW = 75, EILSEQ = 84,
	EOPNOTSUPP = 95, EADDRNOTAVAIL = 99, ECONNRESET = 104, ENOTCONN = 107,
	ESHUTDOWN = 108, ETIMEDOUT = 110, ECONNREFUSED = 111, EALREADY = 114,
	EREMOTEIO = 121,
	EDQUOT = 122, ENOMEDIUM = 123, ECANCELED = 125, ENOTSUPP = 524,
}

local M = {}
local by_number = {}
for name, num in pairs(names) do
	M[name] = num
	by_number[num] = name
end

-- "ENOSPC" for 28 or -28; "E<n>" for numbers without a name here.
function M.name(num)
	num = math.abs(num)
	return by_number[num] or ("E" .. num)
end

-- The number for a name ("ENOSPC", "enospc") or a decimal string.
function M.number(s)
	if type(s) == "number" then
		return s
	end
	return names[s:upper()] or tonumber(s)
end

return M
