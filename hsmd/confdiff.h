/* What changed between the configuration hsmd runs and a newly loaded one, and what
 * applying each change takes: SIGHUP applies live changes in place, restarts the worker
 * for the rest it can take (readers wait in the guard meanwhile), and applies nothing
 * when one change needs a full restart. hsmd -n prints the same list. */
#ifndef HSMD_CONFDIFF_H
#define HSMD_CONFDIFF_H

#include <stddef.h>

struct hsm_config;

enum confdiff_class {
	CONFDIFF_LIVE = 1,   /* applied in place: log level, policy, guard hold */
	CONFDIFF_WORKER = 2, /* applied by restarting the worker: store, peers, new volumes */
	CONFDIFF_RESTART = 3 /* only a restart of hsmd applies it */
};

#define CONFDIFF_MAX 64

struct confdiff {
	size_t n;
	int worst;     /* the highest class of any change, 0 if none */
	int truncated; /* more changes than CONFDIFF_MAX */
	struct {
		char key[160]; /* as in hsmd.conf: "store.url", "volume v2", "peer b.url" */
		int cls;
	} item[CONFDIFF_MAX];
};

void confdiff(const struct hsm_config *old, const struct hsm_config *new, struct confdiff *d);
/* What a class means to an admin, one short phrase. */
const char *confdiff_class_says(int cls);

#endif
