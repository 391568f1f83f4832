/* Pod sandboxes in CNI mode: the record is the commit point as everywhere, but it comes
 * first here (the plugins need the id, and a crash must find what they made): phase
 * "adding" before the namespace and ADD, "added" after; "deleting" before DEL, "deleted"
 * after. ADD and DEL run without the runtime's lock, the sandbox marked busy, so other
 * pods go on; one sandbox's operations never overlap. */
#include <string.h>

#include "../common/log.h"
#include "../common/util.h"
#include "runtime_internal.h"

static const char *phase_of(const struct sandbox *s)
{
	json_object *p;
	return s->cni && json_object_object_get_ex(s->cni, "phase", &p) ? json_object_get_string(p) : "";
}

static int set_phase(struct sandbox *s, const char *phase)
{
	if (!s->cni && !(s->cni = json_object_new_object()))
		return -ENOMEM;
	json_object_object_add(s->cni, "phase", json_object_new_string(phase));
	return 0;
}

/* Take s out of the registry and off the disk (lock held). */
static void forget_sandbox(struct runtime *rt, struct sandbox *s)
{
	uk_error e = { 0 };
	if (record_delete(rt->sandbox_dir, s->id, &e) < 0)
		log_error("pod=%s msg=\"cannot remove the record of a failed sandbox\" error=\"%s\"", s->id, e.msg);
	for (size_t i = 0; i < rt->n_sb; i++)
		if (rt->sb[i] == s) {
			rt->sb[i] = rt->sb[--rt->n_sb];
			break;
		}
}

int rt_sandbox_create_cni(struct runtime *rt, struct sandbox *s, uk_error *err)
{
	int r;
	s->state = SANDBOX_NOTREADY;
	if (set_phase(s, "adding") < 0)
		return uk_err(err, ENOMEM, "out of memory");
	/* Lock held on entry (the checks are done): the record first, so a crash during ADD is
	 * found and undone at start-up. */
	if ((r = rt_save_sandbox(rt, s, err)) < 0)
		return r;
	s->adding = s->busy = true;
	rt->sb[rt->n_sb++] = s;
	rt_unlock(rt);
	r = rt_cni_up(rt->net->cni, s, err);
	rt_lock(rt);
	if (r >= 0) {
		s->state = SANDBOX_READY;
		if ((r = rt_save_sandbox(rt, s, err)) < 0) {
			/* Not recorded as ready: DEL, as for a failed ADD (start-up would, too). */
			uk_error e = { 0 };
			rt_unlock(rt);
			if (rt_cni_down(rt->net->cni, s, &e) < 0)
				log_error("pod=%s msg=\"DEL after an unsaved ADD failed; start-up retries\" error=\"%s\"",
					  s->id, e.msg);
			rt_lock(rt);
		}
	}
	s->adding = s->busy = false;
	if (r < 0) {
		forget_sandbox(rt, s);
		sandbox_free(s);
		return r;
	}
	return 0;
}

/* NOTREADY first (as in bridge mode), then DEL with what ADD recorded; the namespace goes
 * only after DEL succeeded. A failed DEL keeps the pod NOTREADY with its network recorded:
 * the next StopPodSandbox, RemovePodSandbox or start-up tries again. Lock held. */
int rt_sandbox_release_cni(struct runtime *rt, struct sandbox *s, uk_error *err)
{
	int r;
	if (strcmp(phase_of(s), "deleted") == 0)
		return 0;
	if (s->busy)
		return uk_err(err, EAGAIN, "pod sandbox %s has a network operation under way; retry", s->id);
	if (set_phase(s, "deleting") < 0)
		return uk_err(err, ENOMEM, "out of memory");
	if ((r = rt_save_sandbox(rt, s, err)) < 0)
		return r;
	s->busy = true;
	s->refs++;
	rt_unlock(rt);
	r = rt_cni_down(rt->net->cni, s, err);
	rt_lock(rt);
	s->busy = false;
	s->refs--;
	if (r < 0)
		return uk_err_ctx_r(err, r, "DEL the network of pod %s", s->id);
	(void)set_phase(s, "deleted"); /* the object exists: no allocation fails here */
	free(s->ip);
	s->ip = NULL;
	(void)rt_save_sandbox(rt, s, NULL); /* a failure: the next stop or start-up DELs again, harmlessly */
	log_info("pod=%s msg=\"pod network released\"", s->id);
	return 0;
}

/* At start-up, with the lock held and nothing else running: an ADD cut short is undone, a
 * DEL cut short (or owed after a reboot) is done, and namespaces nobody records go. */
static bool has_record(const char *id, void *ud)
{
	struct runtime *rt = ud;
	return rt_sandbox_by_id(rt, id) != NULL;
}

void rt_reconcile_cni(struct runtime *rt)
{
	for (size_t i = 0; i < rt->n_sb;) {
		struct sandbox *s = rt->sb[i];
		const char *phase = phase_of(s);
		uk_error e = { 0 };
		if (strcmp(phase, "adding") == 0) {
			/* The RunPodSandbox never answered: kubelet makes the pod again. */
			if (rt_cni_undo_add(rt->net->cni, s, &e) < 0) {
				log_error("pod=%s msg=\"cannot undo an ADD cut short; the next start retries\" error=\"%s\"",
					  s->id, e.msg);
				i++;
				continue;
			}
			log_warn("pod=%s msg=\"undid a RunPodSandbox cut short (CNI ADD)\"", s->id);
			forget_sandbox(rt, s);
			sandbox_free(s);
			continue;
		}
		if (s->state == SANDBOX_NOTREADY && strcmp(phase, "deleted") != 0) {
			/* A DEL cut short may have left its plugins' programs running. */
			if (rt_cni_settle(rt->net->cni, s->id, &e) < 0 || rt_sandbox_release_cni(rt, s, &e) < 0)
				log_error("pod=%s msg=\"cannot release the network of a stopped pod\" error=\"%s\"", s->id,
					  e.msg);
			else
				log_warn("pod=%s msg=\"released the network of a stopped pod\"", s->id);
		}
		i++;
	}
	rt_cni_reconcile_orphans(rt->net->cni, has_record, rt);
}
