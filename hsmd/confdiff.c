#include "hsmd/confdiff.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "lib/config.h"

static void cd_add(struct confdiff *d, int cls, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void cd_add(struct confdiff *d, int cls, const char *fmt, ...)
{
	va_list ap;

	if (cls > d->worst)
		d->worst = cls;
	if (d->n == CONFDIFF_MAX) {
		d->truncated = 1;
		return;
	}
	va_start(ap, fmt);
	vsnprintf(d->item[d->n].key, sizeof(d->item[d->n].key), fmt, ap);
	va_end(ap);
	d->item[d->n++].cls = cls;
}

static int cd_str_differs(const char *a, const char *b)
{
	if (!a || !b)
		return a != b;
	return strcmp(a, b) != 0;
}

static void cd_str(struct confdiff *d, int cls, const char *key, const char *a, const char *b)
{
	if (cd_str_differs(a, b))
		cd_add(d, cls, "%s", key);
}

static void cd_num(struct confdiff *d, int cls, const char *key, double a, double b)
{
	if (a != b)
		cd_add(d, cls, "%s", key);
}

static void cd_site(struct confdiff *d, const struct hsm_config *a, const struct hsm_config *b)
{
	/* The site's identity, its state and what the supervisor and the guard hold open
	 * (control socket, guard socket) cannot change under a running hsmd. */
	cd_str(d, CONFDIFF_RESTART, "site.name", a->site, b->site);
	cd_str(d, CONFDIFF_RESTART, "site.state_dir", a->state_dir, b->state_dir);
	cd_str(d, CONFDIFF_RESTART, "site.socket", a->socket_path, b->socket_path);
	cd_str(d, CONFDIFF_RESTART, "site.socket_group", a->socket_group, b->socket_group);
	cd_num(d, CONFDIFF_RESTART, "site.guard", a->guard_mode, b->guard_mode);
	cd_str(d, CONFDIFF_RESTART, "site.guard_socket", a->guard_socket, b->guard_socket);
	cd_num(d, CONFDIFF_LIVE, "site.guard_hold", a->guard_hold, b->guard_hold);
	cd_num(d, CONFDIFF_LIVE, "site.log_level", a->log_level, b->log_level);
	cd_num(d, CONFDIFF_LIVE, "site.policy_jobs", a->policy_jobs, b->policy_jobs);
	/* One policy file for another is a reload of the engine; none to one or one to
	 * none starts or stops the engine, which a new worker does. */
	cd_str(d, (a->policy_file && b->policy_file) ? CONFDIFF_LIVE : CONFDIFF_WORKER,
	       "site.policy", a->policy_file, b->policy_file);
	cd_num(d, CONFDIFF_WORKER, "site.workers", a->workers, b->workers);
	cd_str(d, CONFDIFF_WORKER, "site.listen", a->listen, b->listen);
	cd_str(d, CONFDIFF_WORKER, "site.tls_ca", a->tls_ca, b->tls_ca);
	cd_str(d, CONFDIFF_WORKER, "site.tls_cert", a->tls_cert, b->tls_cert);
	cd_str(d, CONFDIFF_WORKER, "site.tls_key", a->tls_key, b->tls_key);
	cd_num(d, CONFDIFF_WORKER, "site.peer_timeout", a->peer_timeout, b->peer_timeout);
}

static void cd_store(struct confdiff *d, const struct hsm_store_cfg *a,
		     const struct hsm_store_cfg *b)
{
	const int w = CONFDIFF_WORKER;

	cd_str(d, w, "store.url", a->url, b->url);
	cd_str(d, w, "store.endpoint", a->endpoint, b->endpoint);
	cd_str(d, w, "store.region", a->region, b->region);
	cd_str(d, w, "store.credentials", a->credentials, b->credentials);
	/* The same credentials file with new keys in it (a rotation). */
	if (!cd_str_differs(a->credentials, b->credentials) &&
	    (cd_str_differs(a->access_key, b->access_key) ||
	     cd_str_differs(a->secret_key, b->secret_key) ||
	     cd_str_differs(a->session_token, b->session_token)))
		cd_add(d, w, "store.credentials (the keys in %s)", b->credentials);
	cd_num(d, w, "store.chunk_size", a->chunk_size, b->chunk_size);
	cd_num(d, w, "store.multipart_threshold", (double)a->multipart_threshold,
	       (double)b->multipart_threshold);
	cd_num(d, w, "store.part_size", (double)a->part_size, (double)b->part_size);
	cd_num(d, w, "store.max_connections", a->max_connections, b->max_connections);
	cd_num(d, w, "store.retries", a->retries, b->retries);
	cd_num(d, w, "store.timeout", a->timeout, b->timeout);
}

static void cd_peers(struct confdiff *d, const struct hsm_config *a, const struct hsm_config *b)
{
	for (size_t i = 0; i < b->npeers; i++) {
		const struct hsm_peer_cfg *n = &b->peers[i], *o = config_peer(a, n->name);

		if (!o) {
			cd_add(d, CONFDIFF_WORKER, "peer %s (added)", n->name);
			continue;
		}
		if (cd_str_differs(o->url, n->url))
			cd_add(d, CONFDIFF_WORKER, "peer %s.url", n->name);
		if (o->cost != n->cost)
			cd_add(d, CONFDIFF_WORKER, "peer %s.cost", n->name);
		if (o->priority != n->priority)
			cd_add(d, CONFDIFF_WORKER, "peer %s.priority", n->name);
	}
	for (size_t i = 0; i < a->npeers; i++)
		if (!config_peer(b, a->peers[i].name))
			cd_add(d, CONFDIFF_WORKER, "peer %s (removed)", a->peers[i].name);
}

/* Whether volumes a (of config ca) and b (of cb) are shared with the same sites. */
static int cd_same_sharing(const struct hsm_config *ca, const struct hsm_volume_cfg *a,
			   const struct hsm_config *cb, const struct hsm_volume_cfg *b)
{
	if (a->npeers != b->npeers)
		return 0;
	for (size_t i = 0; i < a->npeers; i++) {
		const char *name = ca->peers[a->peers[i]].name;
		const struct hsm_peer_cfg *p = config_peer(cb, name);

		if (!p || !config_volume_has_peer(b, (int)(p - cb->peers)))
			return 0;
	}
	return 1;
}

static void cd_volumes(struct confdiff *d, const struct hsm_config *a, const struct hsm_config *b)
{
	for (size_t i = 0; i < b->nvolumes; i++) {
		const struct hsm_volume_cfg *n = &b->volumes[i], *o = config_volume(a, n->name);

		if (!o) {
			/* A new volume gets its admin mount and marks, then a new worker. */
			cd_add(d, CONFDIFF_WORKER, "volume %s (added)", n->name);
			continue;
		}
		if (strcmp(o->path, n->path))
			cd_add(d, CONFDIFF_RESTART, "volume %s.path", n->name);
		if (strcmp(o->backing, n->backing))
			cd_add(d, CONFDIFF_RESTART, "volume %s.backing", n->name);
		if (o->recall != n->recall)
			cd_add(d, CONFDIFF_RESTART, "volume %s.recall", n->name);
		if (!cd_same_sharing(a, o, b, n))
			cd_add(d, CONFDIFF_WORKER, "volume %s.peers", n->name);
	}
	/* Its admin mount and marks would have to go while files of it may be open. */
	for (size_t i = 0; i < a->nvolumes; i++)
		if (!config_volume(b, a->volumes[i].name))
			cd_add(d, CONFDIFF_RESTART, "volume %s (removed)", a->volumes[i].name);
}

void confdiff(const struct hsm_config *old, const struct hsm_config *new, struct confdiff *d)
{
	memset(d, 0, sizeof(*d));
	cd_site(d, old, new);
	cd_store(d, &old->store, &new->store);
	cd_peers(d, old, new);
	cd_volumes(d, old, new);
}

const char *confdiff_class_says(int cls)
{
	switch (cls) {
	case CONFDIFF_LIVE:
		return "applied by a reload";
	case CONFDIFF_WORKER:
		return "applied by a reload, which restarts the worker";
	case CONFDIFF_RESTART:
		return "needs a restart of hsmd";
	}
	return "?";
}
