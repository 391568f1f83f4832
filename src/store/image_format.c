/* Recognising urunc and KubeVirt containerDisk images; the rules are in image_format.h. */
#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>

#include "image_format.h"
#include "image_store.h"

#define URUNC_PREFIX "com.urunc.unikernel."
#define VALUE_NAME_MAX 64      /* unikernelType, hypervisor */
#define VALUE_PATH_MAX 4096    /* binary, initrd, block, with the NUL */
#define DISK_DIR_SCAN_MAX 4096 /* entries of /disk/ looked at */

enum { K_TYPE, K_VERSION, K_HYPERVISOR, K_BINARY, K_CMDLINE, K_INITRD, K_BLOCK, K_COUNT };
static const char *const urunc_keys[K_COUNT] = {
	[K_TYPE] = URUNC_PREFIX "unikernelType", [K_VERSION] = URUNC_PREFIX "unikernelVersion",
	[K_HYPERVISOR] = URUNC_PREFIX "hypervisor",
	[K_BINARY] = URUNC_PREFIX "binary",      [K_CMDLINE] = URUNC_PREFIX "cmdline",
	[K_INITRD] = URUNC_PREFIX "initrd",      [K_BLOCK] = URUNC_PREFIX "block",
};

struct urunc_src {
	const char *name; /* "annotation", "config label", "/urunc.json key" */
	char *v[K_COUNT];
	bool any;
};

static void src_clear(struct urunc_src *s)
{
	for (size_t i = 0; i < K_COUNT; i++) {
		free(s->v[i]);
		s->v[i] = NULL;
	}
	s->any = false;
}

void image_format_clear(struct image_format *f)
{
	if (!f)
		return;
	free(f->kernel);
	free(f->initrd);
	free(f->cmdline);
	free(f->disk);
	free(f->disk_format);
	free(f->block);
	free(f->unikernel_type);
	free(f->unikernel_version);
	free(f->hypervisor);
	memset(f, 0, sizeof(*f));
}

/* ---- base64 (RFC 4648, standard alphabet, padded), as Go's base64.StdEncoding ---- */

static int b64_val(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

int image_base64_decode(const char *in, char **ret)
{
	size_t n = strlen(in);
	if (n % 4)
		return -EINVAL;
	_cleanup_free_ char *out = malloc(n / 4 * 3 + 1);
	if (!out)
		return -ENOMEM;
	size_t o = 0;
	for (size_t i = 0; i < n; i += 4) {
		int v[4];
		size_t pad = 0;
		for (size_t j = 0; j < 4; j++) {
			unsigned char c = (unsigned char)in[i + j];
			if (c == '=' && i + 4 == n && j >= 2) {
				v[j] = 0;
				pad++;
				continue;
			}
			if (pad || (v[j] = b64_val(c)) < 0)
				return -EINVAL; /* data after '=' or a bad character */
		}
		uint32_t w = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 | (uint32_t)v[3];
		out[o++] = (char)(w >> 16);
		if (pad < 2)
			out[o++] = (char)(w >> 8 & 0xff);
		if (pad < 1)
			out[o++] = (char)(w & 0xff);
	}
	out[o] = '\0';
	if (strlen(out) != o)
		return -EINVAL;
	*ret = TAKE_PTR(out);
	return 0;
}

/* ---- urunc keys ---- */

static bool printable_name(const char *s)
{
	if (!*s || strlen(s) >= VALUE_NAME_MAX)
		return false;
	for (const char *p = s; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
		      *p == '-' || *p == '_' || *p == '.'))
			return false;
	return true;
}

static int check_value(const struct urunc_src *s, size_t k, const char *v, uk_error *err)
{
	size_t len = strlen(v);
	switch (k) {
	case K_TYPE:
	case K_VERSION:
	case K_HYPERVISOR:
		if (*v && !printable_name(v))
			return uk_err(err, EINVAL, "%s %s: \"%.64s\" is not a name ([A-Za-z0-9_.-], "
				      "< %d bytes)", s->name, urunc_keys[k], v, VALUE_NAME_MAX);
		return 0;
	case K_CMDLINE:
		if (len >= IMAGE_CMDLINE_MAX)
			return uk_err(err, EINVAL, "%s %s: %zu bytes, the limit is %d", s->name,
				      urunc_keys[k], len, IMAGE_CMDLINE_MAX - 1);
		for (const char *p = v; *p; p++)
			if ((unsigned char)*p < 0x20 || *p == 0x7f)
				return uk_err(err, EINVAL, "%s %s: control character 0x%02x",
					      s->name, urunc_keys[k], (unsigned char)*p);
		return 0;
	default:
		if (len >= VALUE_PATH_MAX)
			return uk_err(err, EINVAL, "%s %s: path of %zu bytes, the limit is %d",
				      s->name, urunc_keys[k], len, VALUE_PATH_MAX - 1);
		return 0;
	}
}

