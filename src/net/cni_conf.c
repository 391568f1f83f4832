/* CNI network configurations (cni.h): one file's text, a list recorded in a state, and the
 * directory scan that picks the lexicographically first valid file, as containerd does. */
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "../common/util.h"
#include "cni.h"

struct cni_config {
	char *file;
	char name[UK_ID_MAX];
	char version[8];
	bool disable_check;
	json_object *list; /* {"cniVersion", "name", "plugins": [...]}, owned */
	size_t n_plugins;
	json_object *plugins[CNI_PLUGINS_MAX]; /* borrowed from list */
	const char *types[CNI_PLUGINS_MAX];     /* borrowed from the plugins */
};

/* The versions unikd speaks, in ascending order: their results are the 0.3.0 form or later. */
static const char *const versions[] = { "0.3.0", "0.3.1", "0.4.0", "1.0.0" };

static int version_rank(const char *v)
{
	for (size_t i = 0; i < ARRAY_SIZE(versions); i++)
		if (strcmp(v, versions[i]) == 0)
			return (int)i;
	return -1;
}

void cni_config_free(struct cni_config *c)
{
	if (!c)
		return;
	free(c->file);
	json_object_put(c->list);
	free(c);
}

static void cni_config_freep(struct cni_config **c)
{
	cni_config_free(*c);
}

/* A value for a message: cleaned and short. */
static const char *quote(const char *v, char *buf, size_t len)
{
	size_t off = 0;
	buf[0] = '\0';
	cni_clean_append(buf, len, &off, v, strlen(v));
	return buf;
}

/* cniVersion, or the highest version both cniVersions (CNI 1.1) and unikd know. */
static int pick_version(const char *file, json_object *root, char out[8], uk_error *err)
{
	json_object *v, *vs;
	char q[48];
	const char *given = NULL;
	int best = -1;
	if (json_object_object_get_ex(root, "cniVersion", &v)) {
		if (!json_object_is_type(v, json_type_string))
			return uk_err(err, EINVAL, "%s: cniVersion is not a string", file);
		given = json_object_get_string(v);
		best = version_rank(given);
	}
	if (json_object_object_get_ex(root, "cniVersions", &vs)) {
		if (!json_object_is_type(vs, json_type_array) || json_object_array_length(vs) > 64)
			return uk_err(err, EINVAL, "%s: cniVersions is not an array of at most 64 strings", file);
		for (size_t i = 0; i < json_object_array_length(vs); i++) {
			json_object *it = json_object_array_get_idx(vs, i);
			if (!json_object_is_type(it, json_type_string))
				return uk_err(err, EINVAL, "%s: cniVersions[%zu] is not a string", file, i);
			int rank = version_rank(json_object_get_string(it));
			if (rank > best)
				best = rank;
		}
	} else if (!given) {
		return uk_err(err, EINVAL, "%s: no cniVersion", file);
	}
	if (best < 0)
		return uk_err(err, EINVAL, "%s: cniVersion %s is not supported (0.3.0, 0.3.1, 0.4.0, 1.0.0)", file,
			      given ? quote(given, q, sizeof(q)) : "(none in cniVersions)");
	snprintf(out, 8, "%s", versions[best]);
	return 0;
}

/* libcni reads a boolean or the strings "true"/"false". */
static int read_bool(const char *file, json_object *root, const char *key, bool *ret, uk_error *err)
{
	json_object *v;
	*ret = false;
	if (!json_object_object_get_ex(root, key, &v))
		return 0;
	if (json_object_is_type(v, json_type_boolean)) {
		*ret = json_object_get_boolean(v);
		return 0;
	}
	if (json_object_is_type(v, json_type_string) && (strcasecmp(json_object_get_string(v), "true") == 0 ||
							 strcasecmp(json_object_get_string(v), "false") == 0)) {
		*ret = strcasecmp(json_object_get_string(v), "true") == 0;
		return 0;
	}
	return uk_err(err, EINVAL, "%s: %s is not a boolean", file, key);
}

