#include "hsmd/worker.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "hsmd/catalog.h"
#include "hsmd/control.h"
#include "hsmd/fan.h"
#include "hsmd/guard_link.h"
#include "hsmd/intercept.h"
#include "hsmd/notify.h"
#include "hsmd/nsync.h"
#include "hsmd/peer.h"
#include "hsmd/reload.h"
#include "hsmd/policy_run.h"
#include "hsmd/scan.h"
#include "hsmd/sources.h"
#include "hsmd/peer_data.h"
#include "lib/config.h"
#include "lib/log.h"
#include "lib/pool.h"
#include "recall/peer_client.h"
#include "recall/store.h"

struct hsmd_vol *hsmd_vol_for(struct hsmd *h, const char *abs, const char **rel)
{
	const struct hsm_volume_cfg *vc = config_volume_for(h->cfg, abs, rel);

	if (!vc)
		return NULL;
	for (size_t i = 0; i < h->nvols; i++)
		if (h->vols[i].cfg == vc)
			return &h->vols[i];
	return NULL;
}

struct hsmd_vol *hsmd_vol_by_dev(struct hsmd *h, dev_t dev)
{
	for (size_t i = 0; i < h->nvols; i++)
		if (h->vols[i].dev == dev)
			return &h->vols[i];
	return NULL;
}

/* Stopping: no new events are read (the kernel queues them, and hsmd-guard holds them
 * until the next hsmd); recalls in flight get up to 8 s to finish and answer. */
static void worker_drain_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct hsmd *h = w->data;

	(void)revents;
	if (recall_active(&h->mv) && ++h->drain_ticks < 80)
		return;
	if (recall_active(&h->mv))
		log_warnx("stopping with %u recall(s) unfinished; their readers get EIO",
			  recall_active(&h->mv));
	ev_timer_stop(loop, w);
	ev_break(loop, EVBREAK_ALL);
}

static void worker_stop_cb(struct ev_loop *loop, ev_signal *w, int revents)
{
	struct hsmd *h = w->data;

	(void)revents;
	if (ev_is_active(&h->drain_w))
		return;
	log_info("worker stopping");
	intercept_stop(h);
	ev_timer_init(&h->drain_w, worker_drain_cb, 0, 0.1);
	h->drain_w.data = h;
	ev_timer_again(loop, &h->drain_w);
}

/* The group is the guard's: add what this hsmd needs. The volumes' marks are there
 * already when the guard made them; adding them again changes nothing, and covers a
 * volume added since. The admin mounts are new with every hsmd (its own namespace). */
static int worker_marks(struct hsmd *h)
{
	for (size_t i = 0; i < h->nvols; i++) {
		const struct hsmd_vol *v = &h->vols[i];

		if (fan_mark_filesystem(h->perm_fd, HSM_FAN_PERM_MASK, v->cfg->path) < 0) {
			log_warn("volume %s: cannot watch %s", v->cfg->name, v->cfg->path);
			return -1;
		}
		if (fan_ignore_mount(h->perm_fd, v->admin) < 0) {
			log_warn("volume %s: cannot exempt the admin mount %s", v->cfg->name,
				 v->admin);
			return -1;
		}
	}
	return 0;
}

/* The live part of a reload (hsmd/confdiff.h): the supervisor has checked the file,
 * written it as the running configuration and restarts the worker for everything else,
 * so only these keys can differ from what this worker started with. */
static void worker_apply_live(struct hsmd *h, struct hsm_config *n)
{
	struct hsm_config *c = h->cfg;

	c->log_level = h->debug ? LOG_LVL_DEBUG : n->log_level;
	log_set_level(c->log_level);
	c->policy_jobs = n->policy_jobs;
	c->guard_hold = n->guard_hold;
	if (c->policy_file && n->policy_file && strcmp(c->policy_file, n->policy_file)) {
		/* The policy engine reads the name through h->cfg: take n's string over. */
		free(c->policy_file);
		c->policy_file = n->policy_file;
		n->policy_file = NULL;
	}
}

