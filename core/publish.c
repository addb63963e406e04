// SPDX-License-Identifier: MIT
/*
 * The publish directory of a device: ROOT/ID, where ROOT is /run/luablk
 * for root and $XDG_RUNTIME_DIR/luablk for other users. While the device
 * runs it holds
 *   pid         the serving process's pid, so that a directory a dead
 *               server left is never taken for the live server's;
 *   NAME        each shared region: a link to /proc/PID/fd/N (a memfd),
 *               or for a recoverable device the region's file itself;
 *   reload-*    reload requests and their answers (lua/luablk/reload.lua).
 *
 * Other processes, often root, read it. Nothing in a directory that
 * another user can write is trusted: a reader takes a link only as the
 * number N of an fd that the device's own server (the pid the kernel
 * reports) holds as a luablk memfd, checks the opened file's owner
 * against the device's owner, and never follows anything else. A server
 * creates files only in directories of its own user that are closed to
 * others.
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

/* Where this process publishes its devices. */
static void publish_root(char *buf, size_t len)
{
	const char *xdg = getenv("XDG_RUNTIME_DIR");

	if (geteuid() != 0 && xdg && xdg[0] == '/')
		snprintf(buf, len, "%s/luablk", xdg);
	else
		snprintf(buf, len, "%s", LB_PUBLISH_ROOT);
}

/*
 * Whether path is a directory (not a link to one) of user uid without
 * any of the mode bits in closed.
 */
static bool dir_of(const char *path, uid_t uid, mode_t closed)
{
	struct stat st;

	return lstat(path, &st) == 0 && S_ISDIR(st.st_mode) &&
	       st.st_uid == uid && !(st.st_mode & closed);
}

int luablk_publish_dir(int id, char *buf, size_t len)
{
	char root[PATH_MAX - 32];
	int n;

	publish_root(root, sizeof(root));
	n = snprintf(buf, len, "%s/%d", root, id);
	if (n < 0 || (size_t)n >= len)
		return -ENAMETOOLONG;
	if (!dir_of(root, geteuid(), S_IWGRP | S_IWOTH) ||
	    !dir_of(buf, geteuid(), S_IRWXG | S_IRWXO))
		return -ENOENT;
	return 0;
}

void lb_publish_region(struct luablk_dev *dev, struct lb_shared *s)
{
	char dir[PATH_MAX - 128], link[PATH_MAX], target[64];
	int ret;

	if (s->linked || luablk_publish_dir(dev->id, dir, sizeof(dir)) < 0)
		return;
	snprintf(link, sizeof(link), "%s/%s", dir, s->name);
	unlink(link);
	if (s->persistent) {
		/* Gives the O_TMPFILE file its name (no capability needed). */
		snprintf(target, sizeof(target), "/proc/self/fd/%d", s->fd);
		ret = linkat(AT_FDCWD, target, AT_FDCWD, link,
			     AT_SYMLINK_FOLLOW);
		s->linked = ret == 0;
	} else {
		snprintf(target, sizeof(target), "/proc/%d/fd/%d", getpid(),
			 s->fd);
		ret = symlink(target, link);
	}
	if (ret < 0)
		fprintf(stderr, "luablk: cannot publish %s: %s\n", link,
			strerror(errno));
}

/* Empties and removes this user's ROOT/ID (ours, or a dead server's). */
static void remove_dir(int id)
{
	char path[PATH_MAX];
	struct dirent *e;
	DIR *d;

	if (luablk_publish_dir(id, path, sizeof(path)) < 0)
		return;
	d = opendir(path);
	if (!d)
		return;
	while ((e = readdir(d)))
		if (e->d_name[0] != '.')
			unlinkat(dirfd(d), e->d_name, 0);
	closedir(d);
	rmdir(path);
}

void lb_shared_remove(int id)
{
	remove_dir(id);
}

/* Writes our pid into dir/pid, replacing what a dead server left. */
static int write_pid(const char *dir)
{
	char path[PATH_MAX], text[16];
	int fd, n, ret = 0;

	if (snprintf(path, sizeof(path), "%s/pid", dir) >= (int)sizeof(path))
		return -ENAMETOOLONG;
	unlink(path);
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
		  0600);
	if (fd < 0)
		return -errno;
	n = snprintf(text, sizeof(text), "%d\n", getpid());
	if (write(fd, text, (size_t)n) != n)
		ret = -EIO;
	close(fd);
	return ret;
}

/* Makes ROOT and ROOT/ID, ours and closed to others; 0 or -errno. */
static int make_dir(const struct luablk_dev *dev, char *path, size_t len)
{
	char root[PATH_MAX - 32];

	publish_root(root, sizeof(root));
	if (mkdir(root, 0755) < 0 && errno != EEXIST)
		return -errno;
	/* What a dead server left is stale, unless we recover its device. */
	if (!dev->recovering)
		remove_dir(dev->id);
	snprintf(path, len, "%s/%d", root, dev->id);
	if (mkdir(path, 0700) < 0 && errno != EEXIST)
		return -errno;
	if (luablk_publish_dir(dev->id, path, len) < 0) {
		fprintf(stderr,
			"luablk: not publishing device %d: %s or %s/%d is "
			"not a directory of this user closed to others\n",
			dev->id, root, root, dev->id);
		return -EPERM;
	}
	return write_pid(path);
}

