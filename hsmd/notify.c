#include "hsmd/notify.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "hsmd/catalog.h"
#include "hsmd/dupfid.h"
#include "hsmd/emptied.h"
#include "hsmd/fan.h"
#include "hsmd/nsync.h"
#include "hsmd/scan.h"
#include "hsmd/worker.h"
#include "lib/config.h"
#include "lib/log.h"
#include "lib/pathsafe.h"

/* The directory an event names, resolved to a volume and a path below its root. */
static int notify_dir(struct hsmd *h, struct fanotify_event_info_fid *fid, struct hsmd_vol **vol,
		      int *dirfd, char *rel, size_t rellen)
{
	struct file_handle *fh = (struct file_handle *)fid->handle;
	char link[64], target[4200];
	ssize_t n;

	for (size_t i = 0; i < h->nvols; i++) {
		struct hsmd_vol *v = &h->vols[i];
		size_t alen = strlen(v->admin);
		int fd = open_by_handle_at(v->root_fd, fh, O_PATH | O_DIRECTORY | O_CLOEXEC);

		if (fd < 0)
			continue;
		snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
		n = readlink(link, target, sizeof(target) - 1);
		if (n < 0) {
			close(fd);
			continue;
		}
		target[n] = '\0';
		/* Through this volume's admin mount, and below its root. */
		if (strncmp(target, v->admin, alen) != 0 || (target[alen] && target[alen] != '/')) {
			close(fd);
			continue;
		}
		snprintf(rel, rellen, "%s", target[alen] ? target + alen + 1 : "");
		*vol = v;
		*dirfd = fd;
		return 0;
	}
	return -1;
}

static void notify_mark_dirty(struct hsmd *h, int fd, struct hsm_state *st)
{
	uint8_t rec[HSM_XATTR_MAX];
	int len;

	hsm_state_local_write(st, h->cfg->site);
	len = hsmx_encode(st, rec, sizeof(rec));
	if (len < 0 || fsetxattr(fd, HSM_XATTR_NAME, rec, (size_t)len, XATTR_REPLACE) < 0)
		log_warn("cannot mark a modified file dirty");
}

struct notify_relink {
	struct hsmd *h;
	struct hsmd_vol *v;
	const struct hsm_fid *fid;
	int moved;
};

/* One second name of a file whose record's name was deleted: if it still names a
 * file with this fid, the record moves there (a rename for the catalog and the other
 * sites, which knew the file by one name); if not, the stale index entry goes. */
static int notify_relink_cb(const char *volume, const char *path, void *arg)
{
	struct notify_relink *r = arg;
	struct hsm_state st;
	struct stat sb;
	char err[256];
	int fd;

	if (strcmp(volume, r->v->cfg->name))
		return 0;
	fd = path_open_beneath(r->v->root_fd, path, O_RDONLY | O_NONBLOCK, 0);
	if (fd >= 0 && fstat(fd, &sb) == 0 && S_ISREG(sb.st_mode) &&
	    scan_adopt(fd, r->h->cfg->site, &st, err, sizeof(err)) == 0 &&
	    !memcmp(st.fid.b, r->fid->b, 16)) {
		scan_note(r->h, r->v, path, &sb, &st, NULL, CAT_J_CREATE);
		r->moved = 1;
		close(fd);
		return 1;
	}
	if (fd >= 0)
		close(fd);
	if (catalog_unlink_path(r->h->cat, volume, path, err, sizeof(err)) < 0)
		log_warnx("%s", err);
	return 0;
}

/* The record's name of fid was deleted: 1 if the file lives on under another name
 * (the record moved there), 0 if that was its last name. */
static int notify_relink(struct hsmd *h, struct hsmd_vol *v, const struct hsm_fid *fid)
{
	struct notify_relink r = {h, v, fid, 0};
	char err[256];

	if (catalog_foreach_link(h->cat, fid, notify_relink_cb, &r, err, sizeof(err)) < 0)
		log_warnx("%s", err);
	return r.moved;
}

/* Whether the file at rel (looked at without an open: no event, no lease break) carries
 * fid. */
