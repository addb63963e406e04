// SPDX-License-Identifier: MIT
/*
 * Atomic 64-bit words for shared regions. LuaJIT's FFI has no atomics, and
 * counters or flags that several queue threads or processes touch need
 * them; each is one instruction behind a call of a few nanoseconds.
 */
#include "internal.h"

uint64_t luablk_atomic_add(uint64_t *p, uint64_t v)
{
	return __atomic_add_fetch(p, v, __ATOMIC_SEQ_CST);
}

uint64_t luablk_atomic_load(const uint64_t *p)
{
	return __atomic_load_n(p, __ATOMIC_SEQ_CST);
}

void luablk_atomic_store(uint64_t *p, uint64_t v)
{
	__atomic_store_n(p, v, __ATOMIC_SEQ_CST);
}

int luablk_atomic_cas(uint64_t *p, uint64_t expected, uint64_t desired)
{
	return __atomic_compare_exchange_n(p, &expected, desired, false,
					   __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
}
