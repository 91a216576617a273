#include "hsmd/dupfid.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "hsmd/catalog.h"
#include "hsmd/worker.h"
#include "lib/config.h"
#include "lib/log.h"
#include "lib/pathsafe.h"

/* On-access stubs keep their first page (recall/release.c). */
#define DUPFID_KEEP_ON_ACCESS 4096

struct hsmd_vol *dupfid_vol_of_dev(struct hsmd *h, dev_t dev)
{
	for (size_t i = 0; i < h->nvols; i++)
		if (h->vols[i].dev == dev)
			return &h->vols[i];
	return NULL;
}

static struct hsmd_vol *dupfid_vol_named(struct hsmd *h, const char *name)
{
	for (size_t i = 0; i < h->nvols; i++)
		if (!strcmp(h->vols[i].cfg->name, name))
			return &h->vols[i];
	return NULL;
}

static int dupfid_read(int fd, const char *path, struct hsm_state *st)
{
	uint8_t rec[HSM_XATTR_MAX];
	char err[200];
	ssize_t n = fd >= 0 ? fgetxattr(fd, HSM_XATTR_NAME, rec, sizeof(rec))
			    : getxattr(path, HSM_XATTR_NAME, rec, sizeof(rec));

	if (n < 0)
		return -1;
	return hsmx_decode(rec, (size_t)n, st, err, sizeof(err));
}

/* Whether the file the catalog files fid under is still there and still carries fid:
 * then this inode is a copy. Looked at through an O_PATH descriptor, which neither
 * raises a fanotify event nor breaks a lease (the other file may be being released). */
static int dupfid_other_alive(struct hsmd *h, struct hsmd_vol *v, const struct cat_record *rec,
			      const struct hsm_fid *fid, const struct stat *sb)
{
	struct hsmd_vol *ov = dupfid_vol_named(h, rec->volume);
	struct hsm_state ost;
	struct stat osb;
	char proc[64];
	int pfd, alive = 0;

	if (!ov)
		return 0;
	pfd = path_open_beneath(ov->root_fd, rec->path, O_PATH, 0);
	if (pfd < 0)
		return 0; /* gone (a restore puts the file back under its fid) or moved */
	if (fstat(pfd, &osb) < 0 || !S_ISREG(osb.st_mode))
		goto out;
	/* The same inode under another name: a hard link, one file. */
	if (ov == v && osb.st_ino == sb->st_ino)
		goto out;
	/* Another inode now holds that name: the catalog's one moved on or went away. */
	if (rec->ino && osb.st_ino != rec->ino)
		goto out;
	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", pfd);
	alive = dupfid_read(-1, proc, &ost) == 0 && !memcmp(ost.fid.b, fid->b, 16);
out:
	close(pfd);
	return alive;
}

/* Whether fd has data past what a stub keeps: a record that says stub on real data
 * (a copy tool that writes the xattrs after the data) must not lose it. */
static int dupfid_has_data(int fd, const struct hsm_state *st, const struct stat *sb)
{
	off_t keep = (st->flags & HSM_FLAG_ON_ACCESS) ? DUPFID_KEEP_ON_ACCESS : 0;

	if (sb->st_size <= keep)
		return sb->st_size > 0;
	if (lseek(fd, keep, SEEK_DATA) >= 0)
		return 1;
	/* ENXIO: holes only. Anything else: cannot tell, so assume data. */
	return errno != ENXIO;
}

/* The fresh identity of a copy: its bytes are its own, so it is resident at version 1
 * and will be archived like any new file (its chunks are already in the store). Only a
 * copy that really is a stub (no data, say a block-level restore) stays a stub: its
 * data is the archived version its record names, fetched by manifest id. */
static void dupfid_fresh(struct hsmd *h, int fd, const struct stat *sb, const struct hsm_state *cur,
			 struct hsm_state *n, uint64_t version)
{
	memset(n, 0, sizeof(*n));
	n->flags = cur->flags & (HSM_FLAG_PINNED | HSM_FLAG_NOARCHIVE);
	n->version = version;
	if (cur->state == HSM_STATE_STUB && cur->archived_version == cur->version &&
	    !dupfid_has_data(fd, cur, sb)) {
		n->state = HSM_STATE_STUB;
		n->flags |= cur->flags & HSM_FLAG_ON_ACCESS;
		n->archived_version = version;
		n->archived_size = cur->archived_size;
		memcpy(n->manifest_id, cur->manifest_id, 32);
		n->archived_mtime_sec = cur->archived_mtime_sec;
		n->archived_mtime_nsec = cur->archived_mtime_nsec;
	} else {
		n->state = HSM_STATE_RESIDENT;
	}
	snprintf(n->owner, sizeof(n->owner), "%s", h->cfg->site);
	n->nvv = 1;
	snprintf(n->vv[0].site, sizeof(n->vv[0].site), "%s", h->cfg->site);
	n->vv[0].counter = version;
}

/* The fid hsmd gave this path itself before the copy tool wrote its xattr over it (cp
 * creates, writes, then copies the xattrs): reused, so its catalog record is not left
 * behind pointing at a file that no longer carries it. */