static int notify_fid_at(struct hsmd_vol *v, const char *rel, const struct hsm_fid *fid)
{
	uint8_t rec[HSM_XATTR_MAX];
	struct hsm_state st;
	char proc[64], err[128];
	ssize_t n;
	int pfd = path_open_beneath(v->root_fd, rel, O_PATH, 0), same = 0;

	if (pfd < 0)
		return 0;
	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", pfd);
	n = getxattr(proc, HSM_XATTR_NAME, rec, sizeof(rec));
	if (n > 0 && hsmx_decode(rec, (size_t)n, &st, err, sizeof(err)) == 0)
		same = !memcmp(st.fid.b, fid->b, 16);
	close(pfd);
	return same;
}

/* A rename onto a name that held another file replaced that file (what every editor's
 * save does). Unless it lives on (a hard link; the other half of a RENAME_EXCHANGE,
 * now at the moved file's old name), it is gone as if deleted, and the other sites must
 * hear so before they hear of the moved file under its name: else they keep the
 * replaced one and take the moved one for a clash. mover is the fid now at rel. */
static void notify_displaced(struct hsmd *h, struct hsmd_vol *v, const char *rel,
			     const struct hsm_fid *mover)
{
	struct cat_record cr, mine;
	struct hsm_fid old;
	char err[256];
	int exchange = 0;

	if (catalog_lookup_path(h->cat, v->cfg->name, rel, &old, err, sizeof(err)) != 0 ||
	    !memcmp(old.b, mover->b, 16))
		return;
	if (catalog_get(h->cat, &old, &cr, err, sizeof(err)) != 0)
		return;
	if (strcmp(cr.path, rel) || strcmp(cr.volume, v->cfg->name)) {
		/* rel was only a second name of old: the file lives on under its own */
		cat_record_clear(&cr);
		catalog_unlink_path(h->cat, v->cfg->name, rel, err, sizeof(err));
		return;
	}
	cat_record_clear(&cr);
	if (catalog_get(h->cat, mover, &mine, err, sizeof(err)) == 0) {
		exchange = strcmp(mine.path, rel) && notify_fid_at(v, mine.path, &old);
		cat_record_clear(&mine);
	}
	if (exchange || notify_relink(h, v, &old))
		return;
	catalog_delete(h->cat, &old, err, sizeof(err));
	nsync_note_gone(h, v, &old);
}

/* Whether nobody has the file open for writing (nor mapped shared and writable): the
 * kernel refuses a read lease while anyone does. Then a write event has no close to
 * come after it. An error other than that refusal counts as a writer: its close
 * then notes the change, as before. */
static int notify_no_writer(struct hsmd_vol *v, const char *rel, int fd)
{
	if (fcntl(fd, F_SETLEASE, F_RDLCK) < 0) {
		if (errno != EAGAIN)
			log_warn("%s/%s: read lease to look for writers", v->cfg->path, rel);
		return 0;
	}
	if (fcntl(fd, F_SETLEASE, F_UNLCK) < 0)
		log_warn("%s/%s: dropping a read lease", v->cfg->path, rel);
	return 1;
}

