# lhttpd: one non-recursive Makefile. `make help` lists the targets.
# `make check` and `make run` first install missing Debian packages (`make deps`), then
# re-enter this Makefile so that pkg-config sees them.

VERSION := $(shell cat VERSION 2>/dev/null || echo 0.0.0)
PREFIX ?= /usr/local
BINDIR ?= $(PREFIX)/bin
SBINDIR ?= $(PREFIX)/sbin
INCLUDEDIR ?= $(PREFIX)/include
SYSCONFDIR ?= /etc
MANDIR ?= $(PREFIX)/share/man
LIBDIR ?= $(PREFIX)/lib
MODULEDIR ?= $(LIBDIR)/lhttpd/modules
DOCDIR ?= $(PREFIX)/share/doc/lhttpd
DESTDIR ?=
B ?= build

CC ?= cc
PKGS := libevent libevent_pthreads libnats libcurl libsystemd jansson libssl libcrypto
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS = $(shell pkg-config --libs $(PKGS) 2>/dev/null)

WARN := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wformat=2 \
        -Wno-unused-parameter
ifeq ($(CI),true)
WARN += -Werror
endif
ifneq ($(WERROR),)
WARN += -Werror
endif
OPT ?= -O2 -g
CFLAGS ?=
SAN :=
ifneq ($(SANITIZE),)
SAN := -fsanitize=$(SANITIZE) -fno-omit-frame-pointer -fno-sanitize-recover=all
OPT := -O1 -g
endif
# -fvisibility=hidden with -rdynamic: the binary exports the functions that lhttpd.h
# marks LH_API (the module API, worker/api.c) and nothing else, so a module that calls an
# internal function is refused at load ("undefined symbol").
ALL_CFLAGS = -std=c11 -D_GNU_SOURCE -DLH_VERSION='"$(VERSION)"' -Ishared -Iworker \
             $(OPT) $(WARN) $(SAN) $(PKG_CFLAGS) -pthread -fvisibility=hidden -MMD -MP $(CFLAGS)
ALL_LDFLAGS = $(SAN) -pthread -rdynamic $(LDFLAGS)

