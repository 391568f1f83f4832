#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../src/common/util.h"
#include "spec.h"

static const char *machine_names[] = { "auto", "microvm", "pc", "q35" };
static const char *accel_names[] = { "auto", "kvm", "tcg" };
static const char *pit_names[] = { "on", "off", "off-under-kvm" };
const char *const vm_firmware_names[3] = { "auto", "qboot", "seabios" };
const char *const vm_exit_contract_names[3] = { "default", "unikraft", "solo5" };
static const char *disk_format_names[] = { "raw", "qcow2" };
static const char *const device_kind_names[] = { "block", "net", "blockdev" };

const char *vm_machine_name(enum vm_machine m)
{
	return machine_names[m];
}

const char *vm_accel_name(enum vm_accel a)
{
	return accel_names[a];
}

const char *vm_pit_name(enum vm_pit p)
{
	return pit_names[p];
}

const char *vm_exit_contract_name(enum vm_exit_contract c)
{
	return vm_exit_contract_names[c];
}

struct vm_spec *vm_spec_new(void)
{
	struct vm_spec *s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	s->vcpus = 1;
	s->memory_mib = 64;
	s->disk_snapshot = true;
	for (unsigned i = 0; i < VM_NETS_MAX; i++)
		s->nets[i].tap_fd = s->nets[i].vhost_fd = -1;
	return s;
}

void vm_spec_free(struct vm_spec *s)
{
	if (!s)
		return;
	free(s->id);
	free(s->kernel);
	free(s->initrd);
	free(s->cmdline);
	free(s->disk);
	free(s->cpu_model);
	free(s->console_log);
	free(s->state_dir);
	free(s->qemu_binary);
	for (unsigned i = 0; i < s->n_nets; i++)
		free(s->nets[i].mac);
	for (unsigned i = 0; i < s->n_shares; i++) {
		free(s->shares[i].tag);
		free(s->shares[i].path);
		free(s->shares[i].file);
	}
	for (unsigned i = 0; i < s->n_blockdevs; i++) {
		free(s->blockdevs[i].path);
		free(s->blockdevs[i].serial);
	}
	free(s);
}

/* o's member key; errors name it field (a member of an array's entry: "shares[2].tag"). */
static int get_string_as(json_object *o, const char *key, const char *field, bool required, char **ret,
			 uk_error *err)
{
	json_object *v;
	if (!json_object_object_get_ex(o, key, &v) || json_object_is_type(v, json_type_null)) {
		if (required)
			return uk_err(err, EINVAL, "field \"%s\" is required", field);
		return 0;
	}
	if (!json_object_is_type(v, json_type_string))
		return uk_err(err, EINVAL, "field \"%s\" must be a string", field);
	/* JSON can carry "\u0000", which would cut the C string short unseen. */
	if (strlen(json_object_get_string(v)) != (size_t)json_object_get_string_len(v))
		return uk_err(err, EINVAL, "field \"%s\" must not hold a NUL character", field);
	char *d = strdup(json_object_get_string(v));
	if (!d)
		return uk_err(err, ENOMEM, "out of memory");
	free(*ret);
	*ret = d;
	return 0;
}

static int get_string(json_object *o, const char *key, bool required, char **ret, uk_error *err)
{
	return get_string_as(o, key, key, required, ret, err);
}

static int get_uint(json_object *o, const char *key, uint64_t min, uint64_t max, unsigned *ret,
		    uk_error *err)
{
	json_object *v;
	if (!json_object_object_get_ex(o, key, &v))
		return 0;
	if (!json_object_is_type(v, json_type_int))
		return uk_err(err, EINVAL, "field \"%s\" must be an integer", key);
	int64_t n = json_object_get_int64(v);
	if (n < (int64_t)min || n > (int64_t)max)
		return uk_err(err, ERANGE, "field \"%s\" is %lld, must be within %llu..%llu", key,
			      (long long)n, (unsigned long long)min, (unsigned long long)max);
	*ret = (unsigned)n;
	return 0;
}

