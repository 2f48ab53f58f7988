# Builds every tests/fuzz/fuzz_*.c as a libFuzzer target with clang,
# ASan and UBSan, against libkiln built the same way (build/fuzz/).
FUZZ_SRCS := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_BINS := $(FUZZ_SRCS:tests/fuzz/%.c=build/fuzz/%)
FSAN := -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined
PKGS := libuv libgit2 libcurl sqlite3 yaml-0.1 jansson libcrypto libssl

.PHONY: all lib
all: $(FUZZ_BINS)

lib:
	$(MAKE) --no-print-directory -f Makefile CC=clang B=build/fuzz OPT="-O1 -g" SAN="$(FSAN)" build/fuzz/libkiln.a

build/fuzz/%: tests/fuzz/%.c lib
	clang -std=c11 -D_GNU_SOURCE -I. -O1 -g -fsanitize=fuzzer,address,undefined \
	  $(shell pkg-config --cflags $(PKGS)) -o $@ $< build/fuzz/libkiln.a \
	  $(shell pkg-config --libs $(PKGS)) -lhttp_parser -ldl -lpthread -lm
