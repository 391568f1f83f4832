/* Unit tests for src/store: SHA-256 vectors and the content-addressed image store. Each
 * test works in its own mkdtemp directory, removed in teardown even when a test fails. */
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <poll.h>

#include <cmocka.h>

#include "common/util.h"
#include "store/image_store.h"
#include "store/sha256.h"

/* ---- SHA-256 ---- */

static void hex_of(const void *data, size_t len, char hex[SHA256_HEX_SIZE])
{
	uint8_t d[SHA256_DIGEST_SIZE];
	sha256_buf(data, len, d);
	sha256_to_hex(d, hex);
}

static void sha256_vectors(void **state)
{
	(void)state;
	char hex[SHA256_HEX_SIZE];
	hex_of("", 0, hex);
	assert_string_equal(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
	hex_of("abc", 3, hex);
	assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
	const char *m448 = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
	hex_of(m448, strlen(m448), hex);
	assert_string_equal(hex, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
	const char *m896 = "abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopq"
			   "klmnopqrlmnopqrsmnopqrstnopqrstu";
	hex_of(m896, strlen(m896), hex);
	assert_string_equal(hex, "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1");

	/* A million 'a's, fed in uneven pieces to exercise the block buffering. */
	static char a[1000000];
	memset(a, 'a', sizeof(a));
	hex_of(a, sizeof(a), hex);
	assert_string_equal(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
	struct sha256_ctx c;
	sha256_init(&c);
	const size_t steps[] = { 1, 63, 64, 65, 127, 1000, 4096, 3 };
	size_t off = 0;
	for (size_t i = 0; off < sizeof(a); i++) {
		size_t n = steps[i % ARRAY_SIZE(steps)];
		if (n > sizeof(a) - off)
			n = sizeof(a) - off;
		sha256_update(&c, a + off, n);
		off += n;
	}
	uint8_t d[SHA256_DIGEST_SIZE];
	sha256_final(&c, d);
	sha256_to_hex(d, hex);
	assert_string_equal(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");

	/* Padding edge cases: 55, 56 and 64 bytes need one or two final blocks. */
	char m[64];
	memset(m, 'a', sizeof(m));
	hex_of(m, 55, hex);
	assert_string_equal(hex, "9f4390f8d30c2dd92ec9f095b65e2b9ae9b0a925a5258e241c9f1e910f734318");
	hex_of(m, 56, hex);
	assert_string_equal(hex, "b35439a4ac6f0948b6d6f9e3c6af0f5f590ce20f1bde7090ef7970686ec6738a");
	hex_of(m, 64, hex);
	assert_string_equal(hex, "ffe054fe7ae0cb6dc65c3af9b61d5209f439851db43d0ba5997337df154668eb");
}

/* ---- fixtures ---- */

struct fx {
	char dir[64];
	char root[128];
};

static int fx_setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	if (!f)
		return -1;
	snprintf(f->dir, sizeof(f->dir), "/tmp/uk-test-store-XXXXXX");
	if (!mkdtemp(f->dir)) {
		free(f);
		return -1;
	}
	snprintf(f->root, sizeof(f->root), "%s/store", f->dir);
	*state = f;
	return 0;
}

static int fx_teardown(void **state)
{
	struct fx *f = *state;
	int r = uk_rm_rf(f->dir, NULL);
	free(f);
	return r;
}

/* dir/name with the given content; returns a static-lifetime path in a small ring. */
static const char *src_file(struct fx *f, const char *name, const void *data, size_t len)
{
	static char ring[8][256];
	static unsigned next;
	char *p = ring[next++ % ARRAY_SIZE(ring)];
	snprintf(p, 256, "%s/%s", f->dir, name);
	int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	assert_true(fd >= 0);
	assert_int_equal(uk_write_all(fd, data, len), 0);
	close(fd);
	return p;
}

static const char *src_text(struct fx *f, const char *name, const char *text)
{
	return src_file(f, name, text, strlen(text));
}

static size_t count_dir(struct fx *f, const char *sub)
{
	char p[256];
	snprintf(p, sizeof(p), "%s/%s", f->root, sub);
	DIR *d = opendir(p);
	assert_non_null(d);
	size_t n = 0;
	struct dirent *de;
	while ((de = readdir(d)))
		if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
			n++;
	closedir(d);
	return n;
}

static bool exists(const char *p)
{
	struct stat st;
	return lstat(p, &st) == 0;
}

static struct image_store *open_store(struct fx *f)
{
	struct image_store *s = NULL;
	uk_error err = { 0 };
	if (image_store_open(f->root, &s, &err) < 0)
		fail_msg("open: %s", err.msg);
	return s;
}

static struct image_info *import_kernel(struct image_store *s, const char *ref, const char *kernel,
					const char *initrd, const char *cmdline)
{
	struct image_import in = { .kernel = kernel, .initrd = initrd, .cmdline = cmdline };
	struct image_info *info = NULL;
	uk_error err = { 0 };
	if (image_store_import(s, ref, &in, &info, &err) < 0)
		fail_msg("import %s: %s", ref, err.msg);
	return info;
}

static size_t list_count(struct image_store *s)
{
	struct image_info **v = NULL;
	size_t n = 99;
	uk_error err = { 0 };
	if (image_store_list(s, &v, &n, &err) < 0)
		fail_msg("list: %s", err.msg);
	image_info_list_free(v);
	return n;
}

static size_t strv_len(char **v)
{
	size_t n = 0;
	while (v && v[n])
		n++;
	return n;
}

/* ---- tests ---- */

static void import_list_resolve(void **state)
{
	struct fx *f = *state;
	_cleanup_image_store_ struct image_store *s = open_store(f);
	const char *kernel = src_text(f, "kernel", "KERNEL-1");
	const char *initrd = src_text(f, "initrd", "INITRD-1");
	_cleanup_image_info_ struct image_info *i = import_kernel(s, "hello:1", kernel, initrd, "console=ttyS0 /bin/app");

	char khex[SHA256_HEX_SIZE], path[512];
	hex_of("KERNEL-1", 8, khex);
	assert_int_equal(strncmp(i->id, "sha256:", 7), 0);
	assert_int_equal(strlen(i->id), 71);
	assert_int_equal(strv_len(i->repo_tags), 1);
	assert_string_equal(i->repo_tags[0], "docker.io/library/hello:1");
	assert_int_equal(strv_len(i->repo_digests), 0);
	snprintf(path, sizeof(path), "%s/blobs/sha256/%s", image_store_root(s), khex);
	assert_string_equal(i->kernel, path);
	assert_non_null(i->initrd);
	assert_null(i->disk);
	assert_null(i->disk_format);
	assert_string_equal(i->cmdline, "console=ttyS0 /bin/app");
	assert_string_equal(i->kind, IMAGE_KIND_IMPORT);
	assert_int_equal(i->size, 16);
	assert_true(i->created_ns > 0);

	/* The blob holds the content, read-only. */
	char *data = NULL;
	uk_error err = { 0 };
	assert_int_equal(uk_read_file(i->kernel, 100, &data, NULL, &err), 0);
	assert_string_equal(data, "KERNEL-1");
	free(data);
	struct stat st;
	assert_int_equal(stat(i->kernel, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0444);

	assert_int_equal(list_count(s), 1);
	struct image_info **v = NULL;
	size_t n = 0;
	assert_int_equal(image_store_list(s, &v, &n, &err), 0);
	assert_string_equal(v[0]->id, i->id);
	assert_null(v[1]);
	image_info_list_free(v);

	/* Resolve by every accepted form. */
	char prefix[32], sha_prefix[32];
	snprintf(prefix, sizeof(prefix), "%.12s", i->id + 7);
	snprintf(sha_prefix, sizeof(sha_prefix), "sha256:%.5s", i->id + 7);
	const char *forms[] = { "hello:1", "docker.io/library/hello:1", "index.docker.io/library/hello:1",
				i->id, i->id + 7, prefix, sha_prefix };
	for (size_t k = 0; k < ARRAY_SIZE(forms); k++) {
		struct image_info *r = NULL;
		if (image_store_resolve(s, forms[k], &r, &err) < 0)
			fail_msg("resolve %s: %s", forms[k], err.msg);
		assert_string_equal(r->id, i->id);
		assert_string_equal(r->kernel, i->kernel);
		assert_int_equal(r->created_ns, i->created_ns);
		image_info_free(r);
	}
	const char *missing[] = { "hello", "hello:2", "other:1", "sha256:0000000000000000000000000000000000000000000000000000000000000000", "fff" };
	for (size_t k = 0; k < ARRAY_SIZE(missing); k++) {
		struct image_info *r = NULL;
		int rc = image_store_resolve(s, missing[k], &r, &err);
		if (rc != -ENOENT)
			fail_msg("resolve %s gave %d (%s)", missing[k], rc, err.msg);
		assert_null(r);
	}
	struct image_info *r = NULL;
	assert_int_equal(image_store_resolve(s, "Hello", &r, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "lowercase"));
	assert_int_equal(image_store_resolve(s, "sha256:ab", &r, &err), -EINVAL);
	assert_int_equal(image_store_resolve(s, "", &r, &err), -EINVAL);
}

static void identical_imports_dedup(void **state)
{
	struct fx *f = *state;
	_cleanup_image_store_ struct image_store *s = open_store(f);
	const char *k1 = src_text(f, "k1", "SAME KERNEL");
	const char *k2 = src_text(f, "k2", "SAME KERNEL"); /* another file, same content */
	_cleanup_image_info_ struct image_info *a = import_kernel(s, "a", k1, NULL, "x=1");
	_cleanup_image_info_ struct image_info *b = import_kernel(s, "b", k2, NULL, "x=1");
	assert_string_equal(a->id, b->id);
	assert_int_equal(b->created_ns, a->created_ns); /* the first import's time stays */
	assert_int_equal(count_dir(f, "blobs/sha256"), 1);
	assert_int_equal(count_dir(f, "images"), 1);
	assert_int_equal(count_dir(f, "tmp"), 0);
	assert_int_equal(list_count(s), 1);
	/* Two names, one image: both tags, sorted. */
	assert_int_equal(strv_len(b->repo_tags), 2);
	assert_string_equal(b->repo_tags[0], "docker.io/library/a:latest");
	assert_string_equal(b->repo_tags[1], "docker.io/library/b:latest");

	/* Same again under the same name: nothing changes. */
	_cleanup_image_info_ struct image_info *a2 = import_kernel(s, "a:latest", k1, NULL, "x=1");
	assert_string_equal(a2->id, a->id);
	assert_int_equal(list_count(s), 1);

	/* A different command line is a different image sharing the kernel blob. */
	_cleanup_image_info_ struct image_info *c = import_kernel(s, "c", k1, NULL, "x=2");
	assert_string_not_equal(c->id, a->id);
	assert_string_equal(c->kernel, a->kernel);
	assert_int_equal(count_dir(f, "blobs/sha256"), 1);
	assert_int_equal(count_dir(f, "images"), 2);
	assert_int_equal(list_count(s), 2);
}

/* Text that JSON escapes (quotes, backslashes, '/', UTF-8) comes back byte for byte, and the
 * id computed at import is the one recomputed when the document is read again. */
static void cmdline_round_trips(void **state)
{
	struct fx *f = *state;
	_cleanup_image_store_ struct image_store *s = open_store(f);
	const char *cmdline = "greeting=\"h\xc3\xa9llo \xe2\x9c\x93\" path=/a\\b \xf0\x9f\x90\xa7";
	_cleanup_image_info_ struct image_info *i = import_kernel(s, "utf:1", src_text(f, "k", "K"), NULL, cmdline);
	assert_string_equal(i->cmdline, cmdline);
	_cleanup_image_store_ struct image_store *s2 = open_store(f);
	struct image_info *r = NULL;
	uk_error err = { 0 };
	assert_int_equal(image_store_resolve(s2, "utf:1", &r, &err), 0);
	assert_string_equal(r->id, i->id);
	assert_string_equal(r->cmdline, cmdline);
	image_info_free(r);
}

static void remove_by_tag_and_by_id(void **state)
{
	struct fx *f = *state;
	_cleanup_image_store_ struct image_store *s = open_store(f);
	const char *k = src_text(f, "k", "KERNEL");
	uk_error err = { 0 };
	struct image_info *i = import_kernel(s, "a:1", k, NULL, NULL);
	image_info_free(import_kernel(s, "b:1", k, NULL, NULL));

	/* By tag: only that tag goes while the image has another. */
	assert_int_equal(image_store_remove(s, "a:1", &err), 0);
	struct image_info *r = NULL;
	assert_int_equal(image_store_resolve(s, "a:1", &r, &err), -ENOENT);
	assert_int_equal(image_store_resolve(s, "b:1", &r, &err), 0);
	assert_string_equal(r->id, i->id);
	assert_int_equal(strv_len(r->repo_tags), 1);
	assert_string_equal(r->repo_tags[0], "docker.io/library/b:1");
	assert_true(exists(r->kernel));
	image_info_free(r);
	/* The last tag takes the image and its blob with it. */
	assert_int_equal(image_store_remove(s, "docker.io/library/b:1", &err), 0);
	assert_int_equal(list_count(s), 0);
	assert_false(exists(i->kernel));
	assert_int_equal(count_dir(f, "images"), 0);
	assert_int_equal(count_dir(f, "blobs/sha256"), 0);
	image_info_free(i);

	/* By id (full, bare or prefix): every tag goes. */
	const char *(forms[3]);
	char full[80], bare[80], prefix[16];
	forms[0] = full;
	forms[1] = bare;
	forms[2] = prefix;
	for (size_t n = 0; n < 3; n++) {
		i = import_kernel(s, "a:1", k, NULL, NULL);
		image_info_free(import_kernel(s, "b:1", k, NULL, NULL));
		snprintf(full, sizeof(full), "%s", i->id);
		snprintf(bare, sizeof(bare), "%s", i->id + 7);
		snprintf(prefix, sizeof(prefix), "%.6s", i->id + 7);
		if (image_store_remove(s, forms[n], &err) < 0)
			fail_msg("remove %s: %s", forms[n], err.msg);
		assert_int_equal(list_count(s), 0);
		assert_int_equal(image_store_resolve(s, "a:1", &r, &err), -ENOENT);
		assert_int_equal(image_store_resolve(s, "b:1", &r, &err), -ENOENT);
		assert_int_equal(count_dir(f, "blobs/sha256"), 0);
		image_info_free(i);
	}
}

static void remove_is_idempotent(void **state)
{
	struct fx *f = *state;
	_cleanup_image_store_ struct image_store *s = open_store(f);
	uk_error err = { 0 };
	assert_int_equal(image_store_remove(s, "nothere", &err), 0);
	assert_int_equal(image_store_remove(s, "sha256:0000000000000000000000000000000000000000000000000000000000000000", &err), 0);
	assert_int_equal(image_store_remove(s, "abcdef", &err), 0);
	image_info_free(import_kernel(s, "x", src_text(f, "k", "K"), NULL, NULL));
	assert_int_equal(image_store_remove(s, "x", &err), 0);
	assert_int_equal(image_store_remove(s, "x", &err), 0);
	assert_int_equal(list_count(s), 0);
	/* A malformed reference is an error, not a missing image. */
	assert_int_equal(image_store_remove(s, "UPPER", &err), -EINVAL);
	assert_non_null(strstr(err.msg, "lowercase"));
}

static void blobs_are_collected(void **state)
{
	struct fx *f = *state;
	_cleanup_image_store_ struct image_store *s = open_store(f);
	uk_error err = { 0 };
	const char *k = src_text(f, "k", "SHARED KERNEL");
	const char *rd = src_text(f, "rd", "OWN INITRD");
	struct image_info *one = import_kernel(s, "one", k, rd, "a");
	struct image_info *two = import_kernel(s, "two", k, NULL, "b");
	assert_int_equal(count_dir(f, "blobs/sha256"), 2);
	/* "one" goes: its initrd with it, the shared kernel stays for "two". */
	assert_int_equal(image_store_remove(s, "one", &err), 0);
	assert_false(exists(one->initrd));
	assert_true(exists(two->kernel));
	assert_int_equal(count_dir(f, "blobs/sha256"), 1);
	assert_int_equal(image_store_remove(s, two->id, &err), 0);
	assert_int_equal(count_dir(f, "blobs/sha256"), 0);
	assert_int_equal(count_dir(f, "images"), 0);
	image_info_free(one);
	image_info_free(two);

	/* Re-importing a tag with new content moves the tag; the old image, now untagged,
	 * goes with its blobs... */
	const char *v1 = src_text(f, "v1", "VERSION 1");
	const char *v2 = src_text(f, "v2", "VERSION 2");
	struct image_info *old = import_kernel(s, "app:1", v1, NULL, NULL);
	struct image_info *cur = import_kernel(s, "app:1", v2, NULL, NULL);
	assert_string_not_equal(old->id, cur->id);
	assert_int_equal(list_count(s), 1);
	assert_false(exists(old->kernel));
	assert_true(exists(cur->kernel));
	struct image_info *r = NULL;
	assert_int_equal(image_store_resolve(s, old->id, &r, &err), -ENOENT);
	image_info_free(old);
	image_info_free(cur);
	/* ...unless another tag still holds it. */
	old = import_kernel(s, "app:1", v1, NULL, NULL);
	image_info_free(import_kernel(s, "keep:1", v1, NULL, NULL));
	cur = import_kernel(s, "app:1", v2, NULL, NULL);
	assert_int_equal(list_count(s), 2);
	assert_int_equal(image_store_resolve(s, old->id, &r, &err), 0);
	assert_int_equal(strv_len(r->repo_tags), 1);
	assert_string_equal(r->repo_tags[0], "docker.io/library/keep:1");
	assert_true(exists(r->kernel));
	image_info_free(r);
	image_info_free(old);
	image_info_free(cur);
}

static void usage_changes(void **state)
{
	struct fx *f = *state;
	_cleanup_image_store_ struct image_store *s = open_store(f);
	uk_error err = { 0 };
	uint64_t b0, i0, b1, i1, b2, i2;
	assert_int_equal(image_store_usage(s, &b0, &i0, &err), 0);
	/* root, blobs, blobs/sha256, images, locks, tmp, lock */
	assert_int_equal(i0, 7);
	static char big[256 * 1024];
	for (size_t k = 0; k < sizeof(big); k++)
		big[k] = (char)(k * 7 + 1);
	const char *kernel = src_file(f, "big", big, sizeof(big));
	struct image_info *i = import_kernel(s, "big", kernel, NULL, NULL);
	assert_int_equal(i->size, sizeof(big));
	assert_int_equal(image_store_usage(s, &b1, &i1, &err), 0);
	assert_true(b1 >= b0 + sizeof(big));
	assert_int_equal(i1, i0 + 3); /* the blob, the image document, refs.json */
	assert_int_equal(image_store_remove(s, i->id, &err), 0);
	assert_int_equal(image_store_usage(s, &b2, &i2, &err), 0);
	assert_true(b2 < b1 - sizeof(big) / 2);
	assert_int_equal(i2, i0 + 1); /* refs.json stays, empty */
	image_info_free(i);
}

static void open_cleans_leftovers(void **state)
{
	struct fx *f = *state;
	char p[512];
	image_store_free(open_store(f));

	/* An import that died, one still running (holds its flock), stale atomic-write temps,
	 * an orphan blob and an image document nothing refers to. */
	snprintf(p, sizeof(p), "%s/tmp/import-dead", f->root);
	int fd = open(p, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
	assert_true(fd >= 0);
	close(fd);
	char live[512];
	snprintf(live, sizeof(live), "%s/tmp/import-live", f->root);
	int live_fd = open(live, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
	assert_true(live_fd >= 0);
	assert_int_equal(flock(live_fd, LOCK_EX), 0);
	const char *stale[] = { "refs.json.tmp.12345",
				"images/0000000000000000000000000000000000000000000000000000000000000000.json.tmp.1",
				"images/1111111111111111111111111111111111111111111111111111111111111111.json",
				"blobs/sha256/2222222222222222222222222222222222222222222222222222222222222222" };
	for (size_t k = 0; k < ARRAY_SIZE(stale); k++) {
		snprintf(p, sizeof(p), "%s/%s", f->root, stale[k]);
		assert_int_equal(uk_write_file_atomic(p, "x", 1, 0644, NULL), 0);
	}
	/* Not ours: a blob directory entry that is no sha256 name stays. */
	snprintf(p, sizeof(p), "%s/blobs/sha256/README", f->root);
	assert_int_equal(uk_write_file_atomic(p, "x", 1, 0644, NULL), 0);

	image_store_free(open_store(f));
	assert_int_equal(count_dir(f, "tmp"), 1);
	assert_true(exists(live));
	for (size_t k = 0; k < ARRAY_SIZE(stale); k++) {
		snprintf(p, sizeof(p), "%s/%s", f->root, stale[k]);
		if (exists(p))
			fail_msg("%s survived", stale[k]);
	}
	assert_int_equal(count_dir(f, "images"), 0);
	assert_int_equal(count_dir(f, "blobs/sha256"), 1);

	/* Once its importer is gone, the live copy is a leftover too. */
	close(live_fd);
	image_store_free(open_store(f));
	assert_int_equal(count_dir(f, "tmp"), 0);
}

/* Pulled images: a kind of their own, a repo tag and a repo digest, re-tagging by digest,
 * and pull work directories that a dead pull leaves behind. */
static void pulled_images(void **state)
{
	struct fx *f = *state;
	struct image_store *s = open_store(f);
	uk_error err = { 0 };
	const char *k = src_text(f, "kernel", "pulled kernel");
	const char *dig = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
	char drf[256];
	snprintf(drf, sizeof(drf), "127.0.0.1:5000/hello@%s", dig);
	struct image_import in = { .kernel = k, .cmdline = "print:x" };
	struct image_info *i = NULL, *j = NULL;
	if (image_store_import_ex(s, "127.0.0.1:5000/hello:1", drf, "urunc", &in, &i, &err) < 0)
		fail_msg("import_ex: %s", err.msg);
	assert_string_equal(i->kind, "urunc");
	assert_int_equal(strv_len(i->repo_tags), 1);
	assert_string_equal(i->repo_tags[0], "127.0.0.1:5000/hello:1");
	assert_int_equal(strv_len(i->repo_digests), 1);
	assert_string_equal(i->repo_digests[0], drf);
	/* The kind is part of the id: the same kernel imported locally is another image. */
	struct image_info *local = import_kernel(s, "hello:1", k, NULL, "print:x");
	assert_string_not_equal(local->id, i->id);
	assert_string_equal(local->kind, IMAGE_KIND_IMPORT);
	image_info_free(local);
	/* Tag by digest. */
	if (image_store_tag(s, drf, "127.0.0.1:5000/hello:2", &j, &err) < 0)
		fail_msg("tag: %s", err.msg);
	assert_string_equal(j->id, i->id);
	assert_int_equal(strv_len(j->repo_tags), 2);
	image_info_free(j);
	j = NULL;
	assert_int_equal(image_store_tag(s, "127.0.0.1:5000/nope:1", "x:1", NULL, NULL), -ENOENT);
	/* Bad arguments. */
	assert_int_equal(image_store_import_ex(s, NULL, NULL, "urunc", &in, NULL, NULL), -EINVAL);
	assert_int_equal(image_store_import_ex(s, "a:1", "a:2", "urunc", &in, NULL, NULL), -EINVAL);
	assert_int_equal(image_store_import_ex(s, "a:1", NULL, "bad kind!", &in, NULL, NULL), -EINVAL);
	/* By id: every reference goes, and the image. */
	assert_int_equal(image_store_remove(s, i->id, NULL), 0);
	assert_int_equal(image_store_resolve(s, drf, &j, NULL), -ENOENT);
	image_info_free(i);

	/* A work directory is left alone while locked, removed (with its content) after. */
	char *wd = NULL;
	int wfd = -1;
	if (image_store_mkdtemp(s, "pull-", &wd, &wfd, &err) < 0)
		fail_msg("mkdtemp: %s", err.msg);
	char p[512];
	snprintf(p, sizeof(p), "%s/rootfs/sub", wd);
	assert_int_equal(uk_mkdir_p(p, 0700, NULL), 0);
	snprintf(p, sizeof(p), "%s/rootfs/sub/file", wd);
	assert_int_equal(uk_write_file_atomic(p, "x", 1, 0644, NULL), 0);
	image_store_free(open_store(f));
	assert_true(exists(wd));
	close(wfd);
	image_store_free(open_store(f));
	assert_false(exists(wd));
	free(wd);
	image_store_free(s);
}


/* A file in ROOT/tmp with known content, as a pull leaves a verified blob there. */
static void tmp_blob(struct fx *f, const char *name, const char *text, char path[256], char digest[IMAGE_ID_SIZE])
{
	snprintf(path, 256, "%s/tmp/%s", f->root, name);
	assert_int_equal(uk_write_file_atomic(path, text, strlen(text), 0600, NULL), 0);
	char hex[SHA256_HEX_SIZE];
	hex_of(text, strlen(text), hex);
	snprintf(digest, IMAGE_ID_SIZE, "sha256:%s", hex);
}

static bool blob_exists(struct fx *f, const char *digest)
{
	char p[256];
	snprintf(p, sizeof(p), "%s/blobs/sha256/%s", f->root, digest + 7);
	return exists(p);
}

static void kept_layers_and_not_runnable(void **state)
{
	struct fx *f = *state;
	struct image_store *s = open_store(f);
	uk_error err = { 0 };
	char cp[256], cd[IMAGE_ID_SIZE], l0p[256], l0d[IMAGE_ID_SIZE], l1p[256], l1d[IMAGE_ID_SIZE];
	tmp_blob(f, "cfg", "{\"os\":\"linux\"}", cp, cd);
	tmp_blob(f, "l0", "layer zero", l0p, l0d);
	tmp_blob(f, "l1", "layer one!", l1p, l1d);
	struct image_blob_file cfg = { cd, cp, 14 };
	struct image_blob_file layers[] = { { l0d, l0p, 10 }, { l1d, l1p, 10 }, { l0d, l0p, 10 } };
	const char *k = src_text(f, "kernel", "kernel bytes");

	/* A urunc image: kernel plus block disk, with its config and layers kept. */
	const char *disk = src_text(f, "block", "block image");
	struct image_import in = { .kernel = k, .disk = disk, .cmdline = "x", .config = &cfg, .layers = layers,
				   .n_layers = 3 };
	struct image_info *i = NULL;
	if (image_store_import_ex(s, "r.io/a:1", "r.io/a@sha256:1111111111111111111111111111111111111111111111111111111111111111",
				  "urunc", &in, &i, &err) < 0)
		fail_msg("import: %s", err.msg);
	assert_non_null(i->kernel);
	assert_non_null(i->disk);
	assert_string_equal(i->disk_format, "raw");
	assert_null(i->not_runnable);
	/* Distinct blobs once: kernel 12 + disk 11 + config 14 + two layers 10 each. */
	assert_int_equal(i->size, 12 + 11 + 14 + 20);
	assert_true(blob_exists(f, cd) && blob_exists(f, l0d) && blob_exists(f, l1d));
	/* Kernel and disk together only for urunc. */
	assert_int_equal(image_store_import_ex(s, "r.io/b:1", NULL, "containerdisk", &in, NULL, NULL), -EINVAL);

	/* A pulled image with no bootable layout: kept, listed, with its reason. */
	struct image_import none = { .not_runnable = "needs com.urunc.unikernel.binary", .config = &cfg,
				     .layers = layers, .n_layers = 1 };
	struct image_info *n = NULL;
	if (image_store_import_ex(s, "r.io/plain:1", NULL, IMAGE_KIND_NONE, &none, &n, &err) < 0)
		fail_msg("import none: %s", err.msg);
	assert_string_equal(n->kind, "none");
	assert_string_equal(n->not_runnable, "needs com.urunc.unikernel.binary");
	assert_null(n->kernel);
	assert_null(n->disk);
	assert_int_equal(n->size, 14 + 10);
	image_info_free(n);
	n = NULL;
	/* It reads back from disk, through a second store too. */
	struct image_store *s2 = open_store(f);
	assert_int_equal(image_store_resolve(s2, "r.io/plain:1", &n, NULL), 0);
	assert_string_equal(n->not_runnable, "needs com.urunc.unikernel.binary");
	image_info_free(n);
	image_store_free(s2);
	/* not_runnable: never for local imports, never with a kernel. */
	assert_int_equal(image_store_import_ex(s, "x:1", NULL, NULL, &none, NULL, NULL), -EINVAL);
	struct image_import bad = { .kernel = k, .not_runnable = "no" };
	assert_int_equal(image_store_import_ex(s, "x:1", NULL, "urunc", &bad, NULL, NULL), -EINVAL);

	/* Removing the urunc image keeps the config and layer 0 the other still uses. */
	assert_int_equal(image_store_remove(s, i->id, NULL), 0);
	assert_true(blob_exists(f, cd) && blob_exists(f, l0d));
	assert_false(blob_exists(f, l1d));
	assert_int_equal(image_store_remove(s, "r.io/plain:1", NULL), 0);
	assert_false(blob_exists(f, cd) || blob_exists(f, l0d));
	image_info_free(i);
	image_store_free(s);
}

struct fetch_count {
	int calls;
	const char *text;
	int fail;
};

static int count_fetch(void *ud, const char *dst, uk_error *err)
{
	struct fetch_count *c = ud;
	c->calls++;
	if (c->fail)
		return uk_err(err, EBADMSG, "digest mismatch");
	return uk_write_file_atomic(dst, c->text, strlen(c->text), 0600, err);
}

static void blob_get_fetches_once(void **state)
{
	struct fx *f = *state;
	struct image_store *s = open_store(f);
	uk_error err = { 0 };
	const char *text = "a layer";
	char hex[SHA256_HEX_SIZE], digest[IMAGE_ID_SIZE], d1[256], d2[256], d3[256];
	hex_of(text, strlen(text), hex);
	snprintf(digest, sizeof(digest), "sha256:%s", hex);
	snprintf(d1, sizeof(d1), "%s/tmp/one", f->root);
	snprintf(d2, sizeof(d2), "%s/tmp/two", f->root);
	snprintf(d3, sizeof(d3), "%s/tmp/three", f->root);
	struct fetch_count c = { .text = text };
	bool fetched;
	if (image_store_blob_get(s, digest, 7, d1, count_fetch, &c, &fetched, &err) < 0)
		fail_msg("blob_get: %s", err.msg);
	assert_true(fetched);
	assert_true(blob_exists(f, digest));
	/* The second time it is a link to the published copy. */
	if (image_store_blob_get(s, digest, 7, d2, count_fetch, &c, &fetched, &err) < 0)
		fail_msg("blob_get: %s", err.msg);
	assert_false(fetched);
	assert_int_equal(c.calls, 1);
	struct stat a, b;
	assert_int_equal(stat(d1, &a), 0);
	assert_int_equal(stat(d2, &b), 0);
	assert_int_equal(a.st_ino, b.st_ino);
	assert_int_equal(a.st_mode & 0777, 0444);
	/* A failing fetch leaves nothing, and the lock file goes in every case. */
	struct fetch_count bad = { .text = "x", .fail = 1 };
	char other[IMAGE_ID_SIZE];
	snprintf(other, sizeof(other), "sha256:%064d", 7);
	assert_int_equal(image_store_blob_get(s, other, 1, d3, count_fetch, &bad, &fetched, NULL), -EBADMSG);
	assert_false(exists(d3));
	assert_false(blob_exists(f, other));
	assert_int_equal(count_dir(f, "locks"), 0);
	assert_int_equal(image_store_blob_get(s, "sha256:nothex", 1, d3, count_fetch, &bad, &fetched, NULL), -EINVAL);
	unlink(d1);
	unlink(d2);
	/* No image uses the blob: the next open collects it. */
	image_store_free(open_store(f));
	assert_false(blob_exists(f, digest));
	image_store_free(s);
}

static void named_locks(void **state)
{
	struct fx *f = *state;
	struct image_store *s = open_store(f);
	int fd = -1;
	uk_error err = { 0 };
	if (image_store_lock_key(s, "image-abc", &fd, &err) < 0)
		fail_msg("lock: %s", err.msg);
	/* Another process cannot take it while we hold it, and open leaves the file alone. */
	char p[256];
	snprintf(p, sizeof(p), "%s/locks/image-abc", f->root);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		int o = open(p, O_RDONLY | O_CLOEXEC);
		_exit(o >= 0 && flock(o, LOCK_EX | LOCK_NB) < 0 && errno == EWOULDBLOCK ? 0 : 1);
	}
	int st;
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	image_store_free(open_store(f));
	assert_true(exists(p));
	image_store_unlock_key(s, "image-abc", fd);
	assert_false(exists(p));
	/* A stale lock file (its holder died) goes at the next open. */
	assert_int_equal(uk_write_file_atomic(p, "", 0, 0600, NULL), 0);
	image_store_free(open_store(f));
	assert_false(exists(p));
	/* Keys become file names: only ids. */
	assert_int_equal(image_store_lock_key(s, "../x", &fd, NULL), -EINVAL);
	assert_int_equal(image_store_lock_key(s, "a/b", &fd, NULL), -EINVAL);
	image_store_unlock_key(s, "x", -1);
	image_store_free(s);
}

static void bad_inputs(void **state)
{
	struct fx *f = *state;
	_cleanup_image_store_ struct image_store *s = open_store(f);
	const char *kernel = src_text(f, "kernel", "KERNEL");
	const char *raw = src_text(f, "raw.img", "RAW DISK");
	const char *empty = src_text(f, "empty", "");
	uint8_t q[512] = { 'Q', 'F', 'I', 0xfb, 0, 0, 0, 3 };
	q[103] = 104; /* header_length */
	const char *qcow2 = src_file(f, "disk.qcow2", q, sizeof(q));
	uint8_t qb[512];
	memcpy(qb, q, sizeof(qb));
	qb[15] = 200; /* backing_file_offset */
	const char *backed = src_file(f, "backed.qcow2", qb, sizeof(qb));
	uint8_t qd[512];
	memcpy(qd, q, sizeof(qd));
	qd[79] = 4; /* incompatible feature: external data file */
	const char *datafile = src_file(f, "datafile.qcow2", qd, sizeof(qd));
	char missing[300];
	snprintf(missing, sizeof(missing), "%s/nope", f->dir);
	static char longline[IMAGE_CMDLINE_MAX + 1];
	memset(longline, 'x', IMAGE_CMDLINE_MAX);

	struct {
		const char *ref;
		struct image_import in;
		int code;
		const char *prefix;
	} cases[] = {
		{ "a", { .kernel = missing }, -ENOENT, "kernel: open" },
		{ "a", { .kernel = kernel, .initrd = missing }, -ENOENT, "initrd: open" },
		{ "a", { .disk = missing }, -ENOENT, "disk: open" },
		{ "a", { .kernel = empty }, -EINVAL, "kernel: " },
		{ "a", { .kernel = f->dir }, -EINVAL, "kernel: " },
		{ "a", { .kernel = kernel, .disk = raw }, -EINVAL, "kernel, disk:" },
		{ "a", { 0 }, -EINVAL, "kernel, disk:" },
		{ "Bad", { .kernel = kernel }, -EINVAL, "ref: " },
		{ "", { .kernel = kernel }, -EINVAL, "ref: " },
		{ "a@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", { .kernel = kernel },
		  -EINVAL, "ref: " },
		{ "a", { .disk = raw, .disk_format = "vmdk" }, -EINVAL, "disk_format: " },
		{ "a", { .disk = raw, .disk_format = "qcow2" }, -EINVAL, "disk_format: qcow2" },
		{ "a", { .disk = qcow2, .disk_format = "raw" }, -EINVAL, "disk_format: raw" },
		{ "a", { .kernel = kernel, .disk_format = "raw" }, -EINVAL, "disk_format: " },
		{ "a", { .disk = raw, .initrd = kernel }, -EINVAL, "initrd: " },
		{ "a", { .disk = raw, .cmdline = "x" }, -EINVAL, "cmdline: " },
		{ "a", { .kernel = kernel, .cmdline = longline }, -E2BIG, "cmdline: " },
		{ "a", { .kernel = kernel, .cmdline = "a\nb" }, -EINVAL, "cmdline: " },
		{ "a", { .kernel = kernel, .cmdline = "\xff" }, -EINVAL, "cmdline: " },
		{ "a", { .kernel = kernel, .cmdline = "\xc3" }, -EINVAL, "cmdline: " },       /* truncated */
		{ "a", { .kernel = kernel, .cmdline = "\xe0\x80\xaf" }, -EINVAL, "cmdline: " }, /* overlong '/' */
		{ "a", { .kernel = kernel, .cmdline = "\xed\xa0\x80" }, -EINVAL, "cmdline: " }, /* surrogate */
		{ "a", { .disk = backed }, -EINVAL, "disk: " },
		{ "a", { .disk = datafile, .disk_format = "qcow2" }, -EINVAL, "disk: " },
	};
	for (size_t k = 0; k < ARRAY_SIZE(cases); k++) {
		uk_error err = { 0 };
		struct image_info *info = NULL;
		int rc = image_store_import(s, cases[k].ref, &cases[k].in, &info, &err);
		if (rc != cases[k].code)
			fail_msg("case %zu: got %d, want %d (%s)", k, rc, cases[k].code, err.msg);
		if (strncmp(err.msg, cases[k].prefix, strlen(cases[k].prefix)) != 0)
			fail_msg("case %zu: message \"%s\" does not start with \"%s\"", k, err.msg, cases[k].prefix);
		assert_null(info);
	}
	uk_error err = { 0 };
	assert_int_equal(image_store_import(s, "a", NULL, NULL, &err), -EINVAL);
	/* Errors without an error object keep their code. */
	struct image_import in = { .kernel = missing };
	assert_int_equal(image_store_import(s, "a", &in, NULL, NULL), -ENOENT);
	/* Failed imports leave nothing behind. */
	assert_int_equal(list_count(s), 0);
	assert_int_equal(count_dir(f, "tmp"), 0);
	assert_int_equal(count_dir(f, "blobs/sha256"), 0);
}

static void disk_images(void **state)
{
	struct fx *f = *state;
	_cleanup_image_store_ struct image_store *s = open_store(f);
	uk_error err = { 0 };

	/* A raw disk with a large zero run stays sparse in the store and reads back equal. */
	size_t len = 4 * 1024 * 1024 + 10;
	uint8_t *disk = calloc(1, len);
	assert_non_null(disk);
	memcpy(disk, "\xeb\x3c\x90MBR", 6);
	memcpy(disk + len - 4, "TAIL", 4);
	const char *raw = src_file(f, "raw.img", disk, len);
	struct image_import in = { .disk = raw };
	struct image_info *i = NULL;
	if (image_store_import(s, "disk:raw", &in, &i, &err) < 0)
		fail_msg("import: %s", err.msg);
	assert_string_equal(i->disk_format, "raw");
	assert_null(i->kernel);
	assert_string_equal(i->cmdline, "");
	assert_int_equal(i->size, len);
	char *back = NULL;
	size_t blen = 0;
	assert_int_equal(uk_read_file(i->disk, len, &back, &blen, &err), 0);
	assert_int_equal(blen, len);
	assert_memory_equal(back, disk, len);
	char hex[SHA256_HEX_SIZE];
	hex_of(disk, len, hex);
	assert_non_null(strstr(i->disk, hex));
	struct stat st;
	assert_int_equal(stat(i->disk, &st), 0);
	assert_true((uint64_t)st.st_blocks * 512 < len);
	free(back);
	free(disk);
	image_info_free(i);

	/* qcow2 is recognised by its magic, and accepted when claimed. */
	uint8_t q[1024] = { 'Q', 'F', 'I', 0xfb, 0, 0, 0, 3 };
	q[103] = 104;
	const char *qcow2 = src_file(f, "disk.qcow2", q, sizeof(q));
	in = (struct image_import){ .disk = qcow2 };
	assert_int_equal(image_store_import(s, "disk:guessed", &in, &i, &err), 0);
	assert_string_equal(i->disk_format, "qcow2");
	char first[80];
	snprintf(first, sizeof(first), "%s", i->id);
	image_info_free(i);
	in.disk_format = "qcow2";
	assert_int_equal(image_store_import(s, "disk:claimed", &in, &i, &err), 0);
	assert_string_equal(i->id, first); /* the format is the same, so is the id */
	assert_int_equal(strv_len(i->repo_tags), 2);
	image_info_free(i);
	assert_int_equal(list_count(s), 2);
}

static void second_store_sees_changes(void **state)
{
	struct fx *f = *state;
	_cleanup_image_store_ struct image_store *daemon = open_store(f);
	_cleanup_image_store_ struct image_store *cli = open_store(f);
	uk_error err = { 0 };
	assert_int_equal(list_count(daemon), 0);
	struct image_info *i = import_kernel(cli, "hello:1", src_text(f, "k", "KERNEL"), NULL, "");
	assert_int_equal(list_count(daemon), 1);
	struct image_info *r = NULL;
	assert_int_equal(image_store_resolve(daemon, "hello:1", &r, &err), 0);
	assert_string_equal(r->id, i->id);
	image_info_free(r);
	assert_int_equal(image_store_remove(daemon, "hello:1", &err), 0);
	assert_int_equal(image_store_resolve(cli, i->id, &r, &err), -ENOENT);
	assert_int_equal(list_count(cli), 0);
	image_info_free(i);
}

/* Another process's store calls wait while someone holds ROOT/lock exclusively. */
static void lock_excludes_others(void **state)
{
	struct fx *f = *state;
	_cleanup_image_store_ struct image_store *s = open_store(f);
	image_info_free(import_kernel(s, "hello", src_text(f, "k", "KERNEL"), NULL, NULL));
	char p[512];
	snprintf(p, sizeof(p), "%s/lock", f->root);
	int lfd = open(p, O_RDWR | O_CLOEXEC);
	assert_true(lfd >= 0);
	assert_int_equal(flock(lfd, LOCK_EX), 0);
	int pfd[2];
	assert_int_equal(pipe2(pfd, O_CLOEXEC), 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		/* The child: a second process listing the images. */
		struct image_store *c = NULL;
		struct image_info **v = NULL;
		size_t n = 0;
		if (image_store_open(f->root, &c, NULL) < 0 || image_store_list(c, &v, &n, NULL) < 0)
			_exit(1);
		char byte = (char)n;
		_exit(write(pfd[1], &byte, 1) == 1 ? 0 : 2);
	}
	close(pfd[1]);
	struct pollfd pf = { .fd = pfd[0], .events = POLLIN };
	assert_int_equal(poll(&pf, 1, 300), 0); /* blocked on the lock */
	assert_int_equal(flock(lfd, LOCK_UN), 0);
	assert_int_equal(poll(&pf, 1, 30000), 1);
	char byte = 0;
	assert_int_equal(read(pfd[0], &byte, 1), 1);
	assert_int_equal(byte, 1);
	int status = 0;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	close(pfd[0]);
	close(lfd);
}

static void corrupt_metadata(void **state)
{
	struct fx *f = *state;
	_cleanup_image_store_ struct image_store *s = open_store(f);
	uk_error err = { 0 };
	struct image_info *i = import_kernel(s, "hello", src_text(f, "k", "KERNEL"), NULL, "a");
	char p[512];

	/* A document whose config no longer matches its id is refused. */
	snprintf(p, sizeof(p), "%s/images/%s.json", f->root, i->id + 7);
	char *doc = NULL;
	assert_int_equal(uk_read_file(p, IMAGE_METADATA_MAX, &doc, NULL, &err), 0);
	char *a = strstr(doc, "\"cmdline\":\"a\"");
	assert_non_null(a);
	a[11] = 'b';
	assert_int_equal(uk_write_file_atomic(p, doc, strlen(doc), 0644, &err), 0);
	free(doc);
	struct image_info *r = NULL;
	assert_int_equal(image_store_resolve(s, "hello", &r, &err), -EBADMSG);
	assert_non_null(strstr(err.msg, "does not match"));
	/* Its blobs are kept while it cannot be read. */
	image_info_free(import_kernel(s, "other", src_text(f, "k2", "OTHER"), NULL, NULL));
	assert_true(exists(i->kernel));

	/* A ref map that is not ours stops the store with a message naming the file. */
	snprintf(p, sizeof(p), "%s/refs.json", f->root);
	const char *bad[] = { "garbage", "{\"version\":2,\"refs\":{}}",
			      "{\"version\":1,\"refs\":{\"hello\":\"sha256:00\"}}",
			      "{\"version\":1,\"refs\":{\"docker.io/library/x:1\":\"../../etc\"}}" };
	for (size_t k = 0; k < ARRAY_SIZE(bad); k++) {
		assert_int_equal(uk_write_file_atomic(p, bad[k], strlen(bad[k]), 0644, &err), 0);
		struct image_store *s2 = NULL;
		memset(&err, 0, sizeof(err));
		int rc = image_store_open(f->root, &s2, &err);
		assert_int_equal(rc, -EBADMSG);
		assert_null(s2);
		assert_non_null(strstr(err.msg, "refs.json"));
		struct image_info **v = NULL;
		assert_int_equal(image_store_list(s, &v, NULL, &err), -EBADMSG);
		assert_null(v);
	}
	image_info_free(i);
}

static void ambiguous_prefix(void **state)
{
	struct fx *f = *state;
	_cleanup_image_store_ struct image_store *s = open_store(f);
	uk_error err = { 0 };
	/* Only names matter for prefix matching; these appear after open's collection. */
	const char *names[] = { "abc1111111111111111111111111111111111111111111111111111111111111.json",
				"abc2222222222222222222222222222222222222222222222222222222222222.json" };
	char p[512];
	for (size_t k = 0; k < ARRAY_SIZE(names); k++) {
		snprintf(p, sizeof(p), "%s/images/%s", f->root, names[k]);
		assert_int_equal(uk_write_file_atomic(p, "{}", 2, 0644, &err), 0);
	}
	struct image_info *r = NULL;
	assert_int_equal(image_store_resolve(s, "abc", &r, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "ambiguous"));
	assert_int_equal(image_store_resolve(s, "sha256:abc", &r, &err), -EINVAL);
	assert_int_equal(image_store_remove(s, "abc", &err), -EINVAL);
	/* A longer prefix is unique (and then the broken document is reported). */
	assert_int_equal(image_store_resolve(s, "abc1", &r, &err), -EBADMSG);
	assert_null(r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(sha256_vectors),
		cmocka_unit_test_setup_teardown(import_list_resolve, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(identical_imports_dedup, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(cmdline_round_trips, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(remove_by_tag_and_by_id, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(remove_is_idempotent, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(blobs_are_collected, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(usage_changes, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(open_cleans_leftovers, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(bad_inputs, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(disk_images, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(second_store_sees_changes, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(lock_excludes_others, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(corrupt_metadata, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(ambiguous_prefix, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(pulled_images, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(kept_layers_and_not_runnable, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(blob_get_fetches_once, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(named_locks, fx_setup, fx_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
