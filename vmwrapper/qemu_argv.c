#include <limits.h>
#include <stdarg.h>
#include <string.h>

#include "../src/common/util.h"
#include "qemu_argv.h"

/* Every virtio device takes a PCI slot on pc and q35 (-nodefaults leaves 30 free on the
 * root bus), or one of microvm's virtio-mmio transports. */
static int check_room(const struct vm_spec *s, enum vm_machine m, uk_error *err)
{
	unsigned n = (s->disk ? 1u : 0u) + s->n_nets + s->nics_at_claim + s->n_blockdevs + s->n_shares;
	unsigned room = m == VM_MACHINE_MICROVM ? QEMU_MICROVM_VIRTIO_MAX : QEMU_PCI_SLOTS_FREE;
	if (n > room)
		return uk_err(err, E2BIG,
			      "fields \"disk\", \"net\", \"blockdevs\" and \"shares\" make %u virtio devices, machine %s has "
			      "room for %u",
			      n, vm_machine_name(m), room);
	return 0;
}

/* The PIT once the accelerator is known: "off-under-kvm" keeps it under TCG, where the
 * guest may have nothing else to calibrate its TSC or LAPIC timer against. */
static void resolve_pit(const struct vm_spec *s, struct vm_plan *p)
{
	switch (s->pit) {
	case VM_PIT_ON:
		p->pit = true;
		p->why_pit = "pit on";
		break;
	case VM_PIT_OFF:
		p->pit = false;
		p->why_pit = "pit off";
		break;
	case VM_PIT_OFF_UNDER_KVM:
		p->pit = p->accel != VM_ACCEL_KVM;
		p->why_pit = p->pit ? "pit on (off-under-kvm, accelerator tcg)" : "pit off (off-under-kvm, accelerator kvm)";
		break;
	}
}

int vm_plan_resolve(const struct vm_spec *s, enum guest_boot kind, bool kvm_ok, struct vm_plan *ret,
		    uk_error *err)
{
	struct vm_plan p = { .machine = s->machine, .accel = s->accel, .kernel_kind = kind };

	if (s->kernel && (kind == GUEST_BOOT_UNKNOWN || kind == GUEST_BOOT_ELF))
		return uk_err(err, EINVAL,
			      "kernel %s is not a PVH ELF (Xen note 18), a bzImage or a multiboot image",
			      s->kernel);
	/* A disk boots only without a kernel; beside one it is a data disk, and the kernel
	 * picks the machine. */
	bool boot_disk = s->disk && !s->kernel;
	if (p.machine == VM_MACHINE_AUTO) {
		if (boot_disk)
			p.machine = VM_MACHINE_Q35;
		else if (kind == GUEST_BOOT_MULTIBOOT)
			p.machine = VM_MACHINE_PC;
		else
			p.machine = VM_MACHINE_MICROVM;
	}
	if (p.machine == VM_MACHINE_MICROVM && kind == GUEST_BOOT_MULTIBOOT)
		return uk_err(err, EINVAL, "a multiboot kernel needs machine pc or q35, not microvm");
	/* vm_spec_validate refuses it already; a spec built otherwise must not get past here. */
	if (p.machine != VM_MACHINE_PC && s->nics_at_claim)
		return uk_err(err, EINVAL, "field \"nics_at_claim\" needs machine pc, not %s", vm_machine_name(p.machine));
	int r = check_room(s, p.machine, err);
	if (r < 0)
		return r;

	/* qboot boots -kernel images in a few ms; disks need SeaBIOS. */
	if (p.machine != VM_MACHINE_MICROVM) {
		enum vm_firmware fw = s->firmware;
		if (fw == VM_FW_AUTO)
			fw = boot_disk ? VM_FW_SEABIOS : VM_FW_QBOOT;
		if (fw == VM_FW_QBOOT && boot_disk)
			return uk_err(err, EINVAL, "firmware qboot cannot boot a disk; use seabios");
		p.firmware = fw == VM_FW_QBOOT ? QEMU_QBOOT_ROM : NULL;
	}

	switch (p.accel) {
	case VM_ACCEL_AUTO:
		p.accel = kvm_ok ? VM_ACCEL_KVM : VM_ACCEL_TCG;
		p.why_accel = kvm_ok ? "auto: /dev/kvm opened" : "auto: /dev/kvm unavailable";
		break;
	case VM_ACCEL_KVM:
		if (!kvm_ok)
			return uk_err(err, ENODEV, "accelerator kvm requested but /dev/kvm cannot be opened");
		p.why_accel = "requested";
		break;
	case VM_ACCEL_TCG:
		p.why_accel = "requested";
		break;
	}
	resolve_pit(s, &p);
	*ret = p;
	return 0;
}

