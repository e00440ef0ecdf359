// SPDX-License-Identifier: GPL-2.0
/*
 * The helpers every command of dmuser uses: messages with hints, option
 * parsing, output. See tool.h.
 */
#define _FILE_OFFSET_BITS 64

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tool.h"

const char *prog = "dmuser";
void (*usage_fn)(FILE *f);

/*
 * One fprintf() per line: stdio locks the stream per call, so lines of
 * concurrent serving threads never interleave. strerror_r for the same
 * reason.
 */
__attribute__((format(printf, 2, 3)))
void report(int err, const char *fmt, ...)
{
	char what[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	if (err) {
		char ebuf[128];

		fprintf(stderr, "%s: %s: %s\n", prog, what,
			strerror_r(err < 0 ? -err : err, ebuf, sizeof(ebuf)));
	} else {
		fprintf(stderr, "%s: %s\n", prog, what);
	}
}

/*
 * libdevmapper prints its own lines for a failed ioctl, and libdmuser then
 * sees no errno where the device is removed after a failed load (EIO):
 * its messages are not printed, so that an error is the one line report()
 * makes, and the errno of the last one is kept for that line.
 */
int dm_last_errno;

void dm_log_keep_errno(int level, const char *file, int line,
		       int dm_errno_or_class, const char *f, ...)
{
	(void)file;
	(void)line;
	(void)f;
	/* Errors (syslog's LOG_ERR and worse) carry an errno. */
	if ((level & 7) <= 3 && dm_errno_or_class > 0)
		dm_last_errno = dm_errno_or_class;
}

static int match_target_name(void *arg, const struct dmu_target_desc *t)
{
	return strcmp(t->name, arg) ? 0 : 1;
}

/* Whether a live device has a user target named @name. */
static bool target_name_taken(const char *name)
{
	return name && dmu_dev_list(match_target_name, (void *)name) == 1;
}

/*
 * What a user can do about @err, or NULL: the module not loaded, a node or
 * a device that is not there, a node that belongs to someone else, a name
 * in use. @dev names the device-mapper device, @name the target.
 */
static const char *error_hint(int err, enum hint_about about, const char *dev,
			      const char *name, char *buf, size_t len)
{
	char node[PATH_MAX];
	struct stat st;

	if (err < 0)
		err = -err;
	if (access("/sys/module/dm_user", F_OK) && errno == ENOENT) {
		snprintf(buf, len, "the dm_user module is not loaded: modprobe dm_user");
		return buf;
	}
	if (name && strchr(name, '/'))
		snprintf(node, sizeof(node), "%s", name);
	else
		snprintf(node, sizeof(node), "/dev/dm-user/%s", name ? name : "");
	switch (about) {
	case HINT_NODE:
		if (err == ENOENT && strchr(name, '/'))
			snprintf(buf, len, "no node at that path (a target's is /dev/dm-user/<name>)");
		else if (err == ENOENT)
			snprintf(buf, len, "no target is named '%s' ('dmuser list' shows those there are)",
				 name);
		else if ((err == EACCES || err == EPERM) && !stat(node, &st))
			snprintf(buf, len, "%s is mode %03o, owner %u, group %u: its owner, a member of its group or root may open it%s",
				 node, st.st_mode & 07777, st.st_uid, st.st_gid,
				 err == EPERM ? ", and only its owner or CAP_SYS_ADMIN change it" : "");
		else
			return NULL;
		return buf;
	case HINT_CREATE:
		if (err == EEXIST)
			snprintf(buf, len, "a device named '%s' exists: 'dmuser remove %s' first, or --if-missing to keep it",
				 dev, dev);
		/*
		 * libdevmapper loses the table load's errno (EBUSY) on
		 * create: look at what is there instead.
		 */
		else if (err == EBUSY || target_name_taken(name))
			snprintf(buf, len, "another device's user target is named '%s' ('dmuser list'): choose another --name",
				 name);
		else if (err == EACCES || err == EPERM)
			snprintf(buf, len, "creating a device needs root (CAP_SYS_ADMIN)");
		else
			return NULL;
		return buf;
	case HINT_DEVICE:
		if (err == ENXIO || err == ENODEV)
			snprintf(buf, len, "no device is named '%s' ('dmuser list' shows those with user targets)",
				 dev);
		else if (err == EBUSY)
			snprintf(buf, len, "'%s' is open: unmount it and stop what uses it first",
				 dev);
		else if (err == EACCES || err == EPERM)
			snprintf(buf, len, "changing devices needs root (CAP_SYS_ADMIN)");
		else
			return NULL;
		return buf;
	}
	return NULL;
}

/* report(), and after the error the hint error_hint() gives, if any. */
__attribute__((format(printf, 5, 6)))
void report_hint(int err, enum hint_about about, const char *dev,
		 const char *name, const char *fmt, ...)
{
	char what[512], ebuf[128], hint[PATH_MAX + 256];
	const char *h = error_hint(err, about, dev, name, hint, sizeof(hint));
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	fprintf(stderr, "%s: %s: %s%s%s\n", prog, what,
		strerror_r(err < 0 ? -err : err, ebuf, sizeof(ebuf)),
		h ? "; " : "", h ? h : "");
}

__attribute__((format(printf, 1, 2), noreturn))
void bad_usage(const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	fprintf(stderr, "%s: %s\n", prog, msg);
	if (usage_fn)
		usage_fn(stderr);
	exit(2);
}

/*
 * What getopt_long() returned @c for: an option without its argument, or
 * one it does not know (opterr is 0: the messages are ours).
 */
__attribute__((noreturn))
void bad_option(int c, char **argv)
{
	if (c == ':')
		bad_usage("option '%s' needs an argument", argv[optind - 1]);
	if (optopt)
		bad_usage("unknown option '-%c'", optopt);
	bad_usage("unknown option '%s'", argv[optind - 1]);
}

/* K, M, G and T: powers of 1024. */
static unsigned int suffix_shift(char c)
{
	switch (c) {
	case 'K': case 'k': return 10;
	case 'M': case 'm': return 20;
	case 'G': case 'g': return 30;
	case 'T': case 't': return 40;
	default: return 0;
	}
}

/* Digits first: strtoull alone would take "-1", " 5" and "0x10". */
uint64_t parse_number(const char *name, const char *s, bool suffix,
		      uint64_t min, uint64_t max)
{
	unsigned long long v;
	unsigned int shift = 0;
	char *end;

	if (*s < '0' || *s > '9')
		bad_usage("%s: '%s' is not a number", name, s);
	errno = 0;
	v = strtoull(s, &end, 10);
	if (suffix && *end && suffix_shift(*end)) {
		shift = suffix_shift(*end);
		end++;
	}
	if (*end)
		bad_usage("%s: '%s': unexpected '%s'%s", name, s, end,
			  suffix ? " (suffixes: K, M, G, T)" : "");
	if (errno == ERANGE || v > UINT64_MAX >> shift)
		bad_usage("%s: '%s' is too large", name, s);
	v <<= shift;
	if (v < min || v > max)
		bad_usage("%s: '%s' is %s %" PRIu64, name, s,
			  v < min ? "below the minimum" : "above the maximum",
			  v < min ? min : max);
	return v;
}

/* "--help" and "-h" anywhere a command takes no option. */
bool wants_help(const char *arg)
{
	return !strcmp(arg, "-h") || !strcmp(arg, "--help");
}

/* Output that did not reach stdout is an error too. */
int finish_stdout(void)
{
	if (fflush(stdout) || ferror(stdout)) {
		report(errno ? errno : EIO, "write to standard output");
		return 1;
	}
	return 0;
}

/* /dev/dm-user/<name>, or the path given. */
int open_channel(const char *name, char *what, size_t len)
{
	if (strchr(name, '/')) {
		int fd;

		snprintf(what, len, "%s", name);
		fd = open(name, O_RDWR | O_CLOEXEC);
		return fd < 0 ? -errno : fd;
	}
	snprintf(what, len, "/dev/dm-user/%s", name);
	return dmu_open_channel(name, 0);
}

/*
 * Commands without options: -h, or exactly @want arguments (after an
 * optional "--"). Returns the first of them.
 */
char **take_args(int argc, char **argv, int want, void (*usage)(FILE *))
{
	int first = 1;

	usage_fn = usage;
	if (argc > 1 && !strcmp(argv[1], "--")) {
		first = 2;
	} else {
		int i;

		for (i = 1; i < argc; i++) {
			if (wants_help(argv[i])) {
				usage(stdout);
				exit(0);
			}
			if (argv[i][0] == '-' && argv[i][1])
				bad_usage("unknown option '%s'", argv[i]);
		}
	}
	if (argc - first < want)
		bad_usage("missing argument");
	if (argc - first > want)
		bad_usage("unexpected argument '%s'", argv[first + want]);
	return argv + first;
}

/* Returns 0 or an errno value. */
int pio_all(int fd, bool write, unsigned char *buf, size_t len, uint64_t off)
{
	while (len) {
		ssize_t n = write ? pwrite(fd, buf, len, off)
				  : pread(fd, buf, len, off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return errno;
		if (n == 0)	/* the file shrank under us */
			return EIO;
		buf += n;
		len -= n;
		off += n;
	}
	return 0;
}

/* @bytes with an IEC unit, whole where it is whole: "1 GiB", "1.5 MiB". */
const char *human_bytes(uint64_t bytes, char *buf, size_t len)
{
	static const char *const unit[] = { "B", "KiB", "MiB", "GiB", "TiB",
					    "PiB", "EiB" };
	unsigned int u = 0;
	double v = (double)bytes;

	while (v >= 1024 && u + 1 < sizeof(unit) / sizeof(unit[0])) {
		v /= 1024;
		u++;
	}
	if (u == 0 || bytes % (1ULL << (10 * u)) == 0)
		snprintf(buf, len, "%.0f %s", v, unit[u]);
	else
		snprintf(buf, len, "%.2f %s", v, unit[u]);
	return buf;
}