/* Read the urunc keys of a JSON object of strings; decode base64 values when b64. */
static int src_from_object(struct urunc_src *s, json_object *obj, bool b64, uk_error *err)
{
	if (!obj)
		return 0;
	if (!json_object_is_type(obj, json_type_object))
		return uk_err(err, EINVAL, "%ss: not a JSON object", s->name);
	for (size_t k = 0; k < K_COUNT; k++) {
		json_object *j;
		if (!json_object_object_get_ex(obj, urunc_keys[k], &j))
			continue;
		if (!json_object_is_type(j, json_type_string))
			return uk_err(err, EINVAL, "%s %s: not a string", s->name, urunc_keys[k]);
		s->any = true;
		const char *raw = json_object_get_string(j);
		_cleanup_free_ char *v = NULL;
		if (b64) {
			int r = image_base64_decode(raw, &v);
			if (r == -ENOMEM)
				return uk_err(err, ENOMEM, "%s %s", s->name, urunc_keys[k]);
			if (r < 0)
				return uk_err(err, EINVAL, "%s %s: not valid base64 (or holds a NUL)",
					      s->name, urunc_keys[k]);
		} else if (!(v = strdup(raw))) {
			return uk_err(err, ENOMEM, "%s %s", s->name, urunc_keys[k]);
		}
		int r = check_value(s, k, v, err);
		if (r < 0)
			return r;
		if (*v)
			s->v[k] = TAKE_PTR(v);
	}
	return 0;
}

static json_object *config_labels(json_object *config)
{
	json_object *inner, *labels;
	if (!config || !json_object_is_type(config, json_type_object))
		return NULL;
	if (json_object_object_get_ex(config, "config", &inner) &&
	    json_object_is_type(inner, json_type_object) &&
	    json_object_object_get_ex(inner, "Labels", &labels))
		return json_object_is_type(labels, json_type_null) ? NULL : labels;
	if (json_object_object_get_ex(config, "Labels", &labels))
		return json_object_is_type(labels, json_type_null) ? NULL : labels;
	return NULL;
}

/* ---- paths beneath the rootfs ---- */