static void notify_file(struct hsmd *h, uint64_t mask, struct hsmd_vol *v, int dirfd,
			const char *dirrel, const char *name)
{
	char rel[4400], err[256];
	struct hsm_state st;
	struct stat sb;
	int fd, r;

	if (snprintf(rel, sizeof(rel), "%s%s%s", dirrel, *dirrel ? "/" : "", name) >=
	    (int)sizeof(rel))
		return;
	if (mask & (FAN_DELETE | FAN_MOVED_FROM)) {
		struct hsm_fid fid;
		struct cat_record cr;

		if (catalog_lookup_path(h->cat, v->cfg->name, rel, &fid, err, sizeof(err)) != 0) {
			/* not a file we know: perhaps a symlink */
			nsync_note_link(h, v, rel, NULL, NULL);
			return;
		}
		if (catalog_get(h->cat, &fid, &cr, err, sizeof(err)) == 0) {
			int same = !strcmp(cr.path, rel);

			cat_record_clear(&cr);
			if (same && (mask & FAN_DELETE)) {
				if (notify_relink(h, v, &fid))
					return;
				catalog_delete(h->cat, &fid, err, sizeof(err));
				nsync_note_gone(h, v, &fid);
				return;
			}
		}
		catalog_unlink_path(h->cat, v->cfg->name, rel, err, sizeof(err));
		return;
	}
	fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0) {
		char target[HSM_PATH_MAX + 1];
		ssize_t n;

		/* gone again, a special file, or a symlink (which the namespace carries) */
		if (errno == ELOOP && fstatat(dirfd, name, &sb, AT_SYMLINK_NOFOLLOW) == 0 &&
		    S_ISLNK(sb.st_mode) &&
		    (n = readlinkat(dirfd, name, target, sizeof(target) - 1)) > 0) {
			target[n] = '\0';
			nsync_note_link(h, v, rel, &sb, target);
		}
		return;
	}
	if (fstat(fd, &sb) < 0 || !S_ISREG(sb.st_mode))
		goto out;
	if ((mask & FAN_MODIFY) && !(mask & (FAN_CREATE | FAN_CLOSE_WRITE | FAN_MOVED_TO))) {
		/* Only the first write after an archive matters here. */
		r = scan_adopt(fd, h->cfg->site, &st, err, sizeof(err));
		/* A copy's first write must not dirty its original's record. */
		if (r == 0 && (r = dupfid_check(h, v, rel, fd, &sb, &st)) < 0)
			goto out;
		if (r == 0 && emptied_check(h, fd, &st) < 0)
			goto out;
		if (r >= 0)
			nsync_note_write(h, &st.fid);
		if (r == 0 && st.state == HSM_STATE_ARCHIVED) {
			notify_mark_dirty(h, fd, &st);
			scan_note(h, v, rel, &sb, &st, NULL, CAT_J_MODIFY);
		} else if (r == 1) {
			scan_note(h, v, rel, &sb, &st, NULL, CAT_J_CREATE);
		} else if (r == 0 && notify_no_writer(v, rel, fd)) {
			/* truncate(2) by path: no close will bring this change, and left
			 * unseen it would become a new version when the file is archived */
			nsync_take_write(h, &st.fid);
			scan_note(h, v, rel, &sb, &st, NULL, CAT_J_MODIFY);
		}
		goto out;
	}
	r = scan_adopt(fd, h->cfg->site, &st, err, sizeof(err));
	if (r < 0) {
		log_warnx("%s/%s: %s", v->cfg->path, rel, err);
		goto out;
	}
	if (r == 0 && dupfid_check(h, v, rel, fd, &sb, &st) < 0)
		goto out;
	if (r == 0 && emptied_check(h, fd, &st) == 1)
		mask |= FAN_MODIFY; /* a new content version, whatever the events said */
	if ((mask & FAN_MODIFY) && st.state == HSM_STATE_ARCHIVED)
		notify_mark_dirty(h, fd, &st);
	if (mask & (FAN_CREATE | FAN_MOVED_TO)) {
		/* A new file's content comes with its close: publishing it now would cost
		 * the peers a version of it that nobody wrote on purpose. No close comes
		 * when nobody has it open for writing (a hard link, then a truncate(2) of
		 * it): left unpublished, its archive would make the version. */
		h->ns_quiet = (mask & FAN_CREATE) && !(mask & (FAN_CLOSE_WRITE | FAN_MOVED_TO)) &&
			      !notify_no_writer(v, rel, fd);
		if (mask & FAN_CLOSE_WRITE)
			nsync_take_write(h, &st.fid);
		if (mask & FAN_MOVED_TO)
			notify_displaced(h, v, rel, &st.fid);
		scan_note(h, v, rel, &sb, &st, NULL, CAT_J_CREATE);
		h->ns_quiet = 0;
	} else {
		/* chmod, chown, touch (which opens for writing and closes): no data written,
		 * so an mtime set by hand is not a new content version */
		int wrote = nsync_take_write(h, &st.fid) | !!(mask & FAN_MODIFY);

		h->ns_attr_only = !wrote;
		scan_note(h, v, rel, &sb, &st, NULL, wrote ? CAT_J_MODIFY : CAT_J_ATTRIB);
		h->ns_attr_only = 0;
	}
out:
	close(fd);
}