static int get_bool_as(json_object *o, const char *key, const char *field, bool *ret, uk_error *err)
{
	json_object *v;
	if (!json_object_object_get_ex(o, key, &v) || json_object_is_type(v, json_type_null))
		return 0;
	if (!json_object_is_type(v, json_type_boolean))
		return uk_err(err, EINVAL, "field \"%s\" must be true or false", field);
	*ret = json_object_get_boolean(v);
	return 0;
}

static int get_bool(json_object *o, const char *key, bool *ret, uk_error *err)
{
	return get_bool_as(o, key, key, ret, err);
}

static int get_enum(json_object *o, const char *key, const char *const *names, size_t n, int *ret,
		    uk_error *err)
{
	_cleanup_free_ char *s = NULL;
	int r = get_string(o, key, false, &s, err);
	if (r < 0 || !s)
		return r;
	for (size_t i = 0; i < n; i++)
		if (strcmp(s, names[i]) == 0) {
			*ret = (int)i;
			return 0;
		}
	return uk_err(err, EINVAL, "field \"%s\" has unknown value \"%s\"", key, s);
}

/* An array of at most max entries; *ret is NULL and *n 0 when the field is absent or null. */
static int get_array(json_object *o, const char *key, size_t max, json_object **ret, size_t *n, uk_error *err)
{
	json_object *v;
	*ret = NULL;
	*n = 0;
	if (!json_object_object_get_ex(o, key, &v) || json_object_is_type(v, json_type_null))
		return 0;
	if (!json_object_is_type(v, json_type_array))
		return uk_err(err, EINVAL, "field \"%s\" must be an array", key);
	if (json_object_array_length(v) > max)
		return uk_err(err, E2BIG, "field \"%s\" has %zu entries, at most %zu", key,
			      json_object_array_length(v), max);
	*ret = v;
	*n = json_object_array_length(v);
	return 0;
}

static int parse_nets(json_object *o, struct vm_spec *s, uk_error *err)
{
	json_object *arr;
	size_t n;
	int r = get_array(o, "net", VM_NETS_MAX, &arr, &n, err);
	if (r < 0)
		return r;
	for (size_t i = 0; i < n; i++) {
		json_object *e = json_object_array_get_idx(arr, i);
		struct vm_net *net = &s->nets[i];
		if (!json_object_is_type(e, json_type_object))
			return uk_err(err, EINVAL, "field \"net[%zu]\" must be an object", i);
		json_object *v;
		if (!json_object_object_get_ex(e, "tap_fd", &v) || !json_object_is_type(v, json_type_int) ||
		    json_object_get_int(v) < 3)
			return uk_err(err, EINVAL, "field \"net[%zu].tap_fd\" must be an fd >= 3", i);
		net->tap_fd = json_object_get_int(v);
		if (json_object_object_get_ex(e, "vhost_fd", &v)) {
			if (!json_object_is_type(v, json_type_int) || json_object_get_int(v) < 3)
				return uk_err(err, EINVAL, "field \"net[%zu].vhost_fd\" must be an fd >= 3", i);
			net->vhost_fd = json_object_get_int(v);
		}
		s->n_nets = (unsigned)i + 1;
		if ((r = get_string(e, "mac", true, &net->mac, err)) < 0)
			return uk_err_ctx_r(err, r, "net[%zu]", i);
	}
	return 0;
}

/* "devices": ["net", "block", "blockdev", …], each kind by name; the counts are checked by validate. */
static int parse_devices(json_object *o, struct vm_spec *s, uk_error *err)
{
	json_object *arr;
	size_t n;
	int r = get_array(o, "devices", VM_DEVICES_MAX, &arr, &n, err);
	if (r < 0 || !arr)
		return r;
	for (size_t i = 0; i < n; i++) {
		json_object *e = json_object_array_get_idx(arr, i);
		const char *name = json_object_is_type(e, json_type_string) ? json_object_get_string(e) : NULL;
		size_t k = 0;
		while (name && k < ARRAY_SIZE(device_kind_names) && strcmp(name, device_kind_names[k]) != 0)
			k++;
		if (!name || k == ARRAY_SIZE(device_kind_names))
			return uk_err(err, EINVAL, "field \"devices[%zu]\" must be \"block\" or \"net\" or \"blockdev\"", i);
		s->devices[i] = (enum vm_device_kind)k;
	}
	s->n_devices = (unsigned)n;
	s->has_device_order = true;
	return 0;
}

