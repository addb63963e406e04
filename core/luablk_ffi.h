/*
 * luablk public API.
 *
 * This file is read verbatim by C (through luablk.h) and by LuaJIT's
 * ffi.cdef, so it holds no preprocessor directives and no macros: constants
 * are enums. Every function that can fail returns 0 or a positive value on
 * success and a negative errno on failure; it never exits the process and
 * never sets errno for the caller. After a failure, luablk_last_error()
 * gives a one-line description of what went wrong in the calling thread.
 */

enum {
	/* Bumped on any incompatible change to this file. */
	LUABLK_ABI_VERSION = 3,

	/* IO operations, as in struct luablk_io.op (the ublk op numbers). */
	LUABLK_OP_READ = 0,
	LUABLK_OP_WRITE = 1,
	LUABLK_OP_FLUSH = 2,
	LUABLK_OP_DISCARD = 3,
	LUABLK_OP_WRITE_ZEROES = 5,

	/* IO flags, as in struct luablk_io.flags (the ublk op_flags bits). */
	LUABLK_IO_F_FUA = 8192,
	LUABLK_IO_F_NOUNMAP = 32768,

	/* struct luablk_config.flags */
	LUABLK_F_NO_PIN = 1, /* do not pin queue threads to a CPU */
	LUABLK_F_WRITE_CACHE =
		2, /* advertise a volatile cache: FLUSH arrives */
	LUABLK_F_FUA = 4, /* advertise FUA: writes may carry LUABLK_IO_F_FUA */
	/*
	 * UBLK_F_UNPRIVILEGED_DEV: without CAP_SYS_ADMIN, create a device
	 * owned by the caller (needs the udev rule; ignored for root)
	 */
	LUABLK_F_UNPRIVILEGED = 4096,
	/*
	 * Crash recovery (UBLK_F_USER_RECOVERY, Linux 6.1+): the device
	 * outlives a server that dies without closing it. IO waits until
	 * luablk_dev_recover() starts a new server; IO the dead server had
	 * taken fails with EIO, unless LUABLK_F_REISSUE (USER_RECOVERY_REISSUE)
	 * hands it to the new server. With LUABLK_F_FAIL_IO
	 * (USER_RECOVERY_FAIL_IO, newer than 6.12) all IO fails at once while
	 * no server runs. REISSUE and FAIL_IO imply RECOVERABLE.
	 */
	LUABLK_F_RECOVERABLE = 256,
	LUABLK_F_REISSUE = 512,
	LUABLK_F_FAIL_IO = 1024,
	/*
	 * UBLK_F_USER_COPY (6.5+): the core moves IO data with pread/pwrite
	 * on /dev/ublkcN instead of the kernel copying into the buffers.
	 */
	LUABLK_F_USER_COPY = 2048,
	/*
	 * No partition scan when the device starts (UBLK_F_NO_AUTO_PART_SCAN,
	 * 7.0+); BLKRRPART, e.g. from partprobe, still scans later.
	 */
	LUABLK_F_NO_PART_SCAN = 8192,
	/*
	 * luablk_dev_recover() only: take a live device over from the server
	 * running it (QUIESCE_DEV, Linux 6.16+, on a device added recoverable
	 * on such a kernel). The old server finishes the IO it holds and
	 * leaves; IO arriving meanwhile waits; none fails.
	 */
	LUABLK_F_TAKEOVER = 16384,

	/* luablk_delete() flags */
	LUABLK_DEL_ASYNC = 1,
	LUABLK_DEL_SAFE = 2,

	/* struct luablk_params.attrs (the kernel's UBLK_ATTR_* bits) */
	LUABLK_ATTR_READ_ONLY = 1,
	LUABLK_ATTR_ROTATIONAL = 2,
	LUABLK_ATTR_WRITE_CACHE = 4, /* volatile cache: FLUSH arrives */
	LUABLK_ATTR_FUA = 8, /* only with WRITE_CACHE (the kernel's rule) */

	/* luablk_dev_declare() ops: the optional methods a backend has */
	LUABLK_HAS_DISCARD = 1,
	LUABLK_HAS_WRITE_ZEROES = 2,
	LUABLK_HAS_FLUSH = 4,

