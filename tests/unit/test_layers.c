/* Unit tests for src/store/layers.c: unpacking layers built here with libarchive's
 * writer, normal and hostile. Each test unpacks into TOP/root, where TOP is a mkdtemp
 * directory that must hold nothing but root afterwards; the archives live in a separate
 * WORK directory. Escape attempts aim at names unique to the test (EVIL) in /, /tmp and
 * TOP, and every test checks that none of them appeared. */
#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include <cmocka.h>

#include "common/util.h"
#include "store/layers.h"

struct fx {
	char top[64];   /* /tmp/uk-test-layers-XXXXXX: holds only root */
	char root[96];  /* top/root */
	char work[64];  /* /tmp/uk-test-layersw-XXXXXX: the archives */
	char evil[32];  /* a name unique to this test, used as an escape target */
	int rootfd;
	unsigned n_layers;
};

static int fx_setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	if (!f)
		return -1;
	snprintf(f->top, sizeof(f->top), "/tmp/uk-test-layers-XXXXXX");
	snprintf(f->work, sizeof(f->work), "/tmp/uk-test-layersw-XXXXXX");
	if (!mkdtemp(f->top) || !mkdtemp(f->work)) {
		free(f);
		return -1;
	}
	snprintf(f->root, sizeof(f->root), "%s/root", f->top);
	snprintf(f->evil, sizeof(f->evil), "uk-evil-%s", f->top + strlen("/tmp/uk-test-layers-"));
	if (mkdir(f->root, 0755) < 0)
		return -1;
	f->rootfd = open(f->root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (f->rootfd < 0)
		return -1;
	*state = f;
	return 0;
}

/* Nothing but root in TOP, and no EVIL in /, /tmp or TOP. */
static bool nothing_outside(struct fx *f)
{
	DIR *d = opendir(f->top);
	if (!d)
		return false;
	bool ok = true;
	struct dirent *de;
	while ((de = readdir(d)))
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..") && strcmp(de->d_name, "root")) {
			fprintf(stderr, "unexpected %s/%s\n", f->top, de->d_name);
			ok = false;
		}
	closedir(d);
	const char *dirs[] = { "", "/tmp" };
	for (size_t i = 0; i < ARRAY_SIZE(dirs); i++) {
		char p[128];
		struct stat st;
		snprintf(p, sizeof(p), "%s/%s", dirs[i], f->evil);
		if (lstat(p, &st) == 0) {
			fprintf(stderr, "escaped: %s exists\n", p);
			unlink(p);
			ok = false;
		}
	}
	return ok;
}

static int fx_teardown(void **state)
{
	struct fx *f = *state;
	bool ok = nothing_outside(f);
	close(f->rootfd);
	int r = uk_rm_rf(f->top, NULL);
	int r2 = uk_rm_rf(f->work, NULL);
	free(f);
	return ok && r == 0 && r2 == 0 ? 0 : -1;
}

/* ---- building layers ---- */

enum { F, D, L, H, CHR, BLK, FIFO };

struct ent {
	int type;
	const char *path;
	const char *data;  /* file content, or the link target */
	unsigned mode;     /* permission bits; 0 means 0644 (files) or 0755 (directories) */
	uint64_t size;     /* with data NULL: this many 'x' bytes */
};

