/* Image references in the docker/containerd grammar, normalised:
 *   [domain[:port]/]path[:tag][@sha256:<64 hex>]
 * "hello" -> docker.io/library/hello:latest, "index.docker.io/x/y" -> docker.io/x/y:latest. */
#ifndef UK_STORE_REFERENCE_H
#define UK_STORE_REFERENCE_H

#include <stdbool.h>
#include <stddef.h>

#include "../common/error.h"

#define IMAGE_REF_NAME_MAX 255 /* domain + "/" + path, as in docker/distribution */
#define IMAGE_REF_TAG_MAX 128
#define IMAGE_REF_MAX 512 /* whole input: name, tag and digest fit with room to spare */
#define IMAGE_REF_DEFAULT_DOMAIN "docker.io"
#define IMAGE_REF_DEFAULT_TAG "latest"

struct image_ref {
	char *domain; /* "docker.io", "localhost:5000", "[::1]:5000" */
	char *path;   /* "library/hello" */
	char *tag;    /* NULL if none ("latest" is filled in when there is no digest either) */
	char *digest; /* "sha256:<64 hex>", NULL if none */
};

/* Parse and normalise; on error *ret is left cleared and the message names the problem. */
int image_ref_parse(const char *s, struct image_ref *ret, uk_error *err);
void image_ref_clear(struct image_ref *r);
#define _cleanup_image_ref_ __attribute__((cleanup(image_ref_clear)))

/* "docker.io/library/hello"; NULL only when out of memory. */
char *image_ref_name(const struct image_ref *r);
/* "docker.io/library/hello:1", "docker.io/library/hello@sha256:…" or both tag and digest. */
char *image_ref_string(const struct image_ref *r);

/* "sha256:" followed by exactly 64 lowercase hex digits. */
bool image_digest_valid(const char *s);
/* Only lowercase hex digits, length within [min, max]. */
bool image_hex_valid(const char *s, size_t min, size_t max);

#endif