	/* luablk_dev_close() flags */
	LUABLK_CLOSE_ASYNC = 1, /* DEL_DEV_ASYNC: do not wait for openers */
	/*
	 * While the close waits for a backend call that does not return, a
	 * SIGINT or SIGTERM (blocked with luablk_signals_block) gives up on
	 * that call's queue: see luablk_dev_close().
	 */
	LUABLK_CLOSE_GIVE_UP = 2,

	/* Limits and defaults */
	LUABLK_MAX_QUEUES = 4096,
	LUABLK_MAX_DEPTH = 4096,
	LUABLK_DEFAULT_DEPTH = 128,
	LUABLK_DEFAULT_MAX_IO = 524288,
	LUABLK_MAX_SHARED_NAME = 64,
	/* largest DISCARD and WRITE_ZEROES (struct luablk_io.len is 32-bit) */
	LUABLK_MAX_DISCARD = 1073741824,

	/*
	 * struct luablk_io.result of an IO that an async backend goes on
	 * serving after the batch call returns; it is finished later
	 * through struct luablk_turn.done.
	 */
	LUABLK_RESULT_PARKED = -2147483647,
	/* struct luablk_turn.flags: why a turn runs besides new work */
	LUABLK_TURN_TICK = 1, /* a timer tick: deadlines may have passed */
	LUABLK_TURN_CLOSING = 2, /* the device is being closed */
	LUABLK_TURN_GIVE_UP = 4, /* the close gave up: fail every held IO */
	/* luablk_aio_fsync() flags */
	LUABLK_FSYNC_DATASYNC = 1,
};

/*
 * One IO request in a batch. The queue thread fills an array of these from
 * the kernel's descriptors, hands the whole batch to the backend in one call,
 * and commits each entry's result. The data buffer is not in the entry: the
 * handler owns one buffer per tag (luablk_handler_buf).
 */
struct luablk_io {
	double off; /* byte offset; a double so Lua sees a plain number */
	uint32_t len; /* bytes (0 for FLUSH) */
	uint16_t tag; /* selects the tag's buffer */
	uint8_t op; /* LUABLK_OP_* */
	uint8_t reserved;
	uint32_t flags; /* LUABLK_IO_F_* */
	int32_t result; /* out: bytes for READ/WRITE, 0 for others, or -errno */
};

/*
 * A device's block parameters, sizes in bytes. In struct luablk_config and
 * in a backend's declaration a 0 (or a bit clear in attrs_set) means "not
 * given". What the device gets: the configuration's value, else the
 * backend's declared default, else the built-in default below; a default
 * that would break a given value gives way to it (a declared physical
 * block smaller than a given logical block becomes the logical block).
 * luablk_dev_params() returns the result with every field filled in.
 */
struct luablk_params {
	uint32_t logical_block; /* power of two, 512 to the page size; 512 */
	uint32_t physical_block; /* power of two >= logical; logical */
	uint32_t io_min; /* power of two, physical..max_io; physical */
	uint32_t io_opt; /* power of two, io_min..1 GiB; io_min */
	/* Discard: only for a backend with a discard method, else all 0. */
	uint32_t discard_granularity; /* power of two >= physical; physical */
	uint32_t discard_alignment; /* multiple of logical < granularity; 0 */
	uint32_t max_discard; /* multiple of logical, granularity..1G; 1G */
	/* Only for a backend with a write_zeroes method, else 0. */
	uint32_t max_write_zeroes; /* multiple of logical up to 1 GiB; 1 GiB */
	uint32_t attrs; /* LUABLK_ATTR_* that are on */
	uint32_t attrs_set; /* LUABLK_ATTR_* given, on or off */
};