/* WORK/layerN.tar[.gz|.zst] holding ents; filter is "none", "gzip", "zstd" or "xz". */
static const char *make_layer_n(struct fx *f, const char *filter, const struct ent *ents,
				size_t n)
{
	static char path[128];
	snprintf(path, sizeof(path), "%s/layer%u.%s", f->work, f->n_layers++, filter);
	struct archive *a = archive_write_new();
	assert_non_null(a);
	assert_int_equal(archive_write_set_format_pax_restricted(a), ARCHIVE_OK);
	if (strcmp(filter, "gzip") == 0)
		assert_int_equal(archive_write_add_filter_gzip(a), ARCHIVE_OK);
	else if (strcmp(filter, "zstd") == 0)
		assert_int_equal(archive_write_add_filter_zstd(a), ARCHIVE_OK);
	else if (strcmp(filter, "xz") == 0)
		assert_int_equal(archive_write_add_filter_xz(a), ARCHIVE_OK);
	assert_int_equal(archive_write_open_filename(a, path), ARCHIVE_OK);
	for (size_t i = 0; i < n; i++) {
		const struct ent *x = &ents[i];
		struct archive_entry *e = archive_entry_new();
		archive_entry_set_pathname(e, x->path);
		archive_entry_set_mtime(e, 1700000000, 0);
		archive_entry_set_uid(e, 0);
		archive_entry_set_gid(e, 0);
		uint64_t size = 0;
		switch (x->type) {
		case F:
			size = x->data ? strlen(x->data) : x->size;
			archive_entry_set_filetype(e, AE_IFREG);
			archive_entry_set_perm(e, x->mode ? x->mode : 0644);
			archive_entry_set_size(e, (la_int64_t)size);
			break;
		case D:
			archive_entry_set_filetype(e, AE_IFDIR);
			archive_entry_set_perm(e, x->mode ? x->mode : 0755);
			break;
		case L:
			archive_entry_set_filetype(e, AE_IFLNK);
			archive_entry_set_perm(e, 0777);
			archive_entry_set_symlink(e, x->data);
			break;
		case H:
			archive_entry_set_filetype(e, AE_IFREG);
			archive_entry_set_perm(e, 0644);
			archive_entry_set_hardlink(e, x->data);
			break;
		case CHR:
		case BLK:
			archive_entry_set_filetype(e, x->type == CHR ? AE_IFCHR : AE_IFBLK);
			archive_entry_set_perm(e, 0666);
			archive_entry_set_rdev(e, makedev(1, 3));
			break;
		case FIFO:
			archive_entry_set_filetype(e, AE_IFIFO);
			archive_entry_set_perm(e, 0644);
			break;
		}
		assert_int_equal(archive_write_header(a, e), ARCHIVE_OK);
		if (x->type == F && x->data) {
			assert_int_equal(archive_write_data(a, x->data, size), (la_ssize_t)size);
		} else if (x->type == F) {
			static char chunk[65536];
			memset(chunk, 'x', sizeof(chunk));
			for (uint64_t done = 0; done < size;) {
				size_t k = size - done < sizeof(chunk) ? size - done : sizeof(chunk);
				assert_int_equal(archive_write_data(a, chunk, k), (la_ssize_t)k);
				done += k;
			}
		}
		archive_entry_free(e);
	}
	assert_int_equal(archive_write_close(a), ARCHIVE_OK);
	archive_write_free(a);
	return path;
}
#define make_layer(f, filter, ...)                                                                 \
	({                                                                                         \
		const struct ent _e[] = { __VA_ARGS__ };                                           \
		make_layer_n(f, filter, _e, ARRAY_SIZE(_e));                                       \
	})

static int unpack(struct fx *f, const char *layer, const char *media, const struct layer_limits *lim,
		  uk_error *err)
{
	memset(err, 0, sizeof(*err));
	return layers_unpack(layer, media, f->rootfd, lim, err);
}

static bool exists(struct fx *f, const char *rel)
{
	struct stat st;
	return fstatat(f->rootfd, rel, &st, AT_SYMLINK_NOFOLLOW) == 0;
}

static mode_t mode_of(struct fx *f, const char *rel)
{
	struct stat st;
	assert_int_equal(fstatat(f->rootfd, rel, &st, AT_SYMLINK_NOFOLLOW), 0);
	return st.st_mode;
}

static void assert_content(struct fx *f, const char *rel, const char *want)
{
	char p[256], *data = NULL;
	size_t len = 0;
	snprintf(p, sizeof(p), "%s/%s", f->root, rel);
	assert_int_equal(uk_read_file(p, 1 << 20, &data, &len, NULL), 0);
	assert_string_equal(data, want);
	free(data);
}

static void assert_msg(const uk_error *err, const char *needle)
{
	if (!strstr(err->msg, needle))
		fail_msg("message \"%s\" lacks \"%s\"", err->msg, needle);
}

/* ---- normal layers ---- */

