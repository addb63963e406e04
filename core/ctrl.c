// SPDX-License-Identifier: MIT
/*
 * Control commands on /dev/ublk-control, sent as IORING_OP_URING_CMD on a
 * ring with 128-byte SQEs (the 32-byte command sits at sqe->cmd).
 */
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

#define ENOTSUPP_KERNEL 524 /* the kernel-internal ENOTSUPP */
/* Bytes reserved for "/dev/ublkcN" in front of an unprivileged payload. */
#define DEV_PATH_SLOT 32

struct lb_ctrl {
	int fd;
	struct io_uring ring;
	pthread_mutex_t lock; /* one command in flight at a time */
	int64_t path_id; /* unprivileged device whose commands carry a path */
	uint64_t seq; /* user_data of the last command sent */
	uint64_t stale; /* CQEs seen that were no command's answer */
	int broken; /* the error that made the ring unsafe to use, or 0 */
};

/*
 * Which opcode form the kernel accepts: the ioctl encoding (6.4+) or, with
 * CONFIG_BLKDEV_UBLK_LEGACY_OPCODES, the bare number. Learnt once per
 * process from the first command the kernel answers.
 */
enum { FORM_UNKNOWN, FORM_ENCODED, FORM_LEGACY };
static int opcode_form = FORM_UNKNOWN;

bool lb_ctrl_legacy_opcodes(void)
{
	return __atomic_load_n(&opcode_form, __ATOMIC_RELAXED) == FORM_LEGACY;
}

int lb_ctrl_open(struct lb_ctrl **out)
{
	struct io_uring_params p = {.flags = IORING_SETUP_SQE128};
	struct lb_ctrl *c;
	int ret;

	c = calloc(1, sizeof(*c));
	if (!c)
		return lb_fail(-ENOMEM, "out of memory");
	c->fd = open("/dev/ublk-control", O_RDWR | O_CLOEXEC);
	if (c->fd < 0) {
		ret = -errno;
		free(c);
		if (ret == -ENOENT)
			return lb_fail(
				ret, "/dev/ublk-control not found: this "
				     "kernel has no ublk driver (try "
				     "'modprobe ublk_drv', or scripts/vm-run)");
		if (ret == -EACCES || ret == -EPERM)
			return lb_unpriv_no_control(ret);
		return lb_fail(ret, "open /dev/ublk-control: %s",
			       strerror(-ret));
	}
	ret = io_uring_queue_init_params(4, &c->ring, &p);
	if (ret < 0) {
		close(c->fd);
		free(c);
		return lb_fail(ret, "io_uring setup for the control ring: %s",
			       strerror(-ret));
	}
	pthread_mutex_init(&c->lock, NULL);
	c->path_id = -1;
	*out = c;
	return 0;
}

void lb_ctrl_close(struct lb_ctrl *c)
{
	if (!c)
		return;
	io_uring_queue_exit(&c->ring);
	close(c->fd);
	pthread_mutex_destroy(&c->lock);
	free(c);
}

static bool is_read_only_cmd(unsigned int nr)
{
	switch (nr) {
	case UBLK_CMD_GET_QUEUE_AFFINITY:
	case UBLK_CMD_GET_DEV_INFO:
	case UBLK_CMD_GET_PARAMS:
	case UBLK_CMD_GET_DEV_INFO2:
	case UBLK_CMD_GET_FEATURES:
	case UBLK_CMD_DEL_DEV_ASYNC:
		return true;
	}
	return false;
}

static uint32_t encoded_op(unsigned int nr)
{
	return is_read_only_cmd(nr) ? UBLK_U_CTRL_R(nr) : UBLK_U_CTRL_RW(nr);
}

/*
 * Waits for the CQE tagged tag and stores its result in *res. A signal
 * only interrupts the wait: the command goes on in the kernel (may-sleep
 * commands run in io-wq) and may still write its payload, so returning
 * before its CQE would hand a later command this one's answer and free a
 * buffer the kernel still fills. A CQE with another tag cannot be ours
 * and is dropped (none should exist: every command is waited for).
 */
static int wait_for(struct lb_ctrl *c, uint64_t tag, int *res)
{
	struct io_uring_cqe *cqe;
	uint64_t data;
	int ret;

	for (;;) {
		ret = io_uring_wait_cqe(&c->ring, &cqe);
		if (ret == -EINTR)
			continue;
		if (ret < 0)
			return ret;
		data = io_uring_cqe_get_data64(cqe);
		*res = cqe->res;
		io_uring_cqe_seen(&c->ring, cqe);
		if (data == tag)
			return 0;
		c->stale++;
	}
}

