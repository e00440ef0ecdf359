/* SPDX-License-Identifier: GPL-2.0 */
/*
 * What the example daemons (dmu-cow, dmu-cbt, dmu-fault) share: a control
 * socket that takes one line of text per connection and answers it, the
 * client of that socket, opening the target's backing device, sizes with
 * suffixes, signals and the pid file that says a daemon is ready.
 */
#ifndef DMU_EXAMPLE_H
#define DMU_EXAMPLE_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <getopt.h>

#include "dmuser.h"

#define SECTOR_SIZE	512U

/* The program's name, for messages; set by ex_init(). */
extern const char *ex_prog;
/* Non-zero once SIGINT or SIGTERM came: dmu_serve_opts.stop. */
extern volatile int ex_stop;

/*
 * ex_main() - the command line every example has:
 *   <prog> serve [options] <name>     @serve(argc, argv) from "serve" on
 *   <prog> ctl <socket> <command...>  ex_ctl_client()
 *   <prog> --help                     @usage(stdout)
 * Sets the program name and SIGINT/SIGTERM handlers first.
 *
 * Return: the exit status: @serve's, ex_ctl_client()'s, 2 for a bad
 * command line.
 */
int ex_main(int argc, char **argv, const char *prog,
	    int (*serve)(int argc, char **argv), void (*usage)(FILE *f));

/*
 * A control command: one line of text without its newline, split into at
 * most EX_MAX_WORDS words in @argv; @ctx is the struct ex_daemon. The
 * handler writes its answer to @out, ending with a line "ok[ <text>]" or
 * "error: <why>" (ex_ctl_error()).
 */
#define EX_MAX_WORDS	16
typedef void (*ex_ctl_fn)(void *ctx, int argc, char **argv, FILE *out);

/*
 * struct ex_daemon - what every example's "serve" has in common
 * @name: the target, from the command line
 * @control: --control, or NULL
 * @opts: for dmu_serve(); --threads, and the stop flag, pid file and
 *	remap every example asks for
 * @ops: the callbacks
 * @setup: called once the daemon is prepared (dmu_prepare_daemon()) and
 *	before the control socket and the serving threads start; reports its
 *	own failures
 * @finish: called after serving, or NULL; returns 0 or a negative errno
 * @ctl: the control commands
 * @chan_fd: a channel of the target that serves no requests, for control
 *	commands (claims, GET_INFO), opened by ex_open_target()
 * @info: what GET_INFO said at the start
 */
struct ex_daemon {
	const char *name;
	const char *control;
	struct dmu_serve_opts opts;
	const struct dmu_ops *ops;
	int (*setup)(struct ex_daemon *d);
	int (*finish)(struct ex_daemon *d);
	ex_ctl_fn ctl;
	int chan_fd;
	struct dmu_info info;
};

/*
 * ex_reload_same_backing() - for a dmu_ops.reload: whether the reloaded
 * target still has @d's backing device at the same offset. If not, the
 * daemon's own I/O there would go to the wrong place: it says so, and
 * serving stops with exit status 1.
 */
bool ex_reload_same_backing(struct ex_daemon *d, const struct dmu_info *info);

/* The short and long options ex_daemon_opt() takes, for getopt_long(). */
#define EX_SHORTOPTS	"S:t:p:h"
#define EX_LONGOPTS \
	{ "control", required_argument, NULL, 'S' }, \
	{ "threads", required_argument, NULL, 't' }, \
	{ "pid-file", required_argument, NULL, 'p' }, \
	{ "help", no_argument, NULL, 'h' }

/* The defaults of struct ex_daemon: one thread, remap, stop and ready. */
void ex_daemon_init(struct ex_daemon *d);
/*
 * ex_daemon_opt() - an option of EX_SHORTOPTS, @c as getopt_long()
 * returned it: --help prints the usage and exits 0, an unknown option
 * exits 2. Return: false for an option of the caller's.
 */
