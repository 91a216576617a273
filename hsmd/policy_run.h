/* The policy engine (DESIGN §8, docs/policy.md): loads the admin's policy file,
 * evaluates it against the catalog, by a periodic full pass and by following the
 * catalog's change journal, and turns what it decides into jobs: prefetch (recalls),
 * archive, release, placement. Jobs run a few at a time and only while no reader and no
 * `hsm recall` is waiting (interactive recall > batch recall > prefetch > archive >
 * release), archive and prefetch traffic paced by the policy's windows and limits.
 *
 * Ownership: the engine belongs to the worker's loop. A compiled policy is immutable
 * and reference-counted: a pass evaluating on pool threads holds a reference, so a
 * reload swaps the engine's pointer at once and the old policy goes when its last
 * pass ends. */
#ifndef HSMD_POLICY_RUN_H
#define HSMD_POLICY_RUN_H

#include <stddef.h>
#include <sys/stat.h>

#include "lib/hsmxattr.h"

struct hsmd;
struct hsmd_vol;
struct ctl_conn;
struct json_object;
struct policy_engine;

/* Loads cfg->policy_file (none: an engine with no policy, which does nothing). NULL
 * with every error of the file in err when the policy does not compile. */
struct policy_engine *policy_engine_new(struct hsmd *h, char *err, size_t errlen);
/* Compiles cfg->policy_file (if any) and forgets it: hsmd's start-up check, so that
 * a broken policy stops the start with its errors. 0, or -1 with them in err. */
struct hsm_config;
int policy_engine_check(const struct hsm_config *cfg, char *err, size_t errlen);
/* Starts the periodic pass and the journal follower. */
void policy_engine_start(struct policy_engine *pe);
/* Stops timers and forgets queued jobs; jobs and passes in flight keep their memory
 * until they end (their callbacks see the engine gone). */
void policy_engine_free(struct policy_engine *pe);

/* Reads and compiles the policy file again and swaps it in; on any error the old
 * policy stays and -1 is returned with the reasons in err (also logged). */
int policy_engine_reload(struct policy_engine *pe, char *err, size_t errlen);

/* 1 if the policy excludes this file (never synced, never archived), with the rule
 * ("line N: exclude ...") in why; 0 otherwise or without a policy. Loop thread. */
int policy_engine_excluded(struct hsmd *h, struct hsmd_vol *v, const char *rel,
			   const struct stat *sb, const struct hsm_state *st, char *why,
			   size_t whylen);

/* The "policy" control verb: opts.op = status | reload | explain (paths[0]) |
 * run (opts.dry_run). Answers on c now or later. */
void policy_engine_request(struct hsmd *h, struct ctl_conn *c, struct json_object *req);

#endif