/* The i-th entry of the array name: an object whose string members strs[] (required) and
 * boolean "readonly" (false when absent) are read into the pointers given; errors name the
 * field as "name[i].member". */
static int parse_entry(json_object *arr, const char *name, size_t i, const char *const strs[2], char **vals[2],
		       bool *readonly, uk_error *err)
{
	json_object *e = json_object_array_get_idx(arr, i);
	char field[64];
	int r;
	if (!json_object_is_type(e, json_type_object))
		return uk_err(err, EINVAL, "field \"%s[%zu]\" must be an object", name, i);
	for (size_t k = 0; k < 2; k++) {
		snprintf(field, sizeof(field), "%s[%zu].%s", name, i, strs[k]);
		if ((r = get_string_as(e, strs[k], field, true, vals[k], err)) < 0)
			return r;
	}
	snprintf(field, sizeof(field), "%s[%zu].readonly", name, i);
	return get_bool_as(e, "readonly", field, readonly, err);
}

/* "shares": [{"tag", "path", "readonly"}, …] and "blockdevs": [{"path", "serial",
 * "readonly"}, …]; the values are checked by validate. */
static int parse_volumes(json_object *o, struct vm_spec *s, uk_error *err)
{
	static const char *const share_strs[2] = { "tag", "path" }, *const blockdev_strs[2] = { "path", "serial" };
	json_object *arr;
	size_t n;
	int r = get_array(o, "shares", VM_SHARES_MAX, &arr, &n, err);
	for (size_t i = 0; r >= 0 && i < n; i++) {
		struct vm_share *sh = &s->shares[i];
		s->n_shares = (unsigned)i + 1;
		r = parse_entry(arr, "shares", i, share_strs, (char **[2]){ &sh->tag, &sh->path }, &sh->readonly, err);
		if (r >= 0) {
			char field[48];
			snprintf(field, sizeof(field), "shares[%zu].file", i);
			r = get_string_as(json_object_array_get_idx(arr, i), "file", field, false, &sh->file, err);
		}
	}
	if (r < 0 || (r = get_array(o, "blockdevs", VM_BLOCKDEVS_MAX, &arr, &n, err)) < 0)
		return r;
	for (size_t i = 0; r >= 0 && i < n; i++) {
		struct vm_blockdev *b = &s->blockdevs[i];
		s->n_blockdevs = (unsigned)i + 1;
		r = parse_entry(arr, "blockdevs", i, blockdev_strs, (char **[2]){ &b->path, &b->serial }, &b->readonly,
				err);
	}
	return r;
}