struct argv_buf {
	char **v;
	size_t n, cap;
	int err;
};

static void add(struct argv_buf *a, const char *fmt, ...) _printf_(2, 3);
static void add(struct argv_buf *a, const char *fmt, ...)
{
	if (a->err)
		return;
	if (a->n + 2 > a->cap) {
		size_t ncap = a->cap ? a->cap * 2 : 64;
		char **nv = realloc(a->v, ncap * sizeof(char *));
		if (!nv) {
			a->err = ENOMEM;
			return;
		}
		a->v = nv;
		a->cap = ncap;
	}
	va_list ap;
	va_start(ap, fmt);
	int r = vasprintf(&a->v[a->n], fmt, ap);
	va_end(ap);
	if (r < 0) {
		a->err = ENOMEM;
		return;
	}
	a->v[++a->n] = NULL;
}

/* QemuOpts values escape a comma by doubling it. */
static char *opt_escape(const char *s)
{
	size_t n = 0;
	for (const char *p = s; *p; p++)
		n += *p == ',' ? 2 : 1;
	char *o = malloc(n + 1), *q = o;
	if (!o)
		return NULL;
	for (const char *p = s; *p; p++) {
		*q++ = *p;
		if (*p == ',')
			*q++ = ',';
	}
	*q = '\0';
	return o;
}

static void add_disk(struct argv_buf *a, const struct vm_spec *s, bool mmio)
{
	_cleanup_free_ char *file = opt_escape(s->disk);
	if (!file)
		a->err = ENOMEM;
	add(a, "-drive");
	/* snapshot=on keeps a person's image unchanged; unikd gives each container an
	 * overlay of its own, which QEMU writes. */
	add(a, "file=%s,format=%s,if=none,id=disk0%s", file ? file : "",
	    s->disk_format == VM_DISK_QCOW2 ? "qcow2" : "raw", s->disk_snapshot ? ",snapshot=on" : "");
	add(a, "-device");
	if (!s->kernel)
		add(a, "virtio-blk-pci,drive=disk0,bootindex=0");
	else /* a data disk; microvm has no PCI, only virtio-mmio */
		add(a, "%s,drive=disk0", mmio ? "virtio-blk-device" : "virtio-blk-pci");
}

json_object *qemu_nic_netdev(unsigned i, const char *tap, const char *vhost)
{
	char id[16];
	json_object *o = json_object_new_object();
	if (!o)
		return NULL;
	snprintf(id, sizeof(id), "net%u", i);
	uk_json_add_str(o, "type", "tap");
	uk_json_add_str(o, "id", id);
	uk_json_add_str(o, "fd", tap);
	if (vhost) {
		json_object_object_add(o, "vhost", json_object_new_boolean(true));
		uk_json_add_str(o, "vhostfd", vhost);
	}
	if (json_object_object_length(o) != (vhost ? 5 : 3)) {
		json_object_put(o);
		return NULL;
	}
	return o;
}

json_object *qemu_nic_device(unsigned i, const char *mac, bool mmio)
{
	char id[16];
	json_object *o = json_object_new_object();
	if (!o)
		return NULL;
	snprintf(id, sizeof(id), "net%u", i);
	uk_json_add_str(o, "driver", mmio ? "virtio-net-device" : "virtio-net-pci");
	uk_json_add_str(o, "netdev", id);
	uk_json_add_str(o, "mac", mac);
	if (json_object_object_length(o) != 3) {
		json_object_put(o);
		return NULL;
	}
	return o;
}

/* A QMP description as a QemuOpts argument: the first member's value bare ("tap", the
 * driver), then key=value, booleans as on/off, commas doubled. */