void lb_shared_publish(struct luablk_dev *dev)
{
	char path[PATH_MAX];
	int ret;

	pthread_mutex_lock(&dev->lock);
	ret = make_dir(dev, path, sizeof(path));
	if (ret == 0) {
		dev->published = true;
		for (struct lb_shared *s = dev->shared; s; s = s->next)
			lb_publish_region(dev, s);
	} else if (ret != -EPERM) {
		fprintf(stderr, "luablk: cannot publish device %d in %s: %s\n",
			dev->id, path, strerror(-ret));
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

/*
 * The reader's side. A region entry is accepted as
 *  - a link whose text is exactly /proc/PID/fd/N, PID being the live
 *    device's server, and fd N of that process a luablk memfd of that
 *    name; or
 *  - a regular file in root's own /run/luablk/ID (a recoverable
 *    device's region, which outlives its server);
 * and the file opened must belong to the device's owner.
 */
static int open_link(const char *path, const struct luablk_dev_info *info,
		     const char *name)
{
	char text[64], want[64], fdpath[64], memfd[LUABLK_MAX_SHARED_NAME + 32];
	int pid, fdnum, fd;
	ssize_t n;

	n = readlink(path, text, sizeof(text) - 1);
	if (n < 0)
		return -errno;
	text[n] = '\0';
	if (sscanf(text, "/proc/%d/fd/%d", &pid, &fdnum) != 2)
		return -EPERM;
	snprintf(want, sizeof(want), "/proc/%d/fd/%d", pid, fdnum);
	if (strcmp(text, want) || pid != info->pid ||
	    info->state != LUABLK_STATE_LIVE)
		return -ESTALE;
	n = readlink(want, fdpath, sizeof(fdpath) - 1);
	if (n < 0)
		return -ESTALE;
	fdpath[n] = '\0';
	snprintf(memfd, sizeof(memfd), "/memfd:luablk:%s (deleted)", name);
	if (strcmp(fdpath, memfd))
		return -EPERM;
	fd = open(want, O_RDWR | O_CLOEXEC);
	return fd < 0 ? -errno : fd;
}

static int open_entry(const char *dir, bool roots, const char *name,
		      const struct luablk_dev_info *info)
{
	char path[PATH_MAX];
	struct stat st;
	int fd;

	if (snprintf(path, sizeof(path), "%s/%s", dir, name) >=
	    (int)sizeof(path))
		return -ENAMETOOLONG;
	if (lstat(path, &st) < 0)
		return -errno;
	if (S_ISLNK(st.st_mode)) {
		fd = open_link(path, info, name);
	} else if (S_ISREG(st.st_mode) && roots) {
		fd = open(path, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
		if (fd < 0)
			fd = -errno;
	} else {
		return -EPERM;
	}
	if (fd < 0)
		return fd;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) ||
	    st.st_uid != info->owner_uid || st.st_size <= 0) {
		close(fd);
		return -EPERM;
	}
	return fd;
}

/*
 * Finds name among the directories device info may publish in: root's,
 * the caller's own ($XDG_RUNTIME_DIR), and the owner's usual
 * /run/user/UID. Returns an fd or -errno (-ENODEV: no directory at all).
 */
static int find_region(const struct luablk_dev_info *info, const char *name)
{
	const char *xdg = getenv("XDG_RUNTIME_DIR");
	char dirs[3][PATH_MAX - 128], pidfile[PATH_MAX];
	int ret = -ENODEV, fd, n = 0;

	snprintf(dirs[n++], sizeof(dirs[0]), LB_PUBLISH_ROOT "/%d", info->id);
	if (xdg && xdg[0] == '/')
		snprintf(dirs[n++], sizeof(dirs[0]), "%s/luablk/%d", xdg,
			 info->id);
	if (info->owner_uid != 0)
		snprintf(dirs[n++], sizeof(dirs[0]), "/run/user/%u/luablk/%d",
			 info->owner_uid, info->id);
	for (int i = 0; i < n; i++) {
		if (snprintf(pidfile, sizeof(pidfile), "%s/pid", dirs[i]) >=
			    (int)sizeof(pidfile) ||
		    access(pidfile, F_OK) < 0)
			continue;
		fd = open_entry(dirs[i],
				i == 0 && dir_of(dirs[i], 0, S_IRWXG | S_IRWXO),
				name, info);
		if (fd >= 0)
			return fd;
		if (ret == -ENODEV || ret == -ENOENT)
			ret = fd;
	}
	return ret;
}

int luablk_shared_open(int id, const char *name, void **out, uint64_t *out_size)
{
	struct luablk_dev_info info;
	struct stat st;
	void *p;
	int fd;

	if (!lb_valid_region_name(name))
		return lb_fail(-EINVAL, "bad shared region name");
	fd = luablk_query(id, &info);
	if (fd == -ENODEV)
		return lb_fail(-ENOENT, "device %d: no such device", id);
	if (fd < 0)
		return fd;
	fd = find_region(&info, name);
	if (fd == -ENODEV)
		return lb_fail(-ENOENT, "device %d is not served by luablk",
			       id);
	if (fd == -ENOENT)
		return lb_fail(-ENOENT, "device %d has no shared region '%s'",
			       id, name);
	if (fd < 0)
		return lb_fail(fd,
			       "device %d: '%s' is not a region that its "
			       "server published (%s)",
			       id, name, strerror(-fd));
	if (fstat(fd, &st) < 0) {
		close(fd);
		return lb_fail(-EIO, "device %d: cannot stat region '%s'", id,
			       name);
	}
	p = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED,
		 fd, 0);
	close(fd);
	if (p == MAP_FAILED)
		return lb_fail(-errno, "mmap region '%s' of device %d: %s",
			       name, id, strerror(errno));
	*out = p;
	if (out_size)
		*out_size = (uint64_t)st.st_size;
	return 0;
}

int luablk_shared_unmap(void *addr, uint64_t size)
{
	return munmap(addr, size) < 0 ? -errno : 0;
}