static void check_normal_tree(struct fx *f)
{
	assert_true(S_ISDIR(mode_of(f, "etc")));
	assert_int_equal(mode_of(f, "etc") & 07777, 0750);
	assert_content(f, "etc/hostname", "unikd\n");
	assert_int_equal(mode_of(f, "etc/hostname") & 07777, 0644);
	assert_content(f, "bin/app", "#!app\n");
	assert_int_equal(mode_of(f, "bin/app") & 07777, 0755);
	assert_int_equal(mode_of(f, "bin") & 07777, 0755); /* implicit parent */
	assert_true(S_ISLNK(mode_of(f, "lib")));
	char t[64] = { 0 };
	assert_int_equal(readlinkat(f->rootfd, "lib", t, sizeof(t) - 1), 7);
	assert_string_equal(t, "usr/lib");
	struct stat a, b;
	assert_int_equal(fstatat(f->rootfd, "etc/hostname", &a, 0), 0);
	assert_int_equal(fstatat(f->rootfd, "etc/hosts2", &b, 0), 0);
	assert_int_equal(a.st_ino, b.st_ino);
	assert_int_equal(a.st_nlink, 2);
	assert_int_equal(a.st_mtim.tv_sec, 1700000000);
	assert_int_equal(mode_of(f, "big") & S_IFMT, S_IFREG);
	struct stat big;
	assert_int_equal(fstatat(f->rootfd, "big", &big, 0), 0);
	assert_int_equal(big.st_size, 300000);
}

static void normal_layers(void **state)
{
	struct fx *f = *state;
	static const struct {
		const char *filter, *media;
	} cases[] = {
		{ "none", LAYER_MEDIA_OCI_TAR },
		{ "gzip", LAYER_MEDIA_OCI_TAR_GZIP },
		{ "zstd", LAYER_MEDIA_OCI_TAR_ZSTD },
		{ "gzip", LAYER_MEDIA_DOCKER_TAR_GZIP },
		{ "zstd", NULL },                /* detected from the magic */
		{ "gzip", LAYER_MEDIA_OCI_TAR }, /* mislabelled: the magic decides */
	};
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		const char *layer = make_layer(f, cases[i].filter,
			{ D, "./", NULL, 0, 0 },
			{ D, "etc/", NULL, 0750, 0 },
			{ F, "etc/hostname", "unikd\n", 0, 0 },
			{ F, "./bin/app", "#!app\n", 0755, 0 },
			{ L, "lib", "usr/lib", 0, 0 },
			{ H, "etc/hosts2", "etc/hostname", 0, 0 },
			{ F, "big", NULL, 0, 300000 });
		uk_error err;
		int r = unpack(f, layer, cases[i].media, NULL, &err);
		if (r != 0)
			fail_msg("case %zu: %s", i, err.msg);
		check_normal_tree(f);
		assert_true(nothing_outside(f));
		/* the next case starts from an empty root */
		close(f->rootfd);
		assert_int_equal(uk_rm_rf(f->root, NULL), 0);
		assert_int_equal(mkdir(f->root, 0755), 0);
		f->rootfd = open(f->root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		assert_true(f->rootfd >= 0);
	}
}

static void bad_archives(void **state)
{
	struct fx *f = *state;
	uk_error err;
	const char *layer = make_layer(f, "none", { F, "a", "a", 0, 0 });
	assert_int_equal(unpack(f, layer, "application/vnd.oci.image.config.v1+json", NULL, &err),
			 -ENOTSUP);
	assert_msg(&err, "not a tar layer");
	assert_int_equal(unpack(f, layer, "application/vnd.oci.image.layer.v1.tar+encrypted", NULL,
				&err), -ENOTSUP);

	layer = make_layer(f, "xz", { F, "a", "a", 0, 0 });
	assert_int_equal(unpack(f, layer, NULL, NULL, &err), -ENOTSUP);
	assert_msg(&err, "xz");

	char p[128];
	snprintf(p, sizeof(p), "%s/garbage", f->work);
	char junk[2048];
	memset(junk, 'j', sizeof(junk));
	assert_int_equal(uk_write_file_atomic(p, junk, sizeof(junk), 0644, NULL), 0);
	assert_true(unpack(f, p, NULL, NULL, &err) < 0);
	assert_msg(&err, "garbage");

	/* a truncated gzip layer */
	layer = make_layer(f, "gzip", { F, "big", NULL, 0, 200000 }, { F, "after", "x", 0, 0 });
	struct stat st;
	assert_int_equal(stat(layer, &st), 0);
	assert_int_equal(truncate(layer, st.st_size / 2), 0);
	assert_true(unpack(f, layer, NULL, NULL, &err) < 0);
	assert_false(exists(f, "after"));

	snprintf(p, sizeof(p), "%s/missing", f->work);
	assert_int_equal(unpack(f, p, NULL, NULL, &err), -ENOENT);
	assert_true(nothing_outside(f));
}

/* ---- hostile paths ---- */

