#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <string.h>
#include <sys/stat.h>

#include "../common/util.h"
#include "records.h"

#define RECORD_MAX (1024 * 1024)

void sandbox_free(struct sandbox *s)
{
	if (!s)
		return;
	free(s->name);
	free(s->uid);
	free(s->ns);
	free(s->reserved_name);
	json_object_put(s->labels);
	json_object_put(s->annotations);
	free(s->log_directory);
	free(s->runtime_handler);
	free(s->hostname);
	free(s->cgroup_parent);
	free(s->ip);
	free(s->mac);
	json_object_put(s->port_mappings);
	json_object_put(s->dns);
	json_object_put(s->cni);
	free(s->list_enc.data);
	free(s);
}

void container_free(struct container *c)
{
	if (!c)
		return;
	free(c->name);
	free(c->reserved_name);
	json_object_put(c->labels);
	json_object_put(c->annotations);
	free(c->list_enc.data);
	free(c->image);
	free(c->image_ref);
	free(c->log_path);
	free(c->reason);
	free(c->message);
	free(c->kernel);
	free(c->initrd);
	free(c->disk);
	free(c->disk_format);
	free(c->cmdline);
	free(c->machine);
	free(c->accel);
	free(c->cpu);
	free(c->firmware);
	free(c->pit);
	free(c->exit_contract);
	json_object_put(c->devices);
	json_object_put(c->guest);
	json_object_put(c->shares);
	json_object_put(c->blockdevs);
	json_object_put(c->mounts);
	free(c->cgroup);
	free(c->cgroup_error);
	free(c->pool_vm);
	free(c);
}

static void add_map(json_object *o, const char *k, json_object *m)
{
	json_object_object_add(o, k, m ? json_object_get(m) : json_object_new_object());
}

json_object *sandbox_to_json(const struct sandbox *s)
{
	json_object *o = json_object_new_object();
	json_object_object_add(o, "version", json_object_new_int(1));
	uk_json_add_str(o, "id", s->id);
	uk_json_add_str(o, "name", s->name);
	uk_json_add_str(o, "uid", s->uid);
	uk_json_add_str(o, "namespace", s->ns);
	json_object_object_add(o, "attempt", json_object_new_int64(s->attempt));
	uk_json_add_str(o, "reserved_name", s->reserved_name);
	add_map(o, "labels", s->labels);
	add_map(o, "annotations", s->annotations);
	uk_json_add_str(o, "log_directory", s->log_directory);
	uk_json_add_str(o, "runtime_handler", s->runtime_handler);
	uk_json_add_str(o, "hostname", s->hostname);
	uk_json_add_str(o, "cgroup_parent", s->cgroup_parent);
	json_object_object_add(o, "created_ns", json_object_new_int64(s->created_ns));
	json_object_object_add(o, "state", json_object_new_int(s->state));
	uk_json_add_str(o, "ip", s->ip);
	uk_json_add_str(o, "mac", s->mac);
	json_object_object_add(o, "prefix", json_object_new_int(s->prefix));
	if (s->port_mappings)
		json_object_object_add(o, "port_mappings", json_object_get(s->port_mappings));
	if (s->dns)
		json_object_object_add(o, "dns", json_object_get(s->dns));
	if (s->cni)
		json_object_object_add(o, "cni", json_object_get(s->cni));
	if (s->boot_id[0])
		json_object_object_add(o, "boot_id", json_object_new_string(s->boot_id));
	return o;
}

