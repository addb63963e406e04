// SPDX-License-Identifier: MIT
/*
 * One hardware queue: a pinned thread with its own io_uring on /dev/ublkcN.
 *
 * The kernel binds a queue to the thread that first submits its FETCH_REQs,
 * so the ring is created, fed and drained by this thread only. Each loop
 * turn drains every ready completion into the batch array, runs the whole
 * batch through the handler in one call, queues one COMMIT_AND_FETCH_REQ
 * per IO, and enters the kernel once to submit them and wait for more.
 * An async backend's waits (aio.c) complete on the same ring: their
 * completions go to the turn's wake array, the same call resumes them,
 * and the IOs the backend parks are committed when it reports them done.
 * Between two turns a live reload may park the thread (reload.c).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <liburing.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

#define STOP_TOKEN UINT64_MAX /* user_data of the stop-eventfd poll */
#define PAUSE_TOKEN (UINT64_MAX - 1) /* the reload's pause-eventfd poll */
#define CLOSE_TOKEN (UINT64_MAX - 2) /* the close-eventfd poll */
/* How often a queue with parked IOs looks at deadlines (io_timeout). */
#define TICK_MS 100

static size_t page_round(size_t n)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE);

	return (n + page - 1) / page * page;
}

static uint32_t io_opcode(unsigned int nr)
{
	if (lb_ctrl_legacy_opcodes())
		return nr;
	return nr == UBLK_IO_FETCH_REQ ? UBLK_U_IO_FETCH_REQ
				       : UBLK_U_IO_COMMIT_AND_FETCH_REQ;
}

/* The queue's SQ has a slot per tag, per wait slot and per poll, so this
 * only flushes if a caller queued more than that in one turn. */
static struct io_uring_sqe *get_sqe(struct io_uring *ring)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(ring);

	if (!sqe) {
		io_uring_submit(ring);
		sqe = io_uring_get_sqe(ring);
	}
	return sqe;
}

static void queue_io_cmd(struct lb_queue *q, struct io_uring *ring,
			 unsigned int nr, unsigned int tag, int32_t result)
{
	struct io_uring_sqe *sqe = get_sqe(ring);
	struct ublksrv_io_cmd *cmd = (struct ublksrv_io_cmd *)sqe->cmd;

	io_uring_prep_rw(IORING_OP_URING_CMD, sqe, 0, NULL, 0, 0);
	sqe->flags = IOSQE_FIXED_FILE; /* index 0: the char device */
	sqe->cmd_op = io_opcode(nr);
	sqe->user_data = tag;
	cmd->q_id = (uint16_t)q->q;
	cmd->tag = (uint16_t)tag;
	cmd->result = result;
	/* With USER_COPY the kernel takes no buffer (user_copy.c moves data).
	 */
	cmd->addr = 0;
	if (!lb_user_copy_on(q->dev))
		cmd->addr = (uint64_t)(uintptr_t)luablk_handler_buf(q->h, tag);
}

static int ring_setup(struct lb_queue *q, struct io_uring *ring)
{
	struct io_uring_params p;
	unsigned int entries = q->h->depth + 3 + q->h->turn.slots;
	int ret;

	/*
	 * The fastest servers' setup. With DEFER_TASKRUN completions are
	 * only reaped when this thread enters with GETEVENTS, which the loop
	 * does on every turn anyway. Kernels before 6.1 lack it: retry plain.
	 */
	memset(&p, 0, sizeof(p));
	p.flags = IORING_SETUP_COOP_TASKRUN | IORING_SETUP_SINGLE_ISSUER |
		  IORING_SETUP_DEFER_TASKRUN;
	ret = io_uring_queue_init_params(entries, ring, &p);
	if (ret == -EINVAL) {
		memset(&p, 0, sizeof(p));
		ret = io_uring_queue_init_params(entries, ring, &p);
	}
	if (ret < 0)
		return lb_fail(ret, "queue %u: io_uring setup: %s", q->q,
			       strerror(-ret));
	/*
	 * A fixed file saves an fd lookup per command. It pins the char
	 * device, so the ring must be gone before DEL_DEV (see teardown).
	 */
	ret = io_uring_register_files(ring, &q->dev->char_fd, 1);
	if (ret < 0) {
		io_uring_queue_exit(ring);
		return lb_fail(ret, "queue %u: register char fd: %s", q->q,
			       strerror(-ret));
	}
	/* A forked child must not keep the ring alive (fork_guard.c). */
	io_uring_ring_dontfork(ring);
	lb_fork_guard_add(ring->ring_fd);
	return 0;
}

