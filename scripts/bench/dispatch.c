// SPDX-License-Identifier: MIT
/*
 * Dispatch microbenchmark: runs synthetic IO batches through exactly the
 * path a queue thread uses (batch array -> handler -> backend -> results),
 * with no kernel. Prints one line: backend, batch, len, IOs, ns per IO.
 * The time is the process's CPU time, not the wall clock: on a shared
 * machine, the time other programs hold the CPU stays out of it.
 *
 *   bench-dispatch BACKEND BATCH LEN ITERS [OP [MIB]]
 *
 * OP is "read" (default), "write" or "mix". Offsets walk a device of MIB
 * MiB (default 64). A warm-up pass over the whole device comes first; only
 * the timed pass runs inside measured(), so that
 * `valgrind --tool=callgrind --toggle-collect=measured` counts it alone.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "luablk.h"

static uint64_t dev_size = 64ULL << 20;

static void fill(struct luablk_io *b, unsigned int n, uint32_t len,
		 const char *op, uint64_t *cursor)
{
	for (unsigned int i = 0; i < n; i++) {
		uint8_t o = LUABLK_OP_READ;

		if (!strcmp(op, "write") || (!strcmp(op, "mix") && (i & 1)))
			o = LUABLK_OP_WRITE;
		if (*cursor + len > dev_size)
			*cursor = 0;
		b[i] = (struct luablk_io){.off = (double)*cursor,
					  .len = len,
					  .tag = (uint16_t)i,
					  .op = o,
					  .result = -EIO};
		*cursor += len;
	}
}

static int run(struct luablk_handler *h, unsigned int n, uint32_t len,
	       long iters, const char *op)
{
	struct luablk_io *b = luablk_handler_batch(h);
	uint64_t cursor = 0;

	for (long k = 0; k < iters; k++) {
		fill(b, n, len, op, &cursor);
		luablk_handler_run(h, n);
		for (unsigned int i = 0; i < n; i++)
			if (b[i].result != (int32_t)len)
				return -1;
	}
	return 0;
}

static uint64_t cpu_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

/* The timed pass, kept out of line for callgrind's --toggle-collect. */
static __attribute__((noinline)) int measured(struct luablk_handler *h,
					      unsigned int n, uint32_t len,
					      long iters, const char *op)
{
	return run(h, n, len, iters, op);
}

int main(int argc, char **argv)
{
	struct luablk_config cfg;
	struct luablk_dev *dev;
	struct luablk_handler *h;
	const char *op = argc > 5 ? argv[5] : "read";
	unsigned int n;
	uint32_t len;
	uint64_t t0, t1;
	long iters;

	if (argc < 5) {
		fprintf(stderr,
			"usage: %s BACKEND BATCH LEN ITERS [OP [MIB]]\n",
			argv[0]);
		return 2;
	}
	if (argc > 6)
		dev_size = (uint64_t)atol(argv[6]) << 20;
	n = (unsigned int)atoi(argv[2]);
	len = (uint32_t)atoi(argv[3]);
	iters = atol(argv[4]);
	luablk_config_init(&cfg);
	cfg.backend = argv[1];
	cfg.size = dev_size;
	cfg.depth = n;
	cfg.max_io = len < 4096 ? 4096 : len;
	if (luablk_dev_create(&cfg, &dev) < 0 ||
	    luablk_handler_new(dev, 0, &h) < 0) {
		fprintf(stderr, "bench-dispatch: %s\n", luablk_last_error());
		return 1;
	}
	/*
	 * Warm up: let the JIT compile the loop, and touch every page of the
	 * device once so that page faults stay out of the measurement.
	 */
	if (run(h, n, len, (long)(dev_size / ((uint64_t)n * len)) + 100, op) <
	    0) {
		fprintf(stderr, "bench-dispatch: an IO failed\n");
		return 1;
	}
	t0 = cpu_ns();
	if (measured(h, n, len, iters, op) < 0)
		return 1;
	t1 = cpu_ns();
	printf("%s %u %u %ld %.1f\n", argv[1], n, len, iters * (long)n,
	       (double)(t1 - t0) / ((double)iters * n));
	luablk_handler_free(h);
	luablk_dev_close(dev, 0);
	return 0;
}