/* What a device is asked to be. Fill with luablk_config_init() first. */
struct luablk_config {
	uint64_t size; /* bytes, a multiple of the logical block; 0: the
			* backend's own (luablk_dev_declare) */
	/* 1..LUABLK_MAX_QUEUES; the kernel caps it at the number of CPUs */
	uint32_t queues;
	uint32_t depth; /* 1..LUABLK_MAX_DEPTH */
	uint32_t max_io; /* largest IO in bytes: a multiple of 4096 */
	int32_t dev_id; /* -1: the kernel picks the id */
	uint32_t flags; /* LUABLK_F_* */
	/*
	 * A shipped backend's name ("null", "mem", "file"), a path to a Lua
	 * file (anything containing '/' or ending in ".lua"), or one of the
	 * C baselines "c-null" and "c-mem".
	 */
	const char *backend;
	/* argc backend arguments, each "key=value" or a bare word */
	const char *const *args;
	int argc;
	/*
	 * Filters wrapped around the backend, innermost first, each "NAME" or
	 * "NAME:key=value,key=value" (see lua/luablk/filters/).
	 */
	const char *const *filters;
	int nfilters;
	/*
	 * Block parameters: what is given here overrides the backend's
	 * declared defaults. LUABLK_F_WRITE_CACHE and LUABLK_F_FUA in flags
	 * turn those attributes on as attrs does.
	 */
	struct luablk_params params;
	/*
	 * Per-IO deadline for async backends, in ms (0: none). An IO still
	 * held by the backend then completes with -ETIMEDOUT; what the
	 * backend does later with it is ignored, and its buffer is never
	 * written once the IO has completed.
	 */
	uint32_t io_timeout_ms;
};

/* A device as the kernel reports it (GET_DEV_INFO + GET_PARAMS). */
struct luablk_dev_info {
	int32_t id;
	int32_t pid; /* serving process, or -1 */
	uint32_t state; /* LUABLK_STATE_* */
	uint32_t queues;
	uint32_t depth;
	uint32_t max_io;
	uint32_t block_size; /* logical block size */
	uint32_t io_timeout_ms; /* this process's own devices only, else 0 */
	uint64_t size; /* bytes */
	uint64_t flags; /* negotiated UBLK_F_* feature bits */
	uint32_t owner_uid; /* who created it (UBLK_F_UNPRIVILEGED_DEV) */
	uint32_t owner_gid;
};

/* struct luablk_dev_info.state, as the kernel reports it */
enum {
	LUABLK_STATE_DEAD = 0, /* not started, or stopped */
	LUABLK_STATE_LIVE = 1, /* a server serves it */
	LUABLK_STATE_QUIESCED = 2, /* recoverable, no server: IO waits */
	LUABLK_STATE_FAIL_IO = 3, /* recoverable, no server: IO fails */
};

struct luablk_dev;
struct luablk_handler;

/* Returns LUABLK_ABI_VERSION as compiled into the library. */
int luablk_version(void);

/*
 * Returns a one-line description of the last failure of a luablk function
 * in the calling thread, or "" if there was none. The string stays valid
 * until the next luablk call in this thread.
 */
const char *luablk_last_error(void);

/*
 * Fills cfg with the defaults: 1 queue, depth 128, 512 KiB IO, and no
 * block parameters given (the backend's or the built-in ones apply).
 */
void luablk_config_init(struct luablk_config *cfg);

/*
 * Checks cfg without touching the kernel: sizes, counts and that the backend
 * names something loadable. Returns 0 or -EINVAL (see luablk_last_error).
 */
int luablk_config_check(const struct luablk_config *cfg);

/*
 * Creates a device object from cfg and loads the backend once per queue,
 * without touching the kernel, so bad input fails here with nothing to undo.
 * Returns 0 and stores the device in *out, or -errno.
 */
int luablk_dev_create(const struct luablk_config *cfg, struct luablk_dev **out);

/*
 * Registers the device with the kernel and starts serving it: ADD_DEV,
 * SET_PARAMS, one pinned thread per queue with its FETCH_REQs in flight,
 * then START_DEV. When it returns 0, /dev/ublkbN exists and serves IO. On
 * failure nothing is left in the kernel and the device can only be freed
 * with luablk_dev_close(). Returns 0 or -errno.
 */
int luablk_dev_start(struct luablk_dev *dev);

/* luablk_dev_create() followed by luablk_dev_start(); frees on failure. */
int luablk_dev_new(const struct luablk_config *cfg, struct luablk_dev **out);