static int submit_once(struct lb_ctrl *c, uint32_t op,
		       const struct ublksrv_ctrl_cmd *cmd)
{
	struct io_uring_sqe *sqe;
	uint64_t tag;
	int ret, res;

	if (c->broken)
		return c->broken;
	sqe = io_uring_get_sqe(&c->ring);
	if (!sqe)
		return -EBUSY;
	memset(sqe, 0, 128);
	sqe->opcode = IORING_OP_URING_CMD;
	sqe->fd = c->fd;
	sqe->cmd_op = op;
	memcpy(sqe->cmd, cmd, sizeof(*cmd));
	tag = ++c->seq;
	io_uring_sqe_set_data64(sqe, tag);
	do
		ret = io_uring_submit(&c->ring);
	while (ret == -EINTR);
	if (ret == 1)
		ret = wait_for(c, tag, &res);
	else if (ret >= 0)
		ret = -EIO;
	/*
	 * Either the SQE is still in the ring, and the next submit would
	 * send it with a payload that is gone by then, or the command runs
	 * and nobody will see its end: no command may use this ring again.
	 */
	if (ret < 0) {
		c->broken = ret;
		return lb_fail(ret, "control ring: %s", strerror(-ret));
	}
	return res;
}

/*
 * io-wq fails work it never started with -ECANCELED when it cannot start a
 * worker thread, and a signal arriving while it creates one is enough (it
 * gives up after a few tries). The command did not run: send it again.
 */
#define CANCELED_RETRIES 100

static int submit_one(struct lb_ctrl *c, uint32_t op,
		      const struct ublksrv_ctrl_cmd *cmd)
{
	int ret, tries = 0;

	do
		ret = submit_once(c, op, cmd);
	while (ret == -ECANCELED && ++tries < CANCELED_RETRIES);
	return ret;
}

/* The answers a kernel gives to an opcode form it does not know. */
static bool form_rejected(int ret)
{
	return ret == -EOPNOTSUPP || ret == -ENOTSUPP_KERNEL || ret == -EINVAL;
}

static int submit_cmd(struct lb_ctrl *c, unsigned int nr,
		      const struct ublksrv_ctrl_cmd *cmd)
{
	bool has_legacy = nr <= UBLK_CMD_GET_DEV_INFO2;
	int form = __atomic_load_n(&opcode_form, __ATOMIC_RELAXED);
	int ret, legacy;

	pthread_mutex_lock(&c->lock);
	if (form == FORM_LEGACY && has_legacy) {
		ret = submit_one(c, nr, cmd);
		goto out;
	}
	ret = submit_one(c, encoded_op(nr), cmd);
	if (form == FORM_UNKNOWN && !form_rejected(ret)) {
		__atomic_store_n(&opcode_form, FORM_ENCODED, __ATOMIC_RELAXED);
	} else if (form == FORM_UNKNOWN && has_legacy) {
		legacy = submit_one(c, nr, cmd);
		if (!form_rejected(legacy)) {
			__atomic_store_n(&opcode_form, FORM_LEGACY,
					 __ATOMIC_RELAXED);
			ret = legacy;
		}
	}
out:
	pthread_mutex_unlock(&c->lock);
	return ret;
}

/*
 * The kernel checks every command on an unprivileged device against the
 * caller's access to its char device, so the command names that node: the
 * buffer starts with the path (dev_path_len bytes) and the payload follows.
 * GET_DEV_INFO2 takes the path for any device, which is how a caller finds
 * out whether a device it did not create is unprivileged.
 */
static bool carries_path(const struct lb_ctrl *c, unsigned int nr,
			 const struct ublksrv_ctrl_cmd *cmd)
{
	if (nr == UBLK_CMD_GET_DEV_INFO2)
		return true;
	return c->path_id >= 0 && cmd->dev_id == (uint32_t)c->path_id &&
	       nr != UBLK_CMD_ADD_DEV && nr != UBLK_CMD_GET_FEATURES;
}

int lb_ctrl_cmd(struct lb_ctrl *c, unsigned int nr,
		struct ublksrv_ctrl_cmd *cmd)
{
	void *payload = (void *)(uintptr_t)cmd->addr;
	struct ublksrv_ctrl_cmd with_path;
	uint8_t *buf;
	int ret;

	if (!carries_path(c, nr, cmd))
		return submit_cmd(c, nr, cmd);
	if (cmd->len > UINT16_MAX - DEV_PATH_SLOT)
		return -EINVAL;
	buf = calloc(1, DEV_PATH_SLOT + (size_t)cmd->len);
	if (!buf)
		return -ENOMEM;
	snprintf((char *)buf, DEV_PATH_SLOT, "/dev/ublkc%u", cmd->dev_id);
	if (cmd->len)
		memcpy(buf + DEV_PATH_SLOT, payload, cmd->len);
	with_path = *cmd;
	with_path.addr = (uint64_t)(uintptr_t)buf;
	with_path.len = (uint16_t)(DEV_PATH_SLOT + cmd->len);
	with_path.dev_path_len = DEV_PATH_SLOT;
	ret = submit_cmd(c, nr, &with_path);
	/*
	 * A known unprivileged device whose node is gone has been deleted;
	 * the kernel still finds it by id until its last reference drops.
	 */
	if (ret == -ENOENT && nr != UBLK_CMD_GET_DEV_INFO2)
		ret = -ENODEV;
	if (cmd->len)
		memcpy(payload, buf + DEV_PATH_SLOT, cmd->len);
	free(buf);
	return ret;
}

