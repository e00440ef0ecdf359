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
#   make demo                 a dm-user device with ext4 on it, in a guest
#   make bench                fio: dm-user against brd, null_blk, loop, nbd
#   make lint                 checkpatch, W=1 and sparse for both kernels

SRC := $(abspath $(dir $(lastword $(MAKEFILE_LIST))))
BUILD ?= $(SRC)/build
KVER ?= $(shell uname -r)
KDIR ?= /lib/modules/$(KVER)/build
# Objects of different kernels must not mix, so each kernel builds its own
# copy of the module sources under build/<release>/.
MODDIR = $(BUILD)/$(KVER)/module
KO = $(BUILD)/$(KVER)/dm-user.ko
MODULE_SOURCES = Kbuild drivers include

VM = $(SRC)/tools/dm-user/vm
DEPS = $(SRC)/tools/dm-user/install-deps.sh

.PHONY: all module modules-all tools deps check demo bench lint checkpatch \
	clean install

all: module

module:
	@test -d $(KDIR) || { echo "make: no kernel build tree at $(KDIR);" \
	  "install the headers (linux-headers-$(KVER)) or pass KVER=/KDIR=" >&2; \
	  exit 1; }
	@mkdir -p $(MODDIR)
	@cp -ru $(addprefix $(SRC)/,$(MODULE_SOURCES)) $(MODDIR)/
	$(MAKE) -C $(KDIR) M=$(MODDIR) CONFIG_DM_USER=m \
		NOSTDINC_FLAGS="-I$(MODDIR)/include" modules
	@cp $(MODDIR)/drivers/md/dm-user.ko $(KO)
	@echo "built $(KO)"

install: module
	$(MAKE) -C $(KDIR) M=$(MODDIR) CONFIG_DM_USER=m modules_install
	depmod -a $(KVER)

deps:
	@$(DEPS)

# Both supported kernels, with W=1 and sparse, as make check uses them.
modules-all:
	@for k in $$($(VM)/kernels.sh); do \
		$(MAKE) --no-print-directory module KVER=$$k W=1 C=1 || exit 1; \
	done

tools:
	$(MAKE) -C $(SRC)/tools/dm-user O=$(BUILD)/tools
	$(MAKE) -C $(SRC)/tools/testing/selftests/dm-user O=$(BUILD)/tools

clean:
	rm -rf $(BUILD)
