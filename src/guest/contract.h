/* The interface between the dispatcher (guest.c) and the framework contracts, one file per
 * framework (unikraft.c, solo5.c, mirage.c, linux.c, generic.c), and the steps they share.
 * Internal to src/guest. */
#ifndef UK_GUEST_CONTRACT_H
#define UK_GUEST_CONTRACT_H

#include "guest.h"

struct guest_contract {
	enum guest_framework framework;
	/* Fill machine, firmware, devices, exit, dhcp, cmdline and why of p; framework, version
	 * and found_by are set, f->net is checked. Pure; errors name the field. */
	int (*plan)(const struct guest_facts *f, struct guest_plan *p, uk_error *err);
};

extern const struct guest_contract guest_contract_unikraft, guest_contract_solo5, guest_contract_mirage,
	guest_contract_linux, guest_contract_generic;

/* Append to p->why, "; "-separated (guest_textf: what does not fit is cut visibly). */
void guest_why(struct guest_plan *p, const char *fmt, ...) _printf_(2, 3);

/* Add a device; -E2BIG past GUEST_MAX_DEVICES. */
int guest_add_device(struct guest_plan *p, enum guest_dev_kind kind, const char *name, uk_error *err);
/* The devices of a guest without a manifest: the image's block disk, then the pod's NIC. */
int guest_default_devices(const struct guest_facts *f, struct guest_plan *p, uk_error *err);
/* The devices a Solo5 manifest declares, in its order (solo5.c). */
int guest_solo5_devices(const struct guest_facts *f, struct guest_plan *p, uk_error *err);
/* Machine, firmware, devices and exit of a Solo5 virtio guest (solo5.c; MirageOS too);
 * label starts its why ("Solo5 (virtio)"). */
int guest_solo5_vm(const struct guest_facts *f, struct guest_plan *p, const char *label, uk_error *err);
/* "devices: disk, net" into the why. */
void guest_why_devices(struct guest_plan *p);

/* How the guest gets its address, into the why; how: the parameters, when static. */
void guest_why_net(struct guest_plan *p, bool static_net, const char *how);

bool guest_plan_has_net(const struct guest_plan *p);
/* The guest takes its address on its command line: the pod has a NIC in this VM and the
 * network config says static, or auto where the framework is static by default. */
bool guest_net_static(const struct guest_facts *f, const struct guest_plan *p, bool static_by_default);
/* "255.255.0.0" for 16 into buf (16 bytes), or net->mask if set. */
const char *guest_net_mask(const struct guest_net *net, char buf[16]);

/* A version "X.Y[.Z]" with an optional "v" and any suffix ("0.17.0~484ff209"): false if it
 * is not one. */
bool guest_version_parse(const char *s, unsigned v[3]);

#endif
