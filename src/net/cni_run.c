/* Running a CNI config for a pod (cni.h): ADD in order with prevResult chained, DEL in
 * reverse with the recorded result, each plugin run through uk_run with a deadline, and the
 * state that lets DEL use what ADD used.
 *
 * The state (a JSON object the runtime stores with the sandbox):
 *   {"version": 1, "file": "<config file>", "config": {<the list>},
 *    "containerId": "<sandbox id>", "netns": "<ADD's CNI_NETNS>", "ifname": "eth0",
 *    "k8s": {"namespace", "name", "uid"}, "capabilityArgs": {...},
 *    "results": [<plugin 0's result>, <plugin 1's>, ...]} */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "../common/spawn.h"
#include "../common/util.h"
#include "cni.h"


/* One ADD or DEL: the config, the pod's arguments, its capability arguments. */
struct run_ctx {
	const struct cni_runner *r;
	const struct cni_config *c;
	const struct cni_pod *pod;
	json_object *caps;
	int timeout_ms;
	char cni_path[8192];
};

static int runner_check(const struct cni_runner *r, struct run_ctx *x, uk_error *err)
{
	if (!r || !r->bin_dirs || r->n_bin_dirs == 0)
		return uk_err(err, EINVAL, "no CNI plugin directory");
	if (r->n_bin_dirs > CNI_BIN_DIRS_MAX)
		return uk_err(err, EINVAL, "%zu CNI plugin directories, at most %d", r->n_bin_dirs, CNI_BIN_DIRS_MAX);
	if (r->timeout_ms < 0)
		return uk_err(err, EINVAL, "CNI plugin timeout %d ms is negative", r->timeout_ms);
	x->r = r;
	x->timeout_ms = r->timeout_ms ? r->timeout_ms : CNI_TIMEOUT_MS;
	size_t off = 0;
	for (size_t i = 0; i < r->n_bin_dirs; i++) {
		const char *d = r->bin_dirs[i];
		if (!d || d[0] != '/' || strchr(d, ':') || strlen(d) >= PATH_MAX / 2)
			return uk_err(err, EINVAL, "CNI plugin directory %zu: not an absolute path without ':' of less "
				      "than %d bytes", i, PATH_MAX / 2);
		for (const char *p = d; *p; p++)
			if ((unsigned char)*p < 0x20 || *p == 0x7f)
				return uk_err(err, EINVAL, "CNI plugin directory %zu: holds a control character", i);
		int n = snprintf(x->cni_path + off, sizeof(x->cni_path) - off, "%s%s", i ? ":" : "", d);
		if (n < 0 || (size_t)n >= sizeof(x->cni_path) - off)
			return uk_err(err, EINVAL, "CNI plugin directories: longer than %zu bytes together",
				      sizeof(x->cni_path) - 1);
		off += (size_t)n;
	}
	return 0;
}

/* type is a plain name (checked when the config was read): never a path. */
static int find_plugin(const struct run_ctx *x, const char *type, char path[PATH_MAX], uk_error *err)
{
	for (size_t i = 0; i < x->r->n_bin_dirs; i++) {
		struct stat st;
		snprintf(path, PATH_MAX, "%s/%s", x->r->bin_dirs[i], type);
		if (stat(path, &st) == 0 && S_ISREG(st.st_mode) && access(path, X_OK) == 0)
			return 0;
	}
	return uk_err(err, ENOENT, "plugin %s: no executable %s in %s", type, type, x->cni_path);
}

/* A plugin that ran and failed: its error JSON (stdout), or what it said on stderr. */
static int plugin_failed(const char *type, const struct uk_run_result *res, uk_error *err)
{
	char msg[UK_ERROR_MSG_MAX - 128];
	const char *out = res->out ? res->out : "";
	bool said = out[strspn(out, " \t\r\n")] != '\0';
	if (said || res->err_tail[0]) {
		cni_error_message(type, said ? out : res->err_tail, msg, sizeof(msg));
	} else if (WIFEXITED(res->status)) {
		snprintf(msg, sizeof(msg), "plugin %s exited with status %d and no message", type,
			 WEXITSTATUS(res->status));
	} else {
		snprintf(msg, sizeof(msg), "plugin %s was killed by signal %d", type,
			 WIFSIGNALED(res->status) ? WTERMSIG(res->status) : 0);
	}
	/* Code 11: "try again later" (the spec's well-known codes). */
	return uk_err(err, said && cni_error_code(out) == 11 ? EAGAIN : EIO, "%s", msg);
}