/* A directory moved in brings a whole subtree under new names: every directory and
 * symlink in it is published under its new name (their old names went with the move
 * away) and every file is noted as moved there. On the loop: a move of a huge tree
 * delays other events for as long as the walk takes. */
static void notify_subtree(struct hsmd *h, struct hsmd_vol *v, int pfd, const char *prel,
			   const char *name, int depth)
{
	char rel[4400];
	struct dirent *de;
	struct stat sb;
	DIR *d;
	int fd;

	if (snprintf(rel, sizeof(rel), "%s%s%s", prel, *prel ? "/" : "", name) >= HSM_PATH_MAX)
		return;
	fd = openat(pfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC | O_NOATIME);
	if (fd < 0 || fstat(fd, &sb) < 0) {
		if (fd >= 0)
			close(fd);
		return;
	}
	nsync_note_dir(h, v, rel, &sb);
	if (depth > 200 || !(d = fdopendir(fd))) {
		log_warnx("%s/%s: moved-in tree too deep or unreadable: not all of it is noted",
			  v->cfg->path, rel);
		close(fd);
		return;
	}
	while ((de = readdir(d))) {
		char target[HSM_PATH_MAX + 1], sub[4400];
		ssize_t n;

		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		if (fstatat(fd, de->d_name, &sb, AT_SYMLINK_NOFOLLOW) < 0)
			continue;
		if (S_ISDIR(sb.st_mode)) {
			notify_subtree(h, v, fd, rel, de->d_name, depth + 1);
		} else if (S_ISLNK(sb.st_mode)) {
			n = readlinkat(fd, de->d_name, target, sizeof(target) - 1);
			if (n > 0 &&
			    snprintf(sub, sizeof(sub), "%s/%s", rel, de->d_name) < HSM_PATH_MAX) {
				target[n] = '\0';
				nsync_note_link(h, v, sub, &sb, target);
			}
		} else if (S_ISREG(sb.st_mode)) {
			notify_file(h, FAN_MOVED_TO, v, fd, rel, de->d_name);
		}
	}
	closedir(d); /* closes fd */
}

/* The directory (or file) and name of an info record of type want in md, or NULL. */
static struct fanotify_event_info_fid *notify_info(struct fanotify_event_metadata *md, int want,
						   const char **name)
{
	char *p = (char *)(md + 1), *end = (char *)md + md->event_len;

	while (p + sizeof(struct fanotify_event_info_header) <= end) {
		struct fanotify_event_info_header *hdr = (void *)p;

		if (hdr->len < sizeof(*hdr) || p + hdr->len > end)
			break;
		if (hdr->info_type == want) {
			struct fanotify_event_info_fid *fid = (void *)p;
			struct file_handle *fh = (struct file_handle *)fid->handle;

			*name = (const char *)(fh->f_handle + fh->handle_bytes);
			return fid;
		}
		p += hdr->len;
	}
	return NULL;
}

/* A rename, with both names: for a directory, where it went is published with its
 * removal, so that a site applying a change made under the old name before it heard of
 * the rename (a partitioned site) puts it under the new one. Files need no more than
 * their moved-from and moved-to events. */
static void notify_rename(struct hsmd *h, struct fanotify_event_metadata *md)
{
	struct fanotify_event_info_fid *of, *nf;
	const char *on = NULL, *nn = NULL;
	struct hsmd_vol *ov, *nv;
	char odir[4200], ndir[4200], orel[4400], nrel[4400];
	int ofd, nfd;

	if (!(md->mask & FAN_ONDIR))
		return;
	of = notify_info(md, FAN_EVENT_INFO_TYPE_OLD_DFID_NAME, &on);
	nf = notify_info(md, FAN_EVENT_INFO_TYPE_NEW_DFID_NAME, &nn);
	if (!of || !nf || !*on || !*nn)
		return;
	if (notify_dir(h, of, &ov, &ofd, odir, sizeof(odir)) < 0)
		return;
	if (notify_dir(h, nf, &nv, &nfd, ndir, sizeof(ndir)) < 0) {
		close(ofd);
		return;
	}
	if (ov == nv &&
	    snprintf(orel, sizeof(orel), "%s%s%s", odir, *odir ? "/" : "", on) < HSM_PATH_MAX &&
	    snprintf(nrel, sizeof(nrel), "%s%s%s", ndir, *ndir ? "/" : "", nn) < HSM_PATH_MAX)
		nsync_note_dir_gone(h, ov, orel, nrel);
	close(ofd);
	close(nfd);
}

