/* OCI distribution-spec registry client on libcurl's easy interface. See registry.h. */
#include <arpa/inet.h>
#include <ctype.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <curl/curl.h>

#include "../common/util.h"
#include "reference.h"
#include "registry.h"
#include "sha256.h"

#ifndef UNIKD_VERSION
#define UNIKD_VERSION "dev"
#endif

#define MT_OCI_INDEX "application/vnd.oci.image.index.v1+json"
#define MT_OCI_MANIFEST "application/vnd.oci.image.manifest.v1+json"
#define MT_DOCKER_LIST "application/vnd.docker.distribution.manifest.list.v2+json"
#define MT_DOCKER_MANIFEST "application/vnd.docker.distribution.manifest.v2+json"
#define MT_DOCKER_SCHEMA1 "application/vnd.docker.distribution.manifest.v1+json"
#define MT_DOCKER_SCHEMA1_SIGNED "application/vnd.docker.distribution.manifest.v1+prettyjws"

#define MANIFEST_ACCEPT                                                                            \
	"Accept: " MT_OCI_INDEX ", " MT_DOCKER_LIST ", " MT_OCI_MANIFEST ", " MT_DOCKER_MANIFEST

#define HEADER_LINE_MAX 8192 /* longer response header lines are ignored */
#define TOKEN_MAX 16384      /* a bearer token we accept */
#define MAX_REDIRECTS 5
#define SERVER_TEXT_MAX 200 /* registry-supplied text quoted in an error */

/* ---------------------------------------------------------------- pure helpers */

enum registry_media_kind registry_media_kind(const char *mt)
{
	if (!mt)
		return REGISTRY_MT_UNKNOWN;
	while (*mt == ' ' || *mt == '\t')
		mt++;
	size_t n = strcspn(mt, "; \t");
	static const struct {
		const char *name;
		enum registry_media_kind kind;
	} table[] = {
		{ MT_OCI_INDEX, REGISTRY_MT_OCI_INDEX },
		{ MT_DOCKER_LIST, REGISTRY_MT_DOCKER_LIST },
		{ MT_OCI_MANIFEST, REGISTRY_MT_OCI_MANIFEST },
		{ MT_DOCKER_MANIFEST, REGISTRY_MT_DOCKER_MANIFEST },
		{ MT_DOCKER_SCHEMA1, REGISTRY_MT_DOCKER_SCHEMA1 },
		{ MT_DOCKER_SCHEMA1_SIGNED, REGISTRY_MT_DOCKER_SCHEMA1 },
	};
	for (size_t i = 0; i < ARRAY_SIZE(table); i++)
		if (strlen(table[i].name) == n && strncasecmp(mt, table[i].name, n) == 0)
			return table[i].kind;
	return REGISTRY_MT_UNKNOWN;
}

static bool is_tchar(char c)
{
	return isalnum((unsigned char)c) || (c && strchr("!#$%&'*+-.^_`|~", c));
}

static const char *skip_ows(const char *p)
{
	while (*p == ' ' || *p == '\t')
		p++;
	return p;
}

int registry_parse_challenge(const char *value, struct registry_challenge *ret)
{
	memset(ret, 0, sizeof(*ret));
	if (!value)
		return -EINVAL;
	const char *p = skip_ows(value);
	size_t n = 0;
	while (is_tchar(p[n]))
		n++;
	if (n == 0 || n >= sizeof(ret->scheme))
		return -EINVAL;
	for (size_t i = 0; i < n; i++)
		ret->scheme[i] = (char)tolower((unsigned char)p[i]);
	p = skip_ows(p + n);
	while (*p) {
		/* auth-param: token BWS "=" BWS ( token / quoted-string ) */
		const char *key = p;
		size_t klen = 0;
		while (is_tchar(key[klen]))
			klen++;
		if (klen == 0)
			return -EINVAL;
		p = skip_ows(key + klen);
		if (*p != '=')
			break; /* token68, or the start of a second challenge: we read the first */
		p = skip_ows(p + 1);
		char val[2048];
		size_t vlen = 0;
		if (*p == '"') {
			p++;
			for (;;) {
				char c = *p++;
				if (c == '\0')
					return -EINVAL; /* unterminated */
				if (c == '"')
					break;
				if (c == '\\') {
					c = *p++;
					if (c == '\0')
						return -EINVAL;
				}
				if ((unsigned char)c < 0x20 || c == 0x7f)
					return -EINVAL;
				if (vlen + 1 >= sizeof(val))
					return -EINVAL;
				val[vlen++] = c;
			}
		} else {
			while (is_tchar(*p) || *p == '/' || *p == ':' || *p == '=') {
				if (vlen + 1 >= sizeof(val))
					return -EINVAL;
				val[vlen++] = *p++;
			}
		}
		val[vlen] = '\0';
		char *dst = NULL;
		size_t cap = 0;
		if (klen == 5 && strncasecmp(key, "realm", 5) == 0)
			dst = ret->realm, cap = sizeof(ret->realm);
		else if (klen == 7 && strncasecmp(key, "service", 7) == 0)
			dst = ret->service, cap = sizeof(ret->service);
		else if (klen == 5 && strncasecmp(key, "scope", 5) == 0)
			dst = ret->scope, cap = sizeof(ret->scope);
		if (dst) {
			if (vlen >= cap)
				return -EINVAL;
			memcpy(dst, val, vlen + 1);
		}
		p = skip_ows(p);
		if (*p == '\0')
			break;
		if (*p != ',')
			return -EINVAL;
		while (*p == ',' || *p == ' ' || *p == '\t')
			p++;
	}
	return 0;
}

static const char *json_str(json_object *o, const char *key)
{
	json_object *v;
	if (!o || !json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_string))
		return NULL;
	return json_object_get_string(v);
}

int registry_index_pick(json_object *index, const char *os, const char *arch, json_object **ret)
{
	*ret = NULL;
	json_object *arr;
	if (!json_object_object_get_ex(index, "manifests", &arr) ||
	    !json_object_is_type(arr, json_type_array))
		return -EBADMSG;
	json_object *any = NULL;
	size_t n = json_object_array_length(arr);
	for (size_t i = 0; i < n; i++) {
		json_object *d = json_object_array_get_idx(arr, i), *plat;
		if (!json_object_is_type(d, json_type_object) ||
		    !json_object_object_get_ex(d, "platform", &plat))
			continue;
		const char *dos = json_str(plat, "os"), *darch = json_str(plat, "architecture");
		if (!dos || !darch || strcmp(dos, os) != 0 || strcmp(darch, arch) != 0)
			continue;
		const char *variant = json_str(plat, "variant");
		if (!variant || !*variant) {
			*ret = d;
			return 0;
		}
		if (!any)
			any = d;
	}
	if (!any)
		return -ENOENT;
	*ret = any;
	return 0;
}

