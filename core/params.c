// SPDX-License-Identifier: MIT
/*
 * Block parameters: the configuration's values over a backend's declared
 * defaults over the built-in ones, checked against each other and turned
 * into SET_PARAMS. Nothing here touches the kernel, so bad values fail
 * before ADD_DEV.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

_Static_assert(LUABLK_ATTR_READ_ONLY == UBLK_ATTR_READ_ONLY, "attr bit");
_Static_assert(LUABLK_ATTR_ROTATIONAL == UBLK_ATTR_ROTATIONAL, "attr bit");
_Static_assert(LUABLK_ATTR_WRITE_CACHE == UBLK_ATTR_VOLATILE_CACHE, "attr bit");
_Static_assert(LUABLK_ATTR_FUA == UBLK_ATTR_FUA, "attr bit");

#define ALL_ATTRS                                         \
	(LUABLK_ATTR_READ_ONLY | LUABLK_ATTR_ROTATIONAL | \
	 LUABLK_ATTR_WRITE_CACHE | LUABLK_ATTR_FUA)

/*
 * The largest shift SET_PARAMS takes for a size. The physical block and
 * the minimum IO stay within max_io (32 MiB), so only io_opt can reach it.
 */
#define MAX_IO_OPT (1U << 28)

/*
 * A given value wins. Otherwise the declared default, or the built-in one
 * when nothing is declared, raised to at least `least`: a default gives
 * way to the given values it depends on.
 */
static uint32_t pick(uint32_t given, uint32_t declared, uint32_t builtin,
		     uint32_t least)
{
	uint32_t v = declared ? declared : builtin;

	if (given)
		return given;
	return v > least ? v : least;
}

void lb_params_resolve(const struct luablk_params *given, uint32_t flags,
		       const struct luablk_params *declared, uint32_t ops,
		       struct luablk_params *out)
{
	static const struct luablk_params none;
	const struct luablk_params *g = given, *d = declared ? declared : &none;
	uint32_t attrs;

	memset(out, 0, sizeof(*out));
	out->logical_block = pick(g->logical_block, d->logical_block, 512, 0);
	out->physical_block = pick(g->physical_block, d->physical_block, 0,
				   out->logical_block);
	out->io_min = pick(g->io_min, d->io_min, 0, out->physical_block);
	out->io_opt = pick(g->io_opt, d->io_opt, 0, out->io_min);
	if (ops & LUABLK_HAS_DISCARD) {
		out->discard_granularity =
			pick(g->discard_granularity, d->discard_granularity, 0,
			     out->physical_block);
		out->discard_alignment = g->discard_alignment;
		if (!g->discard_alignment &&
		    d->discard_alignment < out->discard_granularity)
			out->discard_alignment = d->discard_alignment;
		out->max_discard =
			pick(g->max_discard, d->max_discard, LUABLK_MAX_DISCARD,
			     out->discard_granularity);
	}
	if (ops & LUABLK_HAS_WRITE_ZEROES)
		out->max_write_zeroes =
			pick(g->max_write_zeroes, d->max_write_zeroes,
			     LUABLK_MAX_DISCARD, out->logical_block);
	attrs = (d->attrs & ~g->attrs_set) | (g->attrs & g->attrs_set);
	if (flags & LUABLK_F_WRITE_CACHE)
		attrs |= LUABLK_ATTR_WRITE_CACHE;
	if (flags & LUABLK_F_FUA)
		attrs |= LUABLK_ATTR_FUA;
	/* The kernel ignores FUA without a volatile cache; say so here. */
	if (!(attrs & LUABLK_ATTR_WRITE_CACHE))
		attrs &= ~(uint32_t)LUABLK_ATTR_FUA;
	out->attrs = attrs & ALL_ATTRS;
	out->attrs_set = ALL_ATTRS;
}

static bool pow2(uint32_t v)
{
	return v && !(v & (v - 1));
}

/* v is a power of two within [lo, hi]. */
static bool pow2_in(uint32_t v, uint32_t lo, uint32_t hi)
{
	return pow2(v) && v >= lo && v <= hi;
}