/* Run plugin i for command with prevResult prev; its stdout into *out when out is given. */
static int plugin_run(const struct run_ctx *x, size_t i, const char *command, json_object *prev, char **out,
		      uk_error *err)
{
	const char *type = cni_plugin_type(x->c, i);
	char path[PATH_MAX];
	int r = find_plugin(x, type, path, err);
	if (r < 0)
		return r;
	_cleanup_json_ json_object *in = cni_plugin_stdin_caps(x->c, i, command, x->caps, prev);
	size_t in_len = 0;
	const char *text = in ? json_object_to_json_string_length(in, JSON_C_TO_STRING_PLAIN, &in_len) : NULL;
	if (!text)
		return uk_err(err, ENOMEM, "plugin %s: out of memory", type);
	char envbuf[16384];
	const char *env[CNI_ENV_MAX + 1];
	if ((r = cni_plugin_env(command, x->pod, x->cni_path, envbuf, sizeof(envbuf), env, err)) < 0)
		return uk_err_ctx_r(err, r, "plugin %s", type);
	const char *argv[] = { path, NULL };
	struct uk_spawn_opts o;
	uk_spawn_opts_init(&o, argv);
	o.envp = env;
	/* No PR_SET_PDEATHSIG: a plugin cut short by unikd's death leaves what DEL cannot undo;
	 * start-up lets it finish before DEL (cni_strays.c). */
	_cleanup_(uk_run_result_done) struct uk_run_result res = { 0 };
	uk_error e = { 0 };
	r = uk_run(&o, text, in_len, CNI_RESULT_MAX, x->timeout_ms, &res, &e);
	if (r == -ETIMEDOUT) /* uk_run killed the plugin; what it started must not outlive it */
		(void)cni_stop_strays(x->pod->sandbox_id, 0, NULL);
	if (r == -ETIMEDOUT && x->timeout_ms % 1000 == 0)
		return uk_err(err, ETIMEDOUT, "plugin %s did not answer within %d s", type, x->timeout_ms / 1000);
	if (r == -ETIMEDOUT)
		return uk_err(err, ETIMEDOUT, "plugin %s did not answer within %d ms", type, x->timeout_ms);
	if (r < 0)
		return uk_err(err, -r, "plugin %s: %s", type, e.msg);
	if (!WIFEXITED(res.status) || WEXITSTATUS(res.status) != 0)
		return plugin_failed(type, &res, err);
	if (out)
		*out = TAKE_PTR(res.out);
	return 0;
}

/* DEL plugins count-1 down to 0 with prevResult prev. Every one runs (a failed DEL must not
 * keep the others from releasing what they hold); the first error is returned. */
static int del_range(const struct run_ctx *x, size_t count, json_object *prev, uk_error *err)
{
	int first = 0;
	for (size_t i = count; i-- > 0;) {
		uk_error e = { 0 };
		int r = plugin_run(x, i, "DEL", prev, NULL, &e);
		if (r < 0 && first == 0)
			first = uk_err(err, -r, "%s", e.msg);
	}
	return first;
}

/* ---- the state ---- */

/* A state as the runtime read it back: its parts, checked (strings borrowed from it). */
struct state_view {
	struct cni_config *c;
	struct cni_pod pod;
	json_object *caps;
	json_object *last; /* the last plugin's result, NULL if none */
};

static void state_view_done(struct state_view *v)
{
	cni_config_free(v->c);
}

static int state_str(json_object *o, const char *key, bool required, const char **ret, uk_error *err)
{
	json_object *v;
	*ret = NULL;
	if (!json_object_object_get_ex(o, key, &v))
		return required ? uk_err(err, EINVAL, "CNI state: no %s", key) : 0;
	if (!json_object_is_type(v, json_type_string) || json_object_get_string_len(v) >= PATH_MAX)
		return uk_err(err, EINVAL, "CNI state: %s is not a string of less than %d bytes", key, PATH_MAX);
	*ret = json_object_get_string(v);
	return 0;
}