const char *registry_api_host(const char *domain)
{
	return strcmp(domain, "docker.io") == 0 ? "registry-1.docker.io" : domain;
}

/* The host of "host[:port]" / "[v6]:port" into out; false if it does not fit. */
static bool split_host(const char *domain, char *out, size_t size)
{
	const char *start = domain, *end;
	if (*domain == '[') {
		start = domain + 1;
		end = strchr(start, ']');
		if (!end)
			return false;
	} else {
		end = strchr(domain, ':');
		if (!end)
			end = domain + strlen(domain);
	}
	size_t n = (size_t)(end - start);
	if (n == 0 || n >= size)
		return false;
	memcpy(out, start, n);
	out[n] = '\0';
	return true;
}

static bool host_is_loopback(const char *host)
{
	if (strcasecmp(host, "localhost") == 0)
		return true;
	struct in_addr a4;
	if (inet_pton(AF_INET, host, &a4) == 1)
		return (ntohl(a4.s_addr) >> 24) == 127;
	struct in6_addr a6;
	if (inet_pton(AF_INET6, host, &a6) == 1)
		return IN6_IS_ADDR_LOOPBACK(&a6);
	return false;
}

bool registry_host_plain_http(const char *domain, const char *const *insecure)
{
	char host[256];
	if (!domain || !split_host(domain, host, sizeof(host)))
		return false;
	if (host_is_loopback(host))
		return true;
	for (const char *const *e = insecure; e && *e; e++)
		if (strcasecmp(*e, domain) == 0 || strcasecmp(*e, host) == 0)
			return true;
	return false;
}

char *registry_url(const char *domain, bool plain_http, const char *path, const char *kind,
		   const char *reference)
{
	char *s = NULL;
	if (asprintf(&s, "%s://%s/v2/%s/%s/%s", plain_http ? "http" : "https",
		     registry_api_host(domain), path, kind, reference) < 0)
		return NULL;
	return s;
}

/* ---------------------------------------------------------------- transport */

struct membuf {
	char *data;
	size_t len, cap, max;
	bool overflow;
};

static void membuf_free(struct membuf *b)
{
	free(b->data);
	*b = (struct membuf){ .max = b->max };
}

static bool membuf_append(struct membuf *b, const void *p, size_t n)
{
	if (n > b->max - b->len) {
		b->overflow = true;
		return false;
	}
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 4096;
		while (cap < b->len + n + 1)
			cap *= 2;
		if (cap > b->max + 1)
			cap = b->max + 1;
		char *d = realloc(b->data, cap);
		if (!d)
			return false;
		b->data = d;
		b->cap = cap;
	}
	memcpy(b->data + b->len, p, n);
	b->len += n;
	b->data[b->len] = '\0';
	return true;
}

struct filesink {
	int fd;
	struct sha256_ctx sha;
	uint64_t written, max;
	bool overflow;
	int io_errno;
};

struct response {
	CURL *curl;
	long status; /* of the response being received */
	char content_type[256];
	char digest[128];
	struct registry_challenge chal;
	bool has_chal;
	struct membuf *body; /* 2xx bodies, when buffered */
	struct filesink *file; /* 2xx bodies, when streamed */
	struct membuf errbody; /* other bodies, bounded */
};

static void copy_header_value(char *dst, size_t size, const char *v, size_t n)
{
	while (n && (v[n - 1] == ' ' || v[n - 1] == '\t'))
		n--;
	if (n >= size) {
		dst[0] = '\0';
		return;
	}
	memcpy(dst, v, n);
	dst[n] = '\0';
}

static size_t on_header(char *buf, size_t size, size_t nitems, void *ud)
{
	struct response *r = ud;
	size_t n = size * nitems, len = n;
	while (len && (buf[len - 1] == '\n' || buf[len - 1] == '\r'))
		len--;
	if (len > HEADER_LINE_MAX)
		return n; /* bounded: ignored */
	if (len >= 5 && strncmp(buf, "HTTP/", 5) == 0) {
		/* A new response (after a redirect or a 100): forget the last one's headers. */
		r->content_type[0] = r->digest[0] = '\0';
		r->has_chal = false;
		r->errbody.len = 0;
		r->errbody.overflow = false;
		return n;
	}
	const char *colon = memchr(buf, ':', len);
	if (!colon)
		return n;
	size_t klen = (size_t)(colon - buf);
	const char *v = colon + 1;
	while (v < buf + len && (*v == ' ' || *v == '\t'))
		v++;
	size_t vlen = (size_t)(buf + len - v);
	if (klen == 12 && strncasecmp(buf, "Content-Type", klen) == 0) {
		copy_header_value(r->content_type, sizeof(r->content_type), v, vlen);
	} else if (klen == 21 && strncasecmp(buf, "Docker-Content-Digest", klen) == 0) {
		copy_header_value(r->digest, sizeof(r->digest), v, vlen);
	} else if (klen == 16 && strncasecmp(buf, "WWW-Authenticate", klen) == 0) {
		char tmp[HEADER_LINE_MAX + 1];
		memcpy(tmp, v, vlen);
		tmp[vlen] = '\0';
		struct registry_challenge c;
		/* Several challenges: Bearer wins over Basic, the first of a kind wins. */
		if (registry_parse_challenge(tmp, &c) == 0 &&
		    (strcmp(c.scheme, "bearer") == 0 || strcmp(c.scheme, "basic") == 0) &&
		    (!r->has_chal || (strcmp(c.scheme, "bearer") == 0 &&
				      strcmp(r->chal.scheme, "bearer") != 0))) {
			r->chal = c;
			r->has_chal = true;
		}
	}
	return n;
}

static size_t on_body(char *buf, size_t size, size_t nitems, void *ud)
{
	struct response *r = ud;
	size_t n = size * nitems;
	long code = 0;
	curl_easy_getinfo(r->curl, CURLINFO_RESPONSE_CODE, &code);
	r->status = code;
	if (code < 200 || code >= 300) {
		/* Error bodies are only for messages: keep the start, drop the rest. */
		size_t room = r->errbody.max - r->errbody.len;
		if (room)
			membuf_append(&r->errbody, buf, n < room ? n : room);
		return n;
	}
	if (r->file) {
		struct filesink *f = r->file;
		if (n > f->max - f->written) {
			f->overflow = true;
			return 0;
		}
		int e = uk_write_all(f->fd, buf, n);
		if (e < 0) {
			f->io_errno = -e;
			return 0;
		}
		sha256_update(&f->sha, buf, n);
		f->written += n;
		return n;
	}
	if (r->body && !membuf_append(r->body, buf, n))
		return 0;
	return n;
}

