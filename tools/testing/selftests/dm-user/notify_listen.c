// SPDX-License-Identifier: GPL-2.0
/*
 * notify_listen <socket> <file> [<seconds>]: what systemd does with a
 * Type=notify service's messages, for a guest without systemd. Binds a
 * datagram socket at <socket> (the path to give as $NOTIFY_SOCKET) and
 * appends each message it receives to <file>, one line per assignment,
 * until killed or for at most <seconds> (default 600), so that a test
 * that forgets it does not leave it running.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	long seconds = argc > 3 ? strtol(argv[3], NULL, 10) : 600;
	char msg[4096];
	time_t end;
	FILE *out;
	int fd;

	if (argc < 3 || argc > 4 || seconds <= 0 ||
	    strlen(argv[1]) >= sizeof(addr.sun_path)) {
		fprintf(stderr, "usage: notify_listen <socket> <file> [<seconds>]\n");
		return 2;
	}
	strcpy(addr.sun_path, argv[1]);
	out = fopen(argv[2], "a");
	if (!out) {
		fprintf(stderr, "notify_listen: open %s: %s\n", argv[2],
			strerror(errno));
		return 1;
	}
	fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		fprintf(stderr, "notify_listen: socket: %s\n", strerror(errno));
		return 1;
	}
	unlink(argv[1]);
	if (bind(fd, (struct sockaddr *)&addr, sizeof(addr))) {
		fprintf(stderr, "notify_listen: bind %s: %s\n", argv[1],
			strerror(errno));
		return 1;
	}
	end = time(NULL) + seconds;
	while (time(NULL) < end) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		ssize_t n;
		int r;

		r = poll(&p, 1, 1000);
		if (r < 0 && errno != EINTR) {
			fprintf(stderr, "notify_listen: poll: %s\n",
				strerror(errno));
			return 1;
		}
		if (r <= 0)
			continue;
		n = recv(fd, msg, sizeof(msg) - 1, 0);
		if (n < 0) {
			fprintf(stderr, "notify_listen: recv: %s\n",
				strerror(errno));
			return 1;
		}
		msg[n] = '\0';
		/* A message is newline-separated assignments. */
		if (fprintf(out, "%s%s", msg,
			    n && msg[n - 1] == '\n' ? "" : "\n") < 0 ||
		    fflush(out)) {
			fprintf(stderr, "notify_listen: write %s: %s\n",
				argv[2], strerror(errno));
			return 1;
		}
	}
	return 0;
}
