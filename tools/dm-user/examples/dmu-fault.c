// SPDX-License-Identifier: GPL-2.0
/*
 * dmu-fault - inject errors, delays and corruption into a block device's
 * I/O, programmable while it runs, served by dm-user.
 *
 *   dmu-fault serve [--rule "<rule>"]... [options] <name>
 *   dmu-fault ctl <socket> add <rule> | del <id> | clear | list
 *
 * A rule:  <error|delay|corrupt> <ops> <range> [<n>ms] [<p>%]
 *   ops    read, write, flush, discard, write_zeroes, secure_erase, joined
 *          with commas, or "all"; corrupt takes read and write only
 *   range  <offset>+<length> in bytes (suffixes K, M, G, T; s for
 *          sectors), or "all"; flush, which has no range, needs "all"
 *   <n>ms  the delay of a delay rule
 *   <p>%   the share of matching requests the rule hits (default 100%)
 *
 * The daemon claims the ranges of its rules and nothing else: the rest of
 * the device goes straight to the backing device with no daemon in its
 * path, and a request in a claimed range that no rule hits is answered
 * with a remap. A claim or release is atomic against the I/O in flight,
 * so rules come and go under a running workload without a request seeing
 * half of a change. What dm-flakey and dm-dust do, without kernel code.
 *
 * Locking: the rules are under rules_lock, held shared by the serving
 * threads while they match a request and exclusive by a change; changes
 * (and the claims they make) are one at a time under change_mutex.
 */
#define _FILE_OFFSET_BITS 64

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "example.h"

#define MAX_RULES	64
#define MAX_DELAY_MS	60000
#define ALL_OPS		((1U << DMU_NR_OPS) - 1)

enum kind { K_ERROR, K_DELAY, K_CORRUPT };
static const char *const kind_names[] = { "error", "delay", "corrupt" };

/* Indexed by DM_USER_REQ_MAP_*, as enum dmu_op is. */
static const char *const op_names[DMU_NR_OPS] = {
	"read", "write", "flush", "discard", "write_zeroes", "secure_erase",
};

struct rule {
	unsigned int id;
	enum kind kind;
	unsigned int ops;	/* 1 << DM_USER_REQ_MAP_* */
	bool all;		/* the whole device */
	uint64_t off, len;	/* bytes, when not all */
	unsigned int delay_ms;
	unsigned int percent;	/* 1 to 100 */
	uint64_t hits;
};

/* A claimed range, in bytes. */
struct range {
	uint64_t off, len;
};

static struct {
	uint64_t size;		/* bytes of the target */
	uint64_t backing_off;
	uint32_t block_size;
	int backing_fd, chan_fd;
	uint64_t seed;

	pthread_rwlock_t rules_lock;
	struct rule rules[MAX_RULES];
	unsigned int nr_rules, next_id;

	pthread_mutex_t change_mutex;
	struct range claimed[MAX_RULES];
	unsigned int nr_claimed;
} fault = {
	.backing_fd = -1, .chan_fd = -1,
	.rules_lock = PTHREAD_RWLOCK_INITIALIZER,
	.change_mutex = PTHREAD_MUTEX_INITIALIZER,
	.next_id = 1,
};

/* xorshift64*, one state per serving thread, seeded from --seed. */
static __thread uint64_t rng_state;

static unsigned int rng_percent(unsigned int channel)
{
	uint64_t x = rng_state;

	if (!x)
		x = (fault.seed ^ (0x9e3779b97f4a7c15ULL * (channel + 1))) | 1;
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	rng_state = x;
	return (unsigned int)((x * 0x2545f4914f6cdd1dULL) >> 33) % 100;
}

/* ---- rules ------------------------------------------------------------- */

