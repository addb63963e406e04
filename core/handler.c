// SPDX-License-Identifier: MIT
/*
 * A handler owns what one queue needs to serve IO apart from the kernel:
 * the per-tag buffers, the batch array and the backend. Queue threads and
 * the kernel-free test and benchmark drivers use it the same way.
 */
#include <errno.h>
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
	 * that size touches them. DONTFORK keeps a forked helper from
	 * making the kernel's copies into these buffers copy-on-write.
	 */
	h->bufs_len = (size_t)h->depth * h->max_io;
	h->bufs = mmap(NULL, h->bufs_len, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (!h->batch || h->bufs == MAP_FAILED) {
		h->bufs = NULL;
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
	return h->bufs + (size_t)tag * h->max_io;
}

void luablk_handler_run(struct luablk_handler *h, unsigned int n)
{
	if (n > h->depth)
		n = h->depth;
	h->ops->run(h, n);
}

void luablk_handler_free(struct luablk_handler *h)
{
	if (!h)
		return;
	if (h->ops)
		h->ops->fini(h);
	if (h->bufs)
		munmap(h->bufs, h->bufs_len);
	free(h->batch);
	free(h);
}
