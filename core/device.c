// SPDX-License-Identifier: MIT
/*
 * Device lifecycle: create (no kernel), start (ADD_DEV .. START_DEV) and
 * close. The teardown order lives in teardown() and nowhere else.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/sysinfo.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

void lb_strv_free(char **list)
{
	for (char **p = list; p && *p; p++)
		free(*p);
	free(list);
}

char **lb_strv_copy(const char *const *list, int n)
{
	char **out = calloc((size_t)n + 1, sizeof(char *));

	for (int i = 0; out && i < n; i++) {
		out[i] = strdup(list[i] ? list[i] : "");
		if (!out[i]) {
			lb_strv_free(out);
			return NULL;
		}
	}
	return out;
}

static int copy_config(struct luablk_dev *dev, const struct luablk_config *cfg)
{
	dev->cfg = *cfg;
	dev->backend = strdup(cfg->backend);
	dev->args = lb_strv_copy(cfg->args, cfg->argc);
	dev->filters = lb_strv_copy(cfg->filters, cfg->nfilters);
	if (!dev->backend || !dev->args || !dev->filters)
		return lb_fail(-ENOMEM, "out of memory");
	dev->cfg.backend = dev->backend;
	dev->cfg.args = (const char *const *)dev->args;
	dev->cfg.filters = (const char *const *)dev->filters;
	return 0;
}

static void free_device(struct luablk_dev *dev)
{
	for (unsigned int q = 0; dev->handlers && q < dev->nr_queues; q++)
		luablk_handler_free(dev->handlers[q]);
	free(dev->handlers);
	free(dev->queues);
	lb_shared_free_all(&dev->shared);
	lb_strv_free(dev->args);
	lb_strv_free(dev->filters);
	free(dev->backend);
	if (dev->stop_fd >= 0)
		close(dev->stop_fd);
	if (dev->event_fd >= 0)
		close(dev->event_fd);
	if (dev->pause_fd >= 0)
		close(dev->pause_fd);
	if (dev->close_fd >= 0)
		close(dev->close_fd);
	pthread_mutex_destroy(&dev->reload_lock);
	pthread_mutex_destroy(&dev->lock);
	pthread_cond_destroy(&dev->cond);
	free(dev);
}

/*
 * A Lua backend declares its parameters while queue 0 loads it; a C
 * baseline is known by its handler's caps.
 */
static int settle_params(struct luablk_dev *dev)
{
	const struct lb_caps *caps = &dev->handlers[0]->caps;
	struct luablk_params declared;
	uint32_t ops = 0;

	if (dev->declared)
		return 0;
	memset(&declared, 0, sizeof(declared));
	if (caps->write_cache)
		declared.attrs |= LUABLK_ATTR_WRITE_CACHE;
	if (caps->fua)
		declared.attrs |= LUABLK_ATTR_FUA;
	if (caps->discard)
		ops |= LUABLK_HAS_DISCARD;
	if (caps->write_zeroes)
		ops |= LUABLK_HAS_WRITE_ZEROES;
	/* The C baselines keep nothing volatile: FLUSH succeeds at once. */
	ops |= LUABLK_HAS_FLUSH;
	return luablk_dev_declare(dev, &declared, ops, 0);
}

int luablk_dev_create(const struct luablk_config *cfg, struct luablk_dev **out)
{
	return lb_dev_create(cfg, -1, out);
}

int lb_dev_create(const struct luablk_config *cfg, int recover_id,
		  struct luablk_dev **out)
{
	struct luablk_dev *dev;
	int ret, ncpu;

