/* A version's content: its size and fixed-size chunks, each with a sha256.
 * Serialized as text (docs/formats.md); the manifest id is the sha256 of that text,
 * so a manifest fetched from the store is verified by its own name. */
#ifndef HSM_MANIFEST_H
#define HSM_MANIFEST_H

#include <stddef.h>
#include <stdint.h>

#define HSM_CHUNK_SIZE_DEFAULT (4u << 20)
#define HSM_CHUNK_SIZE_MIN     (64u << 10)
#define HSM_CHUNK_SIZE_MAX     (64u << 20)

struct hsm_chunk {
	uint64_t offset;
	uint32_t length;
	uint8_t sha256[32];
};

struct hsm_manifest {
	uint64_t size;
	uint32_t chunk_size;
	size_t nchunks;
	struct hsm_chunk *chunks; /* owned; manifest_free releases */
};

/* Prepares m for a file of the given size: allocates the chunk table with offsets
 * and lengths set; the caller fills in each sha256. Returns 0 or -1 (ENOMEM/EINVAL). */
int manifest_init(struct hsm_manifest *m, uint64_t size, uint32_t chunk_size);
/* Serializes into a malloc'd buffer owned by the caller. Returns 0 or -1. */
int manifest_serialize(const struct hsm_manifest *m, char **out, size_t *outlen);
/* Parses and validates (contiguous chunks from 0, lengths = chunk_size except the
 * last, total = size, count bounded). Returns 0, or -1 with a message in err. */
int manifest_parse(const char *buf, size_t len, struct hsm_manifest *m, char *err, size_t errlen);
void manifest_id(const char *buf, size_t len, uint8_t id[32]);
void manifest_free(struct hsm_manifest *m);

/* Object-store keys: "chunks/<hex sha256>" and "manifests/<hex id>". */
void manifest_chunk_key(const uint8_t sha256[32], char out[80]);
void manifest_object_key(const uint8_t id[32], char out[80]);

#endif