void container_vm_fields_to_json(const struct container *c, json_object *o)
{
	uk_json_add_str(o, "kernel", c->kernel);
	uk_json_add_str(o, "initrd", c->initrd);
	uk_json_add_str(o, "disk", c->disk);
	uk_json_add_str(o, "disk_format", c->disk_format);
	if (c->disk)
		json_object_object_add(o, "disk_snapshot", json_object_new_boolean(c->disk_snapshot));
	uk_json_add_str(o, "cmdline", c->cmdline);
	uk_json_add_str(o, "machine", c->machine);
	uk_json_add_str(o, "accel", c->accel);
	uk_json_add_str(o, "cpu", c->cpu);
	uk_json_add_str(o, "firmware", c->firmware);
	uk_json_add_str(o, "pit", c->pit);
	json_object_object_add(o, "vcpus", json_object_new_int(c->vcpus));
	json_object_object_add(o, "memory_mib", json_object_new_int(c->memory_mib));
	uk_json_add_str(o, "exit", c->exit_contract);
	if (c->devices)
		json_object_object_add(o, "devices", json_object_get(c->devices));
	if (c->shares)
		json_object_object_add(o, "shares", json_object_get(c->shares));
	if (c->blockdevs)
		json_object_object_add(o, "blockdevs", json_object_get(c->blockdevs));
	if (c->stdin_open)
		json_object_object_add(o, "stdin", json_object_new_boolean(true));
}

json_object *container_to_json(const struct container *c)
{
	json_object *o = json_object_new_object();
	json_object_object_add(o, "version", json_object_new_int(1));
	uk_json_add_str(o, "id", c->id);
	uk_json_add_str(o, "sandbox_id", c->sandbox_id);
	uk_json_add_str(o, "name", c->name);
	json_object_object_add(o, "attempt", json_object_new_int64(c->attempt));
	uk_json_add_str(o, "reserved_name", c->reserved_name);
	add_map(o, "labels", c->labels);
	add_map(o, "annotations", c->annotations);
	uk_json_add_str(o, "image", c->image);
	uk_json_add_str(o, "image_ref", c->image_ref);
	uk_json_add_str(o, "log_path", c->log_path);
	json_object_object_add(o, "created_ns", json_object_new_int64(c->created_ns));
	json_object_object_add(o, "started_ns", json_object_new_int64(c->started_ns));
	json_object_object_add(o, "finished_ns", json_object_new_int64(c->finished_ns));
	json_object_object_add(o, "state", json_object_new_int(c->state));
	json_object_object_add(o, "exit_code", json_object_new_int(c->exit_code));
	uk_json_add_str(o, "reason", c->reason);
	uk_json_add_str(o, "message", c->message);
	container_vm_fields_to_json(c, o);
	json_object_object_add(o, "wrapper_pid", json_object_new_int(c->wrapper_pid));
	json_object_object_add(o, "wrapper_start", json_object_new_uint64(c->wrapper_start));
	if (c->boot_id[0])
		json_object_object_add(o, "boot_id", json_object_new_string(c->boot_id));
	json_object_object_add(o, "memory_limit", json_object_new_int64(c->memory_limit));
	json_object_object_add(o, "cpu_quota", json_object_new_int64(c->cpu_quota));
	json_object_object_add(o, "cpu_period", json_object_new_int64(c->cpu_period));
	json_object_object_add(o, "cpu_shares", json_object_new_int64(c->cpu_shares));
	uk_json_add_str(o, "cgroup", c->cgroup);
	uk_json_add_str(o, "cgroup_error", c->cgroup_error);
	uk_json_add_str(o, "pool_vm", c->pool_vm);
	json_object_object_add(o, "nic", json_object_new_boolean(c->nic));
	if (c->guest)
		json_object_object_add(o, "guest", json_object_get(c->guest));
	if (c->mounts)
		json_object_object_add(o, "mounts", json_object_get(c->mounts));
	return o;
}

static int get_str(json_object *o, const char *k, bool required, char **ret, uk_error *err)
{
	json_object *v;
	if (!json_object_object_get_ex(o, k, &v)) {
		if (required)
			return uk_err(err, EINVAL, "field \"%s\" missing", k);
		return 0;
	}
	if (!json_object_is_type(v, json_type_string))
		return uk_err(err, EINVAL, "field \"%s\" is not a string", k);
	*ret = strdup(json_object_get_string(v));
	return *ret ? 0 : uk_err(err, ENOMEM, "out of memory");
}