int vm_spec_parse(const char *json, struct vm_spec **ret, uk_error *err)
{
	_cleanup_json_ json_object *o = NULL;
	enum json_tokener_error jerr;
	o = json_tokener_parse_verbose(json, &jerr);
	if (!o)
		return uk_err(err, EINVAL, "spec is not JSON: %s", json_tokener_error_desc(jerr));
	if (!json_object_is_type(o, json_type_object))
		return uk_err(err, EINVAL, "spec must be a JSON object");

	_cleanup_vm_spec_ struct vm_spec *s = vm_spec_new();
	if (!s)
		return uk_err(err, ENOMEM, "out of memory");
	unsigned version = 0;
	int r, m = 0, a = 0, pit = 0, f = 0, df = 0, ex = 0;
	if ((r = get_uint(o, "version", 1, 1000, &version, err)) < 0)
		return r;
	if (version != VM_SPEC_VERSION)
		return uk_err(err, EINVAL, "field \"version\" must be %d", VM_SPEC_VERSION);
	if ((r = get_string(o, "id", true, &s->id, err)) < 0 ||
	    (r = get_string(o, "kernel", false, &s->kernel, err)) < 0 ||
	    (r = get_string(o, "initrd", false, &s->initrd, err)) < 0 ||
	    (r = get_string(o, "cmdline", false, &s->cmdline, err)) < 0 ||
	    (r = get_string(o, "disk", false, &s->disk, err)) < 0 ||
	    (r = get_string(o, "cpu", false, &s->cpu_model, err)) < 0 ||
	    (r = get_string(o, "console_log", false, &s->console_log, err)) < 0 ||
	    (r = get_string(o, "state_dir", true, &s->state_dir, err)) < 0 ||
	    (r = get_string(o, "qemu", false, &s->qemu_binary, err)) < 0 ||
	    (r = get_enum(o, "machine", machine_names, ARRAY_SIZE(machine_names), &m, err)) < 0 ||
	    (r = get_enum(o, "accel", accel_names, ARRAY_SIZE(accel_names), &a, err)) < 0 ||
	    (r = get_enum(o, "pit", pit_names, ARRAY_SIZE(pit_names), &pit, err)) < 0 ||
	    (r = get_enum(o, "firmware", vm_firmware_names, ARRAY_SIZE(vm_firmware_names), &f, err)) < 0 ||
	    (r = get_enum(o, "exit", vm_exit_contract_names, ARRAY_SIZE(vm_exit_contract_names), &ex, err)) < 0 ||
	    (r = get_enum(o, "disk_format", disk_format_names, ARRAY_SIZE(disk_format_names), &df, err)) < 0 ||
	    (r = get_bool(o, "disk_snapshot", &s->disk_snapshot, err)) < 0 ||
	    (r = get_bool(o, "stdin", &s->console_input, err)) < 0 ||
	    (r = get_bool(o, "pool", &s->pool, err)) < 0 ||
	    (r = get_uint(o, "nics_at_claim", 0, VM_NETS_MAX, &s->nics_at_claim, err)) < 0 ||
	    (r = get_uint(o, "vcpus", 1, VM_VCPUS_MAX, &s->vcpus, err)) < 0 ||
	    (r = get_uint(o, "memory_mib", VM_MEMORY_MIN_MIB, VM_MEMORY_MAX_MIB, &s->memory_mib, err)) < 0 ||
	    (r = parse_nets(o, s, err)) < 0 || (r = parse_devices(o, s, err)) < 0 ||
	    (r = parse_volumes(o, s, err)) < 0)
		return r;
	s->machine = (enum vm_machine)m;
	s->accel = (enum vm_accel)a;
	s->pit = (enum vm_pit)pit;
	s->firmware = (enum vm_firmware)f;
	s->disk_format = (enum vm_disk_format)df;
	s->exit_contract = (enum vm_exit_contract)ex;
	if ((r = vm_spec_validate(s, err)) < 0)
		return r;
	*ret = TAKE_PTR(s);
	return 0;
}

static int check_readable(const char *field, const char *path, uk_error *err)
{
	if (path[0] != '/')
		return uk_err(err, EINVAL, "field \"%s\" must be an absolute path, got \"%s\"", field, path);
	if (access(path, R_OK) < 0)
		return uk_err_errno(err, errno, "field \"%s\": cannot read %s", field, path);
	return 0;
}

/* The order lists the disk, every NIC and every block device, each once: a device left out
 * would be missing from the VM, and one listed without its entry has nothing behind it. */
