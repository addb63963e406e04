// SPDX-License-Identifier: MIT
/* Device configuration: defaults and validation, with no kernel involved. */
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

void luablk_config_init(struct luablk_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->queues = 1;
	cfg->depth = LUABLK_DEFAULT_DEPTH;
	cfg->max_io = LUABLK_DEFAULT_MAX_IO;
	cfg->dev_id = -1;
}

/*
 * The block parameters as the configuration alone makes them: a backend
 * may declare other defaults later (luablk_dev_declare), but what is given
 * here must make sense on its own.
 */
static int check_params(const struct luablk_config *cfg)
{
	struct luablk_params p;
	int ret;

	lb_params_resolve(&cfg->params, cfg->flags, NULL,
			  LUABLK_HAS_DISCARD | LUABLK_HAS_WRITE_ZEROES, &p);
	ret = lb_params_check(&p, cfg->max_io);
	/* Size 0: the backend will declare it (luablk_dev_declare). */
	if (ret == 0 && cfg->size)
		ret = lb_params_check_size(&p, cfg->size);
	return ret;
}

/*
 * The kernel rounds max_io down to a page and refuses less than a page;
 * an IO buffer slot is also addressed with 25 bits in USER_COPY mode, so
 * 32 MiB is the ceiling.
 */
static int check_max_io(uint32_t max_io)
{
	uint32_t page = (uint32_t)sysconf(_SC_PAGESIZE);

	if (max_io < page || max_io % page || max_io > (1U << UBLK_IO_BUF_BITS))
		return lb_fail(-EINVAL,
			       "max IO size must be a multiple of the %u-byte "
			       "page from %u to 32 MiB, not %u",
			       page, page, max_io);
	return 0;
}

int luablk_config_check(const struct luablk_config *cfg)
{
	if (cfg->queues < 1 || cfg->queues > LUABLK_MAX_QUEUES)
		return lb_fail(-EINVAL, "queues must be 1..%d, not %u",
			       LUABLK_MAX_QUEUES, cfg->queues);
	if (cfg->depth < 1 || cfg->depth > LUABLK_MAX_DEPTH)
		return lb_fail(-EINVAL, "depth must be 1..%d, not %u",
			       LUABLK_MAX_DEPTH, cfg->depth);
	if (check_max_io(cfg->max_io) < 0)
		return -EINVAL;
	/* The kernel accepts only one of the two (Linux 6.13 and later). */
	if ((cfg->flags & LUABLK_F_REISSUE) && (cfg->flags & LUABLK_F_FAIL_IO))
		return lb_fail(
			-EINVAL,
			"reissue and fail-io recovery exclude each other: "
			"IO waiting for a new server is either reissued "
			"or failed");
	if (check_params(cfg) < 0)
		return -EINVAL;
	if (cfg->dev_id < -1)
		return lb_fail(-EINVAL, "device id must be >= 0, not %d",
			       cfg->dev_id);
	if (!cfg->backend || !cfg->backend[0])
		return lb_fail(-EINVAL, "no backend given");
	if (cfg->argc < 0 || (cfg->argc > 0 && !cfg->args))
		return lb_fail(-EINVAL, "bad backend argument list");
	if (cfg->nfilters < 0 || (cfg->nfilters > 0 && !cfg->filters))
		return lb_fail(-EINVAL, "bad filter list");
	return 0;
}