/*
 * Starts a new server in this process for device id, a device added with
 * LUABLK_F_RECOVERABLE whose server died. From cfg only backend, args,
 * filters and LUABLK_F_NO_PIN count: size, queues, depth, max_io,
 * block_size and the recovery flags are the device's own, read with
 * GET_DEV_INFO and GET_PARAMS. The backend is loaded and checked first;
 * then, once the kernel has quiesced the device (this waits up to 30 s
 * for a server that is still exiting), START_USER_RECOVERY, the char
 * device, one queue thread per queue with its FETCH_REQs, and
 * END_USER_RECOVERY. When it returns 0, IO that waited is served and the
 * device is in *out, to be closed with luablk_dev_close() as usual.
 * Returns -ENODEV (no such device), -EINVAL (not recoverable, or dead),
 * -EBUSY (a live server still serves it), -ETIMEDOUT (it did not become
 * recoverable in time) or another -errno; on every failure the device is
 * left as it was.
 */
int luablk_dev_recover(const struct luablk_config *cfg, int id,
		       struct luablk_dev **out);

/*
 * Tears the device down and frees it. STOP_DEV goes first, while the queue
 * threads still serve, so that the kernel's final writeback (what a
 * mounted filesystem or the block device's page cache still holds)
 * reaches the backend; then the queue threads exit, their rings and the
 * char device are closed, and DEL_DEV runs. IO that applications send
 * after STOP_DEV fails. The close waits for the backend to finish its
 * calls: one that never returns blocks it, and after 5 s a line on stderr
 * names the queue and the call. With LUABLK_CLOSE_GIVE_UP a signal then
 * gives up on it: the queue's ring is released, the kernel fails the IO
 * the call held, and the close goes on, but the thread stays inside the
 * call, so its Lua state and the device's memory are never freed and the
 * close returns -ETIMEDOUT; end the process soon after. DEL_DEV waits until
 * every fd on /dev/ublkbN is closed and it is unmounted; with
 * LUABLK_CLOSE_ASYNC it uses DEL_DEV_ASYNC (6.9+) and returns at once. Safe to
 * call once from any thread. Returns 0 or the first -errno met (the device is
 * freed anyway).
 */
int luablk_dev_close(struct luablk_dev *dev, uint32_t flags);

/*
 * Replaces the backend of every queue while the device serves. Each queue
 * thread finishes the batch it is in and waits; the new backend is loaded
 * in every queue (its factory receives what the old one's handoff(self)
 * returned); only when that succeeds everywhere does it take over, and the
 * old one's close(self) runs. Otherwise the old backend serves on and the
 * error is returned. IO arriving meanwhile waits in the kernel.
 * backend NULL reloads the current spec (a path is read from disk again);
 * argc < 0 keeps the current arguments. Filters stay as they are. Lua
 * backends only. Not concurrently with luablk_dev_close(). Returns 0 or
 * -errno with luablk_last_error() set.
 */
int luablk_dev_reload(struct luablk_dev *dev, const char *backend,
		      const char *const *args, int argc);

/*
 * 1 if the device's queues stopped because a new server is taking it over
 * (luablk_dev_recover() with LUABLK_F_TAKEOVER); luablk_dev_close() then
 * leaves the device and its regions to that server. 0 if the device was
 * stopped, or still serves.
 */
int luablk_dev_handed_over(struct luablk_dev *dev);

/*
 * Changes the size of a serving device (UPDATE_SIZE, Linux 6.16+): the
 * current backend is reloaded as luablk_dev_reload() does, opened with the
 * new size, and the kernel is told while every queue is parked, so no IO
 * runs in between. A backend that cannot take the new size refuses it in
 * its factory and serves on at the old one. The block device's capacity
 * changes at once; a filesystem on it grows with its own tool (resize2fs).
 * Returns 0 or -errno with luablk_last_error() set.
 */
int luablk_dev_resize(struct luablk_dev *dev, uint64_t size);

/* Returns the kernel's device id, or -1 before luablk_dev_start(). */
int luablk_dev_id(const struct luablk_dev *dev);

/* Copies the device's current settings (as negotiated) into *info. */
int luablk_dev_info(const struct luablk_dev *dev, struct luablk_dev_info *info);