	lb_clear_error();
	ret = luablk_config_check(cfg);
	if (ret < 0)
		return ret;
	dev = calloc(1, sizeof(*dev));
	if (!dev)
		return lb_fail(-ENOMEM, "out of memory");
	pthread_mutex_init(&dev->lock, NULL);
	pthread_cond_init(&dev->cond, NULL);
	pthread_mutex_init(&dev->reload_lock, NULL);
	/* A recovering backend sees its id, and finds its kept regions. */
	dev->id = recover_id;
	dev->recovering = recover_id >= 0;
	dev->char_fd = -1;
	dev->stop_fd = eventfd(0, EFD_CLOEXEC);
	dev->event_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	dev->pause_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	dev->close_fd = eventfd(0, EFD_CLOEXEC);
	if (dev->stop_fd < 0 || dev->event_fd < 0 || dev->pause_fd < 0 ||
	    dev->close_fd < 0) {
		ret = lb_fail(-errno, "eventfd: %s", strerror(errno));
		goto fail;
	}
	ret = copy_config(dev, cfg);
	if (ret < 0)
		goto fail;
	/* The kernel caps queues at the number of possible CPUs. */
	ncpu = get_nprocs_conf();
	dev->nr_queues = cfg->queues;
	if (ncpu > 0 && dev->nr_queues > (unsigned int)ncpu)
		dev->nr_queues = (unsigned int)ncpu;
	dev->cfg.queues = dev->nr_queues;
	if (lb_handler_ops_for(dev->backend) == &lb_lua_ops) {
		ret = lb_find_lua_dir(dev->lua_dir, sizeof(dev->lua_dir));
		if (ret < 0)
			goto fail;
	}
	dev->handlers = calloc(dev->nr_queues, sizeof(*dev->handlers));
	if (!dev->handlers) {
		ret = lb_fail(-ENOMEM, "out of memory");
		goto fail;
	}
	/* What the factories see until queue 0's backend declares its own. */
	lb_params_resolve(&dev->cfg.params, dev->cfg.flags, NULL,
			  LUABLK_HAS_DISCARD | LUABLK_HAS_WRITE_ZEROES,
			  &dev->params);
	for (unsigned int q = 0; q < dev->nr_queues; q++) {
		ret = luablk_handler_new(dev, q, &dev->handlers[q]);
		if (ret == 0 && q == 0)
			ret = settle_params(dev);
		if (ret < 0)
			goto fail;
	}
	*out = dev;
	return 0;
fail:
	free_device(dev);
	return ret;
}

/* Picks an unused CPU from the queue's affinity set, or -1. */
static int pick_cpu(struct luablk_dev *dev, unsigned int q, cpu_set_t *used)
{
	cpu_set_t set;
	int first = -1;

	if (dev->cfg.flags & LUABLK_F_NO_PIN)
		return -1;
	if (lb_ctrl_get_affinity(dev->ctrl, (uint32_t)dev->id, q, &set,
				 sizeof(set)) < 0)
		return -1;
	for (int cpu = 0; cpu < CPU_SETSIZE; cpu++) {
		if (!CPU_ISSET(cpu, &set))
			continue;
		if (first < 0)
			first = cpu;
		if (!CPU_ISSET(cpu, used)) {
			CPU_SET(cpu, used);
			return cpu;
		}
	}
	return first;
}

/* The UBLK_F_* recovery bits that cfg flags ask for. */
static uint64_t recovery_flags(uint32_t flags)
{
	uint64_t f = 0;

	if (flags &
	    (LUABLK_F_RECOVERABLE | LUABLK_F_REISSUE | LUABLK_F_FAIL_IO))
		f |= UBLK_F_USER_RECOVERY;
	if (flags & LUABLK_F_REISSUE)
		f |= UBLK_F_USER_RECOVERY_REISSUE;
	if (flags & LUABLK_F_FAIL_IO)
		f |= UBLK_F_USER_RECOVERY_FAIL_IO;
	return f;
}

/*
 * ADD_DEV drops feature bits the kernel does not know without a word, so
 * a device asked to fail IO without a server would quietly queue it
 * instead. features: what GET_FEATURES reported.
 */
static int check_fail_io(const struct luablk_dev *dev, uint64_t features)
{
	if ((dev->cfg.flags & LUABLK_F_FAIL_IO) &&
	    !(features & UBLK_F_USER_RECOVERY_FAIL_IO))
		return lb_fail(-EOPNOTSUPP,
			       "the running kernel does not support "
			       "UBLK_F_USER_RECOVERY_FAIL_IO (--fail-io needs "
			       "Linux 6.13 or later)");
	return 0;
}

