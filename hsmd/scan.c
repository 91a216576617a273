#include "hsmd/scan.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "hsmd/catalog.h"
#include "hsmd/dupfid.h"
#include "hsmd/emptied.h"
#include "hsmd/nsync.h"
#include "hsmd/worker.h"
#include "lib/config.h"
#include "lib/log.h"
#include "lib/pathsafe.h"
#include "lib/pool.h"
#include "recall/recall.h"

int scan_adopt(int fd, const char *site, struct hsm_state *st, char *err, size_t errlen)
{
	uint8_t rec[HSM_XATTR_MAX];
	ssize_t n;
	int len;

	for (int attempt = 0; attempt < 2; attempt++) {
		n = fgetxattr(fd, HSM_XATTR_NAME, rec, sizeof(rec));
		if (n >= 0)
			return hsmx_decode(rec, (size_t)n, st, err, errlen) < 0 ? -1 : 0;
		if (errno != ENODATA) {
			snprintf(err, errlen, "read state record: %s", strerror(errno));
			return -1;
		}
		memset(st, 0, sizeof(*st));
		st->state = HSM_STATE_RESIDENT;
		st->version = 1;
		snprintf(st->owner, sizeof(st->owner), "%s", site);
		st->nvv = 1;
		snprintf(st->vv[0].site, sizeof(st->vv[0].site), "%s", site);
		st->vv[0].counter = 1;
		if (hsm_fid_generate(&st->fid) < 0) {
			snprintf(err, errlen, "cannot make a fid: %s", strerror(errno));
			return -1;
		}
		len = hsmx_encode(st, rec, sizeof(rec));
		if (len < 0) {
			snprintf(err, errlen, "cannot encode a state record");
			return -1;
		}
		if (fsetxattr(fd, HSM_XATTR_NAME, rec, (size_t)len, XATTR_CREATE) == 0)
			return 1;
		if (errno != EEXIST) {
			snprintf(err, errlen, "write state record: %s", strerror(errno));
			return -1;
		}
	}
	snprintf(err, errlen, "state record keeps changing");
	return -1;
}

/* 1 if the record's name old->path, in volume v, still names the inode sb describes. */
static int scan_names_inode(struct hsmd_vol *v, const struct cat_record *old, const struct stat *sb)
{
	struct stat o;

	if (strcmp(old->volume, v->cfg->name) ||
	    fstatat(v->root_fd, old->path, &o, AT_SYMLINK_NOFOLLOW) < 0)
		return 0;
	return o.st_dev == sb->st_dev && o.st_ino == sb->st_ino;
}

