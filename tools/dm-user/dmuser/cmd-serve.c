// SPDX-License-Identifier: GPL-2.0
/*
 * dmuser serve, the reference daemon: every request of one target served
 * from a store (store.h) through libdmuser's serving loop, one thread per
 * channel; or, with --remap, every request sent on to the target's
 * backing device; or, with --nbd, every request sent to an NBD server
 * (serve-nbd.c).
 */
#define _FILE_OFFSET_BITS 64

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>
#include <systemd/sd-daemon.h>

#include "serve.h"
#include "store.h"
#include "tool.h"

#ifndef PR_GET_IO_FLUSHER
#define PR_GET_IO_FLUSHER 58
#endif

#define MAX_THREADS	64
#define MAX_BATCH	128
/* --queue-depth's default: NBD requests in flight per connection. */
#define NBD_QUEUE_DEPTH	64

/* ---- Serving: the store as libdmuser callbacks ------------------------ */

enum counter {
	C_READS, C_WRITES, C_FLUSHES, C_DISCARDS, C_WRITE_ZEROES,
	C_SECURE_ERASES, C_UNSUPPORTED, C_ERRORS, C_FUA, C_PREFLUSH,
	C_BYTES_READ, C_BYTES_WRITTEN, C_NR
};

static const char *const counter_names[C_NR] = {
	"reads", "writes", "flushes", "discards", "write_zeroes",
	"secure_erases", "unsupported", "errors", "fua", "preflush",
	"bytes_read", "bytes_written",
};

static _Atomic uint64_t counters[C_NR];

static void count(enum counter c, uint64_t n)
{
	atomic_fetch_add_explicit(&counters[c], n, memory_order_relaxed);
}

static struct serve_options {
	const char *channel, *stats_path, *pid_path;
	/* The store chosen, its argument as given and as a size. */
	const struct store_type *store;
	const char *store_arg;
	uint64_t store_size;
	unsigned int store_flags;	/* bit i: store->flags[i] given */
	unsigned int threads, batch;
	size_t split;
	bool read_batch, write_batch, verbose, copy, remap, notify;
	const char *nbd_uri;
	unsigned int queue_depth;
	enum dmu_transport transport;
	unsigned int ring_depth;
	unsigned int ring_data;
	unsigned int ring_busy_poll;
} sopt = { .threads = 1, .batch = 1, .queue_depth = NBD_QUEUE_DEPTH };

/* [off, off + len) lies in the store. */
static bool range_ok(uint64_t off, uint64_t len, uint64_t size)
{
	return len <= size && off <= size - len;
}

/* The counter of each request type. */
static const enum counter by_type[] = {
	[DM_USER_REQ_MAP_READ] = C_READS,
	[DM_USER_REQ_MAP_WRITE] = C_WRITES,
	[DM_USER_REQ_MAP_FLUSH] = C_FLUSHES,
	[DM_USER_REQ_MAP_DISCARD] = C_DISCARDS,
	[DM_USER_REQ_MAP_SECURE_ERASE] = C_SECURE_ERASES,
	[DM_USER_REQ_MAP_WRITE_ZEROES] = C_WRITE_ZEROES,
};

void serve_count_request(const struct dmu_req *r)
{
	if (r->flags & DM_USER_REQ_MAP_FLAG_FUA)
		count(C_FUA, 1);
	if (r->flags & DM_USER_REQ_MAP_FLAG_PREFLUSH)
		count(C_PREFLUSH, 1);
	count(by_type[r->type], 1);
}

int serve_count_result(const struct dmu_req *r, int rc)
{
	if (!rc && r->type == DM_USER_REQ_MAP_READ)
		count(C_BYTES_READ, r->len);
	if (!rc && r->type == DM_USER_REQ_MAP_WRITE)
		count(C_BYTES_WRITTEN, r->len);
	if (rc == -EOPNOTSUPP)
		count(C_UNSUPPORTED, 1);
	else if (rc)
		count(C_ERRORS, 1);
	return rc;
}

