#include "hsmd/sources.h"

#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hsmd/worker.h"
#include "lib/config.h"
#include "recall/peer_client.h"

/* Where an entry stands: groups in the order of the header comment, then the owner
 * before the others, then cost, then name. */
struct src_key {
	int group;
	int not_owner;
	int cost;
	const char *name;
	struct src_entry e;
};

enum { G_FIRST, G_NORMAL, G_STORE, G_LAST, G_NEVER };

static int src_key_cmp(const void *a, const void *b)
{
	const struct src_key *x = a, *y = b;

	if (x->group != y->group)
		return x->group < y->group ? -1 : 1;
	if (x->not_owner != y->not_owner)
		return x->not_owner < y->not_owner ? -1 : 1;
	if (x->cost != y->cost)
		return x->cost < y->cost ? -1 : 1;
	return strcmp(x->name, y->name);
}

static int src_has_manifest_id(const struct hsm_state *st)
{
	for (int i = 0; i < 32; i++)
		if (st->manifest_id[i])
			return 1;
	return 0;
}

size_t sources_order(const char *self, const struct hsm_state *st, const struct src_peer *peers,
		     size_t npeers, struct src_entry *out, size_t max)
{
	struct src_key *keys = calloc(npeers + 2, sizeof(*keys));
	size_t n = 0, owner_known = 0;

	if (!keys)
		return 0;
	for (size_t i = 0; i < npeers; i++) {
		struct src_key *k = &keys[n++];
		int owner = !strcmp(peers[i].name, st->owner);

		owner_known |= owner;
		k->not_owner = !owner;
		k->cost = peers[i].cost;
		k->name = peers[i].name;
		k->e.kind = RECALL_SRC_PEER;
		k->e.peer = (int)i;
		k->e.name = peers[i].name;
		switch (peers[i].priority) {
		case HSM_PRIO_FIRST:
			k->group = G_FIRST;
			break;
		case HSM_PRIO_LAST:
			k->group = G_LAST;
			break;
		case HSM_PRIO_NEVER:
			k->group = G_NEVER;
			k->e.skip = SRC_SKIP_NEVER;
			break;
		default:
			k->group = G_NORMAL;
		}
		if (!k->e.skip && !peers[i].up)
			k->e.skip = SRC_SKIP_DOWN;
	}
	/* Listed so that a recall that cannot reach the owner says why. */
	if (!owner_known && st->owner[0] && strcmp(st->owner, self) != 0) {
		struct src_key *k = &keys[n++];

		k->group = G_NORMAL;
		k->name = st->owner;
		k->e.kind = RECALL_SRC_PEER;
		k->e.peer = -1;
		k->e.name = st->owner;
		k->e.skip = SRC_SKIP_UNKNOWN_OWN;
	}
	{
		struct src_key *k = &keys[n++];

		k->group = G_STORE;
		k->name = "store";
		k->e.kind = RECALL_SRC_STORE;
		k->e.peer = -1;
		k->e.name = "store";
		/* Only the current content will do: an older archived version is not this
		 * file any more. */
		if (!st->archived_version || !src_has_manifest_id(st))
			k->e.skip = SRC_SKIP_NOT_ARCH;
		else if (st->archived_version != st->version)
			k->e.skip = SRC_SKIP_OLD_ARCH;
	}
	qsort(keys, n, sizeof(*keys), src_key_cmp);
	if (n > max)
		n = max;
	for (size_t i = 0; i < n; i++)
		out[i] = keys[i].e;
	free(keys);
	return n;
}

static struct hsmd_vol *src_vol_by_name(struct hsmd *h, const char *volume)
{
	for (size_t i = 0; volume && i < h->nvols; i++)
		if (!strcmp(h->vols[i].cfg->name, volume))
			return &h->vols[i];
	return NULL;
}

/* The peers sharing v, for sources_order; cfg_idx gets each one's index in
 * cfg->peers. Returns how many. */
static size_t src_peers_of(struct hsmd *h, const struct hsmd_vol *v, struct src_peer *sp,
			   int *cfg_idx)
{
	size_t n = 0;

	for (size_t i = 0; v && i < v->cfg->npeers && n < HSM_PEERS_MAX; i++) {
		int idx = v->cfg->peers[i];
		const struct hsm_peer_cfg *pcfg;
		struct peer_client *pc;

		if (idx < 0 || (size_t)idx >= h->cfg->npeers)
			continue;
		pcfg = &h->cfg->peers[idx];
		pc = peers_at(h->peers, (size_t)idx);
		sp[n].name = pcfg->name;
		sp[n].cost = pcfg->cost;
		sp[n].priority = pcfg->priority;
		/* Without a client (no peers set up) a peer cannot be asked anything. */
		sp[n].up = pc ? peer_health(pc)->up : 0;
		cfg_idx[n] = idx;
		n++;
	}
	return n;
}