void scan_note(struct hsmd *h, struct hsmd_vol *v, const char *rel, const struct stat *sb,
	       const struct hsm_state *st_in, const struct timespec *archived_ctime, int op)
{
	struct cat_record rec, old;
	struct hsm_state cur = *st_in, *st = &cur;
	char err[512];
	int have_old, dup;

	/* A copy that brought its original's fid is given its own before the namespace or
	 * the catalog file it under the original's record. */
	have_old = catalog_get(h->cat, &st->fid, &old, err, sizeof(err));
	if (have_old < 0)
		log_warnx("catalog: %s", err);
	dup = dupfid_check_known(h, v, rel, -1, sb, st, have_old == 0 ? &old : NULL);
	if (have_old == 0 && dup != 0)
		cat_record_clear(&old);
	if (dup < 0)
		return;
	if (dup == 1) {
		have_old = catalog_get(h->cat, &st->fid, &old, err, sizeof(err));
		if (have_old < 0)
			log_warnx("catalog: %s", err);
		if (op != CAT_J_STATE)
			op = CAT_J_CREATE;
	}

	/* A hard link is a second name of the same inode, so of the same state record and
	 * fid: one file, one record. Noted under the new name it would move the record
	 * there and tell the other sites the file was renamed; so while the record's name
	 * still names this inode the new one is only indexed, and the file is noted under
	 * the record's name. */
	if (have_old == 0 && sb->st_nlink > 1 && strcmp(old.path, rel) &&
	    scan_names_inode(v, &old, sb)) {
		if (catalog_link_path(h->cat, v->cfg->name, rel, &st->fid, err, sizeof(err)) < 0)
			log_warnx("catalog: %s: %s", rel, err);
		rel = old.path;
		if (op == CAT_J_CREATE)
			op = 0;
	}

	/* The namespace first: a content change gets its new version there. */
	nsync_note(h, v, rel, sb, st);

	memset(&rec, 0, sizeof(rec));
	rec.fid = st->fid;
	snprintf(rec.volume, sizeof(rec.volume), "%s", v->cfg->name);
	rec.path = (char *)rel;
	rec.state = st->state;
	rec.flags = st->flags;
	rec.size = (uint64_t)sb->st_size;
	rec.version = st->version;
	rec.archived_version = st->archived_version;
	rec.mtime_sec = sb->st_mtim.tv_sec;
	rec.mtime_nsec = (uint32_t)sb->st_mtim.tv_nsec;
	memcpy(rec.manifest_id, st->manifest_id, 32);
	snprintf(rec.owner, sizeof(rec.owner), "%.*s", HSM_SITE_MAX, st->owner);
	rec.ino = (uint64_t)sb->st_ino;
	if (archived_ctime && !dup) {
		rec.archived_ctime_sec = archived_ctime->tv_sec;
		rec.archived_ctime_nsec = (uint32_t)archived_ctime->tv_nsec;
	} else if (have_old == 0 && old.archived_version == st->archived_version) {
		rec.archived_ctime_sec = old.archived_ctime_sec;
		rec.archived_ctime_nsec = old.archived_ctime_nsec;
	}
	if (op == CAT_J_CREATE && have_old == 0)
		op = strcmp(old.path, rel) ? CAT_J_RENAME : 0;
	if (have_old == 0) {
		/* The start-up scan re-notes every file: write only what changed. */
		int same =
		    op == 0 && !strcmp(old.path, rel) && !strcmp(old.volume, rec.volume) &&
		    old.state == rec.state && old.flags == rec.flags && old.size == rec.size &&
		    old.version == rec.version && old.archived_version == rec.archived_version &&
		    old.mtime_sec == rec.mtime_sec && old.mtime_nsec == rec.mtime_nsec &&
		    old.archived_ctime_sec == rec.archived_ctime_sec &&
		    old.archived_ctime_nsec == rec.archived_ctime_nsec && old.ino == rec.ino &&
		    !memcmp(old.manifest_id, rec.manifest_id, 32) && !strcmp(old.owner, rec.owner);

		if (same) {
			cat_record_clear(&old);
			return;
		}
	}
	if (catalog_put(h->cat, &rec, op, err, sizeof(err)) < 0)
		log_warnx("catalog: %s: %s", rel, err);
	if (have_old == 0)
		cat_record_clear(&old); /* after the put: rel may point into it */
}

void scan_note_recalled(struct hsmd *h, const struct hsm_state *st, const struct timespec *ctime)
{
	struct cat_record rec;
	char err[512];
	int r = catalog_get(h->cat, &st->fid, &rec, err, sizeof(err));
	int archived = st->state == HSM_STATE_ARCHIVED;

	if (r != 0) {
		if (r < 0)
			log_warnx("catalog: %s", err);
		return;
	}
	/* The xattr the recall wrote is the truth: a copy from a peer of a version the
	 * store never got is resident, and counting it archived would tell the admin a
	 * copy exists that does not. */
	rec.state = st->state;
	rec.flags = st->flags;
	rec.archived_version = st->archived_version;
	rec.archived_ctime_sec = archived && ctime ? ctime->tv_sec : 0;
	rec.archived_ctime_nsec = archived && ctime ? (uint32_t)ctime->tv_nsec : 0;
	if (catalog_put(h->cat, &rec, CAT_J_STATE, err, sizeof(err)) < 0)
		log_warnx("catalog: %s: %s", rec.path, err);
	cat_record_clear(&rec);
}

/* What the walk found, handed from the pool to the loop. */
struct scan_found {
	char *rel;
	struct stat sb;
	struct hsm_state st;
};

struct scan_job {
	struct hsmd *h;
	struct hsmd_vol *v;
	char site[HSM_SITE_MAX + 1];
	int root_fd; /* the volume's admin root; not owned */
	struct scan_found *found;
	size_t n, cap, noted;
	unsigned adopted, errors;
};