static int serve_op(struct store *s, struct dmu_req *r)
{
	bool fua = r->flags & DM_USER_REQ_MAP_FLAG_FUA;
	bool preflush = r->flags & DM_USER_REQ_MAP_FLAG_PREFLUSH;
	int rc = 0;

	serve_count_request(r);

	/* An empty flush has no range, whatever its sector says. */
	if (r->type == DM_USER_REQ_MAP_FLUSH) {
		rc = s->ops->flush(s);
	} else if (!range_ok(r->offset, r->len, s->size)) {
		rc = -ERANGE;
	} else {
		if (preflush)
			rc = s->ops->flush(s);
		/* Answered from the store itself: see struct dmu_req. */
		if (!rc && r->type == DM_USER_REQ_MAP_READ && s->ops->read_place &&
		    !sopt.copy) {
			unsigned char *p = s->ops->read_place(s, r->offset, r->len,
							      r->data_may_fault);

			if (p)
				r->data = p;
		}
		if (!rc && !s->ops->op[r->type])
			rc = -EOPNOTSUPP;
		else if (!rc)
			rc = s->ops->op[r->type](s, r->data, r->offset, r->len);
		/* FUA means nothing to a read. */
		if (!rc && fua && r->type != DM_USER_REQ_MAP_READ)
			rc = s->ops->flush(s);
	}

	return serve_count_result(r, rc);
}

/* Every operation goes through serve_op(); its counter follows the type. */
static int cb_serve(void *ctx, struct dmu_req *r)
{
	return serve_op(ctx, r);
}

/*
 * --remap: nothing kept, every request sent where it is on the target's
 * backing device by a remap answer, its data never through the daemon: a
 * daemon in the I/O path that changes nothing, to test the remap path
 * and to measure it against dm-linear.
 */
static int cb_remap(void *ctx, struct dmu_req *r)
{
	(void)ctx;
	count(by_type[r->type], 1);
	/* The kernel sent a flush to the backing device already. */
	if (r->type == DM_USER_REQ_MAP_FLUSH)
		return 0;
	if (r->type == DM_USER_REQ_MAP_READ)
		count(C_BYTES_READ, r->len);
	if (r->type == DM_USER_REQ_MAP_WRITE)
		count(C_BYTES_WRITTEN, r->len);
	return DMU_REMAP;
}

static const struct dmu_ops remap_dmu_ops = {
	.read = cb_remap,
	.write = cb_remap,
	.flush = cb_remap,
	.discard = cb_remap,
	.write_zeroes = cb_remap,
	.secure_erase = cb_remap,
};

/* A WRITE's data goes straight to its place in the store, where it has one. */
static void *cb_write_buffer(void *ctx, const struct dmu_req *r)
{
	struct store *s = ctx;

	if (!s->ops->write_place || !range_ok(r->offset, r->len, s->size))
		return NULL;
	return s->ops->write_place(s, r->offset, r->len);
}

static const struct dmu_ops store_dmu_ops = {
	.read = cb_serve,
	.write = cb_serve,
	.flush = cb_serve,
	.discard = cb_serve,
	.write_zeroes = cb_serve,
	.secure_erase = cb_serve,
	.write_buffer = cb_write_buffer,
};

/* Set by SIGTERM and SIGINT; the serving threads look at it. */
static volatile int stop_flag;
static volatile sig_atomic_t stop_signal;
/* The pid file or READY=1 could not be written: the exit status is 1. */
static bool ready_failed;

/* Through a temporary name, so that a poller never sees a partial file. */
static int write_file_atomically(const char *path, const char *text)
{
	char tmp[PATH_MAX];
	int fd, n, err;

	n = snprintf(tmp, sizeof(tmp), "%s.%ld.tmp", path, (long)getpid());
	if (n < 0 || (size_t)n >= sizeof(tmp)) {
		report(ENAMETOOLONG, "%s", path);
		return -1;
	}
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0) {
		report(errno, "open %s", tmp);
		return -1;
	}
	err = pio_all(fd, true, (unsigned char *)text, strlen(text), 0);
	if (err)
		report(err, "write %s", tmp);
	if (close(fd) && !err) {
		err = errno;
		report(err, "close %s", tmp);
	}
	if (!err && rename(tmp, path)) {
		err = errno;
		report(err, "rename %s to %s", tmp, path);
	}
	if (err)
		unlink(tmp);
	return err ? -1 : 0;
}

