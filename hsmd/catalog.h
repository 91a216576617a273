/* The site catalog: a leveldb index of every managed file, rebuilt from the xattrs
 * when lost (DESIGN §5). Keys (formats in docs/catalog.md):
 *   f<fid 16 bytes>               -> file record
 *   p<volume>\0<relative path>    -> fid (the path index)
 *   j<seq, 8 bytes big-endian>    -> change journal entry
 *   m<name>                       -> small metadata values (journal head, ...)
 * Every multi-key update is one leveldb WriteBatch. All calls are synchronous and
 * made by the catalog's single owner (the worker's loop thread). */
#ifndef HSM_CATALOG_H
#define HSM_CATALOG_H

#include <stddef.h>
#include <stdint.h>

#include "lib/hsmxattr.h"

struct catalog;

struct cat_record {
	struct hsm_fid fid;
	char volume[HSM_SITE_MAX + 1];
	char *path; /* relative to the volume root, no leading '/'; malloc'd, owned */
	uint8_t state;
	uint8_t flags;
	uint64_t size;
	uint64_t version;
	uint64_t archived_version;
	int64_t mtime_sec;
	uint32_t mtime_nsec;
	/* ctime read right after archive wrote the xattr; a release whose file still has
	 * this ctime skips the re-hash. 0/0 = unknown. */
	int64_t archived_ctime_sec;
	uint32_t archived_ctime_nsec;
	/* The inode that carries this fid (0 = not known yet, records written before it
	 * was kept): a second inode with the same fid is a copy (hsmd/dupfid.c). */
	uint64_t ino;
	uint8_t manifest_id[32];
	char owner[HSM_SITE_MAX + 1];
};

enum cat_journal_op {
	CAT_J_CREATE = 1,
	CAT_J_MODIFY = 2,
	CAT_J_RENAME = 3,
	CAT_J_DELETE = 4,
	CAT_J_ATTRIB = 5,
	CAT_J_STATE = 6, /* archive, release, recall changed the state */
};

struct cat_journal_entry {
	uint64_t seq;
	int op;
	struct hsm_fid fid;
	char volume[HSM_SITE_MAX + 1];
	char *path;	/* malloc'd */
	char *old_path; /* rename only, else NULL */
	uint64_t version;
	int64_t time_sec; /* when it was journaled */
};

/* Opens (creating if missing) the database in dir. sync != 0 makes every write
 * durable against a machine crash. NULL with a message in err. */
struct catalog *catalog_open(const char *dir, int sync, char *err, size_t errlen);
void catalog_close(struct catalog *c);

/* 0 found (fill *out; free with cat_record_clear), 1 not found, -1 error. */
int catalog_get(struct catalog *c, const struct hsm_fid *fid, struct cat_record *out, char *err,
		size_t errlen);
/* Stores rec; if a record for rec->fid exists with another path, its old path index
 * entry is removed. Appends a journal entry with op (0 = no journal entry), all in
 * one batch. 0 or -1. */
int catalog_put(struct catalog *c, const struct cat_record *rec, int op, char *err, size_t errlen);
/* Removes the record, its path index entry, and journals CAT_J_DELETE. 0, 1 (absent), -1. */
int catalog_delete(struct catalog *c, const struct hsm_fid *fid, char *err, size_t errlen);
/* Path index lookup: 0 found, 1 not found, -1 error. */
int catalog_lookup_path(struct catalog *c, const char *volume, const char *path,
			struct hsm_fid *out, char *err, size_t errlen);
/* Removes the path index entry only (the name went away, the fid may live on
 * under another link), with its second-name entry if it had one. 0 or -1. */
int catalog_unlink_path(struct catalog *c, const char *volume, const char *path, char *err,
			size_t errlen);
/* Indexes path as a second name (hard link) of fid, whose record keeps its own name:
 * the p key and its reverse l key (docs/catalog.md). Not journaled: the other sites
 * know the file by its record's name. 0 or -1. */
int catalog_link_path(struct catalog *c, const char *volume, const char *path,
		      const struct hsm_fid *fid, char *err, size_t errlen);
/* Calls fn for every second name of fid (catalog_link_path) until it returns non-zero
 * (returned). 0, the stop value, or -1. */
int catalog_foreach_link(struct catalog *c, const struct hsm_fid *fid,
			 int (*fn)(const char *volume, const char *path, void *arg), void *arg,
			 char *err, size_t errlen);
/* Calls fn for every file record in fid order; fn returns non-zero to stop (that value
 * is returned). Returns 0, the stop value, or -1 on a read error (including damage
 * leveldb only reports through the iterator's error). */
int catalog_foreach(struct catalog *c, int (*fn)(const struct cat_record *rec, void *arg),
		    void *arg, char *err, size_t errlen);
/* Journal: the last sequence number written (0 = empty), and entries after since. */
uint64_t catalog_journal_head(struct catalog *c);
int catalog_journal_foreach(struct catalog *c, uint64_t since,
			    int (*fn)(const struct cat_journal_entry *e, void *arg), void *arg,
			    char *err, size_t errlen);
/* Raw access for other keyspaces (namespace sync: 's', 'q', 'c' keys; docs/catalog.md).
 * kv_get: 0 found (*val malloc'd, caller frees), 1 absent, -1 error. */
int catalog_kv_get(struct catalog *c, const void *key, size_t klen, char **val, size_t *vlen,
		   char *err, size_t errlen);
/* Applies puts and deletes in one atomic batch: n operations, val NULL = delete. */
struct cat_kv_op {
	const void *key;
	size_t klen;
	const void *val;
	size_t vlen;
};
int catalog_kv_write(struct catalog *c, const struct cat_kv_op *ops, size_t n, char *err,
		     size_t errlen);
/* Calls fn for every key >= start that begins with prefix, in key order; fn returns
 * non-zero to stop (returned). 0, the stop value, or -1 on error. */
int catalog_kv_scan(struct catalog *c, const void *prefix, size_t plen, const void *start,
		    size_t slen,
		    int (*fn)(const char *k, size_t klen, const char *v, size_t vlen, void *arg),
		    void *arg, char *err, size_t errlen);

/* Record codec (exposed for tests): returns malloc'd bytes or NULL; decode 0/-1. */
uint8_t *cat_record_encode(const struct cat_record *rec, size_t *len);
int cat_record_decode(const uint8_t *buf, size_t len, struct cat_record *out);
void cat_record_clear(struct cat_record *rec);

#endif
