// SPDX-License-Identifier: MIT
/*
 * Memory regions shared by all queues of a device. Each queue runs its own
 * Lua state, so a RAM disk cannot keep its bytes in a Lua table; it asks
 * for a named region here and every queue gets the same mapping.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "internal.h"

static struct lb_shared *find(struct lb_shared *s, const char *name)
{
	for (; s; s = s->next)
		if (!strcmp(s->name, name))
			return s;
	return NULL;
}

static int create(struct luablk_dev *dev, const char *name, uint64_t size,
		  struct lb_shared **out)
{
	struct lb_shared *s = calloc(1, sizeof(*s));

	if (!s)
		return lb_fail(-ENOMEM, "out of memory");
	/* NORESERVE: a sparse 1 TiB RAM disk costs only what is written. */
	s->addr = mmap(NULL, size, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (s->addr == MAP_FAILED) {
		free(s);
		return lb_fail(-ENOMEM,
			       "cannot map %llu bytes for shared "
			       "region '%s'",
			       (unsigned long long)size, name);
	}
	madvise(s->addr, size, MADV_DONTFORK);
	strcpy(s->name, name);
	s->size = size;
	s->next = dev->shared;
	dev->shared = s;
	*out = s;
	return 0;
}

int luablk_dev_shared(struct luablk_dev *dev, const char *name, uint64_t size,
		      void **out, uint64_t *out_size)
{
	struct lb_shared *s;
	int ret = 0;

	if (!name || !name[0] || strlen(name) >= LUABLK_MAX_SHARED_NAME)
		return lb_fail(-EINVAL,
			       "shared region name must be 1..%d bytes",
			       LUABLK_MAX_SHARED_NAME - 1);
	pthread_mutex_lock(&dev->lock);
	s = find(dev->shared, name);
	if (!s && size == 0)
		ret = lb_fail(-ENOENT, "no shared region '%s'", name);
	else if (s && size && size != s->size)
		ret = lb_fail(-EEXIST,
			      "shared region '%s' has %llu bytes, "
			      "not %llu",
			      name, (unsigned long long)s->size,
			      (unsigned long long)size);
	else if (!s)
		ret = create(dev, name, size, &s);
	pthread_mutex_unlock(&dev->lock);
	if (ret < 0)
		return ret;
	*out = s->addr;
	if (out_size)
		*out_size = s->size;
	return 0;
}

void lb_shared_free_all(struct lb_shared **list)
{
	struct lb_shared *s = *list, *next;

	for (; s; s = next) {
		next = s->next;
		munmap(s->addr, s->size);
		free(s);
	}
	*list = NULL;
}
