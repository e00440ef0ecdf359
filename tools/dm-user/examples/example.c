// SPDX-License-Identifier: GPL-2.0
/*
 * What the example daemons share; see example.h.
 */
#define _FILE_OFFSET_BITS 64

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <unistd.h>

#include "example.h"

const char *ex_prog = "dmu-example";
volatile int ex_stop;
/* Serving stopped for a reason that is a failure. */
static volatile int stop_failed;
const char *ex_pid_path;

static void on_stop(int sig)
{
	ex_stop = sig;
}

static void (*usage_fn)(FILE *f);

static void ex_init(const char *prog)
{
	struct sigaction sa = { .sa_handler = on_stop };

	ex_prog = prog;
	sigemptyset(&sa.sa_mask);
	/* No SA_RESTART: a serving thread's wait must see the signal. */
	if (sigaction(SIGINT, &sa, NULL) || sigaction(SIGTERM, &sa, NULL)) {
		ex_report(errno, "sigaction");
		exit(1);
	}
	/* A control client that goes away must not kill the daemon. */
	sa.sa_handler = SIG_IGN;
	if (sigaction(SIGPIPE, &sa, NULL)) {
		ex_report(errno, "sigaction SIGPIPE");
		exit(1);
	}
}

void ex_bad_usage(const char *fmt, ...)
{
	char what[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	fprintf(stderr, "%s: %s\n", ex_prog, what);
	if (usage_fn)
		usage_fn(stderr);
	exit(2);
}

#define MAX_THREADS	64

unsigned int ex_parse_threads(const char *arg)
{
	unsigned long v;
	char *end;

	errno = 0;
	v = strtoul(arg, &end, 10);
	if (errno || *end || end == arg || v < 1 || v > MAX_THREADS)
		ex_bad_usage("--threads: '%s' is not 1 to %d", arg, MAX_THREADS);
	return v;
}

int ex_main(int argc, char **argv, const char *prog,
	    int (*serve)(int argc, char **argv), void (*usage)(FILE *f))
{
	usage_fn = usage;
	ex_init(prog);
	if (argc < 2)
		ex_bad_usage("missing command (serve, ctl)");
	if (!strcmp(argv[1], "serve")) {
		/* getopt_long() names the program from argv[0] in its errors. */
		argv[1] = argv[0];
		return serve(argc - 1, argv + 1);
	}
	if (!strcmp(argv[1], "ctl")) {
		if (argc < 4)
			ex_bad_usage("ctl needs <socket> <command>");
		return ex_ctl_client(argv[2], argc - 3, argv + 3);
	}
	if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
		usage(stdout);
		return 0;
	}
	ex_bad_usage("unknown command '%s' (serve, ctl)", argv[1]);
}

void ex_report(int err, const char *fmt, ...)
{
	char what[512], ebuf[128];
	int saved = errno;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	if (err)
		fprintf(stderr, "%s: %s: %s\n", ex_prog, what,
			strerror_r(err < 0 ? -err : err, ebuf, sizeof(ebuf)));
	else
		fprintf(stderr, "%s: %s\n", ex_prog, what);
	/* So that "ex_report(errno, ...); return -errno;" returns the errno. */
	errno = saved;
}

int ex_parse_size(const char *s, uint64_t *bytes)
{
	unsigned int shift = 0;
	unsigned long long n;
	char *end;

	if (*s < '0' || *s > '9')
		return -EINVAL;
	errno = 0;
	n = strtoull(s, &end, 10);
	if (errno)
		return -EINVAL;
	switch (*end) {
	case '\0':
		break;
	case 's':
		shift = 9;
		break;
	case 'K':
		shift = 10;
		break;
	case 'M':
		shift = 20;
		break;
	case 'G':
		shift = 30;
		break;
	case 'T':
		shift = 40;
		break;
	default:
		return -EINVAL;
	}
	if (*end && end[1])
		return -EINVAL;
	if (n > UINT64_MAX >> shift)
		return -EINVAL;
	*bytes = (uint64_t)n << shift;
	return 0;
}

int ex_check_range(uint64_t off, uint64_t len, uint64_t size, uint64_t align)
{
	if (off % align || len % align)
		return -EINVAL;
	if (len > size || off > size - len)
		return -ERANGE;
	return 0;
}

int ex_pread(int fd, void *buf, size_t len, uint64_t off)
{
	while (len) {
		ssize_t n = pread(fd, buf, len, off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0) {
			memset(buf, 0, len);
			return 0;
		}
		buf = (char *)buf + n;
		len -= n;
		off += n;
	}
	return 0;
}