SHARED_SRC := $(wildcard shared/*.c)
WORKER_SRC := $(wildcard worker/*.c)
MASTER_SRC := $(wildcard master/*.c)
LHTTPC_SRC := $(wildcard clients/lhttpc/*.c)
UNIT_SRC := $(wildcard tests/unit/test_*.c)
FUZZ_SRC := $(wildcard tests/fuzz/fuzz_*.c)
MODULE_SRC := $(wildcard worker/modules/*.c)

obj = $(patsubst %.c,$(B)/obj/%.o,$(1))
SHARED_OBJ := $(call obj,$(SHARED_SRC))
WORKER_OBJ := $(call obj,$(WORKER_SRC))
MASTER_OBJ := $(call obj,$(MASTER_SRC))
LHTTPC_OBJ := $(call obj,$(LHTTPC_SRC))
UNIT_BIN := $(patsubst tests/unit/%.c,$(B)/tests/%,$(UNIT_SRC))
FUZZ_BIN := $(patsubst tests/fuzz/%.c,$(B)/fuzz/%,$(FUZZ_SRC))
MODULE_SO := $(patsubst worker/modules/%.c,$(B)/modules/%.so,$(MODULE_SRC))

LHTTPD := $(B)/lhttpd
LHTTPC := $(B)/lhttpc

.PHONY: all check run deps install uninstall clean fuzz fuzz-smoke help unit integration \
        deb rpm package-test \
        _check _run _test-build check-san _check-san
.DEFAULT_GOAL := all

all: $(LHTTPD) $(LHTTPC) $(MODULE_SO)

$(B)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -c $< -o $@

$(B)/libshared.a: $(SHARED_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(LHTTPD): $(MASTER_OBJ) $(WORKER_OBJ) $(B)/libshared.a
	$(CC) $(ALL_LDFLAGS) -o $@ $(MASTER_OBJ) $(WORKER_OBJ) $(B)/libshared.a $(PKG_LIBS) -ldl

$(LHTTPC): $(LHTTPC_OBJ) $(B)/libshared.a
	$(CC) $(ALL_LDFLAGS) -o $@ $(LHTTPC_OBJ) $(B)/libshared.a $(PKG_LIBS)

# The example modules are built as a third party would build one: against the public
# header alone, as installed (<lhttpd/lhttpd.h>), with nothing else from the tree, and
# with the same sanitizer flags as the server that loads them.
API_HDR := $(B)/include/lhttpd/lhttpd.h
MODULE_CFLAGS = -std=c11 -I$(B)/include $(OPT) $(WARN) $(SAN) \
                $(shell pkg-config --cflags jansson 2>/dev/null) -fPIC -MMD -MP $(CFLAGS)

$(API_HDR): worker/lhttpd.h
	@mkdir -p $(dir $@)
	cp $< $@

$(B)/modules/%.so: worker/modules/%.c $(API_HDR)
	@mkdir -p $(dir $@)
	$(CC) $(MODULE_CFLAGS) -shared $(SAN) $(LDFLAGS) -o $@ $< \
	  $(shell pkg-config --libs jansson 2>/dev/null)

# lhttp-bench: the load generator (clients/bench); libc and OpenSSL (wss://, https://). `make bench` runs
# tests/bench/run.sh (lhttpd against nginx + nchan; not part of `make check`).
BENCH_SRC := $(wildcard clients/bench/*.c)
BENCH_OBJ := $(call obj,$(BENCH_SRC))
LHTTP_BENCH := $(B)/lhttp-bench
.PHONY: bench
all: $(LHTTP_BENCH)

$(LHTTP_BENCH): $(BENCH_OBJ)
	$(CC) $(ALL_LDFLAGS) -o $@ $(BENCH_OBJ) $(shell pkg-config --libs libssl libcrypto 2>/dev/null)

# bench-floor: the baseline of `make bench`, one send per delivery and nothing else
# (tests/bench/floor.c; a measuring instrument, not installed).
BENCH_FLOOR := $(B)/bench-floor
all: $(BENCH_FLOOR)

$(BENCH_FLOOR): tests/bench/floor.c $(B)/libshared.a
	$(CC) $(ALL_CFLAGS) $(ALL_LDFLAGS) -o $@ $< $(B)/libshared.a $(PKG_LIBS)

bench: all
	@LHTTPD=$(abspath $(LHTTPD)) LHTTP_BENCH=$(abspath $(LHTTP_BENCH)) \
	  BENCH_FLOOR=$(abspath $(BENCH_FLOOR)) LHTTPC=$(abspath $(LHTTPC)) tests/bench/run.sh

# Unit tests link the shared objects and the worker objects (no main there).
$(B)/tests/%: tests/unit/%.c $(B)/libshared.a $(WORKER_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -Itests/unit $(ALL_LDFLAGS) -o $@ $< $(UNIT_EXTRA) $(WORKER_OBJ) $(B)/libshared.a $(PKG_LIBS) -ldl

# Unit tests of out-of-memory paths: linked with the failing allocator
# (tests/unit/lh_failalloc.h), which --wrap puts under every malloc, calloc, realloc,
# strdup, strndup, curl_easy_init and event_new of the linked objects.
FAILALLOC_TESTS := $(B)/tests/test_upstream $(B)/tests/test_nats $(B)/tests/test_conn
FAILALLOC_OBJ := $(B)/obj/tests/unit/lh_failalloc.o
$(FAILALLOC_TESTS): $(FAILALLOC_OBJ)
$(FAILALLOC_TESTS): UNIT_EXTRA = $(FAILALLOC_OBJ) \
  -Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc,--wrap=strdup,--wrap=strndup \
  -Wl,--wrap=curl_easy_init,--wrap=event_new

# libFuzzer targets: clang, each parser with ASan+UBSan. `make fuzz FUZZ_SECONDS=60`.
FUZZ_CC ?= clang
FUZZ_SECONDS ?= 30
FUZZ_CFLAGS = -std=c11 -D_GNU_SOURCE -Ishared -g -O1 -fsanitize=fuzzer-no-link,address,undefined \
              $(shell pkg-config --cflags jansson libcrypto) -MMD -MP
FUZZ_SHARED_OBJ := $(patsubst %.c,$(B)/fuzz-obj/%.o,$(SHARED_SRC))

$(B)/fuzz-obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -c $< -o $@

$(B)/fuzz/%: $(B)/fuzz-obj/tests/fuzz/%.o $(FUZZ_SHARED_OBJ)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) -g -fsanitize=fuzzer,address,undefined -o $@ $^ \
	  $(shell pkg-config --libs jansson libcrypto)

# fuzz_conn drives a whole worker (the connection layer and what sits on it): the worker
# objects are built for it with the fuzzer's instrumentation too.
FUZZ_WORKER_OBJ := $(patsubst %.c,$(B)/fuzz-obj/%.o,$(WORKER_SRC))
$(B)/fuzz-obj/worker/%.o $(B)/fuzz-obj/tests/fuzz/fuzz_conn.o: \
  FUZZ_CFLAGS += -Iworker -DLH_VERSION='"$(VERSION)"' $(PKG_CFLAGS) -pthread
$(B)/fuzz/fuzz_conn: $(B)/fuzz-obj/tests/fuzz/fuzz_conn.o $(FUZZ_WORKER_OBJ) $(FUZZ_SHARED_OBJ)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) -g -fsanitize=fuzzer,address,undefined -pthread -o $@ $^ $(PKG_LIBS) -ldl

fuzz: $(FUZZ_BIN)
	@set -e; for f in $(FUZZ_BIN); do n=$$(basename $$f); mkdir -p $(B)/corpus/$$n; \
	  echo "fuzz: $$n for $(FUZZ_SECONDS)s"; \
	  $$f -max_total_time=$(FUZZ_SECONDS) -timeout=5 -print_final_stats=0 $(B)/corpus/$$n tests/fuzz/corpus/$$n 2>&1 | tail -n 3; done

fuzz-smoke:
	@$(MAKE) --no-print-directory fuzz FUZZ_SECONDS=$(or $(FUZZ_SECONDS_SMOKE),5)

deps:
	@tests/lib/deps.sh

check:
	@tests/lib/deps.sh
	@$(MAKE) --no-print-directory _check

_test-build: all $(UNIT_BIN)

_check: _test-build
	@LHTTPD=$(abspath $(LHTTPD)) LHTTPC=$(abspath $(LHTTPC)) B=$(abspath $(B)) tests/run.sh

unit: _test-build
	@B=$(abspath $(B)) tests/run.sh unit

# check-san: every test against binaries built with AddressSanitizer and UBSan in
# build-san/; any sanitizer report (a leak at a worker's exit included) is a failure.
check-san:
	@tests/lib/deps.sh
	@$(MAKE) --no-print-directory B=build-san SANITIZE=address,undefined _check-san

_check-san: _test-build
	@LHTTPD=$(abspath $(LHTTPD)) LHTTPC=$(abspath $(LHTTPC)) B=$(abspath $(B)) \
	  LH_SAN_REPORTS=$(abspath $(B))/san-reports tests/run.sh

integration: all
	@LHTTPD=$(abspath $(LHTTPD)) LHTTPC=$(abspath $(LHTTPC)) B=$(abspath $(B)) tests/run.sh integration

# LH_RUN_MAKE: this make's pid, so the script stops when the make that started it is gone.
run:
	@tests/lib/deps.sh
	@LH_RUN_MAKE=$${LH_RUN_MAKE:-$$PPID} $(MAKE) --no-print-directory _run

_run: all
	@LHTTPD=$(abspath $(LHTTPD)) tests/lib/run-local.sh

install: all
	install -d $(DESTDIR)$(SBINDIR) $(DESTDIR)$(BINDIR) $(DESTDIR)$(SYSCONFDIR)/lhttpd \
	  $(DESTDIR)$(INCLUDEDIR)/lhttpd
	install -m 0755 $(LHTTPD) $(DESTDIR)$(SBINDIR)/lhttpd
	install -m 0755 $(LHTTPC) $(DESTDIR)$(BINDIR)/lhttpc
	install -m 0755 $(LHTTP_BENCH) $(DESTDIR)$(BINDIR)/lhttp-bench
	install -m 0644 worker/lhttpd.h $(DESTDIR)$(INCLUDEDIR)/lhttpd/lhttpd.h
	install -d $(DESTDIR)$(MODULEDIR) $(DESTDIR)$(DOCDIR)/examples/modules
	install -m 0755 $(MODULE_SO) $(DESTDIR)$(MODULEDIR)/
	install -m 0644 $(MODULE_SRC) $(DESTDIR)$(DOCDIR)/examples/modules/
	install -d $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(MANDIR)/man5 $(DESTDIR)$(MANDIR)/man8
	install -m 0644 packaging/man/lhttpc.1 $(DESTDIR)$(MANDIR)/man1/lhttpc.1
	install -m 0644 packaging/man/lhttp-bench.1 $(DESTDIR)$(MANDIR)/man1/lhttp-bench.1
	install -m 0644 packaging/man/lhttpd.json.5 $(DESTDIR)$(MANDIR)/man5/lhttpd.json.5
	install -m 0644 packaging/man/lhttpd.8 $(DESTDIR)$(MANDIR)/man8/lhttpd.8
	test -e $(DESTDIR)$(SYSCONFDIR)/lhttpd/lhttpd.json || \
	  install -m 0644 etc/lhttpd.json $(DESTDIR)$(SYSCONFDIR)/lhttpd/lhttpd.json

uninstall:
	rm -f $(DESTDIR)$(SBINDIR)/lhttpd $(DESTDIR)$(BINDIR)/lhttpc \
	  $(DESTDIR)$(BINDIR)/lhttp-bench $(DESTDIR)$(INCLUDEDIR)/lhttpd/lhttpd.h \
	  $(DESTDIR)$(MANDIR)/man1/lhttpc.1 $(DESTDIR)$(MANDIR)/man1/lhttp-bench.1 \
	  $(DESTDIR)$(MANDIR)/man5/lhttpd.json.5 \
	  $(DESTDIR)$(MANDIR)/man8/lhttpd.8 \
	  $(addprefix $(DESTDIR)$(MODULEDIR)/,$(notdir $(MODULE_SO))) \
	  $(addprefix $(DESTDIR)$(DOCDIR)/examples/modules/,$(notdir $(MODULE_SRC)))

# Packages, built from a copy of the tree (packaging/README.md): $(B)/deb, $(B)/rpm.
deb:
	packaging/build-deb.sh $(B)/deb

rpm:
	packaging/build-rpm.sh $(B)/rpm

# Builds both, installs the .deb on this machine and checks it, then purges it (root).
package-test:
	@tests/lib/deps.sh
	@B=$(abspath $(B)) tests/package/run.sh

clean:
	rm -rf $(B)

help:
	@echo "make            build $(LHTTPD), $(LHTTPC) and the example modules ($(B)/modules)"
	@echo "make run        install missing packages, start nats-server + lhttpd on :8081"
	@echo "make check      install missing packages, run every test"
	@echo "make check-san  every test against an ASan+UBSan build (build-san/); any report fails"
	@echo "make deps       install the Debian packages the build and tests need"
	@echo "make fuzz       run each libFuzzer target for FUZZ_SECONDS (default 30)"
	@echo "make install    install under PREFIX (default /usr/local), DESTDIR honoured"
	@echo "make deb        build the Debian packages into $(B)/deb (packaging/README.md)"
	@echo "make rpm        build the RPM packages into $(B)/rpm"
	@echo "make package-test   build both, install the .deb here, check it, purge it (root)"
	@echo "make SANITIZE=address,undefined ...   build with sanitizers (use B=build-san)"

-include $(shell find $(B)/obj $(B)/fuzz-obj $(B)/tests $(B)/modules -name '*.d' 2>/dev/null) \
  $(wildcard $(B)/*.d)