static void add_opts(struct argv_buf *a, json_object *o)
{
	_cleanup_free_ char *s = NULL;
	size_t len = 0;
	_cleanup_fclose_ FILE *f = o ? open_memstream(&s, &len) : NULL;
	if (!f) {
		a->err = ENOMEM;
		return;
	}
	bool first = true;
	json_object_object_foreach(o, key, v)
	{
		const char *val = json_object_is_type(v, json_type_boolean) ? (json_object_get_boolean(v) ? "on" : "off")
									      : json_object_get_string(v);
		_cleanup_free_ char *esc = opt_escape(val);
		if (!esc)
			a->err = ENOMEM;
		else if (first)
			fprintf(f, "%s", esc);
		else
			fprintf(f, ",%s=%s", key, esc);
		first = false;
	}
	if (fclose(TAKE_PTR(f)) != 0)
		a->err = ENOMEM;
	add(a, "%s", s ? s : "");
}

static void add_net(struct argv_buf *a, const struct vm_spec *s, unsigned i, bool mmio)
{
	char tap[16], vhost[16];
	snprintf(tap, sizeof(tap), "%d", QEMU_FD_NET_BASE + 2 * (int)i);
	snprintf(vhost, sizeof(vhost), "%d", QEMU_FD_NET_BASE + 2 * (int)i + 1);
	_cleanup_json_ json_object *netdev = qemu_nic_netdev(i, tap, s->nets[i].vhost_fd >= 0 ? vhost : NULL);
	_cleanup_json_ json_object *device = qemu_nic_device(i, s->nets[i].mac, mmio);
	add(a, "-netdev");
	add_opts(a, netdev);
	add(a, "-device");
	add_opts(a, device);
}

/* A raw disk the guest finds by its serial. -drive, like the disk's, since QEMU picks the
 * protocol driver from the file (file for a regular file, host_device for a block device),
 * which -blockdev would have us choose; never a snapshot: the guest's writes are the point. */
static void add_blockdev(struct argv_buf *a, const struct vm_spec *s, unsigned i, bool mmio)
{
	const struct vm_blockdev *b = &s->blockdevs[i];
	_cleanup_free_ char *file = opt_escape(b->path);
	if (!file)
		a->err = ENOMEM;
	add(a, "-drive");
	add(a, "file=%s,format=raw,if=none,id=ukblk%u%s", file ? file : "", i, b->readonly ? ",readonly=on" : "");
	add(a, "-device");
	/* serial: a validated name, no commas */
	add(a, "%s,drive=ukblk%u,serial=%s", mmio ? "virtio-blk-device" : "virtio-blk-pci", i, b->serial);
}

/* A directory over virtio-9p (README.md, "Shares and block devices"). Read-only: passthrough,
 * which shows the host's owners, modes and symbolic links (kubelet's ..data layout) as they
 * are, while readonly=on refuses every change. Read-write: mapped-xattr, so the guest's
 * owners, modes, devices and links live in user.virtfs.* attributes and the host's files
 * stay QEMU's (root, 0600/0700): the guest cannot chown a host file or leave a setuid one.
 * multidevs=remap keeps inode numbers unique when the directory spans mounts (bind-mounted
 * files). QEMU never follows a symbolic link in the export on the host side. */
static void add_share(struct argv_buf *a, const struct vm_spec *s, unsigned i, bool mmio)
{
	const struct vm_share *sh = &s->shares[i];
	char dir[PATH_MAX];
	if (vm_share_export_dir(s, i, dir, sizeof(dir)) < 0)
		a->err = ENAMETOOLONG; /* validate made sure it fits */
	_cleanup_free_ char *path = opt_escape(dir);
	if (!path)
		a->err = ENOMEM;
	add(a, "-fsdev");
	add(a, "local,id=ukfs%u,path=%s,security_model=%s,multidevs=remap%s", i, path ? path : "",
	    sh->readonly ? "passthrough" : "mapped-xattr", sh->readonly ? ",readonly=on" : "");
	add(a, "-device");
	/* mount_tag: a validated name, no commas */
	add(a, "%s,fsdev=ukfs%u,mount_tag=%s", mmio ? "virtio-9p-device" : "virtio-9p-pci", i, sh->tag);
}

/* QEMU puts devices on the bus in command-line order: on pc and q35 the first takes the
 * first free PCI slot, and so on. A guest that matches devices by that order (Solo5, to its
 * manifest) gets them in the spec's order. Shares come after them all. */