static int parse_ops(const char *s, unsigned int *ops, char *why, size_t wlen)
{
	char buf[128], *save, *w;
	unsigned int i;

	if (!strcmp(s, "all")) {
		*ops = ALL_OPS;
		return 0;
	}
	if (strlen(s) >= sizeof(buf)) {
		snprintf(why, wlen, "operations '%.20s...' too long", s);
		return -EINVAL;
	}
	snprintf(buf, sizeof(buf), "%s", s);
	*ops = 0;
	for (w = strtok_r(buf, ",", &save); w; w = strtok_r(NULL, ",", &save)) {
		for (i = 0; i < DMU_NR_OPS; i++)
			if (!strcmp(w, op_names[i]))
				break;
		if (i == DMU_NR_OPS) {
			snprintf(why, wlen, "unknown operation '%s'", w);
			return -EINVAL;
		}
		*ops |= 1U << i;
	}
	if (!*ops) {
		snprintf(why, wlen, "no operation in '%s'", s);
		return -EINVAL;
	}
	return 0;
}

/*
 * parse_rule() - a rule from its words (see the top of the file); on
 * failure @why says what is wrong with it.
 */
static int parse_rule(int argc, char **argv, struct rule *r, char *why,
		      size_t wlen)
{
	int i;

	memset(r, 0, sizeof(*r));
	r->percent = 100;
	if (argc < 3) {
		snprintf(why, wlen, "a rule is <error|delay|corrupt> <ops> <range> [<n>ms] [<p>%%]");
		return -EINVAL;
	}
	for (i = 0; i < 3; i++)
		if (!strcmp(argv[0], kind_names[i]))
			break;
	if (i == 3) {
		snprintf(why, wlen, "unknown rule '%s' (error, delay, corrupt)", argv[0]);
		return -EINVAL;
	}
	r->kind = i;
	if (parse_ops(argv[1], &r->ops, why, wlen))
		return -EINVAL;
	if (r->kind == K_CORRUPT && r->ops & ~((1U << DMU_OP_READ) | (1U << DMU_OP_WRITE))) {
		snprintf(why, wlen, "corrupt applies to read and write only");
		return -EINVAL;
	}
	if (!strcmp(argv[2], "all")) {
		r->all = true;
	} else {
		char buf[64], *plus;

		if (strlen(argv[2]) >= sizeof(buf)) {
			snprintf(why, wlen, "range '%.20s...' too long", argv[2]);
			return -EINVAL;
		}
		snprintf(buf, sizeof(buf), "%s", argv[2]);
		plus = strchr(buf, '+');
		if (!plus) {
			snprintf(why, wlen, "range '%s' is not <offset>+<length> or all", argv[2]);
			return -EINVAL;
		}
		*plus = '\0';
		if (ex_parse_size(buf, &r->off) || ex_parse_size(plus + 1, &r->len)) {
			snprintf(why, wlen, "range '%s': not sizes", argv[2]);
			return -EINVAL;
		}
		if (!r->len || ex_check_range(r->off, r->len, fault.size, fault.block_size)) {
			snprintf(why, wlen, "range '%s' is not whole blocks of %u bytes within the %" PRIu64 "-byte device",
				 argv[2], fault.block_size, fault.size);
			return -ERANGE;
		}
		/* "all" operations in a range: those that have one. */
		if (!strcmp(argv[1], "all")) {
			r->ops &= ~(1U << DMU_OP_FLUSH);
		} else if (r->ops & (1U << DMU_OP_FLUSH)) {
			snprintf(why, wlen, "a flush has no range: flush rules need 'all'");
			return -EINVAL;
		}
	}
	for (i = 3; i < argc; i++) {
		const char *w = argv[i];
		size_t n = strlen(w);
		unsigned long v;
		char *end;

		errno = 0;
		v = strtoul(w, &end, 10);
		if (end == w || errno) {
			snprintf(why, wlen, "'%s' is not <n>ms or <p>%%", w);
			return -EINVAL;
		}
		if (n > 2 && !strcmp(end, "ms") && r->kind == K_DELAY && !r->delay_ms &&
		    v >= 1 && v <= MAX_DELAY_MS) {
			r->delay_ms = v;
		} else if (!strcmp(end, "%") && v >= 1 && v <= 100) {
			r->percent = v;
		} else {
			snprintf(why, wlen, "'%s' is not %s<p>%% (1 to 100)", w,
				 r->kind == K_DELAY ? "<n>ms (1 to 60000) or " : "");
			return -EINVAL;
		}
	}
	if (r->kind == K_DELAY && !r->delay_ms) {
		snprintf(why, wlen, "a delay rule needs <n>ms");
		return -EINVAL;
	}
	return 0;
}

