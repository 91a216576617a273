#include "hsmd/peer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hsmd/nsync.h"
#include "hsmd/peer_data.h"
#include "hsmd/worker.h"
#include "lib/config.h"
#include "lib/https_server.h"
#include "lib/log.h"

struct peer_server {
	struct hsmd *h;
	struct https_server *srv;
};

static void peer_answer(struct https_req *req, int status, const char *fmt, const char *arg)
{
	char buf[512];
	int n = snprintf(buf, sizeof(buf), fmt, arg ? arg : "");

	if (n < 0)
		n = 0;
	if ((size_t)n >= sizeof(buf))
		n = sizeof(buf) - 1;
	https_respond(req, status, "text/plain", NULL, strndup(buf, (size_t)n), (size_t)n);
}

static int peer_authorize(void *ctx, const char *cn)
{
	struct peer_server *ps = ctx;

	return config_peer(ps->h->cfg, cn) ? 0 : -1;
}

/* The volume named by the first path component of rest, if the peer shares it; else
 * the request has been answered and NULL returned. *tail points after it. */
static struct hsmd_vol *peer_volume(struct peer_server *ps, struct https_req *req, const char *rest,
				    const char **tail)
{
	const struct hsm_peer_cfg *pc = config_peer(ps->h->cfg, req->peer_cn);
	char name[HSM_SITE_MAX + 1];
	size_t n = strcspn(rest, "/");

	*tail = rest + n;
	if (n == 0 || n > HSM_SITE_MAX) {
		peer_answer(req, 400, "bad volume name\n", NULL);
		return NULL;
	}
	memcpy(name, rest, n);
	name[n] = '\0';
	for (size_t i = 0; pc && i < ps->h->nvols; i++) {
		struct hsmd_vol *v = &ps->h->vols[i];

		if (!strcmp(v->cfg->name, name) &&
		    config_volume_has_peer(v->cfg, (int)(pc - ps->h->cfg->peers)))
			return v;
	}
	log_warnx("peer %s asked for volume \"%s\", which it does not share with us", req->peer_cn,
		  name);
	peer_answer(req, 403, "volume %s is not shared with you\n", name);
	return NULL;
}

static void peer_handle(void *ctx, struct https_req *req)
{
	struct peer_server *ps = ctx;
	struct hsmd_vol *v;
	const char *tail;

	if (strcmp(req->method, "GET") && strcmp(req->method, "HEAD")) {
		peer_answer(req, 405, "only GET\n", NULL);
		return;
	}
	if (!strcmp(req->path, "/v1/health")) {
		peer_answer(req, 200, "ok %s\n", ps->h->cfg->site);
		return;
	}
	if (!strncmp(req->path, "/v1/changes/", 12)) {
		v = peer_volume(ps, req, req->path + 12, &tail);
		if (!v)
			return;
		if (*tail) {
			peer_answer(req, 404, "no such resource\n", NULL);
			return;
		}
		nsync_serve_changes(ps->h->ns, req, req->peer_cn, v->cfg->name);
		return;
	}
	if (!strncmp(req->path, "/v1/data/", 9)) {
		if (peer_data_handle(ps->h, req, req->peer_cn, req->path + 9))
			return;
	}
	peer_answer(req, 404, "no such resource\n", NULL);
}

struct peer_server *peer_server_start(struct hsmd *h, char *err, size_t errlen)
{
	struct https_server_cfg sc;
	struct peer_server *ps;

	err[0] = '\0';
	if (!h->cfg->listen)
		return NULL;
	ps = calloc(1, sizeof(*ps));
	if (!ps) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	ps->h = h;
	memset(&sc, 0, sizeof(sc));
	sc.listen = h->cfg->listen;
	sc.cert_file = h->cfg->tls_cert;
	sc.key_file = h->cfg->tls_key;
	sc.ca_file = h->cfg->tls_ca;
	sc.authorize = peer_authorize;
	sc.handler = peer_handle;
	sc.ctx = ps;
	ps->srv = https_server_new(h->loop, &sc, err, errlen);
	if (!ps->srv) {
		free(ps);
		return NULL;
	}
	log_info("peer server listening on %s", h->cfg->listen);
	return ps;
}

void peer_server_stop(struct peer_server *ps)
{
	if (!ps)
		return;
	https_server_free(ps->srv);
	free(ps);
}
