-- Thin FFI wrappers around the system calls that backends and harnesses
-- need. Failures return nil, "ENAME: message", errno, like luv and
-- lua-resty-core, so callers can report them or map them to an IO result.
local ffi = require("ffi")
local errno = require("luablk.errno")

ffi.cdef([[
int open(const char *path, int flags, ...);
int close(int fd);
ssize_t pread(int fd, void *buf, size_t count, int64_t off);
ssize_t pwrite(int fd, const void *buf, size_t count, int64_t off);
struct luablk_iovec { const void *base; size_t len; };
ssize_t pwritev2(int fd, const struct luablk_iovec *iov, int iovcnt, int64_t off, int flags);
ssize_t write(int fd, const void *buf, size_t count);
int snprintf(char *str, size_t size, const char *format, ...);
int fdatasync(int fd);
int fsync(int fd);
int64_t lseek(int fd, int64_t off, int whence);
int ftruncate(int fd, int64_t len);
int fallocate(int fd, int mode, int64_t off, int64_t len);
int ioctl(int fd, unsigned long req, ...);
char *strerror(int errnum);
int posix_memalign(void **p, size_t align, size_t size);
void free(void *p);
int getpid(void);
int kill(int pid, int sig);
int usleep(unsigned int usec);
int access(const char *path, int mode);
int memcmp(const void *a, const void *b, size_t n);
int madvise(void *addr, size_t len, int advice);
typedef struct DIR DIR;
struct luablk_dirent {
	uint64_t d_ino;
	int64_t d_off;
	unsigned short d_reclen;
	unsigned char d_type;
	char d_name[256];
};
DIR *opendir(const char *name);
struct luablk_dirent *readdir(DIR *dir) __asm__("readdir64");
int closedir(DIR *dir);
int fchownat(int dirfd, const char *path, unsigned int owner, unsigned int group, int flags);
int chmod(const char *path, unsigned int mode);
struct luablk_statx {
	uint32_t mask, blksize;
	uint64_t attributes;
	uint32_t nlink, uid, gid;
	uint16_t mode, spare0;
	uint64_t ino, size, blocks, attributes_mask;
	struct { int64_t sec; uint32_t nsec; int32_t reserved; } atime, btime, ctime, mtime;
	uint32_t rdev_major, rdev_minor, dev_major, dev_minor;
	uint64_t spare2[14];
};
int statx(int dirfd, const char *path, int flags, unsigned int mask, struct luablk_statx *buf);
]])

local C = ffi.C
local M = {
	O_RDONLY = 0, O_WRONLY = 1, O_RDWR = 2, O_CREAT = 64, O_EXCL = 128,
	O_TRUNC = 512, O_DIRECT = 16384, O_NOFOLLOW = 131072, O_CLOEXEC = 524288,
	O_PATH = 2097152,
	S_IFMT = 61440, S_IFCHR = 8192, S_IFBLK = 24576,
	SEEK_END = 2,
	FALLOC_FL_KEEP_SIZE = 1, FALLOC_FL_PUNCH_HOLE = 2,
	FALLOC_FL_ZERO_RANGE = 16,
	BLKGETSIZE64 = 0x80081272, BLKDISCARD = 0x1277,
	BLKFLSBUF = 0x1261,
	MADV_REMOVE = 9,
}

-- Returns nil, "ENAME: what: strerror", errno for the current errno.
function M.fail(what, e)
	e = e or ffi.errno()
	local msg = ffi.string(C.strerror(e))
	return nil, ("%s: %s: %s"):format(errno.name(e), what, msg), e
end

function M.open(path, flags, mode)
	local fd = C.open(path, bit.bor(flags, M.O_CLOEXEC), mode or 420)
	if fd < 0 then
		return M.fail(path)
	end
	return fd
end

function M.close(fd)
	if C.close(fd) < 0 then
		return M.fail("close")
	end
	return true
end

-- Wraps pread/pwrite into a call that moves all len bytes unless the
-- file ends (0 bytes moved) first; it returns the count moved.
local function whole(call, name)
	return function(fd, buf, len, off)
		local done = 0
		while done < len do
			local n = call(fd, buf + done, len - done, off + done)
			if n > 0 then
				done = done + tonumber(n)
			elseif n == 0 then
				break
			elseif ffi.errno() ~= errno.EINTR then
				return M.fail(name)
			end
		end
		return done
	end
end

M.pread = whole(C.pread, "pread")
M.pwrite = whole(C.pwrite, "pwrite")

-- pwrite that returns once the data is durable, as with O_DSYNC
-- (pwritev2 RWF_DSYNC). The iovec is this state's: one thread per state.
local RWF_DSYNC = 2
local iov = ffi.new("struct luablk_iovec[1]")
M.pwrite_dsync = whole(function(fd, buf, len, off)
	iov[0].base, iov[0].len = buf, len
	return C.pwritev2(fd, iov, 1, off, RWF_DSYNC)
end, "pwritev2")