static curl_socket_t open_socket(void *ud, curlsocktype purpose, struct curl_sockaddr *a)
{
	(void)ud;
	(void)purpose;
	return socket(a->family, a->socktype | SOCK_CLOEXEC, a->protocol);
}

struct registry_client {
	CURL *curl;
	struct image_ref ref;
	char *name; /* path, "library/hello" */
	char *domain;
	bool plain;
	/* Copies of the options. */
	char **insecure;
	char *username, *password, *identity_token;
	char *ca_file;
	char *blob_cache;
	long timeout_s;
	char *token; /* the bearer token for this repository, once we have one */
	bool basic;  /* the registry asked for Basic and we have credentials */
	char errbuf[CURL_ERROR_SIZE];
};

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc;
static void curl_init(void)
{
	curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

/* Does s contain one of the client's secrets? Then it must not reach a message. */
static bool has_secret(const registry_client *c, const char *s)
{
	const char *secrets[] = { c->password, c->identity_token, c->token };
	for (size_t i = 0; i < ARRAY_SIZE(secrets); i++)
		if (secrets[i] && strlen(secrets[i]) >= 4 && strstr(s, secrets[i]))
			return true;
	return false;
}

/* Registry-supplied text made fit for a message: printable, bounded, secret-free. */
static void server_text(const registry_client *c, const char *in, char *out, size_t size)
{
	size_t n = 0;
	for (const char *p = in; *p && n + 1 < size && n < SERVER_TEXT_MAX; p++)
		out[n++] = ((unsigned char)*p < 0x20 || *p == 0x7f) ? ' ' : *p;
	out[n] = '\0';
	if (has_secret(c, out))
		snprintf(out, size, "(message withheld: it contains a credential)");
}

/* The registry's {"errors":[{"code":…,"message":…}]} as "CODE: message", or "". */
static void error_detail(const registry_client *c, const struct membuf *b, char *out, size_t size)
{
	out[0] = '\0';
	if (!b->len)
		return;
	_cleanup_json_ json_object *j = json_tokener_parse(b->data);
	json_object *errs, *e0;
	if (!j || !json_object_object_get_ex(j, "errors", &errs) ||
	    !json_object_is_type(errs, json_type_array) || json_object_array_length(errs) == 0 ||
	    !(e0 = json_object_array_get_idx(errs, 0)))
		return;
	const char *code = json_str(e0, "code"), *msg = json_str(e0, "message");
	char raw[512];
	snprintf(raw, sizeof(raw), "%s%s%s", code ? code : "", code && msg ? ": " : "",
		 msg ? msg : "");
	char clean[SERVER_TEXT_MAX + 64];
	server_text(c, raw, clean, sizeof(clean));
	if (clean[0])
		snprintf(out, size, ": %s", clean);
}

static int curl_errno(CURLcode rc)
{
	switch (rc) {
	case CURLE_COULDNT_CONNECT:
		return ECONNREFUSED;
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_COULDNT_RESOLVE_PROXY:
		return EHOSTUNREACH;
	case CURLE_OPERATION_TIMEDOUT:
		return ETIMEDOUT;
	case CURLE_PEER_FAILED_VERIFICATION:
	case CURLE_SSL_CONNECT_ERROR:
	case CURLE_SSL_CERTPROBLEM:
	case CURLE_SSL_CIPHER:
	case CURLE_SSL_CACERT_BADFILE:
		return EPROTO;
	case CURLE_FILESIZE_EXCEEDED:
		return EFBIG;
	case CURLE_TOO_MANY_REDIRECTS:
		return ELOOP;
	case CURLE_UNSUPPORTED_PROTOCOL:
		return EPROTONOSUPPORT;
	case CURLE_OUT_OF_MEMORY:
		return ENOMEM;
	default:
		return EIO;
	}
}

/* A URL's scheme and host, for messages; never credentials or query strings. */
static void url_origin(const char *url, char *out, size_t size)
{
	const char *p = strstr(url, "://");
	const char *h = p ? p + 3 : url;
	size_t n = strcspn(h, "/?#");
	const char *at = memchr(h, '@', n);
	if (at) {
		n -= (size_t)(at + 1 - h);
		h = at + 1;
	}
	snprintf(out, size, "%.*s%.*s", p ? (int)(p + 3 - url) : 0, url, (int)n, h);
}

static bool url_plain_ok(const registry_client *c, const char *url)
{
	if (strncasecmp(url, "https://", 8) == 0)
		return true;
	if (strncasecmp(url, "http://", 7) != 0)
		return false;
	char origin[512];
	url_origin(url + 7, origin, sizeof(origin));
	return registry_host_plain_http(origin, (const char *const *)c->insecure);
}

struct request {
	const char *url;
	const char *what; /* "manifest …", "blob …", "token" for messages */
	const char *accept;
	const char *post; /* form body, or NULL for GET */
	bool registry_auth; /* send the registry's bearer/basic credentials */
	bool token_basic;   /* send username/password as Basic (token endpoint) */
	bool small;         /* a bounded request: total timeout */
	bool allow_http;    /* plain HTTP allowed for this URL and its redirects */
};

static int setup(registry_client *c, const struct request *q, struct response *r,
		 struct curl_slist **hdrs)
{
	CURL *h = c->curl;
	curl_easy_reset(h);
	c->errbuf[0] = '\0';
	bool plain_ok = q->allow_http;
	CURLcode rc = CURLE_OK;
#define SET(opt, val)                                                                              \
	do {                                                                                       \
		if (rc == CURLE_OK)                                                                \
			rc = curl_easy_setopt(h, opt, val);                                        \
	} while (0)
	SET(CURLOPT_URL, q->url);
	SET(CURLOPT_NOSIGNAL, 1L);
	SET(CURLOPT_PROTOCOLS_STR, plain_ok ? "http,https" : "https");
	SET(CURLOPT_FOLLOWLOCATION, 1L);
	SET(CURLOPT_MAXREDIRS, (long)MAX_REDIRECTS);
	/* Redirects to storage may leave the registry, never from HTTPS to HTTP. */
	SET(CURLOPT_REDIR_PROTOCOLS_STR, plain_ok ? "http,https" : "https");
	SET(CURLOPT_UNRESTRICTED_AUTH, 0L);
	SET(CURLOPT_SSL_VERIFYPEER, 1L);
	SET(CURLOPT_SSL_VERIFYHOST, 2L);
	if (c->ca_file)
		SET(CURLOPT_CAINFO, c->ca_file);
	SET(CURLOPT_CONNECTTIMEOUT, c->timeout_s);
	SET(CURLOPT_LOW_SPEED_LIMIT, 1024L);
	SET(CURLOPT_LOW_SPEED_TIME, c->timeout_s);
	if (q->small)
		SET(CURLOPT_TIMEOUT, c->timeout_s);
	SET(CURLOPT_OPENSOCKETFUNCTION, open_socket);
	SET(CURLOPT_HEADERFUNCTION, on_header);
	SET(CURLOPT_HEADERDATA, r);
	SET(CURLOPT_WRITEFUNCTION, on_body);
	SET(CURLOPT_WRITEDATA, r);
	SET(CURLOPT_ERRORBUFFER, c->errbuf);
	SET(CURLOPT_USERAGENT, "unikd/" UNIKD_VERSION);
	if (q->post) {
		SET(CURLOPT_POSTFIELDS, q->post);
	}
	struct curl_slist *l = NULL, *t;
	if (q->accept) {
		if (!(t = curl_slist_append(l, q->accept)))
			goto oom;
		l = t;
	}
	if (q->post) {
		if (!(t = curl_slist_append(l, "Content-Type: application/x-www-form-urlencoded")))
			goto oom;
		l = t;
	}
	if (q->registry_auth && c->token) {
		_cleanup_free_ char *a = NULL;
		if (asprintf(&a, "Authorization: Bearer %s", c->token) < 0 ||
		    !(t = curl_slist_append(l, a)))
			goto oom;
		l = t;
	}
	if ((q->registry_auth && c->basic && !c->token) || q->token_basic) {
		SET(CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
		SET(CURLOPT_USERNAME, c->username);
		SET(CURLOPT_PASSWORD, c->password);
	}
	if (l)
		SET(CURLOPT_HTTPHEADER, l);
#undef SET
	*hdrs = l;
	return rc == CURLE_OK ? 0 : -EINVAL;
oom:
	curl_slist_free_all(l);
	return -ENOMEM;
}

static int fetch_token(registry_client *c, const struct registry_challenge *ch, uk_error *err);

/* Perform a request, answering 401s with the registry's challenge (at most one token
 * fetch and one switch to Basic). On success r->status is the final status, which the
 * caller interprets; transport errors and unauthorized are returned here. */
static int perform(registry_client *c, const struct request *q, struct response *r,
		   uk_error *err)
{
	bool tried_token = false;
	char origin[512];
	url_origin(q->url, origin, sizeof(origin));
	for (int attempt = 0; attempt < 3; attempt++) {
		struct curl_slist *hdrs = NULL;
		r->curl = c->curl;
		r->status = 0;
		r->content_type[0] = r->digest[0] = '\0';
		r->has_chal = false;
		membuf_free(&r->errbody);
		r->errbody.max = REGISTRY_ERROR_BODY_MAX;
		if (r->body) {
			r->body->len = 0;
			r->body->overflow = false;
		}
		int e = setup(c, q, r, &hdrs);
		if (e < 0) {
			curl_slist_free_all(hdrs);
			return uk_err_errno(err, -e, "%s: setting up the request to %s", q->what,
					    origin);
		}
		CURLcode rc = curl_easy_perform(c->curl);
		curl_slist_free_all(hdrs);
		long status = 0;
		curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, &status);
		r->status = status;
		if (rc != CURLE_OK) {
			if ((r->body && r->body->overflow) || (r->file && r->file->overflow))
				return uk_err(err, EFBIG, "%s from %s: larger than %s", q->what,
					      origin, r->file ? "its size" : "the limit");
			if (r->file && r->file->io_errno)
				return uk_err_errno(err, r->file->io_errno, "%s: writing",
						    q->what);
			int code = curl_errno(rc);
			char msg[CURL_ERROR_SIZE + 1];
			server_text(c, c->errbuf[0] ? c->errbuf : curl_easy_strerror(rc), msg,
				    sizeof(msg));
			return uk_err(err, code, "%s from %s: %s", q->what, origin, msg);
		}
		if (status != 401 || !q->registry_auth)
			return 0;
		if (r->has_chal && strcmp(r->chal.scheme, "bearer") == 0 && !tried_token) {
			tried_token = true;
			struct registry_challenge ch = r->chal;
			e = fetch_token(c, &ch, err);
			if (e < 0)
				return e;
			continue;
		}
		if (r->has_chal && strcmp(r->chal.scheme, "basic") == 0 && !c->basic &&
		    c->username && c->password) {
			c->basic = true;
			free(c->token);
			c->token = NULL;
			continue;
		}
		break;
	}
	char detail[SERVER_TEXT_MAX + 80];
	error_detail(c, &r->errbody, detail, sizeof(detail));
	return uk_err(err, EACCES, "%s from %s: unauthorized%s%s", q->what, origin,
		      (c->username || c->identity_token || c->token) ? "" :
								      " (no credentials given)",
		      detail);
}

static bool token_chars_ok(const char *t)
{
	size_t n = 0;
	for (; t[n]; n++)
		if ((unsigned char)t[n] <= 0x20 || (unsigned char)t[n] >= 0x7f || n >= TOKEN_MAX)
			return false;
	return n > 0;
}

static int fetch_token(registry_client *c, const struct registry_challenge *ch, uk_error *err)
{
	if (!ch->realm[0])
		return uk_err(err, EACCES, "registry %s: unauthorized: bearer challenge without realm",
			      c->domain);
	if (!url_plain_ok(c, ch->realm)) {
		char o[512];
		url_origin(ch->realm, o, sizeof(o));
		return uk_err(err, EPROTONOSUPPORT,
			      "registry %s: token realm %s is neither HTTPS nor an allowed "
			      "plain-HTTP host",
			      c->domain, o);
	}
	char scope_buf[sizeof(ch->scope) + 64];
	const char *scope = ch->scope;
	if (!scope[0]) {
		snprintf(scope_buf, sizeof(scope_buf), "repository:%s:pull", c->name);
		scope = scope_buf;
	}
	_cleanup_free_ char *svc = NULL, *scp = NULL, *url = NULL, *post = NULL;
	char *t;
	if ((t = curl_easy_escape(c->curl, ch->service, 0))) {
		svc = strdup(t);
		curl_free(t);
	}
	if ((t = curl_easy_escape(c->curl, scope, 0))) {
		scp = strdup(t);
		curl_free(t);
	}
	if (!svc || !scp)
		return uk_err(err, ENOMEM, "registry %s: token request", c->domain);
	struct request q = {
		.what = "token",
		.small = true,
		.allow_http = url_plain_ok(c, ch->realm) && strncasecmp(ch->realm, "http://", 7) == 0,
	};
	if (c->identity_token) {
		_cleanup_free_ char *rt = NULL;
		if ((t = curl_easy_escape(c->curl, c->identity_token, 0))) {
			rt = strdup(t);
			curl_free(t);
		}
		if (!rt || asprintf(&post,
				    "grant_type=refresh_token&service=%s&scope=%s&client_id=unikd&"
				    "refresh_token=%s",
				    svc, scp, rt) < 0) {
			post = NULL;
			return uk_err(err, ENOMEM, "registry %s: token request", c->domain);
		}
		url = strdup(ch->realm);
		q.post = post;
	} else {
		const char *sep = strchr(ch->realm, '?') ? "&" : "?";
		if (asprintf(&url, "%s%sservice=%s&scope=%s", ch->realm, sep, svc, scp) < 0)
			url = NULL;
		q.token_basic = c->username && c->password;
	}
	if (!url)
		return uk_err(err, ENOMEM, "registry %s: token request", c->domain);
	q.url = url;
	struct membuf body = { .max = REGISTRY_TOKEN_RESPONSE_MAX };
	struct response r = { .body = &body };
	json_object *j = NULL;
	int e = perform(c, &q, &r, err);
	char origin[512];
	url_origin(url, origin, sizeof(origin));
	if (e < 0)
		goto out;
	if (r.status == 401 || r.status == 403) {
		e = uk_err(err, EACCES, "registry %s: unauthorized: token endpoint %s refused %s",
			   c->domain, origin,
			   (c->username || c->identity_token) ? "the credentials" :
								"anonymous access");
		goto out;
	}
	if (r.status < 200 || r.status >= 300) {
		char detail[SERVER_TEXT_MAX + 80];
		error_detail(c, &r.errbody, detail, sizeof(detail));
		e = uk_err(err, EIO, "registry %s: token endpoint %s: HTTP %ld%s", c->domain,
			   origin, r.status, detail);
		goto out;
	}
	j = body.data ? json_tokener_parse(body.data) : NULL;
	const char *tok = json_str(j, "token");
	if (!tok || !*tok)
		tok = json_str(j, "access_token");
	if (!tok || !token_chars_ok(tok)) {
		e = uk_err(err, EBADMSG, "registry %s: token endpoint %s: no usable token in its answer",
			   c->domain, origin);
		goto out;
	}
	free(c->token);
	c->token = strdup(tok);
	if (!c->token)
		e = uk_err(err, ENOMEM, "registry %s: token", c->domain);
out:
	if (j)
		json_object_put(j);
	membuf_free(&body);
	membuf_free(&r.errbody);
	return e;
}

/* Map a final non-2xx status to an error. */
static int http_error(registry_client *c, const struct response *r, const char *what,
		      const char *url, bool manifest, uk_error *err)
{
	char origin[512], detail[SERVER_TEXT_MAX + 80];
	url_origin(url, origin, sizeof(origin));
	error_detail(c, &r->errbody, detail, sizeof(detail));
	if (r->status == 404)
		return uk_err(err, ENOENT, "%s: %s (HTTP 404 from %s)%s", what,
			      manifest ? "manifest unknown" : "blob unknown", origin, detail);
	if (r->status == 401 || r->status == 403)
		return uk_err(err, EACCES, "%s from %s: unauthorized (HTTP %ld)%s", what, origin,
			      r->status, detail);
	return uk_err(err, EIO, "%s from %s: HTTP %ld%s", what, origin, r->status, detail);
}

/* ---------------------------------------------------------------- client */

static char *strdup_or_null(const char *s, bool *oom)
{
	if (!s)
		return NULL;
	char *d = strdup(s);
	if (!d)
		*oom = true;
	return d;
}

void registry_client_free(registry_client *c)
{
	if (!c)
		return;
	if (c->curl)
		curl_easy_cleanup(c->curl);
	image_ref_clear(&c->ref);
	free(c->name);
	free(c->domain);
	strv_free(c->insecure);
	free(c->username);
	if (c->password) {
		explicit_bzero(c->password, strlen(c->password));
		free(c->password);
	}
	if (c->identity_token) {
		explicit_bzero(c->identity_token, strlen(c->identity_token));
		free(c->identity_token);
	}
	if (c->token) {
		explicit_bzero(c->token, strlen(c->token));
		free(c->token);
	}
	free(c->ca_file);
	free(c->blob_cache);
	free(c);
}

int registry_client_new(const char *ref, const struct registry_opts *o, registry_client **ret,
			uk_error *err)
{
	*ret = NULL;
	static const struct registry_opts none = { 0 };
	if (!o)
		o = &none;
	registry_client *c = calloc(1, sizeof(*c));
	if (!c)
		return uk_err(err, ENOMEM, "registry client");
	int e = image_ref_parse(ref, &c->ref, err);
	if (e < 0) {
		registry_client_free(c);
		return e;
	}
	bool oom = false;
	c->name = strdup_or_null(c->ref.path, &oom);
	c->domain = strdup_or_null(c->ref.domain, &oom);
	size_t n = 0;
	for (const char *const *p = o->insecure; p && *p; p++)
		n++;
	c->insecure = calloc(n + 1, sizeof(char *));
	if (!c->insecure)
		oom = true;
	for (size_t i = 0; i < n && c->insecure; i++)
		c->insecure[i] = strdup_or_null(o->insecure[i], &oom);
	const struct registry_auth *a = o->auth;
	if (a && a->username && *a->username && a->password) {
		c->username = strdup_or_null(a->username, &oom);
		c->password = strdup_or_null(a->password, &oom);
	}
	if (a && a->identity_token && *a->identity_token)
		c->identity_token = strdup_or_null(a->identity_token, &oom);
	if (a && a->registry_token && *a->registry_token) {
		if (!token_chars_ok(a->registry_token)) {
			registry_client_free(c);
			return uk_err(err, EINVAL, "registry_token: not a usable bearer token");
		}
		c->token = strdup_or_null(a->registry_token, &oom);
	}
	c->ca_file = strdup_or_null(o->ca_file, &oom);
	c->blob_cache = strdup_or_null(o->blob_cache, &oom);
	c->timeout_s = o->timeout_s > 0 ? o->timeout_s : REGISTRY_DEFAULT_TIMEOUT_S;
	if (oom) {
		registry_client_free(c);
		return uk_err(err, ENOMEM, "registry client for %s", ref);
	}
	c->plain = registry_host_plain_http(c->domain, (const char *const *)c->insecure);
	pthread_once(&curl_once, curl_init);
	if (curl_init_rc != CURLE_OK || !(c->curl = curl_easy_init())) {
		registry_client_free(c);
		return uk_err(err, ENOMEM, "registry client for %s: libcurl initialisation failed",
			      ref);
	}
	*ret = c;
	return 0;
}

void registry_image_clear(struct registry_image *i)
{
	if (!i)
		return;
	free(i->manifest_media_type);
	free(i->manifest_raw);
	free(i->config_raw);
	free(i->layers);
	if (i->manifest)
		json_object_put(i->manifest);
	if (i->config)
		json_object_put(i->config);
	if (i->annotations)
		json_object_put(i->annotations);
	memset(i, 0, sizeof(*i));
}

static void digest_of(const void *data, size_t len, char out[REGISTRY_DIGEST_MAX])
{
	uint8_t d[SHA256_DIGEST_SIZE];
	char hex[SHA256_HEX_SIZE];
	sha256_buf(data, len, d);
	sha256_to_hex(d, hex);
	snprintf(out, REGISTRY_DIGEST_MAX, "sha256:%s", hex);
}

struct fetched {
	struct membuf raw;
	json_object *json;
	char digest[REGISTRY_DIGEST_MAX];
	char media_type[256];
	enum registry_media_kind kind;
};

static void fetched_clear(struct fetched *f)
{
	membuf_free(&f->raw);
	if (f->json)
		json_object_put(f->json);
	memset(f, 0, sizeof(*f));
}

static void strip_params(char *mt)
{
	mt[strcspn(mt, "; \t")] = '\0';
}

/* GET a manifest or index by tag or digest; checks digest and parses JSON. */
static int fetch_manifest(registry_client *c, const char *reference, struct fetched *f,
			  uk_error *err)
{
	char what[IMAGE_REF_MAX + 64];
	snprintf(what, sizeof(what), "manifest %s/%s%s%s", c->domain, c->name,
		 image_digest_valid(reference) ? "@" : ":", reference);
	_cleanup_free_ char *url = registry_url(c->domain, c->plain, c->name, "manifests",
						reference);
	if (!url)
		return uk_err(err, ENOMEM, "%s", what);
	f->raw = (struct membuf){ .max = REGISTRY_MANIFEST_MAX };
	struct response r = { .body = &f->raw };
	struct request q = { .url = url,
			     .what = what,
			     .accept = MANIFEST_ACCEPT,
			     .registry_auth = true,
			     .small = true,
			     .allow_http = c->plain };
	int e = perform(c, &q, &r, err);
	if (e >= 0 && (r.status < 200 || r.status >= 300))
		e = http_error(c, &r, what, url, true, err);
	membuf_free(&r.errbody);
	if (e < 0)
		return e;
	if (!f->raw.len)
		return uk_err(err, EBADMSG, "%s: empty response", what);
	digest_of(f->raw.data, f->raw.len, f->digest);
	if (image_digest_valid(reference) && strcmp(reference, f->digest) != 0)
		return uk_err(err, EBADMSG, "%s: digest mismatch: the registry sent %s", what,
			      f->digest);
	if (strncmp(r.digest, "sha256:", 7) == 0 && strcmp(r.digest, f->digest) != 0)
		return uk_err(err, EBADMSG,
			      "%s: digest mismatch: Docker-Content-Digest says %.71s, content is %s",
			      what, r.digest, f->digest);
	json_tokener *tok = json_tokener_new();
	if (!tok)
		return uk_err(err, ENOMEM, "%s", what);
	f->json = json_tokener_parse_ex(tok, f->raw.data, (int)f->raw.len);
	bool complete = json_tokener_get_error(tok) == json_tokener_success &&
			json_tokener_get_parse_end(tok) == f->raw.len;
	json_tokener_free(tok);
	if (!f->json || !complete || !json_object_is_type(f->json, json_type_object))
		return uk_err(err, EBADMSG, "%s: not a JSON object", what);
	/* The body's mediaType is covered by the digest; Content-Type is not. */
	const char *mt = json_str(f->json, "mediaType");
	snprintf(f->media_type, sizeof(f->media_type), "%s", mt ? mt : r.content_type);
	strip_params(f->media_type);
	f->kind = registry_media_kind(f->media_type);
	if (f->kind == REGISTRY_MT_UNKNOWN && !mt) {
		/* Content-Type absent or generic (application/json): go by the shape. */
		json_object *v;
		if (json_object_object_get_ex(f->json, "schemaVersion", &v) &&
		    json_object_get_int(v) == 1)
			f->kind = REGISTRY_MT_DOCKER_SCHEMA1;
		else if (json_object_object_get_ex(f->json, "manifests", &v))
			f->kind = REGISTRY_MT_OCI_INDEX;
		else if (json_object_object_get_ex(f->json, "config", &v) &&
			 json_object_object_get_ex(f->json, "layers", &v))
			f->kind = REGISTRY_MT_OCI_MANIFEST;
	}
	if (f->kind == REGISTRY_MT_DOCKER_SCHEMA1)
		return uk_err(err, EPROTONOSUPPORT,
			      "%s: unsupported manifest media type %s (Docker schema 1)", what,
			      f->media_type[0] ? f->media_type : MT_DOCKER_SCHEMA1);
	if (f->kind == REGISTRY_MT_UNKNOWN) {
		char mtc[SERVER_TEXT_MAX + 64];
		server_text(c, f->media_type[0] ? f->media_type : "(none)", mtc, sizeof(mtc));
		return uk_err(err, EPROTONOSUPPORT, "%s: unsupported manifest media type %s", what,
			      mtc);
	}
	return 0;
}

/* A descriptor {mediaType, digest, size} into b. */
static int parse_descriptor(registry_client *c, json_object *d, const char *what,
			    struct registry_blob *b, uk_error *err)
{
	memset(b, 0, sizeof(*b));
	if (!json_object_is_type(d, json_type_object))
		return uk_err(err, EBADMSG, "%s: not a descriptor object", what);
	const char *digest = json_str(d, "digest"), *mt = json_str(d, "mediaType");
	json_object *size;
	if (!digest)
		return uk_err(err, EBADMSG, "%s: digest missing", what);
	if (!image_digest_valid(digest)) {
		char dc[SERVER_TEXT_MAX + 64];
		server_text(c, digest, dc, sizeof(dc));
		return uk_err(err, strncmp(digest, "sha256:", 7) == 0 ? EBADMSG : EPROTONOSUPPORT,
			      "%s: unsupported or malformed digest %s", what, dc);
	}
	if (!json_object_object_get_ex(d, "size", &size) ||
	    !json_object_is_type(size, json_type_int) || json_object_get_int64(size) < 0)
		return uk_err(err, EBADMSG, "%s: size missing or not a non-negative integer", what);
	if (mt && strlen(mt) >= sizeof(b->media_type))
		return uk_err(err, EBADMSG, "%s: mediaType too long", what);
	snprintf(b->digest, sizeof(b->digest), "%s", digest);
	snprintf(b->media_type, sizeof(b->media_type), "%s", mt ? mt : "");
	b->size = (uint64_t)json_object_get_int64(size);
	return 0;
}

/* A verified copy from the blob cache; false when there is none (or it is not right). */
static bool cached_small_blob(registry_client *c, const struct registry_blob *b, struct membuf *out)
{
	if (!c->blob_cache || !image_digest_valid(b->digest))
		return false;
	_cleanup_free_ char *path = NULL;
	if (asprintf(&path, "%s/%s", c->blob_cache, b->digest + 7) < 0)
		return false;
	char *data = NULL;
	size_t len = 0;
	if (uk_read_file(path, b->size, &data, &len, NULL) < 0)
		return false;
	char d[REGISTRY_DIGEST_MAX];
	digest_of(data, len, d);
	if (len != b->size || strcmp(d, b->digest) != 0) {
		free(data);
		return false;
	}
	*out = (struct membuf){ .data = data, .len = len, .cap = len, .max = b->size };
	return true;
}

/* GET a blob into memory (bounded by its size) and verify it. */
static int fetch_small_blob(registry_client *c, const struct registry_blob *b, const char *what,
			    struct membuf *out, uk_error *err)
{
	if (b->size > REGISTRY_MANIFEST_MAX)
		return uk_err(err, EFBIG, "%s %s: %" PRIu64 " bytes, more than the limit of %u",
			      what, b->digest, b->size, REGISTRY_MANIFEST_MAX);
	if (cached_small_blob(c, b, out))
		return 0;
	_cleanup_free_ char *url = registry_url(c->domain, c->plain, c->name, "blobs", b->digest);
	if (!url)
		return uk_err(err, ENOMEM, "%s", what);
	char w[256];
	snprintf(w, sizeof(w), "%s %s", what, b->digest);
	*out = (struct membuf){ .max = b->size };
	struct response r = { .body = out };
	struct request q = { .url = url,
			     .what = w,
			     .registry_auth = true,
			     .small = true,
			     .allow_http = c->plain };
	int e = perform(c, &q, &r, err);
	if (e >= 0 && (r.status < 200 || r.status >= 300))
		e = http_error(c, &r, w, url, false, err);
	membuf_free(&r.errbody);
	if (e == -EFBIG)
		e = uk_err(err, EBADMSG, "%s: size mismatch: more than the %" PRIu64
			   " bytes of its descriptor", w, b->size);
	if (e < 0)
		return e;
	if (out->len != b->size)
		return uk_err(err, EBADMSG, "%s: size mismatch: %zu bytes, expected %" PRIu64, w,
			      out->len, b->size);
	char d[REGISTRY_DIGEST_MAX];
	digest_of(out->data ? out->data : "", out->len, d);
	if (strcmp(d, b->digest) != 0)
		return uk_err(err, EBADMSG, "%s: digest mismatch: content is %s", w, d);
	return 0;
}

/* An index (or Docker list): fetch the linux/amd64 image manifest it names into *child. */
static int resolve_index(registry_client *c, const struct fetched *top, struct fetched *child, uk_error *err)
{
	char what[IMAGE_REF_MAX + 64];
	snprintf(what, sizeof(what), "index %s/%s@%s", c->domain, c->name, top->digest);
	json_object *d;
	int e = registry_index_pick(top->json, "linux", "amd64", &d);
	if (e == -ENOENT)
		return uk_err(err, ENOENT, "%s: no manifest for linux/amd64", what);
	if (e < 0)
		return uk_err(err, EBADMSG, "%s: \"manifests\" is not an array", what);
	struct registry_blob desc;
	e = parse_descriptor(c, d, what, &desc, err);
	if (e < 0)
		return e;
	if (desc.media_type[0]) {
		enum registry_media_kind k = registry_media_kind(desc.media_type);
		if (k != REGISTRY_MT_OCI_MANIFEST && k != REGISTRY_MT_DOCKER_MANIFEST) {
			char mtc[SERVER_TEXT_MAX + 64];
			server_text(c, desc.media_type, mtc, sizeof(mtc));
			return uk_err(err, EPROTONOSUPPORT, "%s: linux/amd64 entry has unsupported media type %s",
				      what, mtc);
		}
	}
	if (desc.size > REGISTRY_MANIFEST_MAX)
		return uk_err(err, EFBIG, "%s: linux/amd64 manifest of %" PRIu64 " bytes", what, desc.size);
	e = fetch_manifest(c, desc.digest, child, err);
	if (e < 0)
		return e;
	if (child->raw.len != desc.size)
		return uk_err(err, EBADMSG, "%s: size mismatch for manifest %s", what, desc.digest);
	if (child->kind != REGISTRY_MT_OCI_MANIFEST && child->kind != REGISTRY_MT_DOCKER_MANIFEST)
		return uk_err(err, EPROTONOSUPPORT, "%s: manifest %s is of media type %s, not an image manifest",
			      what, desc.digest, child->media_type);
	return 0;
}

/* The image manifest *m into *img: config and layer descriptors, annotations, digest; the
 * manifest's JSON and bytes are taken over. */
static int parse_image_manifest(registry_client *c, struct fetched *m, struct registry_image *img,
				uk_error *err)
{
	char what[IMAGE_REF_MAX + 64];
	snprintf(what, sizeof(what), "manifest %s/%s@%s", c->domain, c->name, m->digest);
	json_object *v;
	if (!json_object_object_get_ex(m->json, "schemaVersion", &v) || json_object_get_int(v) != 2)
		return uk_err(err, EBADMSG, "%s: schemaVersion is not 2", what);
	if (!json_object_object_get_ex(m->json, "config", &v))
		return uk_err(err, EBADMSG, "%s: config missing", what);
	char dwhat[sizeof(what) + 32];
	snprintf(dwhat, sizeof(dwhat), "%s: config", what);
	int e = parse_descriptor(c, v, dwhat, &img->config_blob, err);
	if (e < 0)
		return e;
	json_object *layers;
	if (!json_object_object_get_ex(m->json, "layers", &layers) || !json_object_is_type(layers, json_type_array))
		return uk_err(err, EBADMSG, "%s: layers missing or not an array", what);
	size_t n = json_object_array_length(layers);
	if (n && !(img->layers = calloc(n, sizeof(*img->layers))))
		return uk_err(err, ENOMEM, "%s", what);
	for (size_t i = 0; i < n; i++) {
		snprintf(dwhat, sizeof(dwhat), "%s: layers[%zu]", what, i);
		e = parse_descriptor(c, json_object_array_get_idx(layers, i), dwhat, &img->layers[i], err);
		if (e < 0)
			return e;
		img->n_layers++;
	}
	if (json_object_object_get_ex(m->json, "annotations", &v) && json_object_is_type(v, json_type_object))
		img->annotations = json_object_get(v);
	snprintf(img->manifest_digest, sizeof(img->manifest_digest), "%s", m->digest);
	img->manifest_media_type = strdup(m->media_type[0] ? m->media_type : MT_OCI_MANIFEST);
	if (!img->manifest_media_type)
		return uk_err(err, ENOMEM, "%s", what);
	img->manifest = TAKE_PTR(m->json);
	img->manifest_raw = TAKE_PTR(m->raw.data);
	img->manifest_len = m->raw.len;
	return 0;
}

/* The image config blob, which must be one JSON object, into img->config and config_raw. */
static int fetch_image_config(registry_client *c, struct registry_image *img, uk_error *err)
{
	struct membuf cfg = { 0 };
	int e = fetch_small_blob(c, &img->config_blob, "config", &cfg, err);
	if (e < 0) {
		membuf_free(&cfg);
		return uk_err_ctx_r(err, e, "%s/%s", c->domain, c->name);
	}
	json_tokener *tok = json_tokener_new();
	if (!tok) {
		membuf_free(&cfg);
		return uk_err(err, ENOMEM, "config");
	}
	img->config = cfg.len ? json_tokener_parse_ex(tok, cfg.data, (int)cfg.len) : NULL;
	bool complete = json_tokener_get_error(tok) == json_tokener_success &&
			json_tokener_get_parse_end(tok) == cfg.len;
	json_tokener_free(tok);
	if (!img->config || !complete || !json_object_is_type(img->config, json_type_object)) {
		membuf_free(&cfg);
		return uk_err(err, EBADMSG, "config %s of %s/%s: not a JSON object", img->config_blob.digest,
			      c->domain, c->name);
	}
	img->config_raw = cfg.data ? cfg.data : strdup("");
	img->config_len = cfg.len;
	if (!img->config_raw)
		return uk_err(err, ENOMEM, "config");
	return 0;
}

int registry_client_resolve(registry_client *c, struct registry_image *ret, uk_error *err)
{
	memset(ret, 0, sizeof(*ret));
	_cleanup_registry_image_ struct registry_image img = { 0 };
	struct fetched top = { 0 }, child = { 0 }, *m = &top;
	const char *reference = c->ref.digest ? c->ref.digest : c->ref.tag;
	int e = fetch_manifest(c, reference, &top, err);
	if (e >= 0 && (top.kind == REGISTRY_MT_OCI_INDEX || top.kind == REGISTRY_MT_DOCKER_LIST)) {
		e = resolve_index(c, &top, &child, err);
		snprintf(img.index_digest, sizeof(img.index_digest), "%s", top.digest);
		m = &child;
	}
	if (e >= 0)
		e = parse_image_manifest(c, m, &img, err);
	if (e >= 0)
		e = fetch_image_config(c, &img, err);
	if (e >= 0) {
		*ret = img;
		memset(&img, 0, sizeof(img));
		e = 0;
	}
	fetched_clear(&top);
	fetched_clear(&child);
	return e;
}

int registry_client_fetch_blob(registry_client *c, const struct registry_blob *b,
			       const char *path, uk_error *err)
{
	char what[160];
	snprintf(what, sizeof(what), "blob %.80s of %s/%s", b->digest, c->domain, c->name);
	if (!image_digest_valid(b->digest))
		return uk_err(err, EPROTONOSUPPORT, "blob: unsupported or malformed digest");
	_cleanup_free_ char *url = registry_url(c->domain, c->plain, c->name, "blobs", b->digest);
	if (!url)
		return uk_err(err, ENOMEM, "%s", what);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		return uk_err_errno(err, errno, "%s: creating %s", what, path);
	struct filesink f = { .fd = fd, .max = b->size };
	sha256_init(&f.sha);
	struct response r = { .file = &f };
	struct request q = { .url = url,
			     .what = what,
			     .registry_auth = true,
			     .allow_http = c->plain };
	int e = perform(c, &q, &r, err);
	if (e >= 0 && (r.status < 200 || r.status >= 300))
		e = http_error(c, &r, what, url, false, err);
	membuf_free(&r.errbody);
	if (e == -EFBIG)
		e = uk_err(err, EBADMSG, "%s: size mismatch: more than the %" PRIu64
			   " bytes of its descriptor", what, b->size);
	if (e >= 0 && f.written != b->size)
		e = uk_err(err, EBADMSG, "%s: size mismatch: %" PRIu64 " bytes, expected %" PRIu64,
			   what, f.written, b->size);
	if (e >= 0) {
		uint8_t d[SHA256_DIGEST_SIZE];
		char hex[SHA256_HEX_SIZE];
		sha256_final(&f.sha, d);
		sha256_to_hex(d, hex);
		if (strcmp(hex, b->digest + 7) != 0)
			e = uk_err(err, EBADMSG, "%s: digest mismatch: content is sha256:%s", what,
				   hex);
	}
	if (e >= 0 && close(fd) < 0)
		e = uk_err_errno(err, errno, "%s: closing %s", what, path);
	else if (e < 0)
		safe_close(fd);
	if (e < 0)
		(void)unlink(path); /* best effort: the fetch's error is the one to report */
	return e;
}

int registry_resolve(const char *ref, const struct registry_opts *o, struct registry_image *ret,
		     uk_error *err)
{
	memset(ret, 0, sizeof(*ret));
	_cleanup_registry_client_ registry_client *c = NULL;
	int e = registry_client_new(ref, o, &c, err);
	if (e < 0)
		return e;
	return registry_client_resolve(c, ret, err);
}

int registry_fetch_blob(const char *ref, const struct registry_opts *o,
			const struct registry_blob *b, const char *path, uk_error *err)
{
	_cleanup_registry_client_ registry_client *c = NULL;
	int e = registry_client_new(ref, o, &c, err);
	if (e < 0)
		return e;
	return registry_client_fetch_blob(c, b, path, err);
}
