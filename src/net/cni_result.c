/* CNI results and errors (cni.h): what a plugin prints, read with bounds, and the bounded
 * JSON parse and message cleaning the other cni_*.c files share. All pure. */
#include <arpa/inet.h>
#include <ctype.h>
#include <net/if.h>
#include <stdio.h>
#include <string.h>

#include "cni.h"

int cni_json_parse(const char *what, const char *text, size_t max, json_object **ret, uk_error *err)
{
	size_t len = strnlen(text, max + 1);
	if (len > max)
		return uk_err(err, EFBIG, "%s is larger than %zu bytes", what, max);
	json_tokener *tok = json_tokener_new_ex(CNI_JSON_DEPTH);
	if (!tok)
		return uk_err(err, ENOMEM, "%s: out of memory", what);
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
	_cleanup_json_ json_object *o = json_tokener_parse_ex(tok, text, (int)len);
	enum json_tokener_error e = json_tokener_get_error(tok);
	size_t end = json_tokener_get_parse_end(tok);
	json_tokener_free(tok);
	if (e == json_tokener_continue || (!o && e == json_tokener_success))
		return uk_err(err, EINVAL, "%s is not JSON: it ends too early", what);
	if (e == json_tokener_error_depth)
		return uk_err(err, EINVAL, "%s is nested deeper than %d levels", what, CNI_JSON_DEPTH);
	if (e != json_tokener_success)
		return uk_err(err, EINVAL, "%s is not JSON: %s at byte %zu", what, json_tokener_error_desc(e), end);
	for (size_t i = end; i < len; i++)
		if (!strchr(" \t\r\n", text[i]))
			return uk_err(err, EINVAL, "%s is not JSON: bytes after the value at byte %zu", what, i);
	if (!json_object_is_type(o, json_type_object))
		return uk_err(err, EINVAL, "%s is not a JSON object", what);
	*ret = TAKE_PTR(o);
	return 0;
}

/* The length of the valid UTF-8 sequence at s (n bytes left), 0 if it is not one. */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
	size_t k;
	if (s[0] >= 0xc2 && s[0] <= 0xdf)
		k = 2;
	else if (s[0] >= 0xe0 && s[0] <= 0xef)
		k = 3;
	else if (s[0] >= 0xf0 && s[0] <= 0xf4)
		k = 4;
	else
		return 0;
	if (k > n)
		return 0;
	for (size_t i = 1; i < k; i++)
		if ((s[i] & 0xc0) != 0x80)
			return 0;
	/* Overlong forms, surrogates and code points past U+10FFFF. */
	if ((s[0] == 0xe0 && s[1] < 0xa0) || (s[0] == 0xed && s[1] > 0x9f) || (s[0] == 0xf0 && s[1] < 0x90) ||
	    (s[0] == 0xf4 && s[1] > 0x8f))
		return 0;
	return k;
}

void cni_clean_append(char *out, size_t len, size_t *off, const char *text, size_t n)
{
	if (len == 0)
		return;
	size_t o = *off < len ? *off : len - 1;
	const unsigned char *s = (const unsigned char *)text;
	for (size_t i = 0; i < n;) {
		const char *emit = (const char *)s + i;
		size_t k = 1; /* bytes read */
		if (s[i] < 0x20 || s[i] == 0x7f) {
			emit = " ";
			if (o > 0 && out[o - 1] == ' ') {
				i++;
				continue; /* runs of blanks and line breaks become one space */
			}
		} else if (s[i] >= 0x80 && (k = utf8_seq(s + i, n - i)) == 0) {
			emit = "?";
			k = 1;
		}
		size_t w = emit == (const char *)s + i ? k : 1; /* bytes written */
		/* Room for this character, and for "..." unless it is the last one. */
		if (o + w + (i + k < n ? 3 : 0) >= len) {
			if (len < 4) {
				out[o] = '\0';
				break;
			}
			if (o + 3 >= len) { /* back into what is written: not into a character */
				o = len - 4;
				while (o > 0 && ((unsigned char)out[o] & 0xc0) == 0x80)
					o--;
			}
			memcpy(out + o, "...", 4);
			*off = o + 3;
			return;
		}
		memcpy(out + o, emit, w);
		o += w;
		i += k;
	}
	out[o] = '\0';
	*off = o;
}

static const char *const result_versions[] = { "0.3.0", "0.3.1", "0.4.0", "1.0.0" };

static bool known_version(const char *v)
{
	for (size_t i = 0; i < ARRAY_SIZE(result_versions); i++)
		if (strcmp(v, result_versions[i]) == 0)
			return true;
	return false;
}

/* An optional string member of o: NULL if absent; -EINVAL if it is not a string or longer
 * than max. field names it. */
static int opt_string(json_object *o, const char *key, size_t max, const char *field, const char **ret,
		      uk_error *err)
{
	json_object *v;
	*ret = NULL;
	if (!json_object_object_get_ex(o, key, &v) || json_object_is_type(v, json_type_null))
		return 0;
	if (!json_object_is_type(v, json_type_string))
		return uk_err(err, EINVAL, "result: %s.%s is not a string", field, key);
	if ((size_t)json_object_get_string_len(v) > max)
		return uk_err(err, EINVAL, "result: %s.%s is longer than %zu bytes", field, key, max);
	*ret = json_object_get_string(v);
	return 0;
}