static void add_devices(struct argv_buf *a, const struct vm_spec *s, bool mmio)
{
	if (!s->has_device_order) {
		if (s->disk)
			add_disk(a, s, mmio);
		for (unsigned i = 0; i < s->n_nets; i++)
			add_net(a, s, i, mmio);
		for (unsigned i = 0; i < s->n_blockdevs; i++)
			add_blockdev(a, s, i, mmio);
	} else {
		/* vm_spec_validate made the list name the disk, each NIC and each block device
		 * exactly once. */
		unsigned net = 0, bdev = 0;
		for (unsigned k = 0; k < s->n_devices; k++) {
			if (s->devices[k] == VM_DEV_BLOCK && s->disk)
				add_disk(a, s, mmio);
			else if (s->devices[k] == VM_DEV_NET && net < s->n_nets)
				add_net(a, s, net++, mmio);
			else if (s->devices[k] == VM_DEV_BLOCKDEV && bdev < s->n_blockdevs)
				add_blockdev(a, s, bdev++, mmio);
		}
	}
	for (unsigned i = 0; i < s->n_shares; i++)
		add_share(a, s, i, mmio);
}

int qemu_build_argv(const struct vm_spec *s, const struct vm_plan *plan, char ***ret, uk_error *err)
{
	struct argv_buf a = { 0 };
	bool mmio = plan->machine == VM_MACHINE_MICROVM;

	add(&a, "%s", s->qemu_binary ? s->qemu_binary : QEMU_DEFAULT_BINARY);
	add(&a, "-name");
	add(&a, "%s", s->id); /* validated: no commas */
	add(&a, "-machine");
	/* pit=off: no QEMU timer for it (under TCG an idle guest's QEMU then sleeps). */
	add(&a, "%s%s", vm_machine_name(plan->machine), plan->pit ? "" : ",pit=off");
	add(&a, "-accel");
	add(&a, "%s", vm_accel_name(plan->accel));
	if (s->cpu_model) {
		add(&a, "-cpu");
		add(&a, "%s", s->cpu_model);
	}
	add(&a, "-smp");
	add(&a, "%u", s->vcpus);
	add(&a, "-m");
	add(&a, "%u", s->memory_mib);
	add(&a, "-nodefaults");
	add(&a, "-no-user-config");
	add(&a, "-display");
	add(&a, "none");
	add(&a, "-sandbox");
	add(&a, "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny");
	/* A reset (triple fault, reboot) ends the VM instead of looping. */
	add(&a, "-no-reboot");
	/* A pool VM waits, paused, for its claim's "cont". */
	if (s->pool)
		add(&a, "-S");
	add(&a, "-action");
	add(&a, "panic=shutdown");
	if (plan->firmware) {
		add(&a, "-bios");
		add(&a, "%s", plan->firmware);
	}

	add(&a, "-chardev");
	add(&a, "socket,id=console,fd=%d", QEMU_FD_CONSOLE);
	add(&a, "-serial");
	add(&a, "chardev:console");
	add(&a, "-chardev");
	add(&a, "socket,id=qmp-ctl,fd=%d", QEMU_FD_QMP_CTL);
	add(&a, "-mon");
	add(&a, "chardev=qmp-ctl,mode=control");
	add(&a, "-chardev");
	add(&a, "socket,id=qmp,fd=%d,server=on,wait=off", QEMU_FD_QMP);
	add(&a, "-mon");
	add(&a, "chardev=qmp,mode=control");
	add(&a, "-chardev");
	add(&a, "socket,id=qmp-debug,fd=%d,server=on,wait=off", QEMU_FD_QMP_DEBUG);
	add(&a, "-mon");
	add(&a, "chardev=qmp-debug,mode=control");

	add(&a, "-device");
	add(&a, "isa-debug-exit");
	add(&a, "-device");
	add(&a, "pvpanic");

	if (s->kernel) {
		add(&a, "-kernel");
		add(&a, "%s", s->kernel);
		if (s->initrd) {
			add(&a, "-initrd");
			add(&a, "%s", s->initrd);
		}
		if (s->cmdline && *s->cmdline) {
			add(&a, "-append");
			add(&a, "%s", s->cmdline);
		}
	}
	add_devices(&a, s, mmio);

	if (a.err) {
		strv_free(a.v);
		return uk_err(err, a.err, "out of memory building the QEMU command line");
	}
	*ret = a.v;
	return 0;
}
