// SPDX-License-Identifier: MIT
/*
 * build/luablk: a LuaJIT host whose only job is to run luablk.cli. The
 * command line is parsed and executed in Lua; the core's symbols are
 * exported from this binary so that Lua reaches them through ffi.C.
 */
#include <lauxlib.h>
#include <limits.h>
#include <lua.h>
#include <lualib.h>
#include <stdio.h>

#include "internal.h"

static int traceback(lua_State *L)
{
	luaL_traceback(L, L, lua_tostring(L, 1), 1);
	return 1;
}

int main(int argc, char **argv)
{
	char dir[PATH_MAX];
	lua_State *L;
	int code;

	if (lb_find_lua_dir(dir, sizeof(dir)) < 0) {
		fprintf(stderr, "luablk: %s\n", luablk_last_error());
		return 1;
	}
	luablk_set_lua_dir(dir);
	L = luaL_newstate();
	if (!L) {
		fprintf(stderr, "luablk: cannot create a Lua state\n");
		return 1;
	}
	lb_lua_prepare(L, dir);
	lua_pushcfunction(L, traceback);
	lua_getglobal(L, "require");
	lua_pushliteral(L, "luablk.cli");
	if (lua_pcall(L, 1, 1, 1)) {
		fprintf(stderr, "luablk: %s\n", lua_tostring(L, -1));
		return 1;
	}
	lua_getfield(L, -1, "main");
	lua_createtable(L, argc, 0);
	for (int i = 0; i < argc; i++) {
		lua_pushstring(L, argv[i]);
		lua_rawseti(L, -2, i);
	}
	if (lua_pcall(L, 1, 1, 1)) {
		/* cli.main reports user errors itself; this is a bug. */
		fprintf(stderr, "luablk: internal error: %s\n",
			lua_tostring(L, -1));
		return 70;
	}
	code = (int)lua_tointeger(L, -1);
	lua_close(L);
	return code;
}