/* "a.b.c.d/n" or "x:y::z/n": *v4 tells which. */
static bool cidr_ok(const char *s, bool *v4)
{
	char addr[INET6_ADDRSTRLEN];
	const char *slash = strchr(s, '/');
	if (!slash || (size_t)(slash - s) >= sizeof(addr) || !slash[1] || strlen(slash + 1) > 3)
		return false;
	memcpy(addr, s, (size_t)(slash - s));
	addr[slash - s] = '\0';
	unsigned char buf[16];
	int max;
	if (inet_pton(AF_INET, addr, buf) == 1)
		*v4 = true, max = 32;
	else if (inet_pton(AF_INET6, addr, buf) == 1)
		*v4 = false, max = 128;
	else
		return false;
	int prefix = 0;
	for (const char *p = slash + 1; *p; p++) {
		if (!isdigit((unsigned char)*p))
			return false;
		prefix = prefix * 10 + (*p - '0');
	}
	return prefix <= max;
}

static bool ip_ok(const char *s)
{
	unsigned char buf[16];
	return inet_pton(AF_INET, s, buf) == 1 || inet_pton(AF_INET6, s, buf) == 1;
}

static bool mac_ok(const char *s)
{
	if (strlen(s) != 17)
		return false;
	for (int i = 0; i < 17; i++)
		if (i % 3 == 2 ? s[i] != ':' : !isxdigit((unsigned char)s[i]))
			return false;
	return true;
}

/* interfaces: the index of the one named CNI_IFNAME (-1 if none), its count, eth0's MAC. */
static int parse_interfaces(json_object *o, struct cni_result *ret, int *eth0, int *n_ifaces, uk_error *err)
{
	json_object *a;
	*eth0 = -1;
	*n_ifaces = 0;
	if (!json_object_object_get_ex(o, "interfaces", &a) || json_object_is_type(a, json_type_null))
		return 0;
	if (!json_object_is_type(a, json_type_array))
		return uk_err(err, EINVAL, "result: interfaces is not an array");
	size_t n = json_object_array_length(a);
	if (n > CNI_INTERFACES_MAX)
		return uk_err(err, EINVAL, "result: %zu interfaces, at most %d", n, CNI_INTERFACES_MAX);
	for (size_t i = 0; i < n; i++) {
		json_object *it = json_object_array_get_idx(a, i);
		char field[32];
		snprintf(field, sizeof(field), "interfaces[%zu]", i);
		if (!json_object_is_type(it, json_type_object))
			return uk_err(err, EINVAL, "result: %s is not an object", field);
		const char *name, *mac, *sandbox;
		int r;
		if ((r = opt_string(it, "name", 64, field, &name, err)) < 0 ||
		    (r = opt_string(it, "mac", 64, field, &mac, err)) < 0 ||
		    (r = opt_string(it, "sandbox", 4096, field, &sandbox, err)) < 0)
			return r;
		if (!name || !*name)
			return uk_err(err, EINVAL, "result: %s has no name", field);
		if (*eth0 >= 0 || strcmp(name, CNI_IFNAME) != 0)
			continue;
		*eth0 = (int)i;
		if (mac && *mac && !mac_ok(mac))
			return uk_err(err, EINVAL, "result: %s.mac is not a MAC address (xx:xx:xx:xx:xx:xx)", field);
		for (size_t k = 0; mac && mac[k]; k++)
			ret->mac[k] = (char)tolower((unsigned char)mac[k]);
	}
	*n_ifaces = (int)n;
	return 0;
}

static int parse_ip(json_object *it, size_t i, int n_ifaces, struct cni_ip *ip, uk_error *err)
{
	char field[16];
	snprintf(field, sizeof(field), "ips[%zu]", i);
	if (!json_object_is_type(it, json_type_object))
		return uk_err(err, EINVAL, "result: %s is not an object", field);
	const char *address, *gateway, *version;
	int r;
	if ((r = opt_string(it, "address", sizeof(ip->address) - 1, field, &address, err)) < 0 ||
	    (r = opt_string(it, "gateway", sizeof(ip->gateway) - 1, field, &gateway, err)) < 0 ||
	    (r = opt_string(it, "version", 1, field, &version, err)) < 0)
		return r;
	if (!address)
		return uk_err(err, EINVAL, "result: %s has no address", field);
	if (!cidr_ok(address, &ip->v4))
		return uk_err(err, EINVAL, "result: %s.address is not an address in CIDR form", field);
	if (gateway && *gateway && !ip_ok(gateway))
		return uk_err(err, EINVAL, "result: %s.gateway is not an IP address", field);
	if (version && strcmp(version, ip->v4 ? "4" : "6") != 0)
		return uk_err(err, EINVAL, "result: %s.version does not match its address", field);
	snprintf(ip->address, sizeof(ip->address), "%s", address);
	snprintf(ip->gateway, sizeof(ip->gateway), "%s", gateway ? gateway : "");
	ip->interface = -1;
	json_object *idx;
	if (json_object_object_get_ex(it, "interface", &idx) && !json_object_is_type(idx, json_type_null)) {
		if (!json_object_is_type(idx, json_type_int))
			return uk_err(err, EINVAL, "result: %s.interface is not an integer", field);
		int64_t v = json_object_get_int64(idx);
		if (v < 0 || v >= n_ifaces)
			return uk_err(err, EINVAL, "result: %s.interface %lld is not an index into interfaces (%d)",
				      field, (long long)v, n_ifaces);
		ip->interface = (int)v;
	}
	return 0;
}