static int write_stats(void)
{
	char text[C_NR * 48];	/* name and a 20-digit value per line */
	size_t pos = 0;
	int i;

	if (!sopt.stats_path)
		return 0;
	for (i = 0; i < C_NR; i++)
		pos += snprintf(text + pos, sizeof(text) - pos, "%s %" PRIu64 "\n",
				counter_names[i], atomic_load(&counters[i]));
	return write_file_atomically(sopt.stats_path, text);
}

/*
 * --notify: a message to the service manager (sd_notify(3)). 0 when it
 * was sent or there is no manager to send it to (NOTIFY_SOCKET unset: the
 * command line run by hand), -1 when sending failed.
 */
static int notify_manager(const char *what)
{
	int rc;

	if (!sopt.notify)
		return 0;
	rc = sd_notify(0, what);
	if (rc < 0) {
		/* The first assignment names the message. */
		report(-rc, "sd_notify %.*s to $NOTIFY_SOCKET %s",
		       (int)strcspn(what, "\n"), what,
		       getenv("NOTIFY_SOCKET"));
		return -1;
	}
	return 0;
}

/*
 * Every channel is open: tell whoever waits for the pid file or for
 * READY=1. Without either nobody would know we serve, so failing to send
 * one stops serving.
 */
static void serve_ready(void *ctx)
{
	char pid[32], msg[128 + PATH_MAX];

	(void)ctx;
	snprintf(pid, sizeof(pid), "%ld\n", (long)getpid());
	snprintf(msg, sizeof(msg), "READY=1\nSTATUS=serving %s on %u channel%s",
		 sopt.channel, sopt.threads, sopt.threads == 1 ? "" : "s");
	if ((sopt.pid_path && write_file_atomically(sopt.pid_path, pid)) ||
	    notify_manager(msg)) {
		ready_failed = true;
		stop_flag = 1;
	}
}

static void stop_handler(int sig)
{
	stop_signal = sig;
	stop_flag = 1;
}

bool serve_stopping(void)
{
	return stop_flag;
}

void serve_request_stop(void)
{
	stop_flag = 1;
}

static int setup_signals(void)
{
	/* No SA_RESTART: a thread waiting in poll() looks at the flag now. */
	struct sigaction sa = { .sa_handler = stop_handler };

	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGTERM, &sa, NULL) || sigaction(SIGINT, &sa, NULL)) {
		report(errno, "sigaction");
		return -1;
	}
	/* A server that goes away is an error of its connection, not ours. */
	sa.sa_handler = SIG_IGN;
	if (sigaction(SIGPIPE, &sa, NULL)) {
		report(errno, "sigaction SIGPIPE");
		return -1;
	}
	return 0;
}

/* dmu_prepare_daemon() returns the first failure: find out which it was. */
static void prepare_daemon(void)
{
	int rc = dmu_prepare_daemon();

	if (!rc)
		return;
	if (prctl(PR_GET_IO_FLUSHER, 0, 0, 0, 0) == 1)
		report(rc, "warning: memory not locked: mlockall(MCL_CURRENT | MCL_FUTURE) needs CAP_IPC_LOCK or an unlimited RLIMIT_MEMLOCK (continuing, but the daemon's memory may be paged out while the device waits for it)");
	else
		report(rc, "warning: prctl(PR_SET_IO_FLUSHER, 1) (needs CAP_SYS_RESOURCE and Linux 5.6; continuing, but reclaim may deadlock on this device)");
}


/*
 * "  -x, --name <arg>" and @help's lines, in the usage's two columns; a
 * store's flag indented under its store.
 */
static void print_option(FILE *f, bool flag, int short_opt, const char *name,
			 const char *arg, const char *help)
{
	enum { HELP_COLUMN = 24 };
	int n = fprintf(f, "%s-%c, --%s%s%s", flag ? "    " : "  ", short_opt,
			name, arg ? " " : "", arg ? arg : "");

	while (*help) {
		size_t len = strcspn(help, "\n");

		fprintf(f, "%*s%.*s\n", n < HELP_COLUMN ? HELP_COLUMN - n : 1,
			"", (int)len, help);
		help += len + (help[len] == '\n');
		n = 0;
	}
}