static void scan_add(struct scan_job *j, const char *rel, const struct stat *sb,
		     const struct hsm_state *st)
{
	if (j->n == j->cap) {
		size_t cap = j->cap ? j->cap * 2 : 1024;
		struct scan_found *f = realloc(j->found, cap * sizeof(*f));

		if (!f) {
			j->errors++;
			return;
		}
		j->found = f;
		j->cap = cap;
	}
	j->found[j->n].rel = strdup(rel);
	if (!j->found[j->n].rel) {
		j->errors++;
		return;
	}
	j->found[j->n].sb = *sb;
	j->found[j->n].st = *st;
	j->n++;
}

/* Reading a directory sets its atime unless opened O_NOATIME: the start-up scan would
 * leave every directory of the volume "accessed" by hsmd. EPERM: not ours to ask. */
static int scan_opendir(int at, const char *name)
{
	int flags = O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC;
	int fd = openat(at, name, flags | O_NOATIME);

	return fd < 0 && errno == EPERM ? openat(at, name, flags) : fd;
}

static void scan_dir(struct scan_job *j, int dfd, const char *rel, dev_t dev, int depth)
{
	DIR *d = fdopendir(dfd);
	struct dirent *e;

	if (!d) {
		log_warn("scan: %s/%s", j->v->cfg->path, rel);
		close(dfd);
		j->errors++;
		return;
	}
	while ((e = readdir(d))) {
		char path[4097];
		struct stat sb;
		int fd;

		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		if (snprintf(path, sizeof(path), "%s%s%s", rel, *rel ? "/" : "", e->d_name) >=
		    (int)sizeof(path))
			continue;
		if (fstatat(dirfd(d), e->d_name, &sb, AT_SYMLINK_NOFOLLOW) < 0 || sb.st_dev != dev)
			continue;
		if (S_ISDIR(sb.st_mode)) {
			if (depth > 256)
				continue;
			fd = scan_opendir(dirfd(d), e->d_name);
			if (fd >= 0)
				scan_dir(j, fd, path, dev, depth + 1);
		} else if (S_ISREG(sb.st_mode)) {
			struct hsm_state st;
			char err[256];
			int r;

			fd = openat(dirfd(d), e->d_name,
				    O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
			if (fd < 0)
				continue;
			r = scan_adopt(fd, j->site, &st, err, sizeof(err));
			if (r < 0) {
				log_warnx("scan: %s/%s: %s", j->v->cfg->path, path, err);
				j->errors++;
			} else {
				j->adopted += (unsigned)r;
				if (fstat(fd, &sb) == 0)
					scan_add(j, path, &sb, &st);
			}
			close(fd);
		}
	}
	closedir(d);
}

static void scan_work(void *arg)
{
	struct scan_job *j = arg;
	struct stat sb;
	int fd = scan_opendir(j->root_fd, ".");

	if (fd < 0 || fstat(fd, &sb) < 0) {
		log_warn("scan: volume %s", j->v->cfg->name);
		if (fd >= 0)
			close(fd);
		return;
	}
	scan_dir(j, fd, "", sb.st_dev, 0);
}

static int scan_stub_touched(const struct scan_found *f)
{
	blkcnt_t keep = (f->st.flags & HSM_FLAG_ON_ACCESS) ? 4096 / 512 : 0;

	/* Only data says a recall was under way: a stub's mtime may be a user's touch, and
	 * a stub of another site's version never archived has no archived mtime at all. */
	return f->st.state == HSM_STATE_STUB && f->sb.st_blocks > keep;
}

/* The mtime a stub had before a recall wrote into it: the archived version's, or for a
 * version only a peer holds, what the catalog last noted (hsmd's own writes are not
 * noted). 0 if neither is known: then the mtime is left as it is. */
static int scan_stub_mtime(struct hsmd *h, const struct hsm_state *st, struct timespec *out)
{
	struct cat_record rec;
	char err[256];
	int ok = 0;

	if (st->archived_version && st->archived_version == st->version) {
		out->tv_sec = st->archived_mtime_sec;
		out->tv_nsec = st->archived_mtime_nsec;
		return 1;
	}
	if (catalog_get(h->cat, &st->fid, &rec, err, sizeof(err)) != 0)
		return 0;
	if (rec.version == st->version) {
		out->tv_sec = rec.mtime_sec;
		out->tv_nsec = rec.mtime_nsec;
		ok = 1;
	}
	cat_record_clear(&rec);
	return ok;
}

/* A recall that died with its worker left data and a new mtime on a stub. Put the
 * stub back as release made it. On the loop, so no recall of it can be running. */
static void scan_repair_stub(struct hsmd *h, struct hsmd_vol *v, const char *rel)
{
	struct hsm_state st;
	struct stat sb;
	struct timespec times[2];
	char err[256];
	off_t keep, end;
	int fd = path_open_beneath(v->root_fd, rel, O_RDWR | O_NONBLOCK, 0);

	if (fd < 0)
		return;
	if (scan_adopt(fd, h->cfg->site, &st, err, sizeof(err)) != 0 ||
	    st.state != HSM_STATE_STUB || recall_in_flight(&h->mv, &st.fid) || fstat(fd, &sb) < 0)
		goto out;
	keep = (st.flags & HSM_FLAG_ON_ACCESS) ? 4096 : 0;
	end = ((sb.st_size + 65535) / 65536) * 65536;
	times[0] = sb.st_atim;
	if (!scan_stub_mtime(h, &st, &times[1]))
		times[1] = (struct timespec){0, UTIME_OMIT};
	if ((end > keep &&
	     fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, keep, end - keep) < 0) ||
	    futimens(fd, times) < 0 || fsync(fd) < 0)
		log_warn("%s/%s: cannot clean up an interrupted recall", v->cfg->path, rel);
	else
		log_info("%s/%s: cleaned up an interrupted recall", v->cfg->path, rel);
out:
	close(fd);
}

