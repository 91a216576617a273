/* hsmd.conf: sections of "key = value" lines (format in docs/admin.md).
 *
 *   [site]         name, state_dir, socket, socket_group, log_level, workers
 *   [store]        url (file:///abs/path | s3://bucket[/prefix]), endpoint, region,
 *                  credentials (file of key = value, must be mode 0600 and owned
 *                  by root or the caller), chunk_size, multipart_threshold,
 *                  part_size, max_connections, retries, timeout
 *                  listen (ADDR:PORT of the peer server), tls_ca, tls_cert, tls_key,
 *                  peer_timeout, policy (the policy file, docs/policy.md; none = no
 *                  policy), policy_jobs (policy transfers at once, default 4)
 *   [peer NAME]    url (https://HOST:PORT), cost, priority (normal | first | last |
 *                  never)
 *   [volume NAME]  path (where users access it), backing (hsmd's own access
 *                  path on the same filesystem; default = path), recall
 *                  (open | access), peers (the other sites sharing the volume)
 *
 * Every error is reported as "FILE:LINE: message" and nothing is returned. */
#ifndef HSM_CONFIG_H
#define HSM_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#define HSM_VOLUMES_MAX 64
#define HSM_PEERS_MAX	32

enum hsm_store_kind { HSM_STORE_FILE = 1, HSM_STORE_S3 = 2 };
enum hsm_recall_mode { HSM_RECALL_OPEN = 0, HSM_RECALL_ACCESS = 1 };
/* Overrides of the cost order of recall sources (DESIGN §7). */
enum hsm_peer_priority {
	HSM_PRIO_NORMAL = 0,
	HSM_PRIO_FIRST = 1, /* before every normal source, owner included */
	HSM_PRIO_LAST = 2,  /* after the object store */
	HSM_PRIO_NEVER = 3, /* never a recall source (still a namespace peer) */
};

struct hsm_peer_cfg {
	char *name; /* site name of the peer: its certificate's CN */
	char *url;  /* https://HOST:PORT, no trailing '/' */
	int cost;   /* link cost, lower is preferred; default 100 */
	int priority;
	int line; /* where [peer NAME] was opened */
};

struct hsm_store_cfg {
	int kind;	   /* enum hsm_store_kind */
	char *url;	   /* as written */
	char *file_root;   /* file://: absolute directory */
	char *bucket;	   /* s3: bucket name */
	char *prefix;	   /* s3: key prefix without leading/trailing '/', "" if none */
	char *endpoint;	   /* s3: http(s)://host[:port]; default https://s3.REGION.amazonaws.com */
	char *region;	   /* default "us-east-1" */
	char *credentials; /* path of the credentials file, NULL if none */
	char *access_key;  /* read from the credentials file */
	char *secret_key;
	char *session_token;	      /* NULL if none */
	uint32_t chunk_size;	      /* default 4 MiB */
	uint64_t multipart_threshold; /* default 64 MiB; objects larger use multipart */
	uint64_t part_size;	      /* default 16 MiB, >= 5 MiB */
	int max_connections;	      /* default 16 */
	int retries;		      /* default 4 */
	double timeout;		      /* seconds per request, default 30 */
};

struct hsm_volume_cfg {
	char *name;	  /* [a-z0-9_-]{1,32} */
	char *path;	  /* absolute, normalized, no trailing '/' */
	char *backing;	  /* absolute, normalized; = path when not given */
	int recall;	  /* enum hsm_recall_mode */
	int path_line;	  /* where path was set, for messages */
	int backing_line; /* where backing was set; 0 = defaulted to path */
	size_t npeers;	  /* the other sites that share this volume */
	int *peers;	  /* indexes into hsm_config.peers */
};

/* Who starts hsmd-guard: hsmd itself when none runs, or a service manager. */
enum hsm_guard_mode { HSM_GUARD_AUTO = 0, HSM_GUARD_EXTERNAL = 1 };

struct hsm_config {
	char *file; /* the path it was loaded from */
	char *text; /* the file as it was loaded (hsmd -n compares) */
	size_t text_len;
	char *site;			   /* required */
	char *state_dir;		   /* default /var/lib/hsmd */
	char *socket_path;		   /* default /run/hsmd/hsmd.sock */
	char *socket_group;		   /* default "hsm" (ignored if the group does not exist) */
	int log_level;			   /* enum log_level, default info */
	int workers;			   /* I/O and hashing threads; default 0 = 16 */
	struct hsm_store_cfg store;	   /* default file://STATE_DIR/objects */
	char *listen;			   /* peer server "ADDR:PORT", NULL = none */
	char *tls_ca, *tls_cert, *tls_key; /* required when there are peers or listen */
	double peer_timeout;		   /* seconds without progress; default 10 */
	char *policy_file;		   /* NULL = no policy */
	int policy_jobs;		   /* 0 = default 4 */
	int guard_mode;			   /* enum hsm_guard_mode, default auto */
	char *guard_socket;		   /* hsmd-guard's socket, default socket + ".guard" */
	double guard_hold;		   /* seconds the guard holds a stub's reader; default 30 */
	size_t npeers;
	struct hsm_peer_cfg *peers;
	size_t nvolumes; /* at least one */
	struct hsm_volume_cfg *volumes;
};

/* Loads and checks a config file. On success returns 0 and *out (free with
 * config_free). On error returns -1 with "FILE:LINE: what" in err. */
int config_load(const char *path, struct hsm_config **out, char *err, size_t errlen);
/* The same from a string; name is used in messages. For tests. */
int config_load_string(const char *name, const char *text, struct hsm_config **out, char *err,
		       size_t errlen);
void config_free(struct hsm_config *cfg);
/* Checks what the file alone cannot: every volume's path and backing exist and are
 * directories. 0, or -1 with "FILE:LINE: ..." in err. hsmd runs it at start and -n. */
int config_check_volumes(const struct hsm_config *cfg, char *err, size_t errlen);
/* Parses sizes like "4M", "64MiB", "512k", "1G", "4096". Returns 0 or -1. */
int config_parse_size(const char *s, uint64_t *out);
/* The volume whose path contains abs_path (longest match), or NULL; *rel gets
 * the part below the volume root ("" for the root itself), pointing into abs_path. */
const struct hsm_volume_cfg *config_volume_for(const struct hsm_config *cfg, const char *abs_path,
					       const char **rel);

/* The peer named name, or NULL. */
const struct hsm_peer_cfg *config_peer(const struct hsm_config *cfg, const char *name);
/* 1 if the peer (index into cfg->peers) shares volume v. */
int config_volume_has_peer(const struct hsm_volume_cfg *v, int peer);
/* The volume named name, or NULL. */
const struct hsm_volume_cfg *config_volume(const struct hsm_config *cfg, const char *name);

#endif
