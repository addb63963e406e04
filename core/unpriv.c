// SPDX-License-Identifier: MIT
/*
 * Unprivileged devices (UBLK_F_UNPRIVILEGED_DEV): the checks and waits a
 * non-root server needs, and the one-line reasons for what the kernel
 * refuses. The kernel lets anyone who can open /dev/ublk-control create
 * such a device; every later command on it is checked against the
 * caller's access to /dev/ublkcN, which udev hands to the device's owner
 * (etc/97-ublk-device.rules running `luablk udev-owner`).
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "internal.h"

#define CONTROL "/dev/ublk-control"
#define RULE_HINT "README: Unprivileged devices"
/* How long udev may take to give a new node to its owner. */
#define NODE_WAIT_MS 10000

/* What the kernel's capable(CAP_SYS_ADMIN) will say for this process. */
static bool is_admin(void)
{
	struct __user_cap_header_struct h = {
		.version = _LINUX_CAPABILITY_VERSION_3,
	};
	struct __user_cap_data_struct d[2];

	if (syscall(SYS_capget, &h, d) < 0)
		return geteuid() == 0;
	return d[CAP_SYS_ADMIN / 32].effective & (1U << (CAP_SYS_ADMIN % 32));
}

int lb_unpriv_no_control(int err)
{
	char name[64], buf[1024];
	struct group gr, *g = NULL;
	struct stat st;

	if (stat(CONTROL, &st) < 0 || st.st_gid == 0 ||
	    (st.st_mode & (S_IRGRP | S_IWGRP)) != (S_IRGRP | S_IWGRP))
		return lb_fail(
			err, "permission denied on " CONTROL
			     ": run as root, or install "
			     "etc/97-ublk-device.rules and join group ublk "
			     "to create unprivileged devices (" RULE_HINT ")");
	if (getgrgid_r(st.st_gid, &gr, buf, sizeof(buf), &g) == 0 && g)
		snprintf(name, sizeof(name), "'%s'", g->gr_name);
	else
		snprintf(name, sizeof(name), "%u", (unsigned int)st.st_gid);
	return lb_fail(err,
		       "permission denied on " CONTROL
		       ": run as root, or join group %s, which may use it, "
		       "and log in again (" RULE_HINT ")",
		       name);
}

static bool file_mentions_helper(int dir, const char *name)
{
	char text[65536];
	ssize_t n;
	int fd;

	fd = openat(dir, name, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	n = read(fd, text, sizeof(text) - 1);
	close(fd);
	if (n <= 0)
		return false;
	text[n] = '\0';
	/* Ours, or ublksrv's helper, which does the same job. */
	return strstr(text, "udev-owner") || strstr(text, "ublk_chown");
}

/*
 * Without a udev rule the new /dev/ublkcN stays root's, and then the
 * device cannot even be deleted by the user who made it; so look for one
 * before asking the kernel for anything. LUABLK_UDEV_CHECK=0 skips this
 * for setups that hand out the nodes some other way.
 */
static int check_udev_rule(void)
{
	static const char *const dirs[] = {
		"/etc/udev/rules.d",	       "/run/udev/rules.d",
		"/usr/lib/udev/rules.d",       "/lib/udev/rules.d",
		"/usr/local/lib/udev/rules.d",
	};
	const char *skip = getenv("LUABLK_UDEV_CHECK");
	struct dirent *e;
	bool found = false;
	DIR *d;

	if (skip && !strcmp(skip, "0"))
		return 0;
	for (size_t i = 0; !found && i < LB_ARRAY_SIZE(dirs); i++) {
		d = opendir(dirs[i]);
		if (!d)
			continue;
		while (!found && (e = readdir(d))) {
			size_t n = strlen(e->d_name);

			if (n > 6 && !strcmp(e->d_name + n - 6, ".rules"))
				found = file_mentions_helper(dirfd(d),
							     e->d_name);
		}
		closedir(d);
	}
	if (found)
		return 0;
	return lb_fail(-EPERM,
		       "no udev rule gives unprivileged devices to their "
		       "owner: install etc/97-ublk-device.rules into "
		       "/etc/udev/rules.d (" RULE_HINT ")");
}

int lb_unpriv_check_add(uint64_t ublk_flags)
{
	if (is_admin())
		return 0;
	if (!(ublk_flags & UBLK_F_UNPRIVILEGED_DEV))
		return lb_fail(-EPERM,
			       "only root can create ordinary devices: use "
			       "--unprivileged (LUABLK_F_UNPRIVILEGED) for one "
			       "owned by you (" RULE_HINT ")");
	/* The kernel rejects user copy, and silently drops recovery. */
	if (ublk_flags & UBLK_F_USER_COPY)
		return lb_fail(-EINVAL, "user copy is not available for "
					"unprivileged devices");
	if (ublk_flags & (UBLK_F_USER_RECOVERY | UBLK_F_USER_RECOVERY_REISSUE |
			  UBLK_F_USER_RECOVERY_FAIL_IO))
		return lb_fail(-EINVAL, "crash recovery is not available for "
					"unprivileged devices");
	return check_udev_rule();
}

int lb_unpriv_wait_node(int id, char kind)
{
	char path[32];

	snprintf(path, sizeof(path), "/dev/ublk%c%d", kind, id);
	for (int waited = 0; waited < NODE_WAIT_MS; waited += 10) {
		if (faccessat(AT_FDCWD, path, R_OK | W_OK, AT_EACCESS) == 0)
			return 0;
		usleep(10000);
	}
	if (kind == 'c')
		return lb_fail(
			-EACCES,
			"%s did not become yours within %d s: is udevd "
			"running with etc/97-ublk-device.rules? (" RULE_HINT
			"); if it never does, root removes the device "
			"with 'luablk del %d'",
			path, NODE_WAIT_MS / 1000, id);
	return lb_fail(-EACCES,
		       "%s did not become yours within %d s: is udevd running "
		       "with etc/97-ublk-device.rules? (" RULE_HINT ")",
		       path, NODE_WAIT_MS / 1000);
}

int lb_unpriv_denied(int id, int err)
{
	char path[32];
	struct stat st;

	if (err == -EPERM && !is_admin())
		return lb_fail(err,
			       "device %d: permission denied: it was created "
			       "by root, and only root controls it",
			       id);
	if (err != -EACCES)
		return 0;
	snprintf(path, sizeof(path), "/dev/ublkc%d", id);
	if (stat(path, &st) == 0 && st.st_uid != geteuid())
		return lb_fail(err,
			       "device %d: permission denied: %s belongs to "
			       "uid %u, not to you",
			       id, path, (unsigned int)st.st_uid);
	return lb_fail(err, "device %d: permission denied on %s", id, path);
}
