/* Namespace sync, what peers publish: records applied here through the admin mount
 * (never watched), by the worker itself (its own change events are ignored). Each applied
 * record is published in our own feed unchanged: a site that learns of a change from B
 * passes it on to C, and equal version vectors stop the echo. Merge rules: nsrec.h and
 * docs/protocol.md. */
#include "hsmd/nsync.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "hsmd/catalog.h"
#include "hsmd/nsrec.h"
#include "hsmd/nsync_int.h"
#include "hsmd/scan.h"
#include "hsmd/worker.h"
#include "lib/config.h"
#include "lib/log.h"
#include "lib/pathsafe.h"

/* ---- applying remote records ------------------------------------------------------- */

/* The directory that will hold rel (created with its parents when create), and the last
 * component. An fd, or -1 with errno. */
static int ns_parent(struct hsmd_vol *v, const char *rel, int create, const char **name)
{
	char buf[HSM_PATH_MAX + 1], *slash;
	int fd;

	snprintf(buf, sizeof(buf), "%s", rel);
	slash = strrchr(buf, '/');
	*name = slash ? rel + (slash - buf) + 1 : rel;
	if (!slash)
		return fcntl(v->root_fd, F_DUPFD_CLOEXEC, 0);
	*slash = '\0';
	fd = path_open_beneath(v->root_fd, buf, O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
	if (fd >= 0 || errno != ENOENT || !create)
		return fd;
	/* mkdir -p, one component at a time, each beneath the root */
	for (char *p = buf;; p++) {
		if (*p == '/' || *p == '\0') {
			char save = *p;

			*p = '\0';
			if (mkdirat(v->root_fd, buf, 0755) < 0 && errno != EEXIST) {
				int e = errno;

				*p = save;
				errno = e;
				return -1;
			}
			*p = save;
			if (!save)
				break;
		}
	}
	return path_open_beneath(v->root_fd, buf, O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
}

static void ns_state_from_rec(struct hsm_state *st, const struct ns_rec *r, int state)
{
	memset(st, 0, sizeof(*st));
	st->state = (uint8_t)state;
	st->fid = r->fid;
	st->version = r->version;
	snprintf(st->owner, sizeof(st->owner), "%s", r->owner);
	if (r->archived_version) {
		st->archived_version = r->archived_version;
		st->archived_size = r->archived_size;
		memcpy(st->manifest_id, r->manifest_id, 32);
		st->archived_mtime_sec = r->archived_mtime_sec;
		st->archived_mtime_nsec = r->archived_mtime_nsec;
	}
	st->nvv = r->nvv;
	memcpy(st->vv, r->vv, sizeof(st->vv));
}

/* Notes the file now at rel in the catalog (which is where nsync_note finds it equal to
 * what was just published). */
static void ns_catalog_note(struct hsmd *h, struct hsmd_vol *v, const char *rel)
{
	struct hsm_state st;
	struct stat sb;
	int fd = path_open_beneath(v->root_fd, rel, O_RDONLY | O_NONBLOCK | O_CLOEXEC, 0);

	if (fd < 0)
		return;
	if (fstat(fd, &sb) == 0 && S_ISREG(sb.st_mode) && ns_read_state(fd, &st) == 0)
		scan_note(h, v, rel, &sb, &st, NULL, CAT_J_CREATE);
	close(fd);
}

/* Creates the stub of r at r->path; EEXIST when the name is taken. */
static int ns_create_stub(struct hsmd *h, struct hsmd_vol *v, const struct ns_rec *r)
{
	struct timespec times[2];
	struct hsm_state st;
	const char *name;
	char proc[64];
	int dfd, fd, e;

	dfd = ns_parent(v, r->path, 1, &name);
	if (dfd < 0)
		return -1;
	fd = openat(dfd, ".", O_TMPFILE | O_WRONLY | O_CLOEXEC, 0600);
	if (fd < 0)
		goto fail_dir;
	ns_state_from_rec(&st, r, r->size ? HSM_STATE_STUB : HSM_STATE_RESIDENT);
	times[0].tv_sec = 0;
	times[0].tv_nsec = UTIME_NOW;
	times[1].tv_sec = r->mtime_sec;
	times[1].tv_nsec = r->mtime_nsec;
	if (ftruncate(fd, (off_t)r->size) < 0 || fchown(fd, r->uid, r->gid) < 0 ||
	    fchmod(fd, r->mode) < 0 || ns_write_state(fd, &st, XATTR_CREATE) < 0 ||
	    futimens(fd, times) < 0)
		goto fail_fd;
	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
	if (linkat(AT_FDCWD, proc, dfd, name, AT_SYMLINK_FOLLOW) < 0)
		goto fail_fd;
	(void)h;
	close(fd);
	close(dfd);
	return 0;
fail_fd:
	e = errno;
	close(fd);
	errno = e;
fail_dir:
	e = errno;
	close(dfd);
	errno = e;
	return -1;
}

/* Opens the local file of fid: at path if it is there, else where the catalog has it.
 * Returns an fd (O_RDONLY) and its path in *where (malloc'd), or -1. */
static int ns_find_local(struct hsmd *h, struct hsmd_vol *v, const struct hsm_fid *fid,
			 const char *path, char **where, struct hsm_state *st)
{
	struct cat_record cr;
	char err[256];
	const char *tries[2] = {path, NULL};
	int fd;

	if (catalog_get(h->cat, fid, &cr, err, sizeof(err)) == 0) {
		if (!strcmp(cr.volume, v->cfg->name))
			tries[1] = cr.path;
	} else {
		cr.path = NULL;
	}
	for (int i = 0; i < 2; i++) {
		if (!tries[i])
			continue;
		fd = path_open_beneath(v->root_fd, tries[i], O_RDONLY | O_NONBLOCK | O_CLOEXEC, 0);
		if (fd < 0)
			continue;
		if (ns_read_state(fd, st) == 0 && !memcmp(st->fid.b, fid->b, 16)) {
			*where = strdup(tries[i]);
			free(cr.path);
			if (!*where) {
				close(fd);
				return -1;
			}
			return fd;
		}
		close(fd);
	}
	free(cr.path);
	return -1;
}

/* 1 if the local file (fd, state st) holds a change the published record l lacks:
 * notify has not reported it yet, and it must not be thrown away. */
static int ns_local_unpublished(int fd, const struct hsm_state *st, const struct ns_rec *l)
{
	struct stat sb;

	if (!l || l->deleted || fstat(fd, &sb) < 0)
		return 1;
	if (st->version != l->version || strcmp(st->owner, l->owner))
		return 1;
	if (st->state == HSM_STATE_STUB)
		return 0;
	return (uint64_t)sb.st_size != l->size || sb.st_mtim.tv_sec != l->mtime_sec ||
	       (uint32_t)sb.st_mtim.tv_nsec != l->mtime_nsec;
}

/* Turns the local resident copy into a stub of r: only while nobody has it open (the
 * write lease) and only if it holds nothing unpublished. 0, 1 busy (retry later), -1. */
static int ns_make_stub(struct hsmd *h, struct hsmd_vol *v, const char *where,
			const struct ns_rec *r, const struct ns_rec *l)
{
	struct timespec times[2] = {{0, UTIME_OMIT}, {r->mtime_sec, r->mtime_nsec}};
	struct hsm_state st, cur;
	int fd, rc = -1;

	fd = path_open_beneath(v->root_fd, where, O_RDWR | O_NONBLOCK | O_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	if (fcntl(fd, F_SETLEASE, F_WRLCK) < 0) {
		rc = errno == EAGAIN || errno == EBUSY ? 1 : -1;
		close(fd);
		return rc;
	}
	if (ns_read_state(fd, &cur) < 0 || memcmp(cur.fid.b, r->fid.b, 16) ||
	    (cur.state != HSM_STATE_STUB && ns_local_unpublished(fd, &cur, l))) {
		rc = 1;
		goto out;
	}
	/* Watched again before the data goes, as release does. */
	if (h->mv.unwatch && h->mv.unwatch(h->mv.unwatch_ctx, fd) < 0)
		goto out;
	ns_state_from_rec(&st, r, r->size ? HSM_STATE_STUB : HSM_STATE_RESIDENT);
	if (ns_write_state(fd, &st, XATTR_REPLACE) < 0 || ftruncate(fd, 0) < 0 ||
	    ftruncate(fd, (off_t)r->size) < 0 || futimens(fd, times) < 0)
		goto out;
	rc = 0;
out:
	if (rc < 0)
		log_warn("nsync: %s/%s: cannot make it a stub of the new version", v->cfg->path,
			 where);
	fcntl(fd, F_SETLEASE, F_UNLCK);
	close(fd);
	return rc;
}

static int ns_rename(struct hsmd_vol *v, const char *from, const char *to)
{
	const char *fname, *tname;
	int fdir, tdir, r, e;

	fdir = ns_parent(v, from, 0, &fname);
	if (fdir < 0)
		return -1;
	tdir = ns_parent(v, to, 1, &tname);
	if (tdir < 0) {
		e = errno;
		close(fdir);
		errno = e;
		return -1;
	}
	r = renameat2(fdir, fname, tdir, tname, RENAME_NOREPLACE);
	e = errno;
	close(fdir);
	close(tdir);
	errno = e;
	return r;
}

static void ns_rmdir_later(struct nsync *ns, const char *volume, const char *path)
{
	size_t vl = strlen(volume), pl = strlen(path);
	char *e;

	if (ns->nrmdirs == NS_RMDIR_MAX)
		return;
	e = malloc(vl + pl + 2);
	if (!e)
		return;
	memcpy(e, volume, vl + 1);
	memcpy(e + vl + 1, path, pl + 1);
	ns->rmdirs[ns->nrmdirs++] = e;
}

static void ns_parent_settle(struct nsync *ns, struct hsmd_vol *v, const char *path);

/* Deepest path first: a parent can only go once its children have. */
static int ns_rmdir_deeper_first(const void *a, const void *b)
{
	const char *pa = *(char *const *)a, *pb = *(char *const *)b;
	size_t da = 0, db = 0;

	pa += strlen(pa) + 1;
	pb += strlen(pb) + 1;
	for (const char *c = pa; *c; c++)
		da += *c == '/';
	for (const char *c = pb; *c; c++)
		db += *c == '/';
	return da == db ? 0 : da > db ? -1 : 1;
}

void ns_rmdir_retry(struct nsync *ns)
{
	size_t keep = 0;

	qsort(ns->rmdirs, ns->nrmdirs, sizeof(ns->rmdirs[0]), ns_rmdir_deeper_first);
	/* Forward, so that what is kept (at keep <= i) never overwrites one not yet seen. */
	for (size_t i = 0; i < ns->nrmdirs; i++) {
		const char *vol = ns->rmdirs[i], *path = vol + strlen(vol) + 1, *name;
		const struct hsm_volume_cfg *vc = config_volume(ns->h->cfg, vol);
		struct hsmd_vol *v = NULL;
		int dfd;

		for (size_t j = 0; vc && j < ns->h->nvols; j++)
			if (ns->h->vols[j].cfg == vc)
				v = &ns->h->vols[j];
		if (v && (dfd = ns_parent(v, path, 0, &name)) >= 0) {
			int r = unlinkat(dfd, name, AT_REMOVEDIR);

			close(dfd);
			if (r < 0 && errno == ENOTEMPTY) {
				ns->rmdirs[keep++] = ns->rmdirs[i];
				continue;
			}
			if (r == 0)
				ns_parent_settle(ns, v, path);
		}
		free(ns->rmdirs[i]);
	}
	ns->nrmdirs = keep;
}

/* Moves whatever holds r->path aside when r wins the name, or gives r its conflict name
 * when the holder wins. 0 = r->path may be retried. */
static int ns_collision(struct nsync *ns, struct hsmd_vol *v, struct ns_rec *r)
{
	struct hsmd *h = ns->h;
	struct hsm_state st;
	struct ns_rec g;
	uint64_t seq;
	char *np;
	int fd = path_open_beneath(v->root_fd, r->path, O_RDONLY | O_NONBLOCK | O_CLOEXEC, 0);
	int have;

	if (fd < 0 || ns_read_state(fd, &st) < 0) {
		/* Not a file of ours (a directory, a symlink, unreadable): r steps aside. */
		if (fd >= 0)
			close(fd);
		goto rename_r;
	}
	close(fd);
	have = ns_load(ns, &st.fid, &g, &seq, NULL) == 0;
	if (have && (g.deleted || !nsrec_wins(r, &g))) {
		/* the holder wins; or it is a file whose removal we have not applied */
		nsrec_clear(&g);
		goto rename_r;
	}
	if (!have)
		/* a local file not published yet: it was here first at this site; r steps
		 * aside (its own site will see the clash when ours goes out). */
		goto rename_r;
	np = nsrec_conflict_path(g.path, g.owner, g.mtime_sec);
	if (!np || ns_rename(v, r->path, np) < 0) {
		log_warn("nsync: %s/%s: cannot move the losing version aside", v->cfg->path,
			 r->path);
		free(np);
		nsrec_clear(&g);
		return -1;
	}
	log_info("nsync: %s/%s: conflict: this site's version moved to %s", v->cfg->path, r->path,
		 np);
	free(g.path);
	g.path = np;
	if (!strcmp(g.owner, h->cfg->site))
		nsrec_vv_set(&g, h->cfg->site, nsrec_vv_get(&g, h->cfg->site) + 1);
	ns_publish(ns, v->cfg->name, &g);
	ns_catalog_note(h, v, np);
	nsrec_clear(&g);
	return 0;
rename_r:
	np = nsrec_conflict_path(r->path, r->owner, r->mtime_sec);
	if (!np)
		return -1;
	log_info("nsync: %s/%s: name taken; the version from %s becomes %s", v->cfg->path, r->path,
		 r->owner, np);
	free(r->path);
	r->path = np;
	return 0;
}

static int ns_drop_stub(struct hsmd_vol *v, const char *rel, const struct hsm_fid *fid);
static int ns_conflict_copy(struct nsync *ns, struct hsmd_vol *v, const struct ns_rec *loser,
			    int loser_is_local, struct ns_rec *c);

/* m is a conflict copy made elsewhere of data this site holds (it may be the only
 * holder: the site that wrote it), in the file m was split from. That file becomes the copy
 * (renamed, re-identified) instead of a stub nobody could fill; the record of the
 * original that follows makes a stub of the winner at the original name. 0 done,
 * -1 not applicable. */
static int ns_split_own(struct nsync *ns, struct hsmd_vol *v, const struct ns_rec *m)
{
	struct hsmd *h = ns->h;
	struct hsm_state st;
	char *where = NULL;
	int fd, r;

	if (!m->has_origin || m->deleted)
		return -1;
	fd = ns_find_local(h, v, &m->origin, m->path, &where, &st);
	if (fd < 0)
		return -1;
	if (st.state == HSM_STATE_STUB || st.version != m->version || strcmp(st.owner, m->owner)) {
		close(fd);
		free(where);
		return -1;
	}
	r = ns_rename(v, where, m->path);
	if (r < 0 && errno == EEXIST && ns_drop_stub(v, m->path, &m->fid) == 0)
		r = ns_rename(v, where, m->path);
	if (r == 0) {
		st.fid = m->fid;
		st.nvv = m->nvv;
		memcpy(st.vv, m->vv, sizeof(st.vv));
		if (ns_write_state(fd, &st, XATTR_REPLACE) < 0)
			log_warn("nsync: %s/%s: re-identify the conflict copy", v->cfg->path,
				 m->path);
		log_info("nsync: %s/%s: this site's version of %s kept as the conflict copy",
			 v->cfg->path, m->path, where);
	}
	close(fd);
	free(where);
	if (r < 0)
		return -1;
	ns_publish(ns, v->cfg->name, m);
	ns_catalog_note(h, v, m->path);
	return 0;
}

/* Brings the local namespace to m (the winner of a merge, or a dominating record),
 * l being what we published for that fid before (NULL if nothing). Publishes m.
 * 0 done, 1 busy (retry later), -1 failed. */
static int ns_make_local(struct nsync *ns, struct hsmd_vol *v, struct ns_rec *m,
			 const struct ns_rec *l)
{
	struct hsmd *h = ns->h;
	struct hsm_state st;
	char *where = NULL;
	const char *name;
	int fd = -1, r, dfd;

	if (m->kind == NS_DIR || m->kind == NS_LINK) {
		dfd = ns_parent(v, m->path, !m->deleted, &name);
		if (dfd < 0) {
			if (m->deleted)
				goto publish;
			return -1;
		}
		if (m->deleted) {
			struct stat sb;

			if (fstatat(dfd, name, &sb, AT_SYMLINK_NOFOLLOW) == 0 &&
			    ((m->kind == NS_DIR && S_ISDIR(sb.st_mode)) ||
			     (m->kind == NS_LINK && S_ISLNK(sb.st_mode)))) {
				if (unlinkat(dfd, name, m->kind == NS_DIR ? AT_REMOVEDIR : 0) < 0 &&
				    errno == ENOTEMPTY)
					ns_rmdir_later(ns, v->cfg->name, m->path);
			}
		} else if (m->kind == NS_DIR) {
			if (mkdirat(dfd, name, m->mode) < 0 && errno != EEXIST) {
				close(dfd);
				return -1;
			}
			fchownat(dfd, name, m->uid, m->gid, AT_SYMLINK_NOFOLLOW);
			fchmodat(dfd, name, m->mode, 0);
		} else {
			char cur[HSM_PATH_MAX + 1];
			ssize_t n = readlinkat(dfd, name, cur, sizeof(cur) - 1);

			if (n >= 0)
				cur[n] = '\0';
			if (n < 0 || strcmp(cur, m->target)) {
				if (n >= 0)
					unlinkat(dfd, name, 0);
				if (symlinkat(m->target, dfd, name) < 0) {
					close(dfd);
					return -1;
				}
			}
			fchownat(dfd, name, m->uid, m->gid, AT_SYMLINK_NOFOLLOW);
		}
		close(dfd);
		goto publish;
	}

	if (l && !l->deleted)
		fd = ns_find_local(h, v, &m->fid, l->path, &where, &st);
	else
		fd = ns_find_local(h, v, &m->fid, m->path, &where, &st);
	if (m->deleted) {
		if (fd >= 0) {
			if (st.state != HSM_STATE_STUB && ns_local_unpublished(fd, &st, l)) {
				/* a write of ours the deleter never saw: it survives */
				close(fd);
				free(where);
				return 0;
			}
			close(fd);
			dfd = ns_parent(v, where, 0, &name);
			if (dfd >= 0) {
				if (unlinkat(dfd, name, 0) < 0 && errno != ENOENT)
					log_warn("nsync: %s/%s: delete", v->cfg->path, where);
				close(dfd);
			}
			{
				char err[256];

				if (catalog_delete(h->cat, &m->fid, err, sizeof(err)) < 0)
					log_warnx("nsync: %s", err);
			}
			free(where);
		}
		goto publish;
	}
	if (fd < 0 && ns_split_own(ns, v, m) == 0)
		return 0;
	if (fd < 0) {
		for (int tries = 0; tries < 3; tries++) {
			r = ns_create_stub(h, v, m);
			if (r == 0 || errno != EEXIST)
				break;
			if (ns_collision(ns, v, m) < 0)
				return -1;
		}
		if (r < 0) {
			log_warn("nsync: %s/%s: cannot create the stub", v->cfg->path, m->path);
			return -1;
		}
		ns_publish(ns, v->cfg->name, m);
		ns_catalog_note(h, v, m->path);
		return 0;
	}
	/* the file is here: move it, then bring its content and attributes along */
	if (strcmp(where, m->path) != 0) {
		for (int tries = 0; tries < 3; tries++) {
			r = ns_rename(v, where, m->path);
			if (r == 0 || errno != EEXIST)
				break;
			if (ns_collision(ns, v, m) < 0)
				break;
		}
		if (r < 0) {
			log_warn("nsync: %s: rename %s to %s", v->cfg->path, where, m->path);
			close(fd);
			free(where);
			return -1;
		}
		free(where);
		where = strdup(m->path);
	}
	if (m->has_conflict && l && !l->deleted && st.state != HSM_STATE_STUB &&
	    (st.version != m->version || strcmp(st.owner, m->owner))) {
		struct hsm_fid cf;

		nsrec_conflict_fid(&m->fid, st.owner, st.version, &cf);
		if (!memcmp(cf.b, m->conflict.b, 16) && nsrec_same_content(l, m) == 0 &&
		    l->version == st.version && !strcmp(l->owner, st.owner)) {
			/* our copy is the data that lost: it becomes the conflict copy, and
			 * the winner comes as a stub */
			struct ns_rec c;

			close(fd);
			memset(&c, 0, sizeof(c));
			r = ns_conflict_copy(ns, v, l, 1, &c);
			nsrec_clear(&c);
			free(where);
			if (r < 0)
				return -1;
			return ns_make_local(ns, v, m, NULL);
		}
	}
	if (st.version != m->version || strcmp(st.owner, m->owner)) {
		/* our own descriptor would stop the write lease */
		close(fd);
		r = ns_make_stub(h, v, where, m, l);
		if (r != 0) {
			free(where);
			return r;
		}
		fd = path_open_beneath(v->root_fd, where, O_RDONLY | O_NONBLOCK | O_CLOEXEC, 0);
		if (fd < 0) {
			log_warn("nsync: %s/%s: reopen", v->cfg->path, where);
			free(where);
			return -1;
		}
	} else if (st.state == HSM_STATE_STUB && m->archived_version &&
		   st.archived_version != m->archived_version) {
		/* the owner archived it since: the store is now a source too */
		st.archived_version = m->archived_version;
		st.archived_size = m->archived_size;
		memcpy(st.manifest_id, m->manifest_id, 32);
		st.archived_mtime_sec = m->archived_mtime_sec;
		st.archived_mtime_nsec = m->archived_mtime_nsec;
		if (ns_write_state(fd, &st, XATTR_REPLACE) < 0)
			log_warn("nsync: %s/%s: record the archived copy", v->cfg->path, where);
	}
	{
		struct stat sb;

		if (fstat(fd, &sb) == 0) {
			if ((sb.st_mode & 07777) != m->mode && fchmod(fd, m->mode) < 0)
				log_warn("nsync: %s/%s: chmod", v->cfg->path, where);
			if ((sb.st_uid != m->uid || sb.st_gid != m->gid) &&
			    fchown(fd, m->uid, m->gid) < 0)
				log_warn("nsync: %s/%s: chown", v->cfg->path, where);
			if (sb.st_mtim.tv_sec != m->mtime_sec ||
			    (uint32_t)sb.st_mtim.tv_nsec != m->mtime_nsec) {
				struct timespec t[2] = {{0, UTIME_OMIT},
							{m->mtime_sec, m->mtime_nsec}};

				futimens(fd, t);
			}
		}
	}
	close(fd);
	ns_publish(ns, v->cfg->name, m);
	ns_catalog_note(h, v, where);
	free(where);
	return 0;
publish:
	ns_publish(ns, v->cfg->name, m);
	return 0;
}

/* Removes the stub of fid at rel (made before the data it stands for turned up here).
 * 0, or -1 when rel is not such a stub. */
static int ns_drop_stub(struct hsmd_vol *v, const char *rel, const struct hsm_fid *fid)
{
	struct hsm_state st;
	const char *name;
	int fd = path_open_beneath(v->root_fd, rel, O_RDONLY | O_NONBLOCK | O_CLOEXEC, 0);
	int dfd, r = -1;

	if (fd < 0)
		return -1;
	if (ns_read_state(fd, &st) == 0 && st.state == HSM_STATE_STUB &&
	    !memcmp(st.fid.b, fid->b, 16) && (dfd = ns_parent(v, rel, 0, &name)) >= 0) {
		r = unlinkat(dfd, name, 0);
		close(dfd);
	}
	close(fd);
	return r;
}

/* Both sides wrote the data: the loser becomes a file of its own, at every site the same
 * (fid, name and vector all derived from the loser's record). */
static int ns_conflict_copy(struct nsync *ns, struct hsmd_vol *v, const struct ns_rec *loser,
			    int loser_is_local, struct ns_rec *c)
{
	struct hsmd *h = ns->h;

	if (nsrec_copy(c, loser) < 0)
		return -1;
	nsrec_conflict_fid(&loser->fid, loser->owner, loser->version, &c->fid);
	c->has_origin = 1;
	c->origin = loser->fid;
	free(c->path);
	c->path = nsrec_conflict_path(loser->path, loser->owner, loser->mtime_sec);
	c->nvv = 0;
	if (!c->path || nsrec_vv_set(c, loser->owner, loser->version) < 0)
		return -1;
	log_warnx("nsync: %s/%s: concurrent writes at %s and elsewhere; %s's version is kept as "
		  "%s",
		  v->cfg->path, loser->path, loser->owner, loser->owner, c->path);
	if (loser_is_local) {
		struct hsm_state st;
		char *where = NULL;
		int fd = ns_find_local(h, v, &loser->fid, loser->path, &where, &st);

		if (fd >= 0) {
			int r = ns_rename(v, where, c->path);

			if (r < 0 && errno == EEXIST && ns_drop_stub(v, c->path, &c->fid) == 0)
				r = ns_rename(v, where, c->path);
			if (r == 0) {
				st.fid = c->fid;
				st.nvv = c->nvv;
				memcpy(st.vv, c->vv, sizeof(st.vv));
				if (ns_write_state(fd, &st, XATTR_REPLACE) < 0)
					log_warn("nsync: %s/%s: re-identify the conflict copy",
						 v->cfg->path, c->path);
			}
			close(fd);
			free(where);
			if (r < 0)
				return -1;
			ns_publish(ns, v->cfg->name, c);
			ns_catalog_note(h, v, c->path);
			return 0;
		}
		/* nothing here to move: the copy is made from its record as a stub */
	}
	return ns_make_local(ns, v, c, NULL);
}

/* Merges concurrent r (remote) and l (ours) into *m, by nsrec_resolve's rules. */
static int ns_merge(struct nsync *ns, struct hsmd_vol *v, const struct ns_rec *r,
		    const struct ns_rec *l, struct ns_rec *m)
{
	struct ns_resolution res;
	const struct ns_rec *other;

	nsrec_resolve(r, l, &res);
	other = res.content == r ? l : r;
	if (res.outcome == NS_CONFLICT) {
		struct ns_rec c;

		memset(&c, 0, sizeof(c));
		if (ns_conflict_copy(ns, v, res.loser, res.loser == l, &c) < 0) {
			nsrec_clear(&c);
			return -1;
		}
		if (nsrec_copy(m, res.content) < 0) {
			nsrec_clear(&c);
			return -1;
		}
		m->has_conflict = 1;
		m->conflict = c.fid;
		nsrec_clear(&c);
		return nsrec_vv_merge(m, other);
	}
	if (nsrec_copy(m, res.content) < 0)
		return -1;
	if (res.meta != res.content) {
		if (strcmp(res.meta->path, res.content->path)) {
			free(m->path);
			m->path = strdup(res.meta->path);
			if (!m->path)
				return -1;
		}
		m->mode = res.meta->mode;
		m->uid = res.meta->uid;
		m->gid = res.meta->gid;
	}
	return nsrec_vv_merge(m, other);
}

/* The mtime of directory dir back to what its published record says: hsmd's own
 * creates, renames and deletes in it changed it, and the record is what every site
 * agrees on. The volume root has no record and is left alone. */
static void ns_dir_settle(struct nsync *ns, struct hsmd_vol *v, const char *dir)
{
	char key[HSM_PATH_MAX + 8];
	struct hsm_fid fid;
	struct ns_rec d;
	uint64_t seq;
	int fd;

	if (!*dir || snprintf(key, sizeof(key), "%c:%s", NS_DIR, dir) >= (int)sizeof(key))
		return;
	nsrec_dir_fid(v->cfg->name, key, &fid);
	if (ns_load(ns, &fid, &d, &seq, NULL) != 0)
		return;
	if (!d.deleted &&
	    (fd = path_open_beneath(v->root_fd, dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0)) >= 0) {
		struct timespec t[2] = {{0, UTIME_OMIT}, {d.mtime_sec, d.mtime_nsec}};

		if (futimens(fd, t) < 0)
			log_warn("nsync: %s/%s: set the directory's mtime", v->cfg->path, dir);
		close(fd);
	}
	nsrec_clear(&d);
}

/* The same for the directory that holds path. */
static void ns_parent_settle(struct nsync *ns, struct hsmd_vol *v, const char *path)
{
	char buf[HSM_PATH_MAX + 1], *slash;

	snprintf(buf, sizeof(buf), "%s", path);
	slash = strrchr(buf, '/');
	if (!slash)
		return;
	*slash = '\0';
	ns_dir_settle(ns, v, buf);
}

/* 0 applied or nothing to do, 1 busy (retry later), -1 failed (skipped). */
int ns_apply(struct nsync *ns, struct hsmd_vol *v, struct ns_rec *r)
{
	struct ns_rec l, m;
	uint64_t seq;
	char lvol[HSM_SITE_MAX + 1];
	int have, cmp, rc;

	have = ns_load(ns, &r->fid, &l, &seq, lvol) == 0;
	if (have && strcmp(lvol, v->cfg->name) != 0) {
		nsrec_clear(&l);
		return -1;
	}
	cmp = have ? nsrec_vv_compare(r, &l) : 1;
	if (cmp <= 0) {
		/* nothing new, but perhaps the owner's archive of this same version */
		if (cmp == 0 && r->archived_version && r->archived_version != l.archived_version &&
		    nsrec_same_content(r, &l))
			rc = ns_make_local(ns, v, r, &l);
		else
			rc = 0;
		nsrec_clear(&l);
		return rc;
	}
	memset(&m, 0, sizeof(m));
	if (cmp == 1)
		rc = nsrec_copy(&m, r);
	else
		rc = ns_merge(ns, v, r, &l, &m);
	/* Moved under the new name, it is a change of ours the other sites must hear of,
	 * the one that made it first. */
	if (rc == 0 && !m.deleted) {
		char *made_at = strdup(m.path);
		struct ns_rec gone;

		if (!made_at)
			rc = -1;
		else if (ns_follow_moves(ns, v, &m.path)) {
			if (m.kind == NS_FILE)
				nsrec_vv_set(&m, ns->h->cfg->site,
					     nsrec_vv_get(&m, ns->h->cfg->site) + 1);
			else if ((rc = ns_follow_other(ns, v, &m, made_at, &gone)) == 0) {
				ns_make_local(ns, v, &gone, NULL);
				nsrec_clear(&gone);
			}
		}
		free(made_at);
	}
	if (rc == 0) {
		rc = ns_make_local(ns, v, &m, have ? &l : NULL);
		if (rc == 0) {
			if (m.kind == NS_DIR && !m.deleted)
				ns_dir_settle(ns, v, m.path);
			ns_parent_settle(ns, v, m.path);
			if (have && strcmp(l.path, m.path))
				ns_parent_settle(ns, v, l.path);
		}
	} else
		log_warnx("nsync: %s/%s: cannot merge concurrent changes", v->cfg->path, r->path);
	nsrec_clear(&m);
	if (have)
		nsrec_clear(&l);
	return rc;
}
