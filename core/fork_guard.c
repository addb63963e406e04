// SPDX-License-Identifier: MIT
/*
 * Keeps the serving machinery out of forked children.
 *
 * Harnesses fork() IO workers from the process that serves a device. A
 * child that inherited a queue's io_uring (its fd or its ring mappings)
 * keeps that ring alive after the parent closes it, so the queue's
 * FETCH_REQs are never cancelled: IO the child has in flight then waits
 * for a server that is gone, and STOP_DEV waits for that IO. So the ring
 * and descriptor mappings are marked MADV_DONTFORK (queue.c), and the fds
 * registered here are closed in every child right after fork().
 *
 * The child of a multithreaded process may only do async-signal-safe work
 * before exec, so the registry is a fixed array of atomics, no lock.
 */
#include <pthread.h>
#include <unistd.h>

#include "internal.h"

#define GUARD_SLOTS 8192

static int guarded[GUARD_SLOTS]; /* fd + 1; 0 is a free slot */
static pthread_once_t once = PTHREAD_ONCE_INIT;

static void close_in_child(void)
{
	for (int i = 0; i < GUARD_SLOTS; i++) {
		int v = __atomic_load_n(&guarded[i], __ATOMIC_RELAXED);

		if (v > 0)
			close(v - 1);
	}
}

static void install(void)
{
	pthread_atfork(NULL, NULL, close_in_child);
}

void lb_fork_guard_add(int fd)
{
	pthread_once(&once, install);
	for (int i = 0; i < GUARD_SLOTS; i++) {
		int free_slot = 0;

		if (__atomic_compare_exchange_n(&guarded[i], &free_slot, fd + 1,
						false, __ATOMIC_SEQ_CST,
						__ATOMIC_SEQ_CST))
			return;
	}
	/* Full: that fd stays open in children, as it would without us. */
}

void lb_fork_guard_remove(int fd)
{
	for (int i = 0; i < GUARD_SLOTS; i++) {
		int mine = fd + 1;

		if (__atomic_compare_exchange_n(&guarded[i], &mine, 0, false,
						__ATOMIC_SEQ_CST,
						__ATOMIC_SEQ_CST))
			return;
	}
}
