/* The per-file state record kept in the trusted.hsm xattr: the file's own truth.
 * Binary, little-endian, versioned, with a trailing CRC32; format in docs/formats.md.
 * The codec is pure: no I/O. */
#ifndef HSM_HSMXATTR_H
#define HSM_HSMXATTR_H

#include <stddef.h>
#include <stdint.h>

#define HSM_XATTR_NAME	 "trusted.hsm"
#define HSM_XATTR_FORMAT 1
#define HSM_XATTR_MAX	 1024 /* no valid record is longer */
#define HSM_SITE_MAX	 32   /* site names: 1..32 of [a-z0-9_-], starting with a letter */
#define HSM_VV_MAX	 16   /* version vector entries */

enum hsm_file_state {
	HSM_STATE_RESIDENT = 1, /* data here, no verified copy of this version in the store */
	HSM_STATE_ARCHIVED = 2, /* data here and a verified copy in the store */
	HSM_STATE_STUB = 3,	/* no data here: recall before any access */
};

enum hsm_file_flags {
	HSM_FLAG_PINNED = 0x01,	   /* never released */
	HSM_FLAG_NOARCHIVE = 0x02, /* never archived */
	HSM_FLAG_ON_ACCESS = 0x04, /* recall at first read, not at open (first page kept) */
};
#define HSM_FLAGS_KNOWN 0x07u

struct hsm_fid {
	uint8_t b[16];
};

struct hsm_vv_entry {
	char site[HSM_SITE_MAX + 1];
	uint64_t counter;
};

struct hsm_state {
	uint8_t state; /* enum hsm_file_state */
	uint8_t flags; /* enum hsm_file_flags */
	struct hsm_fid fid;
	uint64_t version;	      /* counter of the last write, at owner */
	char owner[HSM_SITE_MAX + 1]; /* site holding the current version's data */
	uint64_t archived_version;    /* version copied to the store; 0 = none */
	uint64_t archived_size;	      /* size of that version */
	uint8_t manifest_id[32];      /* sha256 of its manifest; zero when none */
	int64_t archived_mtime_sec;   /* mtime of that version, restored on recall */
	uint32_t archived_mtime_nsec;
	unsigned nvv;
	struct hsm_vv_entry vv[HSM_VV_MAX];
};

/* Encodes st into buf. Returns the record length, or -1 if st is invalid
 * (unknown state or flags, bad site name, nvv too large) or cap is too small. */
int hsmx_encode(const struct hsm_state *st, uint8_t *buf, size_t cap);
/* Decodes a record; every malformed input (short, long, bad version, bad CRC,
 * bad state, unknown flags, bad names, trailing bytes) returns -1 with a
 * message in err. On error *st is unspecified. */
int hsmx_decode(const uint8_t *buf, size_t len, struct hsm_state *st, char *err, size_t errlen);

int hsm_site_name_valid(const char *s);
const char *hsm_state_name(int state); /* "resident", "archived", "stub", "?" */
/* What a local change of the data makes of st: resident, the next version, owned by
 * site, and site's version vector entry at that version. */
void hsm_state_local_write(struct hsm_state *st, const char *site);
int hsm_fid_generate(struct hsm_fid *fid); /* getrandom; -1 with errno on failure */
void hsm_fid_hex(const struct hsm_fid *fid, char out[33]);
int hsm_fid_parse(const char *hex, struct hsm_fid *fid);
int hsm_fid_is_zero(const struct hsm_fid *fid);

#endif