static int map_descs(struct lb_queue *q)
{
	size_t stride = page_round(UBLK_MAX_QUEUE_DEPTH *
				   sizeof(struct ublksrv_io_desc));
	void *p;

	q->descs_len = page_round(q->h->depth * sizeof(struct ublksrv_io_desc));
	p = mmap(NULL, q->descs_len, PROT_READ, MAP_SHARED | MAP_POPULATE,
		 q->dev->char_fd, (off_t)(q->q * stride));
	if (p == MAP_FAILED)
		return lb_fail(-errno, "queue %u: mmap IO descriptors: %s",
			       q->q, strerror(errno));
	/* The mapping pins the char device: keep it out of children. */
	madvise(p, q->descs_len, MADV_DONTFORK);
	q->descs = p;
	return 0;
}

static void arm_poll(struct io_uring *ring, int fd, uint64_t token)
{
	struct io_uring_sqe *sqe = get_sqe(ring);

	io_uring_prep_poll_add(sqe, fd, POLLIN);
	sqe->user_data = token;
}

/* Arms the two polls and one FETCH_REQ per tag, and submits them. */
static int arm(struct lb_queue *q, struct io_uring *ring)
{
	int ret;

	arm_poll(ring, q->dev->stop_fd, STOP_TOKEN);
	arm_poll(ring, q->dev->pause_fd, PAUSE_TOKEN);
	arm_poll(ring, q->dev->close_fd, CLOSE_TOKEN);
	for (unsigned int tag = 0; tag < q->h->depth; tag++)
		queue_io_cmd(q, ring, UBLK_IO_FETCH_REQ, tag, 0);
	/*
	 * Up to 6.12 the fetches are handled inside this submit. Later
	 * kernels finish them as task work, which runs when the loop below
	 * enters with GETEVENTS; START_DEV waits for that either way.
	 */
	ret = io_uring_submit(ring);
	if (ret < 0)
		return lb_fail(ret, "queue %u: submit fetches: %s", q->q,
			       strerror(-ret));
	return 0;
}

static void fill(const struct lb_queue *q, struct luablk_io *io,
		 unsigned int tag)
{
	const struct ublksrv_io_desc *d = &q->descs[tag];
	uint32_t op_flags = d->op_flags;

	io->off = (double)(d->start_sector << 9);
	io->len = d->nr_sectors << 9;
	io->tag = (uint16_t)tag;
	io->op = (uint8_t)(op_flags & 0xff);
	io->flags = op_flags & ~0xffu;
	/* Until the handler answers; a close stuck on it can say which IO. */
	io->result = LB_RESULT_PENDING;
}

/* What the kernel gets: an IO the handler never answered fails. */
static int32_t settled(const struct luablk_io *io)
{
	return io->result == LB_RESULT_PENDING ? -EIO : io->result;
}

void lb_queue_drop_ring(struct lb_queue *q)
{
	struct io_uring *ring = q->ring;
	bool no = false;

	if (!ring ||
	    !__atomic_compare_exchange_n(&q->ring_dropped, &no, true, false,
					 __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST))
		return;
	lb_fork_guard_remove(ring->ring_fd);
	io_uring_queue_exit(ring);
}

/*
 * Runs one batch through the handler, marked busy for the watchdog.
 * Returns false if a close gave up on this queue meanwhile: the batch is
 * then never committed, and the ring (whose teardown fails its IO) is not
 * touched again. The seq_cst pair below and the one in lb_queue_give_up()
 * make sure that one of the two threads sees the other's store.
 */
static bool run_batch(struct lb_queue *q, unsigned int n)
{
	q->batch_n = n;
	__atomic_store_n(&q->busy, ++q->batches, __ATOMIC_RELAXED);
	luablk_handler_run(q->h, n);
	__atomic_store_n(&q->busy, 0, __ATOMIC_SEQ_CST);
	if (!__atomic_load_n(&q->abandoned, __ATOMIC_SEQ_CST))
		return true;
	lb_queue_drop_ring(q);
	return false;
}