/* The same for USER_COPY: refused before anything exists. */
static int check_user_copy(const struct luablk_dev *dev, uint64_t features)
{
	if (!(dev->cfg.flags & LUABLK_F_USER_COPY))
		return 0;
	if (dev->cfg.flags & LUABLK_F_UNPRIVILEGED)
		return lb_fail(-EINVAL, "--user-copy is not available to "
					"unprivileged devices (the kernel "
					"refuses it)");
	if (!(features & UBLK_F_USER_COPY))
		return lb_fail(-EOPNOTSUPP, "this kernel has no USER_COPY "
					    "(UBLK_F_USER_COPY needs Linux "
					    "6.5)");
	return 0;
}

/*
 * From 6.19 START_DEV only queues the partition scan, which a kernel worker
 * runs later, so partitions appeared at some point after `add` returned.
 * Where the kernel lets the server do the scan itself (NO_AUTO_PART_SCAN,
 * 7.0), luablk asks for it and scans before it calls the device ready
 * (scan_partitions), as 6.12 did inside START_DEV. Unprivileged devices
 * are never scanned, by any kernel. Sets *flag to the ADD_DEV bit.
 */
static int part_scan_flag(const struct luablk_dev *dev, uint64_t features,
			  uint64_t *flag)
{
	*flag = 0;
	if ((dev->cfg.flags & LUABLK_F_NO_PART_SCAN) &&
	    !(features & UBLK_F_NO_AUTO_PART_SCAN))
		return lb_fail(-EOPNOTSUPP,
			       "this kernel always scans partitions "
			       "(--no-part-scan needs Linux 7.0, "
			       "UBLK_F_NO_AUTO_PART_SCAN)");
	if (!(dev->cfg.flags & LUABLK_F_UNPRIVILEGED))
		*flag = features & UBLK_F_NO_AUTO_PART_SCAN;
	return 0;
}

/*
 * BLKRRPART reads the partition table through the queues, which serve
 * already. A table that cannot be read leaves a disk without partitions,
 * as the kernel's own scan does, so its errors are not the start's.
 */
static void scan_partitions(const struct luablk_dev *dev)
{
	char path[64];
	int fd;

	if (!(dev->info.flags & UBLK_F_NO_AUTO_PART_SCAN) ||
	    (dev->info.flags & UBLK_F_UNPRIVILEGED_DEV) ||
	    (dev->cfg.flags & LUABLK_F_NO_PART_SCAN))
		return;
	snprintf(path, sizeof(path), "/dev/ublkb%d", dev->id);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	if (ioctl(fd, BLKRRPART) < 0 && errno != EINVAL)
		fprintf(stderr, "luablk: device %d: partition scan: %s\n",
			dev->id, strerror(errno));
	close(fd);
}

