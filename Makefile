# kiln - one Makefile for the whole code base.
#
#   make            build build/kiln (and the selftest binaries when nvcc exists)
#   make run        install missing Debian packages, build, start a local farm
#   make check      unit tests, ASan+UBSan unit tests, integration tests, fuzzers
#   make check-integration-asan  the integration tests against an ASan+UBSan+LSan kiln (slow; not in check)
#   make bench      build and run every benchmark (bench/run_all.sh), record in docs/BENCHMARKS.md
#   make bench-quick the short forms (under 5 minutes); bench-bin only builds
#   make format     clang-format every C source
#
# Sources are discovered by wildcard: every .c under the MODULE_DIRS (one
# folder per concern, listed bottom-up) goes into libkiln.a (cli/main.c is
# the entry point), every tests/unit/test_*.c is one cmocka program, every
# tests/fuzz/fuzz_*.c one libFuzzer target, every bench/*.c one benchmark.

PKGS    := libuv libgit2 libcurl sqlite3 yaml-0.1 jansson libcrypto libssl
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lhttp_parser -ldl -lpthread -lm

CC      ?= cc
KILN_VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
WARN    := -std=c11 -Wall -Wextra -Werror -Wno-unused-parameter -Wshadow -Wvla
DEFS    := -D_GNU_SOURCE -DKILN_VERSION=\"$(KILN_VERSION)\"
INCS    := -I.

B ?= build
OPT ?= -O2 -g
SAN ?=
CFLAGS_ALL = $(WARN) $(DEFS) $(INCS) $(OPT) $(SAN) $(PKG_CFLAGS) -MMD -MP
LDFLAGS_ALL = $(SAN)

MODULE_DIRS := common nix recipes kernels-selftest scheduler http state server catalog git slurm forge workers cli
LIB_SRCS := $(filter-out cli/main.c,$(foreach d,$(MODULE_DIRS),$(wildcard $(d)/*.c)))
LIB_OBJS := $(LIB_SRCS:%.c=$(B)/obj/%.o)
MAIN_OBJ := $(B)/obj/cli/main.o
TEST_SRCS := $(wildcard tests/unit/test_*.c)
TEST_BINS := $(TEST_SRCS:tests/unit/%.c=$(B)/tests/%)
BENCH_SRCS := $(wildcard bench/*.c)
BENCH_BINS := $(BENCH_SRCS:bench/%.c=$(B)/bench/%)

NVCC ?= $(shell command -v nvcc 2>/dev/null || (test -x /usr/local/cuda/bin/nvcc && echo /usr/local/cuda/bin/nvcc))

.PHONY: all run chaos check check-includes check-unit check-asan check-integration check-integration-asan check-fuzz fuzz bench bench-bin bench-quick format clean deps selftest

all: $(B)/kiln

$(B)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -c $< -o $@

$(B)/libkiln.a: $(LIB_OBJS)
	@mkdir -p $(dir $@)
	rm -f $@
	ar rcs $@ $^

$(B)/kiln: $(MAIN_OBJ) $(B)/libkiln.a
	$(CC) $(LDFLAGS_ALL) -o $@ $(MAIN_OBJ) $(B)/libkiln.a $(PKG_LIBS)

$(B)/tests/%: tests/unit/%.c $(B)/libkiln.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -Itests -o $@ $< $(B)/libkiln.a $(PKG_LIBS) -lcmocka $(LDFLAGS_ALL)

$(B)/bench/%: bench/%.c $(B)/libkiln.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -o $@ $< $(B)/libkiln.a $(PKG_LIBS) $(LDFLAGS_ALL)

tests-bin: $(TEST_BINS)
bench-bin: $(B)/kiln $(BENCH_BINS)

# Benchmarks run on demand, never inside make check (no timed tests there).
bench: bench-bin
	@B=$(B) bash bench/run_all.sh full

bench-quick: bench-bin
	@B=$(B) bash bench/run_all.sh quick

deps:
	@bash scripts/install-deps.sh

run: deps
	@$(MAKE) --no-print-directory all
	@bash scripts/run-local.sh

# The check target runs everything through one script so the last line is
# the summary the CI reads: "N passed, N failed".
check: deps
	@bash scripts/check.sh

# The chaos suite's full form (issue 16); its bounded form runs in the
# integration step (tests/integration/test_chaos_bounded.sh).
chaos: all
	CHAOS_KILLS=25 CHAOS_JOBS=100 KILN_BIN=$(CURDIR)/$(B)/kiln KILN_SRC=$(CURDIR) \
		bash tests/chaos/test_chaos_serve.sh
	CHAOS_ROUNDS=30 CHAOS_JOBS=90 CHAOS_BUSY_S=random KILN_BIN=$(CURDIR)/$(B)/kiln \
		KILN_SRC=$(CURDIR) bash tests/chaos/test_chaos_faults.sh

check-includes check-unit check-asan check-integration check-integration-asan check-fuzz:
	@bash scripts/check.sh $(@:check-%=%)

fuzz: # long random fuzzing, outside make check: FUZZ_SECONDS (600) per target, see scripts/fuzz.sh
	@bash scripts/fuzz.sh

format:
	clang-format -i $$(git ls-files '*.c' '*.h' '*.cu')

clean:
	rm -rf build

-include $(LIB_OBJS:.o=.d) $(MAIN_OBJ:.o=.d)

# Modules may add rules of their own (for example the nvcc-built selftest)
# in a module.mk beside their sources, so this file stays small.
-include $(wildcard */module.mk)
