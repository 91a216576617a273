/* The data half of the peer server (DESIGN §7, docs/protocol.md): other sites fetch
 * the manifest and the chunks of a file version that is resident here.
 *
 *   GET /v1/data/VOL/FIDHEX/manifest?owner=SITE&version=N
 *       200 text/plain: the manifest (lib/manifest format) of the file's current
 *       content, chunked like archive does (the [store] chunk_size)
 *   GET /v1/data/VOL/FIDHEX/chunk?owner=SITE&version=N&off=O&len=L&sha=HEX
 *       200 application/octet-stream: exactly L bytes at O, whose sha256 is HEX
 *
 *   400 a malformed request, 403 a volume not shared with the caller, 404 the file is
 *   not here or not resident (a stub), 409 the file here is another version (owner or
 *   version differ, or it changed while it was read, or the chunk's bytes no longer
 *   hash to HEX), 500 a local failure. Error bodies are one line of text.
 *
 * The file is found through the catalog and opened beneath the volume's admin mount
 * (never watched, so a stub is never recalled by being served). Disk reads and
 * hashing run on the pool; answers are sent from the loop thread. Manifests are cached
 * by (fid, version, ctime), and requests for a manifest being computed wait for it, so
 * any number of sites reading one file cost one hash. */
#ifndef HSMD_PEER_DATA_H
#define HSMD_PEER_DATA_H

#include <stdint.h>

struct hsmd;
struct https_req;

/* Requests for paths under /v1/data/ from an authenticated peer_site; rest is the
 * raw path after "/v1/data/". Returns 1 when the request is taken (it will be
 * answered exactly once, perhaps later), 0 when the path is not one of the above (the
 * caller answers it). */
int peer_data_handle(struct hsmd *h, struct https_req *req, const char *peer_site,
		     const char *rest);

struct peer_data_stats {
	uint64_t manifests_served, chunks_served;
	uint64_t bytes_served; /* chunk bytes, all peers (per peer: peer_health) */
	uint64_t manifests_hashed, cache_hits;
	uint64_t refused; /* answers other than 200 */
};

void peer_data_stats(struct peer_data_stats *out);
/* Frees the manifest cache. Call once no data request is being worked on (the pool
 * has drained) and the peer server is gone. */
void peer_data_free(void);

#endif
