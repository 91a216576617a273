/* The worker: one libev loop that owns all of hsmd's state (catalog, recalls, jobs,
 * control connections); blocking disk I/O and hashing go to the pool. */
#ifndef HSMD_WORKER_H
#define HSMD_WORKER_H

#include <ev.h>
#include <sys/types.h>
#include <time.h>

#include "hsmd/supervisor.h"
#include "recall/recall.h"

struct hsm_config;
struct hsm_volume_cfg;
struct catalog;
struct control;
struct guard_link;
struct intercept_defer;
struct nsync;
struct peer_server;
struct peers;

struct worker_args {
	struct hsm_config *cfg;
	int notify_fd;	     /* notification group, owned by the supervisor */
	int ctl_fd;	     /* listening control socket, owned by the supervisor */
	char (*admin)[4200]; /* admin mount path of each volume */
	int debug;	     /* hsmd -d: debug logging whatever the file says */
};

struct hsmd_vol {
	const struct hsm_volume_cfg *cfg;
	const char *admin; /* admin mount path */
	int root_fd;	   /* owned: the admin mount's root */
	dev_t dev;
};

struct hsmd {
	struct ev_loop *loop;
	struct hsm_config *cfg;
	struct guard_link *guard; /* our attachment to hsmd-guard, which lent us perm_fd */
	struct pool *pool;
	struct store *store;
	struct catalog *cat;
	struct mover mv;
	int perm_fd, notify_fd;
	int devnull_fd; /* stands in for event files answered later */
	ev_io perm_w, notify_w;
	ev_signal term_w, int_w, hup_w;
	ev_timer drain_w; /* stopping: waits for recalls in flight */
	int debug;	  /* hsmd -d */
	int drain_ticks;
	struct hsmd_vol *vols;
	size_t nvols;
	struct intercept_defer *releasing; /* fids being released, with held events */
	struct control *ctl;
	struct nsync *ns;	      /* namespace sync: feed and pullers */
	struct peer_server *peer_srv; /* NULL without a listen address */
	int ns_quiet;		      /* set while noting a change that must not be published yet */
	int ns_attr_only;	      /* set while noting an attribute change (no data written) */
	struct peers *peers;	      /* clients of the configured peers */
	struct policy_engine *pe;     /* the policy engine (no policy file: idle) */
	time_t started;
	int scanning;
	uint64_t ev_perm, ev_allowed, ev_denied, ev_notify;
	uint64_t ev_from_guard; /* events hsmd-guard held for us while no hsmd ran */
};

int worker_main(struct worker_args *wa);

/* The volume a user-visible absolute path lies in, and the relative rest. */
struct hsmd_vol *hsmd_vol_for(struct hsmd *h, const char *abs, const char **rel);
/* The volume whose filesystem is dev, or NULL. */
struct hsmd_vol *hsmd_vol_by_dev(struct hsmd *h, dev_t dev);

#endif
