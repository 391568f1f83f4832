/* A container's CRI mounts and devices: checked, resolved, bounded. See volumes.h.
 *
 * Why only the host path itself is checked: a guest cannot leave a directory share on the
 * host side. QEMU's 9p local backend (hw/9pfs/9p-local.c, local_open_nofollow and
 * local_opendir_nofollow) opens every guest path from the fd of the export root, one
 * component at a time, with openat_dir/openat_file (hw/9pfs/9p-util.h), which pass
 * O_NOFOLLOW; local_name_to_path turns ".." of the root into the root itself. This came with
 * QEMU 2.9 ("9pfs: local: open/opendir: don't follow symlinks", CVE-2016-9602); Debian 12
 * ships 7.2. A symlink inside the share (kubelet's "..data" in ConfigMap and Secret
 * volumes) is read as a symlink and resolved by the guest's 9p client, inside the guest:
 * "..data/key" stays in the share, and a link to "/etc/passwd" names the guest's file, not
 * the host's. So the tree under host_path needs no walk here (which would be unbounded). */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "limits.h"
#include "volumes.h"

_Static_assert(CRI_PATH_MAX < PATH_MAX, "a request's path fits realpath's buffer");

/* kubelet's own mounts for every pod: a guest without a filesystem may leave them out. */
static const char *const kubelet_defaults[] = {
	"/etc/hosts",
	"/dev/termination-log",
	"/var/run/secrets/kubernetes.io/serviceaccount",
};

static int oom(uk_error *err)
{
	return uk_err(err, ENOMEM, "out of memory");
}

static bool is_control(char c)
{
	return (unsigned char)c < 0x20 || c == 0x7f;
}

/* The next component of a path at *s ('/'s skipped); its length, 0 at the end. */
static size_t next_component(const char **s)
{
	while (**s == '/')
		(*s)++;
	return strcspn(*s, "/");
}

/* A path from the request: required, at most CRI_PATH_MAX bytes, absolute, without control
 * characters, components of at most NAME_MAX bytes, no "..". When ret is non-NULL, the path
 * normalised (no "//", no "." component, no trailing '/'; "/" stays "/"), malloc'd. */
static int path_check(const char *v, const char *field, char **ret, uk_error *err)
{
	char q[CRI_QUOTE_MAX];
	size_t len = strnlen(v ? v : "", CRI_PATH_MAX + 1);
	if (len == 0)
		return uk_err(err, EINVAL, "%s is required", field);
	if (len > CRI_PATH_MAX)
		return uk_err(err, EINVAL, "%s is longer than %d bytes", field, CRI_PATH_MAX);
	cri_quote(q, v);
	if (v[0] != '/')
		return uk_err(err, EINVAL, "%s \"%s\" is not an absolute path", field, q);
	for (size_t k = 0; k < len; k++)
		if (is_control(v[k]))
			return uk_err(err, EINVAL, "%s \"%s\" holds a control character at byte %zu", field, q, k);
	_cleanup_free_ char *n = ret ? malloc(len + 1) : NULL;
	if (ret && !n)
		return oom(err);
	size_t o = 0, cl;
	for (const char *s = v; (cl = next_component(&s)) > 0; s += cl) {
		if (cl > NAME_MAX)
			return uk_err(err, EINVAL, "%s \"%s\" has a component longer than %d bytes", field, q, NAME_MAX);
		if (cl == 2 && s[0] == '.' && s[1] == '.')
			return uk_err(err, EINVAL, "%s \"%s\" has a \"..\" component", field, q);
		if (!n || (cl == 1 && s[0] == '.'))
			continue;
		n[o++] = '/';
		memcpy(n + o, s, cl);
		o += cl;
	}
	if (!n)
		return 0;
	if (o == 0)
		n[o++] = '/';
	n[o] = '\0';
	*ret = TAKE_PTR(n);
	return 0;
}

