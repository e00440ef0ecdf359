// SPDX-License-Identifier: GPL-2.0
/*
 * The commands that show targets: list, info and stats, as text for
 * people and as JSON (json-c) for scripts.
 */
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <linux/dm-ioctl.h>
#include <json-c/json.h>

#include "tool.h"

/* ---- What list, info and stats share --------------------------------- */

/*
 * GET_INFO on a channel of its own: 0 or a negative errno. The channel
 * this opens is not counted among the daemons' in info->channels.
 */
static int channel_info(const char *name, struct dmu_info *info)
{
	char what[PATH_MAX + 32];
	int fd, rc;

	fd = open_channel(name, what, sizeof(what));
	if (fd < 0)
		return fd;
	rc = dmu_get_info(fd, info);
	close(fd);
	if (!rc && info->channels)
		info->channels--;
	return rc;
}

static const char *const op_names[DMU_NR_OPS] = {
	[DMU_OP_READ] = "read",
	[DMU_OP_WRITE] = "write",
	[DMU_OP_FLUSH] = "flush",
	[DMU_OP_DISCARD] = "discard",
	[DMU_OP_WRITE_ZEROES] = "write_zeroes",
	[DMU_OP_SECURE_ERASE] = "secure_erase",
};

static const char *daemon_state_name(uint32_t state)
{
	switch (state) {
	case DM_USER_STATE_ATTACHED:
		return "attached";
	case DM_USER_STATE_WAITING:
		return "waiting";
	case DM_USER_STATE_FAILING:
		return "failing";
	default:
		return "unknown";
	}
}

/* Prints the JSON text of @obj and frees it; 0, or 1 on an error. */
static int put_json(struct json_object *obj)
{
	const char *text;
	int rc = 1;

	if (!obj) {
		report(ENOMEM, "build the JSON output");
		return 1;
	}
	text = json_object_to_json_string_ext(obj, JSON_C_TO_STRING_PRETTY |
					      JSON_C_TO_STRING_NOSLASHESCAPE);
	if (text) {
		puts(text);
		rc = finish_stdout();
	} else {
		report(ENOMEM, "format the JSON output");
	}
	json_object_put(obj);
	return rc;
}

/* json_object_object_add() that notes a failure in *@ok. */
static void json_add(struct json_object *o, const char *key,
		     struct json_object *v, bool *ok)
{
	if (!v || json_object_object_add(o, key, v)) {
		json_object_put(v);
		*ok = false;
	}
}

/*
 * The options of list, info and stats: --json, and --help, which prints
 * @usage and exits. Whether --json was given; optind is the first operand.
 */
static bool json_option(int argc, char **argv, void (*usage)(FILE *))
{
	static const struct option longopts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	bool json = false;
	int c;

	usage_fn = usage;
	while ((c = getopt_long(argc, argv, ":jh", longopts, NULL)) != -1) {
		switch (c) {
		case 'j':
			json = true;
			break;
		case 'h':
			usage(stdout);
			exit(0);
		default:
			bad_option(c, argv);
		}
	}
	return json;
}

/* ---- list ------------------------------------------------------------- */

void list_usage(FILE *f)
{
	fprintf(f,
"Usage: %s list [--json]\n"
"The user targets of every live device, a line each, as columns: DEVICE\n"
"(device-mapper name), TARGET (its name under /dev/dm-user), START and SIZE\n"
"(in the device), BLOCK (block size), DAEMON (attached, waiting or\n"
"failing), CHANNELS (the daemons' open channels) and QUEUED (requests\n"
"waiting to be read). A target whose node cannot be opened shows \"-\" in\n"
"the last four.\n"
"  -j, --json   a JSON array of objects instead: device, target, start and\n"
"               length (sectors), and block_size, daemon, channels and\n"
"               queued, or error (why the node could not be asked)\n"
"  -h, --help   show this help\n", prog);
}

/* What list shows of a target: its table entry and what GET_INFO says. */
struct list_row {
	char dev[DM_NAME_LEN];
	char name[DM_USER_NAME_MAX + 1];
	uint64_t start, length;
	int err;			/* 0: info holds GET_INFO's reply */
	struct dmu_info info;
};

struct list_rows {
	struct list_row *row;
	size_t nr, cap;
};