static int state_results(json_object *st, json_object **last, uk_error *err)
{
	json_object *a;
	*last = NULL;
	if (!json_object_object_get_ex(st, "results", &a) || !json_object_is_type(a, json_type_array) ||
	    json_object_array_length(a) > CNI_PLUGINS_MAX)
		return uk_err(err, EINVAL, "CNI state: results is not an array of at most %d", CNI_PLUGINS_MAX);
	size_t n = json_object_array_length(a);
	for (size_t i = 0; i < n; i++)
		if (!json_object_is_type(json_object_array_get_idx(a, i), json_type_object))
			return uk_err(err, EINVAL, "CNI state: results[%zu] is not an object", i);
	*last = n ? json_object_array_get_idx(a, n - 1) : NULL;
	return 0;
}

static int state_read(json_object *st, struct state_view *v, uk_error *err)
{
	json_object *version, *config, *k8s = NULL;
	const char *file;
	int r;
	if (!st || !json_object_is_type(st, json_type_object))
		return uk_err(err, EINVAL, "CNI state: not a JSON object");
	if (!json_object_object_get_ex(st, "version", &version) || !json_object_is_type(version, json_type_int) ||
	    json_object_get_int(version) != CNI_STATE_VERSION)
		return uk_err(err, EINVAL, "CNI state: version is not %d", CNI_STATE_VERSION);
	if ((r = state_str(st, "file", true, &file, err)) < 0 ||
	    (r = state_str(st, "containerId", true, &v->pod.sandbox_id, err)) < 0 ||
	    (r = state_results(st, &v->last, err)) < 0)
		return r;
	if (!json_object_object_get_ex(st, "config", &config))
		return uk_err(err, EINVAL, "CNI state: no config");
	if ((r = cni_config_from_json(file, config, &v->c, err)) < 0)
		return uk_err_ctx_r(err, r, "CNI state");
	if (json_object_object_get_ex(st, "k8s", &k8s) && !json_object_is_type(k8s, json_type_object))
		return uk_err(err, EINVAL, "CNI state: k8s is not an object");
	if (k8s && ((r = state_str(k8s, "namespace", false, &v->pod.k8s_namespace, err)) < 0 ||
		    (r = state_str(k8s, "name", false, &v->pod.k8s_name, err)) < 0 ||
		    (r = state_str(k8s, "uid", false, &v->pod.k8s_uid, err)) < 0))
		return r;
	if (!json_object_object_get_ex(st, "capabilityArgs", &v->caps) ||
	    !json_object_is_type(v->caps, json_type_object))
		return uk_err(err, EINVAL, "CNI state: capabilityArgs is not an object");
	return 0;
}

int cni_state_result(json_object *state, struct cni_result *ret, uk_error *err)
{
	json_object *last;
	memset(ret, 0, sizeof(*ret));
	if (!state || !json_object_is_type(state, json_type_object))
		return uk_err(err, EINVAL, "CNI state: not a JSON object");
	int r = state_results(state, &last, err);
	if (r < 0)
		return r;
	if (!last)
		return uk_err(err, ENOENT, "CNI state: no result recorded");
	const char *text = json_object_to_json_string_ext(last, JSON_C_TO_STRING_PLAIN);
	if (!text)
		return uk_err(err, ENOMEM, "CNI state: out of memory");
	r = cni_result_parse(text, ret, NULL, err);
	return r < 0 ? uk_err_ctx_r(err, r, "CNI state") : 0;
}

/* ---- ADD and DEL ---- */

/* ADD failed with r after count plugins ran (the failed one included when it ran): DEL them,
 * as the spec requires, with the last good result, and keep r's message first. */
static int add_failed(const struct run_ctx *x, size_t count, json_object *prev, int r, uk_error *err)
{
	uk_error e = { 0 };
	if (del_range(x, count, prev, &e) < 0 && err) {
		char first[UK_ERROR_MSG_MAX];
		snprintf(first, sizeof(first), "%s", err->msg);
		uk_err(err, -r, "%s; the DEL that followed failed too: %s", first, e.msg);
	}
	return uk_err_ctx_r(err, r, "CNI ADD (network %s)", cni_config_name(x->c));
}

/* After the last plugin: the pod must have an IPv4 address on eth0, and the state must stay
 * within what the runtime reads back. */