-- One pread/pwrite system call, no retry: what O_DIRECT tests want, where
-- a short transfer or an errno is the observation. Returns the count or
-- nil, "ENAME: ...", errno.
function M.pread_once(fd, buf, len, off)
	local n = C.pread(fd, buf, len, off)
	if n < 0 then
		return M.fail("pread")
	end
	return tonumber(n)
end

function M.pwrite_once(fd, buf, len, off)
	local n = C.pwrite(fd, buf, len, off)
	if n < 0 then
		return M.fail("pwrite")
	end
	return tonumber(n)
end

function M.fdatasync(fd)
	if C.fdatasync(fd) < 0 then
		return M.fail("fdatasync")
	end
	return true
end

-- Size in bytes of a regular file or a block device.
function M.size(fd)
	local out = ffi.new("uint64_t[1]")
	if C.ioctl(fd, M.BLKGETSIZE64, out) == 0 then
		return tonumber(out[0])
	end
	local n = C.lseek(fd, 0, M.SEEK_END)
	if n < 0 then
		return M.fail("lseek")
	end
	return tonumber(n)
end

-- An aligned buffer for O_DIRECT IO, freed by the garbage collector.
function M.aligned(size, align)
	local p = ffi.new("void *[1]")
	if C.posix_memalign(p, align or 4096, size) ~= 0 then
		error("posix_memalign failed for " .. size .. " bytes")
	end
	return ffi.gc(ffi.cast("uint8_t *", p[0]), C.free)
end

-- Zeroes [p, p+len) of a shared (memfd) mapping. Whole pages in the range
-- are handed back to the kernel (MADV_REMOVE), which frees their memory
-- and reads back as zeros; partial pages at the ends are filled.
function M.zero_shared(p, len)
	local page = 4096
	local addr = tonumber(ffi.cast("uintptr_t", p))
	local first = math.ceil(addr / page) * page
	local last = math.floor((addr + len) / page) * page
	if last - first < page or C.madvise(ffi.cast("void *", first), last - first, M.MADV_REMOVE) ~= 0 then
		ffi.fill(p, len)
		return
	end
	ffi.fill(p, first - addr)
	ffi.fill(ffi.cast("uint8_t *", last), addr + len - last)
end

-- The whole content of a file, or nil if it cannot be opened.
function M.read_file(path)
	local f = io.open(path, "rb")
	if not f then
		return nil
	end
	local s = f:read("*a")
	f:close()
	return s
end

-- The names in a directory (without . and ..), sorted, or nil, error.
function M.list_dir(path)
	local dir = C.opendir(path)
	if dir == nil then
		return M.fail("opendir " .. path)
	end
	local names = {}
	while true do
		local e = C.readdir(dir)
		if e == nil then
			break
		end
		local name = ffi.string(e.d_name)
		if name ~= "." and name ~= ".." then
			names[#names + 1] = name
		end
	end
	C.closedir(dir)
	table.sort(names)
	return names
end

function M.exists(path)
	return C.access(path, 0) == 0
end

local AT_EMPTY_PATH = 4096

-- What fd (any kind, O_PATH too) refers to: mode, uid, gid, rdev_major
-- and rdev_minor. Or nil, error.
function M.fstat(fd)
	local st = ffi.new("struct luablk_statx")
	if C.statx(fd, "", AT_EMPTY_PATH, 0xfff, st) < 0 then
		return M.fail("statx")
	end
	return {
		mode = st.mode,
		uid = st.uid,
		gid = st.gid,
		rdev_major = st.rdev_major,
		rdev_minor = st.rdev_minor,
	}
end

-- Changes the owner of what fd refers to (an O_PATH fd too).
function M.fchown(fd, uid, gid)
	if C.fchownat(fd, "", uid, gid, AT_EMPTY_PATH) < 0 then
		return M.fail("chown")
	end
	return true
end

-- Changes the permission bits of what fd refers to; fchmod refuses an
-- O_PATH fd, its /proc/self/fd link does not.
function M.fchmod(fd, mode)
	if C.chmod("/proc/self/fd/" .. fd, mode) < 0 then
		return M.fail("chmod")
	end
	return true
end

ffi.cdef([[
char *realpath(const char *path, char *resolved);
unsigned int geteuid(void);
]])
M.O_NOFOLLOW = 131072

-- The absolute, link-free path of an existing file, or nil, error.
function M.realpath(path)
	local buf = ffi.new("char[4096]")
	if C.realpath(path, buf) == nil then
		return M.fail(path)
	end
	return ffi.string(buf)
end

-- Creates path (which must not exist, not even as a dangling link) with
-- mode 0600 and writes text into it. Returns true or nil, error.
function M.write_new(path, text)
	local fd, err = M.open(path, bit.bor(M.O_WRONLY, M.O_CREAT, M.O_EXCL, M.O_NOFOLLOW), 384)
	if not fd then
		return nil, err
	end
	local n = C.write(fd, text, #text)
	C.close(fd)
	if n ~= #text then
		os.remove(path)
		return M.fail("write " .. path)
	end
	return true
end

function M.geteuid()
	return tonumber(C.geteuid())
end

return M