/* A plugin binary's name (plugins[i].type, plugins[i].ipam.type): a plain file name. */
static int check_type(const char *file, json_object *o, const char *field, bool required, const char **ret,
		      uk_error *err)
{
	json_object *v;
	char q[48];
	*ret = NULL;
	if (!json_object_object_get_ex(o, "type", &v))
		return required ? uk_err(err, EINVAL, "%s: %s has no type", file, field) : 0;
	if (!json_object_is_type(v, json_type_string))
		return uk_err(err, EINVAL, "%s: %s.type is not a string", file, field);
	const char *t = json_object_get_string(v);
	if (!uk_id_valid(t))
		return uk_err(err, EINVAL, "%s: %s.type \"%s\" is not a plain name ([A-Za-z0-9_.-], at most %d)", file,
			      field, quote(t, q, sizeof(q)), UK_ID_MAX - 1);
	*ret = t;
	return 0;
}

static int check_plugin(const char *file, json_object *p, size_t i, const char **type, uk_error *err)
{
	char field[24];
	snprintf(field, sizeof(field), "plugins[%zu]", i);
	if (!json_object_is_type(p, json_type_object))
		return uk_err(err, EINVAL, "%s: %s is not an object", file, field);
	int r = check_type(file, p, field, true, type, err);
	if (r < 0)
		return r;
	json_object *caps, *ipam;
	if (json_object_object_get_ex(p, "capabilities", &caps)) {
		if (!json_object_is_type(caps, json_type_object))
			return uk_err(err, EINVAL, "%s: %s.capabilities is not an object", file, field);
		json_object_object_foreach(caps, k, v) {
			char q[48];
			if (!json_object_is_type(v, json_type_boolean))
				return uk_err(err, EINVAL, "%s: %s.capabilities.%s is not a boolean", file, field,
					      quote(k, q, sizeof(q)));
		}
	}
	if (json_object_object_get_ex(p, "ipam", &ipam)) {
		char sub[40];
		const char *t;
		snprintf(sub, sizeof(sub), "%s.ipam", field);
		if (!json_object_is_type(ipam, json_type_object))
			return uk_err(err, EINVAL, "%s: %s is not an object", file, sub);
		/* The plugin runs it from CNI_PATH: no path may sneak in there either. */
		if ((r = check_type(file, ipam, sub, false, &t, err)) < 0)
			return r;
	}
	return 0;
}

/* Takes a reference to list (a conflist's object) on success. */
static int config_from_list(const char *file, json_object *list, struct cni_config **ret, uk_error *err)
{
	_cleanup_(cni_config_freep) struct cni_config *c = calloc(1, sizeof(*c));
	if (!c || !(c->file = strdup(file)))
		return uk_err(err, ENOMEM, "%s: out of memory", file);
	json_object *v, *plugins;
	char q[48];
	if (!json_object_object_get_ex(list, "name", &v))
		return uk_err(err, EINVAL, "%s: no name", file);
	if (!json_object_is_type(v, json_type_string))
		return uk_err(err, EINVAL, "%s: name is not a string", file);
	if (!uk_id_valid(json_object_get_string(v)))
		return uk_err(err, EINVAL, "%s: name \"%s\" is not a valid network name ([A-Za-z0-9_.-], at most %d)",
			      file, quote(json_object_get_string(v), q, sizeof(q)), UK_ID_MAX - 1);
	snprintf(c->name, sizeof(c->name), "%s", json_object_get_string(v));
	int r;
	if ((r = pick_version(file, list, c->version, err)) < 0 ||
	    (r = read_bool(file, list, "disableCheck", &c->disable_check, err)) < 0)
		return r;
	if (!json_object_object_get_ex(list, "plugins", &plugins) || !json_object_is_type(plugins, json_type_array))
		return uk_err(err, EINVAL, "%s: plugins is not an array", file);
	size_t n = json_object_array_length(plugins);
	if (n == 0)
		return uk_err(err, EINVAL, "%s: plugins is empty", file);
	if (n > CNI_PLUGINS_MAX)
		return uk_err(err, EINVAL, "%s: %zu plugins, at most %d", file, n, CNI_PLUGINS_MAX);
	for (size_t i = 0; i < n; i++) {
		c->plugins[i] = json_object_array_get_idx(plugins, i);
		if ((r = check_plugin(file, c->plugins[i], i, &c->types[i], err)) < 0)
			return r;
	}
	c->n_plugins = n;
	c->list = json_object_get(list);
	*ret = TAKE_PTR(c);
	return 0;
}