bool lb_queue_give_up(struct lb_queue *q)
{
	uint64_t busy = __atomic_load_n(&q->busy, __ATOMIC_SEQ_CST);

	if (!busy)
		return false;
	__atomic_store_n(&q->abandoned, true, __ATOMIC_SEQ_CST);
	/* Still in that call: the thread will not touch the ring again. */
	if (__atomic_load_n(&q->busy, __ATOMIC_SEQ_CST) == busy)
		lb_queue_drop_ring(q);
	/* Otherwise it sees the flag after this batch or the next one. */
	return true;
}

static const char *method_of(uint8_t op)
{
	switch (op) {
	case LUABLK_OP_READ:
		return "read_at";
	case LUABLK_OP_WRITE:
		return "write_at";
	case LUABLK_OP_FLUSH:
		return "flush";
	case LUABLK_OP_DISCARD:
		return "discard";
	case LUABLK_OP_WRITE_ZEROES:
		return "write_zeroes";
	}
	return "an unknown operation";
}

void lb_queue_describe(const struct lb_queue *q, char *buf, size_t len)
{
	const struct luablk_io *batch = q->h->batch;

	/* Racy by design: the queue thread may be writing these fields. */
	for (unsigned int i = 0; i < q->batch_n; i++) {
		const struct luablk_io *io = &batch[i];

		if (__atomic_load_n(&io->result, __ATOMIC_RELAXED) !=
		    LB_RESULT_PENDING)
			continue;
		snprintf(buf, len, "%s (%u bytes at %.0f)", method_of(io->op),
			 io->len, io->off);
		return;
	}
	snprintf(buf, len, "a call");
}

/*
 * Commits what the turn just run finished: the new IOs that did not park,
 * and the parked ones the backend finished (turn.done).
 */
static void commit_turn(struct lb_queue *q, struct io_uring *ring,
			unsigned int n)
{
	struct luablk_handler *h = q->h;

	for (unsigned int i = 0; i < n; i++)
		if (h->batch[i].result != LUABLK_RESULT_PARKED)
			queue_io_cmd(q, ring, UBLK_IO_COMMIT_AND_FETCH_REQ,
				     h->batch[i].tag, settled(&h->batch[i]));
	for (unsigned int i = 0; i < h->turn.ndone; i++) {
		struct luablk_done *d = &h->turn.done[i];

		if (d->tag >= h->depth)
			continue;
		queue_io_cmd(q, ring, UBLK_IO_COMMIT_AND_FETCH_REQ, d->tag,
			     lb_user_copy_done(q, d->tag, d->result));
	}
}

/*
 * Runs a turn over batch[0..n) and the wakes already in the turn, then
 * queues the commits. Returns false if a close gave up on this queue.
 */
static bool run_turn(struct lb_queue *q, struct io_uring *ring, unsigned int n)
{
	unsigned int ready = lb_user_copy_in(q, n);

	/* USER_COPY moves the data around the backend's call. */
	if (!run_batch(q, ready))
		return false;
	lb_user_copy_out(q, ready);
	commit_turn(q, ring, n);
	return true;
}

/*
 * Enters the kernel once: submits what the turn queued and waits for at
 * least one completion, or for a tick while parked IOs have deadlines.
 */
static int enter(struct io_uring *ring, bool tick)
{
	struct __kernel_timespec ts = {.tv_nsec = TICK_MS * 1000000LL};
	struct io_uring_cqe *cqe;
	int ret;

	if (!tick)
		return io_uring_submit_and_wait(ring, 1);
	ret = io_uring_submit_and_wait_timeout(ring, &cqe, 1, &ts, NULL);
	return ret == -ETIME ? 0 : ret;
}

/* Per-loop state of serve(). */
struct serving {
	unsigned int live; /* tags not aborted yet */
	bool stop, pause, closing;
	bool aborted; /* the kernel has begun to abort our fetches */
	uint16_t *held; /* IOs that came while a reload waits for a drain */
	unsigned int nheld;
};