int ex_pwrite(int fd, const void *buf, size_t len, uint64_t off)
{
	while (len) {
		ssize_t n = pwrite(fd, buf, len, off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return -EIO;
		buf = (const char *)buf + n;
		len -= n;
		off += n;
	}
	return 0;
}

int ex_open_backing(const struct dmu_info *info, int flags)
{
	char path[PATH_MAX], line[256], *name = NULL;
	unsigned int maj, min;
	struct stat st;
	FILE *f;
	int fd;

	if (!info->backing[0])
		return -EOPNOTSUPP;
	if (sscanf(info->backing, "%u:%u", &maj, &min) != 2)
		return -EPROTO;
	snprintf(path, sizeof(path), "/sys/dev/block/%u:%u/uevent", maj, min);
	f = fopen(path, "re");
	if (!f)
		return -errno;
	while (fgets(line, sizeof(line), f)) {
		if (!strncmp(line, "DEVNAME=", 8)) {
			line[strcspn(line, "\n")] = '\0';
			name = line + 8;
			break;
		}
	}
	fclose(f);
	if (!name)
		return -ENOENT;
	snprintf(path, sizeof(path), "/dev/%s", name);
	fd = open(path, flags | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	/* A node of that name may be another device's in a chroot or test. */
	if (fstat(fd, &st) || !S_ISBLK(st.st_mode) ||
	    major(st.st_rdev) != maj || minor(st.st_rdev) != min) {
		close(fd);
		return -ENOENT;
	}
	return fd;
}

int ex_open_channel(const char *name)
{
	int fd;

	if (strchr(name, '/')) {
		fd = open(name, O_RDWR | O_CLOEXEC);
		fd = fd < 0 ? -errno : fd;
	} else {
		fd = dmu_wait_node(name, 5000);
		if (!fd)
			fd = dmu_open_channel(name, 0);
	}
	if (fd < 0)
		ex_report(fd, "open %s%s", strchr(name, '/') ? "" : "/dev/dm-user/",
			  name);
	return fd;
}

void ex_daemon_init(struct ex_daemon *d)
{
	memset(d, 0, sizeof(*d));
	d->opts.threads = 1;
	d->opts.remap = true;
	d->opts.stop = &ex_stop;
	d->opts.ready = ex_ready;
	d->chan_fd = -1;
}

bool ex_daemon_opt(struct ex_daemon *d, int c, const char *arg)
{
	switch (c) {
	case 'S':
		d->control = arg;
		return true;
	case 't':
		d->opts.threads = ex_parse_threads(arg);
		return true;
	case 'p':
		ex_pid_path = arg;
		return true;
	case 'h':
		usage_fn(stdout);
		exit(0);
	case '?':
	case ':':
		/* getopt_long() said what is wrong. */
		usage_fn(stderr);
		exit(2);
	}
	return false;
}

int ex_open_target(struct ex_daemon *d, bool backing, const char *why)
{
	int rc;

	d->chan_fd = ex_open_channel(d->name);
	if (d->chan_fd < 0)
		return d->chan_fd;
	rc = dmu_get_info(d->chan_fd, &d->info);
	if (rc) {
		ex_report(rc, "GET_INFO on %s", d->name);
		return rc;
	}
	if (backing && !d->info.backing[0]) {
		ex_report(0, "%s has no backing device: %s", d->name, why);
		return -EOPNOTSUPP;
	}
	return 0;
}

bool ex_reload_same_backing(struct ex_daemon *d, const struct dmu_info *info)
{
	if (!strcmp(info->backing, d->info.backing) &&
	    info->backing_offset == d->info.backing_offset)
		return true;
	ex_report(0, "a reload moved %s from %s at sector %" PRIu64 " to %s at sector %" PRIu64
		  ": stopping, as the daemon's own I/O would go to the wrong place",
		  d->name, d->info.backing, d->info.backing_offset,
		  info->backing[0] ? info->backing : "no backing device",
		  info->backing_offset);
	stop_failed = 1;
	ex_stop = 1;
	return false;
}

int ex_daemon_run(struct ex_daemon *d, int argc, char **argv)
{
	int rc;

	if (optind != argc - 1)
		ex_bad_usage(optind == argc ? "missing <name>" : "more than one <name>");
	d->name = argv[optind];
	/* Before anything is allocated: see dmu_prepare_daemon(). */
	rc = dmu_prepare_daemon();
	if (rc && rc != -EPERM)
		ex_report(rc, "prepare the daemon (PR_SET_IO_FLUSHER, mlockall)");
	/* setup() reports its own failures. */
	if (d->setup(d))
		return 1;
	if (d->control && ex_ctl_listen(d->control, d->ctl, d))
		return 1;
	rc = dmu_serve(d->name, d->ops, d, &d->opts);
	if (rc)
		ex_report(rc, "serve %s", d->name);
	ex_ctl_close();
	if (d->finish && d->finish(d) && !rc)
		rc = -EIO;
	return rc || stop_failed ? 1 : 0;
}

/* ---- control socket ---------------------------------------------------- */

#define LINE_MAX_BYTES	1024

static struct {
	int fd;
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	ex_ctl_fn fn;
	void *ctx;
	pthread_t thread;
	/* Connections being served: ex_ctl_close() waits for them. */
	pthread_mutex_t mutex;
	pthread_cond_t idle;
	unsigned int conns;
} ctl = {
	.fd = -1,
	.mutex = PTHREAD_MUTEX_INITIALIZER,
	.idle = PTHREAD_COND_INITIALIZER,
};

static void ctl_conn_done(void)
{
	pthread_mutex_lock(&ctl.mutex);
	if (!--ctl.conns)
		pthread_cond_broadcast(&ctl.idle);
	pthread_mutex_unlock(&ctl.mutex);
}

void ex_ctl_error(FILE *out, const char *fmt, ...)
{
	va_list ap;

	fputs("error: ", out);
	va_start(ap, fmt);
	vfprintf(out, fmt, ap);
	va_end(ap);
	fputc('\n', out);
}

/* One command: a line in, the handler's answer out, then close. */
static void ctl_serve_conn(int fd);

static void *ctl_conn(void *arg)
{
	ctl_serve_conn((int)(intptr_t)arg);
	ctl_conn_done();
	return NULL;
}

static void ctl_serve_conn(int fd)
{
	int argc = 0;
	char line[LINE_MAX_BYTES], *argv[EX_MAX_WORDS + 1], *save, *w;
	size_t got = 0;
	FILE *out;

	while (got < sizeof(line) - 1) {
		ssize_t n = read(fd, line + got, sizeof(line) - 1 - got);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		got += n;
		if (memchr(line + got - n, '\n', n))
			break;
	}
	line[got] = '\0';
	out = fdopen(fd, "w");
	if (!out) {
		ex_report(errno, "control: fdopen");
		close(fd);
		return;
	}
	if (!memchr(line, '\n', got)) {
		ex_ctl_error(out, "no command line (at most %d bytes, ending in a newline)",
			     LINE_MAX_BYTES - 1);
		fclose(out);
		return;
	}
	line[strcspn(line, "\n")] = '\0';
	for (w = strtok_r(line, " \t", &save); w; w = strtok_r(NULL, " \t", &save)) {
		if (argc == EX_MAX_WORDS) {
			ex_ctl_error(out, "more than %d words", EX_MAX_WORDS);
			fclose(out);
			return;
		}
		argv[argc++] = w;
	}
	argv[argc] = NULL;
	if (!argc)
		ex_ctl_error(out, "empty command");
	else
		ctl.fn(ctl.ctx, argc, argv, out);
	/* A client that left early is no error of the daemon's. */
	fclose(out);
}

static void *ctl_accept(void *arg)
{
	(void)arg;
	for (;;) {
		pthread_attr_t attr;
		pthread_t t;
		int fd = accept4(ctl.fd, NULL, NULL, SOCK_CLOEXEC), rc;

		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			/* ex_ctl_close() shut the socket down. */
			if (errno != EINVAL && errno != EBADF)
				ex_report(errno, "control: accept");
			return NULL;
		}
		pthread_mutex_lock(&ctl.mutex);
		ctl.conns++;
		pthread_mutex_unlock(&ctl.mutex);
		pthread_attr_init(&attr);
		pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
		rc = pthread_create(&t, &attr, ctl_conn, (void *)(intptr_t)fd);
		pthread_attr_destroy(&attr);
		if (rc) {
			ex_report(rc, "control: pthread_create");
			close(fd);
			ctl_conn_done();
		}
	}
}

int ex_ctl_listen(const char *path, ex_ctl_fn fn, void *ctx)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct stat st;
	int rc;

	if (strlen(path) >= sizeof(sa.sun_path)) {
		ex_report(ENAMETOOLONG, "control socket %s", path);
		return -ENAMETOOLONG;
	}
	strcpy(sa.sun_path, path);
	/* A socket left by a daemon that died; never anything else. */
	if (!lstat(path, &st) && S_ISSOCK(st.st_mode) && unlink(path)) {
		rc = -errno;
		ex_report(rc, "unlink %s", path);
		return rc;
	}
	ctl.fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (ctl.fd < 0) {
		rc = -errno;
		ex_report(rc, "socket");
		return rc;
	}
	if (bind(ctl.fd, (struct sockaddr *)&sa, sizeof(sa)) ||
	    listen(ctl.fd, 8)) {
		rc = -errno;
		ex_report(rc, "control socket %s", path);
		goto fail;
	}
	strcpy(ctl.path, path);
	ctl.fn = fn;
	ctl.ctx = ctx;
	rc = -pthread_create(&ctl.thread, NULL, ctl_accept, NULL);
	if (rc) {
		ex_report(rc, "pthread_create");
		unlink(path);
		goto fail;
	}
	return 0;
fail:
	close(ctl.fd);
	ctl.fd = -1;
	return rc;
}

