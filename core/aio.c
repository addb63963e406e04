// SPDX-License-Identifier: MIT
/*
 * Waiting primitives for async backends. Each queues one SQE on the ring
 * of the queue serving the handler, tagged with a slot number that the
 * backend (lua/luablk/aio.lua) chose; the queue's loop submits it with
 * its commits in the same io_uring_enter and hands the completion back
 * as a wake in the next turn (queue.c). A handler without a queue (tests,
 * benchmarks) gets a small ring of its own, which luablk_handler_poll()
 * drives instead.
 */
#include <errno.h>
#include <liburing.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define OWN_RING_ENTRIES 256

unsigned int lb_aio_slots(unsigned int depth)
{
	return 4 * depth + 64;
}

static struct io_uring *ring_of(struct luablk_handler *h)
{
	struct io_uring *own;

	if (h->ring)
		return h->ring;
	if (h->own_ring)
		return h->own_ring;
	own = calloc(1, sizeof(*own));
	if (!own)
		return NULL;
	if (io_uring_queue_init(OWN_RING_ENTRIES, own, 0) < 0) {
		free(own);
		return NULL;
	}
	h->own_ring = own;
	return own;
}

void lb_aio_fini(struct luablk_handler *h)
{
	if (!h->own_ring)
		return;
	io_uring_queue_exit(h->own_ring);
	free(h->own_ring);
	h->own_ring = NULL;
}

/* An SQE for slot, or NULL with *err set. */
static struct io_uring_sqe *sqe_for(struct luablk_handler *h, uint32_t slot,
				    int *err)
{
	struct io_uring *ring;
	struct io_uring_sqe *sqe;

	*err = 0;
	if (slot >= h->turn.slots) {
		*err = -EINVAL;
		return NULL;
	}
	ring = ring_of(h);
	if (!ring) {
		*err = -ENOMEM;
		return NULL;
	}
	sqe = io_uring_get_sqe(ring);
	if (!sqe) {
		/* Rare (the SQ has room for a turn): submit early, go on. */
		io_uring_submit(ring);
		sqe = io_uring_get_sqe(ring);
	}
	if (!sqe) {
		*err = -EBUSY;
		return NULL;
	}
	sqe->user_data = LB_UD_AIO | slot;
	return sqe;
}

/* The common tail: a prepared SQE keeps the slot in user_data. */
#define PREP(h, slot, call)                                         \
	do {                                                        \
		int err_;                                           \
		struct io_uring_sqe *sqe = sqe_for(h, slot, &err_); \
		uint64_t ud_;                                       \
                                                                    \
		if (!sqe)                                           \
			return err_;                                \
		ud_ = sqe->user_data;                               \
		call;                                               \
		sqe->user_data = ud_;                               \
		return 0;                                           \
	} while (0)

int luablk_aio_read(struct luablk_handler *h, uint32_t slot, int fd, void *buf,
		    uint32_t len, double off)
{
	PREP(h, slot, io_uring_prep_read(sqe, fd, buf, len, (uint64_t)off));
}

int luablk_aio_write(struct luablk_handler *h, uint32_t slot, int fd,
		     const void *buf, uint32_t len, double off,
		     uint32_t rw_flags)
{
	PREP(h, slot, {
		io_uring_prep_write(sqe, fd, buf, len, (uint64_t)off);
		sqe->rw_flags = (int)rw_flags;
	});
}

int luablk_aio_fsync(struct luablk_handler *h, uint32_t slot, int fd,
		     uint32_t flags)
{
	PREP(h, slot,
	     io_uring_prep_fsync(sqe, fd,
				 flags & LUABLK_FSYNC_DATASYNC
					 ? IORING_FSYNC_DATASYNC
					 : 0));
}

int luablk_aio_fallocate(struct luablk_handler *h, uint32_t slot, int fd,
			 int mode, double off, double len)
{
	PREP(h, slot,
	     io_uring_prep_fallocate(sqe, fd, mode, (uint64_t)off,
				     (uint64_t)len));
}

int luablk_aio_sleep(struct luablk_handler *h, uint32_t slot, uint64_t ns)
{
	/* The kernel reads the timespec at submit time, after we return. */
	struct __kernel_timespec *ts;

	if (slot >= h->turn.slots)
		return -EINVAL;
	ts = (struct __kernel_timespec *)h->timers + slot;

	ts->tv_sec = (long long)(ns / 1000000000ULL);
	ts->tv_nsec = (long long)(ns % 1000000000ULL);
	PREP(h, slot, io_uring_prep_timeout(sqe, ts, 0, 0));
}

int luablk_aio_poll(struct luablk_handler *h, uint32_t slot, int fd,
		    uint32_t events)
{
	PREP(h, slot, io_uring_prep_poll_add(sqe, fd, events));
}

int luablk_aio_connect(struct luablk_handler *h, uint32_t slot, int fd,
		       const void *addr, uint32_t addrlen)
{
	PREP(h, slot,
	     io_uring_prep_connect(sqe, fd, (const struct sockaddr *)addr,
				   addrlen));
}

int luablk_aio_send(struct luablk_handler *h, uint32_t slot, int fd,
		    const void *buf, uint32_t len, int flags)
{
	PREP(h, slot, io_uring_prep_send(sqe, fd, buf, len, flags));
}

int luablk_aio_recv(struct luablk_handler *h, uint32_t slot, int fd, void *buf,
		    uint32_t len, int flags)
{
	PREP(h, slot, io_uring_prep_recv(sqe, fd, buf, len, flags));
}

int luablk_aio_cancel(struct luablk_handler *h, uint32_t slot)
{
	PREP(h, slot, {
		io_uring_prep_cancel64(sqe, LB_UD_AIO | slot, 0);
		ud_ = LB_UD_IGNORE;
	});
}

int luablk_handler_poll(struct luablk_handler *h, int timeout_ms)
{
	struct io_uring *ring = ring_of(h);
	struct __kernel_timespec ts = {
		.tv_sec = timeout_ms / 1000,
		.tv_nsec = (long long)(timeout_ms % 1000) * 1000000,
	};
	struct io_uring_cqe *cqe;
	unsigned int head, seen = 0;
	int ret;

	if (!ring || h->ring)
		return -EINVAL; /* a queue thread drives this handler */
	ret = io_uring_submit_and_wait_timeout(ring, &cqe, timeout_ms ? 1 : 0,
					       timeout_ms ? &ts : NULL, NULL);
	if (ret < 0 && ret != -ETIME && ret != -EINTR)
		return ret;
	h->turn.nwake = 0;
	io_uring_for_each_cqe (ring, head, cqe) {
		seen++;
		if ((cqe->user_data & ~0xffffffffULL) != LB_UD_AIO ||
		    h->turn.nwake >= h->turn.slots)
			continue;
		h->turn.wake[h->turn.nwake].slot = (uint32_t)cqe->user_data;
		h->turn.wake[h->turn.nwake++].res = cqe->res;
	}
	io_uring_cq_advance(ring, seen);
	ret = (int)h->turn.nwake;
	luablk_handler_run(h, 0);
	return ret;
}
