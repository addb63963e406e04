// SPDX-License-Identifier: MIT
/*
 * The Lua host: one LuaJIT state per queue. It loads the backend through
 * luablk.dispatch, which returns a function that serves a whole batch; the
 * queue calls it once per batch, so the C-to-Lua transition is paid per
 * batch and the per-IO work stays in compiled Lua and FFI calls.
 */
#include <errno.h>
#include <lauxlib.h>
#include <limits.h>
#include <lua.h>
#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

struct lua_host {
	lua_State *L;
	int run_ref; /* registry ref of the batch function */
	int close_ref; /* registry ref of the backend's close hook */
};

static void push_list(lua_State *L, const char *const *list, int n)
{
	lua_createtable(L, n, 0);
	for (int i = 0; i < n; i++) {
		lua_pushstring(L, list[i]);
		lua_rawseti(L, -2, i + 1);
	}
}

static bool cap(lua_State *L, int idx, const char *name)
{
	bool v;

	lua_getfield(L, idx, name);
	v = lua_toboolean(L, -1);
	lua_pop(L, 1);
	return v;
}

/* Pushes luablk.dispatch[name]; -1 with the error pushed instead. */
static int push_dispatch(lua_State *L, const char *name)
{
	lua_getglobal(L, "require");
	lua_pushliteral(L, "luablk.dispatch");
	if (lua_pcall(L, 1, 1, 0))
		return -1;
	lua_getfield(L, -1, name);
	lua_remove(L, -2);
	return 0;
}

/*
 * Calls luablk.dispatch.start(h, dev, q, backend, args, filters) in L,
 * which leaves the batch function, a table of capabilities and the close
 * hook; leaves the close hook and the batch function on the stack.
 */
static int load_backend(lua_State *L, struct luablk_handler *h)
{
	struct luablk_dev *dev = h->dev;

	if (push_dispatch(L, "start") < 0)
		return -1;
	lua_pushlightuserdata(L, h);
	lua_pushlightuserdata(L, dev);
	lua_pushinteger(L, h->q);
	lua_pushstring(L, dev->cfg.backend);
	push_list(L, dev->cfg.args, dev->cfg.argc);
	push_list(L, dev->cfg.filters, dev->cfg.nfilters);
	if (lua_pcall(L, 6, 3, 0))
		return -1;
	if (lua_istable(L, -2)) {
		h->caps.write_cache = cap(L, -2, "write_cache");
		h->caps.fua = cap(L, -2, "fua");
		h->caps.discard = cap(L, -2, "discard");
		h->caps.write_zeroes = cap(L, -2, "write_zeroes");
	}
	lua_remove(L, -2);
	return 0;
}

static void push_caps(lua_State *L, const struct lb_caps *caps)
{
	lua_createtable(L, 0, 4);
	lua_pushboolean(L, caps->write_cache);
	lua_setfield(L, -2, "write_cache");
	lua_pushboolean(L, caps->fua);
	lua_setfield(L, -2, "fua");
	lua_pushboolean(L, caps->discard);
	lua_setfield(L, -2, "discard");
	lua_pushboolean(L, caps->write_zeroes);
	lua_setfield(L, -2, "write_zeroes");
}

static int lua_init(struct luablk_handler *h)
{
	struct lua_host *host = calloc(1, sizeof(*host));
	const char *msg;
	int ret;

	if (!host)
		return lb_fail(-ENOMEM, "out of memory");
	host->L = luaL_newstate();
	if (!host->L) {
		free(host);
		return lb_fail(-ENOMEM, "cannot create a Lua state");
	}
	lb_lua_prepare(host->L, h->dev->lua_dir);
	if (load_backend(host->L, h) < 0) {
		msg = lua_tostring(host->L, -1);
		ret = lb_fail(-EINVAL, "%s",
			      msg ? msg : "backend failed to load");
		lua_close(host->L);
		free(host);
		return ret;
	}
	host->close_ref = luaL_ref(host->L, LUA_REGISTRYINDEX);
	host->run_ref = luaL_ref(host->L, LUA_REGISTRYINDEX);
	h->priv = host;
	return 0;
}

static void lua_run(struct luablk_handler *h, unsigned int n)
{
	struct lua_host *host = h->priv;
	lua_State *L = host->L;

	lua_rawgeti(L, LUA_REGISTRYINDEX, host->run_ref);
	lua_pushinteger(L, n);
	/*
	 * The batch function protects each backend call itself, so an error
	 * here is in the dispatch loop or out of memory. The entries keep the
	 * -EIO the queue preset, and the device goes on serving.
	 */
	if (lua_pcall(L, 1, 0, 0)) {
		fprintf(stderr, "luablk: queue %u: dispatch failed: %s\n", h->q,
			lua_tostring(L, -1));
		lua_pop(L, 1);
	}
}

static void lua_fini(struct luablk_handler *h)
{
	struct lua_host *host = h->priv;

	if (!host)
		return;
	/* The backend's close(self), if any; it reports its own errors. */
	lua_rawgeti(host->L, LUA_REGISTRYINDEX, host->close_ref);
	if (lua_isfunction(host->L, -1) && lua_pcall(host->L, 0, 0, 0))
		fprintf(stderr, "luablk: queue %u: close: %s\n", h->q,
			lua_tostring(host->L, -1));
	lua_close(host->L);
	free(host);
}

/* luablk.dispatch.prepare(backend, args, need): the new backend, aside. */
static int lua_prepare(struct luablk_handler *h, const char *backend,
		       const char *const *args, int argc,
		       const struct lb_caps *need)
{
	lua_State *L = ((struct lua_host *)h->priv)->L;
	const char *msg;
	int ret;

	if (push_dispatch(L, "prepare") == 0) {
		lua_pushstring(L, backend);
		push_list(L, args, argc);
		push_caps(L, need);
		if (lua_pcall(L, 3, 0, 0) == 0)
			return 0;
	}
	msg = lua_tostring(L, -1);
	ret = lb_fail(-EINVAL, "%s", msg ? msg : "backend failed to load");
	lua_pop(L, 1);
	return ret;
}

/* luablk.dispatch.commit() returns the new batch function and close hook. */
static void lua_commit(struct luablk_handler *h)
{
	struct lua_host *host = h->priv;
	lua_State *L = host->L;

	if (push_dispatch(L, "commit") < 0 || lua_pcall(L, 0, 2, 0)) {
		/* Only out of memory gets here; the old backend stays. */
		fprintf(stderr, "luablk: queue %u: reload: %s\n", h->q,
			lua_tostring(L, -1));
		lua_pop(L, 1);
		return;
	}
	luaL_unref(L, LUA_REGISTRYINDEX, host->close_ref);
	luaL_unref(L, LUA_REGISTRYINDEX, host->run_ref);
	host->close_ref = luaL_ref(L, LUA_REGISTRYINDEX);
	host->run_ref = luaL_ref(L, LUA_REGISTRYINDEX);
}

static void lua_abort(struct luablk_handler *h)
{
	lua_State *L = ((struct lua_host *)h->priv)->L;

	if (push_dispatch(L, "abort") < 0 || lua_pcall(L, 0, 0, 0))
		lua_pop(L, 1);
}

const struct lb_handler_ops lb_lua_ops = {
	.name = "lua",
	.init = lua_init,
	.run = lua_run,
	.fini = lua_fini,
	.prepare = lua_prepare,
	.commit = lua_commit,
	.abort = lua_abort,
};
