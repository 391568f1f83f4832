/* The Solo5 contract (virtio target): a PCI machine, exactly the devices the binary's
 * manifest declares, in its order, and its exits read from the console. The application is
 * not known, so its command line is the plain words (MirageOS has its own, mirage.c). */
#include <string.h>

#include "contract.h"
#include "probe.h"

static int declared(const struct guest_device *d, const char *has, uk_error *err)
{
	return uk_err(err, EINVAL, "the Solo5 manifest declares %s device \"%s\", but %s",
		      d->kind == GUEST_DEV_NET ? "net" : "block", d->name, has);
}

/* The CRI device named as manifest BLOCK entry d, or -1. */
static int cri_device_named(const struct guest_plan *p, const char *name)
{
	for (size_t i = 0; i < p->n_blockdevs; i++)
		if (strcmp(guest_blockdev_name(p, i), name) == 0)
			return (int)i;
	return -1;
}

/* A manifest BLOCK entry, when CRI devices were given: the one named so (by its path's last
 * component), attached as a VOLUME under the manifest's name. */
static int cri_block(const struct guest_facts *f, struct guest_plan *p, const struct guest_device *d, uk_error *err)
{
	int i = cri_device_named(p, d->name);
	if (i < 0)
		return uk_err(err, EINVAL, "%sdevices: the Solo5 manifest declares block device \"%s\" and no device is named so (the last component of its container_path); with devices given, every block device comes from them",
			      f->cmd.field_prefix ? f->cmd.field_prefix : "", d->name);
	p->blockdevs[i].device = p->n_devices;
	return guest_add_device(p, GUEST_DEV_VOLUME, d->name, err);
}

/* Every CRI device must be one the manifest declares. */
static int cri_unmatched(const struct guest_facts *f, const struct guest_plan *p, uk_error *err)
{
	const struct guest_binary *b = f->bin;
	for (size_t i = 0; i < p->n_blockdevs; i++) {
		const char *name = guest_blockdev_name(p, i);
		bool found = false;
		for (size_t j = 0; j < i; j++)
			if (strcmp(guest_blockdev_name(p, j), name) == 0)
				return uk_err(err, EINVAL, "%sdevices[%zu] (%s) has the Solo5 name \"%s\" of %sdevices[%zu] too",
					      f->cmd.field_prefix ? f->cmd.field_prefix : "", i, p->blockdevs[i].path,
					      name, f->cmd.field_prefix ? f->cmd.field_prefix : "", j);
		for (size_t k = 0; k < b->n_mft && !found; k++)
			found = b->mft[k].kind == GUEST_DEV_BLOCK && strcmp(b->mft[k].name, name) == 0;
		if (!found)
			return uk_err(err, EINVAL, "%sdevices[%zu] (%s): the Solo5 manifest declares no block device \"%.*s\", and a Solo5 guest aborts on an undeclared one",
				      f->cmd.field_prefix ? f->cmd.field_prefix : "", i, p->blockdevs[i].path,
				      GUEST_MFT_NAME_MAX, name);
	}
	return 0;
}

int guest_solo5_devices(const struct guest_facts *f, struct guest_plan *p, uk_error *err)
{
	const struct guest_binary *b = f->bin;
	bool net = false, block = false; /* one of each can be given (block: without CRI devices) */
	int r;
	if ((r = cri_unmatched(f, p, err)) < 0)
		return r;
	for (size_t i = 0; i < b->n_mft; i++) {
		const struct guest_device *d = &b->mft[i];
		if (d->kind == GUEST_DEV_NET && !f->net)
			return declared(d, "the pod has no network", err);
		if (d->kind == GUEST_DEV_NET && net)
			return declared(d, "a pod has one network interface", err);
		if (d->kind == GUEST_DEV_BLOCK && p->n_blockdevs) {
			if ((r = cri_block(f, p, d, err)) < 0)
				return r;
			continue;
		}
		if (d->kind == GUEST_DEV_BLOCK && !f->has_block_disk)
			return declared(d, "the image has no urunc block disk (com.urunc.unikernel.block) and the container no devices",
					err);
		if (d->kind == GUEST_DEV_BLOCK && block)
			return declared(d, "the image has one urunc block disk", err);
		if ((r = guest_add_device(p, d->kind, d->name, err)) < 0)
			return r;
		net |= d->kind == GUEST_DEV_NET;
		block |= d->kind == GUEST_DEV_BLOCK;
	}
	return 0;
}