static int dupfid_own_earlier(struct hsmd *h, struct hsmd_vol *v, const char *rel,
			      const struct stat *sb, const struct hsm_fid * not,
			      struct hsm_fid *out, uint64_t *version)
{
	struct cat_record r;
	struct hsm_fid f;
	char err[256];
	int ok;

	if (!rel || catalog_lookup_path(h->cat, v->cfg->name, rel, &f, err, sizeof(err)) != 0 ||
	    !memcmp(f.b, not ->b, 16) || catalog_get(h->cat, &f, &r, err, sizeof(err)) != 0)
		return 0;
	ok = r.ino == (uint64_t)sb->st_ino && !strcmp(r.path, rel) &&
	     !strcmp(r.volume, v->cfg->name);
	if (ok) {
		*out = f;
		*version = r.version + 1;
	}
	cat_record_clear(&r);
	return ok;
}

static int dupfid_renew(struct hsmd *h, struct hsmd_vol *v, const char *rel, int fd,
			const struct stat *sb, struct hsm_state *st, const struct cat_record *rec)
{
	struct hsm_state cur, n;
	uint8_t buf[HSM_XATTR_MAX];
	struct stat now;
	uint64_t version = 1;
	char fid[33];
	int own = -1, len, rc = -1;

	if (fd < 0) {
		own = fd = rel ? path_open_beneath(v->root_fd, rel, O_RDONLY | O_NONBLOCK, 0) : -1;
		if (fd < 0) {
			log_warn("%s/%s: open to give a copy its own fid", v->cfg->path,
				 rel ? rel : "?");
			return -1;
		}
	}
	/* The name may have been given to another file since sb was taken. */
	if (fstat(fd, &now) < 0 || now.st_ino != sb->st_ino) {
		log_warnx("%s/%s: changed while checking it for a copied fid", v->cfg->path,
			  rel ? rel : "?");
		goto out;
	}
	if (dupfid_read(fd, NULL, &cur) < 0) {
		log_warn("%s/%s: read state to give a copy its own fid", v->cfg->path,
			 rel ? rel : "?");
		goto out;
	}
	if (memcmp(cur.fid.b, st->fid.b, 16) != 0) {
		/* Someone wrote another record meanwhile: that one is the file's now. */
		*st = cur;
		rc = 0;
		goto out;
	}
	if (!dupfid_own_earlier(h, v, rel, sb, &cur.fid, &n.fid, &version) &&
	    hsm_fid_generate(&n.fid) < 0) {
		log_warn("%s/%s: make a fid", v->cfg->path, rel ? rel : "?");
		goto out;
	}
	{
		struct hsm_fid keep = n.fid;

		dupfid_fresh(h, fd, &now, &cur, &n, version);
		n.fid = keep;
	}
	len = hsmx_encode(&n, buf, sizeof(buf));
	if (len < 0 || fsetxattr(fd, HSM_XATTR_NAME, buf, (size_t)len, XATTR_REPLACE) < 0 ||
	    fsync(fd) < 0) {
		log_warn("%s/%s: write the state of a copy", v->cfg->path, rel ? rel : "?");
		goto out;
	}
	hsm_fid_hex(&n.fid, fid);
	log_info("%s/%s carries the fid of %s/%s (a copy): it is %s now, fid %s", v->cfg->path,
		 rel ? rel : "(inode)", rec->volume, rec->path, hsm_state_name(n.state), fid);
	*st = n;
	rc = 1;
out:
	if (own >= 0)
		close(own);
	return rc;
}

int dupfid_check_known(struct hsmd *h, struct hsmd_vol *v, const char *rel, int fd,
		       const struct stat *sb, struct hsm_state *st, const struct cat_record *known)
{
	if (!known)
		return 0; /* first sight of this fid: it is this file's */
	if (!strcmp(known->volume, v->cfg->name)) {
		if (known->ino && known->ino == (uint64_t)sb->st_ino)
			return 0;
		if (!known->ino && rel && !strcmp(known->path, rel))
			return 0;
	}
	if (!dupfid_other_alive(h, v, known, &st->fid, sb))
		return 0; /* the one it was filed under is gone: a restore, the same file */
	return dupfid_renew(h, v, rel, fd, sb, st, known);
}

int dupfid_check(struct hsmd *h, struct hsmd_vol *v, const char *rel, int fd, const struct stat *sb,
		 struct hsm_state *st)
{
	struct cat_record rec;
	char err[512];
	int r = catalog_get(h->cat, &st->fid, &rec, err, sizeof(err)), rc;

	if (r < 0) {
		log_warnx("catalog: %s", err);
		return 0;
	}
	if (r == 1)
		return 0;
	rc = dupfid_check_known(h, v, rel, fd, sb, st, &rec);
	cat_record_clear(&rec);
	return rc;
}

int dupfid_check_event(struct hsmd *h, int fd, struct hsm_state *st)
{
	struct hsmd_vol *v;
	struct stat sb;

	if (fstat(fd, &sb) < 0 || !(v = dupfid_vol_of_dev(h, sb.st_dev)))
		return 0;
	return dupfid_check(h, v, NULL, fd, &sb, st);
}
