# SPDX-License-Identifier: GPL-2.0
#
# dm-user, built out of tree against installed kernel headers.
#
#   make                      dm-user.ko for the running kernel
#   make KVER=<release>       ... for an installed header set
#   make KDIR=<build tree>    ... for a kernel build tree
#   make tools                the daemon and the selftests
#   make check                build for Linux 6.1 and 6.12, run every
#                             selftest in a QEMU guest of each
#   make check PACKAGED=1     ... against the files of the Debian packages
#   make demo                 a dm-user device with ext4 on it, in a guest
#   make bench                fio: dm-user against ublk, brd, null_blk, loop,
#                             nbd; memory of idle devices and queued requests;
#                             build/bench.csv and a chart, build/bench.png
#   make bench-profile        where the time of chosen bench runs goes (perf)
#   make dkms-source          the module's source tree for DKMS, in
#                             $(DESTDIR)/usr/src/dm-user-<version>
#   make deb                  Debian packages (dpkg-buildpackage), in build/deb
#   make man                  the man pages (scdoc), in build/man
#   make lint                 checkpatch, W=1 and sparse for both kernels
#   make check-debug          build (once per machine) a 6.1 kernel with KASAN,
#                             lockdep, kmemleak, UBSAN and fault injection;
#                             run every selftest, the fault-injection test and
#                             a longer soak in it; fail on any kernel report

SRC := $(abspath $(dir $(lastword $(MAKEFILE_LIST))))
BUILD ?= $(SRC)/build
KVER ?= $(shell uname -r)
# DMUSER_KERNEL_ROOT: a tree of our own kernels (see build-debug-kernel.sh).
KDIR ?= $(DMUSER_KERNEL_ROOT)/lib/modules/$(KVER)/build
# Objects of different kernels must not mix, so each kernel builds its own
# copy of the module sources under build/<release>/.
MODDIR = $(BUILD)/$(KVER)/module
KO = $(BUILD)/$(KVER)/dm-user.ko
MODULE_SOURCES = Kbuild drivers include

VM = $(SRC)/tools/dm-user/vm
DEPS = $(SRC)/tools/dm-user/install-deps.sh

.PHONY: all module modules-all tools deps check check-debug demo bench lint \
	checkpatch clean install dkms-source deb man payload guest-payload bench-payload bench-profile

all: module

module:
	@test -d $(KDIR) || { echo "make: no kernel build tree at $(KDIR);" \
	  "install the headers (linux-headers-$(KVER)) or pass KVER=/KDIR=" >&2; \
	  exit 1; }
	@mkdir -p $(MODDIR)
	@cp -r --preserve=timestamps $(addprefix $(SRC)/,$(MODULE_SOURCES)) $(MODDIR)/
	$(MAKE) -C $(KDIR) M=$(MODDIR) CONFIG_DM_USER=m modules
	@cp $(MODDIR)/drivers/md/dm-user.ko $(KO)
	@echo "built $(KO)"

install: module
	$(MAKE) -C $(KDIR) M=$(MODDIR) CONFIG_DM_USER=m modules_install
	depmod -a $(KVER)

deps:
	@$(DEPS)

# What DKMS builds the module from: dkms.conf and the module's sources, laid
# out as this tree does, under the name and version dkms.conf gives.
DKMS_VERSION := $(shell sed -n 's/^PACKAGE_VERSION="\(.*\)"$$/\1/p' $(SRC)/dkms.conf)
DKMS_SRCDIR = $(DESTDIR)/usr/src/dm-user-$(DKMS_VERSION)

dkms-source:
	@test -n "$(DKMS_VERSION)" || { echo "make: no PACKAGE_VERSION in dkms.conf" >&2; exit 1; }
	@if [ -z "$(DESTDIR)" ] && dpkg -S $(DKMS_SRCDIR) >/dev/null 2>&1; then \
		echo "make: $(DKMS_SRCDIR) belongs to a package ($$(dpkg -S $(DKMS_SRCDIR) | cut -d: -f1)); remove that first" >&2; \
		exit 1; fi
	rm -rf $(DKMS_SRCDIR)
	mkdir -p $(DKMS_SRCDIR)/drivers/md $(DKMS_SRCDIR)/include/uapi/linux
	cp $(SRC)/dkms.conf $(SRC)/Kbuild $(SRC)/Kconfig $(DKMS_SRCDIR)/
	cp $(SRC)/drivers/md/Kconfig $(SRC)/drivers/md/Makefile \
		$(SRC)/drivers/md/dm-user*.[ch] $(DKMS_SRCDIR)/drivers/md/
	cp $(SRC)/include/uapi/linux/dm-user.h $(DKMS_SRCDIR)/include/uapi/linux/

