// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * libdmuser: device-mapper devices with user targets, through libdevmapper's
 * task API.
 *
 * udev: when udev runs, each change waits on a udev cookie so that
 * /dev/mapper/<dev> exists (or is gone) when the call returns. When it does
 * not run, or DM_DISABLE_UDEV is set, libdevmapper creates and removes the
 * nodes itself; the same cookie wait then performs those node operations.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libdevmapper.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "dmuser.h"

static void dmu_udev_setup(void)
{
	static int done;

	if (done)
		return;
	done = 1;
	/* No udev daemon to answer: libdevmapper must make the nodes. */
	if (getenv("DM_DISABLE_UDEV") || access("/run/udev/control", F_OK))
		dm_udev_set_sync_support(0);
}

/* A new task; NULL with *err set when device-mapper is not there. */
static struct dm_task *dmu_task_new(int type, int *err)
{
	struct dm_task *dmt = dm_task_create(type);

	if (!dmt)
		*err = access("/dev/mapper/control", F_OK) ? -ENODEV : -ENOMEM;
	return dmt;
}

/* The errno of a failed task, never 0. */
static int dmu_task_error(struct dm_task *dmt)
{
	int e = dm_task_get_errno(dmt);

	return e > 0 ? -e : -EIO;
}

/* Adds every "start length type params" line of @table to @dmt. */
static int dmu_add_targets(struct dm_task *dmt, const char *table)
{
	const char *line = table;
	int targets = 0;

	while (*line) {
		const char *end = strchr(line, '\n');
		size_t len = end ? (size_t)(end - line) : strlen(line);
		char buf[4096], type[64];
		uint64_t start, length;
		int params = 0;

		if (len >= sizeof(buf))
			return -E2BIG;
		memcpy(buf, line, len);
		buf[len] = '\0';
		line += len + (end ? 1 : 0);
		if (strspn(buf, " \t") == len)
			continue;
		if (sscanf(buf, "%" SCNu64 " %" SCNu64 " %63s %n", &start,
			   &length, type, &params) < 3 || !params)
			return -EINVAL;
		if (!dm_task_add_target(dmt, start, length, type, buf + params))
			return -ENOMEM;
		targets++;
	}
	return targets ? 0 : -EINVAL;
}

/*
 * Runs a task of @type on @dev: with @table's targets for create and
 * reload, and with a udev cookie for the tasks that change nodes.
 */
/* dmu_run_task() flags. */
#define DMU_TASK_NOFLUSH	0x1	/* a suspend or resume with noflush */
#define DMU_TASK_RO		0x2	/* a table loaded read-only */

static int dmu_run_task(int type, const char *dev, const char *table,
			unsigned int flags)
{
	bool cookie_task = type == DM_DEVICE_CREATE ||
			   type == DM_DEVICE_RESUME || type == DM_DEVICE_REMOVE;
	struct dm_task *dmt;
	uint32_t cookie = 0;
	int r = 0;

	if (!dev || !*dev)
		return -EINVAL;
	dmu_udev_setup();
	dmt = dmu_task_new(type, &r);
	if (!dmt)
		return r;
	if (!dm_task_set_name(dmt, dev)) {
		r = -EINVAL;
		goto out;
	}
	if (table) {
		r = dmu_add_targets(dmt, table);
		if (r)
			goto out;
	}
	if ((flags & DMU_TASK_NOFLUSH) && !dm_task_no_flush(dmt)) {
		r = -EINVAL;
		goto out;
	}
	if ((flags & DMU_TASK_RO) && !dm_task_set_ro(dmt)) {
		r = -EINVAL;
		goto out;
	}
	if (type == DM_DEVICE_REMOVE)
		dm_task_retry_remove(dmt);
	if (cookie_task && !dm_task_set_cookie(dmt, &cookie, 0)) {
		r = -EIO;
		goto out;
	}
	if (!dm_task_run(dmt))
		r = dmu_task_error(dmt);
	/* Also performs the node operations when udev is not used. */
	if (cookie_task)
		dm_udev_wait(cookie);
out:
	dm_task_destroy(dmt);
	return r;
}

/* DM_DEVICE_INFO of @dev into @info: 0 or a negative errno. */
static int dmu_dev_info(const char *dev, struct dm_info *info)
{
	struct dm_task *dmt;
	int r = 0;

	dmu_udev_setup();
	dmt = dmu_task_new(DM_DEVICE_INFO, &r);
	if (!dmt)
		return r;
	if (!dm_task_set_name(dmt, dev))
		r = -EINVAL;
	else if (!dm_task_run(dmt) || !dm_task_get_info(dmt, info))
		r = dmu_task_error(dmt);
	dm_task_destroy(dmt);
	return r;
}

