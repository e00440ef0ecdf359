// SPDX-License-Identifier: GPL-2.0
/*
 * dmuser - create, inspect and serve dm-user devices, built on libdmuser.
 *
 *   dmuser create <dev> --size <size> [--name <name>] [--features "<words>"]
 *   dmuser remove <dev>
 *   dmuser attach <dev> / detach <dev>
 *   dmuser list / info <name> / stats <name> [<interval> [<count>]]
 *   dmuser set <name> <key>=<value>...
 *   dmuser serve [options] <name-or-path>
 *
 * "dmuser serve" is the reference daemon (cmd-serve.c): it serves every
 * block request of one target from one of the stores of store.h. Invoked
 * as "dmuserd", the program is "dmuser serve", so that scripts written for
 * the former daemon keep working.
 *
 * This file holds the command table; tool.c the helpers the commands
 * share.
 */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <libdevmapper.h>

#include "tool.h"

static const struct command {
	const char *name;
	int (*fn)(int argc, char **argv);
	void (*usage)(FILE *f);
} commands[] = {
	{ "create", cmd_create, create_usage },
	{ "remove", cmd_remove, remove_usage },
	{ "attach", cmd_attach, attach_usage },
	{ "detach", cmd_detach, detach_usage },
	{ "list", cmd_list, list_usage },
	{ "info", cmd_info, info_usage },
	{ "stats", cmd_stats, stats_usage },
	{ "set", cmd_set, set_usage },
	{ "serve", cmd_serve, serve_usage },
};

static void main_usage(FILE *f)
{
	fprintf(f,
"Usage: %s <command> [options] [arguments]\n"
"Create, inspect and serve dm-user devices.\n"
"\n"
"Commands:\n"
"  create <dev> --size <size> [--name <name>] [--features \"<words>\"]\n"
"                     create device <dev> with one user target\n"
"  remove <dev>       remove device <dev>\n"
"  attach <dev> [--name <name>] [--features \"<words>\"] [--claim]\n"
"                     put user targets under a live linear device\n"
"  detach <dev>       put the linear targets back\n"
"  list [--json]      the user targets, a line each: device, target, size,\n"
"                     block size, daemon state, channels, queued requests\n"
"  info [--json] <name>\n"
"                     what the target reports, settings and counters\n"
"  stats [--json] <name> [<interval> [<count>]]\n"
"                     requests, MB and queue depth per second and per\n"
"                     operation, as iostat shows them\n"
"  set <name> <key>=<value>...\n"
"                     set tunable parameters of the target\n"
"  serve [options] <name-or-path>\n"
"                     serve the target's I/O from RAM or a file (the\n"
"                     reference daemon, also installed as dmuserd)\n"
"\n"
"'%s <command> -h' describes each command; '%s --version' prints the\n"
"version.\n"
"Exit status: 0 on success, 1 on error, 2 on bad usage.\n", prog, prog, prog);
}

/* "--version" or "-V", which must be the only argument. */
static bool wants_version(int argc, char **argv)
{
	if (argc < 2 ||
	    (strcmp(argv[1], "--version") && strcmp(argv[1], "-V")))
		return false;
	if (argc > 2)
		bad_usage("%s takes no arguments", argv[1]);
	return true;
}

int main(int argc, char **argv)
{
	const char *base = argv[0] ? strrchr(argv[0], '/') : NULL;
	bool as_daemon;
	unsigned int i;

	base = base ? base + 1 : argv[0] ? argv[0] : "";
	opterr = 0;	/* our own messages, followed by the usage */
	dm_log_with_errno_init(dm_log_keep_errno);
	as_daemon = !strcmp(base, "dmuserd");
	if (as_daemon)
		prog = "dmuserd";
	if (wants_version(argc, argv)) {
		printf("%s %s\n", prog, DMUSER_VERSION);
		return 0;
	}
	if (as_daemon)
		return cmd_serve(argc, argv);

	usage_fn = main_usage;
	if (argc < 2)
		bad_usage("missing <command>");
	if (wants_help(argv[1])) {
		main_usage(stdout);
		return 0;
	}
	for (i = 0; i < ARRAY_SIZE(commands); i++)
		if (!strcmp(argv[1], commands[i].name)) {
			usage_fn = commands[i].usage;
			return commands[i].fn(argc - 1, argv + 1);
		}
	bad_usage("unknown command '%s'", argv[1]);
}
