/*
 * The shim's runtime: token-passing scheduler, locks, atomics, sleeping,
 * kmemleak-style bookkeeping, the kernel log and the bug reports.
 *
 * Token passing: a managed thread runs only between shim_run_step() granting
 * it the token and its next scheduling point; every other managed thread is
 * parked on the one condition variable.  So the C code runs one thread at a
 * time, in the order the driver picks, and the driver may look at any shared
 * state while everything is parked.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kshim.h"
#include "shim_rt.h"

static pthread_mutex_t big = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int aborted;
static __thread struct shim_thread *me;

struct shim_thread *shim_threads[SHIM_MAX_THREADS];
int shim_nthreads;
int shim_step_timeout_ms = 10000;

struct shim_report_rec shim_reports[SHIM_MAX_REPORTS];
int shim_nreports;
struct shim_log_rec shim_logs[SHIM_MAX_LOGS];
int shim_nlogs;
int shim_fail_next_init;
struct shim_extent shim_fini_leaks[SHIM_MAX_LEAKS];
int shim_fini_nleaks;

struct kmem_rec { void *p; size_t size; int live; int owner; };
static struct kmem_rec *kmem;
static int nkmem, capkmem;

struct shim_thread *shim_me(void) { return me; }

const char *shim_current_name(void) { return me ? me->name : "main"; }

/* ---- reports and log -------------------------------------------------------- */
struct shim_report_rec *shim_vrecord(const char *prop, const char *fmt, va_list ap)
{
	if (shim_nreports >= SHIM_MAX_REPORTS)
		return NULL;
	struct shim_report_rec *r = &shim_reports[shim_nreports++];
	snprintf(r->prop, sizeof(r->prop), "%s", prop);
	snprintf(r->thread, sizeof(r->thread), "%s", shim_current_name());
	vsnprintf(r->msg, sizeof(r->msg), fmt, ap);
	return r;
}

void shim_report(const char *prop, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	struct shim_report_rec *r = shim_vrecord(prop, fmt, ap);
	va_end(ap);
	if (r)	/* what the code itself reports also goes to dmesg, as a kernel BUG would */
		shim_log("BUG", "%s", r->msg);
}

void shim_log(const char *level, const char *fmt, ...)
{
	va_list ap;
	if (shim_nlogs >= SHIM_MAX_LOGS)
		return;
	struct shim_log_rec *l = &shim_logs[shim_nlogs++];
	snprintf(l->level, sizeof(l->level), "%s", level);
	snprintf(l->thread, sizeof(l->thread), "%s", shim_current_name());
	va_start(ap, fmt);
	vsnprintf(l->msg, sizeof(l->msg), fmt, ap);
	va_end(ap);
	size_t n = strlen(l->msg);           /* the document's messages end in \n */
	while (n && l->msg[n - 1] == '\n')
		l->msg[--n] = 0;
}

/* ---- scheduling ----------------------------------------------------------------- */
static int ready_now(struct shim_thread *t)
{
	switch (t->ready) {
	case R_ALWAYS: return 1;
	case R_LOCK: {
		struct shim_lock *l = t->ready_ptr;
		return l->owner == NULL || l->owner == t;
	}
	case R_WAIT: return ((wait_queue_head_t *)t->ready_ptr)->seq != t->ready_seen;
	default: return 0;
	}
}

int shim_enabled(struct shim_thread *t)
{
	return t->state == T_PARKED && ready_now(t);
}

static void park(int ready, void *ptr, unsigned int seen)
{
	struct shim_thread *t = me;
	pthread_mutex_lock(&big);
	t->ready = ready;
	t->ready_ptr = ptr;
	t->ready_seen = seen;
	t->state = T_PARKED;
	pthread_cond_broadcast(&cv);
	while (!t->go) {
		if (aborted) {
			pthread_mutex_unlock(&big);
			pthread_exit(NULL);
		}
		pthread_cond_wait(&cv, &big);
	}
	t->go = 0;
	pthread_mutex_unlock(&big);
}

static void next_label(void)
{
	struct shim_thread *t = me;
	if (t->seq == 0)
		snprintf(t->label, sizeof(t->label), "%s%s", t->prefix, t->base);
	else
		snprintf(t->label, sizeof(t->label), "%s%s%d", t->prefix, t->base, t->seq + 1);
	t->seq++;
}

static int scheduled(void) { return me != NULL && me->nosched == 0; }

void shim_step(const char *label)
{
	if (!me)
		return;
	snprintf(me->outer, sizeof(me->outer), "%s", label);
	snprintf(me->base, sizeof(me->base), "%s", label);
	me->seq = 0;
}

void shim_step_sub(const char *suffix)
{
	if (!me)
		return;
	snprintf(me->base, sizeof(me->base), "%s%s", me->outer, suffix);
	me->seq = 0;
}

void shim_set_prefix(const char *prefix)
{
	if (me)
		snprintf(me->prefix, sizeof(me->prefix), "%s", prefix);
}

