// SPDX-License-Identifier: GPL-2.0
/*
 * The commands that change devices and targets: create, remove, attach,
 * detach (device-mapper devices, through libdmuser's libdevmapper calls)
 * and set (a target's parameters, through its node).
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tool.h"

/* How long create waits for udev to make /dev/dm-user/<name>. */
#define NODE_WAIT_MS	5000

void create_usage(FILE *f)
{
	fprintf(f,
"Usage: %s create <dev> --size <size> [--name <name>] [--features \"<words>\"]\n"
"                 [--if-missing]\n"
"Create device-mapper device <dev> with one user target over all of it,\n"
"and wait for /dev/dm-user/<name>.\n"
"\n"
"  -s, --size <size>       bytes, a multiple of 512: a number with an\n"
"                          optional suffix K, M, G or T (powers of 1024),\n"
"                          or 512-byte sectors with the suffix 's'\n"
"  -n, --name <name>       the target's name (default: <dev>)\n"
"  -F, --features <words>  feature words without their count, e.g.\n"
"                          \"block_size 4096 no_discard\"\n"
"  -e, --if-missing        a device <dev> that exists already is fine if its\n"
"                          table is one user target <name> of <size> (its\n"
"                          features are not compared): nothing is done\n"
"  -h, --help              show this help\n", prog);
}

/* Bytes (suffixes K, M, G, T) or sectors (suffix s); returns sectors. */
static uint64_t parse_size(const char *s)
{
	size_t len = strlen(s);
	uint64_t bytes;

	if (len > 1 && (s[len - 1] == 's' || s[len - 1] == 'S')) {
		char num[32];

		if (len - 1 >= sizeof(num))
			bad_usage("--size: '%s' is too large", s);
		memcpy(num, s, len - 1);
		num[len - 1] = '\0';
		return parse_number("--size", num, false, 1,
				    UINT64_MAX / SECTOR_SIZE);
	}
	bytes = parse_number("--size", s, true, 1, UINT64_MAX);
	if (bytes % SECTOR_SIZE)
		bad_usage("--size: %" PRIu64 " bytes is not a multiple of %u",
			  bytes, SECTOR_SIZE);
	return bytes / SECTOR_SIZE;
}

/*
 * create --if-missing found @dev: 0 if its table is one user target
 * @name of @sectors, else 1 with what it is said.
 */
static int check_existing(const char *dev, const char *name, uint64_t sectors)
{
	char table[4096], tname[DM_USER_NAME_MAX + 2];
	unsigned long long start, len;
	int rc;

	rc = dmu_dev_table(dev, table, sizeof(table));
	if (rc) {
		report(rc, "create %s: it exists, but its table cannot be read", dev);
		return 1;
	}
	/* Lines are separated by newlines: one target has none. */
	if (sscanf(table, "%llu %llu user %*s %*s %65s", &start, &len,
		   tname) != 3 || start || strchr(table, '\n')) {
		report(0, "create %s: it exists, and is not one user target: %s",
		       dev, table);
		return 1;
	}
	if (strcmp(tname, name) || len != sectors) {
		report(0, "create %s: it exists as user target '%s' of %llu sectors, not '%s' of %" PRIu64,
		       dev, tname, len, name, sectors);
		return 1;
	}
	return 0;
}

int cmd_create(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "size", required_argument, NULL, 's' },
		{ "name", required_argument, NULL, 'n' },
		{ "features", required_argument, NULL, 'F' },
		{ "if-missing", no_argument, NULL, 'e' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *dev, *name = NULL, *features = NULL;
	bool if_missing = false;
	uint64_t sectors = 0;
	size_t tlen;
	char *table;
	int c, rc;

	usage_fn = create_usage;
	while ((c = getopt_long(argc, argv, ":s:n:F:eh", longopts, NULL)) != -1) {
		switch (c) {
		case 'e':
			if_missing = true;
			break;
		case 's':
			sectors = parse_size(optarg);
			break;
		case 'n':
			name = optarg;
			break;
		case 'F':
			features = optarg;
			break;
		case 'h':
			create_usage(stdout);
			exit(0);
		default:
			bad_option(c, argv);
		}
	}
	if (optind != argc - 1)
		bad_usage(optind == argc ? "missing <dev>" : "more than one <dev>");
	if (!sectors)
		bad_usage("--size is required");
	dev = argv[optind];
	if (!name)
		name = dev;

	tlen = strlen(name) + (features ? strlen(features) : 0) + 128;
	table = malloc(tlen);
	if (!table) {
		report(errno, "malloc");
		return 1;
	}
	rc = dmu_table_line(table, tlen, sectors, name, features);
	if (rc) {
		report(rc, "table line for target '%s'", name);
		free(table);
		return 1;
	}
	rc = dmu_dev_create(dev, table);
	free(table);
	if (rc == -EEXIST && if_missing) {
		if (check_existing(dev, name, sectors))
			return 1;
	} else if (rc) {
		if (rc == -EIO && dm_last_errno)
			rc = -dm_last_errno;
		report_hint(rc, HINT_CREATE, dev, name, "create %s", dev);
		return 1;
	}
	rc = dmu_wait_node(name, NODE_WAIT_MS);
	if (rc) {
		report(rc, "wait for /dev/dm-user/%s", name);
		return 1;
	}
	return 0;
}

