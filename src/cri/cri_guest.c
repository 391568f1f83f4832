/* The guest contract of a container (src/guest): its kernel probed, the facts gathered from
 * the image, the pod and the request, the plan applied to the container's VM fields. */
#include <string.h>

#include "../common/log.h"
#include "../guest/probe.h"
#include "cri.h"
#include "volumes.h"

int cri_guest_probe(const struct image_info *img, struct guest_binary **ret, uk_error *err)
{
	*ret = NULL;
	if (!img->kernel)
		return 0;
	_cleanup_free_ struct guest_binary *bin = calloc(1, sizeof(*bin));
	if (!bin)
		return uk_err(err, ENOMEM, "out of memory");
	int r = guest_probe_file(img->kernel, bin, err);
	if (r < 0)
		return uk_err_ctx_r(err, r, "config.image.image \"%s\": its kernel", img->id);
	*ret = TAKE_PTR(bin);
	return 0;
}

/* A VM annotation: the container's, else the pod's. */
static const char *vm_annotation(const struct container *c, const struct sandbox *s, const char *key)
{
	const char *v = cri_json_get(c->annotations, key);
	return v ? v : cri_json_get(s->annotations, key);
}

static enum guest_netcfg netcfg_of(const char *v)
{
	if (v && strcmp(v, "dhcp") == 0)
		return GUEST_NETCFG_DHCP;
	if (v && strcmp(v, "static") == 0)
		return GUEST_NETCFG_STATIC;
	return GUEST_NETCFG_AUTO; /* the value was checked at the door */
}

/* What the plan says for people: kept in the record, shown by ContainerStatus verbose. */
static json_object *plan_json(const struct guest_plan *p)
{
	json_object *o = json_object_new_object();
	if (!o)
		return NULL;
	json_object_object_add(o, "framework", json_object_new_string(guest_framework_name(p->framework)));
	if (p->version[0])
		json_object_object_add(o, "version", json_object_new_string(p->version));
	json_object_object_add(o, "found_by", json_object_new_string(p->found_by));
	json_object_object_add(o, "why", json_object_new_string(p->why));
	json_object_object_add(o, "dhcp", json_object_new_boolean(p->dhcp));
	json_object_object_add(o, "exit", json_object_new_string(guest_exit_name(p->exit)));
	return o;
}

/* The PIT: the annotation's choice, else the contract's; a contract's "off" was made for its
 * machine, so another machine from the annotation keeps the PIT. Shown beside the plan. */
static int apply_pit(const struct guest_plan *p, const struct sandbox *s, struct container *c)
{
	const char *ann = vm_annotation(c, s, ANN_PIT); /* checked at the door */
	const char *pit = guest_pit_name(p->pit), *why = p->pit_why;
	if (ann && strcmp(ann, "auto") != 0) {
		pit = ann;
		why = "annotation " ANN_PIT;
	} else if (p->pit != GUEST_PIT_ON && c->machine && strcmp(c->machine, guest_machine_name(p->machine)) != 0) {
		pit = "on";
		why = "on: annotation " ANN_MACHINE " chose a machine the contract's choice was not made for";
	}
	c->pit = strdup(pit);
	json_object *jp = json_object_new_string(pit), *jw = json_object_new_string(why);
	if (!c->pit || !jp || !jw) {
		json_object_put(jp);
		json_object_put(jw);
		return -ENOMEM;
	}
	json_object_object_add(c->guest, "pit", jp);
	json_object_object_add(c->guest, "pit_why", jw);
	return 0;
}

/* The container's VM fields from the plan; machine and firmware from the annotations when
 * they are given (a person's choice over the contract's). */
static int apply_plan(const struct guest_plan *p, const struct sandbox *s, struct container *c, bool *use_disk)
{
	const char *machine = vm_annotation(c, s, ANN_MACHINE), *firmware = vm_annotation(c, s, ANN_FIRMWARE);
	if (!machine && p->machine != GUEST_MACHINE_AUTO)
		machine = guest_machine_name(p->machine);
	if (!firmware && p->firmware != GUEST_FW_AUTO)
		firmware = guest_firmware_name(p->firmware);
	free(c->machine);
	c->machine = machine && strcmp(machine, "auto") != 0 ? strdup(machine) : NULL;
	c->firmware = firmware && strcmp(firmware, "auto") != 0 ? strdup(firmware) : NULL;
	c->exit_contract = strdup(guest_exit_name(p->exit));
	c->devices = json_object_new_array();
	c->guest = plan_json(p);
	if (!c->exit_contract || !c->devices || !c->guest || (machine && strcmp(machine, "auto") && !c->machine) ||
	    (firmware && strcmp(firmware, "auto") && !c->firmware))
		return -ENOMEM;
	if (apply_pit(p, s, c) < 0)
		return -ENOMEM;
	c->nic = false;
	*use_disk = false;
	for (size_t i = 0; i < p->n_devices; i++) {
		enum guest_dev_kind k = p->devices[i].kind;
		json_object_array_add(c->devices, json_object_new_string(k == GUEST_DEV_NET	   ? "net"
									 : k == GUEST_DEV_VOLUME ? "blockdev"
												  : "block"));
		c->nic |= k == GUEST_DEV_NET;
		*use_disk |= k == GUEST_DEV_BLOCK;
	}
	return 0;
}