static int collect_target(void *arg, const struct dmu_target_desc *t)
{
	struct list_rows *rows = arg;
	struct list_row *r;

	if (rows->nr == rows->cap) {
		size_t cap = rows->cap ? 2 * rows->cap : 16;
		struct list_row *n = realloc(rows->row, cap * sizeof(*n));

		if (!n)
			return -ENOMEM;
		rows->row = n;
		rows->cap = cap;
	}
	r = &rows->row[rows->nr++];
	snprintf(r->dev, sizeof(r->dev), "%s", t->dev);
	snprintf(r->name, sizeof(r->name), "%s", t->name);
	r->start = t->start;
	r->length = t->length;
	return 0;
}

static struct json_object *list_json(const struct list_rows *rows)
{
	struct json_object *arr = json_object_new_array();
	bool ok = arr != NULL;
	size_t i;

	for (i = 0; ok && i < rows->nr; i++) {
		const struct list_row *r = &rows->row[i];
		struct json_object *o = json_object_new_object();
		char ebuf[128];

		if (!o || json_object_array_add(arr, o)) {
			json_object_put(o);
			ok = false;
			break;
		}
		json_add(o, "device", json_object_new_string(r->dev), &ok);
		json_add(o, "target", json_object_new_string(r->name), &ok);
		json_add(o, "start", json_object_new_uint64(r->start), &ok);
		json_add(o, "length", json_object_new_uint64(r->length), &ok);
		if (r->err) {
			json_add(o, "error", json_object_new_string(
				 strerror_r(-r->err, ebuf, sizeof(ebuf))), &ok);
			continue;
		}
		json_add(o, "block_size",
			 json_object_new_uint64(r->info.block_size), &ok);
		json_add(o, "daemon", json_object_new_string(
			 daemon_state_name(r->info.daemon_state)), &ok);
		json_add(o, "channels",
			 json_object_new_uint64(r->info.channels), &ok);
		json_add(o, "queued",
			 json_object_new_uint64(r->info.queued), &ok);
	}
	if (!ok) {
		json_object_put(arr);
		return NULL;
	}
	return arr;
}

static void list_text(const struct list_rows *rows)
{
	int wdev = (int)strlen("DEVICE"), wname = (int)strlen("TARGET");
	char size[32], num[4][24];
	size_t i;

	for (i = 0; i < rows->nr; i++) {
		int l = (int)strlen(rows->row[i].dev);

		wdev = l > wdev ? l : wdev;
		l = (int)strlen(rows->row[i].name);
		wname = l > wname ? l : wname;
	}
	printf("%-*s  %-*s  %12s  %10s  %5s  %-8s  %8s  %6s\n", wdev, "DEVICE",
	       wname, "TARGET", "START", "SIZE", "BLOCK", "DAEMON", "CHANNELS",
	       "QUEUED");
	for (i = 0; i < rows->nr; i++) {
		const struct list_row *r = &rows->row[i];

		snprintf(num[0], sizeof(num[0]), "%" PRIu32, r->info.block_size);
		snprintf(num[1], sizeof(num[1]), "%" PRIu32, r->info.channels);
		snprintf(num[2], sizeof(num[2]), "%" PRIu32, r->info.queued);
		snprintf(num[3], sizeof(num[3]), "%" PRIu64, r->start);
		printf("%-*s  %-*s  %12s  %10s  %5s  %-8s  %8s  %6s\n", wdev,
		       r->dev, wname, r->name, num[3],
		       human_bytes(r->length * SECTOR_SIZE, size, sizeof(size)),
		       r->err ? "-" : num[0],
		       r->err ? "-" : daemon_state_name(r->info.daemon_state),
		       r->err ? "-" : num[1], r->err ? "-" : num[2]);
	}
}

int cmd_list(int argc, char **argv)
{
	bool json;
	struct list_rows rows = { 0 };
	int rc;
	size_t i;

	json = json_option(argc, argv, list_usage);
	if (optind != argc)
		bad_usage("unexpected argument '%s'", argv[optind]);
	rc = dmu_dev_list(collect_target, &rows);
	if (rc) {
		report(rc, "list devices");
		free(rows.row);
		return 1;
	}
	for (i = 0; i < rows.nr; i++)
		rows.row[i].err = channel_info(rows.row[i].name,
					       &rows.row[i].info);
	if (json) {
		rc = put_json(list_json(&rows));
	} else {
		list_text(&rows);
		rc = finish_stdout();
	}
	free(rows.row);
	return rc;
}

/* ---- info ------------------------------------------------------------- */