static void dotdot(void **state)
{
	struct fx *f = *state;
	uk_error err;
	char evil[96];
	snprintf(evil, sizeof(evil), "../%s", f->evil);
	const char *layer = make_layer(f, "none", { F, evil, "pwned", 0, 0 });
	assert_int_equal(unpack(f, layer, NULL, NULL, &err), -EPERM);
	assert_msg(&err, evil);
	assert_msg(&err, "\"..\"");

	snprintf(evil, sizeof(evil), "a/../../%s", f->evil);
	layer = make_layer(f, "gzip", { F, evil, "pwned", 0, 0 });
	assert_int_equal(unpack(f, layer, NULL, NULL, &err), -EPERM);

	snprintf(evil, sizeof(evil), "../../../../../../../tmp/%s", f->evil);
	layer = make_layer(f, "none", { D, "d", NULL, 0, 0 }, { L, "d/l", evil, 0, 0 },
			   { H, "x", evil, 0, 0 });
	assert_int_equal(unpack(f, layer, NULL, NULL, &err), -EPERM);
	assert_msg(&err, "hard link target");
	assert_true(S_ISLNK(mode_of(f, "d/l"))); /* the symlink itself is data */
	assert_false(exists(f, "x"));
	assert_true(nothing_outside(f));
}

static void absolute_paths(void **state)
{
	struct fx *f = *state;
	uk_error err;
	const char *layer = make_layer(f, "none", { F, "/abs/path", "inside", 0, 0 },
				       { F, "//abs//./other", "too", 0, 0 });
	assert_int_equal(unpack(f, layer, NULL, NULL, &err), 0);
	assert_content(f, "abs/path", "inside");
	assert_content(f, "abs/other", "too");
	assert_true(nothing_outside(f));
}

static void symlink_escapes(void **state)
{
	struct fx *f = *state;
	uk_error err;
	char evil[96];
	const char *targets[] = { "/", "../..", "..", "/tmp", "sub/../.." };
	for (size_t i = 0; i < ARRAY_SIZE(targets); i++) {
		snprintf(evil, sizeof(evil), "link%zu/%s", i, f->evil);
		char link[16];
		snprintf(link, sizeof(link), "link%zu", i);
		const char *layer = make_layer(f, i % 2 ? "zstd" : "none",
					       { L, link, targets[i], 0, 0 }, { F, evil, "pwned", 0, 0 });
		assert_int_equal(unpack(f, layer, NULL, NULL, &err), -EPERM);
		assert_msg(&err, evil);
		assert_msg(&err, "symlink");
		assert_true(S_ISLNK(mode_of(f, link)));
		assert_true(nothing_outside(f));
	}
	/* a directory entry and an implicit parent through a symlink: refused too */
	snprintf(evil, sizeof(evil), "link0/%s/", f->evil);
	const char *layer = make_layer(f, "none", { D, evil, NULL, 0, 0 });
	assert_int_equal(unpack(f, layer, NULL, NULL, &err), -EPERM);
	snprintf(evil, sizeof(evil), "link1/%s/deeper/file", f->evil);
	layer = make_layer(f, "none", { F, evil, "x", 0, 0 });
	assert_int_equal(unpack(f, layer, NULL, NULL, &err), -EPERM);
	assert_true(nothing_outside(f));
}

/* A later layer's file, directory or hard link replaces a symlink: never writes through it. */
static void replace_symlink_not_follow(void **state)
{
	struct fx *f = *state;
	uk_error err;
	char outside[128], victim[160];
	snprintf(outside, sizeof(outside), "/tmp/%s", f->evil);
	snprintf(victim, sizeof(victim), "%s/victim", f->work);
	assert_int_equal(uk_write_file_atomic(victim, "precious", 8, 0644, NULL), 0);
	const char *l1 = make_layer(f, "none", { L, "x", outside, 0, 0 }, { L, "y", outside, 0, 0 },
				    { L, "v", victim, 0, 0 }, { F, "data", "new", 0, 0 });
	assert_int_equal(unpack(f, l1, NULL, NULL, &err), 0);
	const char *l2 = make_layer(f, "gzip", { F, "x", "not through the link", 0, 0 },
				    { D, "y", NULL, 0, 0 }, { H, "v", "data", 0, 0 });
	assert_int_equal(unpack(f, l2, NULL, NULL, &err), 0);
	assert_content(f, "x", "not through the link");
	assert_true(S_ISDIR(mode_of(f, "y")));
	assert_content(f, "v", "new");
	char *data = NULL;
	assert_int_equal(uk_read_file(victim, 64, &data, NULL, NULL), 0);
	assert_string_equal(data, "precious");
	free(data);
	assert_true(nothing_outside(f));
}

