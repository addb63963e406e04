/* SPDX-License-Identifier: MIT */
/* Types and helpers shared by the core's source files; not installed. */
#ifndef LUABLK_INTERNAL_H
#define LUABLK_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>

#include "luablk.h"
#include "uapi.h"

#define LB_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* error.c: record a printf-style message for luablk_last_error(), return err.
 */
int lb_fail(int err, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* Clears the calling thread's last error. */
void lb_clear_error(void);

/*
 * What a backend declares about itself (after filters wrap it); the
 * device advertises these to the kernel in SET_PARAMS.
 */
struct lb_caps {
	bool write_cache; /* wants FLUSH: a volatile cache */
	bool fua; /* honours LUABLK_IO_F_FUA on writes */
	bool discard; /* has discard */
	bool write_zeroes; /* has write_zeroes */
};

/*
 * How a handler serves a batch. The C baselines and the Lua host implement
 * the same three calls over the same batch array, so benchmarks compare
 * exactly the production paths.
 */
struct lb_handler_ops {
	const char *name;
	int (*init)(struct luablk_handler *h); /* -errno + lb_fail on error */
	void (*run)(struct luablk_handler *h, unsigned int n);
	void (*fini)(struct luablk_handler *h);
	/*
	 * Live reload (reload.c), NULL where unsupported. prepare loads the
	 * new backend next to the running one (need: what the device
	 * advertises); then either commit swaps it in or abort drops it.
	 */
	int (*prepare)(struct luablk_handler *h, const char *backend,
		       const char *const *args, int argc,
		       const struct lb_caps *need);
	void (*commit)(struct luablk_handler *h);
	void (*abort)(struct luablk_handler *h);
};

extern const struct lb_handler_ops lb_c_null_ops;
extern const struct lb_handler_ops lb_c_mem_ops;
extern const struct lb_handler_ops lb_lua_ops;

struct luablk_handler {
	struct luablk_dev *dev;
	struct lb_caps caps;
	unsigned int q;
	unsigned int depth;
	uint32_t max_io;
	struct luablk_io *batch; /* depth entries */
	/*
	 * 2 * depth buffers of max_io bytes: one per tag to start with, and
	 * as many spares for tags whose IO timed out while a wait could
	 * still write into the buffer (luablk_handler_spare).
	 */
	uint8_t *bufs;
	size_t bufs_len;
	uint8_t **tag_buf; /* depth: the buffer each tag uses now */
	uint8_t **spare; /* the free spares, nspare of them */
	unsigned int nspare;
	/* Async backends (aio.c): the turn and where waits are queued. */
	struct luablk_turn turn;
	void *ring; /* struct io_uring *: the queue's while it serves */
	void *own_ring; /* kernel-free use (luablk_handler_poll) */
	void *timers; /* a struct __kernel_timespec per slot (sleeps) */
	const struct lb_handler_ops *ops;
	void *priv; /* the ops' own state */
};

/*
 * aio.c: user_data of a wait's SQE, and of SQEs whose completion nobody
 * needs (cancels). IO commands carry their tag, far below both.
 */
#define LB_UD_AIO (1ULL << 32)
#define LB_UD_IGNORE (2ULL << 32)
/* Wait slots per handler: enough for several waits per IO in flight. */
unsigned int lb_aio_slots(unsigned int depth);
/* Frees the handler's own ring, if it made one. */
void lb_aio_fini(struct luablk_handler *h);

/*
 * params.c: block parameters. lb_params_resolve() merges the given values
 * (and LUABLK_F_WRITE_CACHE/FUA in flags) over the declared ones (NULL:
 * none) for a backend with the LUABLK_HAS_* methods in ops; the checks
 * return -EINVAL with a message.
 */
void lb_params_resolve(const struct luablk_params *given, uint32_t flags,
		       const struct luablk_params *declared, uint32_t ops,
		       struct luablk_params *out);
int lb_params_check(const struct luablk_params *p, uint32_t max_io);
int lb_params_check_size(const struct luablk_params *p, uint64_t size);
/* SET_PARAMS for effective parameters p. */
void lb_params_to_ublk(const struct luablk_params *p, uint64_t size,
		       uint32_t max_io, struct ublk_params *out);
/* The reverse, for a device the kernel already has (recovery). */
void lb_params_from_ublk(const struct ublk_params *p,
			 struct luablk_params *out);

/* Picks the handler ops for a backend name (C baseline or Lua). */
const struct lb_handler_ops *lb_handler_ops_for(const char *backend);

/* shared.c: regions returned by luablk_dev_shared(). */
struct lb_shared {
	struct lb_shared *next;
	char name[LUABLK_MAX_SHARED_NAME];
	void *addr;
	uint64_t size;
	int fd; /* memfd, so other processes can map it once published */
	/* A file under /run/luablk (recoverable devices): kept on a crash. */
	bool persistent;
	bool linked; /* the file has its name in /run/luablk/ID */
};
void lb_shared_free_all(struct lb_shared **list);
/* Whether name is usable for a region: 1..63 bytes, no '/', not . or .. */
bool lb_valid_region_name(const char *name);

/*
 * publish.c: the device's publish directory, root's LB_PUBLISH_ROOT/ID or
 * $XDG_RUNTIME_DIR/luablk/ID for other users (see luablk_publish_dir).
 */
#define LB_PUBLISH_ROOT "/run/luablk"
/* Creates the directory with the pid file and every region (best effort). */
void lb_shared_publish(struct luablk_dev *dev);
/* Publishes one region created after lb_shared_publish(). */
void lb_publish_region(struct luablk_dev *dev, struct lb_shared *s);
/* Removes the directory again. */
void lb_shared_unpublish(struct luablk_dev *dev);
/* Removes the directory of a device that no server will clean up. */
void lb_shared_remove(int id);

/* The control device: a SQE128 ring on /dev/ublk-control. ctrl.c */
struct lb_ctrl;
int lb_ctrl_open(struct lb_ctrl **out);
void lb_ctrl_close(struct lb_ctrl *c);
/* Runs one control command; cmd.dev_id and friends are filled by caller. */
int lb_ctrl_cmd(struct lb_ctrl *c, unsigned int nr,
		struct ublksrv_ctrl_cmd *cmd);
int lb_ctrl_add_dev(struct lb_ctrl *c, struct ublksrv_ctrl_dev_info *info);
int lb_ctrl_set_params(struct lb_ctrl *c, uint32_t id, struct ublk_params *p);
int lb_ctrl_get_params(struct lb_ctrl *c, uint32_t id, struct ublk_params *p);
int lb_ctrl_get_info(struct lb_ctrl *c, uint32_t id,
		     struct ublksrv_ctrl_dev_info *info);
int lb_ctrl_get_affinity(struct lb_ctrl *c, uint32_t id, unsigned int q,
			 void *cpuset, size_t len);
/* GET_FEATURES (6.5+): the UBLK_F_* bits this kernel supports. */
int lb_ctrl_get_features(struct lb_ctrl *c, uint64_t *features);
int lb_ctrl_simple(struct lb_ctrl *c, unsigned int nr, uint32_t id,
		   uint64_t data);
/* True once the kernel has answered only the legacy opcode numbers. */
bool lb_ctrl_legacy_opcodes(void);
/*
 * Makes later commands for device id carry its char device path, as the
 * kernel requires for an unprivileged device.
 */
void lb_ctrl_send_path(struct lb_ctrl *c, int id);
/*
 * GET_DEV_INFO2 (GET_DEV_INFO on kernels without it) for a device of any
 * kind; when it is unprivileged, later commands for it carry its path.
 */
int lb_ctrl_get_info2(struct lb_ctrl *c, uint32_t id,
		      struct ublksrv_ctrl_dev_info *info);

/*
 * unpriv.c: unprivileged devices (UBLK_F_UNPRIVILEGED_DEV). Each returns 0
 * or a negative errno with luablk_last_error() set.
 */
/* The error for a /dev/ublk-control this user may not open. */
int lb_unpriv_no_control(int err);
/* Refuses ADD_DEV flags the kernel would drop or reject for a non-root. */
int lb_unpriv_check_add(uint64_t ublk_flags);
/* Waits until /dev/ublk{c,b}ID is readable and writable by us (udev). */
int lb_unpriv_wait_node(int id, char kind);
/*
 * If the kernel refused a command on device id for lack of permission
 * (err is -EPERM or -EACCES), records why and returns err; else returns 0.
 */
int lb_unpriv_denied(int id, int err);

/* One hardware queue: its thread, ring and descriptors. queue.c */
struct lb_queue {
	struct luablk_dev *dev;
	struct luablk_handler *h;
	unsigned int q;
	int cpu; /* -1: not pinned */
	pthread_t thread;
	bool thread_started;
	void *ring; /* struct io_uring *, owned by the thread */
	const struct ublksrv_io_desc *descs;
	size_t descs_len;
	/* Startup handshake with luablk_dev_start(). */
	int start_err;
	char start_msg[256];
	bool started;
	/*
	 * For the watchdog (watchdog.c): the number of the batch the handler
	 * is running, 0 between batches, and that batch's size.
	 */
	uint64_t busy;
	uint64_t batches;
	unsigned int batch_n;
	bool abandoned; /* a close gave up on it (lb_queue_give_up) */
	bool ring_dropped;
};
int lb_queue_spawn(struct lb_queue *q);
/* Waits until the queue has its fetches in flight; returns its error. */
int lb_queue_wait_started(struct lb_queue *q);
/*
 * Joins the thread and releases the ring and descriptor mapping. Returns
 * false for a thread that a close gave up on and that is still inside its
 * backend: its handler and the device must then stay allocated.
 */
bool lb_queue_release(struct lb_queue *q);
/*
 * Gives up on a queue whose backend call has not returned: releases its
 * ring, so that the kernel fails the IO it holds and the device can stop.
 * The thread leaves when (if ever) the call returns. Returns false if the
 * queue was not inside its backend.
 */
bool lb_queue_give_up(struct lb_queue *q);
/* Releases the queue's ring once, from whichever thread gets here first. */
void lb_queue_drop_ring(struct lb_queue *q);
/*
 * Writes which backend call the queue's current batch is waiting on, such
 * as "read_at (4096 bytes at 0)"; for messages from another thread.
 */
void lb_queue_describe(const struct lb_queue *q, char *buf, size_t len);

/*
 * watchdog.c: while a wait that depends on the backend runs (what: such as
 * "closing"), says once a queue has been inside one backend call for
 * seconds, and which call. With on_signal, a SIGINT or SIGTERM (blocked by
 * the caller) gives up on the queues inside their backend
 * (lb_queue_give_up). Start returns NULL if it cannot start (it only
 * helps); stop ends it.
 */
struct lb_watchdog;
struct lb_watchdog *lb_watchdog_start(struct luablk_dev *dev, const char *what,
				      bool on_signal);
void lb_watchdog_stop(struct lb_watchdog *w);

/*
 * writeback.c: syncs every filesystem mounted from /dev/ublkbID or its
 * partitions, then the block device, while the device still serves.
 */
void lb_writeback_disk(int id);

/* The result of a batch entry the handler has not answered yet. */
#define LB_RESULT_PENDING INT32_MIN

/*
 * user_copy.c: USER_COPY mode. lb_user_copy_in() reads the batch's WRITE
 * data from the kernel into the tag buffers and returns how many entries
 * the backend should run: entries whose copy failed are moved past that
 * count with -EIO. lb_user_copy_out() hands successful READs' data to the
 * kernel (failing those it cannot). Both do nothing in the default mode.
 */
bool lb_user_copy_on(const struct luablk_dev *dev);
unsigned int lb_user_copy_in(struct lb_queue *q, unsigned int n);
void lb_user_copy_out(struct lb_queue *q, unsigned int n);
/*
 * The same for a parked IO the backend finished later: returns the result
 * to commit for tag (-EIO if its READ data could not be handed over).
 */
int32_t lb_user_copy_done(struct lb_queue *q, unsigned int tag, int32_t result);

struct luablk_dev {
	struct luablk_config cfg; /* strings below are our own copies */
	struct luablk_params params; /* effective (see luablk_dev_declare) */
	bool declared; /* queue 0's backend has declared its parameters */
	char *backend;
	char **args;
	char **filters;
	char lua_dir[4096];
	int id; /* -1 until ADD_DEV */
	struct ublksrv_ctrl_dev_info info; /* as the kernel returned it */
	struct lb_ctrl *ctrl;
	int char_fd;
	int stop_fd; /* eventfd: written once to make queue threads exit */
	int pause_fd; /* eventfd: readable while a reload parks the queues */
	/*
	 * eventfd: written when a close begins, so that queues holding IOs
	 * parked in an async backend start counting the close's deadline.
	 */
	int close_fd;
	bool giving_up; /* the close gave up: parked IOs fail now */
	bool let_go; /* lb_dev_let_go() ran */
	int event_fd; /* eventfd: a queue thread stopped on its own */
	bool added, started, closed;
	bool recovering; /* made by luablk_dev_recover for an existing id */
	bool published; /* regions linked under /run/luablk/ID */
	struct luablk_handler **handlers; /* one per queue */
	struct lb_queue *queues;
	unsigned int nr_queues;
	unsigned int stuck_queues; /* left in a backend call by a close */
	pthread_mutex_t lock; /* guards the fields below and start handshake */
	pthread_cond_t cond;
	struct lb_shared *shared;
	unsigned int queues_live;
	bool pausing; /* a reload wants every queue parked */
	unsigned int parked; /* queue threads waiting in lb_dev_park() */
	pthread_mutex_t reload_lock; /* one reload at a time */
};

/* device.c: a NULL-terminated copy of n strings (NULL if out of memory),
 * and its release. */
char **lb_strv_copy(const char *const *list, int n);
void lb_strv_free(char **list);

/*
 * device.c: tells the queues that a close has begun: those holding IOs
 * parked in an async backend give them the close's deadline, and see
 * giving_up on every tick after that.
 */
void lb_dev_closing(struct luablk_dev *dev);

/*
 * device.c: stops the queue threads and lets go of everything that pins
 * the char device: their rings and mappings, and the char fd. A thread
 * still inside its backend is left there (counted in stuck_queues). Runs
 * once, from the close or from a watchdog giving up on a stuck backend
 * while STOP_DEV waits; later calls return 0 at once. Returns 0 or a
 * negative errno.
 */
int lb_dev_let_go(struct luablk_dev *dev);

/* device.c: called by a queue thread when it leaves its loop. */
void lb_dev_queue_exited(struct luablk_dev *dev, bool on_its_own);
/* device.c: what SET_PARAMS advertises (or would) for this device. */
void lb_dev_advertised(const struct luablk_dev *dev, struct lb_caps *out);

/*
 * reload.c: called by a queue thread, between two batches, once the pause
 * poll fired; returns when the reload is over (at once if there is none).
 */
void lb_dev_park(struct luablk_dev *dev);
/* Whether a reload still wants the queues parked. */
bool lb_dev_pausing(struct luablk_dev *dev);

/*
 * device.c: luablk_dev_create() for a new device (recover_id -1), or for
 * device recover_id, which exists already and whose server died.
 */
int lb_dev_create(const struct luablk_config *cfg, int recover_id,
		  struct luablk_dev **out);
/*
 * device.c: after START_USER_RECOVERY, opens the char device, starts the
 * queues and sends END_USER_RECOVERY. On failure everything of ours is
 * released and the device is left to the kernel, quiesced.
 */
int lb_dev_serve_recovered(struct luablk_dev *dev);

/*
 * fork_guard.c: fds closed in every fork() child, so that children of a
 * serving process do not keep its rings and char device alive.
 */
void lb_fork_guard_add(int fd);
void lb_fork_guard_remove(int fd);

/* Finds the directory holding luablk/init.lua; writes it into buf. */
int lb_find_lua_dir(char *buf, size_t len);
/*
 * Opens the standard libraries in a new state and makes luablk's modules
 * (from dir) and the FFI declarations (package.loaded["luablk.cdef"])
 * visible to it.
 */
struct lua_State;
int lb_lua_prepare(struct lua_State *L, const char *dir);

/* The text of luablk_ffi.h, embedded at build time (cdef.c). */
extern const char lb_ffi_cdef[];

#endif