/* The guest's facts: what the request asks (its command, arguments and environment), what
 * the image is, and the pod's network as the guest sees it. */
struct facts_bufs {
	struct guest_env *envs;
	struct rt_pod_net pn;
	struct guest_net net;
	struct guest_mount mounts[CRI_VOL_MOUNTS_MAX];
	size_t mount_of[CRI_VOL_MOUNTS_MAX]; /* facts mount k is vols->mounts[mount_of[k]] */
	size_t n_mounts;
	struct guest_blockdev blockdevs[CRI_VOL_DEVICES_MAX];
};

/* The mounts and devices as the contract sees them. */
static void volume_facts(const struct cri_volumes *v, struct facts_bufs *b)
{
	for (size_t i = 0; v && i < v->n_mounts; i++) {
		const struct cri_vol_mount *m = &v->mounts[i];
		b->mount_of[b->n_mounts] = i;
		b->mounts[b->n_mounts++] = (struct guest_mount){ .guest_path = m->container_path, .readonly = m->readonly,
								 .is_file = m->kind == CRI_VOL_FILE,
								 .kubelet_default = m->kubelet_default };
	}
	for (size_t i = 0; v && i < v->n_devices; i++)
		b->blockdevs[i] = (struct guest_blockdev){ .guest_path = v->devices[i].container_path,
							   .readonly = v->devices[i].readonly };
}

static int gather_facts(struct runtime *rt, const struct sandbox *s, const Runtime__V1__ContainerConfig *cfg,
			const struct image_info *img, const struct guest_binary *bin, const struct container *c,
			const struct cri_volumes *vols, struct facts_bufs *b, struct guest_facts *f, uk_error *err)
{
	volume_facts(vols, b);
	/* n_envs is bounded by cri_check_container_config. */
	if (!(b->envs = calloc(cfg->n_envs + 1, sizeof(*b->envs))))
		return uk_err(err, ENOMEM, "out of memory");
	for (size_t i = 0; i < cfg->n_envs; i++)
		b->envs[i] = (struct guest_env){ .key = cfg->envs[i]->key, .value = cfg->envs[i]->value };
	bool has_net = rt_net_pod(rt->net, s, &b->pn);
	b->net = (struct guest_net){ .ip = b->pn.ip, .prefix = b->pn.prefix, .gateway = b->pn.gateway,
				     .mask = b->pn.mask, .dns = b->pn.dns[0] ? b->pn.dns : NULL,
				     .hostname = s->hostname };
	*f = (struct guest_facts){
		.urunc_type = img->unikernel_type, .urunc_version = img->unikernel_version, .bin = bin,
		.has_block_disk = img->disk != NULL, .net = has_net ? &b->net : NULL,
		.netcfg = netcfg_of(vm_annotation(c, s, ANN_NETCFG)),
		.cmd = { .envs = b->envs, .n_envs = cfg->n_envs,
			 .command = (const char *const *)cfg->command, .n_command = cfg->n_command,
			 .args = (const char *const *)cfg->args, .n_args = cfg->n_args,
			 .image_cmdline = img->cmdline, .field_prefix = "config." },
		.mounts = b->mounts, .n_mounts = b->n_mounts,
		.blockdevs = b->blockdevs, .n_blockdevs = vols ? vols->n_devices : 0,
	};
	return 0;
}

static json_object *obj3(const char *k1, json_object *v1, const char *k2, json_object *v2, const char *k3,
			 json_object *v3)
{
	json_object *o = json_object_new_object();
	if (o) {
		json_object_object_add(o, k1, v1);
		json_object_object_add(o, k2, v2);
		json_object_object_add(o, k3, v3);
	}
	return o;
}

