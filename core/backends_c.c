// SPDX-License-Identifier: MIT
/*
 * The null and mem backends written in C: the baselines that benchmarks
 * hold the Lua path against. They run behind the same handler interface
 * and batch array as Lua backends.
 */
#include <errno.h>
#include <string.h>

#include "internal.h"

static int c_null_init(struct luablk_handler *h)
{
	(void)h;
	return 0;
}

static void c_null_run(struct luablk_handler *h, unsigned int n)
{
	for (unsigned int i = 0; i < n; i++) {
		struct luablk_io *io = &h->batch[i];

		switch (io->op) {
		case LUABLK_OP_READ:
			memset(luablk_handler_buf(h, io->tag), 0, io->len);
			io->result = (int32_t)io->len;
			break;
		case LUABLK_OP_WRITE:
			io->result = (int32_t)io->len;
			break;
		default:
			io->result = 0;
		}
	}
}

static void c_fini(struct luablk_handler *h)
{
	(void)h;
}

const struct lb_handler_ops lb_c_null_ops = {
	.name = "c-null",
	.init = c_null_init,
	.run = c_null_run,
	.fini = c_fini,
};

/* Same region name as the Lua mem backend, so tests can inspect either. */
static int c_mem_init(struct luablk_handler *h)
{
	uint64_t size;

	h->caps.discard = true;
	h->caps.write_zeroes = true;
	return luablk_dev_shared(h->dev, "mem", h->dev->cfg.size, &h->priv,
				 &size);
}

static void c_mem_run(struct luablk_handler *h, unsigned int n)
{
	uint8_t *mem = h->priv;

	for (unsigned int i = 0; i < n; i++) {
		struct luablk_io *io = &h->batch[i];
		uint64_t off = (uint64_t)io->off;
		uint8_t *buf = luablk_handler_buf(h, io->tag);

		if (off + io->len > h->dev->cfg.size) {
			io->result = -EIO;
			continue;
		}
		switch (io->op) {
		case LUABLK_OP_READ:
			memcpy(buf, mem + off, io->len);
			io->result = (int32_t)io->len;
			break;
		case LUABLK_OP_WRITE:
			memcpy(mem + off, buf, io->len);
			io->result = (int32_t)io->len;
			break;
		case LUABLK_OP_DISCARD:
		case LUABLK_OP_WRITE_ZEROES:
			memset(mem + off, 0, io->len);
			io->result = 0;
			break;
		case LUABLK_OP_FLUSH:
			io->result = 0;
			break;
		default:
			io->result = -EOPNOTSUPP;
		}
	}
}

const struct lb_handler_ops lb_c_mem_ops = {
	.name = "c-mem",
	.init = c_mem_init,
	.run = c_mem_run,
	.fini = c_fini,
};