static int get_id(json_object *o, const char *k, char *ret, uk_error *err)
{
	_cleanup_free_ char *s = NULL;
	int r = get_str(o, k, true, &s, err);
	if (r < 0)
		return r;
	if (!record_id_named(s, ""))
		return uk_err(err, EINVAL, "field \"%s\" is not a 64-hex id", k);
	memcpy(ret, s, UK_FULL_ID_LEN + 1);
	return 0;
}

static int64_t get_i64(json_object *o, const char *k)
{
	json_object *v;
	return json_object_object_get_ex(o, k, &v) ? json_object_get_int64(v) : 0;
}

/* Optional; anything but a boot id reads as "" (unknown). */
static void get_boot_id(json_object *o, char out[UK_BOOT_ID_MAX])
{
	json_object *v;
	out[0] = '\0';
	if (json_object_object_get_ex(o, "boot_id", &v) && json_object_is_type(v, json_type_string) &&
	    json_object_get_string_len(v) < UK_BOOT_ID_MAX)
		snprintf(out, UK_BOOT_ID_MAX, "%s", json_object_get_string(v));
}

static int get_map(json_object *o, const char *k, json_object **ret, uk_error *err)
{
	json_object *v;
	if (!json_object_object_get_ex(o, k, &v)) {
		*ret = json_object_new_object();
		return 0;
	}
	if (!json_object_is_type(v, json_type_object))
		return uk_err(err, EINVAL, "field \"%s\" is not an object", k);
	*ret = json_object_get(v);
	return 0;
}

/* An optional object, kept as it is. */
static int get_object(json_object *o, const char *k, json_object **ret, uk_error *err)
{
	json_object *v;
	if (!json_object_object_get_ex(o, k, &v))
		return 0;
	if (!json_object_is_type(v, json_type_object))
		return uk_err(err, EINVAL, "field \"%s\" is not an object", k);
	*ret = json_object_get(v);
	return 0;
}

/* The devices' order: an array of "block" and "net", at most RECORD_DEVICES_MAX. */
static int get_devices(json_object *o, json_object **ret, uk_error *err)
{
	json_object *v;
	if (!json_object_object_get_ex(o, "devices", &v))
		return 0;
	size_t n = json_object_is_type(v, json_type_array) ? json_object_array_length(v) : SIZE_MAX;
	if (n > RECORD_DEVICES_MAX)
		return uk_err(err, EINVAL, "field \"devices\" is not an array of at most %d names", RECORD_DEVICES_MAX);
	for (size_t i = 0; i < n; i++) {
		const char *d = json_object_get_string(json_object_array_get_idx(v, i));
		if (!d || (strcmp(d, "block") != 0 && strcmp(d, "net") != 0 && strcmp(d, "blockdev") != 0))
			return uk_err(err, EINVAL, "field \"devices[%zu]\" must be \"block\", \"net\" or \"blockdev\"", i);
	}
	*ret = json_object_get(v);
	return 0;
}

/* A volume list: an array of at most RECORD_VOLUMES_MAX objects (their fields are checked
 * by whoever reads them: vmwrapper's spec parser, ContainerStatus). */
static int get_volumes(json_object *o, const char *key, json_object **ret, uk_error *err)
{
	json_object *v;
	if (!json_object_object_get_ex(o, key, &v))
		return 0;
	size_t n = json_object_is_type(v, json_type_array) ? json_object_array_length(v) : SIZE_MAX;
	if (n > RECORD_VOLUMES_MAX)
		return uk_err(err, EINVAL, "field \"%s\" is not an array of at most %d objects", key, RECORD_VOLUMES_MAX);
	for (size_t i = 0; i < n; i++)
		if (!json_object_is_type(json_object_array_get_idx(v, i), json_type_object))
			return uk_err(err, EINVAL, "field \"%s[%zu]\" is not an object", key, i);
	*ret = json_object_get(v);
	return 0;
}