void info_usage(FILE *f)
{
	fprintf(f,
"Usage: %s info [--json] <name-or-path>\n"
"What the target reports, for people: its size and block size, the\n"
"operations it serves, the daemon's state in words and its channels, the\n"
"requests queued, held back and in flight, what happened since it was\n"
"loaded, its backing device, claimed and mapped ranges, its settings with\n"
"(default) after those a table without the word would have, and a table of\n"
"requests, bytes and errors per operation.\n"
"  -j, --json   a JSON object instead, for scripts: version, features, name,\n"
"               size (sectors), block_size, max_io (bytes), ops (names),\n"
"               channels (the daemons', this command's own not counted),\n"
"               queued, backlog, inflight, daemon, requeued, timeouts,\n"
"               bad_answers, remapped, reloads; with a backing device\n"
"               backing (major:minor), backing_offset (sectors),\n"
"               claim_ranges, map_ranges, passed and notified; stats\n"
"               (per operation: requests, bytes, errors) and settings\n"
"               (max_queued, no_daemon_timeout (seconds, or \"forever\"),\n"
"               request_timeout, notify_writes)\n"
"  -h, --help   show this help\n", prog);
}

/* The request types of GET_INFO's ops mask, by DM_USER_REQ_MAP_* number. */
static const char *const req_type_names[] = {
	[DM_USER_REQ_MAP_READ] = "read",
	[DM_USER_REQ_MAP_WRITE] = "write",
	[DM_USER_REQ_MAP_FLUSH] = "flush",
	[DM_USER_REQ_MAP_DISCARD] = "discard",
	[DM_USER_REQ_MAP_SECURE_ERASE] = "secure_erase",
	[DM_USER_REQ_MAP_WRITE_SAME] = "write_same",
	[DM_USER_REQ_MAP_WRITE_ZEROES] = "write_zeroes",
	[DM_USER_REQ_MAP_ZONE_OPEN] = "zone_open",
	[DM_USER_REQ_MAP_ZONE_CLOSE] = "zone_close",
	[DM_USER_REQ_MAP_ZONE_FINISH] = "zone_finish",
	[DM_USER_REQ_MAP_ZONE_APPEND] = "zone_append",
	[DM_USER_REQ_MAP_ZONE_RESET] = "zone_reset",
	[DM_USER_REQ_MAP_ZONE_RESET_ALL] = "zone_reset_all",
};

#define NR_REQ_TYPES (sizeof(req_type_names) / sizeof(req_type_names[0]))

/*
 * What a table without the word gets: the admin guide's defaults, and
 * no_daemon_timeout from the module parameter (-1: for ever). *@known is
 * false where the parameter cannot be read.
 */
static const struct dmu_params *default_params(bool *nodaemon_known)
{
	static struct dmu_params d = { .max_queued = 1024 };
	char buf[32];
	long v;
	FILE *f;

	*nodaemon_known = false;
	f = fopen("/sys/module/dm_user/parameters/no_daemon_timeout", "re");
	if (f) {
		if (fgets(buf, sizeof(buf), f)) {
			v = strtol(buf, NULL, 10);
			d.no_daemon_timeout = v < 0 ? DM_USER_TIMEOUT_FOREVER :
						      (uint32_t)v;
			*nodaemon_known = true;
		}
		fclose(f);
	}
	return &d;
}

static const char *seconds_text(uint32_t s, bool zero_off, char *buf,
				size_t len)
{
	if (s == DM_USER_TIMEOUT_FOREVER)
		snprintf(buf, len, "forever");
	else if (!s && zero_off)
		snprintf(buf, len, "off");
	else
		snprintf(buf, len, "%" PRIu32 " s", s);
	return buf;
}