void ex_ctl_close(void)
{
	if (ctl.fd < 0)
		return;
	/* Wakes the accept() with EINVAL; then the fd can go. */
	shutdown(ctl.fd, SHUT_RDWR);
	pthread_join(ctl.thread, NULL);
	/*
	 * A command under way finishes and sends its answer (a dump-clear's
	 * list, which exists nowhere else); long ones see ex_stop and end.
	 */
	pthread_mutex_lock(&ctl.mutex);
	while (ctl.conns)
		pthread_cond_wait(&ctl.idle, &ctl.mutex);
	pthread_mutex_unlock(&ctl.mutex);
	close(ctl.fd);
	ctl.fd = -1;
	if (unlink(ctl.path))
		ex_report(errno, "unlink %s", ctl.path);
}

int ex_ctl_client(const char *path, int argc, char **argv)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	char buf[4096], last[256] = "";
	bool midline = false;
	int fd, i;
	FILE *f;

	if (strlen(path) >= sizeof(sa.sun_path)) {
		ex_report(ENAMETOOLONG, "control socket %s", path);
		return 1;
	}
	strcpy(sa.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		ex_report(errno, "socket");
		return 1;
	}
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa))) {
		ex_report(errno, "connect to %s (is the daemon running?)", path);
		close(fd);
		return 1;
	}
	f = fdopen(fd, "r+");
	if (!f) {
		ex_report(errno, "fdopen");
		close(fd);
		return 1;
	}
	for (i = 0; i < argc; i++)
		fprintf(f, "%s%s", i ? " " : "", argv[i]);
	fputc('\n', f);
	if (fflush(f)) {
		ex_report(errno, "send to %s", path);
		fclose(f);
		return 1;
	}
	/* The answer, as it comes: a merge reports when it is done. */
	while (fgets(buf, sizeof(buf), f)) {
		size_t n = strlen(buf);

		fputs(buf, stdout);
		/* The last line's start, for its verdict. */
		if (!midline)
			snprintf(last, sizeof(last), "%s", buf);
		midline = buf[n - 1] != '\n';
	}
	if (ferror(f)) {
		ex_report(errno, "read from %s", path);
		fclose(f);
		return 1;
	}
	fclose(f);
	if (fflush(stdout)) {
		ex_report(errno, "stdout");
		return 1;
	}
	if (!strncmp(last, "ok", 2) && (last[2] == '\n' || last[2] == ' ' ||
					 last[2] == '\0'))
		return 0;
	if (!last[0])
		ex_report(0, "%s closed the connection with no answer", path);
	return 1;
}

void ex_ready(void *ctx)
{
	char tmp[PATH_MAX];
	FILE *f;

	(void)ctx;
	if (!ex_pid_path)
		return;
	/* Renamed into place, so a reader never sees it half written. */
	snprintf(tmp, sizeof(tmp), "%s.tmp", ex_pid_path);
	f = fopen(tmp, "we");
	if (!f) {
		ex_report(errno, "pid file %s", tmp);
		return;
	}
	fprintf(f, "%d\n", (int)getpid());
	if (fclose(f) || rename(tmp, ex_pid_path))
		ex_report(errno, "pid file %s", ex_pid_path);
}