static int add_check(json_object *st, const struct cni_result *res, uk_error *err)
{
	if (res->n_ips == 0)
		return uk_err(err, EADDRNOTAVAIL, "the CNI result holds no IP address");
	if (!res->pod_ip[0]) {
		char list[512];
		size_t off = 0;
		list[0] = '\0';
		for (size_t i = 0; i < res->n_ips; i++) {
			char one[96];
			int n = snprintf(one, sizeof(one), "%s%s", i ? ", " : "", res->ips[i].address);
			cni_clean_append(list, sizeof(list), &off, one, (size_t)n);
		}
		return uk_err(err, EADDRNOTAVAIL, "the CNI result holds no IPv4 address of %s (it has %s)", CNI_IFNAME,
			      list);
	}
	size_t len = 0;
	if (!json_object_to_json_string_length(st, JSON_C_TO_STRING_PLAIN, &len))
		return uk_err(err, ENOMEM, "CNI state: out of memory");
	if (len > CNI_STATE_MAX)
		return uk_err(err, EFBIG, "CNI state: %zu bytes, more than %d", len, CNI_STATE_MAX);
	return 0;
}

int cni_add(const struct cni_runner *r, const struct cni_config *c, const struct cni_pod *pod,
	    struct cni_result *result, json_object **state, uk_error *err)
{
	struct run_ctx x = { .c = c, .pod = pod };
	int rr = runner_check(r, &x, err);
	if (rr < 0 || (rr = cni_pod_check(pod, true, err)) < 0)
		return uk_err_ctx_r(err, rr, "CNI ADD (network %s)", cni_config_name(c));
	_cleanup_json_ json_object *st = cni_state_new(c, pod);
	json_object *results = NULL;
	if (!st || !json_object_object_get_ex(st, "results", &results) ||
	    !json_object_object_get_ex(st, "capabilityArgs", &x.caps))
		return uk_err(err, ENOMEM, "CNI ADD (network %s): out of memory", cni_config_name(c));
	json_object *prev = NULL;
	struct cni_result res = { 0 };
	for (size_t i = 0; i < cni_config_n_plugins(c); i++) {
		_cleanup_free_ char *out = NULL;
		json_object *raw = NULL;
		rr = plugin_run(&x, i, "ADD", prev, &out, err);
		if (rr == 0 && (rr = cni_result_parse(out, &res, &raw, err)) < 0)
			uk_err_ctx_r(err, rr, "plugin %s", cni_plugin_type(c, i));
		if (rr == 0 && json_object_array_add(results, raw) < 0) {
			json_object_put(raw);
			rr = uk_err(err, ENOMEM, "out of memory");
		}
		/* A plugin that could not be found never ran: nothing of it to DEL. */
		if (rr < 0)
			return add_failed(&x, rr == -ENOENT ? i : i + 1, prev, rr, err);
		prev = raw;
	}
	if ((rr = add_check(st, &res, err)) < 0)
		return add_failed(&x, cni_config_n_plugins(c), prev, rr, err);
	*result = res;
	*state = TAKE_PTR(st);
	return 0;
}

int cni_del(const struct cni_runner *r, json_object *state, const struct cni_config *c, const struct cni_pod *pod,
	    uk_error *err)
{
	struct run_ctx x = { .c = c, .pod = pod };
	_cleanup_(state_view_done) struct state_view v = { 0 };
	_cleanup_json_ json_object *caps = NULL;
	json_object *prev = NULL;
	int rr = runner_check(r, &x, err);
	if (rr < 0)
		return uk_err_ctx_r(err, rr, "CNI DEL");
	if (!pod)
		return uk_err(err, EINVAL, "CNI DEL: no pod");
	if (state) {
		if ((rr = state_read(state, &v, err)) < 0)
			return uk_err_ctx_r(err, rr, "CNI DEL");
		if (pod->sandbox_id && strcmp(pod->sandbox_id, v.pod.sandbox_id) != 0)
			return uk_err(err, EINVAL, "CNI DEL: the state is sandbox %s's, not %s's", v.pod.sandbox_id,
				      pod->sandbox_id);
		v.pod.netns = pod->netns; /* "" after a reboot: the namespace is gone */
		x.c = v.c;
		x.pod = &v.pod;
		x.caps = v.caps;
		prev = v.last;
	} else if (!c) {
		return uk_err(err, EINVAL, "CNI DEL: neither a state nor a config");
	} else if (!(x.caps = caps = cni_capability_args(pod))) {
		return uk_err(err, ENOMEM, "CNI DEL: out of memory");
	}
	if ((rr = cni_pod_check(x.pod, false, err)) < 0 ||
	    (rr = del_range(&x, cni_config_n_plugins(x.c), prev, err)) < 0)
		return uk_err_ctx_r(err, rr, "CNI DEL (network %s)", cni_config_name(x.c));
	return 0;
}