static void info_text(const struct dmu_info *in, const struct dmu_params *pa,
		      int params_err)
{
	char b1[32], b2[32], b3[32];
	bool known;
	const struct dmu_params *d = default_params(&known);
	unsigned int t;
	int i;

	printf("%s: user target, control interface version %" PRIu32 "\n",
	       in->name, in->version);
	printf("  size         %s (%" PRIu64 " sectors), block size %s, at most %s a request\n",
	       human_bytes(in->size * SECTOR_SIZE, b1, sizeof(b1)), in->size,
	       human_bytes(in->block_size, b2, sizeof(b2)),
	       human_bytes(in->max_io, b3, sizeof(b3)));
	printf("  operations  ");
	for (t = 0; t < NR_REQ_TYPES; t++)
		if (in->ops & (1ULL << t) && req_type_names[t])
			printf(" %s", req_type_names[t]);
	printf("\n  daemon       %s, %" PRIu32 " channel%s\n",
	       daemon_state_name(in->daemon_state), in->channels,
	       in->channels == 1 ? "" : "s");
	printf("  requests     %" PRIu32 " queued, %" PRIu32 " held back by max_queued, %" PRIu32 " in flight\n",
	       in->queued, in->backlog, in->inflight);
	printf("  since load   %" PRIu64 " requeued, %" PRIu64 " timed out, %" PRIu64 " bad answers, %" PRIu64 " remapped, %" PRIu64 " reloads\n",
	       in->requeued, in->timeouts, in->bad_answers, in->remapped,
	       in->reloads);
	if (in->backing[0])
		printf("  backing      %s from sector %" PRIu64 ", %" PRIu32 " claimed range%s, %" PRIu32 " mapped, %" PRIu64 " passed straight, %" PRIu64 " notified\n",
		       in->backing, in->backing_offset, in->claim_ranges,
		       in->claim_ranges == 1 ? "" : "s", in->map_ranges,
		       in->passed, in->notified);
	if (params_err) {
		printf("  settings     (not read: %s)\n", strerror(-params_err));
	} else {
		printf("  settings     max_queued %" PRIu32 "%s, no_daemon_timeout %s%s, request_timeout %s%s",
		       pa->max_queued,
		       pa->max_queued == d->max_queued ? " (default)" : "",
		       seconds_text(pa->no_daemon_timeout, false, b1,
				    sizeof(b1)),
		       known && pa->no_daemon_timeout == d->no_daemon_timeout ?
		       " (default)" : "",
		       seconds_text(pa->request_timeout, true, b2, sizeof(b2)),
		       !pa->request_timeout ? " (default)" : "");
		if (in->backing[0])
			printf(", notify_writes %" PRIu32 "%s", pa->notify_writes,
			       !pa->notify_writes ? " (default)" : "");
		printf("\n");
	}
	printf("  %-13s %12s %12s %8s\n", "", "requests", "bytes", "errors");
	for (i = 0; i < DMU_NR_OPS; i++)
		printf("  %-13s %12" PRIu64 " %12s %8" PRIu64 "\n", op_names[i],
		       in->stats[i].requests,
		       human_bytes(in->stats[i].bytes, b1, sizeof(b1)),
		       in->stats[i].errors);
}

static struct json_object *info_json(const struct dmu_info *in,
				     const struct dmu_params *pa,
				     int params_err)
{
	struct json_object *o = json_object_new_object();
	struct json_object *ops = json_object_new_array();
	struct json_object *stats = json_object_new_object();
	bool ok = o && ops && stats;
	unsigned int t;
	int i;

	if (!ok) {
		json_object_put(o);
		json_object_put(ops);
		json_object_put(stats);
		return NULL;
	}
	json_add(o, "name", json_object_new_string(in->name), &ok);
	json_add(o, "version", json_object_new_uint64(in->version), &ok);
	json_add(o, "features", json_object_new_uint64(in->features), &ok);
	json_add(o, "size", json_object_new_uint64(in->size), &ok);
	json_add(o, "block_size", json_object_new_uint64(in->block_size), &ok);
	json_add(o, "max_io", json_object_new_uint64(in->max_io), &ok);
	for (t = 0; t < NR_REQ_TYPES; t++)
		if (in->ops & (1ULL << t) && req_type_names[t] &&
		    json_object_array_add(ops,
				json_object_new_string(req_type_names[t])))
			ok = false;
	json_add(o, "ops", ops, &ok);
	json_add(o, "channels", json_object_new_uint64(in->channels), &ok);
	json_add(o, "queued", json_object_new_uint64(in->queued), &ok);
	json_add(o, "backlog", json_object_new_uint64(in->backlog), &ok);
	json_add(o, "inflight", json_object_new_uint64(in->inflight), &ok);
	json_add(o, "daemon", json_object_new_string(
		 daemon_state_name(in->daemon_state)), &ok);
	json_add(o, "requeued", json_object_new_uint64(in->requeued), &ok);
	json_add(o, "timeouts", json_object_new_uint64(in->timeouts), &ok);
	json_add(o, "bad_answers", json_object_new_uint64(in->bad_answers),
		 &ok);
	json_add(o, "remapped", json_object_new_uint64(in->remapped), &ok);
	json_add(o, "reloads", json_object_new_uint64(in->reloads), &ok);
	if (in->backing[0]) {
		json_add(o, "backing", json_object_new_string(in->backing), &ok);
		json_add(o, "backing_offset",
			 json_object_new_uint64(in->backing_offset), &ok);
		json_add(o, "claim_ranges",
			 json_object_new_uint64(in->claim_ranges), &ok);
		json_add(o, "map_ranges",
			 json_object_new_uint64(in->map_ranges), &ok);
		json_add(o, "passed", json_object_new_uint64(in->passed), &ok);
		json_add(o, "notified", json_object_new_uint64(in->notified),
			 &ok);
	}
	for (i = 0; i < DMU_NR_OPS; i++) {
		struct json_object *s = json_object_new_object();

		json_add(stats, op_names[i], s, &ok);
		if (!s)
			break;
		json_add(s, "requests",
			 json_object_new_uint64(in->stats[i].requests), &ok);
		json_add(s, "bytes", json_object_new_uint64(in->stats[i].bytes),
			 &ok);
		json_add(s, "errors",
			 json_object_new_uint64(in->stats[i].errors), &ok);
	}
	json_add(o, "stats", stats, &ok);
	if (!params_err) {
		struct json_object *st = json_object_new_object();

		json_add(o, "settings", st, &ok);
		if (st) {
			json_add(st, "max_queued",
				 json_object_new_uint64(pa->max_queued), &ok);
			json_add(st, "no_daemon_timeout",
				 pa->no_daemon_timeout == DM_USER_TIMEOUT_FOREVER ?
				 json_object_new_string("forever") :
				 json_object_new_uint64(pa->no_daemon_timeout),
				 &ok);
			json_add(st, "request_timeout",
				 json_object_new_uint64(pa->request_timeout),
				 &ok);
			json_add(st, "notify_writes",
				 json_object_new_uint64(pa->notify_writes), &ok);
		}
	}
	if (!ok) {
		json_object_put(o);
		return NULL;
	}
	return o;
}