static void print_rule(FILE *out, const struct rule *r)
{
	unsigned int i;
	bool first = true;

	fprintf(out, "rule %u %s ", r->id, kind_names[r->kind]);
	if (r->ops == ALL_OPS ||
	    (!r->all && r->ops == (ALL_OPS & ~(1U << DMU_OP_FLUSH)))) {
		fputs("all", out);
	} else {
		for (i = 0; i < DMU_NR_OPS; i++) {
			if (r->ops & (1U << i)) {
				fprintf(out, "%s%s", first ? "" : ",", op_names[i]);
				first = false;
			}
		}
	}
	if (r->all)
		fputs(" all", out);
	else
		fprintf(out, " %" PRIu64 "+%" PRIu64, r->off, r->len);
	if (r->kind == K_DELAY)
		fprintf(out, " %ums", r->delay_ms);
	fprintf(out, " %u%% hits %" PRIu64 "\n", r->percent,
		__atomic_load_n(&r->hits, __ATOMIC_RELAXED));
}

static int cmp_range(const void *a, const void *b)
{
	const struct range *x = a, *y = b;

	return x->off < y->off ? -1 : x->off > y->off;
}

/* The union of the rules' ranges, sorted; under rules_lock. */
static unsigned int rule_ranges(struct range *out)
{
	struct range tmp[MAX_RULES];
	unsigned int i, n = 0, m = 0;

	for (i = 0; i < fault.nr_rules; i++) {
		if (fault.rules[i].all) {
			out[0] = (struct range){ 0, fault.size };
			return 1;
		}
		tmp[n++] = (struct range){ fault.rules[i].off, fault.rules[i].len };
	}
	qsort(tmp, n, sizeof(tmp[0]), cmp_range);
	for (i = 0; i < n; i++) {
		if (m && tmp[i].off <= out[m - 1].off + out[m - 1].len) {
			uint64_t end = tmp[i].off + tmp[i].len;

			if (end > out[m - 1].off + out[m - 1].len)
				out[m - 1].len = end - out[m - 1].off;
		} else {
			out[m++] = tmp[i];
		}
	}
	return m;
}

/*
 * Moves the claims from what they were to the union of the rules' ranges:
 * the new ranges claimed first, then what is no longer wanted released,
 * so that no range a rule keeps is ever unclaimed. Under change_mutex.
 */