/* Sorts one completion; new IOs go to batch[*n]. */
static void reap_one(struct lb_queue *q, struct serving *s,
		     const struct io_uring_cqe *cqe, unsigned int *n)
{
	struct luablk_handler *h = q->h;
	struct luablk_turn *t = &h->turn;
	uint64_t ud = cqe->user_data;

	if (ud == STOP_TOKEN) {
		s->stop = true;
	} else if (ud == PAUSE_TOKEN) {
		s->pause = true;
	} else if (ud == CLOSE_TOKEN) {
		s->closing = true;
	} else if ((ud & ~0xffffffffULL) == LB_UD_AIO) {
		if (t->nwake < t->slots) {
			t->wake[t->nwake].slot = (uint32_t)ud;
			t->wake[t->nwake++].res = cqe->res;
		}
	} else if (ud == LB_UD_IGNORE) {
		/* a cancel's own answer */
	} else if (cqe->res == 0) {
		/* A reload waits for the parked IOs: hold new ones back. */
		if (s->pause && t->parked > 0)
			s->held[s->nheld++] = (uint16_t)ud;
		else
			fill(q, &h->batch[(*n)++], (unsigned)ud);
	} else {
		/* ABORT after STOP_DEV; anything else is ours. */
		s->live--;
		s->aborted = true;
		if (cqe->res != UBLK_IO_RES_ABORT)
			fprintf(stderr, "luablk: queue %u tag %llu: %s\n", q->q,
				(unsigned long long)ud, strerror(-cqe->res));
	}
}

/* Parks for a reload once no IO is parked in the backend, then runs the
 * IOs held back meanwhile. Returns false if a close gave up on us. */
static bool park(struct lb_queue *q, struct io_uring *ring, struct serving *s)
{
	unsigned int n = 0;

	if (!s->pause || s->stop)
		return true;
	/* A reload that gave up waiting no longer needs the drain. */
	if (q->h->turn.parked > 0 && lb_dev_pausing(q->dev))
		return true;
	/* Hand back this batch before the backend changes. */
	io_uring_submit(ring);
	lb_dev_park(q->dev);
	arm_poll(ring, q->dev->pause_fd, PAUSE_TOKEN);
	s->pause = false;
	for (; s->nheld > 0; s->nheld--)
		fill(q, &q->h->batch[n++], s->held[s->nheld - 1]);
	return n == 0 || run_turn(q, ring, n);
}

/* Serves until asked to stop or until the kernel aborts every fetch. */
static bool serve(struct lb_queue *q, struct io_uring *ring)
{
	struct luablk_handler *h = q->h;
	struct luablk_turn *t = &h->turn;
	struct serving s = {.live = h->depth};
	uint16_t held[UBLK_MAX_QUEUE_DEPTH];

	s.held = held;
	h->ring = ring;
	while (!s.stop && s.live > 0) {
		struct io_uring_cqe *cqe;
		unsigned int head, seen = 0, n = 0;
		bool tick = t->parked > 0 &&
			    (q->dev->cfg.io_timeout_ms || s.closing);
		int ret = enter(ring, tick);

		if (ret < 0 && ret != -EINTR && ret != -EAGAIN &&
		    ret != -EBUSY) {
			fprintf(stderr,
				"luablk: queue %u: io_uring_enter: %s\n", q->q,
				strerror(-ret));
			break;
		}
		io_uring_for_each_cqe (ring, head, cqe) {
			seen++;
			reap_one(q, &s, cqe, &n);
		}
		io_uring_cq_advance(ring, seen);
		if (tick)
			t->flags |= LUABLK_TURN_TICK;
		if (s.closing && t->parked > 0)
			t->flags |= LUABLK_TURN_CLOSING;
		if (__atomic_load_n(&q->dev->giving_up, __ATOMIC_RELAXED) &&
		    t->parked > 0)
			t->flags |= LUABLK_TURN_GIVE_UP;
		if ((n > 0 || t->nwake > 0 || t->flags) &&
		    !run_turn(q, ring, n))
			return false;
		if (!park(q, ring, &s))
			return false;
		/*
		 * Once the kernel aborts fetches (STOP_DEV, or a quiesce for a
		 * takeover), no new IO comes; the fetches that commits re-armed
		 * since are only cancelled when the ring goes. So leave as soon
		 * as this queue holds no IO: what it committed is complete.
		 */
		if (s.aborted && t->parked == 0)
			break;
	}
	/* Complete the last batch's IOs before the ring goes away. */
	io_uring_submit(ring);
	return s.stop;
}

