/* SPDX-License-Identifier: MIT */
/*
 * A minimal check harness for the C unit tests: CHECK records a failure
 * and goes on; check_done() prints "NAME: N passed, N failed" and gives
 * the exit status.
 */
#ifndef LUABLK_CHECK_H
#define LUABLK_CHECK_H

#include <stdio.h>

static int check_passed, check_failed;

#define CHECK(cond)                                                            \
	do {                                                                   \
		if (cond) {                                                    \
			check_passed++;                                        \
		} else {                                                       \
			check_failed++;                                        \
			fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, \
				__LINE__, #cond);                              \
		}                                                              \
	} while (0)

static inline int check_done(const char *name)
{
	printf("%s: %d passed, %d failed\n", name, check_passed, check_failed);
	return check_failed ? 1 : 0;
}

#endif
