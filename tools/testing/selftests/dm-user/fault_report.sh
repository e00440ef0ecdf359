#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# kernel_report.sh for the window of fault_test: every kernel report still
# fails it, and every leak with a dm-user frame (see kernel_report.sh).
DMU_LEAK_SCOPE=dm-user exec "$(dirname "$0")/kernel_report.sh"