static void notify_event(struct hsmd *h, struct fanotify_event_metadata *md)
{
	char *p = (char *)(md + 1), *end = (char *)md + md->event_len;
	struct fanotify_event_info_fid *dfid = NULL;
	const char *name = NULL;
	struct hsmd_vol *v;
	char dirrel[4200];
	int dirfd;

	if (md->mask & FAN_RENAME) {
		notify_rename(h, md);
		return;
	}
	while (p + sizeof(struct fanotify_event_info_header) <= end) {
		struct fanotify_event_info_header *hdr = (void *)p;

		if (hdr->len < sizeof(*hdr) || p + hdr->len > end)
			break;
		if (hdr->info_type == FAN_EVENT_INFO_TYPE_DFID_NAME) {
			struct file_handle *fh;

			dfid = (void *)p;
			fh = (struct file_handle *)dfid->handle;
			name = (const char *)(fh->f_handle + fh->handle_bytes);
		}
		p += hdr->len;
	}
	if (!dfid || !name || !*name || !strcmp(name, "."))
		return;
	if (notify_dir(h, dfid, &v, &dirfd, dirrel, sizeof(dirrel)) < 0)
		return;
	if (md->mask & FAN_ONDIR) {
		char rel[4400];
		struct stat sb;

		snprintf(rel, sizeof(rel), "%s%s%s", dirrel, *dirrel ? "/" : "", name);
		if (md->mask & (FAN_DELETE | FAN_MOVED_FROM))
			nsync_note_dir_gone(h, v, rel, NULL);
		else if (md->mask & FAN_MOVED_TO)
			notify_subtree(h, v, dirfd, dirrel, name, 0);
		else if (fstatat(dirfd, name, &sb, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(sb.st_mode))
			nsync_note_dir(h, v, rel, &sb);
	} else {
		notify_file(h, md->mask, v, dirfd, dirrel, name);
	}
	/* A name made or removed changed the directory's mtime, which has no event. */
	if ((md->mask & (FAN_CREATE | FAN_DELETE | FAN_MOVED_FROM | FAN_MOVED_TO)) && *dirrel) {
		struct stat dsb;

		if (fstat(dirfd, &dsb) == 0)
			nsync_note_dir(h, v, dirrel, &dsb);
	}
	close(dirfd);
}

static void notify_read_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct hsmd *h = w->data;
	static uint64_t buf[8192];
	pid_t self = getpid();

	(void)loop;
	(void)revents;
	for (int round = 0; round < 8; round++) {
		ssize_t len = read(h->notify_fd, buf, sizeof(buf));
		struct fanotify_event_metadata *md = (void *)buf;

		if (len < 0) {
			if (errno != EAGAIN && errno != EINTR)
				log_warn("reading change events");
			return;
		}
		for (; FAN_EVENT_OK(md, len); md = FAN_EVENT_NEXT(md, len)) {
			/* Events with names are not 8-byte aligned in the buffer: each is
			 * handled from an aligned copy. */
			static uint64_t one[1024];
			struct fanotify_event_metadata *e = (void *)one;

			h->ev_notify++;
			if (md->event_len > sizeof(one))
				continue;
			memcpy(one, md, md->event_len);
			if (e->mask & FAN_Q_OVERFLOW) {
				log_warnx("change queue overflowed; rescanning");
				if (!h->scanning)
					scan_start(h);
				continue;
			}
			if (e->pid == self)
				continue;
			notify_event(h, e);
		}
	}
}

void notify_start(struct hsmd *h)
{
	ev_io_init(&h->notify_w, notify_read_cb, h->notify_fd, EV_READ);
	h->notify_w.data = h;
	ev_io_start(h->loop, &h->notify_w);
}

void notify_stop(struct hsmd *h)
{
	ev_io_stop(h->loop, &h->notify_w);
}
