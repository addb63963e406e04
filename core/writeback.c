// SPDX-License-Identifier: MIT
/*
 * Writing back what the page cache holds for a device while it still
 * serves. STOP_DEV does that itself for most devices: del_gendisk() syncs
 * a mounted filesystem and the block device before the disk goes. For a
 * recoverable device, though, the kernel first makes every new request
 * fail (force_abort, in ublk_stop_dev), so that writeback would meet EIO;
 * the server does it beforehand instead.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

#define MAX_NODES 256 /* the disk and its partitions */

struct nodes {
	unsigned int n;
	unsigned int major[MAX_NODES], minor[MAX_NODES];
};

static void add_node(struct nodes *set, const char *dev_file)
{
	unsigned int major, minor;
	FILE *f = fopen(dev_file, "re");

	if (!f)
		return;
	if (fscanf(f, "%u:%u", &major, &minor) == 2 && set->n < MAX_NODES) {
		set->major[set->n] = major;
		set->minor[set->n] = minor;
		set->n++;
	}
	fclose(f);
}

/* The device numbers of /dev/ublkbID and its partitions, from sysfs. */
static void disk_nodes(int id, struct nodes *set)
{
	char dir[64], name[32], path[PATH_MAX];
	struct dirent *e;
	DIR *d;

	set->n = 0;
	snprintf(dir, sizeof(dir), "/sys/block/ublkb%d", id);
	snprintf(name, sizeof(name), "ublkb%dp", id);
	snprintf(path, sizeof(path), "%s/dev", dir);
	add_node(set, path);
	d = opendir(dir);
	if (!d)
		return;
	while ((e = readdir(d)))
		if (!strncmp(e->d_name, name, strlen(name))) {
			snprintf(path, sizeof(path), "%s/%s/dev", dir,
				 e->d_name);
			add_node(set, path);
		}
	closedir(d);
}

static bool has_node(const struct nodes *set, unsigned int major,
		     unsigned int minor)
{
	for (unsigned int i = 0; i < set->n; i++)
		if (set->major[i] == major && set->minor[i] == minor)
			return true;
	return false;
}

/* mountinfo writes space, tab, newline and backslash as \ooo. */
static void unescape(char *s)
{
	char *out = s;

	for (; *s; s++) {
		if (s[0] == '\\' && s[1] >= '0' && s[1] <= '3' && s[2] &&
		    s[3]) {
			*out++ = (char)((s[1] - '0') * 64 + (s[2] - '0') * 8 +
					(s[3] - '0'));
			s += 3;
		} else {
			*out++ = *s;
		}
	}
	*out = '\0';
}

static void sync_mounts(const struct nodes *set)
{
	unsigned int major, minor;
	char *line = NULL, mnt[PATH_MAX];
	size_t cap = 0;
	FILE *f = fopen("/proc/self/mountinfo", "re");
	int fd;

	if (!f)
		return;
	while (getline(&line, &cap, f) > 0) {
		if (sscanf(line, "%*s %*s %u:%u %*s %4095s", &major, &minor,
			   mnt) != 3 ||
		    !has_node(set, major, minor))
			continue;
		unescape(mnt);
		fd = open(mnt, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (fd >= 0) {
			syncfs(fd);
			close(fd);
		}
	}
	free(line);
	fclose(f);
}

void lb_writeback_disk(int id)
{
	struct nodes set;
	char path[64];
	int fd;

	disk_nodes(id, &set);
	sync_mounts(&set);
	snprintf(path, sizeof(path), "/dev/ublkb%d", id);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		fsync(fd);
		close(fd);
	}
}