void shim_point(void)
{
	if (!scheduled())
		return;
	next_label();
	park(R_ALWAYS, NULL, 0);
}

void shim_nosched_enter(void) { if (me) me->nosched++; }
void shim_nosched_exit(void) { if (me) me->nosched--; }

static void *bootstrap(void *arg)
{
	struct shim_thread *t = arg;
	me = t;
	t->fn(t->arg);
	pthread_mutex_lock(&big);
	t->state = T_DONE;
	snprintf(t->label, sizeof(t->label), "done");
	pthread_cond_broadcast(&cv);
	pthread_mutex_unlock(&big);
	me = NULL;
	return NULL;
}

static int wait_not_running(struct shim_thread *t)
{
	struct timespec dl;
	clock_gettime(CLOCK_REALTIME, &dl);
	dl.tv_sec += shim_step_timeout_ms / 1000;
	dl.tv_nsec += (long)(shim_step_timeout_ms % 1000) * 1000000L;
	if (dl.tv_nsec >= 1000000000L) { dl.tv_sec++; dl.tv_nsec -= 1000000000L; }
	while (t->state == T_RUNNING)
		if (pthread_cond_timedwait(&cv, &big, &dl) == ETIMEDOUT)
			return -1;
	return 0;
}

struct shim_thread *shim_thread_new(const char *name, void (*fn)(void *), void *arg)
{
	if (shim_nthreads >= SHIM_MAX_THREADS)
		return NULL;
	struct shim_thread *t = calloc(1, sizeof(*t));
	t->index = shim_nthreads;
	snprintf(t->name, sizeof(t->name), "%s", name);
	t->fn = fn;
	t->arg = arg;
	t->state = T_NEW;
	shim_threads[shim_nthreads++] = t;
	return t;
}

int shim_spawn(struct shim_thread *t)
{
	pthread_mutex_lock(&big);
	t->state = T_RUNNING;
	if (pthread_create(&t->pt, NULL, bootstrap, t) != 0) {
		t->state = T_DONE;
		pthread_mutex_unlock(&big);
		return -1;
	}
	t->started = 1;
	int r = wait_not_running(t);
	pthread_mutex_unlock(&big);
	return r;
}

int shim_run_step(struct shim_thread *t)
{
	pthread_mutex_lock(&big);
	if (!(t->state == T_PARKED && ready_now(t))) {
		pthread_mutex_unlock(&big);
		return -2;
	}
	t->state = T_RUNNING;
	t->go = 1;
	pthread_cond_broadcast(&cv);
	int r = wait_not_running(t);
	pthread_mutex_unlock(&big);
	return r;
}

void shim_reset(void)
{
	pthread_mutex_lock(&big);
	aborted = 1;
	pthread_cond_broadcast(&cv);
	pthread_mutex_unlock(&big);
	for (int i = 0; i < shim_nthreads; i++) {
		if (shim_threads[i]->started)
			pthread_join(shim_threads[i]->pt, NULL);
		free(shim_threads[i]);
	}
	shim_nthreads = 0;
	aborted = 0;
	for (int i = 0; i < nkmem; i++)
		free(kmem[i].p);
	free(kmem);
	kmem = NULL;
	nkmem = capkmem = 0;
	shim_buddy_reset();
	shim_nreports = shim_nlogs = shim_fini_nleaks = 0;
	shim_fail_next_init = 0;
}

/* ---- locks ------------------------------------------------------------------------ */
static int holding_spinlock(void)
{
	if (!me)
		return 0;
	for (int i = 0; i < me->nheld; i++)
		if (me->held[i]->spin)
			return 1;
	return 0;
}

void shim_lock_init(struct shim_lock *l, const char *name, int spin)
{
	l->owner = NULL;
	l->name = name;
	l->spin = spin;
}

bool shim_lock_held_by_me(const struct shim_lock *l) { return me && l->owner == me; }

int shim_holds_any_lock(struct shim_thread *t) { return t->nheld > 0; }

void shim_lock_acquire(struct shim_lock *l)
{
	if (!me) {                        /* set-up on the driver's thread: nothing runs beside it */
		l->owner = NULL;
		return;
	}
	if (scheduled()) {
		next_label();
		park(R_LOCK, l, 0);
	}
	if (!l->spin && holding_spinlock())
		shim_report("no_sleep_under_spinlock",
			    "BUG: sleeping function called from invalid context: mutex_lock(%s) by %s while holding a "
			    "spinlock", l->name, me->name);
	if (l->owner == me) {
		shim_report("lock_no_self_reacquire",
			    "lockdep: possible recursive locking detected: %s acquires %s (%s) which it already holds - "
			    "the thread would deadlock", me->name, l->name, l->spin ? "spinlock" : "mutex");
		park(R_NEVER, NULL, 0);          /* as in the kernel: this thread never runs again */
	}
	l->owner = me;
	if (me->nheld < SHIM_MAX_HELD)
		me->held[me->nheld++] = l;
}

