/* The local, content-addressed image store (layout in src/store/README.md).
 *
 * Nothing is cached in memory: every call reads the store from disk under ROOT/lock, so
 * the daemon sees what `unikd image import` (another process) did on its next call. */
#ifndef UK_STORE_IMAGE_STORE_H
#define UK_STORE_IMAGE_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../common/error.h"

#define IMAGE_ID_SIZE 72 /* "sha256:" + 64 hex + NUL */
#define IMAGE_KERNEL_MAX (1ull << 30)
#define IMAGE_INITRD_MAX (1ull << 30)
#define IMAGE_DISK_MAX (64ull << 30)
#define IMAGE_CMDLINE_MAX 4096 /* with the NUL, as vmwrapper's VM_CMDLINE_MAX */
#define IMAGE_METADATA_MAX (1024 * 1024) /* images/<hex>.json and refs.json */
#define IMAGE_KIND_IMPORT "unikd-import"
#define IMAGE_KIND_NONE "none" /* pulled, but no layout unikd can boot */
#define IMAGE_LAYERS_MAX 256
#define IMAGE_NOT_RUNNABLE_MAX 1024
#define IMAGE_NAME_VALUE_MAX 64 /* unikernel_type, unikernel_version, with the NUL */

struct image_store;

struct image_info {
	char id[IMAGE_ID_SIZE]; /* "sha256:<64 hex>" */
	char **repo_tags;       /* NULL-terminated, sorted, normalised "docker.io/library/hello:1" */
	char **repo_digests;    /* NULL-terminated, sorted; empty for local imports */
	uint64_t size;          /* bytes of all its (distinct) blobs */
	char *kernel, *initrd, *disk; /* absolute blob paths or NULL */
	/* "raw" | "qcow2", NULL without a disk. With a kernel (urunc's block image), the disk
	 * is an extra data disk the kernel mounts, not a boot disk. */
	char *disk_format;
	char *cmdline;          /* default kernel command line, may be "" */
	/* urunc's com.urunc.unikernel.unikernelType and unikernelVersion (or `unikd image import
	 * --unikernel-type/--unikernel-version`); NULL when not given: the guest contract is then
	 * found from the kernel itself (src/guest/). */
	char *unikernel_type, *unikernel_version;
	char *kind;             /* IMAGE_KIND_IMPORT, or "urunc" / "containerdisk" / "none" when pulled */
	/* NULL for a runnable image. For a pulled image with no layout unikd can boot (kind
	 * "none", no kernel, no disk): why, and which annotations or layout would make it
	 * runnable. CreateContainer refuses such an image with this text. */
	char *not_runnable;
	uint64_t created_ns;    /* when this content was first imported */
};

/* A file already in ROOT/tmp whose sha256 and size the caller verified (a pulled layer or
 * config): the import links it into blobs/ and the image keeps it. */
struct image_blob_file {
	const char *digest; /* sha256:<64 hex> */
	const char *path;
	uint64_t size;
};

/* Exactly one of kernel and disk, or both for a urunc image (the disk is then its block
 * image), or neither with not_runnable set (a pulled image unikd cannot boot; kind must not
 * be IMAGE_KIND_IMPORT). initrd and cmdline go with a kernel only; disk_format with a disk
 * only ("raw" or "qcow2"; NULL guesses from the qcow2 magic). config and layers: the pulled
 * content, kept so a later pull of an image sharing it downloads nothing again. */
struct image_import {
	const char *kernel, *initrd, *disk, *disk_format, *cmdline;
	const char *unikernel_type, *unikernel_version; /* names ([A-Za-z0-9_.-], < 64 bytes) or NULL */
	const char *not_runnable;
	const struct image_blob_file *config;
	const struct image_blob_file *layers;
	size_t n_layers;
};

/* Create the layout if needed, then (under the lock) remove leftovers of interrupted
 * imports and writes, and images and blobs that nothing refers to. */
int image_store_open(const char *root, struct image_store **ret, uk_error *err);
void image_store_free(struct image_store *s);

/* Copy the files into the store and point ref (name[:tag], no digest) at the image.
 * A tag that named another image moves; that image goes if it has no tag left.
 * ret may be NULL. */