/* A file holding one plugin (a .conf): the list of one that libcni's ConfListFromConf makes. */
static json_object *list_of_one(json_object *plugin)
{
	_cleanup_json_ json_object *list = json_object_new_object();
	json_object *a = json_object_new_array();
	json_object *v;
	if (!list || !a || json_object_object_add(list, "plugins", a) < 0) {
		json_object_put(a);
		return NULL;
	}
	if (json_object_object_get_ex(plugin, "cniVersion", &v) &&
	    json_object_object_add(list, "cniVersion", json_object_get(v)) < 0)
		return NULL;
	if (json_object_object_get_ex(plugin, "name", &v) &&
	    json_object_object_add(list, "name", json_object_get(v)) < 0)
		return NULL;
	if (json_object_array_add(a, json_object_get(plugin)) < 0)
		return NULL;
	return TAKE_PTR(list);
}

int cni_config_from_json(const char *file, json_object *list, struct cni_config **ret, uk_error *err)
{
	if (!json_object_is_type(list, json_type_object))
		return uk_err(err, EINVAL, "%s: not a JSON object", file);
	/* Our own copy: the caller's object may change or go. */
	_cleanup_json_ json_object *copy = NULL;
	if (json_object_deep_copy(list, &copy, NULL) < 0)
		return uk_err(err, ENOMEM, "%s: out of memory", file);
	return config_from_list(file, copy, ret, err);
}

int cni_config_parse(const char *name, const char *text, struct cni_config **ret, uk_error *err)
{
	_cleanup_json_ json_object *root = NULL;
	int r = cni_json_parse(name, text, CNI_CONF_MAX, &root, err);
	if (r < 0)
		return r;
	if (json_object_object_get_ex(root, "plugins", NULL))
		return config_from_list(name, root, ret, err);
	if (!json_object_object_get_ex(root, "type", NULL))
		return uk_err(err, EINVAL, "%s: neither a list (plugins) nor one plugin (type)", name);
	_cleanup_json_ json_object *list = list_of_one(root);
	if (!list)
		return uk_err(err, ENOMEM, "%s: out of memory", name);
	return config_from_list(name, list, ret, err);
}

const char *cni_config_name(const struct cni_config *c)
{
	return c->name;
}

const char *cni_config_file(const struct cni_config *c)
{
	return c->file;
}

const char *cni_config_version(const struct cni_config *c)
{
	return c->version;
}

bool cni_config_disable_check(const struct cni_config *c)
{
	return c->disable_check;
}

json_object *cni_config_json(const struct cni_config *c)
{
	return c->list;
}

size_t cni_config_n_plugins(const struct cni_config *c)
{
	return c->n_plugins;
}

const char *cni_plugin_type(const struct cni_config *c, size_t plugin)
{
	return plugin < c->n_plugins ? c->types[plugin] : NULL;
}

json_object *cni_plugin_config(const struct cni_config *c, size_t plugin)
{
	return plugin < c->n_plugins ? c->plugins[plugin] : NULL;
}

bool cni_config_has_capability(const struct cni_config *c, const char *cap)
{
	for (size_t i = 0; i < c->n_plugins; i++) {
		json_object *caps, *v;
		if (json_object_object_get_ex(c->plugins[i], "capabilities", &caps) &&
		    json_object_object_get_ex(caps, cap, &v) && json_object_get_boolean(v))
			return true;
	}
	return false;
}