int cmd_info(int argc, char **argv)
{
	bool json;
	struct dmu_params params = { 0 };
	char what[PATH_MAX + 32];
	struct dmu_info info;
	int fd, rc, prc;

	json = json_option(argc, argv, info_usage);
	if (optind != argc - 1)
		bad_usage(optind == argc ? "missing <name-or-path>" :
			  "more than one <name-or-path>");
	fd = open_channel(argv[optind], what, sizeof(what));
	if (fd < 0) {
		report_hint(fd, HINT_NODE, NULL, argv[optind], "open %s", what);
		return 1;
	}
	rc = dmu_get_info(fd, &info);
	prc = rc ? 0 : dmu_get_params(fd, &params);
	close(fd);
	if (rc) {
		report(rc, "info on %s", what);
		return 1;
	}
	/* The channel this command opened is not a daemon's. */
	if (info.channels)
		info.channels--;
	if (json)
		return put_json(info_json(&info, &params, prc));
	info_text(&info, &params, prc);
	return finish_stdout();
}

/* ---- stats ------------------------------------------------------------ */

void stats_usage(FILE *f)
{
	fprintf(f,
"Usage: %s stats [--json] <name-or-path> [<interval> [<count>]]\n"
"Every <interval> seconds (default 1), <count> times (default: until\n"
"interrupted or the target goes), what the target did in that interval,\n"
"per operation, in the manner of iostat:\n"
"  req/s    requests the daemon answered, per second\n"
"  MB/s     their data, in 10^6 bytes per second\n"
"  err/s    requests answered with an error, per second\n"
"  aqu-sz   requests in flight on average, and\n"
"  await    milliseconds a request took on average: both the whole\n"
"           device's, from /sys/block/dm-N/stat as iostat computes them;\n"
"           the block layer counts flush, write_zeroes and secure_erase\n"
"           with writes, so those rows show \"-\"\n"
"A line above them gives the daemon's state, its channels and the requests\n"
"queued and in flight at the end of the interval, and with a backing\n"
"device the bios per second that went straight to it. Counters reset in\n"
"the interval (RESET_COUNTERS) count from their reset.\n"
"  -j, --json   a JSON object a line instead, for scripts: time (seconds\n"
"               since the epoch), elapsed (seconds), target, daemon,\n"
"               channels, queued, inflight, passed_per_second (with a\n"
"               backing device), and ops: per operation requests, bytes,\n"
"               errors (in the interval), requests_per_second,\n"
"               mb_per_second, errors_per_second, queue_depth and\n"
"               await_ms (null where the device's counters lack them)\n"
"  -h, --help   show this help\n", prog);
}

/*
 * The fields of /sys/block/<dev>/stat stats uses, numbered from 1 as in
 * Documentation/block/stat.rst: each count of I/Os with its time in
 * flight (ms). A bio-based device such as dm's counts a flush as a write:
 * its own flush fields stay 0.
 */
