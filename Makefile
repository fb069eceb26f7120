# Condrix: one entry point. `make run` starts the product, `make test` proves it.
# BUILD names the output directory; SAN=1 builds with ASan + UBSan.

BUILD ?= build
SAN ?=
CC ?= cc
PY := /usr/bin/python3
# V=1 shows full commands.
Q := $(if $(V),,@)

DEB_PKGS := build-essential pkg-config clang libuv1-dev libwslay-dev libmbedtls-dev \
  libsqlite3-dev libjansson-dev libsodium-dev node-llhttp libqrencode-dev \
  libcmocka-dev oathtool python3-websockets python3-pytest sqlite3 openssl curl nodejs@node npm@npm \
  nginx systemd chromium

PKG_LIBS := libuv sqlite3 jansson libsodium libqrencode
PKG_CFLAGS = $(shell pkg-config --cflags $(PKG_LIBS) 2>/dev/null)
PKG_LDLIBS = $(shell pkg-config --libs $(PKG_LIBS) 2>/dev/null)

LLHTTP_DIR := /usr/share/llhttp
LLHTTP_INC := /usr/share/include/llhttp

SANFLAGS := -fsanitize=address,undefined -fno-sanitize-recover=undefined
OPT := -O2
ifeq ($(SAN),1)
OPT := -O1 -fno-omit-frame-pointer $(SANFLAGS)
endif

CPPFLAGS := -Ilibcondrix-proto/include -Ilibcondrix-proto/src -I$(LLHTTP_INC) -D_GNU_SOURCE
CFLAGS := -std=c17 -g $(OPT) -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes \
  -Wno-missing-field-initializers -fstack-protector-strong $(PKG_CFLAGS)
LDFLAGS := $(if $(filter 1,$(SAN)),$(SANFLAGS))
LDLIBS := $(PKG_LDLIBS) -lwslay -lmbedtls -lmbedx509 -lmbedcrypto -lm -lpthread