void serve_usage(FILE *f)
{
	const struct store_type *const *t;
	const struct store_flag *fl;

	fprintf(f,
"Usage: %s%s [options] <name-or-path>\n"
"Serve the I/O of a dm-user target through its channels: <name> stands for\n"
"/dev/dm-user/<name>; a path (with a '/') is opened as it is.\n"
"\n"
"Store (exactly one):\n", prog, strcmp(prog, "dmuserd") ? " serve" : "");
	for (t = store_types; *t; t++) {
		print_option(f, false, (*t)->short_opt, (*t)->name, (*t)->arg,
			     (*t)->help);
		for (fl = (*t)->flags; fl && fl->name; fl++)
			print_option(f, true, fl->short_opt, fl->name, NULL,
				     fl->help);
	}
	print_option(f, false, 'm', "remap", NULL,
		     "keep nothing: every request goes where it is on the\n"
		     "target's backing device by a remap answer, its\n"
		     "data never through the daemon (a pass-through\n"
		     "daemon, for testing and measuring filters)");
	print_option(f, false, 'u', "nbd", "<uri>",
		     "serve from an NBD server: nbd://host[:port]/export,\n"
		     "nbd+unix:///export?socket=<path> (libnbd's URIs);\n"
		     "the export at least as large as the target; a lost\n"
		     "connection gives its requests back and reconnects");
	print_option(f, true, 'Q', "queue-depth", "<n>",
		     "requests in flight per connection (default 64,\n"
		     "max 4096)");
	fprintf(f,
"Options:\n"
"  -t, --threads <n>     open <n> channels, one thread each (default 1, max %d);\n"
"                        with --nbd, one connection each\n"
"  -q, --batch <n>       read up to <n> requests, then answer them in reverse\n"
"                        order (default 1, max %d)\n"
"  -B, --read-batch      negotiate DM_USER_EXT_READ_BATCH: many requests per\n"
"                        read()\n"
"  -W, --write-batch     negotiate DM_USER_EXT_WRITE_BATCH, if the kernel has\n"
"                        it: the answers to one batch in one write()\n"
"  -T, --transport <t>   how requests travel: 'ring' (shared memory, one\n"
"                        ioctl a batch), 'rw' (read() and write(), the RFC\n"
"                        protocol) or 'auto' (default: the ring where the\n"
"                        kernel has it and no read()/write() option is given)\n"
"  -R, --ring-depth <n>  slots of each ring, a power of two up to 1024\n"
"                        (default: the kernel's, 64)\n"
"  -D, --ring-data <size> bytes of each ring's data area, a multiple of 4K\n"
"                        from 1M to 256M (suffix K or M; default: the\n"
"                        kernel's, 1M), all allocated when the ring is set up\n"
"  -P, --busy-poll <us>  each ring spins up to <us> microseconds (max 1000)\n"
"                        for a request before it sleeps: less latency for\n"
"                        more CPU time (default 0: never spins)\n"
"  -c, --copy            move data through buffers of the library even where\n"
"                        the kernel could copy it to and from the RAM or null\n"
"                        store in place (to measure what in-place saves)\n"
"  -s, --split <bytes>   split every read() and write() on the channel into\n"
"                        pieces of at most <bytes> (default 0: no splitting)\n"
"  -S, --stats <path>    write counters to <path> on exit\n"
"  -p, --pidfile <path>  write the pid to <path> once every channel is open\n"
"  -N, --notify          tell the service manager READY=1 once every channel\n"
"                        is open, STOPPING=1 when a signal stopped it\n"
"                        (sd_notify(3), for systemd's Type=notify; nothing\n"
"                        without $NOTIFY_SOCKET)\n"
"  -v, --verbose         log every request to stderr\n"
"  -h, --help            show this help\n"
"\n"
"Exit status: 0 after SIGTERM/SIGINT or removal of the target, 1 on error,\n"
"2 on bad usage.\n", MAX_THREADS, MAX_BATCH);
}