static int check_device_order(const struct vm_spec *s, uk_error *err)
{
	unsigned nets = 0, blocks = 0, bdevs = 0;
	if (!s->has_device_order)
		return 0;
	for (unsigned i = 0; i < s->n_devices; i++) {
		if (s->devices[i] == VM_DEV_NET && ++nets > s->n_nets + s->nics_at_claim)
			return uk_err(err, EINVAL,
				      s->nics_at_claim ? "field \"devices[%u]\" is \"net\" number %u, but \"nics_at_claim\" is %u"
						       : "field \"devices[%u]\" is \"net\" number %u, but \"net\" has %u entries",
				      i, nets, s->n_nets + s->nics_at_claim);
		/* A NIC plugged at the claim takes the first free slot, after every device on
		 * QEMU's command line: it gets the slot the order gives only when it is last. */
		if (s->nics_at_claim && nets > 0 && s->devices[i] != VM_DEV_NET)
			return uk_err(err, EINVAL,
				      "field \"devices[%u]\" is \"%s\" after a \"net\": with \"nics_at_claim\" the NICs come "
				      "after every other device",
				      i, device_kind_names[s->devices[i]]);
		if (s->devices[i] == VM_DEV_BLOCKDEV && ++bdevs > s->n_blockdevs)
			return uk_err(err, EINVAL,
				      "field \"devices[%u]\" is \"blockdev\" number %u, but \"blockdevs\" has %u entries", i,
				      bdevs, s->n_blockdevs);
		if (s->devices[i] == VM_DEV_BLOCK && ++blocks > (s->disk ? 1u : 0u))
			return uk_err(err, EINVAL, s->disk ? "field \"devices[%u]\" names the disk a second time"
							  : "field \"devices[%u]\" is \"block\", but there is no \"disk\"", i);
	}
	if (nets < s->n_nets + s->nics_at_claim && s->nics_at_claim)
		return uk_err(err, EINVAL, "field \"devices\" names %u \"net\", but \"nics_at_claim\" is %u: it must list every NIC",
			      nets, s->nics_at_claim);
	if (nets < s->n_nets)
		return uk_err(err, EINVAL, "field \"devices\" leaves out net[%u]: it must list every NIC", nets);
	if (bdevs < s->n_blockdevs)
		return uk_err(err, EINVAL,
			      "field \"devices\" leaves out blockdevs[%u]: it must list every block device", bdevs);
	if (s->disk && !blocks)
		return uk_err(err, EINVAL, "field \"devices\" leaves out the disk: it must list \"block\"");
	return 0;
}

/* A 9p tag or a virtio-blk serial (what[i].key): a name of at most max bytes, unique among
 * the i before it (earlier(k) gives the k-th). */
static int check_name(const char *what, unsigned i, const char *key, const char *name, size_t max,
		      const char *(*earlier)(const struct vm_spec *, unsigned), const struct vm_spec *s, uk_error *err)
{
	if (!name || strlen(name) > max || !uk_id_valid(name))
		return uk_err(err, EINVAL,
			      "field \"%s[%u].%s\" must be 1..%zu bytes of [A-Za-z0-9_.-], starting with a letter or a "
			      "digit, without \"..\"",
			      what, i, key, max);
	for (unsigned k = 0; k < i; k++)
		if (strcmp(earlier(s, k), name) == 0)
			return uk_err(err, EINVAL, "field \"%s[%u].%s\" is \"%s\", as %s[%u] is: each must be unique",
				      what, i, key, name, what, k);
	return 0;
}

static const char *share_tag(const struct vm_spec *s, unsigned k)
{
	return s->shares[k].tag;
}

static const char *blockdev_serial(const struct vm_spec *s, unsigned k)
{
	return s->blockdevs[k].serial;
}

/* Follows symbolic links, as QEMU does when it opens the path: a directory for a share, a
 * regular file or a block device for a disk. The file can change before QEMU opens it; this
 * catches a mistake early, with the field's name, and QEMU's own check stays. */
static int check_path_kind(const char *what, unsigned i, const char *path, bool dir, uk_error *err)
{
	struct stat st;
	if (!path || path[0] != '/')
		return uk_err(err, EINVAL, "field \"%s[%u].path\" must be an absolute path, got \"%s\"", what, i,
			      path ? path : "");
	if (stat(path, &st) < 0)
		return uk_err_errno(err, errno, "field \"%s[%u].path\": %s", what, i, path);
	if (dir && !S_ISDIR(st.st_mode))
		return uk_err(err, ENOTDIR, "field \"%s[%u].path\": %s is not a directory", what, i, path);
	if (!dir && !S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode))
		return uk_err(err, EINVAL, "field \"%s[%u].path\": %s is not a regular file or a block device", what, i,
			      path);
	return 0;
}

