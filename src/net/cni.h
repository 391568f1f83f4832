/* CNI (spec 1.0.0, containerd's conventions): the network configuration a node's CNI
 * directory holds, the plugins run for a pod's ADD and DEL, and their results.
 *
 * Pure parts (parsing a config, building a plugin's stdin, parsing a result or an error)
 * are separate from running plugins (uk_run, src/common/spawn.h), so unit tests feed them
 * bytes. Everything a config, a plugin or a result can make us allocate is bounded. */
#ifndef UK_NET_CNI_H
#define UK_NET_CNI_H

#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../common/error.h"
#include "net.h"

#define CNI_SPEC_VERSION "1.0.0"
#define CNI_CONF_MAX (1024 * 1024)     /* one config file */
#define CNI_RESULT_MAX (1024 * 1024)   /* a plugin's stdout */
#define CNI_PLUGINS_MAX 16             /* plugins in one conflist */
#define CNI_TIMEOUT_MS 60000           /* one plugin run */
#define CNI_STRAYS_WAIT_MS 5000        /* a process sent SIGKILL is gone within this */
#define CNI_IFNAME "eth0"
#define CNI_NETNS_PREFIX "unikd-"      /* /run/netns/unikd-<sandbox id> */

/* The network config unikd uses: the lexicographically first valid .conf/.conflist/.json
 * in the directory (a .conf/.json holding one plugin is taken as a list of one). */
struct cni_config;
/* Load dir's first valid file. -ENOENT when there is none (err says what was tried and why
 * each file was refused). */
int cni_config_load(const char *dir, struct cni_config **ret, uk_error *err);
/* Parse one file's text (name for messages); -EINVAL naming the fault. */
int cni_config_parse(const char *name, const char *text, struct cni_config **ret, uk_error *err);
void cni_config_free(struct cni_config *c);
const char *cni_config_name(const struct cni_config *c);    /* the conflist's "name" */
const char *cni_config_file(const struct cni_config *c);    /* the file it came from */
/* Whether a plugin of the list declares the capability ("portMappings", "dns",
 * "bandwidth", …). */
bool cni_config_has_capability(const struct cni_config *c, const char *cap);

/* What a pod brings to its ADD: ids, names, and the runtimeConfig values (spellings of the
 * CNI CONVENTIONS document), filtered by each plugin's capabilities when its stdin is built. */
struct cni_port_mapping {
	uint16_t host_port, container_port;
	const char *protocol; /* "tcp" | "udp" */
	const char *host_ip;  /* may be NULL */
};
struct cni_pod {
	const char *sandbox_id; /* CNI_CONTAINERID, K8S_POD_INFRA_CONTAINER_ID */
	const char *netns;      /* CNI_NETNS: "/run/netns/unikd-<id>", or "" (DEL after a reboot) */
	const char *k8s_namespace, *k8s_name, *k8s_uid;
	const struct cni_port_mapping *ports;
	size_t n_ports;
	const char *const *dns_servers, *const *dns_searches, *const *dns_options;
	size_t n_dns_servers, n_dns_searches, n_dns_options;
	int64_t ingress_bps, egress_bps; /* from kubernetes.io/{ingress,egress}-bandwidth; 0: none */
};

/* One plugin's stdin for command ("ADD", "DEL", "CHECK"): its config with name and
 * cniVersion from the list, runtimeConfig for the capabilities it declares, prevResult
 * when given. A new reference; NULL on ENOMEM. Pure. */
json_object *cni_plugin_stdin(const struct cni_config *c, size_t plugin, const char *command,
			      const struct cni_pod *pod, json_object *prev_result);
size_t cni_config_n_plugins(const struct cni_config *c);
const char *cni_plugin_type(const struct cni_config *c, size_t plugin);

/* A plugin's environment: CNI_COMMAND, CNI_CONTAINERID, CNI_NETNS, CNI_IFNAME, CNI_PATH,
 * CNI_ARGS (K8S_POD_NAMESPACE, K8S_POD_NAME, K8S_POD_INFRA_CONTAINER_ID, K8S_POD_UID,
 * IgnoreUnknown=1) and PATH. Written into env (a NULL-terminated array of at most
 * CNI_ENV_MAX entries) with the strings in buf. Pure. */
#define CNI_ENV_MAX 10
int cni_plugin_env(const char *command, const struct cni_pod *pod, const char *cni_path, char *buf, size_t len,
		   const char *env[CNI_ENV_MAX + 1], uk_error *err);

/* A result (CNI 1.0.0; 0.4.0/0.3.x results are read as well): the pod's addresses. */
#define CNI_IPS_MAX 16
struct cni_ip {
	char address[64];   /* "10.22.0.5/16" (CIDR form, as the result gives it) */
	char gateway[64];   /* "" if none */
	int interface;      /* index into the result's interfaces, -1 if absent */
	bool v4;
};
struct cni_result {
	struct cni_ip ips[CNI_IPS_MAX];
	size_t n_ips;
	char pod_ip[64];    /* the first IPv4 of eth0 (an address with no interface counts), "" if none;
			     * without its prefix: "10.22.0.5" */
	char mac[18];       /* eth0's MAC in the pod's namespace from the result, "" if absent */
};
/* Parse a result; -EINVAL naming the fault. Pure. */
int cni_result_parse(const char *text, struct cni_result *ret, json_object **raw, uk_error *err);
/* A plugin's error output ({"code": N, "msg": "...", "details": "..."}) as one message:
 * "plugin bridge: code 7: msg: details". Not JSON: the bytes, sanitised and bounded. Pure. */
void cni_error_message(const char *plugin, const char *text, char *out, size_t len);

