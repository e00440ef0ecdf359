// SPDX-License-Identifier: GPL-2.0
/*
 * run_as <uid> <gid> <program> [<arg>...]: run a program with only the given
 * user and group ids and no supplementary groups or capabilities, as an
 * unprivileged daemon runs. The guest has no user database, so the ids are
 * numbers.
 */
#include <errno.h>
#include <grp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int parse_id(const char *s, unsigned int *id)
{
	char *end;
	unsigned long v;

	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno || end == s || *end || v >= 0xffffffffUL)
		return -1;
	*id = v;
	return 0;
}

int main(int argc, char **argv)
{
	unsigned int uid, gid;

	if (argc < 4 || parse_id(argv[1], &uid) || parse_id(argv[2], &gid)) {
		fprintf(stderr, "usage: run_as <uid> <gid> <program> [<arg>...]\n");
		return 2;
	}
	/* Groups first: once the uid is not 0, they cannot be changed. */
	if (setgroups(0, NULL)) {
		fprintf(stderr, "run_as: setgroups: %s\n", strerror(errno));
		return 1;
	}
	if (setresgid(gid, gid, gid)) {
		fprintf(stderr, "run_as: setresgid(%u): %s\n", gid, strerror(errno));
		return 1;
	}
	/* A non-zero uid drops every capability. */
	if (setresuid(uid, uid, uid)) {
		fprintf(stderr, "run_as: setresuid(%u): %s\n", uid, strerror(errno));
		return 1;
	}
	execvp(argv[3], argv + 3);
	fprintf(stderr, "run_as: exec %s: %s\n", argv[3], strerror(errno));
	return 127;
}