static void hard_links(void **state)
{
	struct fx *f = *state;
	uk_error err;
	const char *layer = make_layer(f, "none", { H, "pw", "/etc/passwd", 0, 0 });
	assert_int_equal(unpack(f, layer, NULL, NULL, &err), -EPERM);
	assert_msg(&err, "\"pw\"");
	assert_msg(&err, "not in the tree");
	assert_false(exists(f, "pw"));

	layer = make_layer(f, "none", { H, "x", "../x", 0, 0 });
	assert_int_equal(unpack(f, layer, NULL, NULL, &err), -EPERM);
	assert_msg(&err, "\"..\"");

	/* through a symlink that points at /etc */
	layer = make_layer(f, "none", { L, "etc", "/etc", 0, 0 }, { H, "pw", "etc/passwd", 0, 0 });
	assert_int_equal(unpack(f, layer, NULL, NULL, &err), -EPERM);
	assert_false(exists(f, "pw"));

	/* to a directory, and to itself */
	layer = make_layer(f, "none", { D, "dir", NULL, 0, 0 }, { H, "dl", "dir", 0, 0 });
	assert_int_equal(unpack(f, layer, NULL, NULL, &err), -EPERM);
	layer = make_layer(f, "none", { H, "self", "self", 0, 0 });
	assert_int_equal(unpack(f, layer, NULL, NULL, &err), -EPERM);

	/* to a file of a lower layer: fine, and to a symlink: the link itself */
	const char *l1 = make_layer(f, "none", { F, "lower", "low", 0, 0 }, { L, "sl", "/etc/passwd", 0, 0 });
	assert_int_equal(unpack(f, l1, NULL, NULL, &err), 0);
	const char *l2 = make_layer(f, "none", { H, "upper", "/lower", 0, 0 }, { H, "sl2", "sl", 0, 0 });
	assert_int_equal(unpack(f, l2, NULL, NULL, &err), 0);
	assert_content(f, "upper", "low");
	assert_true(S_ISLNK(mode_of(f, "sl2")));
	assert_true(nothing_outside(f));
}

static void special_files(void **state)
{
	struct fx *f = *state;
	uk_error err;
	const char *layer = make_layer(f, "none", { CHR, "dev/null", NULL, 0, 0 });
	assert_int_equal(unpack(f, layer, NULL, NULL, &err), -EPERM);
	assert_msg(&err, "dev/null");
	assert_msg(&err, "device");
	assert_false(exists(f, "dev/null"));
	layer = make_layer(f, "gzip", { BLK, "sda", NULL, 0, 0 });
	assert_int_equal(unpack(f, layer, NULL, NULL, &err), -EPERM);
	layer = make_layer(f, "none", { FIFO, "pipe", NULL, 0, 0 });
	assert_int_equal(unpack(f, layer, NULL, NULL, &err), -EPERM);
	assert_msg(&err, "fifo");
	assert_false(exists(f, "pipe"));
	assert_true(nothing_outside(f));
}

static void mode_bits_cleared(void **state)
{
	struct fx *f = *state;
	uk_error err;
	const char *layer = make_layer(f, "none", { F, "suid", "x", 04755, 0 },
				       { F, "sgid", "x", 02711, 0 }, { D, "tmp", NULL, 01777, 0 },
				       { D, "ro", NULL, 0555, 0 }, { F, "ro/inside", "x", 0444, 0 });
	assert_int_equal(unpack(f, layer, NULL, NULL, &err), 0);
	assert_int_equal(mode_of(f, "suid") & 07777, 0755);
	assert_int_equal(mode_of(f, "sgid") & 07777, 0711);
	assert_int_equal(mode_of(f, "tmp") & 07777, 0777);
	assert_int_equal(mode_of(f, "ro") & 07777, 0555);
	assert_int_equal(mode_of(f, "ro/inside") & 07777, 0444);
	assert_int_equal(fchmodat(f->rootfd, "ro", 0755, 0), 0); /* so that a non-root teardown can remove it */
	assert_true(nothing_outside(f));
}

/* ---- whiteouts ---- */