LIB_SRC := $(sort $(wildcard libcondrix-proto/src/*.c))
LIB_OBJ := $(LIB_SRC:%.c=$(BUILD)/%.o)
LLHTTP_OBJ := $(BUILD)/llhttp/llhttp.o $(BUILD)/llhttp/api.o $(BUILD)/llhttp/http.o
LIB_A := $(BUILD)/libcondrix-proto.a

# Each program's objects minus main.c form an archive that unit tests may link.
CORE_SRC := $(filter-out core/main.c,$(sort $(wildcard core/*.c)))
CORE_OBJ := $(CORE_SRC:%.c=$(BUILD)/%.o)
CORE_A := $(BUILD)/core.a
MAESTRO_SRC := $(filter-out maestro/main.c,$(sort $(wildcard maestro/*.c)))
MAESTRO_OBJ := $(MAESTRO_SRC:%.c=$(BUILD)/%.o)
# The web client (maestro/web/) is embedded in condrix-maestro by a small generator.
WEB_FILES := $(sort $(wildcard maestro/web/*.html maestro/web/*.js maestro/web/*.css \
  maestro/web/*.svg maestro/web/*.png maestro/web/*.ico))
WEB_EMBED := $(BUILD)/gen/web-embed
WEB_GEN := $(BUILD)/gen/web_assets.c
MAESTRO_OBJ += $(BUILD)/gen/web_assets.o
MAESTRO_A := $(BUILD)/maestro.a
CLI_SRC := $(filter-out cli/main.c,$(sort $(wildcard cli/*.c)))
CLI_OBJ := $(CLI_SRC:%.c=$(BUILD)/%.o)
CLI_A := $(BUILD)/cli.a

BINS := $(BUILD)/bin/condrix-core
ifneq ($(wildcard maestro/main.c),)
BINS += $(BUILD)/bin/condrix-maestro
endif
ifneq ($(wildcard cli/main.c),)
BINS += $(BUILD)/bin/condrix
endif

UNIT_SRC := $(sort $(wildcard test/unit/test_*.c))
UNIT_BIN := $(UNIT_SRC:test/unit/%.c=$(BUILD)/test/%)
BENCH_BIN := $(BUILD)/bin/condrix-bench
FLOOR_BIN := $(BUILD)/bin/condrix-bench-floor

.PHONY: all deps run test check unit integration browser fuzz fuzz-smoke bench clean
.DEFAULT_GOAL := all

all: $(BINS)

# Installs what is missing; quick when everything is there.
deps:
	@./test/deps.sh $(DEB_PKGS)
	@[ test/browser/node_modules/.package-lock.json -nt test/browser/package-lock.json ] || \
	  npm ci --prefix test/browser --no-audit --no-fund

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	@echo "  CC      $<"
	$(Q)$(CC) $(CPPFLAGS) $(CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/llhttp/%.o: $(LLHTTP_DIR)/%.c
	@mkdir -p $(dir $@)
	$(Q)$(CC) -I$(LLHTTP_INC) -O2 -g -w $(if $(filter 1,$(SAN)),$(OPT)) -c $< -o $@

# Built and run on the build machine, never with sanitizers: it only writes a C file.
$(WEB_EMBED): maestro/web/embed.c maestro/web/webfile.h
	@mkdir -p $(dir $@)
	$(Q)$(CC) -std=c17 -O2 -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -o $@ $<
$(WEB_GEN): $(WEB_EMBED) $(WEB_FILES)
	@echo "  EMBED   $@"
	$(Q)$(WEB_EMBED) $@ $(WEB_FILES)
$(BUILD)/gen/web_assets.o: $(WEB_GEN) maestro/web/webfile.h
	$(Q)$(CC) $(CPPFLAGS) -Imaestro/web $(CFLAGS) -c $< -o $@
$(BUILD)/maestro/web.o: maestro/web/webfile.h

$(LIB_A): $(LIB_OBJ) $(LLHTTP_OBJ)
	@rm -f $@
	$(Q)ar rcs $@ $^

$(CORE_A): $(CORE_OBJ)
	@rm -f $@
	$(Q)ar rcs $@ $^
$(MAESTRO_A): $(MAESTRO_OBJ)
	@rm -f $@
	$(Q)ar rcs $@ $^
$(CLI_A): $(CLI_OBJ)
	@rm -f $@
	$(Q)ar rcs $@ $^

$(BUILD)/bin/condrix-core: $(BUILD)/core/main.o $(CORE_A) $(LIB_A)
	@mkdir -p $(dir $@)
	@echo "  LD      $@"
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)
$(BUILD)/bin/condrix-maestro: $(BUILD)/maestro/main.o $(MAESTRO_A) $(LIB_A)
	@mkdir -p $(dir $@)
	@echo "  LD      $@"
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)
$(BUILD)/bin/condrix: $(BUILD)/cli/main.o $(CLI_A) $(LIB_A)
	@mkdir -p $(dir $@)
	@echo "  LD      $@"
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/test/test_mx_%: test/unit/test_mx_%.c $(MAESTRO_A) $(LIB_A)
	@mkdir -p $(dir $@)
	@echo "  TEST    $@"
	$(Q)$(CC) $(CPPFLAGS) -Imaestro $(CFLAGS) -Wno-unused-parameter -o $@ $^ $(LDFLAGS) $(LDLIBS) -lcmocka

$(BUILD)/test/%: test/unit/%.c $(CORE_A) $(LIB_A)
	@mkdir -p $(dir $@)
	@echo "  TEST    $@"
	$(Q)$(CC) $(CPPFLAGS) -Icore $(CFLAGS) -Wno-unused-parameter -o $@ $^ $(LDFLAGS) $(LDLIBS) -lcmocka

$(BENCH_BIN): test/bench/loadgen.c $(LIB_A)
	@mkdir -p $(dir $@)
	@echo "  LD      $@"
	$(Q)$(CC) $(CPPFLAGS) $(CFLAGS) -o $@ $^ $(LDFLAGS) $(LDLIBS)

# The kernel floor for the bench: a bare epoll server, nothing of ours linked in.
$(FLOOR_BIN): test/bench/floor.c
	@mkdir -p $(dir $@)
	@echo "  LD      $@"
	$(Q)$(CC) $(CPPFLAGS) $(CFLAGS) -o $@ $^ $(LDFLAGS) -lmbedcrypto

unit: $(UNIT_BIN)
	@./test/run-unit.sh $(UNIT_BIN)

integration: all
	CONDRIX_BIN_DIR=$(abspath $(BUILD)/bin) $(PY) -m pytest -q -p no:cacheprovider test/integration

# Real chromium against real Maestro and Cores; screenshots in test-output/browser/.
browser: all
	CONDRIX_BIN_DIR=$(abspath $(BUILD)/bin) CONDRIX_TEST_OUTPUT=$(abspath test-output/browser) \
	  node --test test/browser/

check: all unit integration browser

# The suite twice: a normal build, then ASan + UBSan; fuzz drivers briefly.
test: deps
	$(MAKE) BUILD=build check
	$(MAKE) BUILD=build-asan SAN=1 check
	$(MAKE) fuzz-smoke

FUZZ_SRC := $(sort $(wildcard test/fuzz/fuzz_*.c))
FUZZ_BIN := $(FUZZ_SRC:test/fuzz/%.c=build-fuzz/%)
FUZZ_LIB_SRC := $(LIB_SRC) $(LLHTTP_DIR)/llhttp.c $(LLHTTP_DIR)/api.c $(LLHTTP_DIR)/http.c
build-fuzz/%: test/fuzz/%.c $(LIB_SRC) $(wildcard libcondrix-proto/include/condrix/*.h)
	@mkdir -p build-fuzz
	@echo "  FUZZ    $@"
	$(Q)clang $(CPPFLAGS) -std=c17 -g -O1 -fsanitize=fuzzer,address,undefined $(PKG_CFLAGS) \
	  -o $@ $< $(FUZZ_LIB_SRC) $(LDLIBS)

fuzz-smoke: $(FUZZ_BIN)
	@./test/run-fuzz.sh 10 $(FUZZ_BIN)
fuzz: deps $(FUZZ_BIN)
	@./test/run-fuzz.sh $${FUZZ_SECONDS:-60} $(FUZZ_BIN)

run: deps all
	@./contrib/run-demo.sh $(BUILD)/bin

bench: deps all $(BENCH_BIN) $(FLOOR_BIN)
	@./test/bench/run.sh $(BUILD)/bin

clean:
	rm -rf build build-asan build-fuzz

-include $(LIB_OBJ:.o=.d) $(CORE_OBJ:.o=.d) $(MAESTRO_OBJ:.o=.d) $(CLI_OBJ:.o=.d) $(BUILD)/core/main.d
