#include "hsmd/ops.h"

#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "hsmd/catalog.h"
#include "hsmd/guard_link.h"
#include "hsmd/control.h"
#include "hsmd/dupfid.h"
#include "hsmd/intercept.h"
#include "hsmd/scan.h"
#include "hsmd/nsync.h"
#include "hsmd/peer_data.h"
#include "hsmd/policy_run.h"
#include "hsmd/sources.h"
#include "hsmd/worker.h"
#include "lib/config.h"
#include "lib/hash.h"
#include "lib/log.h"
#include "lib/pathsafe.h"
#include "lib/pool.h"
#include "recall/archive.h"
#include "recall/recall.h"
#include "recall/release.h"
#include "recall/store.h"

enum ops_verb { V_STATE, V_ARCHIVE, V_RELEASE, V_RECALL, V_PIN, V_UNPIN };

static const struct {
	const char *name;
	int verb;
	int open_flags;
} ops_file_verbs[] = {
    {"state", V_STATE, O_RDONLY}, {"archive", V_ARCHIVE, O_RDONLY}, {"release", V_RELEASE, O_RDWR},
    {"recall", V_RECALL, O_RDWR}, {"pin", V_PIN, O_RDONLY},	    {"unpin", V_UNPIN, O_RDONLY},
};

struct batch {
	struct hsmd *h;
	struct ctl_conn *c;
	int verb;
	int open_flags;
	char **paths; /* owned, each owned */
	size_t *lens; /* as sent: a NUL inside makes strlen shorter */
	size_t npaths, next;
	unsigned active, jobs, done, failed;
	int pumping;
	/* Internal batches (c == NULL): the policy engine's jobs, answered here. */
	ops_done_cb done_cb;
	void *done_arg;
	char first_error[512];
};

/* One path of a batch while it is in flight. */
struct item {
	struct batch *b;
	const char *path; /* borrowed from the batch */
	struct hsmd_vol *vol;
	const char *rel; /* points into path */
	struct hsm_state st;
};

static void batch_pump(struct batch *b);

static struct json_object *ops_item_obj(const char *path, int ok, const char *error)
{
	struct json_object *o = json_object_new_object();

	json_object_object_add(o, "type", json_object_new_string("item"));
	json_object_object_add(o, "path", json_object_new_string(path));
	json_object_object_add(o, "ok", json_object_new_boolean(ok));
	if (error)
		json_object_object_add(o, "error", json_object_new_string(error));
	return o;
}

/* Sends the item's line (taking o) and counts it. */
static void batch_item_end(struct batch *b, struct json_object *o, int ok)
{
	struct json_object *e;

	if (!b->c) {
		if (!ok && !b->first_error[0] && json_object_object_get_ex(o, "error", &e))
			snprintf(b->first_error, sizeof(b->first_error), "%s",
				 json_object_get_string(e));
		json_object_put(o);
	} else {
		ctl_send(b->c, o);
	}
	if (ok)
		b->done++;
	else
		b->failed++;
}