/*
 * Copies the device's effective block parameters into *out (see struct
 * luablk_params). Before the backend of queue 0 has declared its own they
 * reflect the configuration and the built-in defaults only.
 */
int luablk_dev_params(const struct luablk_dev *dev, struct luablk_params *out);

/*
 * What a backend declares about itself: its default block parameters and,
 * in ops (LUABLK_HAS_*), the optional methods it has. The Lua host calls it
 * while it loads queue 0's backend, before the kernel is involved; the
 * device's parameters are then recomputed and checked. Once the device is
 * added it changes nothing and only checks that the declaration gives the
 * same parameters. A write cache needs LUABLK_HAS_FLUSH, and FUA needs the
 * backend to declare LUABLK_ATTR_FUA itself: the configuration cannot
 * force either onto a backend that would not honour it. size: the
 * backend's own size in bytes (a network export's, say), or 0; it becomes
 * the device's size when the configuration gives none (size 0), and a
 * device with neither is refused. Returns 0, or -EINVAL / -EBUSY (see
 * luablk_last_error).
 */
int luablk_dev_declare(struct luablk_dev *dev,
		       const struct luablk_params *declared, uint32_t ops,
		       uint64_t size);

/*
 * Returns an fd that becomes readable once the device stops serving on its
 * own (another process deleted it, or a queue thread failed). Poll it
 * together with your signals; luablk_dev_close() is still needed.
 */
int luablk_dev_event_fd(const struct luablk_dev *dev);

/*
 * Returns, in *out, a zero-filled memory region shared by every queue of the
 * device, created on first use with the given size and found by name after.
 * size 0 only looks it up. The region lives until luablk_dev_close(). While
 * the device runs, the region is also published as /run/luablk/ID/NAME so
 * that other processes can map it (luablk_shared_open). A recoverable
 * device's regions are files there rather than links to this process's
 * memory: they outlive a crash, luablk_dev_recover() maps them again, and
 * they are removed when the device is deleted. Names are 1-63
 * bytes without '/'. Returns 0, -ENOENT (size 0, no such region), -EEXIST
 * (size differs), -EINVAL (bad name) or -ENOMEM.
 */
int luablk_dev_shared(struct luablk_dev *dev, const char *name, uint64_t size,
		      void **out, uint64_t *out_size);

/*
 * Maps region NAME of device ID, served by this or another process, read
 * and write. Release it with luablk_shared_unmap(). Only what the device's
 * live server published is mapped (or, for a recoverable device, the
 * region files in root's /run/luablk/ID), and only a file owned by the
 * device's owner: a link planted in a publish directory is refused.
 * Returns 0, -ENOENT (no such device or region), -EPERM or -ESTALE (an
 * entry its server did not publish, or a dead server's) or -errno.
 */
int luablk_shared_open(int id, const char *name, void **out,
		       uint64_t *out_size);

/* Unmaps a region mapped by luablk_shared_open(). */
int luablk_shared_unmap(void *addr, uint64_t size);

/*
 * Writes into buf the directory where this process publishes device ID
 * (its regions, its pid file and its reload requests): /run/luablk/ID for
 * root, $XDG_RUNTIME_DIR/luablk/ID for other users. Returns 0 if that
 * directory exists, is not a link, and belongs to this process's user and
 * to nobody else (mode 0700 under a directory that others cannot write);
 * -ENOENT otherwise, -ENAMETOOLONG if it does not fit.
 */
int luablk_publish_dir(int id, char *buf, size_t len);

/*
 * Reads GET_DEV_INFO2 and GET_PARAMS for any device id on the machine
 * (a non-root caller may read only its own unprivileged devices).
 */
int luablk_query(int id, struct luablk_dev_info *info);

/*
 * Lists device ids present on the machine into ids[0..max) and returns how
 * many there are (which may exceed max).
 */
int luablk_list(int *ids, int max);