static void whiteouts(void **state)
{
	struct fx *f = *state;
	uk_error err;
	const char *l1 = make_layer(f, "gzip",
		{ D, "a", NULL, 0, 0 }, { F, "a/x", "x", 0, 0 }, { F, "a/y", "y", 0, 0 },
		{ D, "b", NULL, 0, 0 }, { F, "b/z", "z", 0, 0 }, { F, "c", "c", 0, 0 },
		{ D, "d", NULL, 0, 0 }, { F, "d/old", "o", 0, 0 }, { D, "d/sub", NULL, 0, 0 },
		{ F, "d/sub/old2", "o", 0, 0 }, { D, "d/keep", NULL, 0, 0 },
		{ F, "d/keep/old3", "o", 0, 0 },
		{ D, "e", NULL, 0, 0 }, { F, "e/old", "o", 0, 0 });
	assert_int_equal(unpack(f, l1, NULL, NULL, &err), 0);
	const char *l2 = make_layer(f, "zstd",
		{ F, "a/.wh.x", "", 0, 0 },
		{ F, ".wh.b", "", 0, 0 },
		{ F, "d/new", "n", 0, 0 },            /* before the marker: stays */
		{ F, "d/keep/new3", "n", 0, 0 },      /* keep is on the way: kept, old3 goes */
		{ D, "d/sub", NULL, 0, 0 },           /* a directory entry of this layer */
		{ F, "d/.wh..wh..opq", "", 0, 0 },
		{ F, "d/sub/new2", "n", 0, 0 },       /* after the marker */
		{ F, "e/.wh..wh..opq", "", 0, 0 },
		{ F, "e/new", "n", 0, 0 },
		{ F, ".wh.nothing-there", "", 0, 0 },
		{ F, "c2", "same layer", 0, 0 },
		{ F, ".wh.c2", "", 0, 0 },            /* hides lower layers only */
		{ F, "newdir/.wh..wh..opq", "", 0, 0 },
		{ F, "missing/.wh.x", "", 0, 0 });
	int r = unpack(f, l2, LAYER_MEDIA_OCI_TAR_ZSTD, NULL, &err);
	if (r)
		fail_msg("%s", err.msg);
	assert_false(exists(f, "a/x"));
	assert_content(f, "a/y", "y");
	assert_false(exists(f, "b"));
	assert_content(f, "c", "c");
	assert_content(f, "c2", "same layer");
	assert_content(f, "d/new", "n");
	assert_false(exists(f, "d/old"));
	assert_true(S_ISDIR(mode_of(f, "d/sub")));
	assert_false(exists(f, "d/sub/old2"));
	assert_content(f, "d/sub/new2", "n");
	assert_content(f, "d/keep/new3", "n");
	assert_false(exists(f, "d/keep/old3"));
	assert_false(exists(f, "e/old"));
	assert_content(f, "e/new", "n");
	assert_true(S_ISDIR(mode_of(f, "newdir")));
	assert_false(exists(f, "missing"));
	assert_false(exists(f, "a/.wh.x"));
	assert_false(exists(f, ".wh.b"));
	assert_false(exists(f, "d/.wh..wh..opq"));
	assert_true(nothing_outside(f));
}

/* Whiteouts never reach through a symlink. */
static void whiteout_through_symlink(void **state)
{
	struct fx *f = *state;
	uk_error err;
	char victim[160];
	snprintf(victim, sizeof(victim), "%s/victim", f->work);
	assert_int_equal(uk_write_file_atomic(victim, "v", 1, 0644, NULL), 0);
	const char *l1 = make_layer(f, "none", { L, "s", f->work, 0, 0 }, { L, "up", "..", 0, 0 });
	assert_int_equal(unpack(f, l1, NULL, NULL, &err), 0);
	const char *l2 = make_layer(f, "none", { F, "s/.wh.victim", "", 0, 0 });
	assert_int_equal(unpack(f, l2, NULL, NULL, &err), -EPERM);
	l2 = make_layer(f, "none", { F, "s/.wh..wh..opq", "", 0, 0 });
	assert_int_equal(unpack(f, l2, NULL, NULL, &err), -EPERM);
	l2 = make_layer(f, "none", { F, "up/.wh..wh..opq", "", 0, 0 });
	assert_int_equal(unpack(f, l2, NULL, NULL, &err), -EPERM);
	l2 = make_layer(f, "none", { F, ".wh..", "", 0, 0 });
	assert_int_equal(unpack(f, l2, NULL, NULL, &err), -EPERM);
	/* whiting out the symlink itself removes the link, not its target */
	l2 = make_layer(f, "none", { F, ".wh.s", "", 0, 0 });
	assert_int_equal(unpack(f, l2, NULL, NULL, &err), 0);
	assert_false(exists(f, "s"));
	struct stat st;
	assert_int_equal(stat(victim, &st), 0);
	assert_true(nothing_outside(f));
}