static int check_discard(const struct luablk_params *p)
{
	uint32_t lbs = p->logical_block, gran = p->discard_granularity;

	if (!pow2_in(gran, p->physical_block, LUABLK_MAX_DISCARD))
		return lb_fail(-EINVAL,
			       "discard granularity must be a power of two "
			       "from the physical block size (%u) to 1 GiB, "
			       "not %u",
			       p->physical_block, gran);
	if (p->discard_alignment % lbs || p->discard_alignment >= gran)
		return lb_fail(-EINVAL,
			       "discard alignment must be a multiple of the "
			       "logical block size (%u) below the discard "
			       "granularity (%u), not %u",
			       lbs, gran, p->discard_alignment);
	if (p->max_discard % lbs || p->max_discard < gran ||
	    p->max_discard > LUABLK_MAX_DISCARD)
		return lb_fail(-EINVAL,
			       "largest discard must be a multiple of the "
			       "logical block size (%u) from the discard "
			       "granularity (%u) to 1 GiB, not %u",
			       lbs, gran, p->max_discard);
	return 0;
}

int lb_params_check(const struct luablk_params *p, uint32_t max_io)
{
	uint32_t page = (uint32_t)sysconf(_SC_PAGESIZE);
	uint32_t lbs = p->logical_block, pbs = p->physical_block;

	if (!pow2_in(lbs, 512, page))
		return lb_fail(-EINVAL,
			       "logical block size must be a power of two "
			       "from 512 to %u, not %u",
			       page, lbs);
	if (!pow2_in(pbs, lbs, max_io))
		return lb_fail(-EINVAL,
			       "physical block size must be a power of two "
			       "from the logical block size (%u) to the "
			       "largest IO (%u), not %u",
			       lbs, max_io, pbs);
	if (!pow2_in(p->io_min, pbs, max_io))
		return lb_fail(-EINVAL,
			       "minimum IO size must be a power of two from "
			       "the physical block size (%u) to the largest "
			       "IO (%u), not %u",
			       pbs, max_io, p->io_min);
	if (!pow2_in(p->io_opt, p->io_min, MAX_IO_OPT))
		return lb_fail(-EINVAL,
			       "optimal IO size must be a power of two from "
			       "the minimum IO size (%u) to 256 MiB, not %u",
			       p->io_min, p->io_opt);
	if (p->max_discard && check_discard(p) < 0)
		return -EINVAL;
	if (p->max_write_zeroes % lbs ||
	    p->max_write_zeroes > LUABLK_MAX_DISCARD)
		return lb_fail(-EINVAL,
			       "largest write-zeroes must be a multiple of the "
			       "logical block size (%u) up to 1 GiB, not %u",
			       lbs, p->max_write_zeroes);
	return 0;
}

int lb_params_check_size(const struct luablk_params *p, uint64_t size)
{
	if (size == 0 || size % p->logical_block)
		return lb_fail(-EINVAL,
			       "size must be a positive multiple of the "
			       "%u-byte logical block size, not %llu",
			       p->logical_block, (unsigned long long)size);
	return 0;
}

/* Discard settings given for a backend that cannot take them. */
static int check_ops(const struct luablk_params *g, uint32_t ops,
		     const char *backend)
{
	if (!(ops & LUABLK_HAS_DISCARD) &&
	    (g->discard_granularity || g->discard_alignment || g->max_discard))
		return lb_fail(-EINVAL,
			       "backend '%s' has no discard method, so discard "
			       "granularity, alignment and size do not apply",
			       backend);
	if (!(ops & LUABLK_HAS_WRITE_ZEROES) && g->max_write_zeroes)
		return lb_fail(-EINVAL,
			       "backend '%s' has no write_zeroes method, so a "
			       "largest write-zeroes size does not apply",
			       backend);
	return 0;
}

/*
 * A write cache or FUA the device would advertise for a backend that does
 * not honour it: every FLUSH would fail, or a FUA write would be
 * acknowledged before it is durable.
 */
static int check_cache(const struct luablk_params *p,
		       const struct luablk_params *declared, uint32_t ops,
		       const char *backend)
{
	if ((p->attrs & LUABLK_ATTR_WRITE_CACHE) && !(ops & LUABLK_HAS_FLUSH))
		return lb_fail(-EINVAL,
			       "backend '%s' has no flush method, so it cannot "
			       "have a write cache (--write-cache)",
			       backend);
	if ((p->attrs & LUABLK_ATTR_FUA) &&
	    !(declared->attrs & LUABLK_ATTR_FUA))
		return lb_fail(-EINVAL,
			       "backend '%s' does not declare caps.fua, so its "
			       "writes are not durable on return and FUA "
			       "(--fua) does not apply",
			       backend);
	return 0;
}