/* openat2 beneath dirfd; ENOSYS falls back to a walk that follows no symlink at all. */
static int open_beneath(int dirfd, const char *rel, int flags)
{
	struct open_how how = {
		.flags = (uint64_t)flags | O_CLOEXEC,
		.resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV,
	};
	long fd = syscall(SYS_openat2, dirfd, rel, &how, sizeof(how));
	if (fd >= 0)
		return (int)fd;
	if (errno != ENOSYS)
		return -errno;

	_cleanup_close_ int cur = fcntl(dirfd, F_DUPFD_CLOEXEC, 3);
	if (cur < 0)
		return -errno;
	char name[NAME_MAX + 1];
	for (const char *p = rel;;) {
		const char *end = strchrnul(p, '/');
		size_t len = (size_t)(end - p);
		if (len == 0 || len > NAME_MAX)
			return -EINVAL;
		memcpy(name, p, len);
		name[len] = '\0';
		bool last = !*end;
		int next = openat(cur, name, last ? flags | O_NOFOLLOW | O_CLOEXEC
						  : O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (next < 0)
			return -errno;
		close(cur);
		cur = next;
		if (last)
			return TAKE_FD(cur);
		p = end + 1;
	}
}

/* "/a//b/./c" -> "a/b/c"; -EPERM for "..", -EINVAL for nothing left. */
static int rel_path(const char *in, char *out, size_t outsz)
{
	size_t o = 0;
	for (const char *p = in; *p;) {
		while (*p == '/')
			p++;
		const char *end = strchrnul(p, '/');
		size_t len = (size_t)(end - p);
		if (len == 2 && p[0] == '.' && p[1] == '.')
			return -EPERM;
		if (len && !(len == 1 && p[0] == '.')) {
			if (o + len + 2 > outsz)
				return -ENAMETOOLONG;
			if (o)
				out[o++] = '/';
			memcpy(out + o, p, len);
			o += len;
		}
		p = end;
	}
	out[o] = '\0';
	return o ? 0 : -EINVAL;
}

/* Resolve what (e.g. `annotation com.urunc.unikernel.binary`) = path beneath the rootfs:
 * a regular file of at most max bytes. *ret is its host path; *ret_fd (if given) an
 * O_RDONLY fd on it. */
static int resolve_file(int rootfd, const char *rootfs, const char *what, const char *path,
			uint64_t max, char **ret, int *ret_fd, uk_error *err)
{
	char rel[VALUE_PATH_MAX];
	int r = rel_path(path, rel, sizeof(rel));
	if (r == -EPERM)
		return uk_err(err, EPERM, "%s \"%.256s\": escapes the image's rootfs", what, path);
	if (r < 0)
		return uk_err(err, EINVAL, "%s \"%.256s\": not a file path", what, path);

	_cleanup_close_ int fd = open_beneath(rootfd, rel, O_PATH);
	if (fd == -EXDEV || fd == -ELOOP)
		return uk_err(err, EPERM, "%s \"%.256s\": a symlink on the way leaves the image's "
			      "rootfs", what, path);
	if (fd == -ENOENT || fd == -ENOTDIR)
		return uk_err(err, ENOENT, "%s \"%.256s\": not found in the image", what, path);
	if (fd < 0)
		return uk_err_errno(err, -fd, "%s \"%.256s\"", what, path);
	struct stat st;
	if (fstat(fd, &st) < 0)
		return uk_err_errno(err, errno, "%s \"%.256s\"", what, path);
	if (!S_ISREG(st.st_mode))
		return uk_err(err, EINVAL, "%s \"%.256s\": not a regular file", what, path);
	if ((uint64_t)st.st_size > max)
		return uk_err(err, EFBIG, "%s \"%.256s\": %lld bytes, the limit is %llu", what, path,
			      (long long)st.st_size, (unsigned long long)max);

	char proc[64], host[PATH_MAX];
	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
	ssize_t n = readlink(proc, host, sizeof(host) - 1);
	char *out;
	if (n > 0 && host[0] == '/') {
		host[n] = '\0';
		out = strdup(host);
	} else if (asprintf(&out, "%s/%s", rootfs, rel) < 0) {
		out = NULL;
	}
	if (!out)
		return uk_err(err, ENOMEM, "%s", what);
	_cleanup_free_ char *owned = out;
	if (ret_fd) {
		/* An O_PATH fd cannot be read; reopen the file it found (a regular file). */
		int rfd = open_beneath(rootfd, rel, O_RDONLY | O_NOCTTY | O_NONBLOCK);
		if (rfd < 0)
			return uk_err_errno(err, -rfd, "%s \"%.256s\"", what, path);
		*ret_fd = rfd;
	}
	*ret = TAKE_PTR(owned);
	return 0;
}

/* ---- urunc ---- */

static void tokener_freep(json_tokener **t)
{
	if (*t)
		json_tokener_free(*t);
}

static int read_urunc_json(int rootfd, struct urunc_src *s, uk_error *err)
{
	_cleanup_close_ int fd = open_beneath(rootfd, "urunc.json", O_RDONLY | O_NOCTTY | O_NONBLOCK);
	if (fd == -ENOENT)
		return 0;
	if (fd == -EXDEV || fd == -ELOOP)
		return uk_err(err, EPERM, "/urunc.json: a symlink that leaves the image's rootfs");
	if (fd < 0)
		return uk_err_errno(err, -fd, "/urunc.json");
	struct stat st;
	if (fstat(fd, &st) < 0)
		return uk_err_errno(err, errno, "/urunc.json");
	if (!S_ISREG(st.st_mode))
		return uk_err(err, EINVAL, "/urunc.json: not a regular file");
	if (st.st_size > URUNC_JSON_MAX)
		return uk_err(err, EFBIG, "/urunc.json: %lld bytes, the limit is %d",
			      (long long)st.st_size, URUNC_JSON_MAX);
	char buf[URUNC_JSON_MAX + 1];
	size_t len = 0;
	while (len < sizeof(buf)) {
		ssize_t n = read(fd, buf + len, sizeof(buf) - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return uk_err_errno(err, errno, "/urunc.json: read");
		if (n == 0)
			break;
		len += (size_t)n;
	}
	if (len > URUNC_JSON_MAX)
		return uk_err(err, EFBIG, "/urunc.json: more than %d bytes", URUNC_JSON_MAX);
	_cleanup_(tokener_freep) json_tokener *tok = json_tokener_new();
	if (!tok)
		return uk_err(err, ENOMEM, "/urunc.json");
	_cleanup_json_ json_object *obj = json_tokener_parse_ex(tok, buf, (int)len);
	enum json_tokener_error je = json_tokener_get_error(tok);
	if (!obj || je != json_tokener_success ||
	    json_tokener_get_parse_end(tok) != len)
		return uk_err(err, EINVAL, "/urunc.json: not valid JSON: %s",
			      je != json_tokener_success ? json_tokener_error_desc(je)
							 : "trailing data");
	return src_from_object(s, obj, true, err);
}

static int detect_urunc(json_object *annotations, json_object *config, int rootfd,
			const char *rootfs, struct image_format *out, bool *found, uk_error *err)
{
	struct urunc_src src[3] = { { .name = "annotation" }, { .name = "config label" },
				    { .name = "/urunc.json key" } };
	struct urunc_src *use = NULL;
	int r = 0;
	*found = false;
	for (size_t i = 0; i < ARRAY_SIZE(src) && !use; i++) {
		if (i == 0)
			r = src_from_object(&src[i], annotations, false, err);
		else if (i == 1)
			r = src_from_object(&src[i], config_labels(config), false, err);
		else
			r = read_urunc_json(rootfd, &src[i], err);
		if (r < 0)
			goto out;
		if (src[i].v[K_BINARY])
			use = &src[i];
	}
	if (!use) {
		for (size_t i = 0; i < ARRAY_SIZE(src); i++)
			if (src[i].any) {
				r = uk_err(err, ENOEXEC, "the image has urunc %ss but no %s (the "
					   "kernel's path in the image)", src[i].name,
					   urunc_keys[K_BINARY]);
				goto out;
			}
		goto out; /* not a urunc image */
	}

	*found = true;
	char what[128];
	snprintf(what, sizeof(what), "%s %s", use->name, urunc_keys[K_BINARY]);
	if ((r = resolve_file(rootfd, rootfs, what, use->v[K_BINARY], IMAGE_KERNEL_MAX,
			      &out->kernel, NULL, err)) < 0)
		goto out;
	if (use->v[K_INITRD]) {
		snprintf(what, sizeof(what), "%s %s", use->name, urunc_keys[K_INITRD]);
		if ((r = resolve_file(rootfd, rootfs, what, use->v[K_INITRD], IMAGE_INITRD_MAX,
				      &out->initrd, NULL, err)) < 0)
			goto out;
	}
	if (use->v[K_BLOCK]) {
		snprintf(what, sizeof(what), "%s %s", use->name, urunc_keys[K_BLOCK]);
		if ((r = resolve_file(rootfd, rootfs, what, use->v[K_BLOCK], IMAGE_DISK_MAX,
				      &out->block, NULL, err)) < 0)
			goto out;
	}
	out->cmdline = TAKE_PTR(use->v[K_CMDLINE]);
	if (!out->cmdline && !(out->cmdline = strdup(""))) {
		r = uk_err(err, ENOMEM, "cmdline");
		goto out;
	}
	out->unikernel_type = TAKE_PTR(use->v[K_TYPE]);
	out->unikernel_version = TAKE_PTR(use->v[K_VERSION]);
	out->hypervisor = TAKE_PTR(use->v[K_HYPERVISOR]);
	snprintf(out->kind, sizeof(out->kind), "%s", IMAGE_FORMAT_URUNC);
out:
	for (size_t i = 0; i < ARRAY_SIZE(src); i++)
		src_clear(&src[i]);
	return r;
}

/* ---- containerDisk ---- */

static bool has_suffix(const char *s, const char *suffix)
{
	size_t n = strlen(s), m = strlen(suffix);
	return n > m && strcmp(s + n - m, suffix) == 0;
}

static uint64_t be64(const unsigned char *p)
{
	uint64_t v = 0;
	for (int i = 0; i < 8; i++)
		v = v << 8 | p[i];
	return v;
}

static uint32_t be32(const unsigned char *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* "qcow2" or "raw" from the content; refuses qcow2 images that reference host files. */
static int disk_format_of(int fd, const char *name, const char **ret, uk_error *err)
{
	unsigned char h[104];
	ssize_t n = pread(fd, h, sizeof(h), 0);
	if (n < 0)
		return uk_err_errno(err, errno, "containerDisk /disk/%s: read", name);
	bool qcow2 = n >= 4 && memcmp(h, "QFI\xfb", 4) == 0;
	if (!qcow2) {
		if (has_suffix(name, ".qcow2"))
			return uk_err(err, EINVAL, "containerDisk /disk/%s: not a qcow2 image", name);
		*ret = "raw";
		return 0;
	}
	if (n < 72)
		return uk_err(err, EINVAL, "containerDisk /disk/%s: truncated qcow2 header", name);
	uint32_t version = be32(h + 4);
	if (version != 2 && version != 3)
		return uk_err(err, EINVAL, "containerDisk /disk/%s: qcow2 version %u", name, version);
	if (be64(h + 8) != 0)
		return uk_err(err, EPERM, "containerDisk /disk/%s: a qcow2 image with a backing file "
			      "is not allowed", name);
	if (version == 3) {
		if (n < 80)
			return uk_err(err, EINVAL, "containerDisk /disk/%s: truncated qcow2 header",
				      name);
		if (be64(h + 72) & (1ull << 2))
			return uk_err(err, EPERM, "containerDisk /disk/%s: a qcow2 image with an "
				      "external data file is not allowed", name);
	}
	*ret = "qcow2";
	return 0;
}

static int detect_containerdisk(int rootfd, const char *rootfs, struct image_format *out,
				bool *found, uk_error *err)
{
	*found = false;
	int dfd = open_beneath(rootfd, "disk", O_RDONLY | O_DIRECTORY);
	if (dfd == -ENOENT || dfd == -ENOTDIR)
		return 0;
	if (dfd == -EXDEV || dfd == -ELOOP)
		return uk_err(err, EPERM, "containerDisk /disk: a symlink that leaves the image's "
			      "rootfs");
	if (dfd < 0)
		return uk_err_errno(err, -dfd, "containerDisk /disk");
	_cleanup_closedir_ DIR *d = fdopendir(dfd);
	if (!d) {
		safe_close(dfd);
		return uk_err_errno(err, errno, "containerDisk /disk");
	}
	_cleanup_free_ char *first = NULL;
	struct dirent *de;
	size_t seen = 0;
	while ((errno = 0, de = readdir(d))) {
		if (++seen > DISK_DIR_SCAN_MAX)
			return uk_err(err, E2BIG, "containerDisk /disk: more than %d entries",
				      DISK_DIR_SCAN_MAX);
		const char *n = de->d_name;
		if (!has_suffix(n, ".qcow2") && !has_suffix(n, ".raw") && !has_suffix(n, ".img"))
			continue;
		if (first) {
			/* name both, in a stable order */
			bool before = strcmp(n, first) < 0;
			return uk_err(err, EINVAL, "containerDisk: more than one disk under /disk/: "
				      "%s and %s", before ? n : first, before ? first : n);
		}
		if (!(first = strdup(n)))
			return uk_err(err, ENOMEM, "containerDisk /disk");
	}
	if (errno)
		return uk_err_errno(err, errno, "containerDisk /disk: read directory");
	if (!first)
		return 0;

	*found = true;
	char rel[NAME_MAX + 8], what[NAME_MAX + 32];
	snprintf(rel, sizeof(rel), "disk/%s", first);
	snprintf(what, sizeof(what), "containerDisk /disk/%s", first);
	_cleanup_close_ int fd = -1;
	_cleanup_free_ char *path = NULL;
	int r = resolve_file(rootfd, rootfs, what, rel, IMAGE_DISK_MAX, &path, &fd, err);
	if (r < 0)
		return r;
	const char *fmt = NULL;
	if ((r = disk_format_of(fd, first, &fmt, err)) < 0)
		return r;
	if (!(out->disk_format = strdup(fmt)))
		return uk_err(err, ENOMEM, "containerDisk");
	out->disk = TAKE_PTR(path);
	snprintf(out->kind, sizeof(out->kind), "%s", IMAGE_FORMAT_CONTAINERDISK);
	return 0;
}

int image_format_detect(json_object *annotations, json_object *config, const char *rootfs,
			struct image_format *ret, uk_error *err)
{
	if (!rootfs || !ret)
		return uk_err(err, EINVAL, "image_format_detect: no rootfs");
	_cleanup_close_ int rootfd = open(rootfs, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (rootfd < 0)
		return uk_err_errno(err, errno, "rootfs %s", rootfs);

	_cleanup_image_format_ struct image_format f = { 0 };
	bool found;
	int r = detect_urunc(annotations, config, rootfd, rootfs, &f, &found, err);
	if (r < 0)
		return r;
	if (!found) {
		image_format_clear(&f);
		r = detect_containerdisk(rootfd, rootfs, &f, &found, err);
		if (r < 0)
			return r;
	}
	if (!found)
		return uk_err(err, ENOEXEC,
			      "not a runnable unikernel image: it needs the annotation or config "
			      "label %s (the kernel's path in the image, with %sunikernelType, "
			      ".hypervisor and optionally .cmdline, .initrd, .block), or a "
			      "/urunc.json with those keys (base64 values), or exactly one disk "
			      "image (*.qcow2, *.raw or *.img) under /disk/ (a KubeVirt "
			      "containerDisk)", urunc_keys[K_BINARY], URUNC_PREFIX);
	*ret = f;
	memset(&f, 0, sizeof(f));
	return 0;
}