/* 1 if @dev exists, 0 if not, or a negative errno. */
static int dmu_dev_exists(const char *dev)
{
	struct dm_info info;
	int r = dmu_dev_info(dev, &info);

	return r ? r : info.exists ? 1 : 0;
}

int dmu_dev_create(const char *dev, const char *table)
{
	int r;

	if (!dev || !*dev || !table)
		return -EINVAL;
	/*
	 * libdevmapper reports no errno for a name already taken, so ask
	 * first: callers deserve EEXIST rather than EIO.
	 */
	r = dmu_dev_exists(dev);
	if (r)
		return r > 0 ? -EEXIST : r;
	return dmu_run_task(DM_DEVICE_CREATE, dev, table, 0);
}

int dmu_dev_load(const char *dev, const char *table)
{
	if (!table)
		return -EINVAL;
	return dmu_run_task(DM_DEVICE_RELOAD, dev, table, 0);
}

int dmu_dev_suspend(const char *dev, bool noflush)
{
	return dmu_run_task(DM_DEVICE_SUSPEND, dev, NULL,
			    noflush ? DMU_TASK_NOFLUSH : 0);
}

int dmu_dev_resume(const char *dev)
{
	return dmu_run_task(DM_DEVICE_RESUME, dev, NULL, 0);
}

int dmu_dev_remove(const char *dev)
{
	return dmu_run_task(DM_DEVICE_REMOVE, dev, NULL, 0);
}

/* Calls @fn for each target of @dev's live table. */
static int dmu_for_each_target(const char *dev,
			       int (*fn)(void *arg, uint64_t start,
					 uint64_t length, const char *type,
					 const char *params),
			       void *arg)
{
	struct dm_task *dmt;
	void *next = NULL;
	int r = 0;

	dmu_udev_setup();
	dmt = dmu_task_new(DM_DEVICE_TABLE, &r);
	if (!dmt)
		return r;
	if (!dm_task_set_name(dmt, dev)) {
		r = -EINVAL;
		goto out;
	}
	if (!dm_task_run(dmt)) {
		r = dmu_task_error(dmt);
		goto out;
	}
	do {
		uint64_t start, length;
		char *type = NULL, *params = NULL;

		next = dm_get_next_target(dmt, next, &start, &length, &type,
					  &params);
		if (type)
			r = fn(arg, start, length, type, params ? params : "");
	} while (next && !r);
out:
	dm_task_destroy(dmt);
	return r;
}

struct dmu_table_buf {
	char *buf;
	size_t len;
	size_t used;
};

static int dmu_table_append(void *arg, uint64_t start, uint64_t length,
			    const char *type, const char *params)
{
	struct dmu_table_buf *tb = arg;
	int n = snprintf(tb->buf + tb->used, tb->len - tb->used,
			 "%s%" PRIu64 " %" PRIu64 " %s %s",
			 tb->used ? "\n" : "", start, length, type, params);

	if (n < 0 || (size_t)n >= tb->len - tb->used)
		return -ENAMETOOLONG;
	tb->used += (size_t)n;
	return 0;
}

int dmu_dev_table(const char *dev, char *buf, size_t len)
{
	struct dmu_table_buf tb = { buf, len, 0 };

	if (!dev || !buf || !len)
		return -EINVAL;
	buf[0] = '\0';
	return dmu_for_each_target(dev, dmu_table_append, &tb);
}

struct dmu_list_ctx {
	const char *dev;
	dmu_list_fn fn;
	void *arg;
};

static int dmu_list_target(void *arg, uint64_t start, uint64_t length,
			   const char *type, const char *params)
{
	struct dmu_list_ctx *lc = arg;
	char name[DM_USER_NAME_MAX + 1];
	struct dmu_target_desc t;

	if (strcmp(type, "user"))
		return 0;
	/* params: <start> <len> <name> [features] */
	if (sscanf(params, "%*s %*s %64s", name) != 1)
		return 0;
	t.dev = lc->dev;
	t.name = name;
	t.start = start;
	t.length = length;
	t.params = params;
	return lc->fn(lc->arg, &t);
}

int dmu_dev_list(dmu_list_fn fn, void *arg)
{
	struct dm_task *dmt;
	struct dm_names *names;
	int r = 0;

	if (!fn)
		return -EINVAL;
	dmu_udev_setup();
	dmt = dmu_task_new(DM_DEVICE_LIST, &r);
	if (!dmt)
		return r;
	if (!dm_task_run(dmt)) {
		r = dmu_task_error(dmt);
		goto out;
	}
	names = dm_task_get_names(dmt);
	if (!names || !names->dev)
		goto out;
	for (;;) {
		struct dmu_list_ctx lc = { names->name, fn, arg };

		r = dmu_for_each_target(names->name, dmu_list_target, &lc);
		/* A device removed meanwhile is simply not listed. */
		if (r == -ENXIO)
			r = 0;
		if (r || !names->next)
			break;
		names = (struct dm_names *)((char *)names + names->next);
	}
out:
	dm_task_destroy(dmt);
	return r;
}

