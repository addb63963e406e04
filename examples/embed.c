// SPDX-License-Identifier: MIT
/*
 * Embedding luablk in a C program: serve a Lua backend until SIGINT or
 * SIGTERM. Built by `make` as build/embed-example.
 *
 *   sudo build/embed-example examples/ramdisk.lua 268435456
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "luablk.h"

int main(int argc, char **argv)
{
	struct luablk_config cfg;
	struct luablk_dev *dev;
	int ret, sig;

	if (argc != 3) {
		fprintf(stderr, "usage: %s BACKEND SIZE_BYTES\n", argv[0]);
		return 2;
	}
	luablk_config_init(&cfg);
	cfg.backend = argv[1];
	cfg.size = strtoull(argv[2], NULL, 0);

	/* Block the signals first so they wait for luablk_dev_wait(). */
	luablk_signals_block();
	ret = luablk_dev_new(&cfg, &dev);
	if (ret < 0) {
		fprintf(stderr, "luablk: %s\n", luablk_last_error());
		return 1;
	}
	printf("/dev/ublkb%d\n", luablk_dev_id(dev));
	fflush(stdout);

	do
		sig = luablk_dev_wait(dev, -1);
	while (sig == 1); /* SIGHUP: keep serving */

	/* Every fd on /dev/ublkbN must be closed first, or this waits. */
	ret = luablk_dev_close(dev, 0);
	if (ret < 0) {
		fprintf(stderr, "luablk: %s\n", luablk_last_error());
		return 1;
	}
	return 0;
}
