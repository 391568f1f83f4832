/* What one CNI plugin run gets (cni.h): the pod's arguments checked, its capability
 * arguments (spellings of the CNI CONVENTIONS document), the stdin config derived from the
 * list as the spec's section 3 says, and the environment. All pure: cni_run.c runs them. */
#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "../common/spawn.h"
#include "../common/util.h"
#include "cni.h"

/* ---- the pod ---- */

/* A value that goes into CNI_ARGS ("K=V;K=V"), CNI_NETNS or a JSON string: bounded, no
 * control characters, and for CNI_ARGS no separator. */
static bool plain_value(const char *v, size_t max, bool args)
{
	size_t n = strnlen(v, max + 1);
	if (n > max)
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)v[i];
		if (c < 0x20 || c == 0x7f || (args && (c == ';' || c == '=')))
			return false;
	}
	return true;
}

static bool ip_literal(const char *s)
{
	unsigned char buf[16];
	return inet_pton(AF_INET, s, buf) == 1 || inet_pton(AF_INET6, s, buf) == 1;
}

static int check_ports(const struct cni_pod *pod, uk_error *err)
{
	if (pod->n_ports > CNI_PORTS_MAX)
		return uk_err(err, EINVAL, "ports: %zu mappings, at most %d", pod->n_ports, CNI_PORTS_MAX);
	if (pod->n_ports && !pod->ports)
		return uk_err(err, EINVAL, "ports: missing");
	for (size_t i = 0; i < pod->n_ports; i++) {
		const struct cni_port_mapping *p = &pod->ports[i];
		if (p->host_port == 0)
			continue; /* not a hostPort: nothing for a plugin */
		if (p->container_port == 0)
			return uk_err(err, EINVAL, "ports[%zu].container_port: 0", i);
		if (!p->protocol || (strcmp(p->protocol, "tcp") && strcmp(p->protocol, "udp") &&
				     strcmp(p->protocol, "sctp")))
			return uk_err(err, EINVAL, "ports[%zu].protocol: not tcp, udp or sctp", i);
		if (p->host_ip && *p->host_ip && (strlen(p->host_ip) >= 64 || !ip_literal(p->host_ip)))
			return uk_err(err, EINVAL, "ports[%zu].host_ip: not an IP address", i);
	}
	return 0;
}

static int check_list(const char *field, const char *const *v, size_t n, size_t max_len, bool ip, uk_error *err)
{
	if (n > CNI_DNS_MAX)
		return uk_err(err, EINVAL, "%s: %zu entries, at most %d", field, n, CNI_DNS_MAX);
	if (n && !v)
		return uk_err(err, EINVAL, "%s: missing", field);
	for (size_t i = 0; i < n; i++) {
		if (!v[i] || !*v[i] || !plain_value(v[i], max_len, false))
			return uk_err(err, EINVAL, "%s[%zu]: empty, longer than %zu bytes or not printable", field, i,
				      max_len);
		if (ip && !ip_literal(v[i]))
			return uk_err(err, EINVAL, "%s[%zu]: not an IP address", field, i);
	}
	return 0;
}

int cni_pod_check(const struct cni_pod *pod, bool add, uk_error *err)
{
	if (!pod)
		return uk_err(err, EINVAL, "no pod");
	if (!uk_id_valid(pod->sandbox_id))
		return uk_err(err, EINVAL, "sandbox id: not a plain id");
	if (!pod->netns || (add && !*pod->netns))
		return uk_err(err, EINVAL, "netns: missing");
	if (*pod->netns && (pod->netns[0] != '/' || !plain_value(pod->netns, PATH_MAX - 1, false)))
		return uk_err(err, EINVAL, "netns: not an absolute path");
	const char *names[] = { pod->k8s_namespace, pod->k8s_name, pod->k8s_uid };
	const char *fields[] = { "k8s_namespace", "k8s_name", "k8s_uid" };
	for (size_t i = 0; i < ARRAY_SIZE(names); i++)
		if (names[i] && !plain_value(names[i], 253, true))
			return uk_err(err, EINVAL, "%s: longer than 253 bytes, or holds ';', '=' or a control character",
				      fields[i]);
	int r;
	if ((r = check_ports(pod, err)) < 0 ||
	    (r = check_list("dns_servers", pod->dns_servers, pod->n_dns_servers, 63, true, err)) < 0 ||
	    (r = check_list("dns_searches", pod->dns_searches, pod->n_dns_searches, 253, false, err)) < 0 ||
	    (r = check_list("dns_options", pod->dns_options, pod->n_dns_options, 256, false, err)) < 0)
		return r;
	if (pod->ingress_bps < 0 || pod->egress_bps < 0)
		return uk_err(err, EINVAL, "bandwidth: negative");
	return 0;
}