void remove_usage(FILE *f)
{
	fprintf(f,
"Usage: %s remove <dev>\n"
"Remove device-mapper device <dev>; fails while the device is open.\n", prog);
}

int cmd_remove(int argc, char **argv)
{
	const char *dev = take_args(argc, argv, 1, remove_usage)[0];
	int rc;

	rc = dmu_dev_remove(dev);
	if (rc) {
		report_hint(rc, HINT_DEVICE, dev, NULL, "remove %s", dev);
		return 1;
	}
	return 0;
}

/* The nodes of @arg's user targets, one a line. */
static int print_attached(void *arg, const struct dmu_target_desc *t)
{
	if (!strcmp(t->dev, arg))
		printf("/dev/dm-user/%s\n", t->name);
	return 0;
}

void attach_usage(FILE *f)
{
	fprintf(f,
"Usage: %s attach <dev> [--name <name>] [--features \"<words>\"] [--claim]\n"
"Put user targets under live device-mapper device <dev>, whose table must be\n"
"linear targets only (an LVM logical volume, say): each becomes a user\n"
"target over the same range of the same device, made live by a noflush\n"
"suspend and a resume, so a mounted filesystem sees no error. Prints the\n"
"targets' nodes, /dev/dm-user/<name>[_<i>].\n"
"\n"
"  -n, --name <name>       the targets' name, with _0, _1... added when the\n"
"                          table has several segments (default: <dev>)\n"
"  -F, --features <words>  more feature words for every target, without\n"
"                          their count, e.g. \"notify_writes\"\n"
"  -c, --claim             start with everything claimed, so that all I/O\n"
"                          waits for a daemon (default: passthrough, I/O\n"
"                          goes where it went until a daemon claims ranges)\n"
"  -h, --help              show this help\n", prog);
}

void detach_usage(FILE *f)
{
	fprintf(f,
"Usage: %s detach <dev>\n"
"Put linear targets back under device <dev>: each user target with a\n"
"backing device becomes a linear target over it, made live by a noflush\n"
"suspend and a resume. Works with the daemon dead; what a daemon kept\n"
"outside the backing device is no longer seen.\n", prog);
}

/* Says why a table cannot be attached to or detached from, if it can tell. */
static void explain_table(const char *dev, const char *want)
{
	char table[4096];

	if (dmu_dev_table(dev, table, sizeof(table)))
		return;
	report(0, "%s needs a live table of %s only; it is:\n%s", dev, want,
	       table[0] ? table : "(empty)");
}

int cmd_attach(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "name", required_argument, NULL, 'n' },
		{ "features", required_argument, NULL, 'F' },
		{ "claim", no_argument, NULL, 'c' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *name = NULL, *features = NULL, *dev;
	bool claim = false;
	int c, rc;

	usage_fn = attach_usage;
	while ((c = getopt_long(argc, argv, ":n:F:ch", longopts, NULL)) != -1) {
		switch (c) {
		case 'n':
			name = optarg;
			break;
		case 'F':
			features = optarg;
			break;
		case 'c':
			claim = true;
			break;
		case 'h':
			attach_usage(stdout);
			exit(0);
		default:
			bad_option(c, argv);
		}
	}
	if (optind != argc - 1)
		bad_usage(optind == argc ? "missing <dev>" : "more than one <dev>");
	dev = argv[optind];
	rc = dmu_attach(dev, name, features, claim);
	if (rc) {
		report(rc, "attach %s", dev);
		if (rc == -EMEDIUMTYPE)
			explain_table(dev, "linear targets");
		if (rc == -EBUSY)
			report(0, "%s is suspended, has an inactive table, or a target name is in use",
			       dev);
		if (rc == -EREMOTEIO)
			report(0, "%s is left suspended: dmsetup resume %s", dev,
			       dev);
		return 1;
	}
	return dmu_dev_list(print_attached, (void *)dev) ? 1 : finish_stdout();
}

int cmd_detach(int argc, char **argv)
{
	const char *dev = take_args(argc, argv, 1, detach_usage)[0];
	int rc;

	rc = dmu_detach(dev);
	if (rc) {
		report(rc, "detach %s", dev);
		if (rc == -EMEDIUMTYPE)
			explain_table(dev, "user targets with a backing device");
		if (rc == -EBUSY)
			report(0, "%s is suspended or has an inactive table", dev);
		if (rc == -EREMOTEIO)
			report(0, "%s is left suspended: dmsetup resume %s", dev,
			       dev);
		return 1;
	}
	return 0;
}


