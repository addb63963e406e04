// SPDX-License-Identifier: MIT
/*
 * A handler owns what one queue needs to serve IO apart from the kernel:
 * the per-tag buffers, the batch array and the backend. Queue threads and
 * the kernel-free test and benchmark drivers use it the same way.
 */
#include <errno.h>
#include <linux/time_types.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "internal.h"

const struct lb_handler_ops *lb_handler_ops_for(const char *backend)
{
	if (!strcmp(backend, "c-null"))
		return &lb_c_null_ops;
	if (!strcmp(backend, "c-mem"))
		return &lb_c_mem_ops;
	return &lb_lua_ops;
}

/* The tag buffers, the spares and the turn's arrays. */
static int init_turn(struct luablk_handler *h)
{
	unsigned int slots = lb_aio_slots(h->depth);

	h->tag_buf = calloc(h->depth, sizeof(*h->tag_buf));
	h->spare = calloc(h->depth, sizeof(*h->spare));
	h->turn.wake = calloc(slots, sizeof(*h->turn.wake));
	h->turn.done = calloc(h->depth, sizeof(*h->turn.done));
	h->timers = calloc(slots, sizeof(struct __kernel_timespec));
	if (!h->tag_buf || !h->spare || !h->turn.wake || !h->turn.done ||
	    !h->timers)
		return -ENOMEM;
	for (unsigned int i = 0; i < h->depth; i++) {
		h->tag_buf[i] = h->bufs + (size_t)i * h->max_io;
		h->spare[i] = h->bufs + (size_t)(h->depth + i) * h->max_io;
	}
	h->nspare = h->depth;
	h->turn.slots = slots;
	h->turn.spares = h->nspare;
	return 0;
}

int luablk_handler_new(struct luablk_dev *dev, unsigned int q,
		       struct luablk_handler **out)
{
	struct luablk_handler *h;
	int ret;

	h = calloc(1, sizeof(*h));
	if (!h)
		return lb_fail(-ENOMEM, "out of memory");
	h->dev = dev;
	h->q = q;
	h->depth = dev->cfg.depth;
	h->max_io = dev->cfg.max_io;
	h->batch = calloc(h->depth, sizeof(*h->batch));
	/*
	 * Reserve without committing: pages are only backed once an IO of
	 * that size touches them, so the spares cost nothing until used.
	 * DONTFORK keeps a forked helper from making the kernel's copies
	 * into these buffers copy-on-write.
	 */
	h->bufs_len = 2 * (size_t)h->depth * h->max_io;
	h->bufs = mmap(NULL, h->bufs_len, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (h->bufs == MAP_FAILED)
		h->bufs = NULL;
	if (!h->batch || !h->bufs || init_turn(h) < 0) {
		luablk_handler_free(h);
		return lb_fail(-ENOMEM,
			       "cannot allocate %u IO buffers of %u bytes",
			       h->depth, h->max_io);
	}
	madvise(h->bufs, h->bufs_len, MADV_DONTFORK);
	h->ops = lb_handler_ops_for(dev->cfg.backend);
	ret = h->ops->init(h);
	if (ret < 0) {
		h->ops = NULL;
		luablk_handler_free(h);
		return ret;
	}
	*out = h;
	return 0;
}

struct luablk_handler *luablk_dev_handler(struct luablk_dev *dev,
					  unsigned int q)
{
	return q < dev->nr_queues ? dev->handlers[q] : NULL;
}

struct luablk_io *luablk_handler_batch(struct luablk_handler *h)
{
	return h->batch;
}

uint8_t *luablk_handler_buf(struct luablk_handler *h, unsigned int tag)
{
	if (tag >= h->depth)
		return NULL;
	return h->tag_buf[tag];
}

struct luablk_turn *luablk_handler_turn(struct luablk_handler *h)
{
	return &h->turn;
}

uint8_t *luablk_handler_spare(struct luablk_handler *h, unsigned int tag)
{
	if (tag >= h->depth || h->nspare == 0)
		return NULL;
	h->tag_buf[tag] = h->spare[--h->nspare];
	h->turn.spares = h->nspare;
	return h->tag_buf[tag];
}

void luablk_handler_return(struct luablk_handler *h, uint8_t *buf)
{
	if (buf && h->nspare < h->depth)
		h->spare[h->nspare++] = buf;
	h->turn.spares = h->nspare;
}

/*
 * One turn: the new IOs batch[0..n), the wakes the caller put in the
 * turn, and the flags it set. Keeps the count of parked IOs, and leaves
 * the finished ones in turn.done until the next turn.
 */
void luablk_handler_run(struct luablk_handler *h, unsigned int n)
{
	struct luablk_turn *t = &h->turn;

	if (n > h->depth)
		n = h->depth;
	t->ndone = 0;
	h->ops->run(h, n);
	for (unsigned int i = 0; i < n; i++)
		t->parked += h->batch[i].result == LUABLK_RESULT_PARKED;
	if (t->ndone > h->depth)
		t->ndone = 0; /* a broken backend; its IOs stay parked */
	t->parked -= t->ndone < t->parked ? t->ndone : t->parked;
	t->nwake = 0;
	t->flags = 0;
}

void luablk_handler_free(struct luablk_handler *h)
{
	if (!h)
		return;
	if (h->ops)
		h->ops->fini(h);
	lb_aio_fini(h);
	if (h->bufs)
		munmap(h->bufs, h->bufs_len);
	free(h->batch);
	free(h->tag_buf);
	free(h->spare);
	free(h->turn.wake);
	free(h->turn.done);
	free(h->timers);
	free(h);
}