int sandbox_from_json(json_object *o, struct sandbox **ret, uk_error *err)
{
	struct sandbox *s = calloc(1, sizeof(*s));
	int r;
	if (!s)
		return uk_err(err, ENOMEM, "out of memory");
	if ((r = get_id(o, "id", s->id, err)) < 0 || (r = get_str(o, "name", true, &s->name, err)) < 0 ||
	    (r = get_str(o, "uid", true, &s->uid, err)) < 0 || (r = get_str(o, "namespace", true, &s->ns, err)) < 0 ||
	    (r = get_str(o, "reserved_name", true, &s->reserved_name, err)) < 0 ||
	    (r = get_map(o, "labels", &s->labels, err)) < 0 ||
	    (r = get_map(o, "annotations", &s->annotations, err)) < 0 ||
	    (r = get_str(o, "log_directory", false, &s->log_directory, err)) < 0 ||
	    (r = get_str(o, "runtime_handler", false, &s->runtime_handler, err)) < 0 ||
	    (r = get_str(o, "hostname", false, &s->hostname, err)) < 0 ||
	    (r = get_str(o, "cgroup_parent", false, &s->cgroup_parent, err)) < 0 ||
	    (r = get_str(o, "ip", false, &s->ip, err)) < 0 || (r = get_str(o, "mac", false, &s->mac, err)) < 0) {
		sandbox_free(s);
		return r;
	}
	json_object *v;
	if (json_object_object_get_ex(o, "port_mappings", &v) && json_object_is_type(v, json_type_array))
		s->port_mappings = json_object_get(v);
	if (json_object_object_get_ex(o, "dns", &v) && json_object_is_type(v, json_type_object))
		s->dns = json_object_get(v);
	if (json_object_object_get_ex(o, "cni", &v) && json_object_is_type(v, json_type_object))
		s->cni = json_object_get(v);
	get_boot_id(o, s->boot_id);
	s->prefix = (int)get_i64(o, "prefix");
	s->attempt = (uint32_t)get_i64(o, "attempt");
	s->created_ns = get_i64(o, "created_ns");
	s->state = get_i64(o, "state") == SANDBOX_READY ? SANDBOX_READY : SANDBOX_NOTREADY;
	*ret = s;
	return 0;
}

