// SPDX-License-Identifier: MIT
/* Configuration defaults and the checks that refuse bad devices. */
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "luablk.h"

static int check_with(void (*edit)(struct luablk_config *))
{
	struct luablk_config cfg;

	luablk_config_init(&cfg);
	cfg.size = 1 << 20;
	cfg.backend = "null";
	edit(&cfg);
	return luablk_config_check(&cfg);
}

static void none(struct luablk_config *c)
{
	(void)c;
}
static void size_zero(struct luablk_config *c)
{
	c->size = 0;
}
static void size_odd(struct luablk_config *c)
{
	c->size = 1000;
}
static void size_4k_misaligned(struct luablk_config *c)
{
	c->params.logical_block = 4096;
	c->size = 4096 * 3 + 512;
}
static void bs_1k(struct luablk_config *c)
{
	c->params.logical_block = 1024;
}
static void bs_4k(struct luablk_config *c)
{
	c->params.logical_block = 4096;
}
static void bs_odd(struct luablk_config *c)
{
	c->params.logical_block = 1000;
}
static void bs_8k(struct luablk_config *c)
{
	c->params.logical_block = 8192;
}
static void pbs_below_lbs(struct luablk_config *c)
{
	c->params.logical_block = 4096;
	c->params.physical_block = 512;
}
static void pbs_64k(struct luablk_config *c)
{
	c->params.physical_block = 65536;
}
static void pbs_above_max_io(struct luablk_config *c)
{
	c->max_io = 65536;
	c->params.physical_block = 131072;
}
static void io_min_below_pbs(struct luablk_config *c)
{
	c->params.physical_block = 4096;
	c->params.io_min = 512;
}
static void io_opt_odd(struct luablk_config *c)
{
	c->params.io_opt = 3 * 4096;
}
static void io_opt_1m(struct luablk_config *c)
{
	c->params.io_min = 4096;
	c->params.io_opt = 1 << 20;
}
static void io_opt_512m(struct luablk_config *c)
{
	c->params.io_opt = 512 << 20;
}
static void io_opt_256m(struct luablk_config *c)
{
	c->params.io_opt = 256 << 20;
}
static void gran_odd(struct luablk_config *c)
{
	c->params.discard_granularity = 3000;
}
static void align_too_big(struct luablk_config *c)
{
	c->params.discard_granularity = 4096;
	c->params.discard_alignment = 4096;
}
static void align_ok(struct luablk_config *c)
{
	c->params.discard_granularity = 65536;
	c->params.discard_alignment = 4096;
}
static void max_discard_small(struct luablk_config *c)
{
	c->params.discard_granularity = 65536;
	c->params.max_discard = 4096;
}
static void max_discard_big(struct luablk_config *c)
{
	c->params.max_discard = 0x80000000u;
}
static void max_wz_odd(struct luablk_config *c)
{
	c->params.max_write_zeroes = 1000;
}
static void q_zero(struct luablk_config *c)
{
	c->queues = 0;
}
static void q_big(struct luablk_config *c)
{
	c->queues = 4097;
}
static void depth_zero(struct luablk_config *c)
{
	c->depth = 0;
}
static void depth_big(struct luablk_config *c)
{
	c->depth = 4097;
}
static void depth_max(struct luablk_config *c)
{
	c->depth = 4096;
}
static void maxio_small(struct luablk_config *c)
{
	c->max_io = 2048;
}
static void maxio_odd(struct luablk_config *c)
{
	c->max_io = 6000;
}
static void maxio_huge(struct luablk_config *c)
{
	c->max_io = 64 << 20;
}
static void maxio_page(struct luablk_config *c)
{
	c->max_io = (uint32_t)sysconf(_SC_PAGESIZE);
}
static void maxio_half_page(struct luablk_config *c)
{
	c->max_io = (uint32_t)sysconf(_SC_PAGESIZE) / 2;
}
static void reissue_fail_io(struct luablk_config *c)
{
	c->flags = LUABLK_F_RECOVERABLE | LUABLK_F_REISSUE | LUABLK_F_FAIL_IO;
}
static void no_backend(struct luablk_config *c)
{
	c->backend = NULL;
}
static void bad_id(struct luablk_config *c)
{
	c->dev_id = -2;
}