/* A later layer replaces a directory by a file and a file by a directory. */
static void replace_types(void **state)
{
	struct fx *f = *state;
	uk_error err;
	const char *l1 = make_layer(f, "none", { D, "p", NULL, 0, 0 }, { F, "p/q", "q", 0, 0 },
				    { F, "r", "r", 0, 0 });
	assert_int_equal(unpack(f, l1, NULL, NULL, &err), 0);
	const char *l2 = make_layer(f, "none", { F, "p", "now a file", 0, 0 }, { D, "r", NULL, 0, 0 },
				    { F, "r/s", "s", 0, 0 });
	assert_int_equal(unpack(f, l2, NULL, NULL, &err), 0);
	assert_content(f, "p", "now a file");
	assert_content(f, "r/s", "s");
	/* a file below a file is an error */
	const char *l3 = make_layer(f, "none", { F, "p/x", "x", 0, 0 });
	assert_int_equal(unpack(f, l3, NULL, NULL, &err), -EPERM);
	assert_true(nothing_outside(f));
}

/* ---- limits ---- */

static void limits(void **state)
{
	struct fx *f = *state;
	uk_error err;
	struct layer_limits lim = layer_limits_default;

	lim.max_entries = 2;
	const char *layer = make_layer(f, "none", { F, "e1", "1", 0, 0 }, { F, "e2", "2", 0, 0 },
				       { F, "e3", "3", 0, 0 });
	assert_int_equal(unpack(f, layer, NULL, &lim, &err), -E2BIG);
	assert_msg(&err, "e3");
	assert_false(exists(f, "e3"));
	lim.max_entries = 3;
	assert_int_equal(unpack(f, layer, NULL, &lim, &err), 0);

	lim = layer_limits_default;
	lim.max_path = 16;
	layer = make_layer(f, "none", { F, "0123456789abcdef", "ok", 0, 0 },
			   { F, "0123456789abcdefX", "too long", 0, 0 });
	assert_int_equal(unpack(f, layer, NULL, &lim, &err), -E2BIG);
	assert_msg(&err, "0123456789abcdefX");
	assert_true(exists(f, "0123456789abcdef"));
	assert_false(exists(f, "0123456789abcdefX"));
	layer = make_layer(f, "none", { L, "s", "0123456789abcdefX", 0, 0 });
	assert_int_equal(unpack(f, layer, NULL, &lim, &err), -E2BIG);

	lim = layer_limits_default;
	lim.max_file_size = 100;
	layer = make_layer(f, "gzip", { F, "f100", NULL, 0, 100 }, { F, "f101", NULL, 0, 101 });
	assert_int_equal(unpack(f, layer, NULL, &lim, &err), -EFBIG);
	assert_msg(&err, "f101");
	assert_false(exists(f, "f101"));

	lim = layer_limits_default;
	lim.max_total_bytes = 150000;
	layer = make_layer(f, "zstd", { F, "t1", NULL, 0, 100000 }, { F, "t2", NULL, 0, 100000 });
	assert_int_equal(unpack(f, layer, NULL, &lim, &err), -EFBIG);
	assert_msg(&err, "t2");
	assert_msg(&err, "in total");

	/* depth */
	char deep[LAYER_MAX_DEPTH * 2 + 8] = "";
	for (int i = 0; i <= LAYER_MAX_DEPTH; i++)
		strcat(deep, "d/");
	strcat(deep, "f");
	layer = make_layer(f, "none", { F, deep, "x", 0, 0 });
	assert_int_equal(unpack(f, layer, NULL, NULL, &err), -E2BIG);
	assert_false(exists(f, "d"));
	assert_true(nothing_outside(f));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(normal_layers, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(bad_archives, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(dotdot, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(absolute_paths, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(symlink_escapes, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(replace_symlink_not_follow, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(hard_links, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(special_files, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(mode_bits_cleared, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(whiteouts, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(whiteout_through_symlink, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(replace_types, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(limits, fx_setup, fx_teardown),
	};
	return cmocka_run_group_tests_name("layers", tests, NULL, NULL);
}