void shim_lock_release(struct shim_lock *l)
{
	if (!me)
		return;
	if (scheduled()) {
		next_label();
		park(R_ALWAYS, NULL, 0);
	}
	if (l->owner != me) {
		shim_report("lock_released_by_owner", "%s_unlock(%s) by %s, which does not hold it (owner: %s)",
			    l->spin ? "spin" : "mutex", l->name, me->name, l->owner ? l->owner->name : "none");
		return;
	}
	for (int i = 0; i < me->nheld; i++)
		if (me->held[i] == l) {
			me->held[i] = me->held[--me->nheld];
			break;
		}
	l->owner = NULL;
}

void shim_kcsan_plain_read(const struct shim_lock *l, const char *what)
{
	shim_point();
	if (me && l->owner != NULL && l->owner != me)
		shim_report("no_data_race", "KCSAN: data race: %s reads %s without the lock while %s holds it",
			    me->name, what, l->owner->name);
}

/* ---- sleeping ------------------------------------------------------------------------- */
void msleep(unsigned int ms)
{
	shim_point();
	if (holding_spinlock())
		shim_report("no_sleep_under_spinlock", "BUG: scheduling while atomic: msleep(%u) by %s with a spinlock held",
			    ms, me->name);
	/* no real sleep: under the scheduler time does not pass between steps */
}

void wake_up(wait_queue_head_t *q) { __atomic_add_fetch(&q->seq, 1, __ATOMIC_SEQ_CST); }

void shim_wait_sleep(wait_queue_head_t *q)
{
	if (!scheduled())
		return;
	park(R_WAIT, q, q->seq);          /* the same label: still the wait's step */
}

/* ---- atomics -------------------------------------------------------------------------- */
int atomic_read(const atomic_t *v) { shim_point(); return __atomic_load_n(&v->counter, __ATOMIC_SEQ_CST); }
void atomic_set(atomic_t *v, int i) { shim_point(); __atomic_store_n(&v->counter, i, __ATOMIC_SEQ_CST); }
void atomic_or(int i, atomic_t *v) { shim_point(); __atomic_or_fetch(&v->counter, i, __ATOMIC_SEQ_CST); }
void atomic_and(int i, atomic_t *v) { shim_point(); __atomic_and_fetch(&v->counter, i, __ATOMIC_SEQ_CST); }
void atomic_inc(atomic_t *v) { shim_point(); __atomic_add_fetch(&v->counter, 1, __ATOMIC_SEQ_CST); }
void atomic_dec(atomic_t *v) { shim_point(); __atomic_sub_fetch(&v->counter, 1, __ATOMIC_SEQ_CST); }
bool atomic_try_cmpxchg(atomic_t *v, int *old, int new_)
{
	shim_point();
	return __atomic_compare_exchange_n(&v->counter, old, new_, 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
}
s64 atomic64_read(const atomic64_t *v) { shim_point(); return __atomic_load_n(&v->counter, __ATOMIC_SEQ_CST); }
void atomic64_set(atomic64_t *v, s64 i) { shim_point(); __atomic_store_n(&v->counter, i, __ATOMIC_SEQ_CST); }
void atomic64_add(s64 i, atomic64_t *v) { shim_point(); __atomic_add_fetch(&v->counter, i, __ATOMIC_SEQ_CST); }
void atomic64_sub(s64 i, atomic64_t *v) { shim_point(); __atomic_sub_fetch(&v->counter, i, __ATOMIC_SEQ_CST); }

/* ---- memory ------------------------------------------------------------------------------ */
/* Freed objects are kept until shim_reset, so that a pointer the driver keeps
 * (a worker's resource) can be asked whether it is still live, and an address
 * is never handed out twice in one run. */
void *kzalloc(size_t size, gfp_t gfp)
{
	(void)gfp;
	void *p = calloc(1, size ? size : 1);
	if (nkmem == capkmem) {
		capkmem = capkmem ? capkmem * 2 : 64;
		kmem = realloc(kmem, (size_t)capkmem * sizeof(*kmem));
	}
	kmem[nkmem++] = (struct kmem_rec){ p, size, 1, me ? me->index : -1 };
	if (me)
		me->last_alloc = p;
	return p;
}

static struct kmem_rec *kmem_find(const void *p)
{
	for (int i = nkmem - 1; i >= 0; i--)
		if (kmem[i].p == p)
			return &kmem[i];
	return NULL;
}

void kfree(const void *p)
{
	if (!p)
		return;
	struct kmem_rec *r = kmem_find(p);
	if (!r || !r->live) {
		shim_report("no_double_free", "kfree(%p) by %s: %s", p, shim_current_name(),
			    r ? "already freed" : "not from kzalloc");
		return;
	}
	r->live = 0;
}

bool shim_kmem_live(const void *p)
{
	struct kmem_rec *r = p ? kmem_find(p) : NULL;
	return r && r->live;
}

int shim_kmem_live_count(void)
{
	int n = 0;
	for (int i = 0; i < nkmem; i++)
		n += kmem[i].live;
	return n;
}