int luablk_dev_declare(struct luablk_dev *dev,
		       const struct luablk_params *declared, uint32_t ops,
		       uint64_t size)
{
	static const struct luablk_params none;
	const struct luablk_config *cfg = &dev->cfg;
	struct luablk_params own, p;
	char msg[256];

	lb_clear_error();
	if (check_ops(&cfg->params, ops, dev->backend) < 0)
		return -EINVAL;
	/* The backend's values alone first, so a bad one is blamed on it. */
	lb_params_resolve(&none, 0, declared, ops, &own);
	if (lb_params_check(&own, cfg->max_io) < 0) {
		snprintf(msg, sizeof(msg), "%s", luablk_last_error());
		return lb_fail(-EINVAL, "backend '%s' declares: %s",
			       dev->backend, msg);
	}
	if (!dev->added && cfg->size == 0) {
		if (size == 0)
			return lb_fail(-EINVAL,
				       "backend '%s': no size given, and it "
				       "has none of its own (give --size)",
				       dev->backend);
		dev->cfg.size = size;
	}
	lb_params_resolve(&cfg->params, cfg->flags, declared, ops, &p);
	if (lb_params_check(&p, cfg->max_io) < 0 ||
	    lb_params_check_size(&p, cfg->size) < 0 ||
	    check_cache(&p, declared, ops, dev->backend) < 0)
		return -EINVAL;
	if (dev->added) {
		if (memcmp(&p, &dev->params, sizeof(p)))
			return lb_fail(-EBUSY,
				       "backend '%s' declares block "
				       "parameters other than the running "
				       "device's, which cannot change",
				       dev->backend);
		return 0;
	}
	dev->params = p;
	dev->declared = true;
	return 0;
}

int luablk_dev_params(const struct luablk_dev *dev, struct luablk_params *out)
{
	*out = dev->params;
	return 0;
}

static uint8_t shift_of(uint32_t v)
{
	return (uint8_t)__builtin_ctz(v);
}

void lb_params_to_ublk(const struct luablk_params *p, uint64_t size,
		       uint32_t max_io, struct ublk_params *out)
{
	memset(out, 0, sizeof(*out));
	out->types = UBLK_PARAM_TYPE_BASIC;
	out->basic.attrs = p->attrs;
	out->basic.logical_bs_shift = shift_of(p->logical_block);
	out->basic.physical_bs_shift = shift_of(p->physical_block);
	out->basic.io_min_shift = shift_of(p->io_min);
	out->basic.io_opt_shift = shift_of(p->io_opt);
	out->basic.max_sectors = max_io >> 9;
	out->basic.dev_sectors = size >> 9;
	if (!p->max_discard && !p->max_write_zeroes)
		return;
	out->types |= UBLK_PARAM_TYPE_DISCARD;
	/* The kernel wants a granularity even for write-zeroes alone. */
	out->discard.discard_granularity = p->discard_granularity
						   ? p->discard_granularity
						   : p->physical_block;
	out->discard.discard_alignment = p->discard_alignment;
	out->discard.max_discard_sectors = p->max_discard >> 9;
	out->discard.max_discard_segments = p->max_discard ? 1 : 0;
	out->discard.max_write_zeroes_sectors = p->max_write_zeroes >> 9;
}

void lb_params_from_ublk(const struct ublk_params *p, struct luablk_params *out)
{
	memset(out, 0, sizeof(*out));
	out->logical_block = 1U << p->basic.logical_bs_shift;
	out->physical_block = 1U << p->basic.physical_bs_shift;
	out->io_min = 1U << p->basic.io_min_shift;
	out->io_opt = 1U << p->basic.io_opt_shift;
	out->attrs = p->basic.attrs & ALL_ATTRS;
	out->attrs_set = ALL_ATTRS;
	if (!(p->types & UBLK_PARAM_TYPE_DISCARD))
		return;
	out->max_discard = p->discard.max_discard_sectors << 9;
	/* A granularity alone comes with write-zeroes (lb_params_to_ublk). */
	if (out->max_discard) {
		out->discard_granularity = p->discard.discard_granularity;
		out->discard_alignment = p->discard.discard_alignment;
	}
	out->max_write_zeroes = p->discard.max_write_zeroes_sectors << 9;
}