/* What a host path is, for messages. (vmwrapper/logfile.c's kind_name says the same for
 * its log file.) */
static const char *type_name(mode_t m)
{
	static const struct {
		mode_t type;
		const char *name;
	} types[] = {
		{ S_IFDIR, "a directory" }, { S_IFREG, "a regular file" }, { S_IFBLK, "a block device" },
		{ S_IFCHR, "a character device" }, { S_IFIFO, "a FIFO" }, { S_IFSOCK, "a socket" },
	};
	for (size_t k = 0; k < ARRAY_SIZE(types); k++)
		if ((m & S_IFMT) == types[k].type)
			return types[k].name;
	return "of an unknown type";
}

/* host_path checked as a path, then resolved through its symlinks (realpath) and stat'ed:
 * the resolved path, malloc'd, in *ret. A path that does not resolve is -EINVAL. */
static int host_resolve(const char *v, const char *field, char **ret, struct stat *st, uk_error *err)
{
	char q[CRI_QUOTE_MAX];
	int r;
	if ((r = path_check(v, field, NULL, err)) < 0)
		return r;
	cri_quote(q, v);
	int e = 0;
	_cleanup_free_ char *p = realpath(v, NULL);
	if (!p || stat(p, st) < 0)
		e = errno;
	if (e == ENOMEM)
		return oom(err);
	if (e == ENOENT)
		return uk_err(err, EINVAL, "%s \"%s\" does not exist (or a symlink on the way dangles)", field, q);
	if (e)
		return uk_err(err, EINVAL, "%s \"%s\" cannot be resolved: %s", field, q, strerror(e));
	*ret = TAKE_PTR(p);
	return 0;
}

/* What a VM cannot honour, checked before any path is touched. */
static int mount_refusals(const Runtime__V1__Mount *m, size_t i, uk_error *err)
{
	if (m->propagation != RUNTIME__V1__MOUNT_PROPAGATION__PROPAGATION_PRIVATE) {
		const ProtobufCEnumValue *ev =
			protobuf_c_enum_descriptor_get_value(&runtime__v1__mount_propagation__descriptor, m->propagation);
		return uk_err(err, EINVAL,
			      "config.mounts[%zu].propagation %s is not supported: the guest's mounts and the host's "
			      "cannot see each other's mount events; only PROPAGATION_PRIVATE",
			      i, ev ? ev->name : "(unknown value)");
	}
	if (m->n_uidmappings > 0 || m->n_gidmappings > 0)
		return uk_err(err, EINVAL,
			      "config.mounts[%zu].%s is not supported: a 9p share shows the guest the host's owners, "
			      "unmapped",
			      i, m->n_uidmappings > 0 ? "uidMappings" : "gidMappings");
	if (m->recursive_read_only)
		return uk_err(err, EINVAL,
			      "config.mounts[%zu].recursive_read_only is not supported: unikd announces no recursive "
			      "read-only mounts in its runtime handler features",
			      i);
	if ((m->image && m->image->image && *m->image->image) || (m->image_sub_path && *m->image_sub_path))
		return uk_err(err, EINVAL,
			      "config.mounts[%zu].%s is not supported: image volumes are not mounted into a VM", i,
			      m->image && m->image->image && *m->image->image ? "image" : "image_sub_path");
	return 0;
}

/* Another mount's or device's container_path equal to path, among the first nm mounts and
 * nd devices: its field, in which; false when there is none. */
static bool container_path_taken(const struct cri_volumes *v, size_t nm, size_t nd, const char *path,
				 char *which, size_t len)
{
	for (size_t k = 0; k < nm; k++)
		if (strcmp(v->mounts[k].container_path, path) == 0)
			return snprintf(which, len, "config.mounts[%zu]", k), true;
	for (size_t k = 0; k < nd; k++)
		if (strcmp(v->devices[k].container_path, path) == 0)
			return snprintf(which, len, "config.devices[%zu]", k), true;
	return false;
}

