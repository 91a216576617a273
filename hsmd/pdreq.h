/* The request target of a peer's data request (hsmd/peer_data.h):
 *
 *   /v1/data/VOL/FIDHEX/manifest?owner=SITE&version=N
 *   /v1/data/VOL/FIDHEX/chunk?owner=SITE&version=N&off=O&len=L&sha=HEX
 *
 * parsed before anything is looked up. A pure function of what the peer sent, fuzzed
 * with the HTTP reader (tests/fuzz/fuzz_httpreq.c). */
#ifndef HSMD_PDREQ_H
#define HSMD_PDREQ_H

#include <stdint.h>

#include "lib/hsmxattr.h"

enum pd_op { PD_MANIFEST, PD_CHUNK };

struct pd_target {
	char vol[HSM_SITE_MAX + 2]; /* as sent: checked against the configuration later */
	enum pd_op op;
	struct hsm_fid fid;
	char owner[HSM_SITE_MAX + 1];
	uint64_t version;
	uint64_t off; /* PD_CHUNK: off + len fits in an off_t */
	uint32_t len; /* PD_CHUNK: 1..PEER_CHUNK_MAX */
	uint8_t sha[32];
};

/* rest is the raw path after "/v1/data/", query the raw query. Returns 1 when rest is
 * not VOL/FIDHEX/manifest|chunk (not a data request), 0 when t is filled, -1 when the
 * shape fits but a field is bad: *why is the one-line answer for a 400 (static). The
 * volume is filled in every case but 1, so a caller can answer 403 first. */
int pdreq_parse(const char *rest, const char *query, struct pd_target *t, const char **why);

#endif