/* The options every store shares; the stores' own come from store_types[]. */
static const struct option serve_longopts[] = {
	{ "remap", no_argument, NULL, 'm' },
	{ "nbd", required_argument, NULL, 'u' },
	{ "queue-depth", required_argument, NULL, 'Q' },
	{ "threads", required_argument, NULL, 't' },
	{ "batch", required_argument, NULL, 'q' },
	{ "read-batch", no_argument, NULL, 'B' },
	{ "write-batch", no_argument, NULL, 'W' },
	{ "copy", no_argument, NULL, 'c' },
	{ "transport", required_argument, NULL, 'T' },
	{ "ring-depth", required_argument, NULL, 'R' },
	{ "ring-data", required_argument, NULL, 'D' },
	{ "busy-poll", required_argument, NULL, 'P' },
	{ "split", required_argument, NULL, 's' },
	{ "stats", required_argument, NULL, 'S' },
	{ "pidfile", required_argument, NULL, 'p' },
	{ "notify", no_argument, NULL, 'N' },
	{ "verbose", no_argument, NULL, 'v' },
	{ "help", no_argument, NULL, 'h' },
};
#define SERVE_SHORTOPTS ":mu:Q:t:q:BWcT:R:D:P:s:S:p:Nvh"

/* The most stores and flags the option table has room for. */
#define MAX_STORE_OPTS 32

/* A store's option or flag, as getopt_long() returns it. */
struct store_opt {
	const struct store_type *type;
	int flag;		/* index in type->flags; -1: the store itself */
};

/*
 * Adds store @t's option (@flag -1) or its flag number @flag to the
 * options of getopt_long(). Two options on one letter, or more than the
 * arrays hold, are a bug of the store table: reported, exit status 1.
 */
static void add_store_opt(struct option *longopts, size_t *n,
			  char *shortopts, struct store_opt *by_letter,
			  const struct store_type *t, int flag)
{
	const struct store_flag *fl = flag < 0 ? NULL : &t->flags[flag];
	const char *name = fl ? fl->name : t->name;
	int c = fl ? fl->short_opt : t->short_opt;

	if (*n >= ARRAY_SIZE(serve_longopts) + MAX_STORE_OPTS ||
	    flag >= STORE_MAX_FLAGS || c <= 0 || c > 127 ||
	    strchr(shortopts, c)) {
		report(0, "store table: no room for --%s, or its letter -%c is taken",
		       name, c);
		exit(1);
	}
	longopts[(*n)++] = (struct option){
		name, fl ? no_argument : required_argument, NULL, c };
	by_letter[c] = (struct store_opt){ t, flag };
	sprintf(shortopts + strlen(shortopts), "%c%s", c, fl ? "" : ":");
}

/* serve_longopts[] and every store's option and flags. */
static void store_options(struct option *longopts, char *shortopts,
			  struct store_opt *by_letter)
{
	const struct store_type *const *t;
	size_t n = ARRAY_SIZE(serve_longopts);
	int i;

	memcpy(longopts, serve_longopts, sizeof(serve_longopts));
	strcpy(shortopts, SERVE_SHORTOPTS);
	for (t = store_types; *t; t++) {
		add_store_opt(longopts, &n, shortopts, by_letter, *t, -1);
		for (i = 0; (*t)->flags && (*t)->flags[i].name; i++)
			add_store_opt(longopts, &n, shortopts, by_letter, *t, i);
	}
	longopts[n] = (struct option){ NULL, 0, NULL, 0 };
}

/* "--ram, --file, --null, --remap and --nbd". */
static const char *mode_options(char *buf, size_t len)
{
	const struct store_type *const *t;
	size_t pos = 0;

	for (t = store_types; *t; t++)
		pos += snprintf(buf + pos, len - pos, "--%s, ", (*t)->name);
	if (pos >= 2)
		pos -= 2;
	snprintf(buf + pos, len - pos, ", --remap and --nbd");
	return buf;
}

/* A store option or flag of store_options(); false: @c is none. */
static bool store_option(int c, const struct store_opt *by_letter,
			 const struct store_type **flag_of,
			 const char **flag_name)
{
	const struct store_opt *o;
	char modes[256];

	if (c <= 0 || c > 127 || !by_letter[c].type)
		return false;
	o = &by_letter[c];
	if (o->flag >= 0) {
		sopt.store_flags |= 1U << o->flag;
		/* Checked against the store once every option is read. */
		*flag_of = o->type;
		*flag_name = o->type->flags[o->flag].name;
		return true;
	}
	/* The same store again: the last one counts, as for any option. */
	if (sopt.store && sopt.store != o->type)
		bad_usage("exactly one of %s is required",
			  mode_options(modes, sizeof(modes)));
	sopt.store = o->type;
	sopt.store_arg = optarg;
	if (o->type->arg_is_size) {
		char name[64];

		snprintf(name, sizeof(name), "--%s", o->type->name);
		sopt.store_size = parse_number(name, optarg, true, 1,
					       UINT64_MAX);
	}
	return true;
}

