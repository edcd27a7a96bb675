# kaprobe: see README.md. `make demo`, `make check`, `make bench`, `make fuzz`; SANITIZE=1 for
# ASan+UBSan.
.SUFFIXES:

CC      ?= cc
PREFIX  ?= /usr/local
VERSION := 0.1.0
SANITIZE ?= 0
# Integration cases at a time (run.py -j): most of a case waits on timers.
INTEGRATION_JOBS ?= 2

ifeq ($(SANITIZE),1)
BUILD   := build/san
SANFLAGS := -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
OPT     := -O1
else
BUILD   := build/rel
SANFLAGS :=
OPT     := -O2
endif

PCAP_CFLAGS := $(shell pkg-config --cflags libpcap 2>/dev/null)
PCAP_LIBS   := $(shell pkg-config --libs libpcap 2>/dev/null || echo -lpcap)
INIH_LIBS   := $(shell pkg-config --libs inih 2>/dev/null || echo -linih)
CMOCKA_LIBS := $(shell pkg-config --libs cmocka 2>/dev/null || echo -lcmocka)
CAP_LIBS    := $(shell pkg-config --libs libcap 2>/dev/null || echo -lcap)
SYSTEMD_LIBS := $(shell pkg-config --libs libsystemd 2>/dev/null || echo -lsystemd)
JANSSON_CFLAGS := $(shell pkg-config --cflags jansson 2>/dev/null)
JANSSON_LIBS := $(shell pkg-config --libs jansson 2>/dev/null || echo -ljansson)
MNL_CFLAGS  := $(shell pkg-config --cflags libmnl 2>/dev/null)
MNL_LIBS    := $(shell pkg-config --libs libmnl 2>/dev/null || echo -lmnl)
NFTNL_CFLAGS := $(shell pkg-config --cflags libnftnl 2>/dev/null)
NFTNL_LIBS  := $(shell pkg-config --libs libnftnl 2>/dev/null || echo -lnftnl)
NFTABLES_CFLAGS := $(shell pkg-config --cflags libnftables 2>/dev/null)
NFTABLES_LIBS := $(shell pkg-config --libs libnftables 2>/dev/null || echo -lnftables)
# libnet 1.1.6 and libev ship no pkg-config file on Debian 12.
NET_LIBS    := -lnet
EV_LIBS     := -lev

CFLAGS  := -std=c11 -D_DEFAULT_SOURCE -D_GNU_SOURCE -DKAPROBE_VERSION=\"$(VERSION)\" \
           $(OPT) -g -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
           -Iinclude $(PCAP_CFLAGS) $(JANSSON_CFLAGS) $(MNL_CFLAGS) $(NFTNL_CFLAGS) $(NFTABLES_CFLAGS) \
           $(SANFLAGS) $(EXTRA_CFLAGS)
LDFLAGS := $(SANFLAGS) $(EXTRA_LDFLAGS)

CORE    := addr codec fsm rule config conntab logline state metrics statusview nlwalk actmsg \
           timerheap gateway
EDGE    := log capture sender engine atomicfile report action diag ifaddr discover loopstall \
           replay hush ctwatch
SERVICE := priv notify
DAEMON_OBJS := $(addprefix $(BUILD)/,$(addsuffix .o,$(CORE) $(EDGE) $(SERVICE) main))

# Each unit test links only the module it tests (and the pure modules that module uses).
UNIT_TESTS        := addr codec fsm rule config conntab log notify state metrics statusview \
                     atomicfile actmsg diag ifaddr learn sender timerheap observe engine gateway
UNIT_DEPS_timerheap := timerheap
UNIT_DEPS_addr    := addr
UNIT_DEPS_codec   := codec
UNIT_DEPS_fsm     := fsm
UNIT_DEPS_rule    := rule addr
UNIT_DEPS_config  := config rule addr
UNIT_DEPS_conntab := conntab addr
UNIT_DEPS_notify  := notify log logline
UNIT_DEPS_log     := log logline
UNIT_DEPS_state   := state addr fsm
UNIT_DEPS_metrics := metrics fsm
UNIT_DEPS_statusview := statusview state addr fsm
UNIT_DEPS_atomicfile := atomicfile
UNIT_DEPS_actmsg  := actmsg nlwalk addr
UNIT_DEPS_diag    := diag nlwalk addr
UNIT_DEPS_ifaddr  := ifaddr nlwalk addr
UNIT_DEPS_learn   := fsm codec
UNIT_DEPS_observe := fsm
UNIT_DEPS_sender  := sender codec addr
# The engine on a fake clock, no loop: sender.o only for the symbols (a send hook stands in).
UNIT_DEPS_engine  := engine codec conntab fsm rule addr config log logline timerheap sender gateway
UNIT_LIBS_engine  := $(PCAP_LIBS) $(NET_LIBS) $(EV_LIBS) $(INIH_LIBS) $(SYSTEMD_LIBS)
UNIT_DEPS_gateway := gateway rule addr logline
UNIT_LIBS_learn   := $(PCAP_LIBS)
UNIT_LIBS_sender  := $(NET_LIBS)
UNIT_LIBS_codec   := $(PCAP_LIBS)
UNIT_LIBS_rule    := $(PCAP_LIBS)
UNIT_LIBS_config  := $(INIH_LIBS)
UNIT_LIBS_log     := $(SYSTEMD_LIBS)
UNIT_LIBS_notify  := $(SYSTEMD_LIBS) $(EV_LIBS)
UNIT_LIBS_statusview := $(JANSSON_LIBS)
UNIT_LIBS_actmsg  := $(MNL_LIBS)
UNIT_LIBS_diag    := $(MNL_LIBS)
UNIT_LIBS_ifaddr  := $(MNL_LIBS)
UNIT_BINS := $(addprefix $(BUILD)/tests/test_,$(UNIT_TESTS))