int image_store_import(struct image_store *s, const char *ref, const struct image_import *in,
		       struct image_info **ret, uk_error *err);

/* As image_store_import, for pulled images: ref (name[:tag], may be NULL) and repo_digest
 * ("name@sha256:…", may be NULL; not both NULL) both point at the image, and kind (NULL for
 * IMAGE_KIND_IMPORT; "urunc", "containerdisk") goes into its config, so into its id. */
int image_store_import_ex(struct image_store *s, const char *ref, const char *repo_digest, const char *kind,
			  const struct image_import *in, struct image_info **ret, uk_error *err);

/* Point ref (name:tag or name@digest) at the image target resolves to (as
 * image_store_resolve), atomically. A tag that named another image moves. ret may be NULL. */
int image_store_tag(struct image_store *s, const char *target, const char *ref, struct image_info **ret,
		    uk_error *err);

/* A new directory ROOT/tmp/<prefix>XXXXXX for work in progress, with *lock_fd holding a
 * flock on it so that image_store_open leaves it alone; a directory nobody holds locked is
 * removed by the next image_store_open. The caller removes it and closes the fd. */
int image_store_mkdtemp(struct image_store *s, const char *prefix, char **path, int *lock_fd, uk_error *err);

/* A lock named key (an id: [A-Za-z0-9_.-]) shared by every thread and process using the
 * store, held until image_store_unlock_key: pulls take "image-<hex>" and "blob-<hex>" so
 * that concurrent pulls download and unpack each thing once. */
int image_store_lock_key(struct image_store *s, const char *key, int *fd, uk_error *err);
/* Drop the lock and its file (its waiters notice and retry on a fresh file). */
void image_store_unlock_key(struct image_store *s, const char *key, int fd);

/* Get blob digest (of size bytes) into dst, a new file name in ROOT/tmp: a hard link to the
 * store's copy when there is one, else written by fetch(ud, dst, err), which must verify the
 * content. A fetched blob is published in blobs/ at once (GC removes it again unless an
 * image comes to use it), so that a concurrent pull waiting on the blob's lock links it
 * instead of downloading it again. *fetched tells which happened. */
typedef int (*image_blob_fetch_fn)(void *ud, const char *dst, uk_error *err);
int image_store_blob_get(struct image_store *s, const char *digest, uint64_t size, const char *dst,
			 image_blob_fetch_fn fetch, void *ud, bool *fetched, uk_error *err);

/* The directory of the store's blobs, files named by their sha256 hex. */
int image_store_blob_dir(struct image_store *s, char **ret);

/* All images, newest first; *ret is also NULL-terminated. Free with image_info_list_free. */
int image_store_list(struct image_store *s, struct image_info ***ret, size_t *n, uk_error *err);

/* By reference (normalised: "hello" is docker.io/library/hello:latest), by id
 * "sha256:<hex>", by bare 64-hex id, or by a unique id prefix of at least 3 hex digits
 * (with or without "sha256:"). -ENOENT if not found, -EINVAL if ambiguous or malformed. */
int image_store_resolve(struct image_store *s, const char *ref, struct image_info **ret,
			uk_error *err);

/* Idempotent: a missing image is 0. By reference, removes that reference only (as
 * `docker rmi name:tag`); by id or prefix, removes every reference. An image left without
 * references goes, with the blobs no other image uses. */
int image_store_remove(struct image_store *s, const char *ref, uk_error *err);

/* Disk usage of the whole store directory: allocated bytes and inodes (for ImageFsInfo). */
int image_store_usage(struct image_store *s, uint64_t *bytes, uint64_t *inodes, uk_error *err);

const char *image_store_root(const struct image_store *s);

void image_info_free(struct image_info *i);
void image_info_list_free(struct image_info **v);

static inline void image_store_freep(struct image_store **s)
{
	image_store_free(*s);
}
#define _cleanup_image_store_ __attribute__((cleanup(image_store_freep)))
static inline void image_info_freep(struct image_info **i)
{
	image_info_free(*i);
}
#define _cleanup_image_info_ __attribute__((cleanup(image_info_freep)))
static inline void image_info_list_freep(struct image_info ***v)
{
	image_info_list_free(*v);
}
#define _cleanup_image_info_list_ __attribute__((cleanup(image_info_list_freep)))

#endif