static void set_started(struct lb_queue *q, int err)
{
	pthread_mutex_lock(&q->dev->lock);
	q->start_err = err;
	if (err)
		snprintf(q->start_msg, sizeof(q->start_msg), "%s",
			 luablk_last_error());
	q->started = true;
	pthread_cond_broadcast(&q->dev->cond);
	pthread_mutex_unlock(&q->dev->lock);
}

static void *queue_main(void *arg)
{
	struct lb_queue *q = arg;
	struct io_uring *ring = q->ring;
	sigset_t all;
	char name[16];
	bool asked = false;
	int ret;

	/* Signals belong to the application's threads, never to a queue. */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, NULL);
	/* Named so that ps, top and the tests find each queue's thread. */
	snprintf(name, sizeof(name), "luablk-q%u", q->q);
	pthread_setname_np(pthread_self(), name);
	if (q->cpu >= 0) {
		cpu_set_t set;

		CPU_ZERO(&set);
		CPU_SET(q->cpu, &set);
		pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
	}
	/*
	 * A device used for writeback or swap must not wait on itself: its
	 * queue's own allocations must not recurse into IO, and it must not
	 * be throttled as a writer. Needs CAP_SYS_RESOURCE, so unprivileged
	 * servers go without.
	 */
	prctl(PR_SET_IO_FLUSHER, 1, 0, 0, 0);
	ret = ring_setup(q, ring);
	if (ret == 0) {
		ret = map_descs(q);
		if (ret == 0)
			ret = arm(q, ring);
		if (ret < 0) {
			lb_fork_guard_remove(ring->ring_fd);
			io_uring_queue_exit(ring);
		}
	}
	if (ret < 0) {
		free(q->ring);
		q->ring = NULL;
	}
	set_started(q, ret);
	if (ret == 0)
		asked = serve(q, ring);
	lb_dev_queue_exited(q->dev, !asked);
	return NULL;
}

int lb_queue_spawn(struct lb_queue *q)
{
	int ret;

	q->ring = calloc(1, sizeof(struct io_uring));
	if (!q->ring)
		return lb_fail(-ENOMEM, "out of memory");
	ret = pthread_create(&q->thread, NULL, queue_main, q);
	if (ret) {
		free(q->ring);
		q->ring = NULL;
		return lb_fail(-ret, "queue %u: pthread_create: %s", q->q,
			       strerror(ret));
	}
	q->thread_started = true;
	return 0;
}

int lb_queue_wait_started(struct lb_queue *q)
{
	int ret;

	pthread_mutex_lock(&q->dev->lock);
	while (!q->started)
		pthread_cond_wait(&q->dev->cond, &q->dev->lock);
	ret = q->start_err;
	pthread_mutex_unlock(&q->dev->lock);
	if (ret)
		lb_fail(ret, "%s", q->start_msg);
	return ret;
}

/* A thread a close gave up on may never come back from its backend. */
static bool join(struct lb_queue *q)
{
	struct timespec deadline;

	if (!__atomic_load_n(&q->abandoned, __ATOMIC_SEQ_CST))
		return pthread_join(q->thread, NULL) == 0;
	clock_gettime(CLOCK_REALTIME, &deadline);
	deadline.tv_sec += 1;
	if (pthread_timedjoin_np(q->thread, NULL, &deadline) == 0)
		return true;
	pthread_detach(q->thread);
	return false;
}

bool lb_queue_release(struct lb_queue *q)
{
	bool joined = true;

	if (q->thread_started) {
		q->thread_started = false;
		joined = join(q);
	}
	/*
	 * The ring and the mapping pin the char device, so both go even for
	 * a thread still inside its backend: it touches neither again.
	 */
	lb_queue_drop_ring(q);
	if (q->descs) {
		munmap((void *)q->descs, q->descs_len);
		q->descs = NULL;
	}
	/* That thread's Lua state and our memory stay in use. */
	if (joined && q->ring) {
		free(q->ring);
		q->ring = NULL;
	}
	return joined;
}
