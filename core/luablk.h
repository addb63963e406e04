/* SPDX-License-Identifier: MIT */
/*
 * luablk: Linux userspace block devices (ublk) served by LuaJIT backends.
 *
 * The API itself lives in luablk_ffi.h, which Lua also loads through
 * ffi.cdef; this header only adds what C needs around it. See that file for
 * each function's contract, and README.md for a walk-through.
 */
#ifndef LUABLK_H
#define LUABLK_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#include "luablk_ffi.h"

#ifdef __cplusplus
}
#endif

#endif