/* ---- the directory ---- */

static bool conf_name(const char *n)
{
	static const char *const ext[] = { ".conf", ".conflist", ".json" };
	size_t len = strlen(n);
	for (size_t i = 0; i < ARRAY_SIZE(ext); i++) {
		size_t l = strlen(ext[i]);
		if (len > l && strcmp(n + len - l, ext[i]) == 0)
			return true;
	}
	return false;
}

static int cmp_names(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static void names_free(char ***names)
{
	strv_free(*names);
}

/* The candidate names in dir, sorted (byte order, as Go's sort.Strings). */
static int list_dir(const char *dir, char ***ret, size_t *n_ret, uk_error *err)
{
	_cleanup_closedir_ DIR *d = opendir(dir);
	if (!d)
		return uk_err_errno(err, errno, "open %s", dir);
	_cleanup_(names_free) char **names = calloc(CNI_CONF_FILES_MAX + 1, sizeof(char *));
	if (!names)
		return uk_err(err, ENOMEM, "%s: out of memory", dir);
	size_t n = 0;
	struct dirent *e;
	while ((errno = 0, e = readdir(d))) {
		struct stat st;
		if (!conf_name(e->d_name))
			continue;
		/* Only regular files (a symlink to one is fine): no FIFO or device can stall us. */
		if (fstatat(dirfd(d), e->d_name, &st, 0) < 0 || !S_ISREG(st.st_mode))
			continue;
		if (n == CNI_CONF_FILES_MAX)
			return uk_err(err, E2BIG, "%s: more than %d config files", dir, CNI_CONF_FILES_MAX);
		if (!(names[n++] = strdup(e->d_name)))
			return uk_err(err, ENOMEM, "%s: out of memory", dir);
	}
	if (errno)
		return uk_err_errno(err, errno, "read %s", dir);
	qsort(names, n, sizeof(*names), cmp_names);
	*ret = TAKE_PTR(names);
	*n_ret = n;
	return 0;
}

static int load_file(const char *path, struct cni_config **ret, uk_error *err)
{
	_cleanup_free_ char *text = NULL;
	size_t len;
	int r = uk_read_file(path, CNI_CONF_MAX, &text, &len, err);
	if (r < 0)
		return r;
	if (strlen(text) != len)
		return uk_err(err, EINVAL, "%s holds a NUL byte", path);
	return cni_config_parse(path, text, ret, err);
}

int cni_config_load(const char *dir, struct cni_config **ret, uk_error *err)
{
	_cleanup_(names_free) char **names = NULL;
	size_t n = 0;
	int r = list_dir(dir, &names, &n, err);
	if (r < 0)
		return r;
	if (n == 0)
		return uk_err(err, ENOENT, "no CNI config in %s (no .conf, .conflist or .json file)", dir);
	/* Why each file was refused, as much as fits in one message. */
	char why[UK_ERROR_MSG_MAX];
	size_t off = 0, cap = strlen(dir) + 64 < sizeof(why) / 2 ? sizeof(why) - strlen(dir) - 64 : sizeof(why) / 2;
	why[0] = '\0';
	for (size_t i = 0; i < n; i++) {
		_cleanup_free_ char *path = uk_strf("%s/%s", dir, names[i]);
		if (!path)
			return uk_err(err, ENOMEM, "%s: out of memory", dir);
		uk_error e = { 0 };
		if (load_file(path, ret, &e) == 0)
			return 0;
		if (e.code == ENOMEM)
			return uk_err(err, ENOMEM, "%s", e.msg);
		/* Messages start with the path; the file name is enough here. */
		const char *msg = strncmp(e.msg, path, strlen(path)) == 0 ? e.msg + strlen(dir) + 1 : e.msg;
		if (off)
			cni_clean_append(why, cap, &off, "; ", 2);
		cni_clean_append(why, cap, &off, msg, strlen(msg));
	}
	return uk_err(err, ENOENT, "no valid CNI config in %s: %s", dir, why);
}