int cni_result_parse(const char *text, struct cni_result *ret, json_object **raw, uk_error *err)
{
	memset(ret, 0, sizeof(*ret));
	_cleanup_json_ json_object *o = NULL;
	int r = cni_json_parse("result", text, CNI_RESULT_MAX, &o, err);
	if (r < 0)
		return r;
	const char *version;
	if ((r = opt_string(o, "cniVersion", 16, "result", &version, err)) < 0)
		return r;
	if (version && !known_version(version))
		return uk_err(err, EINVAL, "result: cniVersion %s is not one unikd reads (0.3.0 to 1.0.0)", version);
	int eth0, n_ifaces;
	if ((r = parse_interfaces(o, ret, &eth0, &n_ifaces, err)) < 0)
		return r;
	json_object *a;
	if (json_object_object_get_ex(o, "ips", &a) && !json_object_is_type(a, json_type_null)) {
		if (!json_object_is_type(a, json_type_array))
			return uk_err(err, EINVAL, "result: ips is not an array");
		size_t n = json_object_array_length(a);
		if (n > CNI_IPS_MAX)
			return uk_err(err, EINVAL, "result: %zu ips, at most %d", n, CNI_IPS_MAX);
		for (size_t i = 0; i < n; i++)
			if ((r = parse_ip(json_object_array_get_idx(a, i), i, n_ifaces, &ret->ips[i], err)) < 0)
				return r;
		ret->n_ips = n;
	}
	/* The pod IP: eth0's first IPv4; an address without an interface index is eth0's. */
	for (size_t i = 0; i < ret->n_ips && !ret->pod_ip[0]; i++) {
		const struct cni_ip *ip = &ret->ips[i];
		if (ip->v4 && (ip->interface < 0 || ip->interface == eth0))
			snprintf(ret->pod_ip, sizeof(ret->pod_ip), "%.*s", (int)strcspn(ip->address, "/"),
				 ip->address);
	}
	if (raw)
		*raw = TAKE_PTR(o);
	return 0;
}

/* {"code": N, "msg": "...", "details": "..."}: true with its parts when text is one. */
static bool error_json(const char *text, json_object **o, long *code, const char **msg, const char **details)
{
	*code = 0;
	*msg = *details = NULL;
	if (!text || cni_json_parse("error", text, CNI_RESULT_MAX, o, NULL) < 0)
		return false;
	json_object *v;
	if (json_object_object_get_ex(*o, "code", &v) && json_object_is_type(v, json_type_int))
		*code = (long)json_object_get_int64(v);
	if (json_object_object_get_ex(*o, "msg", &v) && json_object_is_type(v, json_type_string))
		*msg = json_object_get_string(v);
	if (json_object_object_get_ex(*o, "details", &v) && json_object_is_type(v, json_type_string))
		*details = json_object_get_string(v);
	return *msg || *details;
}

long cni_error_code(const char *text)
{
	_cleanup_json_ json_object *o = NULL;
	long code;
	const char *msg, *details;
	return error_json(text, &o, &code, &msg, &details) ? code : 0;
}

void cni_error_message(const char *plugin, const char *text, char *out, size_t len)
{
	if (len == 0)
		return;
	out[0] = '\0';
	size_t off = 0;
	char head[160];
	snprintf(head, sizeof(head), "plugin %s: ", plugin);
	cni_clean_append(out, len, &off, head, strlen(head));
	_cleanup_json_ json_object *o = NULL;
	long code;
	const char *msg, *details;
	if (error_json(text, &o, &code, &msg, &details)) {
		char c[32];
		int n = code ? snprintf(c, sizeof(c), "code %ld: ", code) : 0;
		cni_clean_append(out, len, &off, c, (size_t)n);
		if (msg)
			cni_clean_append(out, len, &off, msg, strlen(msg));
		if (msg && details && *details)
			cni_clean_append(out, len, &off, ": ", 2);
		if (details)
			cni_clean_append(out, len, &off, details, strlen(details));
		return;
	}
	size_t n = text ? strnlen(text, len * 4) : 0;
	while (n > 0 && strchr(" \t\r\n", text[n - 1]))
		n--;
	if (n == 0)
		cni_clean_append(out, len, &off, "(no output)", 11);
	else
		cni_clean_append(out, len, &off, text, n);
}