static bool has_block(const struct guest_plan *p)
{
	for (size_t i = 0; i < p->n_devices; i++)
		if (p->devices[i].kind == GUEST_DEV_BLOCK)
			return true;
	return false;
}

int guest_solo5_vm(const struct guest_facts *f, struct guest_plan *p, const char *label, uk_error *err)
{
	const struct guest_binary *b = f->bin;
	if (b && b->solo5_abi_target && b->solo5_abi_target != GUEST_SOLO5_TARGET_VIRTIO)
		return uk_err(err, EINVAL, "the Solo5 binary is built for the %s target (ABI note), but unikd boots only Solo5's virtio target",
			      guest_solo5_target_name(b->solo5_abi_target));
	p->machine = GUEST_MACHINE_PC;
	p->exit = GUEST_EXIT_SOLO5;
	/* The virtio bindings' tscclock calibrates against the i8254 as Unikraft's does (whose
	 * code came from it); MirageOS is Solo5 underneath. */
	guest_set_pit(p, GUEST_PIT_ON,
		      "Solo5's virtio bindings calibrate the TSC against the i8254 (0.12.1 without a PIT: test_hello never "
		      "prints)");
	int r;
	if (b && b->solo5)
		r = guest_solo5_devices(f, p, err);
	else if ((r = guest_default_devices(f, p, err)) >= 0)
		r = guest_blockdevs_add(f, p, false, err); /* no manifest: in the container's order */
	if (r < 0 || (r = guest_mounts_none(f, p, guest_framework_name(p->framework),
					    "Solo5 has no filesystem; give data as a block device", err)) < 0)
		return r;
	/* qboot gives PCI devices no I/O space, and Solo5's legacy virtio needs it (the guest
	 * then aborts with "virtq full"); without devices qboot boots faster. */
	p->firmware = p->n_devices ? GUEST_FW_SEABIOS : GUEST_FW_QBOOT;
	guest_why(p, "%s: pc (Solo5's virtio target needs PCI) with %s", label,
		  p->n_devices ? "SeaBIOS (qboot gives virtio devices no I/O space)" : "qboot (no devices; faster)");
	guest_why_devices(p);
	guest_why_volumes(p);
	if (f->net && !guest_plan_has_net(p))
		guest_why(p, "no NIC: the manifest declares no net device (Solo5 aborts on an undeclared one)");
	if (f->has_block_disk && !has_block(p))
		guest_why(p, "the image's block disk is left out: %s",
			  p->n_blockdevs ? "the container's devices take the manifest's block devices"
					 : "the manifest declares no block device");
	return 0;
}

static int plan(const struct guest_facts *f, struct guest_plan *p, uk_error *err)
{
	int r;
	if ((r = guest_solo5_vm(f, p, "Solo5 (virtio)", err)) < 0)
		return r;
	if ((r = guest_cmdline_build(&f->cmd, p->cmdline, sizeof(p->cmdline), err)) < 0)
		return r;
	p->dhcp = guest_plan_has_net(p) && f->netcfg != GUEST_NETCFG_STATIC;
	guest_why_net(p, false, "");
	guest_why(p, "command line: envs, command, args as plain words (the application's parser is not known)");
	guest_why(p, "exit: the last solo5_exit(N) on the console, solo5_abort() a crash");
	return 0;
}

const struct guest_contract guest_contract_solo5 = { .framework = GUEST_SOLO5, .plan = plan };