/*
 * Deletes a device by id with DEL_DEV, or DEL_DEV_ASYNC with
 * LUABLK_DEL_ASYNC in flags. This also removes a recoverable device that
 * has no server (quiesced), together with the shared regions it kept (see
 * luablk_dev_shared). With LUABLK_DEL_SAFE (TRY_STOP_DEV, Linux 7.0+) a
 * device that is open, mounted or held by a process is refused with
 * -EBUSY and left as it was.
 */
int luablk_delete(int id, int flags);

/* Stores the kernel's supported UBLK_F_* bits (GET_FEATURES, 6.5+). */
int luablk_features(uint64_t *features);

/*
 * Runs an IO batch without a kernel: the same handler (buffers, backend,
 * dispatch loop) a queue thread uses, for tests and benchmarks.
 * luablk_handler_new() loads the device's backend for queue q.
 */
int luablk_handler_new(struct luablk_dev *dev, unsigned int q,
		       struct luablk_handler **out);

/*
 * The handler the device itself serves queue q with (NULL if q is out of
 * range); owned by the device. Lets a kernel-free driver see what
 * luablk_dev_reload() does to a device.
 */
struct luablk_handler *luablk_dev_handler(struct luablk_dev *dev,
					  unsigned int q);

/* The handler's batch array, with room for the device's queue depth. */
struct luablk_io *luablk_handler_batch(struct luablk_handler *h);

/* The IO buffer of a tag (max_io bytes, page aligned). */
uint8_t *luablk_handler_buf(struct luablk_handler *h, unsigned int tag);

/*
 * Runs batch[0..n) through the backend and fills each entry's result.
 * Never fails as a whole: a backend error fails only its own IO.
 */
void luablk_handler_run(struct luablk_handler *h, unsigned int n);

/* Frees a handler made by luablk_handler_new(). */
void luablk_handler_free(struct luablk_handler *h);

/*
 * Async backends. A backend that waits (for a file, a socket, a timer)
 * parks the IO: the batch call leaves LUABLK_RESULT_PARKED in its result
 * and the queue keeps the tag. Waits are SQEs on the queue's own ring,
 * each with a slot number of the backend's choosing; their completions
 * come back in the next turn's wake array, together with new IOs, in one
 * call of the batch function, which reports the parked IOs it finished in
 * done. A handler made by luablk_handler_new() uses a small ring of its
 * own instead, driven by luablk_handler_poll().
 */
struct luablk_wake {
	uint32_t slot; /* the slot the wait was submitted with */
	int32_t res; /* its result: bytes, 0, revents, or -errno */
};

struct luablk_done {
	uint16_t tag;
	uint16_t reserved;
	int32_t result; /* as struct luablk_io.result */
};

struct luablk_turn {
	struct luablk_wake *wake; /* slots entries; nwake filled this turn */
	struct luablk_done *done; /* depth entries; the backend fills ndone */
	uint32_t nwake;
	uint32_t ndone;
	uint32_t parked; /* IOs parked now (kept by the core) */
	uint32_t flags; /* LUABLK_TURN_* */
	uint32_t slots; /* wait slots are 0..slots-1 */
	uint32_t spares; /* spare buffers left (luablk_handler_spare) */
};

/* The handler's turn: where wakes arrive and finished IOs go. */
struct luablk_turn *luablk_handler_turn(struct luablk_handler *h);

/*
 * Gives tag a spare buffer in place of the one it has, and returns the new
 * one (NULL if no spare is left). The old buffer now belongs to whatever
 * may still write into it (a wait that an IO timed out of); give it back
 * with luablk_handler_return() once that is over.
 */
uint8_t *luablk_handler_spare(struct luablk_handler *h, unsigned int tag);
void luablk_handler_return(struct luablk_handler *h, uint8_t *buf);

/*
 * Without a queue: submits the waits queued on the handler's own ring,
 * waits up to timeout_ms (0: no wait) for at least one completion, and
 * runs a turn with them (n = 0). Returns the number of wakes, or -errno.
 */
int luablk_handler_poll(struct luablk_handler *h, int timeout_ms);

/*
 * Waiting primitives: each queues one SQE, completed as a wake with its
 * slot. Offsets are doubles, as in struct luablk_io. Return 0, or -errno
 * (-EBUSY: the ring has no room this turn; try again in the next).
 */