.PHONY: all deps check unit replay-check contrib-check integration demo bench fuzz format clean \
        install uninstall

all: $(BUILD)/kaprobed build/kaprobed

build/kaprobed: $(BUILD)/kaprobed
	ln -sf $(notdir $(BUILD))/kaprobed $@

$(BUILD)/kaprobed: $(DAEMON_OBJS)
	$(CC) $(LDFLAGS) -o $@ $(DAEMON_OBJS) $(PCAP_LIBS) $(NET_LIBS) $(EV_LIBS) $(INIH_LIBS) $(CAP_LIBS) $(SYSTEMD_LIBS) \
		$(JANSSON_LIBS) $(NFTABLES_LIBS) $(NFTNL_LIBS) $(MNL_LIBS) -lm

$(BUILD)/%.o: src/%.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c -o $@ $<

$(BUILD)/tests/%.o: tests/unit/%.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c -o $@ $<

define unit_rule
$(BUILD)/tests/test_$(1): $(BUILD)/tests/test_$(1).o $(addprefix $(BUILD)/,$(addsuffix .o,$(UNIT_DEPS_$(1))))
	$$(CC) $$(LDFLAGS) -o $$@ $$^ $(UNIT_LIBS_$(1)) $$(CMOCKA_LIBS) -lm
endef
$(foreach t,$(UNIT_TESTS),$(eval $(call unit_rule,$(t))))

# Installs missing Debian packages (as root), then nothing else.
deps:
	@sh tests/deps.sh

unit: $(UNIT_BINS)
	@sh tests/run-unit.sh $(UNIT_BINS)

# Replay fixtures (tests/replay): captures replayed with kaprobed -r, their status logs compared
# with the expected ones. No root, no network.
replay-check: $(BUILD)/kaprobed
	@sh tests/replay/run.sh $(BUILD)/kaprobed

# contrib/: promtool checks and tests the alert rules; tests/contrib/check_contrib.py checks
# that the Grafana dashboard's expressions parse and name only metrics kaprobed writes (taken
# from a file rendered by metrics.c). No root, no network.
PROMTOOL ?= /usr/bin/promtool
$(BUILD)/tests/metrics_sample: tests/contrib/metrics_sample.c $(BUILD)/metrics.o $(BUILD)/fsm.o
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ -lm