/* The record's shares, blockdevs and mounts from the plan (NULL when there are none). */
static int apply_volumes(const struct guest_plan *p, const struct cri_volumes *v, const struct facts_bufs *b,
			 struct container *c)
{
	json_object *shares = json_object_new_array(), *blockdevs = json_object_new_array(),
		    *mounts = json_object_new_array();
	c->shares = shares;
	c->blockdevs = blockdevs;
	c->mounts = mounts;
	if (!shares || !blockdevs || !mounts)
		return -ENOMEM;
	for (size_t k = 0; k < p->n_mounts; k++) {
		const struct guest_mount_plan *m = &p->mounts[k];
		const struct cri_vol_mount *cm = &v->mounts[b->mount_of[k]];
		if (m->fate != GUEST_MOUNT_TAKEN) {
			log_info("ctr=%s mount=%s msg=\"left out\" why=\"%s\"", c->name ? c->name : "", m->path, m->why);
			continue;
		}
		json_object *sh = obj3("tag", json_object_new_string(m->tag), "path", json_object_new_string(cm->host_path),
				       "readonly", json_object_new_boolean(m->readonly));
		if (sh && m->is_file) /* vmwrapper stages it in a directory of its own */
			json_object_object_add(sh, "file", json_object_new_string(m->file));
		json_object_array_add(shares, sh);
		json_object *st = obj3("container_path", json_object_new_string(m->path), "host_path",
				       json_object_new_string(cm->host_path), "readonly", json_object_new_boolean(m->readonly));
		if (st)
			json_object_object_add(st, "tag", json_object_new_string(m->tag));
		json_object_array_add(mounts, st);
	}
	for (size_t k = 0; k < p->n_blockdevs; k++)
		json_object_array_add(blockdevs, obj3("path", json_object_new_string(v->devices[k].host_path), "serial",
						      json_object_new_string(p->blockdevs[k].serial), "readonly",
						      json_object_new_boolean(p->blockdevs[k].readonly)));
	/* Empty lists are not kept: older records and containers without volumes look alike. */
	if (!json_object_array_length(shares))
		json_object_put(TAKE_PTR(c->shares));
	if (!json_object_array_length(blockdevs))
		json_object_put(TAKE_PTR(c->blockdevs));
	if (!json_object_array_length(mounts))
		json_object_put(TAKE_PTR(c->mounts));
	return 0;
}

int cri_guest_plan(struct runtime *rt, const struct sandbox *s, const Runtime__V1__ContainerConfig *cfg,
		   const struct image_info *img, const struct guest_binary *bin, const struct cri_volumes *vols,
		   struct container *c, bool *use_disk, uk_error *err)
{
	_cleanup_free_ struct facts_bufs *b = calloc(1, sizeof(*b));
	struct guest_facts f;
	_cleanup_free_ struct guest_plan *p = calloc(1, sizeof(*p));
	int r = p && b ? gather_facts(rt, s, cfg, img, bin, c, vols, b, &f, err) : uk_err(err, ENOMEM, "out of memory");
	if (r >= 0 && (r = guest_plan_resolve(&f, p, err)) < 0)
		(void)uk_err_ctx_r(err, r, "the guest contract of config.image.image \"%s\"", cfg->image->image);
	if (b)
		free(b->envs);
	if (r < 0)
		return r;
	if ((r = rt_net_expand(rt->net, s, p->cmdline, &c->cmdline, err)) < 0)
		return uk_err_ctx_r(err, r, "the command line");
	if (apply_plan(p, s, c, use_disk) < 0 || apply_volumes(p, vols, b, c) < 0)
		return uk_err(err, ENOMEM, "out of memory");
	return 0;
}

json_object *cri_guest_of_image(const struct image_info *img)
{
	_cleanup_free_ struct guest_binary *bin = NULL;
	_cleanup_free_ struct guest_plan *p = calloc(1, sizeof(*p));
	uk_error e = { 0 };
	json_object *o = json_object_new_object();
	if (!o || !p)
		return o;
	/* As it would run with a pod network and no request of its own. */
	struct guest_net net = { .ip = "10.0.0.2", .prefix = 24, .gateway = "10.0.0.1", .mask = "255.255.255.0" };
	struct guest_facts f = { .urunc_type = img->unikernel_type, .urunc_version = img->unikernel_version,
				 .has_block_disk = img->disk != NULL, .net = &net,
				 .cmd = { .image_cmdline = img->cmdline, .field_prefix = "config." } };
	int r = cri_guest_probe(img, &bin, &e);
	f.bin = bin;
	if (r >= 0)
		r = guest_plan_resolve(&f, p, &e);
	if (r < 0) {
		json_object_object_add(o, "error", json_object_new_string(e.msg));
		return o;
	}
	json_object_object_add(o, "framework", json_object_new_string(guest_framework_name(p->framework)));
	if (p->version[0])
		json_object_object_add(o, "version", json_object_new_string(p->version));
	json_object_object_add(o, "foundBy", json_object_new_string(p->found_by));
	json_object_object_add(o, "pit", json_object_new_string(guest_pit_name(p->pit)));
	if (bin)
		json_object_object_add(o, "binary", json_object_new_string(bin->why));
	return o;
}
