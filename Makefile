# luablk build, test and tooling entry points. `make help` lists them.

PREFIX ?= /usr/local
LUA_INSTALL_DIR = $(PREFIX)/share/luablk/lua
BUILD ?= build
CC ?= cc
CFLAGS ?= -O2 -g
SANITIZE ?=

PKGS = luajit liburing
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS := $(shell pkg-config --libs $(PKGS) 2>/dev/null)

WARN = -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes
ALL_CFLAGS = $(CFLAGS) $(WARN) -std=gnu11 -fPIC -pthread $(SANITIZE) \
	-Icore $(PKG_CFLAGS) -DLUABLK_INSTALL_LUA_DIR='"$(LUA_INSTALL_DIR)"'
LDLIBS = $(PKG_LIBS) -lpthread

CORE_SRC = $(filter-out core/cli_main.c,$(wildcard core/*.c))
CORE_OBJ = $(CORE_SRC:core/%.c=$(BUILD)/obj/%.o) $(BUILD)/obj/cdef.o
HEADERS = $(wildcard core/*.h)
CTEST_SRC = $(wildcard spec/c/test_*.c)
CTEST_BIN = $(CTEST_SRC:spec/c/%.c=$(BUILD)/%)

.PHONY: all asan test unit kernel-test soak lint format deps demo bench bench-quick install clean help

all: $(BUILD)/luablk $(BUILD)/libluablk.so $(BUILD)/embed-example $(BUILD)/bench-dispatch $(CTEST_BIN)

help:
	@echo "make            build $(BUILD)/luablk, libluablk and the C tests"
	@echo "make asan       the same with AddressSanitizer+UBSan in build-asan/"
	@echo "make test       every test: unit (no kernel), then real-kernel"
	@echo "make unit       only the tests that need no kernel"
	@echo "make soak       the long harness runs (torture 10 min, full stress)"
	@echo "make demo       a Lua-backed device with ext4 on it (VM if needed)"
	@echo "make bench      benchmarks: Lua against the C baselines and peers (~25-30 min)"
	@echo "make bench-quick  one minute of benchmark; checks the report, not speed"
	@echo "make deps       install the Debian packages everything needs"
	@echo "make lint       clang-format check and luacheck"

$(BUILD)/obj/%.o: core/%.c $(HEADERS) | $(BUILD)/obj
	$(CC) $(ALL_CFLAGS) -c -o $@ $<

# The FFI header is embedded so that the binary needs no file to cdef it.
$(BUILD)/cdef.c: core/luablk_ffi.h scripts/embed-header | $(BUILD)/obj
	scripts/embed-header lb_ffi_cdef $< > $@

$(BUILD)/obj/cdef.o: $(BUILD)/cdef.c
	$(CC) $(ALL_CFLAGS) -c -o $@ $<

$(BUILD)/libluablk.a: $(CORE_OBJ)
	rm -f $@ && ar rcs $@ $^

$(BUILD)/libluablk.so: $(CORE_OBJ)
	$(CC) $(ALL_CFLAGS) -shared -o $@ $^ $(LDLIBS)

# -rdynamic exports the core so Lua finds it through ffi.C.
$(BUILD)/luablk: $(BUILD)/obj/cli_main.o $(BUILD)/libluablk.a
	$(CC) $(ALL_CFLAGS) -rdynamic -o $@ $< \
		-Wl,--whole-archive $(BUILD)/libluablk.a -Wl,--no-whole-archive $(LDLIBS)

# The embedding example links the shared library, as a user's program would.
$(BUILD)/embed-example: examples/embed.c $(BUILD)/libluablk.so
	$(CC) $(ALL_CFLAGS) -o $@ $< -L$(BUILD) -lluablk -Wl,-rpath,'$$ORIGIN' $(LDLIBS)

$(BUILD)/bench-dispatch: scripts/bench/dispatch.c $(BUILD)/libluablk.a
	$(CC) $(ALL_CFLAGS) -rdynamic -o $@ $< \
		-Wl,--whole-archive $(BUILD)/libluablk.a -Wl,--no-whole-archive $(LDLIBS)

$(BUILD)/test_%: spec/c/test_%.c spec/c/check.h $(BUILD)/libluablk.a
	$(CC) $(ALL_CFLAGS) -rdynamic -o $@ $< \
		-Wl,--whole-archive $(BUILD)/libluablk.a -Wl,--no-whole-archive $(LDLIBS)

$(BUILD)/obj:
	mkdir -p $@

asan:
	$(MAKE) BUILD=build-asan SANITIZE="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined"

# The entry points a newcomer runs install missing packages first, then
# build in a sub-make (the flags above need pkg-config's answers).
# Every test; the last line is "N passed, N failed" over all suites.
test:
	scripts/deps --if-missing
	$(MAKE) all
	$(MAKE) asan
	scripts/test/run-all

unit: all
	scripts/test/run-unit

# The long harness runs (torture for 10 minutes, full stress counts).
soak:
	scripts/deps --if-missing
	$(MAKE) all
	$(MAKE) asan
	scripts/test/run-soak

kernel-test: all
	scripts/test/run-kernel

demo:
	scripts/deps --if-missing
	$(MAKE) all
	scripts/demo

# Benchmarks: numbers to compare, never pass/fail (see scripts/bench/).
bench:
	scripts/deps --if-missing
	$(MAKE) all
	scripts/bench/run

# A short run for CI: fails only if the benchmark or its report is broken.
bench-quick:
	scripts/deps --if-missing
	$(MAKE) all
	scripts/bench/run --quick

deps:
	scripts/deps

lint:
	clang-format --dry-run --Werror core/*.c core/*.h spec/c/*.c spec/c/*.h examples/*.c scripts/bench/*.c
	luacheck -q lua spec scripts examples

format:
	clang-format -i core/*.c core/*.h spec/c/*.c spec/c/*.h examples/*.c scripts/bench/*.c

install: all
	install -D -m 0755 $(BUILD)/luablk $(DESTDIR)$(PREFIX)/bin/luablk
	install -D -m 0644 $(BUILD)/libluablk.so $(DESTDIR)$(PREFIX)/lib/libluablk.so
	install -D -m 0644 core/luablk.h $(DESTDIR)$(PREFIX)/include/luablk.h
	install -D -m 0644 core/luablk_ffi.h $(DESTDIR)$(PREFIX)/include/luablk_ffi.h
	mkdir -p $(DESTDIR)$(LUA_INSTALL_DIR)
	cp -r lua/luablk $(DESTDIR)$(LUA_INSTALL_DIR)/

clean:
	rm -rf build build-asan
