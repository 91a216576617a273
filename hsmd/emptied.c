#include "hsmd/emptied.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "hsmd/catalog.h"
#include "hsmd/scan.h"
#include "hsmd/worker.h"
#include "lib/config.h"
#include "lib/hsmxattr.h"
#include "lib/log.h"

/* Writes st's next version (empty, resident) on fd. 0 or -1 (logged). */
static int emptied_record(struct hsmd *h, int fd, struct hsm_state *st, const char *how)
{
	uint8_t rec[HSM_XATTR_MAX];
	struct hsm_state n = *st;
	char fid[33];
	int len;

	hsm_state_local_write(&n, h->cfg->site);
	n.flags &= (uint8_t)~HSM_FLAG_ON_ACCESS;
	len = hsmx_encode(&n, rec, sizeof(rec));
	hsm_fid_hex(&st->fid, fid);
	if (len < 0 || fsetxattr(fd, HSM_XATTR_NAME, rec, (size_t)len, XATTR_REPLACE) < 0 ||
	    fsync(fd) < 0) {
		log_warn("fid %s: cannot record that %s emptied the stub", fid, how);
		return -1;
	}
	log_info("fid %s: a stub emptied by %s is an empty file now (version %llu)", fid, how,
		 (unsigned long long)n.version);
	*st = n;
	return 0;
}

int emptied_check(struct hsmd *h, int fd, struct hsm_state *st)
{
	struct stat sb;

	if (st->state != HSM_STATE_STUB || !(st->flags & HSM_FLAG_ON_ACCESS) ||
	    !st->archived_size || fstat(fd, &sb) < 0 || sb.st_size != 0)
		return 0;
	/* On the loop: no recall of it runs meanwhile (one would have refused the size). */
	if (recall_in_flight(&h->mv, &st->fid))
		return 0;
	return emptied_record(h, fd, st, "an open with O_TRUNC") < 0 ? -1 : 1;
}

/* The catalog and the other sites hear of st, the new version of the file at fd. */
static void emptied_note(struct hsmd *h, int fd, const struct hsm_state *st)
{
	struct cat_record rec;
	struct hsmd_vol *v;
	struct stat sb;
	char err[512];

	if (catalog_get(h->cat, &st->fid, &rec, err, sizeof(err)) != 0)
		return;
	for (size_t i = 0; i < h->nvols; i++) {
		v = &h->vols[i];
		if (!strcmp(v->cfg->name, rec.volume) && fstat(fd, &sb) == 0)
			scan_note(h, v, rec.path, &sb, st, NULL, CAT_J_MODIFY);
	}
	cat_record_clear(&rec);
}

int emptied_check_note(struct hsmd *h, int fd, struct hsm_state *st)
{
	int r = emptied_check(h, fd, st);

	if (r == 1)
		emptied_note(h, fd, st);
	return r;
}

/* fd (an event's file, on the user's mount) opened again for writing through the admin
 * mount of its volume: a truncate raises its pre-content event by path, so one through
 * the user's mount would wait on hsmd itself. -1 with errno. */
static int emptied_admin_open(struct hsmd *h, int fd)
{
	struct {
		struct file_handle fh;
		unsigned char b[MAX_HANDLE_SZ];
	} hb;
	struct hsmd_vol *v;
	struct stat sb;
	int mnt;

	if (fstat(fd, &sb) < 0)
		return -1;
	v = hsmd_vol_by_dev(h, sb.st_dev);
	if (!v) {
		errno = EXDEV;
		return -1;
	}
	hb.fh.handle_bytes = MAX_HANDLE_SZ;
	if (name_to_handle_at(fd, "", &hb.fh, &mnt, AT_EMPTY_PATH) < 0)
		return -1;
	return open_by_handle_at(v->root_fd, &hb.fh, O_WRONLY | O_CLOEXEC | O_NOATIME);
}

int emptied_truncate_open(struct hsmd *h, int fd, struct hsm_state *st)
{
	char fid[33];
	int afd;

	if (recall_in_flight(&h->mv, &st->fid))
		return -1;
	hsm_fid_hex(&st->fid, fid);
	afd = emptied_admin_open(h, fd);
	if (afd < 0 || ftruncate(afd, 0) < 0) {
		log_warn("fid %s: cannot empty a stub opened with O_TRUNC; recalling it", fid);
		if (afd >= 0)
			close(afd);
		return -1;
	}
	close(afd);
	if (emptied_record(h, fd, st, "an open with O_TRUNC") < 0)
		return -1;
	/* The opener's own truncate and close follow: that close publishes the version
	 * (noting it here too would make two of one change). */
	scan_note_recalled(h, st, NULL);
	return 1;
}
