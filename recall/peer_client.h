/* Peer clients: how this site asks the other sites for data (DESIGN §7,
 * docs/protocol.md). One client per configured [peer], each on its own libcurl multi
 * handle (lib/http) on the worker's loop, speaking HTTPS with mutual TLS: our
 * certificate and key, the deployment's CA; the peer's chain and host name are always
 * verified.
 *
 * Each client keeps the peer's health. A transfer that fails at the connection level
 * (no answer, reset, TLS failure, a timeout) marks the peer down; a down peer is
 * probed with GET /v1/health every 2 s until it answers 200, and any HTTP answer at all
 * marks it up again. Recall skips down peers (hsmd/sources), other callers decide
 * for themselves.
 *
 * Calls: every callback runs exactly once, later, on the loop thread (never inside the
 * call that started it), unless the call is cancelled first or the set is freed (then
 * it never runs). A call pointer is valid until its callback starts or it is
 * cancelled. Errors are a positive errno and a message: ENOENT (404: the peer does not
 * have it), ESTALE (409: the peer has another version), EACCES (403), ETIMEDOUT, EIO
 * (anything else; the message carries the peer's first line or curl's reason). */
#ifndef HSM_PEER_CLIENT_H
#define HSM_PEER_CLIENT_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "lib/hsmxattr.h"

struct ev_loop;
struct hsm_config;
struct peers;
struct peer_client;
struct peer_call;

#define PEER_PROBE_INTERVAL 2.0		/* seconds between health probes of a down peer */
#define PEER_CHUNK_MAX	    (16u << 20) /* the longest chunk a peer serves */
#define PEER_MANIFEST_MAX   (64u << 20) /* the longest manifest we accept */

/* data: the answer's bytes (malloc'd, NUL-terminated, the NUL not counted), owned by
 * the callback; NULL on error. The same shape as store_get_cb. */
typedef void (*peer_data_cb)(void *arg, int err, const char *msg, uint8_t *data, size_t len);
/* The generic form: status is the HTTP status (0 when no answer came). err is 0 for a
 * 2xx answer, else mapped as above; body (owned by the callback, possibly NULL) is the
 * answer or the start of the error answer. */
typedef void (*peer_resp_cb)(void *arg, int err, const char *msg, long status, char *body,
			     size_t len);

struct peer_health {
	int up;		       /* 0 after a connection-level failure, until a probe answers */
	char last_error[256];  /* "" when none yet */
	time_t last_ok;	       /* last HTTP answer of any status; 0 = never */
	time_t last_fail;      /* last connection-level failure; 0 = never */
	unsigned failures;     /* consecutive connection-level failures */
	uint64_t requests;     /* calls started (probes included) */
	uint64_t bytes_in;     /* bytes of successful answers received */
	uint64_t bytes_served; /* data bytes this site's peer server sent to it */
	uint64_t busy;	       /* answers of 429 (its request rate limit), retried */
};

/* One client for each of cfg->peers[], in that order. cfg must outlive the set. NULL
 * with a message in err (naming the peer or file at fault). */
struct peers *peers_new(struct ev_loop *loop, const struct hsm_config *cfg, char *err,
			size_t errlen);
/* Cancels every call (no callback runs), stops the probes, frees the set. NULL is a
 * no-op. */
void peers_free(struct peers *ps);
size_t peers_count(const struct peers *ps);
/* The client of cfg->peers[i], or NULL when i is out of range. */
struct peer_client *peers_at(struct peers *ps, size_t i);
/* The client of the peer named name, or NULL. */
struct peer_client *peers_find(struct peers *ps, const char *name);
/* Calls in flight on every client (for a clean shutdown). */
unsigned peers_active(const struct peers *ps);

const char *peer_name(const struct peer_client *pc);
const struct peer_health *peer_health(const struct peer_client *pc);
/* Counts data bytes our server sent to this peer (for metrics). */
void peer_note_served(struct peer_client *pc, uint64_t bytes);

/* GET /v1/data/VOL/FIDHEX/manifest?owner=SITE&version=N: the manifest text of that
 * version (lib/manifest format), not yet parsed or checked. */
struct peer_call *peer_get_manifest(struct peer_client *pc, const char *volume,
				    const struct hsm_fid *fid, const char *owner, uint64_t version,
				    peer_data_cb cb, void *arg);
/* GET /v1/data/VOL/FIDHEX/chunk?owner=SITE&version=N&off=O&len=L&sha=HEX: exactly len
 * bytes (a different length is EIO). The caller still verifies their sha256: the
 * peer's word is not proof. len is 1..PEER_CHUNK_MAX. */
struct peer_call *peer_get_chunk(struct peer_client *pc, const char *volume,
				 const struct hsm_fid *fid, const char *owner, uint64_t version,
				 uint64_t off, uint32_t len, const uint8_t sha256[32],
				 peer_data_cb cb, void *arg);
/* GET path_and_query (starting with '/', already percent-encoded) for other modules
 * (namespace sync's /v1/changes long-polls, /v1/health). timeout bounds the whole
 * exchange (0 = the peer timeout); no stall timeout applies, since a long-poll is
 * silent while it waits. max_body 0 = no limit. */
struct peer_call *peer_get(struct peer_client *pc, const char *path_and_query, double timeout,
			   size_t max_body, peer_resp_cb cb, void *arg);
/* Stops a call; its callback will not run. Not from inside that callback. */
void peer_cancel(struct peer_call *call);

#endif
