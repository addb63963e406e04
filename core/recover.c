// SPDX-License-Identifier: MIT
/*
 * Crash recovery: a new server for a recoverable device whose server died.
 *
 * When the server of a UBLK_F_USER_RECOVERY device dies, the kernel
 * cancels its fetches, requeues what it can, quiesces the queue (state
 * QUIESCED) and keeps /dev/ublkbN; once the dead process's char device fd
 * is released, START_USER_RECOVERY resets the queues for new fetches, and
 * END_USER_RECOVERY unquiesces them for the new server. Everything that
 * can be refused is checked before START_USER_RECOVERY, which cannot be
 * undone: a recovery that fails after it and before any fetch leaves a
 * device that only DEL_DEV can remove.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

#define WAIT_MS 30000 /* for a dying server to be gone */
#define POLL_MS 10
#define QUIESCE_MS 10000 /* for every queue to have an idle tag */
#define PF_EXITING 0x4 /* task flag, /proc/PID/stat field 9 */

/* True if pid is a process that is not on its way out. */
static bool server_alive(int pid)
{
	char path[64], buf[512], state;
	unsigned int flags;
	const char *p;
	FILE *f;
	size_t n;

	if (pid <= 0)
		return false;
	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	f = fopen(path, "re");
	if (!f)
		return false;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	/* The command name may hold anything; the fields follow its ')'. */
	p = strrchr(buf, ')');
	if (!p ||
	    sscanf(p + 1, " %c %*d %*d %*d %*d %*d %u", &state, &flags) != 2)
		return false;
	return state != 'Z' && state != 'X' && !(flags & PF_EXITING);
}

static const char *state_name(unsigned int state)
{
	switch (state) {
	case LUABLK_STATE_DEAD:
		return "dead";
	case LUABLK_STATE_LIVE:
		return "live";
	case LUABLK_STATE_QUIESCED:
		return "quiesced";
	case LUABLK_STATE_FAIL_IO:
		return "fail-io";
	}
	return "unknown";
}

static int get_info(struct lb_ctrl *c, int id,
		    struct ublksrv_ctrl_dev_info *info)
{
	int ret = lb_ctrl_get_info(c, (uint32_t)id, info);

	if (ret == -ENODEV)
		return lb_fail(ret, "no ublk device %d", id);
	if (ret < 0)
		return lb_fail(ret, "device %d: GET_DEV_INFO: %s", id,
			       strerror(-ret));
	return 0;
}

/*
 * Refuses what no amount of waiting fixes: a device that is not
 * recoverable, a stopped one, or one whose server is alive.
 */
static int check_recoverable(int id, const struct ublksrv_ctrl_dev_info *info,
			     bool takeover)
{
	if (!(info->flags & UBLK_F_USER_RECOVERY))
		return lb_fail(-EINVAL,
			       "device %d is not recoverable (it was added "
			       "without --recoverable)",
			       id);
	if (info->state == LUABLK_STATE_DEAD)
		return lb_fail(
			-EINVAL,
			"device %d is dead (stopped, or never started): "
			"nothing to recover; remove it with luablk del %d",
			id, id);
	if (info->state != LUABLK_STATE_LIVE ||
	    !server_alive(info->ublksrv_pid))
		return 0;
	if (!takeover)
		return lb_fail(-EBUSY,
			       "device %d is live, served by pid %d: only a "
			       "device whose server died can be recovered "
			       "(--takeover replaces a running server)",
			       id, info->ublksrv_pid);
	if (!(info->flags & UBLK_F_QUIESCE))
		return lb_fail(-EOPNOTSUPP,
			       "device %d cannot be taken over: the kernel "
			       "could not quiesce it when it was added "
			       "(--takeover needs Linux 6.16, UBLK_F_QUIESCE)",
			       id);
	return 0;
}

/* The device's own geometry and recovery flags, from the kernel. */
static int device_config(struct lb_ctrl *c, int id,
			 const struct ublksrv_ctrl_dev_info *info,
			 struct luablk_config *cfg)
{
	struct ublk_params p;
	int ret = lb_ctrl_get_params(c, (uint32_t)id, &p);

	if (ret < 0)
		return lb_fail(ret, "device %d: GET_PARAMS: %s", id,
			       strerror(-ret));
	if (!(p.types & UBLK_PARAM_TYPE_BASIC))
		return lb_fail(-EINVAL, "device %d has no parameters", id);
	cfg->size = p.basic.dev_sectors << 9;
	lb_params_from_ublk(&p, &cfg->params);
	cfg->queues = info->nr_hw_queues;
	cfg->depth = info->queue_depth;
	cfg->max_io = info->max_io_buf_bytes;
	cfg->dev_id = id;
	cfg->flags &= ~(uint32_t)(LUABLK_F_RECOVERABLE | LUABLK_F_REISSUE |
				  LUABLK_F_FAIL_IO);
	cfg->flags |= LUABLK_F_RECOVERABLE;
	if (info->flags & UBLK_F_USER_RECOVERY_REISSUE)
		cfg->flags |= LUABLK_F_REISSUE;
	if (info->flags & UBLK_F_USER_RECOVERY_FAIL_IO)
		cfg->flags |= LUABLK_F_FAIL_IO;
	/* The new server must move data the way the device was made for. */
	cfg->flags &= ~(uint32_t)LUABLK_F_USER_COPY;
	if (info->flags & UBLK_F_USER_COPY)
		cfg->flags |= LUABLK_F_USER_COPY;
	return 0;
}