static void serve_parse(int argc, char **argv)
{
	struct option longopts[ARRAY_SIZE(serve_longopts) + MAX_STORE_OPTS + 1];
	char shortopts[sizeof(SERVE_SHORTOPTS) + 2 * MAX_STORE_OPTS];
	struct store_opt by_letter[128] = { 0 };
	const struct store_type *flag_of = NULL;
	const char *ring_opt, *rw_opt, *flag_name = NULL;
	bool queue_depth_given = false;
	char modes[256];
	int c;

	store_options(longopts, shortopts, by_letter);
	while ((c = getopt_long(argc, argv, shortopts, longopts, NULL)) != -1) {
		switch (c) {
		case 'm':
			sopt.remap = true;
			break;
		case 'u':
			sopt.nbd_uri = optarg;
			break;
		case 'Q':
			sopt.queue_depth = (unsigned int)parse_number(
				"--queue-depth", optarg, false, 1,
				DMU_MAX_PENDING);
			queue_depth_given = true;
			break;
		case 't':
			sopt.threads = (unsigned int)parse_number("--threads",
						optarg, false, 1, MAX_THREADS);
			break;
		case 'q':
			sopt.batch = (unsigned int)parse_number("--batch",
						optarg, false, 1, MAX_BATCH);
			break;
		case 'B':
			sopt.read_batch = true;
			break;
		case 'W':
			sopt.write_batch = true;
			break;
		case 'c':
			sopt.copy = true;
			break;
		case 'T':
			if (!strcmp(optarg, "auto"))
				sopt.transport = DMU_TRANSPORT_AUTO;
			else if (!strcmp(optarg, "ring"))
				sopt.transport = DMU_TRANSPORT_RING;
			else if (!strcmp(optarg, "rw"))
				sopt.transport = DMU_TRANSPORT_RW;
			else
				bad_usage("--transport must be auto, ring or rw, not '%s'",
					  optarg);
			break;
		case 'R':
			sopt.ring_depth = (unsigned int)parse_number(
				"--ring-depth", optarg, false, 1,
				DM_USER_RING_MAX_DEPTH);
			if (sopt.ring_depth & (sopt.ring_depth - 1))
				bad_usage("--ring-depth must be a power of two");
			break;
		case 'D':
			sopt.ring_data = (unsigned int)parse_number(
				"--ring-data", optarg, true, 1 << 20,
				DM_USER_RING_MAX_DATA);
			if (sopt.ring_data % 4096)
				bad_usage("--ring-data must be a multiple of 4K");
			break;
		case 'P':
			sopt.ring_busy_poll =
				(unsigned int)parse_number("--busy-poll",
					optarg, false, 0,
					DM_USER_RING_MAX_BUSY_POLL);
			break;
		case 's':
			sopt.split = (size_t)parse_number("--split", optarg,
						false, 0, SSIZE_MAX);
			break;
		case 'S':
			sopt.stats_path = optarg;
			break;
		case 'p':
			sopt.pid_path = optarg;
			break;
		case 'N':
			sopt.notify = true;
			break;
		case 'v':
			sopt.verbose = true;
			break;
		case 'h':
			serve_usage(stdout);
			exit(0);
		default:
			if (!store_option(c, by_letter, &flag_of, &flag_name))
				bad_option(c, argv);
		}
	}
	if (!!sopt.store + sopt.remap + !!sopt.nbd_uri != 1)
		bad_usage("exactly one of %s is required",
			  mode_options(modes, sizeof(modes)));
	if (sopt.remap && sopt.copy)
		bad_usage("--copy does not apply to --remap, which moves no data");
	if (queue_depth_given && !sopt.nbd_uri)
		bad_usage("--queue-depth applies to --nbd only");
	/* Requests stay pending: answered one by one, as they complete. */
	if (sopt.nbd_uri && (sopt.copy || sopt.batch > 1 || sopt.read_batch))
		bad_usage("%s does not apply to --nbd, whose requests are answered as the server answers them",
			  sopt.copy ? "--copy" : sopt.batch > 1 ? "--batch" :
			  "--read-batch");
	if (flag_of && flag_of != sopt.store)
		bad_usage("--%s applies to --%s only", flag_name, flag_of->name);
	/* As dmu_serve() refuses them, with the options named. */
	ring_opt = sopt.ring_depth ? "--ring-depth" :
		   sopt.ring_data ? "--ring-data" :
		   sopt.ring_busy_poll ? "--busy-poll" : NULL;
	rw_opt = sopt.batch > 1 ? "--batch" :
		 sopt.read_batch ? "--read-batch" :
		 sopt.write_batch ? "--write-batch" :
		 sopt.split ? "--split" : NULL;
	if (ring_opt && sopt.transport == DMU_TRANSPORT_RW)
		bad_usage("%s applies to the ring, not --transport rw",
			  ring_opt);
	if (rw_opt && sopt.transport == DMU_TRANSPORT_RING)
		bad_usage("%s applies to read() and write(), not --transport ring",
			  rw_opt);
	if (ring_opt && rw_opt)
		bad_usage("%s applies to the ring, which %s turns off",
			  ring_opt, rw_opt);
	if (optind != argc - 1)
		bad_usage(optind == argc ? "missing <name-or-path>"
					 : "more than one <name-or-path>");
	sopt.channel = argv[optind];
}