static int add_dev(struct luablk_dev *dev)
{
	struct ublksrv_ctrl_dev_info *info = &dev->info;
	uint64_t wanted = recovery_flags(dev->cfg.flags), scan_flag, features;
	int ret;

	/* Without GET_FEATURES (before 6.5) none of the newer bits exist. */
	if (lb_ctrl_get_features(dev->ctrl, &features) < 0)
		features = 0;
	ret = check_fail_io(dev, features);
	if (ret == 0)
		ret = check_user_copy(dev, features);
	if (ret == 0)
		ret = part_scan_flag(dev, features, &scan_flag);
	if (ret < 0)
		return ret;
	memset(info, 0, sizeof(*info));
	info->flags = wanted | scan_flag;
	/*
	 * Where the kernel can quiesce a device (6.16), a recoverable one can
	 * also be taken over by a new server without failing any IO
	 * (luablk recover --takeover).
	 */
	if ((wanted & UBLK_F_USER_RECOVERY) && (features & UBLK_F_QUIESCE))
		info->flags |= UBLK_F_QUIESCE;
	if (dev->cfg.flags & LUABLK_F_USER_COPY)
		info->flags |= UBLK_F_USER_COPY;
	info->nr_hw_queues = (uint16_t)dev->nr_queues;
	info->queue_depth = (uint16_t)dev->cfg.depth;
	info->max_io_buf_bytes = dev->cfg.max_io;
	info->dev_id =
		dev->cfg.dev_id < 0 ? UINT32_MAX : (uint32_t)dev->cfg.dev_id;
	info->ublksrv_pid = getpid();
	if (dev->cfg.flags & LUABLK_F_UNPRIVILEGED)
		info->flags |= UBLK_F_UNPRIVILEGED_DEV;
	ret = lb_unpriv_check_add(info->flags);
	if (ret < 0)
		return ret;
	ret = lb_ctrl_add_dev(dev->ctrl, info);
	if (ret == -EEXIST)
		return lb_fail(ret, "ADD_DEV: device id %d is already in use",
			       dev->cfg.dev_id);
	if (ret == -EACCES)
		return lb_fail(ret,
			       "ADD_DEV: the limit of unprivileged devices "
			       "is reached (ublk_drv parameter ublks_max)");
	if (ret < 0)
		return lb_fail(ret, "ADD_DEV: %s", strerror(-ret));
	dev->added = true;
	dev->id = (int)info->dev_id;
	if ((info->flags & wanted) != wanted)
		return lb_fail(
			-EOPNOTSUPP,
			"the running kernel does not support crash "
			"recovery (UBLK_F_USER_RECOVERY needs Linux 6.1)");
	/* The kernel may have lowered the queue count; drop extra states. */
	while (dev->nr_queues > info->nr_hw_queues) {
		dev->nr_queues--;
		luablk_handler_free(dev->handlers[dev->nr_queues]);
		dev->handlers[dev->nr_queues] = NULL;
	}
	dev->cfg.queues = dev->nr_queues;
	/* The kernel kept the flag: we lack CAP_SYS_ADMIN. */
	if (info->flags & UBLK_F_UNPRIVILEGED_DEV) {
		lb_ctrl_send_path(dev->ctrl, dev->id);
		/* SET_PARAMS already needs /dev/ublkcN to be ours. */
		return lb_unpriv_wait_node(dev->id, 'c');
	}
	return 0;
}

void lb_dev_advertised(const struct luablk_dev *dev, struct lb_caps *out)
{
	const struct luablk_params *p = &dev->params;

	out->write_cache = p->attrs & LUABLK_ATTR_WRITE_CACHE;
	out->fua = p->attrs & LUABLK_ATTR_FUA;
	out->discard = p->max_discard != 0;
	out->write_zeroes = p->max_write_zeroes != 0;
}

static int set_params(struct luablk_dev *dev)
{
	struct ublk_params p;
	int ret;

	lb_params_to_ublk(&dev->params, dev->cfg.size,
			  dev->info.max_io_buf_bytes, &p);
	ret = lb_ctrl_set_params(dev->ctrl, (uint32_t)dev->id, &p);
	if (ret < 0)
		return lb_fail(ret, "SET_PARAMS: %s", strerror(-ret));
	return 0;
}

static int open_char_dev(struct luablk_dev *dev)
{
	char path[64];

	snprintf(path, sizeof(path), "/dev/ublkc%d", dev->id);
	/*
	 * udev may still be creating or chmod-ing the node, and on 7.x a
	 * dead server's release work keeps the node busy for a moment after
	 * START_USER_RECOVERY: retry briefly.
	 */
	for (int i = 0; i < 200; i++) {
		dev->char_fd = open(path, O_RDWR | O_CLOEXEC);
		if (dev->char_fd >= 0) {
			lb_fork_guard_add(dev->char_fd);
			return 0;
		}
		if (errno != ENOENT && errno != EACCES && errno != EBUSY)
			break;
		usleep(5000);
	}
	return lb_fail(-errno, "open %s: %s", path, strerror(errno));
}

static int start_queues(struct luablk_dev *dev)
{
	cpu_set_t used;
	int ret = 0;

	CPU_ZERO(&used);
	dev->queues = calloc(dev->nr_queues, sizeof(*dev->queues));
	if (!dev->queues)
		return lb_fail(-ENOMEM, "out of memory");
	for (unsigned int q = 0; q < dev->nr_queues; q++) {
		struct lb_queue *lq = &dev->queues[q];

		lq->dev = dev;
		lq->h = dev->handlers[q];
		lq->q = q;
		lq->cpu = pick_cpu(dev, q, &used);
		ret = lb_queue_spawn(lq);
		if (ret < 0)
			return ret;
		dev->queues_live++;
	}
	for (unsigned int q = 0; q < dev->nr_queues; q++) {
		int err = lb_queue_wait_started(&dev->queues[q]);

		if (err < 0 && ret == 0)
			ret = err;
	}
	return ret;
}