int container_from_json(json_object *o, struct container **ret, uk_error *err)
{
	struct container *c = calloc(1, sizeof(*c));
	int r;
	if (!c)
		return uk_err(err, ENOMEM, "out of memory");
	if ((r = get_id(o, "id", c->id, err)) < 0 || (r = get_id(o, "sandbox_id", c->sandbox_id, err)) < 0 ||
	    (r = get_str(o, "name", true, &c->name, err)) < 0 ||
	    (r = get_str(o, "reserved_name", true, &c->reserved_name, err)) < 0 ||
	    (r = get_map(o, "labels", &c->labels, err)) < 0 ||
	    (r = get_map(o, "annotations", &c->annotations, err)) < 0 ||
	    (r = get_str(o, "image", false, &c->image, err)) < 0 ||
	    (r = get_str(o, "image_ref", false, &c->image_ref, err)) < 0 ||
	    (r = get_str(o, "log_path", false, &c->log_path, err)) < 0 ||
	    (r = get_str(o, "reason", false, &c->reason, err)) < 0 ||
	    (r = get_str(o, "message", false, &c->message, err)) < 0 ||
	    (r = get_str(o, "kernel", false, &c->kernel, err)) < 0 ||
	    (r = get_str(o, "initrd", false, &c->initrd, err)) < 0 ||
	    (r = get_str(o, "disk", false, &c->disk, err)) < 0 ||
	    (r = get_str(o, "disk_format", false, &c->disk_format, err)) < 0 ||
	    (r = get_str(o, "cmdline", false, &c->cmdline, err)) < 0 ||
	    (r = get_str(o, "machine", false, &c->machine, err)) < 0 ||
	    (r = get_str(o, "accel", false, &c->accel, err)) < 0 ||
	    (r = get_str(o, "cpu", false, &c->cpu, err)) < 0 ||
	    (r = get_str(o, "firmware", false, &c->firmware, err)) < 0 ||
	    (r = get_str(o, "pit", false, &c->pit, err)) < 0 ||
	    (r = get_str(o, "exit", false, &c->exit_contract, err)) < 0 ||
	    (r = get_devices(o, &c->devices, err)) < 0 || (r = get_object(o, "guest", &c->guest, err)) < 0 ||
	    (r = get_volumes(o, "shares", &c->shares, err)) < 0 ||
	    (r = get_volumes(o, "blockdevs", &c->blockdevs, err)) < 0 ||
	    (r = get_volumes(o, "mounts", &c->mounts, err)) < 0 ||
	    (r = get_str(o, "cgroup", false, &c->cgroup, err)) < 0 ||
	    (r = get_str(o, "cgroup_error", false, &c->cgroup_error, err)) < 0 ||
	    (r = get_str(o, "pool_vm", false, &c->pool_vm, err)) < 0) {
		container_free(c);
		return r;
	}
	if (c->pool_vm && (strlen(c->pool_vm) != UK_FULL_ID_LEN ||
			   strspn(c->pool_vm, "0123456789abcdef") != UK_FULL_ID_LEN)) {
		container_free(c);
		return uk_err(err, EINVAL, "field \"pool_vm\" is not a 64-character id");
	}
	json_object *v;
	c->disk_snapshot = !json_object_object_get_ex(o, "disk_snapshot", &v) || json_object_get_boolean(v);
	c->nic = !json_object_object_get_ex(o, "nic", &v) || json_object_get_boolean(v);
	c->stdin_open = json_object_object_get_ex(o, "stdin", &v) && json_object_get_boolean(v);
	c->memory_limit = get_i64(o, "memory_limit");
	c->cpu_quota = get_i64(o, "cpu_quota");
	c->cpu_period = get_i64(o, "cpu_period");
	c->cpu_shares = get_i64(o, "cpu_shares");
	c->attempt = (uint32_t)get_i64(o, "attempt");
	c->created_ns = get_i64(o, "created_ns");
	c->started_ns = get_i64(o, "started_ns");
	c->finished_ns = get_i64(o, "finished_ns");
	int64_t st = get_i64(o, "state");
	c->state = st >= CTR_CREATED && st <= CTR_UNKNOWN ? (enum container_state)st : CTR_UNKNOWN;
	c->exit_code = (int32_t)get_i64(o, "exit_code");
	c->vcpus = (unsigned)get_i64(o, "vcpus");
	c->memory_mib = (unsigned)get_i64(o, "memory_mib");
	c->wrapper_pid = (pid_t)get_i64(o, "wrapper_pid");
	c->wrapper_start = (uint64_t)get_i64(o, "wrapper_start");
	get_boot_id(o, c->boot_id);
	*ret = c;
	return 0;
}

static int save(const char *dir, const char *id, json_object *o, bool sync_dir, uk_error *err)
{
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/%s.json", dir, id);
	const char *s = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY);
	return sync_dir ? uk_write_file_atomic(path, s, strlen(s), 0600, err)
			: uk_write_file_atomic_unsynced_dir(path, s, strlen(s), 0600, err);
}

int record_save(const char *dir, const char *id, json_object *o, uk_error *err)
{
	return save(dir, id, o, true, err);
}

int record_save_unsynced_dir(const char *dir, const char *id, json_object *o, uk_error *err)
{
	return save(dir, id, o, false, err);
}

int record_delete(const char *dir, const char *id, uk_error *err)
{
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/%s.json", dir, id);
	/* The directory is synced too: a removal that a crash could undo would bring back an
	 * object whose files are already gone. */
	return uk_unlink_durable(path, err);
}

static void fsync_dir(const char *dir)
{
	_cleanup_close_ int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd >= 0)
		(void)fsync(fd);
}

bool record_id_named(const char *name, const char *suffix)
{
	return strspn(name, "0123456789abcdef") == UK_FULL_ID_LEN && strcmp(name + UK_FULL_ID_LEN, suffix) == 0;
}