/* container_path for item i of list, normalised into *ret: unique among the first nm
 * mounts and nd devices, and not "/" (which would hide the guest's root). */
static int container_path_take(const struct cri_volumes *v, size_t nm, size_t nd, const char *list, size_t i,
			       const char *path, char **ret, uk_error *err)
{
	char field[64], which[64], q[CRI_QUOTE_MAX];
	int r;
	snprintf(field, sizeof(field), "config.%s[%zu].container_path", list, i);
	_cleanup_free_ char *n = NULL;
	if ((r = path_check(path, field, &n, err)) < 0)
		return r;
	cri_quote(q, n);
	if (strcmp(n, "/") == 0)
		return uk_err(err, EINVAL, "%s is \"/\": a volume cannot cover the guest's root", field);
	if (container_path_taken(v, nm, nd, n, which, sizeof(which)))
		return uk_err(err, EINVAL, "%s \"%s\" is also %s's: one path takes one volume", field, q, which);
	*ret = TAKE_PTR(n);
	return 0;
}

static int mount_parse(const struct cri_volumes *v, size_t i, const Runtime__V1__Mount *m, struct cri_vol_mount *out,
		       uk_error *err)
{
	char field[64], q[CRI_QUOTE_MAX];
	struct stat st;
	int r;
	if ((r = mount_refusals(m, i, err)) < 0 ||
	    (r = container_path_take(v, i, 0, "mounts", i, m->container_path, &out->container_path, err)) < 0)
		return r;
	snprintf(field, sizeof(field), "config.mounts[%zu].host_path", i);
	if ((r = host_resolve(m->host_path, field, &out->host_path, &st, err)) < 0)
		return r;
	if (!S_ISDIR(st.st_mode) && !S_ISREG(st.st_mode)) {
		cri_quote(q, out->host_path);
		return uk_err(err, EINVAL, "%s \"%s\" is %s: a mount takes a directory or a regular file", field, q,
			      type_name(st.st_mode));
	}
	out->kind = S_ISDIR(st.st_mode) ? CRI_VOL_DIR : CRI_VOL_FILE;
	out->readonly = m->readonly;
	for (size_t k = 0; k < ARRAY_SIZE(kubelet_defaults); k++)
		out->kubelet_default |= strcmp(out->container_path, kubelet_defaults[k]) == 0;
	return 0;
}

/* permissions as runc and containerd read them: letters of "rwm" ("" is all three). A disk
 * the guest cannot read cannot be attached, so 'r' is required; 'm' (mknod) means nothing
 * to a VM. */
static int device_permissions(const char *p, size_t i, bool *readonly, uk_error *err)
{
	char q[CRI_QUOTE_MAX];
	bool r = false, w = false, m = false;
	p = p && *p ? p : "rwm";
	cri_quote(q, p);
	for (const char *c = p; *c; c++) {
		bool *seen = *c == 'r' ? &r : *c == 'w' ? &w : *c == 'm' ? &m : NULL;
		if (!seen || *seen)
			return uk_err(err, EINVAL,
				      "config.devices[%zu].permissions \"%s\" must be letters of \"rwm\", each at most once",
				      i, q);
		*seen = true;
	}
	if (!r)
		return uk_err(err, EINVAL,
			      "config.devices[%zu].permissions \"%s\" lacks 'r': a disk the guest cannot read cannot be "
			      "attached",
			      i, q);
	*readonly = !w;
	return 0;
}

/* The same disk twice: the same file, or two nodes of the same block device. */
static bool same_disk(const struct stat *a, const struct stat *b)
{
	if (S_ISBLK(a->st_mode) && S_ISBLK(b->st_mode))
		return a->st_rdev == b->st_rdev;
	return a->st_dev == b->st_dev && a->st_ino == b->st_ino;
}

