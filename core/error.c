// SPDX-License-Identifier: MIT
/* Per-thread "last error" text, so -errno results can carry a reason. */
#include <stdarg.h>
#include <stdio.h>

#include "internal.h"

static __thread char last_error[512];

int lb_fail(int err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(last_error, sizeof(last_error), fmt, ap);
	va_end(ap);
	return err;
}

void lb_clear_error(void)
{
	last_error[0] = '\0';
}

const char *luablk_last_error(void)
{
	return last_error;
}

int luablk_version(void)
{
	return LUABLK_ABI_VERSION;
}