/* SIGHUP (sent by the supervisor after a reload): the live keys, then the policy file,
 * which may have changed on its own. */
static void worker_hup_cb(struct ev_loop *loop, ev_signal *w, int revents)
{
	struct hsmd *h = w->data;
	struct hsm_config *n;
	char path[4200], err[4096];

	(void)loop;
	(void)revents;
	reload_snapshot_path(h->cfg, path, sizeof(path));
	if (config_load(path, &n, err, sizeof(err)) < 0) {
		log_warnx("reload: %s; the worker keeps what it runs with", err);
	} else {
		worker_apply_live(h, n);
		config_free(n);
	}
	if (!h->cfg->policy_file) {
		log_info("reload: no policy file configured");
		return;
	}
	if (policy_engine_reload(h->pe, err, sizeof(err)) == 0)
		log_info("reload: policy reloaded");
}

static int worker_open_volumes(struct hsmd *h, struct worker_args *wa)
{
	h->nvols = h->cfg->nvolumes;
	h->vols = calloc(h->nvols, sizeof(*h->vols));
	if (!h->vols)
		return -1;
	for (size_t i = 0; i < h->nvols; i++) {
		struct hsmd_vol *v = &h->vols[i];
		struct stat sb;

		v->cfg = &h->cfg->volumes[i];
		v->admin = wa->admin[i];
		v->root_fd = open(v->admin, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (v->root_fd < 0 || fstat(v->root_fd, &sb) < 0) {
			log_warn("volume %s: cannot open the admin mount %s", v->cfg->name,
				 v->admin);
			return -1;
		}
		v->dev = sb.st_dev;
	}
	return 0;
}

/* The catalog is an index of the xattrs: not synced on every write (the start-up scan
 * repairs what a machine crash loses), and rebuilt from scratch when leveldb cannot
 * open it, the damaged copy kept aside for a post-mortem. */
static struct catalog *worker_open_catalog(const char *dir)
{
	char err[1024], aside[4200];
	struct catalog *cat = catalog_open(dir, 0, err, sizeof(err));

	if (cat)
		return cat;
	if (strstr(err, "lock")) {
		log_warnx("catalog %s: %s", dir, err);
		return NULL;
	}
	snprintf(aside, sizeof(aside), "%.4096s.damaged-%ld", dir, (long)time(NULL));
	log_warnx("catalog %s cannot be opened (%s); moving it to %s and rebuilding it from "
		  "the files' state records",
		  dir, err, aside);
	if (rename(dir, aside) < 0) {
		log_warn("cannot move %s aside", dir);
		return NULL;
	}
	cat = catalog_open(dir, 0, err, sizeof(err));
	if (!cat)
		log_warnx("catalog %s: %s", dir, err);
	return cat;
}

int worker_main(struct worker_args *wa)
{
	struct hsmd h;
	char err[1024], dir[4200];
	int rc = 1;

	memset(&h, 0, sizeof(h));
	h.cfg = wa->cfg;
	h.debug = wa->debug;
	h.perm_fd = -1;
	h.notify_fd = wa->notify_fd;
	h.started = time(NULL);
	signal(SIGPIPE, SIG_IGN);
	/* A lease break would otherwise kill us: we drop leases ourselves, quickly. */
	signal(SIGIO, SIG_IGN);
	h.loop = ev_loop_new(EVFLAG_AUTO | EVFLAG_NOSIGMASK);
	if (!h.loop) {
		log_warnx("cannot create the event loop");
		return 1;
	}
	/* Mostly I/O-bound threads: enough of them that many recalls' fsyncs share a
	 * journal commit. */
	h.pool = pool_new(h.loop, h.cfg->workers ? (unsigned)h.cfg->workers : 16);
	if (!h.pool) {
		log_warn("cannot start the worker pool");
		goto out;
	}
	if (worker_open_volumes(&h, wa) < 0)
		goto out;
	h.guard = guard_link_open(&h, err, sizeof(err));
	if (!h.guard) {
		log_warnx("%s", err);
		goto out;
	}
	if (worker_marks(&h) < 0)
		goto out;
	snprintf(dir, sizeof(dir), "%.4000s/catalog", h.cfg->state_dir);
	h.cat = worker_open_catalog(dir);
	if (!h.cat)
		goto out;
	h.store = store_open(h.loop, h.pool, &h.cfg->store, err, sizeof(err));
	if (!h.store) {
		log_warnx("object store %s: %s", h.cfg->store.url, err);
		goto out;
	}
	h.mv.loop = h.loop;
	h.mv.pool = h.pool;
	h.mv.store = h.store;
	h.mv.chunk_size = h.cfg->store.chunk_size;
	h.mv.window = 8;
	h.mv.unwatch = intercept_unwatch;
	h.mv.settle = intercept_settle;
	h.mv.unwatch_ctx = &h;
	h.peers = peers_new(h.loop, h.cfg, err, sizeof(err));
	if (!h.peers) {
		log_warnx("peer clients: %s", err);
		goto out;
	}
	h.mv.sources = sources_for;
	h.mv.sources_ctx = &h;

	{
		char perr[4096];

		h.pe = policy_engine_new(&h, perr, sizeof(perr));
		if (!h.pe) {
			log_warnx("%s", perr);
			goto out;
		}
	}
	h.ns = nsync_new(&h, err, sizeof(err));
	if (!h.ns) {
		log_warnx("namespace sync: %s", err);
		goto out;
	}
	h.peer_srv = peer_server_start(&h, err, sizeof(err));
	if (!h.peer_srv && err[0]) {
		log_warnx("peer server on %s: %s", h.cfg->listen, err);
		goto out;
	}
	intercept_start(&h);
	notify_start(&h);
	h.ctl = control_start(&h, wa->ctl_fd);
	if (!h.ctl) {
		log_warnx("cannot start the control server");
		goto out;
	}
	ev_signal_init(&h.term_w, worker_stop_cb, SIGTERM);
	ev_signal_init(&h.int_w, worker_stop_cb, SIGINT);
	ev_signal_init(&h.hup_w, worker_hup_cb, SIGHUP);
	h.hup_w.data = &h;
	h.term_w.data = &h;
	h.int_w.data = &h;
	ev_signal_start(h.loop, &h.term_w);
	ev_signal_start(h.loop, &h.int_w);
	ev_signal_start(h.loop, &h.hup_w);
	scan_start(&h);
	nsync_start(h.ns);
	policy_engine_start(h.pe);
	log_info("worker ready (site %s)", h.cfg->site);
	ev_run(h.loop, 0);
	rc = 0;
out:
	/* Leave readers to the next worker (or to the supervisor's exit); the kernel
	 * keeps their events pending in the group, which outlives us. Work still in
	 * flight would call back into what is being torn down: leave it to exit(). */
	if (h.pool &&
	    (pool_pending(h.pool) || (h.store && store_pending(h.store)) || recall_active(&h.mv))) {
		log_warnx("worker exiting with work in flight; its readers get EIO");
		policy_engine_free(h.pe);
		h.pe = NULL;
		nsync_free(h.ns);
		peer_server_stop(h.peer_srv);
		catalog_close(h.cat);
		return rc;
	}
	if (h.ctl)
		control_stop(h.ctl);
	guard_link_free(h.guard);
	policy_engine_free(h.pe);
	h.pe = NULL;
	nsync_free(h.ns);
	peer_server_stop(h.peer_srv);
	if (h.pool)
		pool_free(h.pool);
	peer_data_free();
	peers_free(h.peers);
	store_close(h.store);
	if (h.cat)
		catalog_close(h.cat);
	for (size_t i = 0; i < h.nvols; i++)
		if (h.vols[i].root_fd > 0)
			close(h.vols[i].root_fd);
	free(h.vols);
	ev_loop_destroy(h.loop);
	return rc;
}