/* Device i; seen[] holds the stat of the devices before it. */
static int device_parse(const struct cri_volumes *v, size_t i, const Runtime__V1__Device *d, struct stat *seen,
			struct cri_vol_device *out, uk_error *err)
{
	char field[64], q[CRI_QUOTE_MAX];
	int r;
	if ((r = container_path_take(v, v->n_mounts, i, "devices", i, d->container_path, &out->container_path,
				     err)) < 0 ||
	    (r = device_permissions(d->permissions, i, &out->readonly, err)) < 0)
		return r;
	snprintf(field, sizeof(field), "config.devices[%zu].host_path", i);
	if ((r = host_resolve(d->host_path, field, &out->host_path, &seen[i], err)) < 0)
		return r;
	cri_quote(q, out->host_path);
	mode_t mode = seen[i].st_mode;
	if (!S_ISBLK(mode) && !S_ISREG(mode))
		return uk_err(err, EINVAL, "%s \"%s\" is %s: a device takes a block device or a regular file (a disk image)",
			      field, q, type_name(mode));
	for (size_t k = 0; k < i; k++)
		if (same_disk(&seen[k], &seen[i]))
			return uk_err(err, EINVAL, "%s \"%s\" is the disk of config.devices[%zu] too: a disk is attached once",
				      field, q, k);
	out->block = S_ISBLK(mode);
	return 0;
}

static int check_counts(const Runtime__V1__ContainerConfig *cfg, uk_error *err)
{
	if (cfg->n_mounts > CRI_VOL_MOUNTS_MAX)
		return uk_err(err, E2BIG, "config.mounts has %zu items, at most %d: each is a virtio-9p device of the VM",
			      cfg->n_mounts, CRI_VOL_MOUNTS_MAX);
	if (cfg->n_devices > CRI_VOL_DEVICES_MAX)
		return uk_err(err, E2BIG, "config.devices has %zu items, at most %d: each is a virtio-blk disk of the VM",
			      cfg->n_devices, CRI_VOL_DEVICES_MAX);
	return 0;
}

int cri_volumes_parse(const Runtime__V1__ContainerConfig *cfg, struct cri_volumes *out, uk_error *err)
{
	_cleanup_(cri_volumes_free) struct cri_volumes v = { 0 };
	struct stat seen[CRI_VOL_DEVICES_MAX];
	int r;
	*out = (struct cri_volumes){ 0 };
	if (!cfg)
		return uk_err(err, EINVAL, "config is required");
	if ((r = check_counts(cfg, err)) < 0)
		return r;
	if (cfg->n_mounts > 0 && !(v.mounts = calloc(cfg->n_mounts, sizeof(*v.mounts))))
		return oom(err);
	if (cfg->n_devices > 0 && !(v.devices = calloc(cfg->n_devices, sizeof(*v.devices))))
		return oom(err);
	/* The counts cover the zeroed items too, so a failure part-way frees what was made. */
	v.n_mounts = cfg->n_mounts;
	v.n_devices = cfg->n_devices;
	for (size_t i = 0; i < cfg->n_mounts; i++)
		if ((r = mount_parse(&v, i, cfg->mounts[i], &v.mounts[i], err)) < 0)
			return r;
	for (size_t i = 0; i < cfg->n_devices; i++)
		if ((r = device_parse(&v, i, cfg->devices[i], seen, &v.devices[i], err)) < 0)
			return r;
	*out = v;
	v = (struct cri_volumes){ 0 };
	return 0;
}

void cri_volumes_free(struct cri_volumes *v)
{
	if (!v)
		return;
	for (size_t i = 0; v->mounts && i < v->n_mounts; i++) {
		free(v->mounts[i].host_path);
		free(v->mounts[i].container_path);
	}
	for (size_t i = 0; v->devices && i < v->n_devices; i++) {
		free(v->devices[i].host_path);
		free(v->devices[i].container_path);
	}
	free(v->mounts);
	free(v->devices);
	*v = (struct cri_volumes){ 0 };
}