void set_usage(FILE *f)
{
	fprintf(f,
"Usage: %s set <name-or-path> <key>=<value>...\n"
"Set tunable parameters of the target, all or none: the kernel checks\n"
"every value before it applies any. Keys:\n"
"  max_queued=<n>         requests held for daemons at once (1 to 1048576)\n"
"  no_daemon_timeout=<s>  seconds I/O waits while no daemon is attached,\n"
"                         then fails until one attaches; 0: fail at once;\n"
"                         \"forever\": wait for ever\n"
"  request_timeout=<s>    fail a request not answered within <s> seconds\n"
"                         with ETIMEDOUT; 0: off\n"
"  notify_writes=<0|1>    with a backing device: writes outside the claimed\n"
"                         ranges wait for the daemon's answer to a\n"
"                         notification (1) or go straight there (0)\n", prog);
}

/* The tunable parameters, as "dmuser set" and the kernel's text name them. */
static const struct param_key {
	const char *name;
	uint16_t tag;
	unsigned int bit;
	size_t offset;
	bool forever;	/* takes "forever" for DM_USER_TIMEOUT_FOREVER */
} param_keys[] = {
	{ "max_queued", DM_USER_ATTR_MAX_QUEUED, DMU_PARAM_MAX_QUEUED,
	  offsetof(struct dmu_params, max_queued), false },
	{ "no_daemon_timeout", DM_USER_ATTR_NO_DAEMON_TIMEOUT,
	  DMU_PARAM_NO_DAEMON_TIMEOUT,
	  offsetof(struct dmu_params, no_daemon_timeout), true },
	{ "request_timeout", DM_USER_ATTR_REQUEST_TIMEOUT,
	  DMU_PARAM_REQUEST_TIMEOUT,
	  offsetof(struct dmu_params, request_timeout), false },
	{ "notify_writes", DM_USER_ATTR_NOTIFY_WRITES,
	  DMU_PARAM_NOTIFY_WRITES,
	  offsetof(struct dmu_params, notify_writes), false },
};

static const char *attr_name(uint16_t tag)
{
	size_t k;

	for (k = 0; k < sizeof(param_keys) / sizeof(param_keys[0]); k++)
		if (param_keys[k].tag == tag)
			return param_keys[k].name;
	return NULL;
}

int cmd_set(int argc, char **argv)
{
	struct dmu_params params = { 0 };
	unsigned int which = 0;
	const struct dmu_ctl_error *e;
	char what[PATH_MAX + 32];
	const char *name;
	int i, fd, rc;

	usage_fn = set_usage;
	for (i = 1; i < argc; i++) {
		if (wants_help(argv[i])) {
			set_usage(stdout);
			exit(0);
		}
	}
	if (argc < 2)
		bad_usage("missing <name-or-path>");
	if (argc < 3)
		bad_usage("nothing to set");
	name = argv[1];
	for (i = 2; i < argc; i++) {
		const char *eq = strchr(argv[i], '=');
		const struct param_key *pk = NULL;
		uint32_t *field;
		size_t k;

		if (!eq)
			bad_usage("'%s' is not <key>=<value>", argv[i]);
		for (k = 0; k < sizeof(param_keys) / sizeof(param_keys[0]); k++)
			if (strlen(param_keys[k].name) == (size_t)(eq - argv[i]) &&
			    !strncmp(argv[i], param_keys[k].name, eq - argv[i]))
				pk = &param_keys[k];
		if (!pk)
			bad_usage("unknown parameter '%.*s'",
				  (int)(eq - argv[i]), argv[i]);
		if (which & pk->bit)
			bad_usage("%s given twice", pk->name);
		field = (uint32_t *)((char *)&params + pk->offset);
		if (pk->forever && !strcmp(eq + 1, "forever"))
			*field = DM_USER_TIMEOUT_FOREVER;
		else
			*field = (uint32_t)parse_number(pk->name, eq + 1,
							false, 0, UINT32_MAX);
		which |= pk->bit;
	}

	fd = open_channel(name, what, sizeof(what));
	if (fd < 0) {
		report_hint(fd, HINT_NODE, NULL, name, "open %s", what);
		return 1;
	}
	rc = dmu_set_params(fd, &params, which);
	e = rc ? dmu_ctl_last_error() : NULL;
	close(fd);
	if (!rc)
		return 0;
	report_hint(rc, HINT_NODE, NULL, name, "set parameters of %s", what);
	if (e && (e->reason[0] || e->tag)) {
		const char *an = attr_name(e->tag);
		char tag[64] = "";

		if (e->tag)
			snprintf(tag, sizeof(tag), " (attribute %u%s%s)",
				 e->tag, an ? ", " : "", an ? an : "");
		report(0, "the kernel says: %s%s",
		       e->reason[0] ? e->reason : "no reason given", tag);
	}
	return 1;
}