void lb_dev_closing(struct luablk_dev *dev)
{
	uint64_t one = 1;

	if (write(dev->close_fd, &one, sizeof(one)) < 0)
		fprintf(stderr, "luablk: device %d: close eventfd: %s\n",
			dev->id, strerror(errno));
}

/* True while every queue thread still serves (none left on its own). */
static bool all_serving(struct luablk_dev *dev)
{
	bool all;

	pthread_mutex_lock(&dev->lock);
	all = dev->queues_live == dev->nr_queues;
	pthread_mutex_unlock(&dev->lock);
	return all;
}

/*
 * STOP_DEV while the queues still serve. del_gendisk() inside it writes
 * back what a mounted filesystem and the block device's page cache hold,
 * and that IO must reach the backend, or it is lost. The kernel then
 * aborts every fetch, and each queue thread leaves its loop once all of
 * its tags are aborted. Returns STOP_DEV's result.
 */
static int stop_serving(struct luablk_dev *dev, uint32_t flags)
{
	struct lb_watchdog *w;
	uint64_t f = dev->info.flags;
	int ret;

	/* A recoverable device fails new IO from the start of STOP_DEV. */
	if ((f & UBLK_F_USER_RECOVERY) && !(f & UBLK_F_USER_RECOVERY_FAIL_IO))
		lb_writeback_disk(dev->id);
	w = lb_watchdog_start(dev, "closing", flags & LUABLK_CLOSE_GIVE_UP);
	lb_dev_closing(dev);
	ret = lb_ctrl_simple(dev->ctrl, UBLK_CMD_STOP_DEV, (uint32_t)dev->id,
			     0);
	lb_watchdog_stop(w);
	return ret;
}

int lb_dev_let_go(struct luablk_dev *dev)
{
	bool no = false;
	uint64_t one = 1;
	int ret = 0;

	if (!__atomic_compare_exchange_n(&dev->let_go, &no, true, false,
					 __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST))
		return 0;
	if (dev->queues) {
		/* A no-op for threads that left on the aborts. */
		if (write(dev->stop_fd, &one, sizeof(one)) < 0)
			ret = -errno;
		for (unsigned int q = 0; q < dev->nr_queues; q++)
			if (!lb_queue_release(&dev->queues[q]))
				dev->stuck_queues++;
	}
	if (dev->char_fd >= 0) {
		lb_fork_guard_remove(dev->char_fd);
		close(dev->char_fd);
		dev->char_fd = -1;
	}
	return ret;
}

/*
 * The one place that knows the teardown order. A device that serves gets
 * STOP_DEV first (stop_serving), and its queue threads exit on the aborts
 * that follow. Otherwise (a failed start, or a queue that already left)
 * the queue threads are told to stop; IO arriving after their rings are
 * gone is failed by the kernel. Either way the rings and mappings, which
 * pin the char device, go next, then the char device itself; only then
 * can DEL_DEV complete.
 */