int main(void)
{
	struct luablk_config cfg;

	luablk_config_init(&cfg);
	CHECK(cfg.queues == 1);
	CHECK(cfg.depth == 128);
	CHECK(cfg.max_io == 512 * 1024);
	CHECK(cfg.params.logical_block == 0); /* not given */
	CHECK(cfg.params.attrs_set == 0);
	CHECK(cfg.dev_id == -1);

	CHECK(check_with(none) == 0);
	CHECK(check_with(bs_4k) == 0);
	CHECK(check_with(depth_max) == 0);
	/* Size 0: the backend declares it later (luablk_dev_declare). */
	CHECK(check_with(size_zero) == 0);
	CHECK(check_with(size_odd) == -EINVAL);
	CHECK(strstr(luablk_last_error(), "positive multiple") != NULL);
	CHECK(check_with(size_4k_misaligned) == -EINVAL);
	CHECK(check_with(bs_1k) == 0);
	CHECK(check_with(bs_odd) == -EINVAL);
	CHECK(strstr(luablk_last_error(), "power of two from 512") != NULL);
	CHECK(check_with(bs_8k) == -EINVAL);
	CHECK(check_with(pbs_below_lbs) == -EINVAL);
	CHECK(strstr(luablk_last_error(), "physical block") != NULL);
	CHECK(check_with(pbs_64k) == 0);
	CHECK(check_with(pbs_above_max_io) == -EINVAL);
	CHECK(check_with(io_min_below_pbs) == -EINVAL);
	CHECK(strstr(luablk_last_error(), "minimum IO") != NULL);
	CHECK(check_with(io_opt_odd) == -EINVAL);
	CHECK(strstr(luablk_last_error(), "optimal IO") != NULL);
	CHECK(check_with(io_opt_1m) == 0);
	CHECK(check_with(io_opt_256m) == 0);
	CHECK(check_with(io_opt_512m) == -EINVAL);
	CHECK(strstr(luablk_last_error(), "to 256 MiB") != NULL);
	CHECK(check_with(gran_odd) == -EINVAL);
	CHECK(strstr(luablk_last_error(), "discard granularity") != NULL);
	CHECK(check_with(align_too_big) == -EINVAL);
	CHECK(strstr(luablk_last_error(), "discard alignment") != NULL);
	CHECK(check_with(align_ok) == 0);
	CHECK(check_with(max_discard_small) == -EINVAL);
	CHECK(strstr(luablk_last_error(), "largest discard") != NULL);
	CHECK(check_with(max_discard_big) == -EINVAL);
	CHECK(check_with(max_wz_odd) == -EINVAL);
	CHECK(strstr(luablk_last_error(), "write-zeroes") != NULL);
	CHECK(check_with(q_zero) == -EINVAL);
	CHECK(check_with(q_big) == -EINVAL);
	CHECK(check_with(depth_zero) == -EINVAL);
	CHECK(check_with(depth_big) == -EINVAL);
	CHECK(check_with(maxio_small) == -EINVAL);
	CHECK(check_with(maxio_odd) == -EINVAL);
	CHECK(check_with(maxio_huge) == -EINVAL);
	CHECK(check_with(maxio_page) == 0);
	CHECK(check_with(maxio_half_page) == -EINVAL);
	CHECK(strstr(luablk_last_error(), "-byte page") != NULL);
	CHECK(check_with(reissue_fail_io) == -EINVAL);
	CHECK(strstr(luablk_last_error(), "exclude each other") != NULL);
	CHECK(check_with(no_backend) == -EINVAL);
	CHECK(check_with(bad_id) == -EINVAL);
	CHECK(luablk_version() == LUABLK_ABI_VERSION);
	return check_done("test_config");
}
