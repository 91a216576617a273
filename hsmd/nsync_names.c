/* The names of the directories and symlinks this site has published live: their fid
 * comes from their path, so when a directory is renamed every one under its old name
 * must be published as gone (the new names are published as they are found), and only
 * a by-name index can list them. Key 'n' VOLUME '\0' PATH, value the kind. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hsmd/catalog.h"
#include "hsmd/nsync_int.h"
#include "hsmd/worker.h"
#include "lib/log.h"
#include "lib/pathsafe.h"

#define NS_NAMES_BUILT "mnsync_names"

size_t ns_nkey(const char *volume, const char *path, char *key, size_t cap)
{
	size_t vl = strlen(volume), pl = strlen(path);

	if (2 + vl + pl > cap)
		return 0;
	key[0] = 'n';
	memcpy(key + 1, volume, vl);
	key[1 + vl] = '\0';
	memcpy(key + 2 + vl, path, pl);
	return 2 + vl + pl;
}

struct ns_names_build {
	struct nsync *ns;
	size_t n;
};

static int ns_names_build_one(const char *k, size_t klen, const char *v, size_t vlen, void *arg)
{
	struct ns_names_build *b = arg;
	char vol[HSM_SITE_MAX + 1], key[HSM_PATH_MAX + HSM_SITE_MAX + 8], err[256], *line;
	const char *sp1, *sp2;
	struct ns_rec r;
	struct cat_kv_op op;
	size_t kl;

	(void)k;
	(void)klen;
	/* "SEQ VOLUME LINE" */
	line = strndup(v, vlen);
	if (!line)
		return -1;
	sp1 = strchr(line, ' ');
	sp2 = sp1 ? strchr(sp1 + 1, ' ') : NULL;
	if (!sp2 || (size_t)(sp2 - sp1 - 1) > HSM_SITE_MAX ||
	    nsrec_parse(sp2 + 1, strlen(sp2 + 1), &r, err, sizeof(err)) < 0) {
		free(line);
		return 0;
	}
	memcpy(vol, sp1 + 1, (size_t)(sp2 - sp1 - 1));
	vol[sp2 - sp1 - 1] = '\0';
	if ((r.kind == NS_DIR || r.kind == NS_LINK) && !r.deleted &&
	    (kl = ns_nkey(vol, r.path, key, sizeof(key)))) {
		op = (struct cat_kv_op){key, kl, &r.kind, 1};
		if (catalog_kv_write(b->ns->h->cat, &op, 1, err, sizeof(err)) < 0)
			log_warnx("nsync: name index: %s", err);
		b->n++;
	}
	nsrec_clear(&r);
	free(line);
	return 0;
}

int ns_names_build(struct nsync *ns, char *err, size_t errlen)
{
	struct ns_names_build b = {ns, 0};
	struct cat_kv_op op = {NS_NAMES_BUILT, strlen(NS_NAMES_BUILT), "1", 1};
	char *val = NULL;
	size_t vlen;
	int r = catalog_kv_get(ns->h->cat, NS_NAMES_BUILT, strlen(NS_NAMES_BUILT), &val, &vlen, err,
			       errlen);

	free(val);
	if (r <= 0)
		return r;
	/* Records published before the index existed. */
	if (catalog_kv_scan(ns->h->cat, "s", 1, NULL, 0, ns_names_build_one, &b, err, errlen) < 0)
		return -1;
	if (b.n)
		log_info("nsync: indexed %zu directory and symlink names", b.n);
	return catalog_kv_write(ns->h->cat, &op, 1, err, errlen);
}

struct ns_under {
	size_t plen; /* the key prefix's length: what follows is the path */
	char **paths;
	char *kinds;
	size_t n, cap;
};

static int ns_under_one(const char *k, size_t klen, const char *v, size_t vlen, void *arg)
{
	struct ns_under *u = arg;

	if (vlen != 1 || klen <= u->plen)
		return 0;
	if (u->n == u->cap) {
		size_t ncap = u->cap ? u->cap * 2 : 64;
		char **np = realloc(u->paths, ncap * sizeof(*np));
		char *nk;

		if (!np)
			return -1;
		u->paths = np;
		nk = realloc(u->kinds, ncap);
		if (!nk)
			return -1;
		u->kinds = nk;
		u->cap = ncap;
	}
	u->paths[u->n] = strndup(k + u->plen, klen - u->plen);
	if (!u->paths[u->n])
		return -1;
	u->kinds[u->n++] = v[0];
	return 0;
}

void ns_names_retire_under(struct nsync *ns, struct hsmd_vol *v, const char *dir)
{
	char key[HSM_PATH_MAX + HSM_SITE_MAX + 8], err[256], full[HSM_PATH_MAX + 2];
	struct ns_under u = {0};
	size_t kl;

	/* Collected first: publishing changes the index being scanned. */
	snprintf(full, sizeof(full), "%s/", dir);
	kl = ns_nkey(v->cfg->name, full, key, sizeof(key));
	if (!kl)
		return;
	u.plen = kl - strlen(full);
	if (catalog_kv_scan(ns->h->cat, key, kl, NULL, 0, ns_under_one, &u, err, sizeof(err)) < 0)
		log_warnx("nsync: %s/%s: names under it: %s", v->cfg->path, dir, err);
	/* Deepest first, so that a receiving site can remove each once it is empty. */
	for (size_t i = u.n; i-- > 0;) {
		if (u.kinds[i] == NS_DIR)
			nsync_note_dir(ns->h, v, u.paths[i], NULL);
		else
			nsync_note_link(ns->h, v, u.paths[i], NULL, NULL);
		free(u.paths[i]);
	}
	free(u.paths);
	free(u.kinds);
}