/* ---- capability arguments ---- */

/* Add v under key; v is consumed either way. False when v is NULL (ENOMEM) or adding fails. */
static bool put(json_object *o, const char *key, json_object *v)
{
	if (!v)
		return false;
	if (json_object_object_add(o, key, v) < 0) {
		json_object_put(v);
		return false;
	}
	return true;
}

static bool push(json_object *a, json_object *v)
{
	if (!v)
		return false;
	if (json_object_array_add(a, v) < 0) {
		json_object_put(v);
		return false;
	}
	return true;
}

static json_object *port_mappings(const struct cni_pod *pod)
{
	_cleanup_json_ json_object *a = json_object_new_array();
	for (size_t i = 0; a && i < pod->n_ports; i++) {
		const struct cni_port_mapping *p = &pod->ports[i];
		if (p->host_port == 0)
			continue;
		json_object *m = json_object_new_object();
		if (!push(a, m) || !put(m, "hostPort", json_object_new_int(p->host_port)) ||
		    !put(m, "containerPort", json_object_new_int(p->container_port)) ||
		    !put(m, "protocol", json_object_new_string(p->protocol)))
			return NULL;
		if (p->host_ip && *p->host_ip && !put(m, "hostIP", json_object_new_string(p->host_ip)))
			return NULL;
	}
	return TAKE_PTR(a);
}

static bool put_strings(json_object *o, const char *key, const char *const *v, size_t n)
{
	if (n == 0)
		return true;
	json_object *a = json_object_new_array();
	if (!put(o, key, a))
		return false;
	for (size_t i = 0; i < n; i++)
		if (!push(a, json_object_new_string(v[i])))
			return false;
	return true;
}

static json_object *dns(const struct cni_pod *pod)
{
	_cleanup_json_ json_object *o = json_object_new_object();
	if (!o || !put_strings(o, "servers", pod->dns_servers, pod->n_dns_servers) ||
	    !put_strings(o, "searches", pod->dns_searches, pod->n_dns_searches) ||
	    !put_strings(o, "options", pod->dns_options, pod->n_dns_options))
		return NULL;
	return TAKE_PTR(o);
}

/* Rates in bit/s, bursts in bits. Kubernetes sets no burst: as containerd, a rate comes with
 * the largest burst the bandwidth plugin takes (UINT32_MAX bits), so only the rate limits. */
static json_object *bandwidth(const struct cni_pod *pod)
{
	_cleanup_json_ json_object *o = json_object_new_object();
	if (!o || !put(o, "ingressRate", json_object_new_int64(pod->ingress_bps)) ||
	    !put(o, "ingressBurst", json_object_new_int64(pod->ingress_bps > 0 ? UINT32_MAX : 0)) ||
	    !put(o, "egressRate", json_object_new_int64(pod->egress_bps)) ||
	    !put(o, "egressBurst", json_object_new_int64(pod->egress_bps > 0 ? UINT32_MAX : 0)))
		return NULL;
	return TAKE_PTR(o);
}

