/* VM ends as events: one thread waits in epoll on a pidfd of each RUNNING container's
 * vmwrapper and, when one ends, records the end under the runtime lock. Status and list
 * calls then read the records as they are, with no I/O per container. */
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "../common/log.h"
#include "../common/util.h"
#include "runtime_internal.h"

#define WATCH_BATCH 64
#define WATCH_STOP_KEY UINT64_MAX /* the eventfd that ends the thread */

struct exit_watch {
	struct runtime *rt;
	int epfd, stopfd;
	uint64_t next_key; /* never reused: an event names one registration only */
	pthread_t thread;
};

/* EPOLLONESHOT: a pidfd stays readable once its process has ended, so each end is
 * delivered once and the watch is re-armed or dropped explicitly. */
static int watch_ctl(struct exit_watch *w, int op, struct container *c)
{
	struct epoll_event ev = { .events = EPOLLIN | EPOLLONESHOT, .data.u64 = c->watch_key };
	return epoll_ctl(w->epfd, op, c->watch_fd, &ev) < 0 ? -errno : 0;
}

void exit_watch_drop(struct container *c)
{
	if (!c->watched)
		return;
	/* Closing the pidfd would take it out of the epoll set too; the DEL makes it now. */
	(void)epoll_ctl(c->watcher->epfd, EPOLL_CTL_DEL, c->watch_fd, NULL);
	c->watch_fd = safe_close(c->watch_fd);
	c->watched = false;
	c->exit_pending = false;
}

/* A RUNNING container gets a watch; a vmwrapper already gone is recorded as ended here. */
static void watch_add(struct exit_watch *w, struct container *c)
{
	int fd = vm_wrapper_pidfd(c);
	if (fd < 0) {
		vm_refresh_one(w->rt, c);
		if (c->state == CTR_RUNNING)
			log_error("pod=%s ctr=%s msg=\"cannot watch the VM's supervisor: its end shows at the next "
				  "operation on the container\" vmwrapper_pid=%d",
				  c->sandbox_id, c->id, c->wrapper_pid);
		return;
	}
	c->watch_fd = fd;
	c->watch_key = w->next_key++;
	int r = watch_ctl(w, EPOLL_CTL_ADD, c);
	if (r < 0) {
		c->watch_fd = safe_close(c->watch_fd);
		log_error("pod=%s ctr=%s msg=\"cannot watch the VM's supervisor: its end shows at the next operation "
			  "on the container\" error=\"%s\"",
			  c->sandbox_id, c->id, strerror(-r));
		return;
	}
	c->watched = true;
}

void exit_watch_sync(struct container *c)
{
	struct exit_watch *w = c->watcher;
	if (!w || c->busy)
		return;
	if (c->state != CTR_RUNNING) {
		exit_watch_drop(c);
	} else if (!c->watched) {
		watch_add(w, c);
	} else if (c->exit_pending) {
		/* Its end came while it was busy: the pidfd is still readable, so re-arming hands
		 * the end to the thread again, which records it once the lock is free. */
		c->exit_pending = false;
		int r = watch_ctl(w, EPOLL_CTL_MOD, c);
		if (r < 0) {
			exit_watch_drop(c);
			vm_refresh_one(w->rt, c);
		}
	}
}

/* One end, lock held. The key finds the registration it was made for, or none: a watch
 * dropped since (its fd number perhaps reused) is not another container's end. */
static void watch_fire(struct exit_watch *w, uint64_t key)
{
	struct runtime *rt = w->rt;
	struct container *c = NULL;
	for (size_t i = 0; i < rt->n_ct && !c; i++)
		if (rt->ct[i]->watched && rt->ct[i]->watch_key == key)
			c = rt->ct[i];
	if (!c)
		return;
	if (c->busy) {
		c->exit_pending = true; /* its operation owns it; rt_release re-arms the watch */
		return;
	}
	vm_ended(rt, c);
}

static void *watch_thread(void *ud)
{
	struct exit_watch *w = ud;
	struct epoll_event ev[WATCH_BATCH];
	for (;;) {
		int n = epoll_wait(w->epfd, ev, WATCH_BATCH, -1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			log_error("msg=\"the exit watcher failed: VM ends show at the next operation on each container\" "
				  "error=\"%s\"",
				  strerror(errno));
			return NULL;
		}
		bool stop = false;
		rt_lock(w->rt);
		for (int i = 0; i < n; i++) {
			if (ev[i].data.u64 == WATCH_STOP_KEY)
				stop = true;
			else
				watch_fire(w, ev[i].data.u64);
		}
		rt_unlock(w->rt);
		if (stop)
			return NULL;
	}
}

static void watch_free(struct exit_watch *w)
{
	if (!w)
		return;
	safe_close(w->epfd);
	safe_close(w->stopfd);
	free(w);
}

/* The thread with every signal blocked: signals are main's, through its signalfd. */
static int start_thread(struct exit_watch *w)
{
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	int r = pthread_create(&w->thread, NULL, watch_thread, w);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	return -r;
}

int exit_watch_start(struct runtime *rt, uk_error *err)
{
	struct exit_watch *w = calloc(1, sizeof(*w));
	if (!w)
		return uk_err(err, ENOMEM, "out of memory");
	*w = (struct exit_watch){ .rt = rt, .epfd = epoll_create1(EPOLL_CLOEXEC),
				  .stopfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK) };
	struct epoll_event ev = { .events = EPOLLIN, .data.u64 = WATCH_STOP_KEY };
	if (w->epfd < 0 || w->stopfd < 0 || epoll_ctl(w->epfd, EPOLL_CTL_ADD, w->stopfd, &ev) < 0) {
		int e = errno;
		watch_free(w);
		return uk_err_errno(err, e, "the exit watcher's epoll");
	}
	int r = start_thread(w);
	if (r < 0) {
		watch_free(w);
		return uk_err_errno(err, -r, "the exit watcher's thread");
	}
	rt_lock(rt);
	rt->watch = w;
	for (size_t i = 0; i < rt->n_ct; i++) {
		rt->ct[i]->watcher = w;
		exit_watch_sync(rt->ct[i]);
	}
	rt_unlock(rt);
	return 0;
}

void exit_watch_stop(struct runtime *rt)
{
	struct exit_watch *w = rt->watch;
	if (!w)
		return;
	uint64_t one = 1;
	/* A fresh eventfd's counter takes a 1: the write cannot fail. */
	(void)!write(w->stopfd, &one, sizeof(one));
	(void)pthread_join(w->thread, NULL); /* it waits for nothing but the lock, not held here */
	rt_lock(rt);
	for (size_t i = 0; i < rt->n_ct; i++) {
		exit_watch_drop(rt->ct[i]);
		rt->ct[i]->watcher = NULL;
	}
	rt->watch = NULL;
	rt_unlock(rt);
	watch_free(w);
}