enum bstat_field {
	BS_READ_IOS, BS_READ_TICKS, BS_WRITE_IOS, BS_WRITE_TICKS,
	BS_DISCARD_IOS, BS_DISCARD_TICKS, BS_NR
};

static const int bstat_field_no[BS_NR] = { 1, 4, 5, 8, 12, 15 };

/* What one look at a target gives. */
struct stats_sample {
	struct timespec when;
	struct dmu_info info;
	bool have_bstat;
	uint64_t bstat[BS_NR];
};

/* The block-layer counters of each of the library's operations, or -1. */
static const int bstat_ios_of[DMU_NR_OPS] = {
	[DMU_OP_READ] = BS_READ_IOS,
	[DMU_OP_WRITE] = BS_WRITE_IOS,
	[DMU_OP_FLUSH] = -1,
	[DMU_OP_DISCARD] = BS_DISCARD_IOS,
	[DMU_OP_WRITE_ZEROES] = -1,
	[DMU_OP_SECURE_ERASE] = -1,
};

struct find_dev {
	const char *name;
	char dev[DM_NAME_LEN];
};

static int match_target(void *arg, const struct dmu_target_desc *t)
{
	struct find_dev *fd = arg;

	if (strcmp(t->name, fd->name))
		return 0;
	snprintf(fd->dev, sizeof(fd->dev), "%s", t->dev);
	return 1;
}

/*
 * The /sys/block/dm-N/stat file of the device that holds target @name:
 * 0, or a negative errno (listing devices needs CAP_SYS_ADMIN) with @path
 * "". A rename of the device keeps its dm-N.
 */
static int find_block_stat(const char *name, char *path, size_t len)
{
	struct find_dev fd = { .name = name };
	char p[PATH_MAX], dmname[DM_NAME_LEN + 2];
	struct dirent *de;
	DIR *dir;
	FILE *f;
	int rc;

	path[0] = '\0';
	rc = dmu_dev_list(match_target, &fd);
	if (rc != 1)
		return rc < 0 ? rc : -ENODEV;
	dir = opendir("/sys/block");
	if (!dir)
		return -errno;
	while ((de = readdir(dir))) {
		if (strncmp(de->d_name, "dm-", 3))
			continue;
		snprintf(p, sizeof(p), "/sys/block/%s/dm/name", de->d_name);
		f = fopen(p, "re");
		if (!f)
			continue;
		if (fgets(dmname, sizeof(dmname), f)) {
			dmname[strcspn(dmname, "\n")] = '\0';
			if (!strcmp(dmname, fd.dev))
				snprintf(path, len, "/sys/block/%s/stat",
					 de->d_name);
		}
		fclose(f);
		if (path[0])
			break;
	}
	closedir(dir);
	return path[0] ? 0 : -ENODEV;
}

/* The fields of a block device's stat file; false if it cannot be read. */
static bool read_block_stat(const char *path, uint64_t *out)
{
	unsigned long long v[17];
	bool ok;
	int i;
	FILE *f;

	if (!path[0])
		return false;
	f = fopen(path, "re");
	if (!f)
		return false;
	ok = fscanf(f, "%llu %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu",
		    &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &v[6], &v[7],
		    &v[8], &v[9], &v[10], &v[11], &v[12], &v[13], &v[14],
		    &v[15], &v[16]) == 17;
	fclose(f);
	for (i = 0; ok && i < BS_NR; i++)
		out[i] = v[bstat_field_no[i] - 1];
	return ok;
}

/* GET_INFO on @fd and the device's counters: 0 or a negative errno. */
static int take_sample(int fd, const char *bstat, struct stats_sample *s)
{
	int rc;

	clock_gettime(CLOCK_MONOTONIC, &s->when);
	s->have_bstat = read_block_stat(bstat, s->bstat);
	rc = dmu_get_info(fd, &s->info);
	if (rc)
		return rc;
	/* The channel stats holds open is not a daemon's. */
	if (s->info.channels)
		s->info.channels--;
	return 0;
}

/*
 * @b - @a of a counter that only grows but for a reset to 0
 * (RESET_COUNTERS, a new table): after one, what it counted since.
 */
static uint64_t grown(uint64_t a, uint64_t b)
{
	return b >= a ? b - a : b;
}

/* What an operation did between two samples. */
struct op_rates {
	uint64_t requests, bytes, errors;
	double rps, mbps, eps;
	bool have_queue;
	double queue_depth, await_ms;
};

