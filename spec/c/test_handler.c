// SPDX-License-Identifier: MIT
/*
 * The handler path without a kernel: a device object loads its backend per
 * queue, and batches run through luablk_handler_run exactly as a queue
 * thread runs them. Covers the C baselines and a Lua backend.
 */
#include <errno.h>
#include <string.h>

#include "check.h"
#include "luablk.h"

static struct luablk_dev *create(const char *backend, unsigned int queues)
{
	struct luablk_config cfg;
	struct luablk_dev *dev = NULL;
	int ret;

	luablk_config_init(&cfg);
	cfg.backend = backend;
	cfg.size = 1 << 20;
	cfg.queues = queues;
	cfg.depth = 8;
	cfg.max_io = 65536;
	ret = luablk_dev_create(&cfg, &dev);
	if (ret < 0)
		fprintf(stderr, "create %s: %s\n", backend,
			luablk_last_error());
	return dev;
}

static int32_t run_one(struct luablk_handler *h, uint8_t op, double off,
		       uint32_t len, uint16_t tag)
{
	struct luablk_io *io = luablk_handler_batch(h);

	memset(io, 0, sizeof(*io));
	io->op = op;
	io->off = off;
	io->len = len;
	io->tag = tag;
	io->result = -EIO;
	luablk_handler_run(h, 1);
	return io->result;
}

/* A write on queue 0 is visible to a read on queue 1. */
static void check_mem(const char *backend)
{
	struct luablk_dev *dev = create(backend, 2);
	struct luablk_handler *h0 = NULL, *h1 = NULL;

	CHECK(dev != NULL);
	if (!dev)
		return;
	CHECK(luablk_handler_new(dev, 0, &h0) == 0);
	CHECK(luablk_handler_new(dev, 1, &h1) == 0);
	if (h0 && h1) {
		memset(luablk_handler_buf(h0, 2), 0x5a, 4096);
		CHECK(run_one(h0, LUABLK_OP_WRITE, 8192, 4096, 2) == 4096);
		CHECK(run_one(h1, LUABLK_OP_READ, 8192, 4096, 7) == 4096);
		CHECK(luablk_handler_buf(h1, 7)[4095] == 0x5a);
		CHECK(run_one(h1, LUABLK_OP_FLUSH, 0, 0, 0) == 0);
	}
	luablk_handler_free(h0);
	luablk_handler_free(h1);
	CHECK(luablk_dev_close(dev, 0) == 0);
}

static void check_batch_of_many(void)
{
	struct luablk_dev *dev = create("null", 1);
	struct luablk_handler *h = NULL;
	struct luablk_io *b;

	CHECK(dev && luablk_handler_new(dev, 0, &h) == 0);
	if (!h)
		return;
	b = luablk_handler_batch(h);
	for (unsigned int i = 0; i < 8; i++) {
		b[i] = (struct luablk_io){.off = i * 4096.0,
					  .len = 4096,
					  .tag = (uint16_t)i,
					  .op = i % 2 ? LUABLK_OP_WRITE
						      : LUABLK_OP_READ,
					  .result = -EIO};
		memset(luablk_handler_buf(h, i), 0xff, 4096);
	}
	luablk_handler_run(h, 8);
	for (unsigned int i = 0; i < 8; i++)
		CHECK(b[i].result == 4096);
	CHECK(luablk_handler_buf(h, 0)[100] == 0); /* null reads zeros */
	CHECK(luablk_handler_buf(h, 1)[100] == 0xff); /* writes untouched */
	CHECK(luablk_handler_buf(h, 8) == NULL);
	luablk_handler_free(h);
	luablk_dev_close(dev, 0);
}

static void check_shared(void)
{
	struct luablk_dev *dev = create("c-null", 1);
	void *a = NULL, *b = NULL;
	uint64_t size = 0;

	CHECK(luablk_dev_shared(dev, "x", 4096, &a, &size) == 0 &&
	      size == 4096);
	CHECK(luablk_dev_shared(dev, "x", 0, &b, NULL) == 0 && a == b);
	CHECK(luablk_dev_shared(dev, "x", 8192, &b, NULL) == -EEXIST);
	CHECK(luablk_dev_shared(dev, "y", 0, &b, NULL) == -ENOENT);
	CHECK(luablk_dev_shared(dev, "", 10, &b, NULL) == -EINVAL);
	luablk_dev_close(dev, 0);
}

static void check_bad_backend(void)
{
	struct luablk_config cfg;
	struct luablk_dev *dev = NULL;

	luablk_config_init(&cfg);
	cfg.backend = "no-such-backend";
	cfg.size = 1 << 20;
	CHECK(luablk_dev_create(&cfg, &dev) == -EINVAL);
	CHECK(dev == NULL);
	CHECK(strstr(luablk_last_error(), "unknown backend") != NULL);
}

static void check_spawn(void)
{
	const char *ok[] = {"true", NULL};
	const char *fail[] = {"sh", "-c", "exit 3", NULL};
	const char *missing[] = {"/nonexistent/program", NULL};

	CHECK(luablk_wait(luablk_spawn(ok, -1, -1, -1)) == 0);
	CHECK(luablk_wait(luablk_spawn(fail, -1, -1, -1)) == 3);
	CHECK(luablk_wait(luablk_spawn(missing, -1, -1, -1)) == 127);
}

int main(void)
{
	check_mem("c-mem");
	check_mem("mem");
	check_batch_of_many();
	check_shared();
	check_bad_backend();
	check_spawn();
	return check_done("test_handler");
}
