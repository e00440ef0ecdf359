/* SPDX-License-Identifier: GPL-2.0 */
/*
 * What "dmuser serve" (cmd-serve.c) shares with its NBD back end
 * (serve-nbd.c): the counters of --stats and the stop flag.
 */
#ifndef DMUSER_SERVE_H
#define DMUSER_SERVE_H

#include <stdbool.h>

#include "dmuser.h"

/* --nbd: what to serve from, and how. */
struct nbd_options {
	const char *uri;	/* as libnbd's nbd_connect_uri() takes it */
	const char *channel;	/* the target's name or node */
	unsigned int queue_depth;	/* requests in flight per connection */
	bool verbose;
};

/* Counts a request as it comes: its type, FUA and PREFLUSH. */
void serve_count_request(const struct dmu_req *r);
/* Counts its answer @rc (0 or a negative errno, as a callback's); @rc. */
int serve_count_result(const struct dmu_req *r, int rc);
/* Whether a signal (or a failed start) asked serving to stop. */
bool serve_stopping(void);
void serve_request_stop(void);

/*
 * Serves @opt->channel from the NBD server at @opt->uri, one connection
 * per @opts->threads where the server allows several: 0, or -1 after
 * reporting why. @opts: the transport options, stop and ready as for
 * dmu_serve(); threads and max_pending are set here.
 */
int serve_nbd(const struct nbd_options *opt, struct dmu_serve_opts *opts);

#endif /* DMUSER_SERVE_H */