json_object *cni_capability_args(const struct cni_pod *pod)
{
	_cleanup_json_ json_object *o = json_object_new_object();
	if (!o)
		return NULL;
	bool ports = false;
	for (size_t i = 0; i < pod->n_ports; i++)
		ports = ports || pod->ports[i].host_port != 0;
	if (ports && !put(o, "portMappings", port_mappings(pod)))
		return NULL;
	if ((pod->n_dns_servers || pod->n_dns_searches || pod->n_dns_options) && !put(o, "dns", dns(pod)))
		return NULL;
	if ((pod->ingress_bps > 0 || pod->egress_bps > 0) && !put(o, "bandwidth", bandwidth(pod)))
		return NULL;
	return TAKE_PTR(o);
}

/* ---- the state before ADD (cni_run.c reads it back) ---- */

static bool put_str(json_object *o, const char *key, const char *v)
{
	return !v || put(o, key, json_object_new_string(v));
}

/* The format is described in cni_run.c, which reads it back. */
json_object *cni_state_new(const struct cni_config *c, const struct cni_pod *pod)
{
	_cleanup_json_ json_object *o = json_object_new_object(), *config = NULL, *k8s = json_object_new_object();
	if (!o || !k8s || !put_str(k8s, "namespace", pod->k8s_namespace) || !put_str(k8s, "name", pod->k8s_name) ||
	    !put_str(k8s, "uid", pod->k8s_uid))
		return NULL;
	if (!put(o, "version", json_object_new_int(CNI_STATE_VERSION)) || !put_str(o, "file", cni_config_file(c)) ||
	    json_object_deep_copy(cni_config_json(c), &config, NULL) < 0 || !put(o, "config", TAKE_PTR(config)) ||
	    !put_str(o, "containerId", pod->sandbox_id) || !put_str(o, "netns", pod->netns) ||
	    !put_str(o, "ifname", CNI_IFNAME) || !put(o, "k8s", TAKE_PTR(k8s)) ||
	    !put(o, "capabilityArgs", cni_capability_args(pod)) || !put(o, "results", json_object_new_array()))
		return NULL;
	return TAKE_PTR(o);
}

/* ---- a plugin's stdin ---- */

/* The spec's section 3: the plugin's object with cniVersion and name from the list,
 * without capabilities, with runtimeConfig holding the capability arguments it declares
 * (when there are any), and prevResult. A DEL before 0.4.0 takes no prevResult (libcni). */
json_object *cni_plugin_stdin_caps(const struct cni_config *c, size_t plugin, const char *command, json_object *caps,
				   json_object *prev_result)
{
	/* A private copy: the config may serve other threads, and json-c's reference counts
	 * and serialization buffers are not thread safe. */
	json_object *src = cni_plugin_config(c, plugin), *declared = NULL;
	_cleanup_json_ json_object *copy = NULL, *o = json_object_new_object();
	if (!src || !o || json_object_deep_copy(src, &copy, NULL) < 0 ||
	    !put(o, "cniVersion", json_object_new_string(cni_config_version(c))) ||
	    !put(o, "name", json_object_new_string(cni_config_name(c))))
		return NULL;
	json_object_object_foreach(copy, k, v) {
		if (strcmp(k, "capabilities") == 0)
			declared = v;
		else if (strcmp(k, "cniVersion") && strcmp(k, "name") && !put(o, k, json_object_get(v)))
			return NULL;
	}
	_cleanup_json_ json_object *rc = json_object_new_object();
	if (!rc)
		return NULL;
	if (declared && caps) {
		json_object_object_foreach(declared, cap, on) {
			json_object *arg;
			if (json_object_get_boolean(on) && json_object_object_get_ex(caps, cap, &arg) &&
			    !put(rc, cap, json_object_get(arg)))
				return NULL;
		}
	}
	if (json_object_object_length(rc) > 0 && !put(o, "runtimeConfig", TAKE_PTR(rc)))
		return NULL;
	bool pre_040 = strcmp(cni_config_version(c), "0.4.0") < 0;
	if (prev_result && !(pre_040 && strcmp(command, "DEL") == 0) &&
	    !put(o, "prevResult", json_object_get(prev_result)))
		return NULL;
	return TAKE_PTR(o);
}