static bool dmu_name_ok(const char *name)
{
	size_t len = name ? strlen(name) : 0;

	return len && len <= DM_USER_NAME_MAX && !strchr(name, '/') &&
	       strcmp(name, ".") && strcmp(name, "..");
}

int dmu_table_line(char *buf, size_t len, uint64_t sectors, const char *name,
		   const char *features)
{
	unsigned int words = 0;
	const char *p;
	int n;

	if (!dmu_name_ok(name) || !sectors)
		return -EINVAL;
	for (p = features; p && *p;) {
		p += strspn(p, " \t");
		if (!*p)
			break;
		words++;
		p += strcspn(p, " \t");
	}
	if (words)
		n = snprintf(buf, len, "0 %" PRIu64 " user 0 %" PRIu64 " %s %u %s",
			     sectors, sectors, name, words,
			     features + strspn(features, " \t"));
	else
		n = snprintf(buf, len, "0 %" PRIu64 " user 0 %" PRIu64 " %s",
			     sectors, sectors, name);
	return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

int dmu_wait_node(const char *name, int timeout_ms)
{
	struct timespec pause = { 0, 10 * 1000 * 1000 };
	char path[sizeof("/dev/dm-user/") + DM_USER_NAME_MAX];
	int waited = 0;

	if (!dmu_name_ok(name))
		return -EINVAL;
	snprintf(path, sizeof(path), "/dev/dm-user/%s", name);
	while (access(path, F_OK)) {
		if (errno != ENOENT)
			return -errno;
		if (waited >= timeout_ms)
			return -ETIMEDOUT;
		nanosleep(&pause, NULL);
		waited += 10;
	}
	return 0;
}

int dmu_open_channel(const char *name, int flags)
{
	char path[sizeof("/dev/dm-user/") + DM_USER_NAME_MAX];
	int fd;

	if (!dmu_name_ok(name))
		return -EINVAL;
	snprintf(path, sizeof(path), "/dev/dm-user/%s", name);
	fd = open(path, O_RDWR | O_CLOEXEC | flags);
	return fd < 0 ? -errno : fd;
}

/* ---- Attaching user targets to a live device ------------------------- */

/* A table being rewritten target by target, for attach and detach. */
struct dmu_rewrite {
	char *buf;
	size_t len, used;
	unsigned int targets;	/* seen so far */
	unsigned int total;	/* in the live table (second pass) */
	const char *prefix;
	const char *features;
	unsigned int feature_words;
	bool claim;
};

static int dmu_rewrite_count(void *arg, uint64_t start, uint64_t length,
			     const char *type, const char *params)
{
	(void)start;
	(void)length;
	(void)type;
	(void)params;
	((struct dmu_rewrite *)arg)->total++;
	return 0;
}

/* The characters the kernel takes in a name (dm_user_name_valid()). */
static bool dmu_name_chars_ok(const char *name)
{
	for (; *name; name++)
		if (!(*name >= 'a' && *name <= 'z') &&
		    !(*name >= 'A' && *name <= 'Z') &&
		    !(*name >= '0' && *name <= '9') &&
		    !strchr("-_.+:@", *name))
			return false;
	return true;
}

static int dmu_rewrite_add(struct dmu_rewrite *rw, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static int dmu_rewrite_add(struct dmu_rewrite *rw, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(rw->buf + rw->used, rw->len - rw->used, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= rw->len - rw->used)
		return -ENAMETOOLONG;
	rw->used += n;
	return 0;
}

/* "<dev> <offset>" of a linear target becomes a user target over it. */
static int dmu_attach_target(void *arg, uint64_t start, uint64_t length,
			     const char *type, const char *params)
{
	struct dmu_rewrite *rw = arg;
	char dev[64], name[DM_USER_NAME_MAX + 2];
	unsigned long long offset;
	int n;

	if (strcmp(type, "linear") ||
	    sscanf(params, "%63s %llu%n", dev, &offset, &n) != 2 ||
	    params[n + strspn(params + n, " ")])
		return -EMEDIUMTYPE;
	if (rw->total > 1)
		n = snprintf(name, sizeof(name), "%s_%u", rw->prefix,
			     rw->targets);
	else
		n = snprintf(name, sizeof(name), "%s", rw->prefix);
	if (n < 0 || (size_t)n > DM_USER_NAME_MAX)
		return -ENAMETOOLONG;
	rw->targets++;
	return dmu_rewrite_add(rw, "%s%" PRIu64 " %" PRIu64 " user %" PRIu64
			       " %" PRIu64 " %s %u backing %s %llu%s%s%s",
			       rw->used ? "\n" : "", start, length, start,
			       length, name,
			       3 + !rw->claim + rw->feature_words, dev, offset,
			       rw->claim ? "" : " passthrough",
			       rw->feature_words ? " " : "",
			       rw->feature_words ? rw->features : "");
}

/* A user target with a backing device becomes a linear target over it. */
static int dmu_detach_target(void *arg, uint64_t start, uint64_t length,
			     const char *type, const char *params)
{
	struct dmu_rewrite *rw = arg;
	char word[128], dev[64];
	unsigned long long offset;
	const char *p = params;
	int i, n;

	if (strcmp(type, "user"))
		return -EMEDIUMTYPE;
	/* <start> <len> <name> [<#words> <word>...]: look for backing. */
	for (i = 0; sscanf(p, "%127s%n", word, &n) == 1; i++) {
		p += n;
		if (i < 4 || strcmp(word, "backing"))
			continue;
		if (sscanf(p, "%63s %llu", dev, &offset) != 2)
			return -EMEDIUMTYPE;
		rw->targets++;
		return dmu_rewrite_add(rw, "%s%" PRIu64 " %" PRIu64
				       " linear %s %llu", rw->used ? "\n" : "",
				       start, length, dev, offset);
	}
	return -EMEDIUMTYPE;
}

/*
 * Loads @table into @dev (read-only if the device is) and makes it live
 * with a noflush suspend and a noflush resume: a suspend that fails drops
 * the loaded table, and a resume that fails is tried once more, so that
 * the device is not left suspended unless the kernel keeps refusing.
 */
static int dmu_swap_live(const char *dev, const char *table, bool read_only)
{
	int r = dmu_run_task(DM_DEVICE_RELOAD, dev, table,
			     read_only ? DMU_TASK_RO : 0);

	if (r)
		return r;
	r = dmu_run_task(DM_DEVICE_SUSPEND, dev, NULL, DMU_TASK_NOFLUSH);
	if (r) {
		if (dmu_run_task(DM_DEVICE_CLEAR, dev, NULL, 0))
			return -EUCLEAN;
		return r;
	}
	r = dmu_run_task(DM_DEVICE_RESUME, dev, NULL, DMU_TASK_NOFLUSH);
	if (r && dmu_run_task(DM_DEVICE_RESUME, dev, NULL, DMU_TASK_NOFLUSH))
		return -EREMOTEIO;
	return 0;
}

/*
 * Rewrites @dev's live table target by target with @fn, @per bytes of room
 * a target, and makes the result live.
 */
static int dmu_rewrite(const char *dev, struct dmu_rewrite *rw,
		       int (*fn)(void *arg, uint64_t start, uint64_t length,
				 const char *type, const char *params),
		       size_t per)
{
	struct dm_info info;
	int r = dmu_dev_info(dev, &info);

	if (r)
		return r;
	if (!info.exists)
		return -ENXIO;
	/* Not in the middle of another tool's change of it. */
	if (info.suspended || info.inactive_table || !info.live_table)
		return -EBUSY;
	r = dmu_for_each_target(dev, dmu_rewrite_count, rw);
	if (r)
		return r;
	if (!rw->total)
		return -EMEDIUMTYPE;
	rw->len = per * rw->total;
	rw->buf = malloc(rw->len);
	if (!rw->buf)
		return -ENOMEM;
	r = dmu_for_each_target(dev, fn, rw);
	/* The table changed between the two looks. */
	if (!r && rw->targets != rw->total)
		r = -EAGAIN;
	if (!r)
		r = dmu_swap_live(dev, rw->buf, info.read_only);
	free(rw->buf);
	return r;
}

int dmu_attach(const char *dev, const char *prefix, const char *features,
	       bool claim)
{
	struct dmu_rewrite rw = { 0 };
	const char *p;

	if (!dev || !*dev)
		return -EINVAL;
	rw.prefix = prefix ? prefix : dev;
	rw.claim = claim;
	if (strlen(rw.prefix) > DM_USER_NAME_MAX)
		return -ENAMETOOLONG;
	if (!dmu_name_ok(rw.prefix) || !dmu_name_chars_ok(rw.prefix))
		return -EINVAL;
	rw.features = features ? features + strspn(features, " \t") : "";
	/* One line a target: a newline would start another. */
	for (p = rw.features; *p; p++)
		if ((unsigned char)*p < ' ' && *p != '\t')
			return -EINVAL;
	for (p = rw.features; *p;) {
		rw.feature_words++;
		p += strcspn(p, " \t");
		p += strspn(p, " \t");
	}
	return dmu_rewrite(dev, &rw, dmu_attach_target,
			   512 + strlen(rw.features));
}

int dmu_detach(const char *dev)
{
	struct dmu_rewrite rw = { 0 };

	if (!dev || !*dev)
		return -EINVAL;
	return dmu_rewrite(dev, &rw, dmu_detach_target, 160);
}
