/* Namespace sync: entries made under a directory that was renamed since (by a site
 * that had not heard of the rename, say across a partition) go to its new name. The
 * removal record of a renamed directory names where it went (its target). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hsmd/nsrec.h"
#include "hsmd/nsync_int.h"
#include "hsmd/worker.h"
#include "lib/config.h"
#include "lib/log.h"
#include "lib/pathsafe.h"

/* A record's path under the new name of a directory on it that was renamed since. */
int ns_follow_moves(struct nsync *ns, struct hsmd_vol *v, char **path)
{
	int moved = 0;

	/* a bounded number of hops: renames may chain (a to b, then b to c) */
	for (int hop = 0; hop < 16; hop++) {
		const char *p = *path;
		int found = 0;

		for (const char *slash = strchr(p, '/'); slash && !found;
		     slash = strchr(slash + 1, '/')) {
			char key[HSM_PATH_MAX + 8];
			struct hsm_fid fid;
			struct ns_rec d;
			uint64_t seq;

			snprintf(key, sizeof(key), "%c:%.*s", NS_DIR, (int)(slash - p), p);
			nsrec_dir_fid(v->cfg->name, key, &fid);
			if (ns_load(ns, &fid, &d, &seq, NULL) != 0)
				continue;
			if (d.deleted && d.target) {
				size_t tl = strlen(d.target), rl = strlen(slash);
				char *np = tl + rl <= HSM_PATH_MAX ? malloc(tl + rl + 1) : NULL;

				if (np) {
					memcpy(np, d.target, tl);
					memcpy(np + tl, slash, rl + 1);
					log_info(
					    "nsync: %s/%s: made under %s, which became %s: it goes "
					    "to %s",
					    v->cfg->path, p, d.path, d.target, np);
					free(*path);
					*path = np;
					found = moved = 1;
				}
			}
			nsrec_clear(&d);
		}
		if (!found)
			break;
	}
	return moved;
}

/* A directory or symlink m, made at old_path under a directory renamed since, moved by
 * ns_follow_moves to m->path. Its fid comes from its path, so under the new name it is
 * another entry: m becomes that entry, as a change of ours, and *gone (the caller's to
 * apply and clear) is the old one's removal for every site (a directory's as renamed
 * to the new name, so what was made in it follows too). 0, or -1 out of memory. */
int ns_follow_other(struct nsync *ns, struct hsmd_vol *v, struct ns_rec *m, const char *old_path,
		    struct ns_rec *gone)
{
	const char *site = ns->h->cfg->site;
	char key[HSM_PATH_MAX + 8];
	struct ns_rec cur;
	uint64_t seq;

	if (nsrec_copy(gone, m) < 0)
		return -1;
	free(gone->path);
	free(gone->target);
	gone->path = strdup(old_path);
	gone->target = m->kind == NS_DIR ? strdup(m->path) : NULL;
	if (!gone->path || (m->kind == NS_DIR && !gone->target)) {
		nsrec_clear(gone);
		return -1;
	}
	gone->deleted = 1;
	nsrec_vv_set(gone, site, nsrec_vv_get(gone, site) + 1);

	snprintf(key, sizeof(key), "%c:%s", m->kind, m->path);
	nsrec_dir_fid(v->cfg->name, key, &m->fid);
	if (ns_load(ns, &m->fid, &cur, &seq, NULL) == 0) {
		nsrec_vv_merge(m, &cur);
		nsrec_clear(&cur);
	}
	m->version = nsrec_vv_get(m, site) + 1;
	nsrec_vv_set(m, site, m->version);
	snprintf(m->owner, sizeof(m->owner), "%s", site);
	return 0;
}