bool ex_daemon_opt(struct ex_daemon *d, int c, const char *arg);
/* ex_daemon_run() - the target from argv[optind], then serve: exit status */
int ex_daemon_run(struct ex_daemon *d, int argc, char **argv);
/*
 * ex_open_target() - a channel of @d->name in @d->chan_fd and its
 * GET_INFO in @d->info; with @backing, a target without a backing device
 * is refused with @why.
 *
 * Return: 0, or a negative errno (reported).
 */
int ex_open_target(struct ex_daemon *d, bool backing, const char *why);

/* "<prog>: <what>" and the usage on stderr, and exit 2. */
__attribute__((noreturn, format(printf, 1, 2)))
void ex_bad_usage(const char *fmt, ...);

/* --threads: 1 to 64, or ex_bad_usage(). */
unsigned int ex_parse_threads(const char *arg);

/*
 * "<prog>: <what>[: <strerror(err)>]" on stderr, one write per line;
 * errno is left as it was.
 */
__attribute__((format(printf, 2, 3)))
void ex_report(int err, const char *fmt, ...);

/*
 * ex_parse_size() - bytes from "<n>[K|M|G|T]" (powers of 1024) or
 * "<n>s" (512-byte sectors)
 *
 * Return: 0, or -EINVAL for anything else or an overflow.
 */
int ex_parse_size(const char *s, uint64_t *bytes);

/*
 * ex_open_backing() - open the backing device of a target
 * @info: what GET_INFO said of the target (its backing "major:minor")
 * @flags: open(2) flags, e.g. O_RDWR | O_DIRECT
 *
 * Finds the device's node through /sys/dev/block/<major:minor>/uevent and
 * checks that the node is that device.
 *
 * Return: the fd, or a negative errno: -EOPNOTSUPP for a target without a
 * backing device, -ENOENT with no node for it.
 */
int ex_open_backing(const struct dmu_info *info, int flags);

/*
 * ex_open_channel() - a channel of the target @name, or of the node at
 * path @name (with a '/'), waiting up to 5 s for the node
 *
 * Return: the fd, or a negative errno (reported).
 */
int ex_open_channel(const char *name);


/*
 * ex_ctl_listen() - answer control commands on Unix socket @path
 *
 * Each connection carries one command and is served by a thread of its
 * own, so that a long command (a merge) does not hold up a short one (a
 * status). @path is removed first if it is a socket, and again by
 * ex_ctl_close().
 *
 * Return: 0, or a negative errno (reported).
 */
int ex_ctl_listen(const char *path, ex_ctl_fn fn, void *ctx);
void ex_ctl_close(void);
__attribute__((format(printf, 2, 3)))
void ex_ctl_error(FILE *out, const char *fmt, ...);

/*
 * ex_ctl_client() - send the words @argv to the daemon at @path, copy its
 * answer to stdout
 *
 * Return: the exit status for the program: 0 if the answer ended in "ok",
 * 1 if it ended in "error: ..." or the daemon could not be reached.
 */
int ex_ctl_client(const char *path, int argc, char **argv);

/*
 * ex_ready() - a dmu_serve_opts.ready that writes the pid to ex_pid_path
 * (if set) once every channel is open: tests wait for the file.
 */
extern const char *ex_pid_path;
void ex_ready(void *ctx);

/*
 * ex_pread(), ex_pwrite() - all @len bytes at @off, going on after short
 * transfers and EINTR; a read past the end of a file gives zeroes, as a
 * hole would. Return: 0, or a negative errno (-EIO for a write that
 * moved nothing).
 */
int ex_pread(int fd, void *buf, size_t len, uint64_t off);
int ex_pwrite(int fd, const void *buf, size_t len, uint64_t off);

/*
 * ex_check_range() - [@off, @off + @len) lies in @size bytes, and both
 * are multiples of @align. Return: 0 or -ERANGE/-EINVAL.
 */
int ex_check_range(uint64_t off, uint64_t len, uint64_t size, uint64_t align);

#endif /* DMU_EXAMPLE_H */