static int sync_claims(char *why, size_t wlen)
{
	struct range want[MAX_RULES];
	unsigned int n, i, j;
	int rc;

	pthread_rwlock_rdlock(&fault.rules_lock);
	n = rule_ranges(want);
	pthread_rwlock_unlock(&fault.rules_lock);
	for (i = 0; i < n; i++) {
		rc = dmu_claim(fault.chan_fd, want[i].off, want[i].len);
		if (rc < 0) {
			snprintf(why, wlen, "claim %" PRIu64 "+%" PRIu64 ": %s",
				 want[i].off, want[i].len, strerror(-rc));
			/* As for a failed release, below. */
			fault.claimed[0] = (struct range){ 0, fault.size };
			fault.nr_claimed = 1;
			return rc;
		}
	}
	/* Each old range, less the wanted ones, both sorted. */
	for (i = 0; i < fault.nr_claimed; i++) {
		uint64_t off = fault.claimed[i].off;
		uint64_t end = off + fault.claimed[i].len;

		for (j = 0; j < n && off < end; j++) {
			uint64_t woff = want[j].off, wend = woff + want[j].len;

			if (wend <= off || woff >= end)
				continue;
			if (woff > off) {
				rc = dmu_release(fault.chan_fd, off, woff - off);
				if (rc < 0)
					goto release_failed;
			}
			off = wend;
		}
		if (off < end) {
			rc = dmu_release(fault.chan_fd, off, end - off);
			if (rc < 0)
				goto release_failed;
		}
	}
	memcpy(fault.claimed, want, n * sizeof(want[0]));
	fault.nr_claimed = n;
	return 0;
release_failed:
	snprintf(why, wlen, "release: %s", strerror(-rc));
	/*
	 * What is claimed is now somewhere between the old and the new:
	 * the next change releases all the rules do not want.
	 */
	fault.claimed[0] = (struct range){ 0, fault.size };
	fault.nr_claimed = 1;
	return rc;
}

static int add_rule(int argc, char **argv, char *why, size_t wlen,
		    unsigned int *id)
{
	struct rule r;
	int rc;

	rc = parse_rule(argc, argv, &r, why, wlen);
	if (rc)
		return rc;
	pthread_mutex_lock(&fault.change_mutex);
	pthread_rwlock_wrlock(&fault.rules_lock);
	if (fault.nr_rules == MAX_RULES) {
		pthread_rwlock_unlock(&fault.rules_lock);
		pthread_mutex_unlock(&fault.change_mutex);
		snprintf(why, wlen, "already %d rules", MAX_RULES);
		return -E2BIG;
	}
	r.id = fault.next_id++;
	fault.rules[fault.nr_rules++] = r;
	pthread_rwlock_unlock(&fault.rules_lock);
	rc = sync_claims(why, wlen);
	if (rc) {
		/* Taken out again: a rule is either in force or not there. */
		pthread_rwlock_wrlock(&fault.rules_lock);
		fault.nr_rules--;
		pthread_rwlock_unlock(&fault.rules_lock);
	}
	pthread_mutex_unlock(&fault.change_mutex);
	*id = r.id;
	return rc;
}

/* Deletes rule @id, or every rule for 0. */
static int del_rules(unsigned int id, char *why, size_t wlen)
{
	struct rule old[MAX_RULES];
	unsigned int i, kept = 0, nr_old;
	bool found = !id;
	int rc;

	pthread_mutex_lock(&fault.change_mutex);
	pthread_rwlock_wrlock(&fault.rules_lock);
	nr_old = fault.nr_rules;
	memcpy(old, fault.rules, sizeof(old));
	for (i = 0; i < fault.nr_rules; i++) {
		if (id && fault.rules[i].id != id)
			fault.rules[kept++] = fault.rules[i];
		else
			found = true;
	}
	fault.nr_rules = kept;
	pthread_rwlock_unlock(&fault.rules_lock);
	rc = found ? sync_claims(why, wlen) : -ENOENT;
	if (rc && found) {
		/* Put back: a rule is either in force or not there. */
		pthread_rwlock_wrlock(&fault.rules_lock);
		memcpy(fault.rules, old, sizeof(old));
		fault.nr_rules = nr_old;
		pthread_rwlock_unlock(&fault.rules_lock);
	}
	pthread_mutex_unlock(&fault.change_mutex);
	if (!found)
		snprintf(why, wlen, "no rule %u", id);
	return rc;
}

/* ---- serving ----------------------------------------------------------- */

/* Flips the first byte of each sector of [@off, @off + @len) in @buf. */
static void corrupt(char *buf, uint64_t buf_off, uint64_t off, uint64_t len)
{
	uint64_t s;

	for (s = off; s < off + len; s += SECTOR_SIZE)
		buf[s - buf_off] ^= 0xff;
}

