// SPDX-License-Identifier: MIT
/*
 * Memory regions shared by all queues of a device. Each queue runs its own
 * Lua state, so a RAM disk cannot keep its bytes in a Lua table; it asks
 * for a named region here and every queue gets the same mapping.
 *
 * Regions are memfds, so that while the device runs they can be published
 * as /run/luablk/ID/NAME (a link to /proc/PID/fd/N): tools such as
 * `luablk stats ID` map a running device's counters and flags from another
 * process. The memory goes away with the serving process, however it ends.
 * A server that is not root cannot create /run/luablk; it publishes under
 * $XDG_RUNTIME_DIR/luablk instead (unprivileged devices).
 */
#define _GNU_SOURCE
#include <dirent.h>
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

#define PUBLISH_ROOT "/run/luablk"

/* The per-user publish directory, or "" if there is none. */
static void user_root(char *buf, size_t len)
{
	const char *xdg = getenv("XDG_RUNTIME_DIR");

	buf[0] = '\0';
	if (xdg && xdg[0] == '/')
		snprintf(buf, len, "%s/luablk", xdg);
}

/* Where this process publishes its devices' regions. */
static void publish_root(char *buf, size_t len)
{
	user_root(buf, len);
	if (geteuid() == 0 || !buf[0])
		snprintf(buf, len, "%s", PUBLISH_ROOT);
}

static struct lb_shared *find(struct lb_shared *s, const char *name)
{
	for (; s; s = s->next)
		if (!strcmp(s->name, name))
			return s;
	return NULL;
}

static void publish_one(struct luablk_dev *dev, const struct lb_shared *s)
{
	char link[PATH_MAX], target[64], root[PATH_MAX - 128];

	publish_root(root, sizeof(root));
	snprintf(link, sizeof(link), "%s/%d/%s", root, dev->id, s->name);
	snprintf(target, sizeof(target), "/proc/%d/fd/%d", getpid(), s->fd);
	unlink(link);
	if (symlink(target, link) < 0)
		fprintf(stderr, "luablk: cannot publish %s: %s\n", link,
			strerror(errno));
}

static int create(struct luablk_dev *dev, const char *name, uint64_t size,
		  struct lb_shared **out)
{
	struct lb_shared *s = calloc(1, sizeof(*s));
	char memfd_name[LUABLK_MAX_SHARED_NAME + 8];

	if (!s)
		return lb_fail(-ENOMEM, "out of memory");
	/* memfds are never charged up front: a sparse 1 TiB disk is fine. */
	snprintf(memfd_name, sizeof(memfd_name), "luablk:%s", name);
	s->fd = memfd_create(memfd_name, MFD_CLOEXEC);
	if (s->fd < 0 || ftruncate(s->fd, (off_t)size) < 0) {
		int err = errno;

		if (s->fd >= 0)
			close(s->fd);
		free(s);
		return lb_fail(-err, "shared region '%s' (%llu bytes): %s",
			       name, (unsigned long long)size, strerror(err));
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
	strcpy(s->name, name);
	s->size = size;
	s->next = dev->shared;
	dev->shared = s;
	if (dev->published)
		publish_one(dev, s);
	*out = s;
	return 0;
}

static bool valid_name(const char *name)
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

	if (!valid_name(name))
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

/* Removes ROOT/ID and its links (ours, or left by a dead server). */
static void remove_dir(int id)
{
	char path[PATH_MAX], root[PATH_MAX - 32];
	struct dirent *e;
	DIR *d;

	publish_root(root, sizeof(root));
	snprintf(path, sizeof(path), "%s/%d", root, id);
	d = opendir(path);
	if (!d)
		return;
	while ((e = readdir(d)))
		if (e->d_name[0] != '.')
			unlinkat(dirfd(d), e->d_name, 0);
	closedir(d);
	rmdir(path);
}

void lb_shared_publish(struct luablk_dev *dev)
{
	char path[PATH_MAX], root[PATH_MAX - 32];

	publish_root(root, sizeof(root));
	pthread_mutex_lock(&dev->lock);
	remove_dir(dev->id);
	snprintf(path, sizeof(path), "%s/%d", root, dev->id);
	if ((mkdir(root, 0755) == 0 || errno == EEXIST) &&
	    mkdir(path, 0700) == 0) {
		dev->published = true;
		for (struct lb_shared *s = dev->shared; s; s = s->next)
			publish_one(dev, s);
	}
	pthread_mutex_unlock(&dev->lock);
}

void lb_shared_unpublish(struct luablk_dev *dev)
{
	pthread_mutex_lock(&dev->lock);
	if (dev->published)
		remove_dir(dev->id);
	dev->published = false;
	pthread_mutex_unlock(&dev->lock);
}

int luablk_shared_open(int id, const char *name, void **out, uint64_t *out_size)
{
	char path[PATH_MAX], root[PATH_MAX - 128];
	struct stat st;
	void *p;
	int fd;

	if (!valid_name(name))
		return lb_fail(-EINVAL, "bad shared region name");
	snprintf(path, sizeof(path), PUBLISH_ROOT "/%d/%s", id, name);
	fd = open(path, O_RDWR | O_CLOEXEC);
	user_root(root, sizeof(root));
	if (fd < 0 && root[0]) {
		snprintf(path, sizeof(path), "%s/%d/%s", root, id, name);
		fd = open(path, O_RDWR | O_CLOEXEC);
	}
	if (fd < 0)
		return lb_fail(-errno,
			       "device %d has no shared region '%s' "
			       "(%s)",
			       id, name, strerror(errno));
	if (fstat(fd, &st) < 0 || st.st_size <= 0) {
		close(fd);
		return lb_fail(-EINVAL, "%s: not a shared region", path);
	}
	p = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED,
		 fd, 0);
	close(fd);
	if (p == MAP_FAILED)
		return lb_fail(-errno, "mmap %s: %s", path, strerror(errno));
	*out = p;
	if (out_size)
		*out_size = (uint64_t)st.st_size;
	return 0;
}

int luablk_shared_unmap(void *addr, uint64_t size)
{
	return munmap(addr, size) < 0 ? -errno : 0;
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