static void sleep_ms(int ms)
{
	struct timespec ts = {.tv_sec = 0, .tv_nsec = ms * 1000000L};

	nanosleep(&ts, NULL);
}

static int timed_out(int id, const struct ublksrv_ctrl_dev_info *info)
{
	if (info->state == LUABLK_STATE_LIVE)
		return lb_fail(-ETIMEDOUT,
			       "device %d is still live %d s after its server "
			       "(pid %d) died: the kernel has not quiesced it",
			       id, WAIT_MS / 1000, info->ublksrv_pid);
	return lb_fail(-ETIMEDOUT,
		       "device %d is %s, but /dev/ublkc%d is still open %d s "
		       "later (is another luablk recover starting?)",
		       id, state_name(info->state), id, WAIT_MS / 1000);
}

/*
 * Sends START_USER_RECOVERY once the kernel allows it. Right after a
 * server dies the device may still be live (the kernel is aborting its
 * IO) or quiesced with the dead process's char device fd not yet
 * released (-EBUSY); both pass within moments, so they are waited out.
 */
static int start_recovery(struct lb_ctrl *c, int id, bool takeover)
{
	struct ublksrv_ctrl_dev_info info;
	int ret, waited = 0;

	for (;; waited += POLL_MS) {
		ret = get_info(c, id, &info);
		if (ret == 0)
			ret = check_recoverable(id, &info, takeover);
		if (ret < 0)
			return ret;
		if (info.state == LUABLK_STATE_QUIESCED ||
		    info.state == LUABLK_STATE_FAIL_IO) {
			ret = lb_ctrl_simple(c, UBLK_CMD_START_USER_RECOVERY,
					     (uint32_t)id, 0);
			if (ret != -EBUSY)
				break;
		}
		if (waited >= WAIT_MS)
			return timed_out(id, &info);
		sleep_ms(POLL_MS);
	}
	if (ret == -EINVAL)
		return lb_fail(ret,
			       "START_USER_RECOVERY: device %d refused: no "
			       "queue of it was ever served (an earlier "
			       "recovery failed before its queues started); "
			       "only luablk del %d can remove it",
			       id, id);
	if (ret < 0)
		return lb_fail(ret, "START_USER_RECOVERY: device %d: %s", id,
			       strerror(-ret));
	return 0;
}

/*
 * A takeover of a live device: QUIESCE_DEV makes the kernel hold new IO
 * and abort the running server's fetches; that server finishes the IO it
 * holds, commits it and leaves (luablk_dev_handed_over), and the device
 * turns QUIESCED for start_recovery. A device whose server died already
 * needs none of it.
 */
static int quiesce(struct luablk_dev *dev)
{
	int ret;

	if (!(dev->cfg.flags & LUABLK_F_TAKEOVER) ||
	    dev->info.state != LUABLK_STATE_LIVE ||
	    !server_alive(dev->info.ublksrv_pid))
		return 0;
	ret = lb_ctrl_simple(dev->ctrl, UBLK_CMD_QUIESCE_DEV, (uint32_t)dev->id,
			     QUIESCE_MS);
	if (ret == -EBUSY)
		return lb_fail(ret,
			       "device %d: the kernel could not quiesce it "
			       "within %d s",
			       dev->id, QUIESCE_MS / 1000);
	if (ret < 0)
		return lb_fail(ret, "QUIESCE_DEV: device %d: %s", dev->id,
			       strerror(-ret));
	return 0;
}

/* Loads the backend for the device's geometry; nothing is sent yet. */
static int prepare(const struct luablk_config *cfg, int id, struct lb_ctrl *c,
		   struct luablk_dev **out)
{
	struct ublksrv_ctrl_dev_info info;
	struct luablk_config dc = *cfg;
	struct luablk_dev *dev;
	int ret;

	ret = get_info(c, id, &info);
	if (ret == 0)
		ret = check_recoverable(id, &info,
					cfg->flags & LUABLK_F_TAKEOVER);
	if (ret == 0)
		ret = device_config(c, id, &info, &dc);
	if (ret == 0)
		ret = lb_dev_create(&dc, id, &dev);
	if (ret < 0)
		return ret;
	/* END_USER_RECOVERY would wait forever for a missing queue. */
	if (dev->nr_queues != info.nr_hw_queues) {
		ret = lb_fail(-EINVAL,
			      "device %d has %u queues, but this machine "
			      "allows only %u",
			      id, info.nr_hw_queues, dev->nr_queues);
		luablk_dev_close(dev, 0);
		return ret;
	}
	dev->info = info;
	*out = dev;
	return 0;
}

int luablk_dev_recover(const struct luablk_config *cfg, int id,
		       struct luablk_dev **out)
{
	struct luablk_dev *dev = NULL;
	struct lb_ctrl *c;
	int ret;

	lb_clear_error();
	if (id < 0)
		return lb_fail(-EINVAL, "device id must be >= 0, not %d", id);
	ret = lb_ctrl_open(&c);
	if (ret < 0)
		return ret;
	ret = prepare(cfg, id, c, &dev);
	if (ret < 0) {
		lb_ctrl_close(c);
		return ret;
	}
	dev->ctrl = c;
	ret = quiesce(dev);
	if (ret == 0)
		ret = start_recovery(c, id, cfg->flags & LUABLK_F_TAKEOVER);
	if (ret == 0)
		ret = lb_dev_serve_recovered(dev);
	if (ret < 0) {
		char msg[512];

		snprintf(msg, sizeof(msg), "%s", luablk_last_error());
		luablk_dev_close(dev, 0);
		return lb_fail(ret, "%s", msg);
	}
	*out = dev;
	return 0;
}
