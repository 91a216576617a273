#include "hsmd/emptied.h"

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

int emptied_check(struct hsmd *h, int fd, struct hsm_state *st)
{
	uint8_t rec[HSM_XATTR_MAX];
	struct hsm_state n = *st;
	struct stat sb;
	char fid[33];
	int len;

	if (st->state != HSM_STATE_STUB || !(st->flags & HSM_FLAG_ON_ACCESS) ||
	    !st->archived_size || fstat(fd, &sb) < 0 || sb.st_size != 0)
		return 0;
	/* On the loop: no recall of it runs meanwhile (one would have refused the size). */
	if (recall_in_flight(&h->mv, &st->fid))
		return 0;
	hsm_state_local_write(&n, h->cfg->site);
	n.flags &= (uint8_t)~HSM_FLAG_ON_ACCESS;
	len = hsmx_encode(&n, rec, sizeof(rec));
	hsm_fid_hex(&st->fid, fid);
	if (len < 0 || fsetxattr(fd, HSM_XATTR_NAME, rec, (size_t)len, XATTR_REPLACE) < 0 ||
	    fsync(fd) < 0) {
		log_warn("fid %s: cannot record that an open with O_TRUNC emptied the stub", fid);
		return -1;
	}
	log_info("fid %s: a stub emptied by an open with O_TRUNC is an empty file now (version "
		 "%llu)",
		 fid, (unsigned long long)n.version);
	*st = n;
	return 1;
}

int emptied_check_note(struct hsmd *h, int fd, struct hsm_state *st)
{
	struct cat_record rec;
	struct hsmd_vol *v;
	struct stat sb;
	char err[512];
	int r = emptied_check(h, fd, st);

	if (r != 1 || catalog_get(h->cat, &st->fid, &rec, err, sizeof(err)) != 0)
		return r;
	for (size_t i = 0; i < h->nvols; i++) {
		v = &h->vols[i];
		if (!strcmp(v->cfg->name, rec.volume) && fstat(fd, &sb) == 0)
			scan_note(h, v, rec.path, &sb, st, NULL, CAT_J_MODIFY);
	}
	cat_record_clear(&rec);
	return r;
}
