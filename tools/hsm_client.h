/* Client side of the control socket protocol (docs/control.md): one unix stream
 * connection to hsmd, JSON request lines out, JSON response lines in.
 *
 * Every function that fails leaves a one-line message in hsm_client_error(): it
 * names the socket and says what went wrong, ready to be printed after "hsm: ". */
#ifndef HSM_CLIENT_H
#define HSM_CLIENT_H

#include <stddef.h>

#include <json-c/json.h>

#define HSM_SOCKET_DEFAULT "/run/hsmd/hsmd.sock"
/* The protocol's limit on one line, either direction, without its '\n'. */
#define HSM_LINE_MAX (16u * 1024 * 1024)

struct hsm_client;

/* Connects to the socket at path. Returns NULL on failure with the reason in
 * err (always NUL-terminated). */
struct hsm_client *hsm_client_connect(const char *path, char *err, size_t errlen);
void hsm_client_close(struct hsm_client *c);

/* Sends req as one line. Returns 0 or -1. When hsmd has already closed its end,
 * this still returns 0: the next hsm_client_read() then returns whatever hsmd
 * said before closing (an "end" line with its reason), or reports it gone. */
int hsm_client_send(struct hsm_client *c, json_object *req);

/* Reads the next response line. Returns 0 and a new reference in *msg (a JSON
 * object with a string "type"; the caller puts it), or -1 on a malformed line,
 * an over-long line, EOF or an I/O error. */
int hsm_client_read(struct hsm_client *c, json_object **msg);

const char *hsm_client_error(const struct hsm_client *c);

#endif