/* A recall-on-access stub emptied by an open with O_TRUNC while hsmd was away is an
 * empty file (hsmd/emptied.h), not an interrupted recall: 1 if it was one. */
static int scan_stub_emptied(struct hsmd *h, struct hsmd_vol *v, struct scan_found *f)
{
	int fd, r;

	if (f->st.state != HSM_STATE_STUB || !(f->st.flags & HSM_FLAG_ON_ACCESS) ||
	    f->sb.st_size != 0 || !f->st.archived_size)
		return 0;
	fd = path_open_beneath(v->root_fd, f->rel, O_RDONLY | O_NONBLOCK, 0);
	if (fd < 0)
		return 0;
	r = emptied_check(h, fd, &f->st);
	if (r == 1 && fstat(fd, &f->sb) < 0)
		log_warn("%s/%s: stat", v->cfg->path, f->rel);
	close(fd);
	return r;
}

static void scan_done(void *arg)
{
	struct scan_job *j = arg;
	size_t stop = j->noted + 256 < j->n ? j->noted + 256 : j->n;

	/* A slice at a time, so readers waiting on events are answered in between. */
	for (; j->noted < stop; j->noted++) {
		struct scan_found *f = &j->found[j->noted];

		/* Before the repair: a copy of a stub with the data in it is no stub. */
		if (dupfid_check(j->h, j->v, f->rel, -1, &f->sb, &f->st) < 0) {
			free(f->rel);
			continue;
		}
		if (scan_stub_emptied(j->h, j->v, f) != 1 && scan_stub_touched(f))
			scan_repair_stub(j->h, j->v, f->rel);
		scan_note(j->h, j->v, f->rel, &f->sb, &f->st, NULL, CAT_J_CREATE);
		free(f->rel);
	}
	if (j->noted < j->n) {
		pool_submit(j->h->pool, NULL, scan_done, j);
		return;
	}
	log_info("scan of volume %s: %zu files, %u newly managed, %u errors", j->v->cfg->name, j->n,
		 j->adopted, j->errors);
	j->h->scanning--;
	free(j->found);
	free(j);
}

void scan_start(struct hsmd *h)
{
	for (size_t i = 0; i < h->nvols; i++) {
		struct scan_job *j = calloc(1, sizeof(*j));

		if (!j)
			fatalx("out of memory");
		j->h = h;
		j->v = &h->vols[i];
		j->root_fd = h->vols[i].root_fd;
		snprintf(j->site, sizeof(j->site), "%s", h->cfg->site);
		h->scanning++;
		pool_submit(h->pool, scan_work, scan_done, j);
	}
}