static void op_rates(const struct stats_sample *a, const struct stats_sample *b,
		     int op, double secs, struct op_rates *r)
{
	int ios = bstat_ios_of[op];

	r->requests = grown(a->info.stats[op].requests,
			    b->info.stats[op].requests);
	r->bytes = grown(a->info.stats[op].bytes, b->info.stats[op].bytes);
	r->errors = grown(a->info.stats[op].errors, b->info.stats[op].errors);
	r->rps = r->requests / secs;
	r->mbps = r->bytes / secs / 1e6;
	r->eps = r->errors / secs;
	r->have_queue = ios >= 0 && a->have_bstat && b->have_bstat;
	if (r->have_queue) {
		uint64_t n = b->bstat[ios] - a->bstat[ios];
		/* Printed as 32 bits of milliseconds: they wrap. */
		uint32_t ms = (uint32_t)(b->bstat[ios + 1] - a->bstat[ios + 1]);

		/* Little's law: time spent in flight per time elapsed. */
		r->queue_depth = ms / (secs * 1000);
		r->await_ms = n ? (double)ms / n : 0;
	}
}

static double seconds_between(const struct timespec *a,
			      const struct timespec *b)
{
	return (b->tv_sec - a->tv_sec) + (b->tv_nsec - a->tv_nsec) / 1e9;
}

static void stats_text(const struct stats_sample *a,
		       const struct stats_sample *b, double secs)
{
	char now[16] = "";
	struct tm tm;
	time_t t = time(NULL);
	int op;

	if (localtime_r(&t, &tm))
		strftime(now, sizeof(now), "%H:%M:%S", &tm);
	printf("%s  %s: daemon %s, %" PRIu32 " channel%s, %" PRIu32 " queued, %" PRIu32 " in flight",
	       now, b->info.name, daemon_state_name(b->info.daemon_state),
	       b->info.channels, b->info.channels == 1 ? "" : "s",
	       b->info.queued, b->info.inflight);
	if (b->info.backing[0])
		printf(", %.1f passed/s",
		       grown(a->info.passed, b->info.passed) / secs);
	printf("\n%-13s %10s %9s %8s %8s %8s\n", "operation", "req/s", "MB/s",
	       "err/s", "aqu-sz", "await");
	for (op = 0; op < DMU_NR_OPS; op++) {
		struct op_rates r;
		char q[32] = "-", w[32] = "-";

		op_rates(a, b, op, secs, &r);
		if (r.have_queue) {
			snprintf(q, sizeof(q), "%.2f", r.queue_depth);
			snprintf(w, sizeof(w), "%.2f", r.await_ms);
		}
		printf("%-13s %10.1f %9.2f %8.1f %8s %8s\n", op_names[op], r.rps,
		       r.mbps, r.eps, q, w);
	}
	printf("\n");
}

/* @v, or JSON's null if @have is false. */
static void json_add_double(struct json_object *o, const char *key,
			    bool have, double v, bool *ok)
{
	struct json_object *d = NULL;

	if (have) {
		d = json_object_new_double(v);
		if (!d) {
			*ok = false;
			return;
		}
	}
	/* json-c's null is a NULL object, added as such. */
	if (json_object_object_add(o, key, d)) {
		json_object_put(d);
		*ok = false;
	}
}

static struct json_object *stats_json(const struct stats_sample *a,
				      const struct stats_sample *b,
				      double secs)
{
	struct json_object *o = json_object_new_object();
	struct json_object *ops = json_object_new_object();
	struct timespec wall;
	bool ok = o && ops;
	int op;

	if (!ok) {
		json_object_put(o);
		json_object_put(ops);
		return NULL;
	}
	clock_gettime(CLOCK_REALTIME, &wall);
	json_add_double(o, "time", true, wall.tv_sec + wall.tv_nsec / 1e9, &ok);
	json_add_double(o, "elapsed", true, secs, &ok);
	json_add(o, "target", json_object_new_string(b->info.name), &ok);
	json_add(o, "daemon", json_object_new_string(
		 daemon_state_name(b->info.daemon_state)), &ok);
	json_add(o, "channels", json_object_new_uint64(b->info.channels), &ok);
	json_add(o, "queued", json_object_new_uint64(b->info.queued), &ok);
	json_add(o, "inflight", json_object_new_uint64(b->info.inflight), &ok);
	if (b->info.backing[0])
		json_add_double(o, "passed_per_second", true,
				grown(a->info.passed, b->info.passed) / secs,
				&ok);
	for (op = 0; op < DMU_NR_OPS; op++) {
		struct json_object *s = json_object_new_object();
		struct op_rates r;

		json_add(ops, op_names[op], s, &ok);
		if (!s)
			break;
		op_rates(a, b, op, secs, &r);
		json_add(s, "requests", json_object_new_uint64(r.requests), &ok);
		json_add(s, "bytes", json_object_new_uint64(r.bytes), &ok);
		json_add(s, "errors", json_object_new_uint64(r.errors), &ok);
		json_add_double(s, "requests_per_second", true, r.rps, &ok);
		json_add_double(s, "mb_per_second", true, r.mbps, &ok);
		json_add_double(s, "errors_per_second", true, r.eps, &ok);
		json_add_double(s, "queue_depth", r.have_queue, r.queue_depth,
				&ok);
		json_add_double(s, "await_ms", r.have_queue, r.await_ms, &ok);
	}
	json_add(o, "ops", ops, &ok);
	if (!ok) {
		json_object_put(o);
		return NULL;
	}
	return o;
}

