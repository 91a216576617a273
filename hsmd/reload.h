/* Reloading hsmd.conf: a candidate file is loaded and checked in full before anything
 * of it is used, and the configuration hsmd runs is kept as STATE_DIR/running.conf, so
 * that the worker applies exactly what the supervisor decided and hsmd -n can say what
 * a reload would do. */
#ifndef HSMD_RELOAD_H
#define HSMD_RELOAD_H

#include <stdio.h>

struct hsm_config;

/* Loads path and runs every check hsmd runs at start (volumes exist, the policy file
 * loads). 0 and *out, or -1 with err. */
int reload_load(const char *path, struct hsm_config **out, char *err, size_t errlen);
/* STATE_DIR/running.conf of cfg, into buf. */
void reload_snapshot_path(const struct hsm_config *cfg, char *buf, size_t len);
/* Writes cfg's text as the running configuration (atomically). 0 or -1 (logged). */
int reload_snapshot_write(const struct hsm_config *cfg);
/* hsmd -n: compares cfg with the running configuration, if any, and prints what a
 * reload would do with each changed key. */
void reload_report(const struct hsm_config *cfg, FILE *out);

#endif