void lb_ctrl_send_path(struct lb_ctrl *c, int id)
{
	c->path_id = id;
}

static void cmd_init(struct ublksrv_ctrl_cmd *cmd, uint32_t id, void *buf,
		     size_t len)
{
	memset(cmd, 0, sizeof(*cmd));
	cmd->dev_id = id;
	cmd->queue_id = 0xffff;
	cmd->addr = (uint64_t)(uintptr_t)buf;
	cmd->len = (uint16_t)len;
}

int lb_ctrl_add_dev(struct lb_ctrl *c, struct ublksrv_ctrl_dev_info *info)
{
	struct ublksrv_ctrl_cmd cmd;

	/* Kernels from 6.17 insist that both ids agree; -1 asks for any. */
	cmd_init(&cmd, info->dev_id, info, sizeof(*info));
	return lb_ctrl_cmd(c, UBLK_CMD_ADD_DEV, &cmd);
}

int lb_ctrl_set_params(struct lb_ctrl *c, uint32_t id, struct ublk_params *p)
{
	struct ublksrv_ctrl_cmd cmd;

	p->len = sizeof(*p);
	cmd_init(&cmd, id, p, sizeof(*p));
	return lb_ctrl_cmd(c, UBLK_CMD_SET_PARAMS, &cmd);
}

int lb_ctrl_get_params(struct lb_ctrl *c, uint32_t id, struct ublk_params *p)
{
	struct ublksrv_ctrl_cmd cmd;

	memset(p, 0, sizeof(*p));
	p->len = sizeof(*p);
	cmd_init(&cmd, id, p, sizeof(*p));
	return lb_ctrl_cmd(c, UBLK_CMD_GET_PARAMS, &cmd);
}

int lb_ctrl_get_info(struct lb_ctrl *c, uint32_t id,
		     struct ublksrv_ctrl_dev_info *info)
{
	struct ublksrv_ctrl_cmd cmd;

	memset(info, 0, sizeof(*info));
	cmd_init(&cmd, id, info, sizeof(*info));
	return lb_ctrl_cmd(c, UBLK_CMD_GET_DEV_INFO, &cmd);
}

int lb_ctrl_get_info2(struct lb_ctrl *c, uint32_t id,
		      struct ublksrv_ctrl_dev_info *info)
{
	struct ublksrv_ctrl_cmd cmd;
	int ret, plain;

	memset(info, 0, sizeof(*info));
	cmd_init(&cmd, id, info, sizeof(*info));
	ret = lb_ctrl_cmd(c, UBLK_CMD_GET_DEV_INFO2, &cmd);
	/*
	 * Kernels before 6.2 lack GET_DEV_INFO2 (and unprivileged devices);
	 * without /dev/ublkcN here, root can still ask the plain way.
	 */
	if (ret == -EOPNOTSUPP || ret == -ENOTSUPP_KERNEL || ret == -ENOENT) {
		plain = lb_ctrl_get_info(c, id, info);
		if (plain == 0 || ret != -ENOENT)
			ret = plain;
	}
	if (ret == 0 && (info->flags & UBLK_F_UNPRIVILEGED_DEV))
		lb_ctrl_send_path(c, (int)id);
	return ret;
}

int lb_ctrl_get_affinity(struct lb_ctrl *c, uint32_t id, unsigned int q,
			 void *cpuset, size_t len)
{
	struct ublksrv_ctrl_cmd cmd;

	memset(cpuset, 0, len);
	cmd_init(&cmd, id, cpuset, len);
	cmd.data[0] = q;
	return lb_ctrl_cmd(c, UBLK_CMD_GET_QUEUE_AFFINITY, &cmd);
}

int lb_ctrl_simple(struct lb_ctrl *c, unsigned int nr, uint32_t id,
		   uint64_t data)
{
	struct ublksrv_ctrl_cmd cmd;

	cmd_init(&cmd, id, NULL, 0);
	cmd.data[0] = data;
	return lb_ctrl_cmd(c, nr, &cmd);
}

int lb_ctrl_get_features(struct lb_ctrl *c, uint64_t *features)
{
	struct ublksrv_ctrl_cmd cmd;

	*features = 0;
	cmd_init(&cmd, UINT32_MAX, features, sizeof(*features));
	return lb_ctrl_cmd(c, UBLK_CMD_GET_FEATURES, &cmd);
}