static int teardown(struct luablk_dev *dev, uint32_t flags)
{
	bool stopped = false;
	int ret = 0, r;

	if (dev->queues && dev->started && dev->added && all_serving(dev)) {
		r = stop_serving(dev, flags);
		/* -ENODEV: someone else deleted it already. */
		stopped = r == 0 || r == -ENODEV;
		if (!stopped)
			ret = lb_fail(r, "STOP_DEV: %s", strerror(-r));
	} else if (dev->started && dev->added && luablk_dev_handed_over(dev)) {
		/* The device, and the regions it keeps, are the new server's.
		 */
		dev->added = false;
		dev->published = false;
	}
	r = lb_dev_let_go(dev);
	if (r < 0 && !ret)
		ret = r;
	if (dev->started)
		lb_shared_unpublish(dev);
	if (dev->added) {
		r = stopped ? 0
			    : lb_ctrl_simple(dev->ctrl, UBLK_CMD_STOP_DEV,
					     (uint32_t)dev->id, 0);
		if (r < 0 && r != -ENODEV && !ret)
			ret = lb_fail(r, "STOP_DEV: %s", strerror(-r));
		r = -EOPNOTSUPP;
		if (flags & LUABLK_CLOSE_ASYNC)
			r = lb_ctrl_simple(dev->ctrl, UBLK_CMD_DEL_DEV_ASYNC,
					   (uint32_t)dev->id, 0);
		/* Before 6.9 there is no async delete: fall back to DEL_DEV. */
		if (r == -EOPNOTSUPP || r == -EINVAL)
			r = lb_ctrl_simple(dev->ctrl, UBLK_CMD_DEL_DEV,
					   (uint32_t)dev->id, 0);
		if (r < 0 && r != -ENODEV && !ret)
			ret = lb_fail(r, "DEL_DEV: %s", strerror(-r));
		dev->added = false;
	}
	lb_ctrl_close(dev->ctrl);
	dev->ctrl = NULL;
	if (dev->stuck_queues && !ret)
		ret = lb_fail(-ETIMEDOUT,
			      "device %d is gone, but %u queue thread(s) are "
			      "still inside a backend call that never returned",
			      dev->id, dev->stuck_queues);
	return ret;
}

int luablk_dev_handed_over(struct luablk_dev *dev)
{
	struct ublksrv_ctrl_dev_info info;

	if (!(dev->info.flags & UBLK_F_QUIESCE) || !dev->ctrl ||
	    all_serving(dev))
		return false;
	/* STOP_DEV marks the device dead before it aborts the fetches. */
	return lb_ctrl_get_info(dev->ctrl, (uint32_t)dev->id, &info) == 0 &&
	       info.state != UBLK_S_DEV_DEAD;
}

int luablk_dev_start(struct luablk_dev *dev)
{
	int ret;

	lb_clear_error();
	if (dev->added || dev->closed)
		return lb_fail(-EALREADY, "device was already started once");
	ret = lb_ctrl_open(&dev->ctrl);
	if (ret == 0)
		ret = add_dev(dev);
	if (ret == 0)
		ret = set_params(dev);
	if (ret == 0)
		ret = open_char_dev(dev);
	if (ret == 0)
		ret = start_queues(dev);
	if (ret == 0) {
		/* Queues serve READs already: START_DEV scans partitions. */
		ret = lb_ctrl_simple(dev->ctrl, UBLK_CMD_START_DEV,
				     (uint32_t)dev->id, (uint64_t)getpid());
		if (ret < 0)
			lb_fail(ret, "START_DEV: %s", strerror(-ret));
		else
			scan_partitions(dev);
	}
	/* Usable means openable by its owner: wait for udev's chown. */
	if (ret == 0 && (dev->info.flags & UBLK_F_UNPRIVILEGED_DEV))
		ret = lb_unpriv_wait_node(dev->id, 'b');
	if (ret < 0) {
		char msg[512];

		snprintf(msg, sizeof(msg), "%s", luablk_last_error());
		teardown(dev, 0);
		free(dev->queues);
		dev->queues = NULL;
		dev->id = -1;
		dev->closed = true; /* the stop eventfd has fired */
		return lb_fail(ret, "%s", msg);
	}
	dev->started = true;
	lb_shared_publish(dev);
	return 0;
}

int lb_dev_serve_recovered(struct luablk_dev *dev)
{
	int ret = open_char_dev(dev);

	if (ret == 0)
		ret = start_queues(dev);
	if (ret == 0) {
		/* Waits until every queue has its fetches in, then unquiesces.
		 */
		ret = lb_ctrl_simple(dev->ctrl, UBLK_CMD_END_USER_RECOVERY,
				     (uint32_t)dev->id, (uint64_t)getpid());
		if (ret < 0)
			lb_fail(ret, "END_USER_RECOVERY: %s", strerror(-ret));
	}
	if (ret < 0) {
		char msg[512];

		/* Not added: teardown leaves STOP_DEV and DEL_DEV alone. */
		snprintf(msg, sizeof(msg), "%s", luablk_last_error());
		teardown(dev, 0);
		dev->closed = true;
		return lb_fail(ret, "%s", msg);
	}
	dev->added = true;
	dev->started = true;
	lb_shared_publish(dev);
	return 0;
}

