// SPDX-License-Identifier: MIT
/*
 * USER_COPY mode (UBLK_F_USER_COPY, 6.5+): the kernel does not copy IO
 * data into the tag buffers; the queue thread reads a WRITE's data from
 * /dev/ublkcN before the backend runs and writes a READ's data back after.
 * The file offset names the request: queue, tag and an offset inside it.
 * Backends see the same tag buffers either way.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

bool lb_user_copy_on(const struct luablk_dev *dev)
{
	return (dev->info.flags & UBLK_F_USER_COPY) != 0;
}

static off_t request_pos(unsigned int q, unsigned int tag)
{
	return (off_t)(UBLKSRV_IO_BUF_OFFSET + ((uint64_t)q << UBLK_QID_OFF) +
		       ((uint64_t)tag << UBLK_TAG_OFF));
}

/*
 * Moves len bytes between buf and the request of (q, tag), reading the
 * request (to_buf) or writing it. Returns 0 or -errno.
 */
static int copy(int fd, unsigned int q, unsigned int tag, uint8_t *buf,
		uint32_t len, bool to_buf)
{
	off_t pos = request_pos(q, tag);
	uint32_t done = 0;

	while (done < len) {
		ssize_t n;

		if (to_buf)
			n = pread(fd, buf + done, len - done, pos + done);
		else
			n = pwrite(fd, buf + done, len - done, pos + done);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return -EIO; /* the request is shorter than it said */
		done += (uint32_t)n;
	}
	return 0;
}

static void report(const struct lb_queue *q, const struct luablk_io *io,
		   const char *what, int err)
{
	fprintf(stderr, "luablk: queue %u tag %u: user copy %s: %s\n", q->q,
		io->tag, what, strerror(-err));
}

unsigned int lb_user_copy_in(struct lb_queue *q, unsigned int n)
{
	struct luablk_io *batch = q->h->batch;
	unsigned int i = 0;

	if (!lb_user_copy_on(q->dev))
		return n;
	while (i < n) {
		struct luablk_io *io = &batch[i];
		struct luablk_io failed;
		int err;

		if (io->op != LUABLK_OP_WRITE) {
			i++;
			continue;
		}
		err = copy(q->dev->char_fd, q->q, io->tag,
			   luablk_handler_buf(q->h, io->tag), io->len, true);
		if (err == 0) {
			i++;
			continue;
		}
		/* Keep it out of the backend's part of the batch. */
		report(q, io, "of write data", err);
		failed = *io;
		failed.result = -EIO;
		*io = batch[--n];
		batch[n] = failed;
	}
	return n;
}

void lb_user_copy_out(struct lb_queue *q, unsigned int n)
{
	struct luablk_io *batch = q->h->batch;

	if (!lb_user_copy_on(q->dev))
		return;
	for (unsigned int i = 0; i < n; i++) {
		struct luablk_io *io = &batch[i];
		int err;

		if (io->op != LUABLK_OP_READ || io->result <= 0)
			continue;
		err = copy(q->dev->char_fd, q->q, io->tag,
			   luablk_handler_buf(q->h, io->tag),
			   (uint32_t)io->result, false);
		if (err < 0) {
			report(q, io, "of read data", err);
			io->result = -EIO;
		}
	}
}

int32_t lb_user_copy_done(struct lb_queue *q, unsigned int tag, int32_t result)
{
	uint8_t op = (uint8_t)(q->descs[tag].op_flags & 0xff);
	struct luablk_io io = {.tag = (uint16_t)tag, .op = op};
	int err;

	if (!lb_user_copy_on(q->dev) || op != LUABLK_OP_READ || result <= 0)
		return result == LB_RESULT_PENDING ? -EIO : result;
	err = copy(q->dev->char_fd, q->q, tag, luablk_handler_buf(q->h, tag),
		   (uint32_t)result, false);
	if (err < 0) {
		report(q, &io, "of read data", err);
		return -EIO;
	}
	return result;
}