int cmd_serve(int argc, char **argv)
{
	struct dmu_ops ops = store_dmu_ops;
	struct dmu_serve_opts opts = { 0 };
	struct store *store = NULL;
	int status = 0, rc;

	usage_fn = serve_usage;
	serve_parse(argc, argv);
	if (setup_signals())
		return 1;
	/*
	 * Before the store is opened and the threads exist: the flush flag
	 * is per thread and inherited, and the store is allocated locked.
	 */
	prepare_daemon();
	if (sopt.nbd_uri) {
		/* Filled in by serve_nbd(). */
	} else if (sopt.remap) {
		ops = remap_dmu_ops;
		opts.remap = true;
	} else {
		store = sopt.store->open(sopt.store_arg, sopt.store_size,
					 sopt.store_flags);
		if (!store)
			return 1;
	}
	if (sopt.verbose && store)
		report(0, "serving %" PRIu64 " bytes of %s on %s", store->size,
		       sopt.store->contents ? sopt.store->contents :
		       sopt.store_arg, sopt.channel);

	/* --copy: every byte through the library's buffers. */
	if (sopt.copy)
		ops.write_buffer = NULL;
	opts.threads = sopt.threads;
	opts.batch = sopt.batch;
	opts.split = sopt.split;
	opts.read_batch = sopt.read_batch;
	opts.write_batch = sopt.write_batch;
	opts.transport = sopt.transport;
	opts.ring_depth = sopt.ring_depth;
	opts.ring_data = sopt.ring_data;
	opts.ring_busy_poll = sopt.ring_busy_poll;
	opts.verbose = sopt.verbose;
	opts.stop = &stop_flag;
	opts.ready = serve_ready;
	if (sopt.nbd_uri) {
		struct nbd_options nopt = {
			.uri = sopt.nbd_uri, .channel = sopt.channel,
			.queue_depth = sopt.queue_depth,
			.verbose = sopt.verbose,
		};

		/* It reports its failures itself, with what they were about. */
		rc = 0;
		if (serve_nbd(&nopt, &opts))
			status = 1;
	} else {
		rc = dmu_serve(sopt.channel, &ops, store, &opts);
	}
	/* The answers in flight are sent: what is left is to close. */
	if (stop_signal && notify_manager("STOPPING=1"))
		status = 1;
	if (rc) {
		report_hint(rc, HINT_NODE, NULL, sopt.channel, "serve %s%s",
			    strchr(sopt.channel, '/') ? "" : "/dev/dm-user/",
			    sopt.channel);
		status = 1;
	}
	if (ready_failed)
		status = 1;
	if (sopt.verbose && stop_signal)
		report(0, "%s: stopped", strsignal(stop_signal));
	if (write_stats())
		status = 1;
	if (store)
		store->ops->close(store);
	return status;
}