contrib-check: $(BUILD)/tests/metrics_sample
	$(BUILD)/tests/metrics_sample > $(BUILD)/tests/metrics_sample.prom
	$(PROMTOOL) check rules contrib/prometheus/kaprobe.rules.yml
	$(PROMTOOL) test rules contrib/prometheus/tests/*.yml
	python3 tests/contrib/check_contrib.py --promtool $(PROMTOOL) \
		--metrics $(BUILD)/tests/metrics_sample.prom --dashboard contrib/grafana/kaprobe.json \
		--rules contrib/prometheus/kaprobe.rules.yml --tests contrib/prometheus/tests/*.yml \
		--selftest

integration: all
	@python3 tests/integration/run.py --kaprobed $(BUILD)/kaprobed -j $(INTEGRATION_JOBS)

check: deps
	@$(MAKE) --no-print-directory all
	@$(MAKE) --no-print-directory unit
	@$(MAKE) --no-print-directory replay-check
	@$(MAKE) --no-print-directory contrib-check
	@$(MAKE) --no-print-directory integration

demo: deps
	@$(MAKE) --no-print-directory all
	@python3 tests/integration/demo.py --kaprobed $(BUILD)/kaprobed --config conf/demo.ini

BENCH_BINS := $(BUILD)/bench/bench_core $(BUILD)/bench/bench_send $(BUILD)/bench/bench_stall \
              $(BUILD)/bench/bench_hush
$(BUILD)/bench/bench_hush: tests/bench/bench_hush.c $(BUILD)/hush.o
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $^ $(NFTABLES_LIBS) $(NFTNL_LIBS) $(MNL_LIBS)
$(BUILD)/bench/bench_stall: tests/bench/bench_stall.c $(addprefix $(BUILD)/,$(addsuffix .o,$(CORE) log engine sender atomicfile report diag discover loopstall))
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $^ $(INIH_LIBS) $(EV_LIBS) $(NET_LIBS) $(SYSTEMD_LIBS) $(JANSSON_LIBS) $(MNL_LIBS) -lm
$(BUILD)/bench/bench_core: tests/bench/bench_core.c $(addprefix $(BUILD)/,$(addsuffix .o,$(CORE) log engine sender))
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $^ $(INIH_LIBS) $(EV_LIBS) $(NET_LIBS) $(SYSTEMD_LIBS) $(JANSSON_LIBS) $(MNL_LIBS) -lm
$(BUILD)/bench/bench_send: tests/bench/bench_send.c $(BUILD)/sender.o $(BUILD)/addr.o $(BUILD)/codec.o $(BUILD)/log.o $(BUILD)/logline.o
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $^ $(NET_LIBS) $(SYSTEMD_LIBS) -lm

bench: deps
	@$(MAKE) --no-print-directory all $(BENCH_BINS)
	@sh tests/bench/run.sh $(BUILD)

# ---- fuzzing ------------------------------------------------------------------------
# make fuzz [FUZZ_SECONDS=20]: builds the libFuzzer targets of tests/fuzz with Debian's
# clang (ASan + UBSan), writes their seeds (tests/fuzz/make-seeds.py: the frames of
# tests/fixtures, the test configurations, netlink answers), and runs each target for
# FUZZ_SECONDS s; a crash fails it (the input is left in build/fuzz/crash-TARGET-*).
# Each target links only the modules it fuzzes, like the unit tests.
FUZZ_CC      ?= clang
FUZZ_SECONDS ?= 20
FUZZ_BUILD   := build/fuzz
FUZZ_SAN     := -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
FUZZ_CFLAGS  := -std=c11 -D_DEFAULT_SOURCE -D_GNU_SOURCE -DKAPROBE_VERSION=\"$(VERSION)\" -O1 -g \
                -Wall -Wextra -Werror -Iinclude $(PCAP_CFLAGS) $(JANSSON_CFLAGS) $(MNL_CFLAGS) \
                $(FUZZ_SAN)
FUZZ_TARGETS := codec fsm config diag ifaddr actmsg statusview
FUZZ_DEPS_codec      := codec
FUZZ_DEPS_fsm        := fsm
FUZZ_DEPS_config     := config rule addr
FUZZ_DEPS_diag       := diag nlwalk addr
FUZZ_DEPS_ifaddr     := ifaddr nlwalk
FUZZ_DEPS_actmsg     := actmsg nlwalk addr
FUZZ_DEPS_statusview := statusview
FUZZ_LIBS_config     := $(INIH_LIBS)
FUZZ_LIBS_statusview := $(JANSSON_LIBS)
FUZZ_LIBS_diag       := $(MNL_LIBS)
FUZZ_LIBS_ifaddr     := $(MNL_LIBS)
FUZZ_LIBS_actmsg     := $(MNL_LIBS)
FUZZ_BINS := $(addprefix $(FUZZ_BUILD)/fuzz_,$(FUZZ_TARGETS))

$(FUZZ_BUILD)/%.o: src/%.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -MMD -MP -c -o $@ $<

define fuzz_rule
$(FUZZ_BUILD)/fuzz_$(1): tests/fuzz/fuzz_$(1).c $(addprefix $(FUZZ_BUILD)/,$(addsuffix .o,$(FUZZ_DEPS_$(1))))
	$$(FUZZ_CC) $$(FUZZ_CFLAGS) -fsanitize=fuzzer -o $$@ $$^ $(FUZZ_LIBS_$(1)) -lm
endef
$(foreach t,$(FUZZ_TARGETS),$(eval $(call fuzz_rule,$(t))))

$(FUZZ_BUILD)/seeds/.done: tests/fuzz/make-seeds.py $(wildcard tests/fixtures/*.pcap tests/configs/*/*.ini conf/*.ini)
	@mkdir -p $(dir $@)
	python3 tests/fuzz/make-seeds.py $(FUZZ_BUILD)/seeds
	@touch $@

fuzz: deps
	@$(MAKE) --no-print-directory $(FUZZ_BINS) $(FUZZ_BUILD)/seeds/.done
	@sh tests/fuzz/run.sh $(FUZZ_BUILD) $(FUZZ_SECONDS) $(FUZZ_TARGETS)

format:
	clang-format -i src/*.c include/*.h tests/unit/*.c tests/bench/*.c tests/fuzz/*.c

clean:
	rm -rf build

# ---- install ------------------------------------------------------------------------
# make install [PREFIX=/usr/local] [DESTDIR=]: the daemon in $(PREFIX)/sbin, the config
# in /etc/kaprobe (an existing one is never overwritten), the systemd unit, logrotate
# file and man pages. Without DESTDIR, also the system user $(KAPROBE_USER) (useradd
# --system). make uninstall removes them again, but keeps an /etc/kaprobe/kaprobed.ini
# that differs from the shipped one (the operator's configuration).
SBINDIR    := $(PREFIX)/sbin
MANDIR     := $(PREFIX)/share/man
SYSCONFDIR := /etc/kaprobe
UNITDIR    := /lib/systemd/system
LOGROTDIR  := /etc/logrotate.d
KAPROBE_USER := kaprobe
INSTALL    ?= install

install: all
	$(INSTALL) -d $(DESTDIR)$(SBINDIR) $(DESTDIR)$(SYSCONFDIR) $(DESTDIR)$(UNITDIR) \
		$(DESTDIR)$(MANDIR)/man8 $(DESTDIR)$(MANDIR)/man5
	$(INSTALL) -m 0755 $(BUILD)/kaprobed $(DESTDIR)$(SBINDIR)/kaprobed
	@if [ -e $(DESTDIR)$(SYSCONFDIR)/kaprobed.ini ]; then \
		echo "keeping $(DESTDIR)$(SYSCONFDIR)/kaprobed.ini"; \
	else \
		echo "$(INSTALL) -m 0644 conf/kaprobed.ini $(DESTDIR)$(SYSCONFDIR)/kaprobed.ini"; \
		$(INSTALL) -m 0644 conf/kaprobed.ini $(DESTDIR)$(SYSCONFDIR)/kaprobed.ini; \
	fi
	sed 's|@SBINDIR@|$(SBINDIR)|g' systemd/kaprobed.service > $(DESTDIR)$(UNITDIR)/kaprobed.service
	chmod 0644 $(DESTDIR)$(UNITDIR)/kaprobed.service
	@if [ -f conf/logrotate.d/kaprobe ]; then \
		echo "$(INSTALL) -D -m 0644 conf/logrotate.d/kaprobe $(DESTDIR)$(LOGROTDIR)/kaprobe"; \
		$(INSTALL) -D -m 0644 conf/logrotate.d/kaprobe $(DESTDIR)$(LOGROTDIR)/kaprobe; \
	fi
	$(INSTALL) -m 0644 man/kaprobed.8 $(DESTDIR)$(MANDIR)/man8/kaprobed.8
	$(INSTALL) -m 0644 man/kaprobed.ini.5 $(DESTDIR)$(MANDIR)/man5/kaprobed.ini.5
	@if [ -z "$(DESTDIR)" ] && ! getent passwd $(KAPROBE_USER) >/dev/null; then \
		echo "useradd --system ... $(KAPROBE_USER)"; \
		useradd --system --no-create-home --home-dir /nonexistent \
			--shell /usr/sbin/nologin --user-group $(KAPROBE_USER); \
	fi
	@if [ -z "$(DESTDIR)" ] && command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then \
		systemctl daemon-reload; \
	fi

uninstall:
	rm -f $(DESTDIR)$(SBINDIR)/kaprobed $(DESTDIR)$(UNITDIR)/kaprobed.service \
		$(DESTDIR)$(LOGROTDIR)/kaprobe $(DESTDIR)$(MANDIR)/man8/kaprobed.8 \
		$(DESTDIR)$(MANDIR)/man5/kaprobed.ini.5
	@if [ -f $(DESTDIR)$(SYSCONFDIR)/kaprobed.ini ] && \
	    ! cmp -s conf/kaprobed.ini $(DESTDIR)$(SYSCONFDIR)/kaprobed.ini; then \
		echo "keeping $(DESTDIR)$(SYSCONFDIR)/kaprobed.ini (changed by the operator)"; \
	else \
		rm -f $(DESTDIR)$(SYSCONFDIR)/kaprobed.ini; \
		rmdir $(DESTDIR)$(SYSCONFDIR) 2>/dev/null || true; \
	fi
	@if [ -z "$(DESTDIR)" ] && command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then \
		systemctl daemon-reload; \
	fi

-include $(wildcard $(BUILD)/*.d $(BUILD)/tests/*.d $(FUZZ_BUILD)/*.d)