int luablk_aio_read(struct luablk_handler *h, uint32_t slot, int fd, void *buf,
		    uint32_t len, double off);
int luablk_aio_write(struct luablk_handler *h, uint32_t slot, int fd,
		     const void *buf, uint32_t len, double off,
		     uint32_t rw_flags);
/* flags: LUABLK_FSYNC_DATASYNC for fdatasync */
int luablk_aio_fsync(struct luablk_handler *h, uint32_t slot, int fd,
		     uint32_t flags);
int luablk_aio_fallocate(struct luablk_handler *h, uint32_t slot, int fd,
			 int mode, double off, double len);
/* A timer: wakes with 0 after ns nanoseconds. */
int luablk_aio_sleep(struct luablk_handler *h, uint32_t slot, uint64_t ns);
/* Wakes with the revents of fd once one of events (POLLIN...) holds. */
int luablk_aio_poll(struct luablk_handler *h, uint32_t slot, int fd,
		    uint32_t events);
int luablk_aio_connect(struct luablk_handler *h, uint32_t slot, int fd,
		       const void *addr, uint32_t addrlen);
int luablk_aio_send(struct luablk_handler *h, uint32_t slot, int fd,
		    const void *buf, uint32_t len, int flags);
int luablk_aio_recv(struct luablk_handler *h, uint32_t slot, int fd, void *buf,
		    uint32_t len, int flags);
/*
 * Cancels the wait of slot (IORING_OP_ASYNC_CANCEL). Its wake still
 * comes, with -ECANCELED unless it had finished first.
 */
int luablk_aio_cancel(struct luablk_handler *h, uint32_t slot);

/*
 * Sets the directory holding the luablk Lua modules (the one containing
 * luablk/init.lua) for the Lua states the core creates. Without it the core
 * uses LUABLK_LUA_DIR from the environment, then the installed location.
 */
int luablk_set_lua_dir(const char *dir);

/*
 * Starts argv[0] (searched in PATH) with plain fork() and execvp(), never
 * vfork or posix_spawn: a process serving a ublk device loses it when it
 * spawns that way. stdin, stdout and stderr are inherited unless an fd is
 * >= 0, in which case it replaces that stream. Returns the child's pid or
 * -errno.
 */
int luablk_spawn(const char *const *argv, int in_fd, int out_fd, int err_fd);

/*
 * Plain fork(): returns the child's pid in the parent, 0 in the child, or
 * -errno. The child has no queue threads; harnesses use it to run IO
 * workers that are not the serving process.
 */
int luablk_fork(void);

/* Ends the calling process at once with status code (_exit). */
void luablk_exit(int code);

/* CLOCK_MONOTONIC in nanoseconds. */
uint64_t luablk_now_ns(void);

/* Sleeps for ns nanoseconds (resuming after signals). */
void luablk_sleep_ns(uint64_t ns);

/*
 * Atomic operations on 64-bit words in shared regions, for counters and
 * flags that several queue threads (or processes) update.
 */
uint64_t luablk_atomic_add(uint64_t *p, uint64_t v); /* returns new value */
uint64_t luablk_atomic_load(const uint64_t *p);
void luablk_atomic_store(uint64_t *p, uint64_t v);
int luablk_atomic_cas(uint64_t *p, uint64_t expected, uint64_t desired);

/*
 * Waits for a child started by luablk_spawn(). Returns its exit status
 * (0-255), 128 + signal number if it was killed, or -errno.
 */
int luablk_wait(int pid);

/*
 * Blocks SIGINT, SIGTERM, SIGHUP, SIGUSR1 and SIGUSR2 in the calling
 * thread, so that they are queued for luablk_dev_wait() instead of killing
 * the process. Call it before luablk_dev_start() in a process that serves
 * in the foreground.
 */
int luablk_signals_block(void);

/*
 * Waits up to timeout_ms (-1: forever) for one of the signals blocked by
 * luablk_signals_block() or for the device to stop on its own. Returns the
 * signal number, 0 if the device stopped, -ETIMEDOUT, or -errno.
 */
int luablk_dev_wait(struct luablk_dev *dev, int timeout_ms);
