/* A client for OCI distribution-spec registries (Docker Registry HTTP API v2): resolve a
 * reference to a linux/amd64 image manifest, fetch its config, and download blobs with
 * their size and sha256 verified. libcurl underneath, HTTPS with certificate checks
 * (plain HTTP only for loopback registries and the hosts named in opts->insecure),
 * Bearer token and Basic authentication.
 *
 * The library never logs. Errors are -errno with a uk_error naming the reference, blob or
 * host; credentials never appear in a message, and registry-supplied text that contains
 * one is dropped. Every response is bounded: manifests, indexes and configs at
 * REGISTRY_MANIFEST_MAX, token responses at REGISTRY_TOKEN_RESPONSE_MAX.
 *
 *   -ENOENT            manifest or blob unknown, no linux/amd64 entry in an index
 *   -EACCES            unauthorized (401/403, token refused, credentials missing or wrong)
 *   -EBADMSG           digest or size mismatch, malformed manifest or config
 *   -EPROTONOSUPPORT   schema 1, unknown media types, digests other than sha256
 *   -EFBIG             a response over its bound
 *   -ECONNREFUSED, -EHOSTUNREACH, -ETIMEDOUT, -EPROTO (TLS)   transport, with curl's message
 *   -EIO               any other HTTP status, with the registry's error code and message */
#ifndef UK_STORE_REGISTRY_H
#define UK_STORE_REGISTRY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <json-c/json.h>

#include "../common/error.h"

#define REGISTRY_MANIFEST_MAX (4u << 20)       /* manifest, index, config */
#define REGISTRY_TOKEN_RESPONSE_MAX (64u << 10) /* body of a token endpoint's answer */
#define REGISTRY_ERROR_BODY_MAX (64u << 10)     /* body of an error response we read */
#define REGISTRY_DIGEST_MAX 72                  /* "sha256:" + 64 hex + NUL, rounded */
#define REGISTRY_DEFAULT_TIMEOUT_S 60

/* Credentials, as in the CRI AuthConfig; any may be NULL. identity_token is an OAuth2
 * refresh token for the registry's token endpoint; registry_token is a bearer token sent
 * as is. */
struct registry_auth {
	const char *username;
	const char *password;
	const char *identity_token;
	const char *registry_token;
};

struct registry_opts {
	/* NULL-terminated "host" or "host:port" entries allowed over plain HTTP. Loopback
	 * registries (localhost, 127.0.0.0/8, [::1]) always are. May be NULL. */
	const char *const *insecure;
	const struct registry_auth *auth; /* may be NULL: anonymous */
	/* Connect timeout, stall timeout (less than 1 KiB/s for this long) and total timeout
	 * of small requests; 0 means REGISTRY_DEFAULT_TIMEOUT_S. */
	long timeout_s;
	const char *ca_file; /* PEM bundle instead of the system's; may be NULL */
	/* A directory of verified blobs named by their sha256 hex (the image store's): the
	 * config is read from there, checked again, when it is present. May be NULL. */
	const char *blob_cache;
};

struct registry_blob {
	char digest[REGISTRY_DIGEST_MAX]; /* sha256:<64 hex> */
	char media_type[128];             /* "" if the manifest gave none */
	uint64_t size;
};

struct registry_image {
	/* The platform manifest: its digest, media type, bytes as served and parsed. */
	char manifest_digest[REGISTRY_DIGEST_MAX];
	char *manifest_media_type;
	char *manifest_raw;
	size_t manifest_len;
	json_object *manifest;
	/* The index or manifest list the manifest was picked from; "" when there was none.
	 * It is the digest `docker pull` reports for a multi-platform image. */
	char index_digest[REGISTRY_DIGEST_MAX];
	/* The config blob: descriptor, bytes (verified) and parsed. */
	struct registry_blob config_blob;
	char *config_raw;
	size_t config_len;
	json_object *config;
	struct registry_blob *layers;
	size_t n_layers;
	json_object *annotations; /* the manifest's "annotations" (own reference), or NULL */
};