size_t sources_for(void *ctx, const struct hsm_state *st, dev_t dev, struct recall_source *out,
		   size_t max)
{
	struct hsmd *h = ctx;
	struct hsmd_vol *v = NULL;
	struct src_peer sp[HSM_PEERS_MAX];
	struct src_entry e[HSM_PEERS_MAX + 2];
	int cfg_idx[HSM_PEERS_MAX];
	size_t np, n;

	for (size_t i = 0; i < h->nvols; i++)
		if (h->vols[i].dev == dev)
			v = &h->vols[i];
	np = src_peers_of(h, v, sp, cfg_idx);
	n = sources_order(h->cfg->site, st, sp, np, e, HSM_PEERS_MAX + 2);
	if (n > max)
		n = max;
	for (size_t i = 0; i < n; i++) {
		struct recall_source *s = &out[i];

		memset(s, 0, sizeof(*s));
		s->kind = e[i].kind;
		if (e[i].kind == RECALL_SRC_STORE) {
			snprintf(s->name, sizeof(s->name), "store");
		} else {
			snprintf(s->name, sizeof(s->name), "site %s", e[i].name);
			snprintf(s->volume, sizeof(s->volume), "%s", v ? v->cfg->name : "");
			if (e[i].peer >= 0)
				s->peer = peers_at(h->peers, (size_t)cfg_idx[e[i].peer]);
		}
		if (e[i].skip && s->peer && !strcmp(e[i].skip, SRC_SKIP_DOWN) &&
		    peer_health(s->peer)->last_error[0])
			snprintf(s->skip, sizeof(s->skip), "down (%.180s)",
				 peer_health(s->peer)->last_error);
		else if (e[i].skip)
			snprintf(s->skip, sizeof(s->skip), "%s", e[i].skip);
		else if (s->kind == RECALL_SRC_PEER && !s->peer)
			snprintf(s->skip, sizeof(s->skip), "no client for this peer");
	}
	return n;
}

static const char *src_prio_name(int prio)
{
	switch (prio) {
	case HSM_PRIO_FIRST:
		return "first";
	case HSM_PRIO_LAST:
		return "last";
	case HSM_PRIO_NEVER:
		return "never";
	default:
		return "normal";
	}
}

static struct json_object *src_str_or_null(const char *s)
{
	return s && s[0] ? json_object_new_string(s) : NULL;
}

struct json_object *sources_describe(struct hsmd *h, const char *volume, const struct hsm_state *st)
{
	struct json_object *arr = json_object_new_array();
	struct hsmd_vol *v = src_vol_by_name(h, volume);
	struct src_peer sp[HSM_PEERS_MAX];
	struct src_entry e[HSM_PEERS_MAX + 2];
	int cfg_idx[HSM_PEERS_MAX];
	size_t np, n;

	if (!arr)
		return NULL;
	np = src_peers_of(h, v, sp, cfg_idx);
	n = sources_order(h->cfg->site, st, sp, np, e, HSM_PEERS_MAX + 2);
	for (size_t i = 0; i < n; i++) {
		struct json_object *o = json_object_new_object();
		const struct peer_health *ph = NULL;
		const char *health = "n/a";

		if (!o)
			break;
		if (e[i].kind == RECALL_SRC_PEER && e[i].peer >= 0) {
			struct peer_client *pc = peers_at(h->peers, (size_t)cfg_idx[e[i].peer]);

			ph = pc ? peer_health(pc) : NULL;
			health = ph ? (ph->up ? "up" : "down") : "n/a";
		}
		/* the store by its URL: which store, when sites use different ones */
		json_object_object_add(o, "source",
				       json_object_new_string(e[i].kind == RECALL_SRC_STORE
								  ? h->cfg->store.url
								  : e[i].name));
		json_object_object_add(
		    o, "kind",
		    json_object_new_string(e[i].kind == RECALL_SRC_STORE ? "store" : "peer"));
		json_object_object_add(
		    o, "cost", e[i].peer >= 0 ? json_object_new_int(sp[e[i].peer].cost) : NULL);
		json_object_object_add(
		    o, "priority",
		    json_object_new_string(
			src_prio_name(e[i].peer >= 0 ? sp[e[i].peer].priority : HSM_PRIO_NORMAL)));
		json_object_object_add(o, "health", json_object_new_string(health));
		json_object_object_add(o, "last_error",
				       src_str_or_null(ph ? ph->last_error : NULL));
		json_object_object_add(o, "reason_skipped", src_str_or_null(e[i].skip));
		json_object_array_add(arr, o);
	}
	return arr;
}