int luablk_dev_new(const struct luablk_config *cfg, struct luablk_dev **out)
{
	struct luablk_dev *dev;
	int ret = luablk_dev_create(cfg, &dev);

	if (ret < 0)
		return ret;
	ret = luablk_dev_start(dev);
	if (ret < 0) {
		char msg[512];

		snprintf(msg, sizeof(msg), "%s", luablk_last_error());
		free_device(dev);
		return lb_fail(ret, "%s", msg);
	}
	*out = dev;
	return 0;
}

int luablk_dev_close(struct luablk_dev *dev, uint32_t flags)
{
	int ret;

	if (!dev)
		return 0;
	lb_clear_error();
	ret = teardown(dev, flags);
	dev->closed = true;
	/* A thread still inside its backend uses the device and its state. */
	if (!dev->stuck_queues)
		free_device(dev);
	return ret;
}

void lb_dev_queue_exited(struct luablk_dev *dev, bool on_its_own)
{
	uint64_t one = 1;

	pthread_mutex_lock(&dev->lock);
	dev->queues_live--;
	pthread_cond_broadcast(&dev->cond); /* a reload may count on it */
	pthread_mutex_unlock(&dev->lock);
	if (on_its_own && write(dev->event_fd, &one, sizeof(one)) < 0)
		fprintf(stderr, "luablk: device %d: eventfd write failed\n",
			dev->id);
}

int luablk_dev_id(const struct luablk_dev *dev)
{
	return dev->id;
}

int luablk_dev_info(const struct luablk_dev *dev, struct luablk_dev_info *info)
{
	memset(info, 0, sizeof(*info));
	info->id = dev->id;
	info->pid = dev->started ? getpid() : -1;
	info->state = dev->started ? UBLK_S_DEV_LIVE : UBLK_S_DEV_DEAD;
	info->queues = dev->nr_queues;
	info->depth = dev->cfg.depth;
	info->max_io = dev->added || dev->started ? dev->info.max_io_buf_bytes
						  : dev->cfg.max_io;
	info->block_size = dev->params.logical_block;
	info->size = dev->cfg.size;
	info->flags = dev->info.flags;
	info->owner_uid = dev->info.owner_uid;
	info->io_timeout_ms = dev->cfg.io_timeout_ms;
	info->owner_gid = dev->info.owner_gid;
	return 0;
}

int luablk_dev_event_fd(const struct luablk_dev *dev)
{
	return dev->event_fd;
}

static void wait_signals(sigset_t *set)
{
	sigemptyset(set);
	sigaddset(set, SIGINT);
	sigaddset(set, SIGTERM);
	sigaddset(set, SIGHUP);
	/* The fault filter's flag: `luablk add` turns it on and off. */
	sigaddset(set, SIGUSR1);
	sigaddset(set, SIGUSR2);
}

int luablk_signals_block(void)
{
	sigset_t set;

	wait_signals(&set);
	return -pthread_sigmask(SIG_BLOCK, &set, NULL);
}

int luablk_dev_wait(struct luablk_dev *dev, int timeout_ms)
{
	struct signalfd_siginfo si;
	struct pollfd pfd[2];
	sigset_t set;
	int sfd, ret;

	wait_signals(&set);
	sfd = signalfd(-1, &set, SFD_CLOEXEC);
	if (sfd < 0)
		return lb_fail(-errno, "signalfd: %s", strerror(errno));
	pfd[0] = (struct pollfd){.fd = sfd, .events = POLLIN};
	pfd[1] = (struct pollfd){.fd = dev->event_fd, .events = POLLIN};
	do
		ret = poll(pfd, 2, timeout_ms);
	while (ret < 0 && errno == EINTR);
	if (ret < 0)
		ret = lb_fail(-errno, "poll: %s", strerror(errno));
	else if (ret == 0)
		ret = -ETIMEDOUT;
	else if (pfd[0].revents & POLLIN)
		ret = read(sfd, &si, sizeof(si)) == sizeof(si)
			      ? (int)si.ssi_signo
			      : -EIO;
	else
		ret = 0;
	close(sfd);
	return ret;
}