json_object *cni_plugin_stdin(const struct cni_config *c, size_t plugin, const char *command,
			      const struct cni_pod *pod, json_object *prev_result)
{
	_cleanup_json_ json_object *caps = cni_capability_args(pod);
	return caps ? cni_plugin_stdin_caps(c, plugin, command, caps, prev_result) : NULL;
}

/* ---- the environment ---- */

struct env_buf {
	char *buf;
	size_t len, off;
	const char **env;
	size_t n;
};

static int env_add(struct env_buf *b, uk_error *err, const char *fmt, ...) _printf_(3, 4);
static int env_add(struct env_buf *b, uk_error *err, const char *fmt, ...)
{
	if (b->n >= CNI_ENV_MAX)
		return uk_err(err, E2BIG, "plugin environment: more than %d variables", CNI_ENV_MAX);
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(b->buf + b->off, b->len - b->off, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= b->len - b->off)
		return uk_err(err, ENOBUFS, "plugin environment: longer than %zu bytes", b->len);
	b->env[b->n++] = b->buf + b->off;
	b->off += (size_t)n + 1;
	b->env[b->n] = NULL;
	return 0;
}

int cni_plugin_env(const char *command, const struct cni_pod *pod, const char *cni_path, char *buf, size_t len,
		   const char *env[CNI_ENV_MAX + 1], uk_error *err)
{
	static const char *const commands[] = { "ADD", "DEL", "CHECK", "VERSION" };
	bool known = false;
	for (size_t i = 0; command && i < ARRAY_SIZE(commands); i++)
		known = known || strcmp(command, commands[i]) == 0;
	if (!known)
		return uk_err(err, EINVAL, "CNI_COMMAND: not ADD, DEL, CHECK or VERSION");
	int r = cni_pod_check(pod, strcmp(command, "ADD") == 0, err);
	if (r < 0)
		return r;
	if (!cni_path || !plain_value(cni_path, len, false))
		return uk_err(err, EINVAL, "CNI_PATH: missing or not printable");
	if (len == 0)
		return uk_err(err, ENOBUFS, "plugin environment: no buffer");
	struct env_buf b = { .buf = buf, .len = len, .env = env };
	env[0] = NULL;
	char args[1024];
	int n = snprintf(args, sizeof(args), "IgnoreUnknown=1%s%s%s%s;K8S_POD_INFRA_CONTAINER_ID=%s%s%s",
			 pod->k8s_namespace ? ";K8S_POD_NAMESPACE=" : "", pod->k8s_namespace ? pod->k8s_namespace : "",
			 pod->k8s_name ? ";K8S_POD_NAME=" : "", pod->k8s_name ? pod->k8s_name : "", pod->sandbox_id,
			 pod->k8s_uid ? ";K8S_POD_UID=" : "", pod->k8s_uid ? pod->k8s_uid : "");
	if (n < 0 || (size_t)n >= sizeof(args))
		return uk_err(err, ENOBUFS, "CNI_ARGS: longer than %zu bytes", sizeof(args) - 1);
	if ((r = env_add(&b, err, "CNI_COMMAND=%s", command)) < 0 ||
	    (r = env_add(&b, err, "CNI_CONTAINERID=%s", pod->sandbox_id)) < 0 ||
	    (r = env_add(&b, err, "CNI_NETNS=%s", pod->netns)) < 0 ||
	    (r = env_add(&b, err, "CNI_IFNAME=%s", CNI_IFNAME)) < 0 ||
	    (r = env_add(&b, err, "CNI_PATH=%s", cni_path)) < 0 || (r = env_add(&b, err, "CNI_ARGS=%s", args)) < 0 ||
	    (r = env_add(&b, err, "%s", UK_SPAWN_DEFAULT_ENV_PATH)) < 0) /* plugins run iptables, ip6tables */
		return r;
	return 0;
}
