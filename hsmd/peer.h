/* The peer server of a site: HTTPS with mutual TLS (lib/https_server) answering the
 * other sites (docs/protocol.md). It authenticates the caller by its certificate (CN =
 * a configured [peer]), checks the caller shares the volume it names, and hands the
 * request to namespace sync (changes) or to the data server (manifests and chunks). */
#ifndef HSMD_PEER_H
#define HSMD_PEER_H

#include <stddef.h>

struct hsmd;
struct peer_server;

/* NULL with a message in err; also NULL (and err "") when no listen address is set. */
struct peer_server *peer_server_start(struct hsmd *h, char *err, size_t errlen);
void peer_server_stop(struct peer_server *ps);

#endif
