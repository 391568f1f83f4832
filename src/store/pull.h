/* Pulling an image from an OCI registry into the image store: resolve the reference to a
 * linux/amd64 manifest, download its layers into ROOT/tmp, unpack them in order into a
 * temporary rootfs, recognise the layout (urunc or containerDisk, image_format.h), and
 * import the kernel/initrd or disk through the store's import path. The image gets the
 * normalised repo tag (unless the reference has a digest) and the repo digest
 * "name@sha256:…" (the index digest for a multi-platform image, else the manifest's).
 * Whatever happens, the temporary files and the rootfs are removed before returning.
 *
 * The config and layer blobs are kept with the image. When the store already has
 * name@<that digest>, nothing but the manifest is downloaded: the tag is pointed at the
 * existing image. Pulls of one reference, of one image and of one blob are serialised
 * through the store's named locks, so concurrent pulls download each blob once. An image
 * with no runnable layout is imported as kind "none" with the reason (not an error).
 *
 * Errors are those of registry.h, layers.h and image_format.h: notably -ENOENT (unknown
 * manifest), -EACCES (unauthorized), -EBADMSG (digest mismatch, malformed), -EPERM (a
 * layer that escapes its rootfs), -EFBIG/-E2BIG (limits). */
#ifndef UK_STORE_PULL_H
#define UK_STORE_PULL_H

#include "image_store.h"
#include "registry.h"

int image_store_pull(struct image_store *s, const char *ref, const struct registry_opts *o,
		     struct image_info **ret, uk_error *err);

#endif
