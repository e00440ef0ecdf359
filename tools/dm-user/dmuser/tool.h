/* SPDX-License-Identifier: GPL-2.0 */
/*
 * What the parts of the dmuser tool share: error reporting with hints,
 * command line parsing, and the commands themselves. tool.c holds the
 * helpers, dmuser.c the command table, cmd-*.c the commands, and each
 * store of "dmuser serve" its own store-*.c (see store.h).
 */
#ifndef DMUSER_TOOL_H
#define DMUSER_TOOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "dmuser.h"

#define ARRAY_SIZE(a)	(sizeof(a) / sizeof((a)[0]))
#define SECTOR_SIZE	512U

/* "dmuser", or "dmuserd" when invoked as the daemon. */
extern const char *prog;
/* The usage of the command being parsed, for bad_usage(). */
extern void (*usage_fn)(FILE *f);
/* The errno of libdevmapper's last error message; see dm_log_keep_errno(). */
extern int dm_last_errno;

/* What a failure is about: what the hint for it looks at. */
enum hint_about {
	HINT_NODE,	/* opening /dev/dm-user/<name> */
	HINT_CREATE,	/* creating device <dev> with target <name> */
	HINT_DEVICE,	/* a device-mapper device <dev> */
};

/* "<prog>: <what>[: <strerror(err)>]" on stderr; @err may be negative. */
__attribute__((format(printf, 2, 3)))
void report(int err, const char *fmt, ...);
/* report() with a non-zero @err, followed by what a user can do about it. */
__attribute__((format(printf, 5, 6)))
void report_hint(int err, enum hint_about about, const char *dev,
		 const char *name, const char *fmt, ...);
/* libdevmapper's log function: keeps the errno, prints nothing. */
__attribute__((format(printf, 5, 6)))
void dm_log_keep_errno(int level, const char *file, int line,
		       int dm_errno_or_class, const char *f, ...);

/* The message and usage_fn's usage on stderr, then exit status 2. */
__attribute__((format(printf, 1, 2), noreturn))
void bad_usage(const char *fmt, ...);
/* bad_usage() for what getopt_long() returned @c for (opterr is 0). */
__attribute__((noreturn))
void bad_option(int c, char **argv);
/*
 * A decimal number from @min to @max, with an optional suffix K, M, G or
 * T (powers of 1024) if @suffix; anything else is bad usage of option
 * @name.
 */
uint64_t parse_number(const char *name, const char *s, bool suffix,
		      uint64_t min, uint64_t max);
/* "--help" and "-h". */
bool wants_help(const char *arg);
/*
 * Commands without options: -h, or exactly @want arguments (after an
 * optional "--"). Returns the first of them.
 */
char **take_args(int argc, char **argv, int want, void (*usage)(FILE *));
/* Flushes stdout: 0, or 1 after reporting why the output was lost. */
int finish_stdout(void);

/*
 * /dev/dm-user/<name>, or the path given if @name has a '/': a file
 * descriptor, or a negative errno. @what gets the path, for messages.
 */
int open_channel(const char *name, char *what, size_t len);
/* pread() or pwrite() of all @len bytes: 0 or an errno value. */
int pio_all(int fd, bool write, unsigned char *buf, size_t len, uint64_t off);
/* @bytes with an IEC unit, whole where it is whole: "1 GiB", "1.5 MiB". */
const char *human_bytes(uint64_t bytes, char *buf, size_t len);

/* The commands (cmd-device.c, cmd-show.c, cmd-serve.c): exit statuses. */
int cmd_create(int argc, char **argv);
int cmd_remove(int argc, char **argv);
int cmd_attach(int argc, char **argv);
int cmd_detach(int argc, char **argv);
int cmd_set(int argc, char **argv);
int cmd_list(int argc, char **argv);
int cmd_info(int argc, char **argv);
int cmd_stats(int argc, char **argv);
int cmd_serve(int argc, char **argv);

void create_usage(FILE *f);
void remove_usage(FILE *f);
void attach_usage(FILE *f);
void detach_usage(FILE *f);
void set_usage(FILE *f);
void list_usage(FILE *f);
void info_usage(FILE *f);
void stats_usage(FILE *f);
void serve_usage(FILE *f);

#endif /* DMUSER_TOOL_H */