/* One report on stdout: 0, or 1 after saying why it was lost. */
static int put_report(const struct stats_sample *a,
		      const struct stats_sample *b, bool json)
{
	double secs = seconds_between(&a->when, &b->when);
	struct json_object *o;
	const char *text;
	int rc = 1;

	if (!json) {
		stats_text(a, b, secs);
		/* A reader of a pipe sees each report when it is made. */
		return finish_stdout();
	}
	o = stats_json(a, b, secs);
	text = o ? json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN |
					JSON_C_TO_STRING_NOSLASHESCAPE) : NULL;
	if (text) {
		puts(text);
		rc = finish_stdout();
	} else {
		report(ENOMEM, "build the JSON output");
	}
	json_object_put(o);
	return rc;
}

/* Sleeps until @next, then sets it @interval seconds on, not in the past. */
static int wait_interval(struct timespec *next, uint64_t interval)
{
	struct timespec now;
	int rc;

	while ((rc = clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, next,
				     NULL)) == EINTR)
		;
	if (rc) {
		report(rc, "clock_nanosleep");
		return -1;
	}
	/*
	 * Late (a stopped process, a busy host): the next interval starts
	 * now rather than a burst of short ones catching up.
	 */
	clock_gettime(CLOCK_MONOTONIC, &now);
	if (seconds_between(next, &now) > 0.5)
		*next = now;
	next->tv_sec += interval;
	return 0;
}

int cmd_stats(int argc, char **argv)
{
	bool json;
	struct stats_sample s[2];
	char what[PATH_MAX + 32], bstat[PATH_MAX];
	uint64_t interval = 1, count = 0, n;
	struct dmu_info first;
	struct timespec next;
	int fd, rc, cur = 0;

	json = json_option(argc, argv, stats_usage);
	if (optind == argc)
		bad_usage("missing <name-or-path>");
	if (argc - optind > 3)
		bad_usage("unexpected argument '%s'", argv[optind + 3]);
	if (argc - optind > 1)
		interval = parse_number("<interval>", argv[optind + 1], false,
					1, 86400);
	if (argc - optind > 2)
		count = parse_number("<count>", argv[optind + 2], false, 1,
				     UINT64_MAX);

	fd = open_channel(argv[optind], what, sizeof(what));
	if (fd < 0) {
		report_hint(fd, HINT_NODE, NULL, argv[optind], "open %s", what);
		return 1;
	}
	/* Its name, to find its device; then the first sample, at once. */
	rc = dmu_get_info(fd, &first);
	if (rc) {
		report(rc, "info on %s", what);
		close(fd);
		return 1;
	}
	rc = find_block_stat(first.name, bstat, sizeof(bstat));
	if (rc)
		report(rc, "note: no aqu-sz and await: the device of target '%s' was not found%s",
		       first.name, rc == -EPERM || rc == -EACCES ?
		       " (listing devices needs CAP_SYS_ADMIN)" : "");
	rc = take_sample(fd, bstat, &s[cur]);
	next = s[cur].when;
	next.tv_sec += interval;
	for (n = 0; !rc && (!count || n < count); n++) {
		if (wait_interval(&next, interval)) {
			close(fd);
			return 1;
		}
		rc = take_sample(fd, bstat, &s[!cur]);
		if (rc)
			break;
		if (put_report(&s[cur], &s[!cur], json)) {
			close(fd);
			return 1;
		}
		cur = !cur;
	}
	close(fd);
	/* As for a daemon: the target's removal ends it, and is no error. */
	if (rc == -ENOTBLK) {
		report(0, "%s: the target was removed", what);
		return 0;
	}
	if (rc) {
		report(rc, "info on %s", what);
		return 1;
	}
	return 0;
}
