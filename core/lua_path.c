// SPDX-License-Identifier: MIT
/*
 * Where Lua code may come from. luablk often runs as root, in whatever
 * directory root happens to be in, so LuaJIT's defaults are not good
 * enough: they search the working directory first ("./?.lua"), and they
 * honour LUA_PATH, LUA_CPATH and LUABLK_LUA_DIR from the environment.
 *
 * The rule: relative entries are always dropped, and a privileged process
 * (root, or set-id) keeps an entry from the environment only if its
 * directory and every directory above it belong to root and are not
 * writable by group or others. What it ignores, it says once on stderr.
 */
#include <errno.h>
#include <lauxlib.h>
#include <limits.h>
#include <lua.h>
#include <lualib.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"

static char lua_dir_override[PATH_MAX];

int luablk_set_lua_dir(const char *dir)
{
	if (!dir || strlen(dir) >= sizeof(lua_dir_override))
		return lb_fail(-EINVAL, "bad Lua module directory");
	strcpy(lua_dir_override, dir);
	return 0;
}

static bool privileged(void)
{
	return geteuid() == 0 || getuid() != geteuid() || getgid() != getegid();
}

/*
 * Whether only root can change what dir (an absolute path) holds: dir
 * and each existing directory above it are root's and not writable by
 * group or others. A missing component can only be made by the owner of
 * the existing directory above it, which is checked.
 */
static bool root_only(const char *dir)
{
	char path[PATH_MAX];
	struct stat st;
	char *slash;

	if (dir[0] != '/' || strlen(dir) >= sizeof(path))
		return false;
	strcpy(path, dir);
	for (;;) {
		if (stat(path, &st) == 0 &&
		    (st.st_uid != 0 || (st.st_mode & (S_IWGRP | S_IWOTH))))
			return false;
		slash = strrchr(path, '/');
		if (!slash || slash == path)
			break;
		*slash = '\0';
	}
	return stat("/", &st) == 0 && st.st_uid == 0;
}

/* Warns once per process about each kind of thing it ignores. */
static void ignoring(atomic_bool *said, const char *what, const char *value)
{
	if (atomic_exchange(said, true))
		return;
	fprintf(stderr,
		"luablk: running privileged, ignoring %s %s: only directories "
		"that root alone can write are used\n",
		what, value);
}

static bool has_modules(const char *dir)
{
	char path[PATH_MAX + 32];

	snprintf(path, sizeof(path), "%s/luablk/init.lua", dir);
	return access(path, R_OK) == 0;
}

/* The lua/ directory next to a build tree's binary (build/luablk). */
static bool beside_binary(char *buf, size_t len)
{
	char exe[PATH_MAX], real[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	char *slash;

	if (n <= 0)
		return false;
	exe[n] = '\0';
	slash = strrchr(exe, '/');
	if (!slash)
		return false;
	snprintf(slash, sizeof(exe) - (size_t)(slash - exe), "/../lua");
	if (!has_modules(exe) || !realpath(exe, real))
		return false;
	snprintf(buf, len, "%s", real);
	return true;
}

int lb_find_lua_dir(char *buf, size_t len)
{
	static atomic_bool said;
	const char *env = getenv("LUABLK_LUA_DIR");

	if (lua_dir_override[0] && has_modules(lua_dir_override)) {
		snprintf(buf, len, "%s", lua_dir_override);
		return 0;
	}
	if (env && privileged() && !root_only(env))
		ignoring(&said, "LUABLK_LUA_DIR", env);
	else if (env && has_modules(env)) {
		snprintf(buf, len, "%s", env);
		return 0;
	}
	if (beside_binary(buf, len))
		return 0;
	if (has_modules(LUABLK_INSTALL_LUA_DIR)) {
		snprintf(buf, len, "%s", LUABLK_INSTALL_LUA_DIR);
		return 0;
	}
	return lb_fail(-ENOENT, "cannot find the luablk Lua modules (set "
				"LUABLK_LUA_DIR to the directory holding "
				"luablk/init.lua)");
}

/* The directory part of a search template: "/a/b/?.lua" gives "/a/b". */
static void template_dir(const char *entry, size_t n, char *out, size_t len)
{
	const char *q = memchr(entry, '?', n);
	size_t dn = q ? (size_t)(q - entry) : n;

	if (dn >= len)
		dn = len - 1;
	memcpy(out, entry, dn);
	out[dn] = '\0';
	if (!q) { /* a file such as loadall.so */
		char *slash = strrchr(out, '/');

		if (slash)
			*slash = '\0';
		dn = strlen(out);
	}
	while (dn > 1 && out[dn - 1] == '/')
		out[--dn] = '\0';
}

/*
 * Filters package[field] (package at stack index pkg) by the rule above;
 * env names the variable that may have supplied it. Leaves the new path
 * on the Lua stack.
 */
static void filter_path(lua_State *L, int pkg, const char *field,
			const char *env, atomic_bool *said)
{
	bool from_env = getenv(env) != NULL, strict = privileged();
	char dir[PATH_MAX];
	luaL_Buffer b;
	const char *s, *end;
	size_t n;

	lua_getfield(L, pkg, field);
	s = lua_tostring(L, -1);
	luaL_buffinit(L, &b);
	for (; s && *s; s = *end ? end + 1 : end) {
		end = strchr(s, ';');
		if (!end)
			end = s + strlen(s);
		n = (size_t)(end - s);
		if (n == 0 || s[0] != '/')
			continue;
		template_dir(s, n, dir, sizeof(dir));
		if (strict && from_env && !root_only(dir)) {
			ignoring(said, env, dir);
			continue;
		}
		luaL_addlstring(&b, s, n);
		luaL_addchar(&b, ';');
	}
	luaL_pushresult(&b);
	lua_remove(L, -2);
}

int lb_lua_prepare(lua_State *L, const char *dir)
{
	static atomic_bool said_path, said_cpath;

	int pkg;

	luaL_openlibs(L);
	lua_getglobal(L, "package");
	pkg = lua_gettop(L);
	lua_pushfstring(L, "%s/?.lua;%s/?/init.lua;", dir, dir);
	filter_path(L, pkg, "path", "LUA_PATH", &said_path);
	lua_concat(L, 2);
	lua_setfield(L, pkg, "path");
	filter_path(L, pkg, "cpath", "LUA_CPATH", &said_cpath);
	lua_setfield(L, pkg, "cpath");
	lua_getfield(L, -1, "loaded");
	lua_pushstring(L, lb_ffi_cdef);
	lua_setfield(L, -2, "luablk.cdef");
	lua_pop(L, 2);
	return 0;
}