static int fault_serve(void *ctx, struct dmu_req *r)
{
	unsigned int i, op = r->type, delay_ms = 0;
	uint64_t c_off = 0, c_len = 0;
	bool error = false, corrupting = false;
	struct timespec ts;
	int rc;

	(void)ctx;
	pthread_rwlock_rdlock(&fault.rules_lock);
	for (i = 0; i < fault.nr_rules && !error && !corrupting; i++) {
		struct rule *rule = &fault.rules[i];

		if (!(rule->ops & (1U << op)))
			continue;
		if (!rule->all && (op == DMU_OP_FLUSH ||
				   r->offset >= rule->off + rule->len ||
				   r->offset + r->len <= rule->off))
			continue;
		if (rule->percent < 100 && rng_percent(r->channel) >= rule->percent)
			continue;
		__atomic_fetch_add(&rule->hits, 1, __ATOMIC_RELAXED);
		switch (rule->kind) {
		case K_DELAY:
			delay_ms += rule->delay_ms;
			break;
		case K_ERROR:
			error = true;
			break;
		case K_CORRUPT:
			corrupting = true;
			c_off = rule->all ? r->offset :
				(r->offset > rule->off ? r->offset : rule->off);
			c_len = (rule->all ? r->offset + r->len :
				 (r->offset + r->len < rule->off + rule->len ?
				  r->offset + r->len : rule->off + rule->len)) - c_off;
			break;
		}
	}
	pthread_rwlock_unlock(&fault.rules_lock);

	/* Sleeps on this channel's thread: other channels go on. */
	if (delay_ms) {
		ts.tv_sec = delay_ms / 1000;
		ts.tv_nsec = (long)(delay_ms % 1000) * 1000000;
		while (nanosleep(&ts, &ts) && errno == EINTR && !ex_stop)
			;
	}
	if (error)
		return -EIO;
	if (!corrupting)
		return op == DMU_OP_FLUSH ? 0 : DMU_REMAP;

	/* The data through the daemon, changed on its way. */
	if (op == DMU_OP_READ) {
		rc = ex_pread(fault.backing_fd, r->data, r->len, fault.backing_off + r->offset);
		if (!rc)
			corrupt(r->data, r->offset, c_off, c_len);
		return rc;
	}
	corrupt(r->data, r->offset, c_off, c_len);
	rc = ex_pwrite(fault.backing_fd, r->data, r->len, fault.backing_off + r->offset);
	if (!rc && (r->flags & DM_USER_REQ_MAP_FLAG_FUA) && fdatasync(fault.backing_fd))
		rc = -errno;
	return rc;
}

/*
 * The new sectors of a bigger target come claimed: released again unless
 * a rule over all of the device wants them.
 */
static void fault_reload(void *ctx, const struct dmu_info *info)
{
	uint64_t size = info->size * SECTOR_SIZE;
	char why[256] = "";

	if (!ex_reload_same_backing(ctx, info))
		return;
	pthread_mutex_lock(&fault.change_mutex);
	if (size < fault.size)
		ex_report(0, "the target shrank to %" PRIu64 " bytes: rules past it no longer match",
			  size);
	pthread_rwlock_wrlock(&fault.rules_lock);
	fault.size = size;
	pthread_rwlock_unlock(&fault.rules_lock);
	fault.claimed[0] = (struct range){ 0, size };
	fault.nr_claimed = 1;
	if (sync_claims(why, sizeof(why)))
		ex_report(0, "after a reload: %s", why);
	pthread_mutex_unlock(&fault.change_mutex);
}

static const struct dmu_ops fault_ops = {
	.read = fault_serve,
	.write = fault_serve,
	.flush = fault_serve,
	.discard = fault_serve,
	.write_zeroes = fault_serve,
	.secure_erase = fault_serve,
	.reload = fault_reload,
};