# The man pages, from their scdoc sources. scdoc takes no '@' in a page's
# name, which a systemd template unit has: it is hidden from scdoc.
MAN_SRCS = $(wildcard $(SRC)/tools/dm-user/man/*.scd)
MAN_PAGES = $(patsubst $(SRC)/tools/dm-user/man/%.scd,$(BUILD)/man/%,$(MAN_SRCS))
man: $(MAN_PAGES)
$(BUILD)/man/%: $(SRC)/tools/dm-user/man/%.scd
	@command -v scdoc >/dev/null || { echo "make: no scdoc (run $(DEPS))" >&2; exit 1; }
	@mkdir -p $(@D)
	sed '1s/@/-AT-/' $< >$@.scd && scdoc <$@.scd >$@.tmp && \
		sed -i '/^\.TH/s/-AT-/@/' $@.tmp && rm $@.scd && mv $@.tmp $@

# The Debian packages, built from a copy of the tree (dpkg-buildpackage
# writes into debian/ and next to the source directory): the files git
# knows, or without git every file but build/. The build dependencies are
# debian/control's (sudo apt-get build-dep ./), not everything make check
# needs.
DEB_DIR = $(BUILD)/deb
deb:
	@cd $(SRC) && dpkg-checkbuilddeps || { \
		echo "make: install them with: sudo apt-get build-dep $(SRC)" >&2; exit 1; }
	rm -rf $(DEB_DIR)
	mkdir -p $(DEB_DIR)/dm-user-$(DKMS_VERSION)
	cd $(SRC) && if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then \
		git ls-files -z --cached --others --exclude-standard; \
	else find . -path ./build -prune -o ! -type d -print0; fi | \
		cpio -0 -pdm --quiet $(DEB_DIR)/dm-user-$(DKMS_VERSION)
	cd $(DEB_DIR)/dm-user-$(DKMS_VERSION) && dpkg-buildpackage -us -uc -b
	@echo "deb: packages in $(DEB_DIR):"; ls $(DEB_DIR)/*.deb

# Both supported kernels, with W=1 and sparse, as make check uses them.
modules-all:
	@for k in $$($(VM)/kernels.sh); do \
		$(MAKE) --no-print-directory module KVER=$$k W=1 C=1 || exit 1; \
	done

tools:
	$(MAKE) -C $(SRC)/tools/dm-user O=$(BUILD)/tools
	$(MAKE) -C $(SRC)/tools/testing/selftests/dm-user O=$(BUILD)/tools

# Everything a guest needs: selftests, daemon, runner, one module per kernel.
PAYLOAD = $(BUILD)/payload

# PACKAGED=1: the payload tests the files of the Debian packages (make deb)
# instead of the tree's: the module built from dm-user-dkms's source with
# dkms.conf's command, the dmuser package's programs and unit, lib_test
# against libdmuser1 and libdmuser-dev (see packaged-payload.sh).
PACKAGED ?=

payload: modules-all tools
ifeq ($(PACKAGED),1)
	$(MAKE) --no-print-directory deb
	$(VM)/packaged-payload.sh $(DEB_DIR) $(BUILD)/packaged $(PAYLOAD)
else
	rm -rf $(PAYLOAD)
	$(MAKE) -C $(SRC)/tools/testing/selftests/dm-user O=$(BUILD)/tools \
		install INSTALL_PATH=$(PAYLOAD)
	cp $(BUILD)/tools/dmuserd $(BUILD)/tools/dmuser $(BUILD)/tools/dmu-cow \
		$(BUILD)/tools/dmu-cbt $(BUILD)/tools/dmu-fault \
		$(VM)/guest-tests.sh $(PAYLOAD)/
	for k in $$($(VM)/kernels.sh); do \
		mkdir -p $(PAYLOAD)/$$k && \
		cp $(BUILD)/$$k/dm-user.ko $(PAYLOAD)/$$k/ || exit 1; \
	done
endif

# Each test has its own bound (settings); a whole guest gets at most this
# many seconds, so two kernels fit well inside CI's 90 minutes even if a
# guest wedges.
DMUSER_GUEST_TIMEOUT ?= 1500
export DMUSER_GUEST_TIMEOUT

check: deps
	$(MAKE) --no-print-directory payload
	$(VM)/check.sh -H $(SRC)/tools/dm-user/host-tests/tests.list \
		$(PAYLOAD) tests.list

# The kernel is built outside the tree, once per machine (about 5 minutes on
# two cores: only what the tests use is configured); the rest is as for check.
check-debug: deps
	@root=$$($(VM)/build-debug-kernel.sh) || exit 1; \
	export DMUSER_KERNEL_ROOT=$$root; \
	$(MAKE) --no-print-directory payload PAYLOAD=$(BUILD)/payload-debug && \
	install -m 755 $(VM)/debug-tests.sh $(BUILD)/payload-debug/ && \
	DMUSER_GUEST_RUNNER=./debug-tests.sh \
	DMUSER_KERNEL_ARGS="log_buf_len=16M $(DMUSER_KERNEL_ARGS)" \
	DMUSER_GUEST_TIMEOUT=$${DMUSER_DEBUG_GUEST_TIMEOUT:-7200} \
		$(VM)/check.sh $(BUILD)/payload-debug tests-debug.list

# demo and bench boot one 6.12 guest with the daemon and a guest script.
GUEST_KVER = $$($(VM)/kernels.sh 6.12)

guest-payload: tools
	@k=$(GUEST_KVER) && $(MAKE) --no-print-directory module KVER=$$k && \
	rm -rf $(BUILD)/guest && mkdir -p $(BUILD)/guest && \
	cp $(BUILD)/tools/dmuserd $(BUILD)/tools/dmuser $(BUILD)/tools/dmu-cow \
		$(SRC)/tools/dm-user/guest/*.sh $(BUILD)/guest/ && \
	$(CC) -O2 -Wall -Wextra -Werror -D_GNU_SOURCE \
		-o $(BUILD)/guest/aio_hold $(SRC)/tools/dm-user/guest/aio_hold.c \
		-laio

demo: deps
	@$(MAKE) --no-print-directory guest-payload
	@k=$(GUEST_KVER); $(VM)/run-guest.sh -k $$k -m $(BUILD)/$$k/dm-user.ko \
		-p $(BUILD)/guest -t 600 -- ./demo.sh

# BENCH_RUNS rounds of BENCH_SECS-second fio runs; fewer and shorter ones
# make a quick check of the benchmark itself, not figures to quote.
# BENCH_ONLY="<device> ..." keeps the rows of those devices (names as in
# the table: "dm-linear/brd dm-user/remap", say); empty for all.
BENCH_RUNS ?= 3
BENCH_SECS ?= 4
BENCH_ONLY ?=
# The bench guest's CPU lacks ERMS. Where a CPU has it, the kernel's
# copy_to_user() and copy_from_user() run "rep movsb", which TCG executes a
# byte at a time: about 8 times slower than the in-kernel memcpy() that
# peers' copies between pinned pages use, unlike on real CPUs with ERMS.
# Without it the user copies run "rep movsq", as fast here as memcpy().
# BENCH_CPU=max measures with the CPU the tests get.
BENCH_CPU ?= max,erms=off
# ublksrv is built outside the tree (build-ublksrv.sh); without its tarball
# the ublk rows are skipped and the guest says why. The guest prints its
# tables also as "csv <file>: " lines, kept here as $(BUILD)/<file>.
bench-payload: guest-payload
	@rm -rf $(BUILD)/guest/ublk $(BUILD)/guest/ublk.skip; \
	if d=$$($(VM)/build-ublksrv.sh 2>$(BUILD)/ublksrv.err); then \
		mkdir -p $(BUILD)/guest/ublk && cp $$d/ublk* $(BUILD)/guest/ublk/; \
	elif [ $$? = 3 ]; then \
		cp $(BUILD)/ublksrv.err $(BUILD)/guest/ublk.skip; \
	else \
		cat $(BUILD)/ublksrv.err >&2; exit 1; \
	fi

# The bench guest, in a recipe that has set k to GUEST_KVER.
BENCH_GUEST = $(VM)/run-guest.sh -k $$k -m $(BUILD)/$$k/dm-user.ko \
	-p $(BUILD)/guest -M 3G -C '$(BENCH_CPU)'

bench: deps
	@$(MAKE) --no-print-directory bench-payload
	@k=$(GUEST_KVER); { $(BENCH_GUEST) -t 5400 -- \
		RUNS=$(BENCH_RUNS) SECS=$(BENCH_SECS) ONLY=\"$(BENCH_ONLY)\" \
		./bench.sh; \
		echo $$? >$(BUILD)/bench.status; } 2>&1 | tee $(BUILD)/bench.log
	@for f in bench.csv bench-memory.csv; do \
		tr -d '\r' <$(BUILD)/bench.log | sed -n "s/^csv $$f: //p" \
			>$(BUILD)/$$f; \
	done; \
	st=$$(cat $(BUILD)/bench.status); [ "$$st" = 0 ] || exit $$st; \
	echo "bench: tables in $(BUILD)/bench.csv and $(BUILD)/bench-memory.csv"; \
	$(VM)/bench-chart.sh $(BUILD)/bench.csv $(BUILD)/bench.png

# Where the time of chosen bench runs goes: CPU, context switches and
# interrupts per I/O, and a perf profile of the whole guest, for each
# "<workload>@<device>" of PROFILE (names as in the bench table). perf
# comes from the host's linux-perf, with its libraries.
PROFILE ?= rr4k-qd1@dm-user/null rr4k-qd1@ublk/null rr4k-qd16@dm-user/null \
	rr4k-qd16@null_blk rr4k-qd16@dm-user/file rr4k-qd16@loop
PROFILE_SECS ?= 4
bench-profile: deps
	@$(MAKE) --no-print-directory bench-payload
	@rm -rf $(BUILD)/guest/perf; \
	p=$$(command -v perf) || { echo "bench-profile: no perf" >&2; exit 1; }; \
	mkdir -p $(BUILD)/guest/perf/lib && cp $$p $(BUILD)/guest/perf/ && \
	ldd $$p | sed -n 's/.*=> \(\/[^ ]*\).*/\1/p' | \
		xargs cp -L -t $(BUILD)/guest/perf/lib
	@k=$(GUEST_KVER); { $(BENCH_GUEST) -t 3600 -- \
		SECS=$(PROFILE_SECS) PROFILE=\"$(PROFILE)\" ./bench.sh; \
		echo $$? >$(BUILD)/bench-profile.status; } 2>&1 | \
		tee $(BUILD)/bench-profile.log; \
	exit $$(cat $(BUILD)/bench-profile.status)

# checkpatch.pl comes from the linux-source-6.1 package, extracted once.
CHECKPATCH = $(BUILD)/scripts/checkpatch.pl
$(CHECKPATCH):
	mkdir -p $(BUILD)
	tar -xf /usr/src/linux-source-6.1.tar.xz -C $(BUILD) \
		--strip-components=1 linux-source-6.1/scripts/checkpatch.pl \
		linux-source-6.1/scripts/spelling.txt \
		linux-source-6.1/scripts/const_structs.checkpatch
	touch $@

checkpatch: $(CHECKPATCH)
	$(CHECKPATCH) --strict --no-tree --quiet -f \
		$(SRC)/drivers/md/*.[ch] $(SRC)/include/uapi/linux/dm-user.h

lint: checkpatch
	@for k in $$($(VM)/kernels.sh); do \
		rm -f $(BUILD)/$$k/module/drivers/md/*.o; \
		$(MAKE) --no-print-directory module KVER=$$k W=1 C=1 \
			2>&1 | tee $(BUILD)/lint-$$k.log; \
		if grep -E "warning|error" $(BUILD)/lint-$$k.log; then \
			echo "lint: warnings for $$k" >&2; exit 1; fi; \
	done
	@echo "lint: checkpatch, W=1 and sparse clean"

clean:
	rm -rf $(BUILD)
