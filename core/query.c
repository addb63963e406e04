// SPDX-License-Identifier: MIT
/* Machine-wide queries and commands: list, query, delete, features. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

int luablk_query(int id, struct luablk_dev_info *out)
{
	struct ublksrv_ctrl_dev_info info;
	struct ublk_params p;
	struct lb_ctrl *c;
	int ret;

	lb_clear_error();
	ret = lb_ctrl_open(&c);
	if (ret < 0)
		return ret;
	ret = lb_ctrl_get_info2(c, (uint32_t)id, &info);
	if (ret < 0) {
		lb_ctrl_close(c);
		if (lb_unpriv_denied(id, ret))
			return ret;
		if (ret == -ENODEV)
			return lb_fail(ret, "no ublk device %d", id);
		return lb_fail(ret, "device %d: %s", id, strerror(-ret));
	}
	/* A device whose server never set parameters reports none. */
	if (lb_ctrl_get_params(c, (uint32_t)id, &p) < 0)
		memset(&p, 0, sizeof(p));
	lb_ctrl_close(c);
	memset(out, 0, sizeof(*out));
	out->id = (int32_t)info.dev_id;
	out->pid = info.ublksrv_pid;
	out->state = info.state;
	out->queues = info.nr_hw_queues;
	out->depth = info.queue_depth;
	out->max_io = info.max_io_buf_bytes;
	out->flags = info.flags;
	out->owner_uid = info.owner_uid;
	out->owner_gid = info.owner_gid;
	if (p.types & UBLK_PARAM_TYPE_BASIC) {
		out->block_size = 1U << p.basic.logical_bs_shift;
		out->size = p.basic.dev_sectors << 9;
	}
	return 0;
}

static int by_number(const void *a, const void *b)
{
	return *(const int *)a - *(const int *)b;
}

int luablk_list(int *ids, int max)
{
	DIR *d = opendir("/sys/class/ublk-char");
	struct dirent *e;
	int n = 0, id;

	lb_clear_error();
	if (!d)
		return errno == ENOENT
			       ? 0
			       : lb_fail(-errno, "/sys/class/ublk-char: %s",
					 strerror(errno));
	while ((e = readdir(d))) {
		if (sscanf(e->d_name, "ublkc%d", &id) != 1)
			continue;
		if (n < max)
			ids[n] = id;
		n++;
	}
	closedir(d);
	qsort(ids, (size_t)(n < max ? n : max), sizeof(int), by_number);
	return n;
}

/*
 * TRY_STOP_DEV stops the device only while nobody has its disk open, and
 * from then on refuses new opens, so the DEL_DEV that follows cannot pull
 * it from under a mounted filesystem. Returns -EOPNOTSUPP on kernels
 * without it, -EBUSY for a device in use; -ENODEV (no disk any more) is
 * no reason not to delete.
 */
static int safe_stop(struct lb_ctrl *c, int id)
{
	uint64_t features = 0;
	int ret;

	if (lb_ctrl_get_features(c, &features) < 0 ||
	    !(features & UBLK_F_SAFE_STOP_DEV))
		return -EOPNOTSUPP;
	ret = lb_ctrl_simple(c, UBLK_CMD_TRY_STOP_DEV, (uint32_t)id, 0);
	return ret == -ENODEV ? 0 : ret;
}

int luablk_delete(int id, int flags)
{
	struct ublksrv_ctrl_dev_info info;
	bool served;
	struct lb_ctrl *c;
	int ret;

	lb_clear_error();
	ret = lb_ctrl_open(&c);
	if (ret < 0)
		return ret;
	/* Learns whether DEL_DEV must name the device's char node. */
	ret = lb_ctrl_get_info2(c, (uint32_t)id, &info);
	if (ret == 0 && (flags & LUABLK_DEL_ASYNC) &&
	    (info.flags & UBLK_F_UNPRIVILEGED_DEV)) {
		lb_ctrl_close(c);
		/* The kernel's permission check has no case for it: -EINVAL. */
		return lb_fail(-EOPNOTSUPP,
			       "device %d is unprivileged: the "
			       "kernel deletes those only "
			       "synchronously (drop --async)",
			       id);
	}
	/* A live server removes its own regions as it goes. */
	served = ret == 0 && info.state == UBLK_S_DEV_LIVE;
	if (ret == 0 && (flags & LUABLK_DEL_SAFE))
		ret = safe_stop(c, id);
	if (ret == 0)
		ret = lb_ctrl_simple(c,
				     (flags & LUABLK_DEL_ASYNC)
					     ? UBLK_CMD_DEL_DEV_ASYNC
					     : UBLK_CMD_DEL_DEV,
				     (uint32_t)id, 0);
	lb_ctrl_close(c);
	if (ret == -ENODEV)
		return lb_fail(ret, "no ublk device %d", id);
	if (lb_unpriv_denied(id, ret))
		return ret;
	if (ret == -EOPNOTSUPP && (flags & LUABLK_DEL_SAFE))
		return lb_fail(ret, "this kernel cannot refuse to remove a "
				    "device in use (--safe needs Linux 7.0, "
				    "UBLK_F_SAFE_STOP_DEV)");
	if (ret == -EBUSY && (flags & LUABLK_DEL_SAFE))
		return lb_fail(ret,
			       "device %d is in use (open, mounted or held "
			       "by a process): not removed",
			       id);
	if (ret < 0 && (flags & LUABLK_DEL_ASYNC) &&
	    (ret == -EOPNOTSUPP || ret == -EINVAL))
		return lb_fail(-EOPNOTSUPP, "this kernel has no DEL_DEV_ASYNC "
					    "(needs 6.9)");
	if (ret < 0)
		return lb_fail(ret, "delete device %d: %s", id, strerror(-ret));
	if (!served)
		lb_shared_remove(id);
	return 0;
}

int luablk_features(uint64_t *features)
{
	struct lb_ctrl *c;
	int ret;

	lb_clear_error();
	ret = lb_ctrl_open(&c);
	if (ret < 0)
		return ret;
	ret = lb_ctrl_get_features(c, features);
	lb_ctrl_close(c);
	if (ret < 0)
		return lb_fail(ret, "GET_FEATURES: %s (needs Linux 6.5)",
			       strerror(-ret));
	return 0;
}