/* ---- control ----------------------------------------------------------- */

static void fault_ctl(void *ctx, int argc, char **argv, FILE *out)
{
	char why[256] = "";
	unsigned int id, i;
	unsigned long v;
	char *end;

	(void)ctx;
	if (!strcmp(argv[0], "add")) {
		if (add_rule(argc - 1, argv + 1, why, sizeof(why), &id))
			ex_ctl_error(out, "%s", why);
		else
			fprintf(out, "ok rule %u\n", id);
	} else if (!strcmp(argv[0], "del") && argc == 2) {
		errno = 0;
		v = strtoul(argv[1], &end, 10);
		if (errno || *end || !v || v > UINT32_MAX)
			ex_ctl_error(out, "'%s' is not a rule id", argv[1]);
		else if (del_rules(v, why, sizeof(why)))
			ex_ctl_error(out, "%s", why);
		else
			fprintf(out, "ok\n");
	} else if (!strcmp(argv[0], "clear") && argc == 1) {
		if (del_rules(0, why, sizeof(why)))
			ex_ctl_error(out, "%s", why);
		else
			fprintf(out, "ok\n");
	} else if (!strcmp(argv[0], "list") && argc == 1) {
		pthread_rwlock_rdlock(&fault.rules_lock);
		for (i = 0; i < fault.nr_rules; i++)
			print_rule(out, &fault.rules[i]);
		pthread_rwlock_unlock(&fault.rules_lock);
		pthread_mutex_lock(&fault.change_mutex);
		for (i = 0; i < fault.nr_claimed; i++)
			fprintf(out, "claimed %" PRIu64 "+%" PRIu64 "\n",
				fault.claimed[i].off, fault.claimed[i].len);
		pthread_mutex_unlock(&fault.change_mutex);
		fprintf(out, "ok\n");
	} else {
		ex_ctl_error(out, "unknown command '%s' or wrong arguments (add <rule>, del <id>, clear, list)",
			     argv[0]);
	}
}

/* ---- command line ------------------------------------------------------ */

static void usage(FILE *f)
{
	fprintf(f,
"Usage: %s serve [--rule \"<rule>\"]... [options] <name>\n"
"       %s ctl <socket> add <rule> | del <id> | clear | list\n"
"\n"
"serve: pass the target's I/O to its backing device, failing, delaying or\n"
"corrupting what the rules say. Only the rules' ranges are claimed; the\n"
"rest goes straight to the backing device.\n"
"\n"
"A rule: <error|delay|corrupt> <ops> <range> [<n>ms] [<p>%%]\n"
"  ops     read, write, flush, discard, write_zeroes, secure_erase joined\n"
"          with commas, or all (with a range: all but flush; corrupt: read\n"
"          and write only)\n"
"  range   <offset>+<length> in bytes (K, M, G, T; s for sectors), whole\n"
"          blocks of the target, or all (needed for flush)\n"
"  <n>ms   how long a delay rule holds a request (1 to 60000)\n"
"  <p>%%    the share of the matching requests hit (default 100%%)\n"
"error fails a request with EIO; delay holds it (on its channel's thread),\n"
"then lets later rules decide; corrupt flips the first byte of each\n"
"512-byte sector in the range, of the data read or of the data written.\n"
"\n"
"  -r, --rule <rule>       a rule in force from the start (repeatable)\n"
"  -s, --seed <n>          seed of the draws of <p>%% rules (default 1)\n"
"  -S, --control <path>    answer \"%s ctl\" commands on this Unix socket\n"
"  -t, --threads <n>       channels, one thread each (default 1)\n"
"  -p, --pid-file <file>   write the pid here once every channel is open\n"
"  -h, --help              show this help\n"
"\n"
"ctl: send a command to a running daemon's control socket.\n"
"  add <rule>   put a rule in force: \"ok rule <id>\" once its range is\n"
"               claimed\n"
"  del <id>     take a rule away, releasing what no other rule needs\n"
"  clear        take every rule away\n"
"  list         the rules with their hits, and the claimed ranges\n"
"\n"
"Exit status: 0 on success (serve: the target was removed or a signal\n"
"came), 1 on failure, 2 for a bad command line.\n",
		ex_prog, ex_prog, ex_prog);
}