/* Running a config for a pod. What ADD ran (the exact config, the pod's arguments, each
 * plugin's result) is kept in a JSON document that DEL takes back, so DEL runs with what ADD
 * used, in reverse order, even if the directory's config changed meanwhile. */
struct cni_runner {
	const char *const *bin_dirs; /* searched in order for a plugin's binary */
	size_t n_bin_dirs;
	int timeout_ms;              /* per plugin run; 0: CNI_TIMEOUT_MS */
};
/* ADD every plugin in order, chaining prevResult; on a failure, DEL what was added (the
 * spec requires it) and return the plugin's message. *state (new reference) records the
 * config, the pod's arguments and the results; *result the last plugin's, parsed. */
int cni_add(const struct cni_runner *r, const struct cni_config *c, const struct cni_pod *pod,
	    struct cni_result *result, json_object **state, uk_error *err);
/* DEL with what state recorded (or, without a state, with c), plugins in reverse order,
 * prevResult the recorded result; netns may be "" (after a reboot). Idempotent: a plugin's
 * DEL of what is already gone succeeds. */
int cni_del(const struct cni_runner *r, json_object *state, const struct cni_config *c, const struct cni_pod *pod,
	    uk_error *err);

/* ---- additions (cni_conf.c, cni_result.c, cni_exec.c) ---- */

/* Processes left by plugins of an earlier unikd (cni_strays.c): does the environment
 * (NUL-separated, len bytes, as /proc/PID/environ) hold CNI_CONTAINERID=container_id? Pure. */
bool cni_environ_has_container(const char *env, size_t len, const char *container_id);
/* Wait up to grace_ms for every process whose environment carries the pod's
 * CNI_CONTAINERID to end, then SIGKILL what is left and wait for it. Returns how many there
 * were, or -errno. Never while one of this unikd's own plugin runs for the pod is under way. */
int cni_stop_strays(const char *container_id, int grace_ms, uk_error *err);

#define CNI_JSON_DEPTH 32        /* nesting of any JSON we parse (json-c's tokener depth) */
#define CNI_STATE_MAX (4 * 1024 * 1024) /* a serialized state: read it back with this bound */
#define CNI_STATE_VERSION 1      /* the state's "version" */
#define CNI_CONF_FILES_MAX 1024  /* candidate files in the config directory */
#define CNI_PORTS_MAX 1024       /* port mappings of one pod */
#define CNI_DNS_MAX 32           /* entries of each DNS list */
#define CNI_BIN_DIRS_MAX 16
#define CNI_INTERFACES_MAX 32    /* interfaces in a result */

/* A JSON object from text of at most max bytes (strict JSON, valid UTF-8, nesting at most
 * CNI_JSON_DEPTH, nothing but blanks after it). what names it in errors. -EINVAL/-EFBIG. */
int cni_json_parse(const char *what, const char *text, size_t max, json_object **ret, uk_error *err);
/* text[0..n) as one printable line appended at out[*off] (out has len bytes, stays
 * NUL-terminated): control characters become one space, invalid UTF-8 '?', and a cut
 * ends in "..." without splitting a character. For messages that quote outside bytes. */
void cni_clean_append(char *out, size_t len, size_t *off, const char *text, size_t n);

/* The config as a JSON list (cniVersion, name, plugins), borrowed: what the state records.
 * A .conf holding one plugin appears as a list of one. */
json_object *cni_config_json(const struct cni_config *c);
/* A config from such a list (a state's); file names it. Validated as cni_config_parse. */
int cni_config_from_json(const char *file, json_object *list, struct cni_config **ret, uk_error *err);
/* The cniVersion the plugins get ("0.3.0", "0.3.1", "0.4.0" or "1.0.0"). */
const char *cni_config_version(const struct cni_config *c);
bool cni_config_disable_check(const struct cni_config *c);
/* One plugin's object as configured, borrowed. */
json_object *cni_plugin_config(const struct cni_config *c, size_t plugin);

/* Validate what a pod brings before any plugin runs: the sandbox id (a plain id), netns (an
 * absolute path; "" only when !add), names without ';', '=' or control characters, ports
 * (protocol tcp, udp or sctp; a host_port of 0 is skipped, as containerd does), DNS entries
 * and the bandwidth. -EINVAL naming the field. */
int cni_pod_check(const struct cni_pod *pod, bool add, uk_error *err);
/* The capability arguments a pod offers (portMappings, dns, bandwidth; only those it has),
 * unfiltered; cni_plugin_stdin keeps those a plugin declares. NULL on ENOMEM. Pure. */
json_object *cni_capability_args(const struct cni_pod *pod);
/* cni_plugin_stdin with capability arguments given as JSON (cni_capability_args', or a
 * state's) rather than a pod. NULL on ENOMEM. Pure; c is only read, so one config may serve
 * threads in parallel. */
json_object *cni_plugin_stdin_caps(const struct cni_config *c, size_t plugin, const char *command, json_object *caps,
				   json_object *prev_result);
/* The code of a plugin's error output ({"code": N, ...}), 0 if there is none. Pure. */
long cni_error_code(const char *text);

/* A state before any plugin ran (config, the pod's arguments, no results): record it
 * before cni_add, so that DEL can run with the same config after a crash in the middle of
 * ADD. NULL on ENOMEM. cni_add's state is this plus each plugin's result. */
json_object *cni_state_new(const struct cni_config *c, const struct cni_pod *pod);
/* The last plugin's result recorded in a state (as cni_result_parse gives it), for a
 * restarted unikd. -ENOENT if the state holds none, -EINVAL if it is malformed. */
int cni_state_result(json_object *state, struct cni_result *ret, uk_error *err);

#endif