int vm_share_export_dir(const struct vm_spec *s, unsigned i, char *buf, size_t len)
{
	const struct vm_share *sh = &s->shares[i];
	int n = sh->file ? snprintf(buf, len, "%s/shares/%s", s->state_dir ? s->state_dir : "", sh->tag)
			 : snprintf(buf, len, "%s", sh->path);
	return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

/* A file share: a plain name for the file (it lands in a directory of its own), a regular
 * file to bind there, and a state directory to stage it in. */
static int check_share_file(const struct vm_spec *s, unsigned i, uk_error *err)
{
	const struct vm_share *sh = &s->shares[i];
	size_t n = strlen(sh->file);
	if (n == 0 || n > 255 || strchr(sh->file, '/') || strcmp(sh->file, ".") == 0 || strcmp(sh->file, "..") == 0)
		return uk_err(err, EINVAL, "field \"shares[%u].file\" must be a file name of 1..255 bytes without '/', "
			      "not \".\" or \"..\"", i);
	for (const char *p = sh->file; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			return uk_err(err, EINVAL, "field \"shares[%u].file\" holds a control character", i);
	if (!s->state_dir)
		return uk_err(err, EINVAL, "field \"shares[%u].file\" needs a state_dir to stage the file in", i);
	struct stat st;
	if (!sh->path || sh->path[0] != '/')
		return uk_err(err, EINVAL, "field \"shares[%u].path\" must be an absolute path", i);
	if (stat(sh->path, &st) < 0)
		return uk_err_errno(err, errno, "field \"shares[%u].path\": %s", i, sh->path);
	if (!S_ISREG(st.st_mode))
		return uk_err(err, EINVAL, "field \"shares[%u].path\": %s is not a regular file (\"file\" is given)", i,
			      sh->path);
	return 0;
}

static int check_volumes(const struct vm_spec *s, uk_error *err)
{
	int r;
	for (unsigned i = 0; i < s->n_shares; i++) {
		const struct vm_share *sh = &s->shares[i];
		char dir[PATH_MAX];
		if ((r = check_name("shares", i, "tag", sh->tag, VM_SHARE_TAG_MAX, share_tag, s, err)) < 0 ||
		    (r = sh->file ? check_share_file(s, i, err) : check_path_kind("shares", i, sh->path, true, err)) < 0)
			return r;
		if (vm_share_export_dir(s, i, dir, sizeof(dir)) < 0)
			return uk_err(err, ENAMETOOLONG, "field \"shares[%u]\": the staging directory's path is too long", i);
	}
	for (unsigned i = 0; i < s->n_blockdevs; i++) {
		const struct vm_blockdev *b = &s->blockdevs[i];
		if ((r = check_name("blockdevs", i, "serial", b->serial, VM_BLOCKDEV_SERIAL_MAX, blockdev_serial, s,
				    err)) < 0 ||
		    (r = check_path_kind("blockdevs", i, b->path, false, err)) < 0)
			return r;
		if (access(b->path, b->readonly ? R_OK : R_OK | W_OK) < 0)
			return uk_err_errno(err, errno, "field \"blockdevs[%u].path\": cannot %s %s", i,
					    b->readonly ? "read" : "read and write", b->path);
	}
	return 0;
}

/* NICs plugged at the claim (README.md, "NICs at the claim"): a pool VM's, instead of "net",
 * on pc only: its i440FX root bus takes a device after QEMU's start. microvm's virtio-mmio
 * and q35's PCIe root bus do not (QEMU: "Bus 'pcie.0' does not support hotplugging"), and
 * "auto" may choose either. */
static int check_nics_at_claim(const struct vm_spec *s, uk_error *err)
{
	if (!s->nics_at_claim)
		return 0;
	if (!s->pool)
		return uk_err(err, EINVAL, "field \"nics_at_claim\" needs \"pool\": true (a claim plugs the NICs)");
	if (s->n_nets)
		return uk_err(err, EINVAL, "field \"nics_at_claim\" must not be given with \"net\": the claim gives the NICs");
	if (s->machine != VM_MACHINE_PC)
		return uk_err(err, EINVAL,
			      "field \"machine\" is %s: \"nics_at_claim\" needs pc (only its PCI root bus takes a NIC "
			      "after QEMU's start)",
			      vm_machine_name(s->machine));
	/* Without an order the NICs would go before the block devices on a cold start. */
	if (!s->has_device_order && s->n_blockdevs)
		return uk_err(err, EINVAL,
			      "field \"devices\" is required with \"nics_at_claim\" and \"blockdevs\": the NICs come after "
			      "every other device");
	return 0;
}

int vm_spec_validate(const struct vm_spec *s, uk_error *err)
{
	int r;
	if (!s->id || !uk_id_valid(s->id))
		return uk_err(err, EINVAL,
			      "field \"id\" must match [A-Za-z0-9][A-Za-z0-9_.-]* without \"..\" (at most %d bytes)",
			      UK_ID_MAX - 1);
	if (!s->kernel && !s->disk)
		return uk_err(err, EINVAL, "one of \"kernel\" and \"disk\" must be given (both: the disk is a data disk)");
	if (s->kernel && (r = check_readable("kernel", s->kernel, err)) < 0)
		return r;
	if (s->initrd && !s->kernel)
		return uk_err(err, EINVAL, "field \"initrd\" needs \"kernel\"");
	if (s->initrd && (r = check_readable("initrd", s->initrd, err)) < 0)
		return r;
	if (s->disk && (r = check_readable("disk", s->disk, err)) < 0)
		return r;
	if (s->cmdline && strlen(s->cmdline) >= VM_CMDLINE_MAX)
		return uk_err(err, E2BIG, "field \"cmdline\" is longer than %d bytes", VM_CMDLINE_MAX - 1);
	if (s->memory_mib < VM_MEMORY_MIN_MIB || s->memory_mib > VM_MEMORY_MAX_MIB)
		return uk_err(err, ERANGE, "field \"memory_mib\" is %u, must be within %d..%d",
			      s->memory_mib, VM_MEMORY_MIN_MIB, VM_MEMORY_MAX_MIB);
	if (s->vcpus < 1 || s->vcpus > VM_VCPUS_MAX)
		return uk_err(err, ERANGE, "field \"vcpus\" is %u, must be within 1..%d", s->vcpus,
			      VM_VCPUS_MAX);
	if (s->machine == VM_MACHINE_MICROVM && s->disk && !s->kernel)
		return uk_err(err, EINVAL, "field \"machine\": microvm cannot boot a disk; use pc or q35");
	if (s->cpu_model)
		for (const char *p = s->cpu_model; *p; p++)
			if (!(*p == ',' || *p == '-' || *p == '+' || *p == '_' || *p == '.' || *p == '=' ||
			      (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9')))
				return uk_err(err, EINVAL, "field \"cpu\" has an invalid character");
	for (unsigned i = 0; i < s->n_nets; i++) {
		const char *mac = s->nets[i].mac;
		char low[18];
		if (!uk_mac_parse(mac, low) || strcmp(low, mac) != 0) /* lower case only, as QEMU prints it */
			return uk_err(err, EINVAL, "field \"net[%u].mac\" must look like 02:00:00:00:00:01", i);
	}
	if ((r = check_volumes(s, err)) < 0 || (r = check_nics_at_claim(s, err)) < 0 ||
	    (r = check_device_order(s, err)) < 0)
		return r;
	if (!s->state_dir || s->state_dir[0] != '/')
		return uk_err(err, EINVAL, "field \"state_dir\" must be an absolute path");
	/* A pool VM's console has no file until the claim names one (README.md, "Pool VMs"). */
	if (s->pool && (s->console_log || s->console_input))
		return uk_err(err, EINVAL, "field \"%s\" must not be given with \"pool\": the claim gives it",
			      s->console_log ? "console_log" : "stdin");
	if (s->console_log && s->console_log[0] != '/')
		return uk_err(err, EINVAL, "field \"console_log\" must be an absolute path");
	if (s->qemu_binary && s->qemu_binary[0] != '/')
		return uk_err(err, EINVAL, "field \"qemu\" must be an absolute path");
	return 0;
}