static void batch_fail(struct batch *b, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void batch_fail(struct batch *b, const char *path, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	batch_item_end(b, ops_item_obj(path, 0, msg), 0);
}

static void item_async_end(struct item *it, struct json_object *o, int ok)
{
	struct batch *b = it->b;

	batch_item_end(b, o, ok);
	b->active--;
	free(it);
	batch_pump(b);
}

static struct json_object *ops_flags_obj(unsigned flags)
{
	struct json_object *a = json_object_new_array();

	if (flags & HSM_FLAG_PINNED)
		json_object_array_add(a, json_object_new_string("pinned"));
	if (flags & HSM_FLAG_NOARCHIVE)
		json_object_array_add(a, json_object_new_string("noarchive"));
	if (flags & HSM_FLAG_ON_ACCESS)
		json_object_array_add(a, json_object_new_string("on_access"));
	return a;
}

static void ops_add_state(struct json_object *o, const struct hsm_state *st)
{
	char fid[33];

	hsm_fid_hex(&st->fid, fid);
	json_object_object_add(o, "state", json_object_new_string(hsm_state_name(st->state)));
	json_object_object_add(o, "fid", json_object_new_string(fid));
	json_object_object_add(o, "version", json_object_new_int64((int64_t)st->version));
	json_object_object_add(o, "owner", json_object_new_string(st->owner));
	json_object_object_add(o, "archived_version",
			       json_object_new_int64((int64_t)st->archived_version));
	json_object_object_add(o, "flags", ops_flags_obj(st->flags));
}

static int ops_write_state(int fd, const struct hsm_state *st)
{
	uint8_t rec[HSM_XATTR_MAX];
	int len = hsmx_encode(st, rec, sizeof(rec));

	if (len < 0) {
		errno = EINVAL;
		return -1;
	}
	if (fsetxattr(fd, HSM_XATTR_NAME, rec, (size_t)len, XATTR_REPLACE) < 0)
		return -1;
	return fsync(fd);
}

static void ops_note_fd(struct item *it, int fd, const struct timespec *actime, int op)
{
	struct stat sb;

	if (fstat(fd, &sb) == 0)
		scan_note(it->b->h, it->vol, it->rel, &sb, &it->st, actime, op);
}

/* ---- archive ---- */

struct archive_item {
	struct item *it;
	int fd; /* a second descriptor, for the catalog note; -1 for release */
};

static void ops_archived(void *arg, int err, const char *msg, const struct archive_result *res)
{
	struct archive_item *ai = arg;
	struct item *it = ai->it;
	struct json_object *o;
	char mid[65];

	if (err) {
		o = ops_item_obj(it->path, 0, msg);
	} else {
		it->st = res->st;
		ops_note_fd(it, ai->fd, res->already ? NULL : &res->ctime, CAT_J_STATE);
		o = ops_item_obj(it->path, 1, NULL);
		hex_encode(res->st.manifest_id, 32, mid);
		json_object_object_add(o, "bytes", json_object_new_int64((int64_t)res->bytes));
		json_object_object_add(o, "manifest", json_object_new_string(mid));
		json_object_object_add(o, "chunks", json_object_new_int64(res->chunks));
		json_object_object_add(o, "uploaded", json_object_new_int64(res->uploaded));
		json_object_object_add(o, "already", json_object_new_boolean(res->already));
	}
	close(ai->fd);
	free(ai);
	item_async_end(it, o, !err);
}

/* ---- release ---- */

static void ops_released(void *arg, int err, const char *msg, const struct release_result *res)
{
	struct archive_item *ai = arg;
	struct item *it = ai->it;
	struct json_object *o;

	intercept_release_held(it->b->h, &it->st.fid);
	if (err) {
		o = ops_item_obj(it->path, 0, msg);
	} else {
		it->st = res->st;
		if (res->sb.st_ino)
			scan_note(it->b->h, it->vol, it->rel, &res->sb, &it->st, NULL, CAT_J_STATE);
		o = ops_item_obj(it->path, 1, NULL);
		json_object_object_add(o, "freed", json_object_new_int64((int64_t)res->freed));
		json_object_object_add(o, "rehashed", json_object_new_boolean(res->rehashed));
		log_info("released %s/%s (%llu bytes freed)", it->vol->cfg->path, it->rel,
			 (unsigned long long)res->freed);
	}
	free(ai);
	item_async_end(it, o, !err);
}

/* ---- recall ---- */

static void ops_recalled(void *arg, int err, const char *msg, uint64_t bytes,
			 const struct hsm_state *st, const struct timespec *ctime)
{
	struct archive_item *ai = arg;
	struct item *it = ai->it;
	struct json_object *o;

	if (err) {
		o = ops_item_obj(it->path, 0, msg);
	} else {
		/* What the recall wrote, not a guess: from a peer it may be resident. */
		it->st = *st;
		ops_note_fd(it, ai->fd, st->state == HSM_STATE_ARCHIVED ? ctime : NULL,
			    CAT_J_STATE);
		o = ops_item_obj(it->path, 1, NULL);
		json_object_object_add(o, "bytes", json_object_new_int64((int64_t)bytes));
	}
	close(ai->fd);
	free(ai);
	item_async_end(it, o, !err);
}

/* A release of another name of the same inode (a hard link) is in flight: this one
 * joins it without opening the file, since an open would find the lease held (EAGAIN)
 * and break it. 1 if joined (a callback will finish the item), else 0. */
static int ops_release_join(struct batch *b, const char *path, struct hsmd_vol *vol,
			    const char *rel)
{
	struct archive_item *ai;
	struct item *it;
	struct stat sb;
	int pfd = path_open_beneath(vol->root_fd, rel, O_PATH, 0);

	if (pfd < 0)
		return 0; /* the real open reports why */
	if (fstat(pfd, &sb) < 0 || !S_ISREG(sb.st_mode)) {
		close(pfd);
		return 0;
	}
	close(pfd);
	it = calloc(1, sizeof(*it));
	ai = calloc(1, sizeof(*ai));
	if (!it || !ai)
		fatalx("out of memory");
	it->b = b;
	it->path = path;
	it->vol = vol;
	it->rel = rel;
	ai->it = it;
	ai->fd = -1;
	if (!release_join(&b->h->mv, sb.st_dev, sb.st_ino, ops_released, ai, &it->st)) {
		free(ai);
		free(it);
		return 0;
	}
	b->active++;
	return 1;
}

/* Starts one path. Returns 1 when it finished at once (its line is sent), 0 when a
 * callback will finish it. */
static int item_start(struct batch *b, const char *path, size_t len)
{
	struct hsmd *h = b->h;
	struct item *it;
	struct archive_item *ai;
	struct stat sb;
	char err[512];
	const char *rel;
	struct hsmd_vol *vol;
	int fd, r;

	if (path_check_absolute(path, len, err, sizeof(err)) < 0) {
		batch_fail(b, path, "bad path: %s", err);
		return 1;
	}
	vol = hsmd_vol_for(h, path, &rel);
	if (!vol) {
		batch_fail(b, path, "not inside any hsm volume");
		return 1;
	}
	if (b->verb == V_RELEASE && ops_release_join(b, path, vol, rel))
		return 0;
	fd = path_open_beneath(vol->root_fd, rel, b->open_flags | O_NONBLOCK, 0);
	if (fd < 0) {
		batch_fail(b, path, "%s", errno == ELOOP ? "is a symbolic link" : strerror(errno));
		return 1;
	}
	if (fstat(fd, &sb) < 0 || !S_ISREG(sb.st_mode)) {
		batch_fail(b, path, "not a regular file");
		close(fd);
		return 1;
	}
	it = calloc(1, sizeof(*it));
	if (!it)
		fatalx("out of memory");
	it->b = b;
	it->path = path;
	it->vol = vol;
	it->rel = rel;
	if (b->verb == V_STATE) {
		uint8_t rec[HSM_XATTR_MAX];
		ssize_t n = fgetxattr(fd, HSM_XATTR_NAME, rec, sizeof(rec));
		struct json_object *o;

		if (n < 0 && errno != ENODATA) {
			batch_fail(b, path, "read state: %s", strerror(errno));
		} else if (n >= 0 && hsmx_decode(rec, (size_t)n, &it->st, err, sizeof(err)) < 0) {
			batch_fail(b, path, "corrupt state record: %s", err);
		} else {
			o = ops_item_obj(path, 1, NULL);
			if (n < 0) {
				json_object_object_add(o, "state",
						       json_object_new_string("unmanaged"));
				json_object_object_add(o, "flags", json_object_new_array());
			} else {
				ops_add_state(o, &it->st);
			}
			json_object_object_add(o, "size", json_object_new_int64(sb.st_size));
			json_object_object_add(o, "blocks", json_object_new_int64(sb.st_blocks));
			batch_item_end(b, o, 1);
		}
		goto sync_done;
	}
	r = scan_adopt(fd, h->cfg->site, &it->st, err, sizeof(err));
	if (r < 0) {
		batch_fail(b, path, "%s", err);
		goto sync_done;
	}
	/* A copy carrying another file's fid is given its own before anything acts on it. */
	if (r == 0 && (r = dupfid_check(h, vol, rel, fd, &sb, &it->st)) < 0) {
		batch_fail(b, path, "carries the fid of another file and could not get its own");
		goto sync_done;
	}
	if (r == 1)
		ops_note_fd(it, fd, NULL, CAT_J_CREATE);
	if (b->verb == V_ARCHIVE) {
		char why[256];

		if (policy_engine_excluded(h, vol, rel, &sb, &it->st, why, sizeof(why))) {
			batch_fail(b, path, "excluded by the policy (%s): never archived", why);
			goto sync_done;
		}
	}
	if (b->verb == V_PIN || b->verb == V_UNPIN) {
		struct json_object *o;

		if (b->verb == V_PIN)
			it->st.flags |= HSM_FLAG_PINNED;
		else
			it->st.flags &= (uint8_t)~HSM_FLAG_PINNED;
		if (ops_write_state(fd, &it->st) < 0) {
			batch_fail(b, path, "write state: %s", strerror(errno));
			goto sync_done;
		}
		ops_note_fd(it, fd, NULL, CAT_J_ATTRIB);
		o = ops_item_obj(path, 1, NULL);
		json_object_object_add(o, "flags", ops_flags_obj(it->st.flags));
		batch_item_end(b, o, 1);
		goto sync_done;
	}
	if ((b->verb == V_RECALL && it->st.state != HSM_STATE_STUB) ||
	    (b->verb == V_RELEASE && it->st.state == HSM_STATE_STUB)) {
		struct json_object *o = ops_item_obj(path, 1, NULL);

		json_object_object_add(o, b->verb == V_RECALL ? "bytes" : "freed",
				       json_object_new_int64(0));
		batch_item_end(b, o, 1);
		goto sync_done;
	}
	ai = calloc(1, sizeof(*ai));
	if (!ai)
		fatalx("out of memory");
	ai->it = it;
	/* Release keeps no second descriptor: the note uses the release's own fstat. */
	ai->fd = -1;
	if (b->verb != V_RELEASE && (ai->fd = dup(fd)) < 0) {
		batch_fail(b, path, "dup: %s", strerror(errno));
		free(ai);
		goto sync_done;
	}
	b->active++;
	switch (b->verb) {
	case V_ARCHIVE:
		archive_file(&h->mv, fd, &it->st, ops_archived, ai);
		break;
	case V_RELEASE: {
		struct cat_record rec;
		struct timespec ct = {0, 0};

		if (catalog_get(h->cat, &it->st.fid, &rec, err, sizeof(err)) == 0) {
			if (rec.archived_version == it->st.archived_version) {
				ct.tv_sec = rec.archived_ctime_sec;
				ct.tv_nsec = rec.archived_ctime_nsec;
			}
			cat_record_clear(&rec);
		}
		if (it->vol->cfg->recall == HSM_RECALL_ACCESS)
			it->st.flags |= HSM_FLAG_ON_ACCESS;
		else
			it->st.flags &= (uint8_t)~HSM_FLAG_ON_ACCESS;
		intercept_hold(h, &it->st.fid);
		release_file(&h->mv, fd, &it->st, ct, ops_released, ai);
		break;
	}
	default:
		recall_file(&h->mv, fd, &it->st, ops_recalled, ai);
		break;
	}
	return 0;
sync_done:
	close(fd);
	free(it);
	return 1;
}

static void batch_free(struct batch *b)
{
	for (size_t i = 0; i < b->npaths; i++)
		free(b->paths[i]);
	free(b->paths);
	free(b->lens);
	free(b);
}

static void batch_pump(struct batch *b)
{
	/* Synchronous items finish inside item_start: loop here, do not recurse. */
	if (b->pumping)
		return;
	b->pumping = 1;
	while (b->next < b->npaths && b->active < b->jobs) {
		item_start(b, b->paths[b->next], b->lens[b->next]);
		b->next++;
	}
	b->pumping = 0;
	if (b->next == b->npaths && b->active == 0) {
		char msg[64];

		snprintf(msg, sizeof(msg), "%u of %zu failed", b->failed, b->npaths);
		if (b->c)
			ctl_end(b->c, b->failed == 0, b->done, b->failed, b->failed ? msg : NULL,
				NULL);
		else
			b->done_cb(b->done_arg, b->failed == 0, b->first_error);
		batch_free(b);
	}
}

int ops_run_file(struct hsmd *h, const char *verb, const char *path, ops_done_cb cb, void *arg)
{
	struct batch *b = calloc(1, sizeof(*b));

	if (!b)
		return -1;
	b->verb = -1;
	for (size_t i = 0; i < sizeof(ops_file_verbs) / sizeof(ops_file_verbs[0]); i++) {
		if (!strcmp(verb, ops_file_verbs[i].name)) {
			b->verb = ops_file_verbs[i].verb;
			b->open_flags = ops_file_verbs[i].open_flags;
		}
	}
	b->paths = calloc(1, sizeof(*b->paths));
	b->lens = calloc(1, sizeof(*b->lens));
	if (b->verb < 0 || !b->paths || !b->lens || !(b->paths[0] = strdup(path))) {
		batch_free(b);
		return -1;
	}
	b->lens[0] = strlen(path);
	b->npaths = 1;
	b->h = h;
	b->jobs = 1;
	b->done_cb = cb;
	b->done_arg = arg;
	batch_pump(b);
	return 0;
}

/* ---- status and metrics ---- */

struct ops_counts {
	struct hsmd *h;
	uint64_t files[HSM_VOLUMES_MAX][4], bytes[HSM_VOLUMES_MAX][4];
};

static int ops_count_cb(const struct cat_record *rec, void *arg)
{
	struct ops_counts *oc = arg;

	for (size_t i = 0; i < oc->h->nvols; i++) {
		if (strcmp(oc->h->vols[i].cfg->name, rec->volume) == 0 && rec->state >= 1 &&
		    rec->state <= 3) {
			oc->files[i][rec->state]++;
			oc->bytes[i][rec->state] += rec->size;
		}
	}
	return 0;
}

static struct json_object *ops_by_state(const uint64_t v[4])
{
	struct json_object *o = json_object_new_object();

	for (int s = 1; s <= 3; s++)
		json_object_object_add(o, hsm_state_name(s), json_object_new_int64((int64_t)v[s]));
	return o;
}

static int ops_counts(struct hsmd *h, struct ops_counts *oc, char *err, size_t errlen)
{
	memset(oc, 0, sizeof(*oc));
	oc->h = h;
	return catalog_foreach(h->cat, ops_count_cb, oc, err, errlen);
}

static void ops_status(struct hsmd *h, struct ctl_conn *c)
{
	struct json_object *r = json_object_new_object(), *vols = json_object_new_array();
	struct json_object *q = json_object_new_object();
	struct ops_counts *oc = malloc(sizeof(*oc));
	char err[512];

	if (!oc || ops_counts(h, oc, err, sizeof(err)) < 0) {
		json_object_put(r);
		json_object_put(vols);
		json_object_put(q);
		free(oc);
		ctl_end(c, 0, 0, 0, oc ? err : "out of memory", NULL);
		return;
	}
	json_object_object_add(r, "site", json_object_new_string(h->cfg->site));
	json_object_object_add(r, "version", json_object_new_string(PACKAGE_VERSION));
	json_object_object_add(r, "store", json_object_new_string(store_describe(h->store)));
	for (size_t i = 0; i < h->nvols; i++) {
		struct json_object *v = json_object_new_object();

		json_object_object_add(v, "name", json_object_new_string(h->vols[i].cfg->name));
		json_object_object_add(v, "path", json_object_new_string(h->vols[i].cfg->path));
		json_object_object_add(v, "files", ops_by_state(oc->files[i]));
		json_object_object_add(v, "bytes", ops_by_state(oc->bytes[i]));
		json_object_array_add(vols, v);
	}
	json_object_object_add(r, "volumes", vols);
	json_object_object_add(q, "recall", json_object_new_int64(recall_active(&h->mv)));
	json_object_object_add(q, "pool", json_object_new_int64(pool_pending(h->pool)));
	json_object_object_add(q, "store", json_object_new_int64(store_pending(h->store)));
	json_object_object_add(r, "queues", q);
	json_object_object_add(r, "recalls_done",
			       json_object_new_int64((int64_t)h->mv.recalls_done));
	json_object_object_add(r, "recalls_failed",
			       json_object_new_int64((int64_t)h->mv.recalls_failed));
	json_object_object_add(r, "scanning", json_object_new_boolean(h->scanning > 0));
	json_object_object_add(r, "uptime",
			       json_object_new_int64((int64_t)(time(NULL) - h->started)));
	/* 0 while the guard is away: the volumes then fail open if hsmd stops. */
	json_object_object_add(r, "guard_pid", json_object_new_int(guard_link_pid(h->guard)));
	free(oc);
	ctl_end(c, 1, 0, 0, NULL, r);
}

static void ops_metrics(struct hsmd *h, struct ctl_conn *c)
{
	struct ops_counts *oc = malloc(sizeof(*oc));
	struct json_object *r;
	char err[512], *buf = NULL;
	size_t len = 0;
	FILE *f;

	if (!oc || ops_counts(h, oc, err, sizeof(err)) < 0) {
		free(oc);
		ctl_end(c, 0, 0, 0, oc ? err : "out of memory", NULL);
		return;
	}
	f = open_memstream(&buf, &len);
	if (!f) {
		free(oc);
		ctl_end(c, 0, 0, 0, "out of memory", NULL);
		return;
	}
	{
		struct peer_data_stats pds;
		uint64_t applied = 0, wakeups = 0;

		peer_data_stats(&pds);
		applied = nsync_applied(h->ns);
		wakeups = nsync_feed_wakeups(h->ns);
		const struct {
			const char *name, *type, *help;
			uint64_t v;
		} m[] = {
		    {"hsm_recalls_total", "counter", "Recalls finished.", h->mv.recalls_done},
		    {"hsm_recalls_failed_total", "counter", "Recalls that failed.",
		     h->mv.recalls_failed},
		    {"hsm_recall_bytes_total", "counter", "Bytes recalled.", h->mv.bytes_recalled},
		    {"hsm_archives_total", "counter", "Archives finished.", h->mv.archives_done},
		    {"hsm_archives_failed_total", "counter", "Archives that failed.",
		     h->mv.archives_failed},
		    {"hsm_archive_bytes_total", "counter", "Bytes archived.", h->mv.bytes_archived},
		    {"hsm_chunks_uploaded_total", "counter", "Chunk objects uploaded.",
		     h->mv.chunks_uploaded},
		    {"hsm_releases_total", "counter", "Releases finished.", h->mv.releases_done},
		    {"hsm_releases_failed_total", "counter", "Releases refused or failed.",
		     h->mv.releases_failed},
		    {"hsm_released_bytes_total", "counter", "Bytes freed by release.",
		     h->mv.bytes_released},
		    {"hsm_events_total", "counter", "Permission events received.", h->ev_perm},
		    {"hsm_events_denied_total", "counter", "Permission events denied (EIO).",
		     h->ev_denied},
		    {"hsm_recalls_active", "gauge", "Recalls in flight.", recall_active(&h->mv)},
		    {"hsm_events_from_guard_total", "counter",
		     "Accesses hsmd-guard held while no hsmd ran, taken over by this one.",
		     h->ev_from_guard},
		    {"hsm_guard_attached", "gauge", "1 while attached to hsmd-guard.",
		     (uint64_t)guard_link_attached(h->guard)},
		    {"hsm_recalls_from_peers_total", "counter", "Recalls served by another site.",
		     h->mv.recalls_from_peers},
		    {"hsm_recall_bytes_from_peers_total", "counter",
		     "Bytes recalled from other sites.", h->mv.bytes_from_peers},
		    {"hsm_recall_source_failures_total", "counter",
		     "Recall sources that failed and handed over to the next.",
		     h->mv.source_failures},
		    {"hsm_peer_bytes_served_total", "counter", "Chunk bytes served to other sites.",
		     pds.bytes_served},
		    {"hsm_peer_manifests_hashed_total", "counter",
		     "Manifests computed for other sites (cache misses).", pds.manifests_hashed},
		    {"hsm_sync_records_applied_total", "counter",
		     "Namespace records from peers applied here.", applied},
		    {"hsm_sync_feed_wakeups_total", "counter",
		     "Peers' long-polls of this site's feed answered at once by a change.",
		     wakeups},
		};

		for (size_t i = 0; i < sizeof(m) / sizeof(m[0]); i++)
			fprintf(f, "# HELP %s %s\n# TYPE %s %s\n%s %llu\n", m[i].name, m[i].help,
				m[i].name, m[i].type, m[i].name, (unsigned long long)m[i].v);
	}
	fprintf(f, "# HELP hsm_files Files by volume and state.\n# TYPE hsm_files gauge\n");
	for (size_t i = 0; i < h->nvols; i++)
		for (int s = 1; s <= 3; s++)
			fprintf(f, "hsm_files{volume=\"%s\",state=\"%s\"} %llu\n",
				h->vols[i].cfg->name, hsm_state_name(s),
				(unsigned long long)oc->files[i][s]);
	fprintf(f, "# HELP hsm_bytes File bytes by volume and state.\n# TYPE hsm_bytes gauge\n");
	for (size_t i = 0; i < h->nvols; i++)
		for (int s = 1; s <= 3; s++)
			fprintf(f, "hsm_bytes{volume=\"%s\",state=\"%s\"} %llu\n",
				h->vols[i].cfg->name, hsm_state_name(s),
				(unsigned long long)oc->bytes[i][s]);
	fclose(f);
	free(oc);
	r = json_object_new_object();
	json_object_object_add(r, "text", json_object_new_string_len(buf, (int)len));
	free(buf);
	ctl_end(c, 1, 0, 0, NULL, r);
}

/* ---- dispatch ---- */

static int ops_take_paths(struct batch *b, struct json_object *paths, char *err, size_t errlen)
{
	size_t n;

	if (!paths || !json_object_is_type(paths, json_type_array)) {
		snprintf(err, errlen, "\"paths\" must be an array of strings");
		return -1;
	}
	n = json_object_array_length(paths);
	if (n == 0) {
		snprintf(err, errlen, "no paths given");
		return -1;
	}
	if (n > 1000000) {
		snprintf(err, errlen, "too many paths in one request (max 1000000)");
		return -1;
	}
	b->paths = calloc(n, sizeof(*b->paths));
	b->lens = calloc(n, sizeof(*b->lens));
	if (!b->paths || !b->lens) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	for (size_t i = 0; i < n; i++) {
		struct json_object *p = json_object_array_get_idx(paths, i);
		const char *s;
		int len;

		if (!json_object_is_type(p, json_type_string)) {
			snprintf(err, errlen, "paths[%zu] is not a string", i);
			return -1;
		}
		s = json_object_get_string(p);
		len = json_object_get_string_len(p);
		/* A NUL inside survives as a shorter string and is refused per item. */
		b->paths[i] = malloc((size_t)len + 1);
		if (!b->paths[i]) {
			snprintf(err, errlen, "out of memory");
			return -1;
		}
		memcpy(b->paths[i], s, (size_t)len);
		b->paths[i][len] = '\0';
		b->lens[i] = (size_t)len;
		b->npaths++;
	}
	return 0;
}

int ops_open_one(struct hsmd *h, struct ctl_conn *c, struct json_object *req, const char *what,
		 struct hsmd_vol **v, const char **path, const char **rel)
{
	struct json_object *paths, *p;
	char err[512];
	int fd;

	if (!json_object_object_get_ex(req, "paths", &paths) ||
	    !json_object_is_type(paths, json_type_array) || json_object_array_length(paths) != 1 ||
	    !(p = json_object_array_get_idx(paths, 0)) ||
	    !json_object_is_type(p, json_type_string)) {
		snprintf(err, sizeof(err), "%s takes exactly one path", what);
		ctl_end(c, 0, 0, 0, err, NULL);
		return -1;
	}
	*path = json_object_get_string(p);
	if (path_check_absolute(*path, (size_t)json_object_get_string_len(p), err, sizeof(err)) <
	    0) {
		ctl_end(c, 0, 0, 0, err, NULL);
		return -1;
	}
	*v = hsmd_vol_for(h, *path, rel);
	if (!*v || !(*rel)[0]) {
		ctl_end(c, 0, 0, 0, "not a file in a managed volume", NULL);
		return -1;
	}
	fd = path_open_beneath((*v)->root_fd, *rel, O_RDONLY | O_NONBLOCK | O_CLOEXEC, 0);
	if (fd < 0) {
		snprintf(err, sizeof(err), "%s: %s", *path, strerror(errno));
		ctl_end(c, 0, 0, 0, err, NULL);
	}
	return fd;
}

/* "sites": the order recall would try the sources of one file in, with their health. */
static void ops_sites(struct hsmd *h, struct ctl_conn *c, struct json_object *req)
{
	struct json_object *r;
	struct hsm_state st;
	struct hsmd_vol *v;
	const char *path, *rel;
	char err[256];
	int fd = ops_open_one(h, c, req, "sites", &v, &path, &rel);

	if (fd < 0)
		return;
	if (scan_adopt(fd, h->cfg->site, &st, err, sizeof(err)) < 0) {
		close(fd);
		ctl_end(c, 0, 0, 0, err, NULL);
		return;
	}
	close(fd);
	r = json_object_new_object();
	json_object_object_add(r, "path", json_object_new_string(path));
	json_object_object_add(r, "state", json_object_new_string(hsm_state_name(st.state)));
	json_object_object_add(r, "owner", json_object_new_string(st.owner));
	json_object_object_add(r, "version", json_object_new_int64((int64_t)st.version));
	json_object_object_add(r, "sources", sources_describe(h, v->cfg->name, &st));
	ctl_end(c, 1, 0, 0, NULL, r);
}

void ops_dispatch(struct hsmd *h, struct ctl_conn *c, struct json_object *req)
{
	struct json_object *v, *verb, *paths = NULL, *opts = NULL, *jobs;
	const char *name;
	struct batch *b;
	char err[256];

	if (json_object_object_get_ex(req, "v", &v) &&
	    (!json_object_is_type(v, json_type_int) || json_object_get_int(v) != 1)) {
		ctl_end(c, 0, 0, 0, "unsupported protocol version (this hsmd speaks 1)", NULL);
		return;
	}
	if (!json_object_object_get_ex(req, "verb", &verb) ||
	    !json_object_is_type(verb, json_type_string)) {
		ctl_end(c, 0, 0, 0, "malformed request: no \"verb\" string", NULL);
		return;
	}
	name = json_object_get_string(verb);
	if (!strcmp(name, "status")) {
		ops_status(h, c);
		return;
	}
	if (!strcmp(name, "metrics")) {
		ops_metrics(h, c);
		return;
	}
	if (!strcmp(name, "conflicts") || !strcmp(name, "peers")) {
		struct json_object *r = json_object_new_object();

		json_object_object_add(
		    r, name, name[0] == 'c' ? nsync_conflicts(h->ns) : nsync_status(h->ns));
		ctl_end(c, 1, 0, 0, NULL, r);
		return;
	}
	if (!strcmp(name, "sites")) {
		ops_sites(h, c, req);
		return;
	}
	if (!strcmp(name, "policy")) {
		policy_engine_request(h, c, req);
		return;
	}
	b = calloc(1, sizeof(*b));
	if (!b) {
		ctl_end(c, 0, 0, 0, "out of memory", NULL);
		return;
	}
	b->verb = -1;
	for (size_t i = 0; i < sizeof(ops_file_verbs) / sizeof(ops_file_verbs[0]); i++) {
		if (!strcmp(name, ops_file_verbs[i].name)) {
			b->verb = ops_file_verbs[i].verb;
			b->open_flags = ops_file_verbs[i].open_flags;
		}
	}
	if (b->verb < 0) {
		snprintf(err, sizeof(err), "unknown verb '%.64s'", name);
		goto fail;
	}
	b->h = h;
	b->c = c;
	b->jobs = 4;
	json_object_object_get_ex(req, "paths", &paths);
	if (json_object_object_get_ex(req, "opts", &opts) && opts) {
		if (!json_object_is_type(opts, json_type_object)) {
			snprintf(err, sizeof(err), "\"opts\" must be an object");
			goto fail;
		}
		if (json_object_object_get_ex(opts, "jobs", &jobs)) {
			int j = json_object_get_int(jobs);

			if (!json_object_is_type(jobs, json_type_int) || j < 1 || j > 64) {
				snprintf(err, sizeof(err), "opts.jobs must be 1..64");
				goto fail;
			}
			b->jobs = (unsigned)j;
		}
	}
	if (ops_take_paths(b, paths, err, sizeof(err)) < 0)
		goto fail;
	/* Synchronous verbs need no limit. */
	if (b->verb == V_STATE || b->verb == V_PIN || b->verb == V_UNPIN)
		b->jobs = 1;
	batch_pump(b);
	return;
fail:
	batch_free(b);
	ctl_end(c, 0, 0, 0, err, NULL);
}
