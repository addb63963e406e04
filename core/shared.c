// SPDX-License-Identifier: MIT
/*
 * Memory regions shared by all queues of a device. Each queue runs its own
 * Lua state, so a RAM disk cannot keep its bytes in a Lua table; it asks
 * for a named region here and every queue gets the same mapping.
 *
 * Regions are memfds, so that while the device runs they can be published
 * as /run/luablk/ID/NAME (a link to /proc/PID/fd/N): tools such as
 * `luablk stats ID` map a running device's counters and flags from another
 * process (publish.c). The memory goes away with the serving process,
 * however it ends.
 *
 * A recoverable device's regions must outlive a crash instead, so they are
 * files in the same directory (/run is a tmpfs): made unnamed with
 * O_TMPFILE while the id is unknown, linked in once the device runs, found
 * again by the server that recovers the device, and removed with the
 * device. Only root's devices are recoverable, so those always live
 * under /run/luablk. They are reserved in full when created.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"

static struct lb_shared *find(struct lb_shared *s, const char *name)
{
	for (; s; s = s->next)
		if (!strcmp(s->name, name))
			return s;
	return NULL;
}

static bool recoverable(const struct luablk_dev *dev)
{
	return dev->cfg.flags &
	       (LUABLK_F_RECOVERABLE | LUABLK_F_REISSUE | LUABLK_F_FAIL_IO);
}

/*
 * The region a dead server of this device left, if any: returns its fd,
 * -ENOENT if there is none, or another -errno (with lb_fail).
 */
static int open_kept(const struct luablk_dev *dev, const char *name,
		     uint64_t size)
{
	char path[PATH_MAX];
	struct stat st;
	int fd;

	snprintf(path, sizeof(path), LB_PUBLISH_ROOT "/%d/%s", dev->id, name);
	/* O_NOFOLLOW: a link into a dead process's fds is not a region. */
	fd = open(path, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return -ENOENT;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		return -ENOENT;
	}
	if ((uint64_t)st.st_size != size) {
		close(fd);
		return lb_fail(-EEXIST,
			       "device %d kept shared region '%s' with %llu "
			       "bytes, not %llu",
			       dev->id, name, (unsigned long long)st.st_size,
			       (unsigned long long)size);
	}
	return fd;
}

/* A new unnamed file under LB_PUBLISH_ROOT, or -errno. */
static int new_persistent(void)
{
	int fd;

	if (mkdir(LB_PUBLISH_ROOT, 0755) < 0 && errno != EEXIST)
		return -errno;
	fd = open(LB_PUBLISH_ROOT, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	return fd < 0 ? -errno : fd;
}

/* Picks the region's backing file: kept, new persistent, or a memfd. */
static int region_fd(struct luablk_dev *dev, struct lb_shared *s, uint64_t size)
{
	char memfd_name[LUABLK_MAX_SHARED_NAME + 8];
	int fd;

	if (recoverable(dev) && dev->recovering) {
		fd = open_kept(dev, s->name, size);
		if (fd >= 0) {
			s->persistent = s->linked = true;
			return fd;
		}
		if (fd != -ENOENT)
			return fd;
	}
	if (recoverable(dev)) {
		fd = new_persistent();
		if (fd >= 0) {
			s->persistent = true;
			return fd;
		}
		fprintf(stderr,
			"luablk: shared region '%s' will not survive a crash: "
			"no file in " LB_PUBLISH_ROOT ": %s\n",
			s->name, strerror(-fd));
	}
	/* memfds are never charged up front: a sparse 1 TiB disk is fine. */
	snprintf(memfd_name, sizeof(memfd_name), "luablk:%s", s->name);
	fd = memfd_create(memfd_name, MFD_CLOEXEC);
	return fd < 0 ? -errno : fd;
}

/*
 * Gives a new region its size. A file on the /run tmpfs is reserved in
 * full: a sparse one would fault with SIGBUS, killing the server, the
 * first time a write finds the tmpfs full. A memfd stays sparse.
 */
static int size_region(struct lb_shared *s, uint64_t size)
{
	if (ftruncate(s->fd, (off_t)size) < 0)
		return -errno;
	if (s->persistent && fallocate(s->fd, 0, 0, (off_t)size) < 0)
		return -errno;
	return 0;
}

static int create(struct luablk_dev *dev, const char *name, uint64_t size,
		  struct lb_shared **out)
{
	struct lb_shared *s = calloc(1, sizeof(*s));
	int ret;

	if (!s)
		return lb_fail(-ENOMEM, "out of memory");
	strcpy(s->name, name);
	s->fd = region_fd(dev, s, size);
	if (s->fd == -EEXIST) { /* a kept region of another size */
		free(s);
		return -EEXIST;
	}
	ret = s->fd >= 0 && !s->linked ? size_region(s, size) : s->fd;
	if (ret < 0) {
		if (s->fd >= 0)
			close(s->fd);
		free(s);
		if (ret == -ENOSPC)
			return lb_fail(
				ret,
				"shared region '%s' (%llu bytes) does not "
				"fit in " LB_PUBLISH_ROOT
				" (a tmpfs; see df " LB_PUBLISH_ROOT ")",
				name, (unsigned long long)size);
		return lb_fail(ret, "shared region '%s' (%llu bytes): %s", name,
			       (unsigned long long)size, strerror(-ret));
	}
	s->addr =
		mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, s->fd, 0);
	if (s->addr == MAP_FAILED) {
		close(s->fd);
		free(s);
		return lb_fail(-ENOMEM,
			       "cannot map %llu bytes for shared "
			       "region '%s'",
			       (unsigned long long)size, name);
	}
	s->size = size;
	s->next = dev->shared;
	dev->shared = s;
	if (dev->published)
		lb_publish_region(dev, s);
	*out = s;
	return 0;
}

bool lb_valid_region_name(const char *name)
{
	size_t n = name ? strlen(name) : 0;

	return n > 0 && n < LUABLK_MAX_SHARED_NAME && !strchr(name, '/') &&
	       strcmp(name, ".") && strcmp(name, "..");
}

int luablk_dev_shared(struct luablk_dev *dev, const char *name, uint64_t size,
		      void **out, uint64_t *out_size)
{
	struct lb_shared *s;
	int ret = 0;

	if (!lb_valid_region_name(name))
		return lb_fail(-EINVAL,
			       "shared region names are 1..%d bytes "
			       "without '/'",
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
		close(s->fd);
		free(s);
	}
	*list = NULL;
}