/* "<64 hex>.json.tmp.<pid>": what uk_write_file_atomic leaves when it is killed. */
static bool is_stale_tmp(const char *name)
{
	size_t n = strlen(name);
	const char *sfx = ".json.tmp.";
	size_t ls = strlen(sfx);
	return n > UK_FULL_ID_LEN + ls && strspn(name, "0123456789abcdef") == UK_FULL_ID_LEN &&
	       strncmp(name + UK_FULL_ID_LEN, sfx, ls) == 0 &&
	       strspn(name + UK_FULL_ID_LEN + ls, "0123456789") == n - UK_FULL_ID_LEN - ls;
}

/* Move a record that cannot be used to dir/quarantine/<id>.json, durably. */
static int quarantine(const char *dir, const char *name, uk_error *err)
{
	char qdir[PATH_MAX], from[PATH_MAX + 512], to[PATH_MAX + 512];
	if (snprintf(qdir, sizeof(qdir), "%s/" RECORDS_QUARANTINE, dir) >= (int)sizeof(qdir) ||
	    snprintf(from, sizeof(from), "%s/%s", dir, name) >= (int)sizeof(from) ||
	    snprintf(to, sizeof(to), "%s/%s", qdir, name) >= (int)sizeof(to))
		return uk_err(err, ENAMETOOLONG, "path too long: %s/%s", dir, name);
	if (mkdir(qdir, 0700) < 0 && errno != EEXIST)
		return uk_err_errno(err, errno, "create %s", qdir);
	if (rename(from, to) < 0)
		return uk_err_errno(err, errno, "move %s to %s", from, to);
	int r = uk_fsync_parent(to, err);
	return r < 0 ? r : uk_fsync_parent(from, err);
}

int records_load(const char *dir, int (*fn)(json_object *o, const char *id, void *ud),
		 void (*bad)(const char *path, const char *why, const char *moved_to, void *ud), void *ud, uk_error *err)
{
	_cleanup_closedir_ DIR *d = opendir(dir);
	if (!d)
		return errno == ENOENT ? 0 : uk_err_errno(err, errno, "open %s", dir);
	struct dirent *de;
	bool removed_tmp = false;
	while ((de = readdir(d))) {
		size_t n = strlen(de->d_name);
		char id[UK_FULL_ID_LEN + 1], path[PATH_MAX + 128];
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		if (is_stale_tmp(de->d_name)) {
			/* One unikd per state directory: no write is in flight while it loads. */
			if (unlink(path) == 0)
				removed_tmp = true;
			continue;
		}
		if (n != UK_FULL_ID_LEN + 5 || strcmp(de->d_name + UK_FULL_ID_LEN, ".json") != 0)
			continue;
		memcpy(id, de->d_name, UK_FULL_ID_LEN);
		id[UK_FULL_ID_LEN] = '\0';
		_cleanup_free_ char *text = NULL;
		_cleanup_json_ json_object *o = NULL;
		uk_error e = { 0 };
		const char *why = NULL;
		if (uk_read_file(path, RECORD_MAX, &text, NULL, &e) < 0)
			why = e.msg;
		else if (!(o = json_tokener_parse(text)) || !json_object_is_type(o, json_type_object))
			why = "not a JSON object";
		else if (fn(o, id, ud) < 0)
			why = "invalid record";
		if (why) {
			char w[UK_ERROR_MSG_MAX], to[PATH_MAX + 128];
			snprintf(w, sizeof(w), "%s", why);
			snprintf(to, sizeof(to), "%s/" RECORDS_QUARANTINE "/%s", dir, de->d_name);
			uk_error qe = { 0 };
			if (quarantine(dir, de->d_name, &qe) < 0) {
				/* Left in place, it is reported again at the next start: never fatal. */
				snprintf(w, sizeof(w), "%.400s; not quarantined: %.400s", why, qe.msg);
				to[0] = '\0';
			}
			if (bad)
				bad(path, w, to[0] ? to : NULL, ud);
		}
	}
	if (removed_tmp)
		(void)fsync_dir(dir); /* removals of leftovers only: not durable is harmless */
	return 0;
}