static char *start_rules[MAX_RULES];
static int nr_start_rules;

static int setup(struct ex_daemon *d)
{
	char why[256] = "";
	int rc, i;

	rc = ex_open_target(d, true, "nowhere to pass the I/O on to");
	if (rc)
		return rc;
	fault.chan_fd = d->chan_fd;
	fault.size = d->info.size * SECTOR_SIZE;
	fault.block_size = d->info.block_size;
	fault.backing_off = d->info.backing_offset * SECTOR_SIZE;
	fault.backing_fd = ex_open_backing(&d->info, O_RDWR | O_DIRECT);
	if (fault.backing_fd < 0) {
		ex_report(fault.backing_fd, "open the backing device %s of %s",
			  d->info.backing, d->name);
		return fault.backing_fd;
	}
	/* Every rule checked before the claims change. */
	for (i = 0; i < nr_start_rules; i++) {
		char buf[256], *argv[EX_MAX_WORDS], *save, *w;
		int argc = 0;

		if (strlen(start_rules[i]) >= sizeof(buf)) {
			ex_report(0, "--rule \"%.20s...\": too long", start_rules[i]);
			return -EINVAL;
		}
		snprintf(buf, sizeof(buf), "%s", start_rules[i]);
		for (w = strtok_r(buf, " \t", &save); w;
		     w = strtok_r(NULL, " \t", &save)) {
			if (argc == EX_MAX_WORDS) {
				ex_report(0, "--rule \"%s\": more than %d words",
					  start_rules[i], EX_MAX_WORDS);
				return -EINVAL;
			}
			argv[argc++] = w;
		}
		rc = parse_rule(argc, argv, &fault.rules[i], why, sizeof(why));
		if (rc) {
			ex_report(0, "--rule \"%s\": %s", start_rules[i], why);
			return rc;
		}
		fault.rules[i].id = fault.next_id++;
	}
	fault.nr_rules = nr_start_rules;
	/* Nothing claimed but what the rules name, whatever the table said. */
	fault.claimed[0] = (struct range){ 0, fault.size };
	fault.nr_claimed = 1;
	rc = sync_claims(why, sizeof(why));
	if (rc)
		ex_report(0, "%s: %s", d->name, why);
	return rc;
}

static int cmd_serve(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "rule", required_argument, NULL, 'r' },
		{ "seed", required_argument, NULL, 's' },
		EX_LONGOPTS,
		{ NULL, 0, NULL, 0 },
	};
	struct ex_daemon d;
	char *end;
	int c;

	ex_daemon_init(&d);
	d.ops = &fault_ops;
	d.setup = setup;
	d.ctl = fault_ctl;
	fault.seed = 1;
	while ((c = getopt_long(argc, argv, "r:s:" EX_SHORTOPTS, longopts,
				NULL)) != -1) {
		if (ex_daemon_opt(&d, c, optarg))
			continue;
		switch (c) {
		case 'r':
			if (nr_start_rules == MAX_RULES)
				ex_bad_usage("more than %d --rule", MAX_RULES);
			start_rules[nr_start_rules++] = optarg;
			break;
		case 's':
			errno = 0;
			fault.seed = strtoull(optarg, &end, 0);
			if (errno || *end || end == optarg)
				ex_bad_usage("--seed: '%s' is not a number", optarg);
			break;
		}
	}
	return ex_daemon_run(&d, argc, argv);
}

int main(int argc, char **argv)
{
	return ex_main(argc, argv, "dmu-fault", cmd_serve, usage);
}