/* A connection to one repository, for one pull: it keeps the HTTP connection and the
 * bearer token between calls. ref and the strings in *o are copied. Not thread-safe:
 * one thread at a time per client. */
typedef struct registry_client registry_client;

int registry_client_new(const char *ref, const struct registry_opts *o, registry_client **ret,
			uk_error *err);
void registry_client_free(registry_client *c);
static inline void registry_client_freep(registry_client **c)
{
	registry_client_free(*c);
}
#define _cleanup_registry_client_ __attribute__((cleanup(registry_client_freep)))

/* Resolve the client's reference (tag or digest) to a linux/amd64 image manifest: an OCI
 * image index or Docker manifest list gives the entry with os=linux, architecture=amd64
 * (one without a variant first); OCI image manifests and Docker schema 2 manifests are
 * taken as they are; anything else is -EPROTONOSUPPORT naming the media type. A manifest
 * fetched by digest must hash to it; one fetched by tag must match the registry's
 * Docker-Content-Digest when it sends one. The config blob is fetched, verified and parsed
 * as JSON. On error *ret is left cleared. */
int registry_client_resolve(registry_client *c, struct registry_image *ret, uk_error *err);

/* Download one blob of the client's repository to path (created or truncated, 0600),
 * streaming, and check its size and sha256 before returning. On any failure path is
 * removed; a content mismatch is -EBADMSG "digest mismatch" (or "size mismatch"). The
 * file is not fsynced: the caller does that before it publishes it. */
int registry_client_fetch_blob(registry_client *c, const struct registry_blob *b,
			       const char *path, uk_error *err);

/* One-shot forms of the above, each with its own client (and token). */
int registry_resolve(const char *ref, const struct registry_opts *o, struct registry_image *ret,
		     uk_error *err);
int registry_fetch_blob(const char *ref, const struct registry_opts *o,
			const struct registry_blob *b, const char *path, uk_error *err);

void registry_image_clear(struct registry_image *i);
#define _cleanup_registry_image_ __attribute__((cleanup(registry_image_clear)))

/* ---- Pure helpers, exposed for the unit tests. ---- */

enum registry_media_kind {
	REGISTRY_MT_UNKNOWN = 0,
	REGISTRY_MT_OCI_INDEX,
	REGISTRY_MT_DOCKER_LIST,
	REGISTRY_MT_OCI_MANIFEST,
	REGISTRY_MT_DOCKER_MANIFEST,
	REGISTRY_MT_DOCKER_SCHEMA1,
};
/* Classify a media type; parameters (";charset=…"), surrounding blanks and case are
 * ignored. */
enum registry_media_kind registry_media_kind(const char *media_type);

struct registry_challenge {
	char scheme[16]; /* "bearer" or "basic", lowercase; "" when none */
	char realm[2048];
	char service[256];
	char scope[1024];
};
/* Parse the first challenge of a WWW-Authenticate value: scheme token (any case), then
 * comma-separated auth-params, values as tokens or quoted strings (with \-escapes; commas
 * inside quotes kept). Unknown parameters are ignored. -EINVAL for malformed input or a
 * value over its field. */
int registry_parse_challenge(const char *value, struct registry_challenge *ret);

/* The entry of an index's "manifests" for os/arch: one without a variant first, else the
 * first with any variant. A borrowed pointer; -ENOENT when there is none, -EBADMSG when
 * "manifests" is not an array. */
int registry_index_pick(json_object *index, const char *os, const char *arch,
			json_object **ret);

/* The host to talk to for a reference's domain: docker.io is registry-1.docker.io. */
const char *registry_api_host(const char *domain);

/* Whether a registry "host[:port]" may be reached over plain HTTP: loopback, or listed
 * in insecure (an entry matches the host with its port, or the host alone). */
bool registry_host_plain_http(const char *domain, const char *const *insecure);

/* "<scheme>://<api host>/v2/<path>/<kind>/<reference>", kind "manifests" or "blobs".
 * NULL only when out of memory. */
char *registry_url(const char *domain, bool plain_http, const char *path, const char *kind,
		   const char *reference);

#endif
