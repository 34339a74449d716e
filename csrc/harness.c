/*
 * The test harness the Python driver (conformance/c_harness.py) loads with
 * ctypes: one device, the manager under test, one pthread per model thread
 * (w0.., inj0.., rec0.., stats0.., fini) running the workload's calls, and
 * read-only views of the state for the driver to map onto the model's
 * variables while every thread is parked.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pddgpu.h"
#include "shim/shim_rt.h"

enum { K_VRAM = 0, K_GTT = 1 };
enum { H_WORKER, H_INJ, H_REC, H_STATS, H_FINI };

#define H_MAX_OPS 16
#define H_MAX_RESULTS 256

struct hworker {
	int nops;
	int ops[H_MAX_OPS];            /* >0: alloc that many pages; 0: free */
	void *held;                    /* the resource of its BO */
	void *cur;                     /* the resource a free in progress returns */
	int in_call, freeing;
	struct shim_thread *t;
};

struct hthr { int role, idx; };

struct hresult { char thread[24]; char call[40]; char value[96]; };

static struct {
	int kind;
	struct pddgpu_device *pdev;
	struct hworker workers[SHIM_MAX_THREADS];
	struct hthr roles[SHIM_MAX_THREADS];
	int nworkers, recoverers, worker_loop;
	volatile int stop;
	int lost;
	struct hresult results[H_MAX_RESULTS];
	int nresults;
} H;

static void observe(const char *prop, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void observe(const char *prop, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	shim_vrecord(prop, fmt, ap);
	va_end(ap);
}

static void result(const char *call, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void result(const char *call, const char *fmt, ...)
{
	va_list ap;
	if (H.nresults >= H_MAX_RESULTS)
		return;
	struct hresult *r = &H.results[H.nresults++];
	snprintf(r->thread, sizeof(r->thread), "%s", shim_current_name());
	snprintf(r->call, sizeof(r->call), "%s", call);
	va_start(ap, fmt);
	vsnprintf(r->value, sizeof(r->value), fmt, ap);
	va_end(ap);
}

static int mgr_state(void)
{
	return H.kind == K_VRAM ? H.pdev->mman.vram_mgr.state.counter : H.pdev->mman.gtt_mgr.state.counter;
}

static const char *held_lock_name(void)
{
	struct shim_thread *me = shim_me();
	return me && me->nheld ? me->held[0]->name : NULL;
}

/* The documented return codes are the model's (its return steps' assertions, evaluated by the Python side
 * on the results recorded here); the lock still held at a return is what lockdep would say. */
static void after_call(const char *call)
{
	const char *l = held_lock_name();
	if (l)
		observe("returns_without_lock", "%s returned holding %s (lockdep: lock held when returning)", call, l);
}

static int held_by_someone(const void *p)
{
	for (int i = 0; i < H.nworkers; i++)
		if (H.workers[i].held == p)
			return 1;
	return 0;
}

static void worker(void *arg)
{
	struct hthr *ht = arg;
	struct hworker *w = &H.workers[ht->idx];
	struct shim_thread *me = shim_me();
	char prefix[40], call[40];

	do {
		for (int k = 0; k < w->nops; k++) {
			if (w->ops[k] > 0) {
				void *res = NULL;
				int r;

				snprintf(prefix, sizeof(prefix), "op%d.alloc.", k);
				shim_set_prefix(prefix);
				snprintf(call, sizeof(call), "op%d:alloc(%d)", k, w->ops[k]);
				me->last_alloc = NULL;
				w->in_call = 1;
				w->freeing = 0;
				if (H.kind == K_VRAM)
					r = pddgpu_vram_mgr_alloc(&H.pdev->mman.vram_mgr, (u64)w->ops[k] * PAGE_SIZE,
								  (struct pddgpu_vram_res **)&res);
				else
					r = pddgpu_gtt_mgr_alloc(&H.pdev->mman.gtt_mgr, (u64)w->ops[k] * PAGE_SIZE,
								 (struct pddgpu_gtt_node **)&res);
				result(call, "%d", r);
				after_call(call);
				if (r == (H.kind == K_VRAM ? -ENOMEM : -ENOSPC) && !(mgr_state() & PDDGPU_VRAM_MGR_STATE_ERROR)
				    && !H.recoverers)
					observe("alloc_failure_sets_error",
						"%s failed for good and returned %d without setting ERROR (3.1: 分配失败时设置错误状态)",
						call, r);
				if (r != 0 && me->last_alloc && shim_kmem_live(me->last_alloc) &&
				    !held_by_someone(me->last_alloc))
					observe("no_lost_resource", "%s failed and returned without kfree(vres): kmemleak "
						"reports 1 unreferenced object", call);
				w->in_call = 0;
				if (r == 0)
					w->held = res;
			} else {
				void *res;

				snprintf(prefix, sizeof(prefix), "op%d.free.", k);
				shim_set_prefix(prefix);
				snprintf(call, sizeof(call), "op%d:free", k);
				SCHED_POINT("entry");
				res = w->held;
				if (!res)
					continue;
				w->cur = res;
				w->held = NULL;
				w->in_call = 1;
				w->freeing = 1;
				if (H.kind == K_VRAM)
					pddgpu_vram_mgr_free(&H.pdev->mman.vram_mgr, res);
				else
					pddgpu_gtt_mgr_free(&H.pdev->mman.gtt_mgr, res);
				after_call(call);
				int released = !shim_kmem_live(res);
				result(call, "%s", released ? "released" : "skipped");
				if (!released)
					H.lost++;
				w->cur = NULL;
				w->in_call = 0;
			}
		}
	} while (H.worker_loop && !H.stop);
}

static void injector(void *arg)
{
	(void)arg;
	STEP("set_error");
	if (H.kind == K_VRAM)
		pddgpu_vram_mgr_inject_error(&H.pdev->mman.vram_mgr);
	else
		pddgpu_gtt_mgr_inject_error(&H.pdev->mman.gtt_mgr);
	result("set_error", "done");
}

static void recoverer(void *arg)
{
	(void)arg;
	int r = H.kind == K_VRAM ? pddgpu_vram_mgr_recover(&H.pdev->mman.vram_mgr)
				 : pddgpu_gtt_mgr_recover(&H.pdev->mman.gtt_mgr);
	result("recover", "%d", r);
	after_call("recover");
}

static void stats_reader(void *arg)
{
	(void)arg;
	u64 used, vis = 0;
	u32 state;
	if (H.kind == K_VRAM) {
		struct pddgpu_vram_stats st;
		pddgpu_vram_mgr_get_stats(&H.pdev->mman.vram_mgr, &st);
		used = st.used_size; vis = st.visible_used; state = st.state;
		result("get_stats", "used_size=%lld visible_used=%lld state=0x%x", (long long)used, (long long)vis, state);
	} else {
		struct pddgpu_gtt_stats st;
		pddgpu_gtt_mgr_get_stats(&H.pdev->mman.gtt_mgr, &st);
		used = st.used_size; state = st.state;
		result("get_stats", "used_size=%lld state=0x%x", (long long)used, state);
	}
	after_call("get_stats");
}

static void finisher(void *arg)
{
	(void)arg;
	pddgpu_device_shutdown(H.pdev);
	if (H.kind == K_VRAM)
		pddgpu_vram_mgr_fini(&H.pdev->mman.vram_mgr);
	else
		pddgpu_gtt_mgr_fini(&H.pdev->mman.gtt_mgr);
	result("fini", "%d leaked", shim_fini_nleaks);
}

static void run_role(void *arg)
{
	struct hthr *ht = arg;
	switch (ht->role) {
	case H_WORKER: worker(arg); break;
	case H_INJ: injector(arg); break;
	case H_REC: recoverer(arg); break;
	case H_STATS: stats_reader(arg); break;
	default: finisher(arg); return;
	}
	/* a call is no longer in flight: the implied fini may go on */
	__atomic_sub_fetch(&H.pdev->users.counter, 1, __ATOMIC_SEQ_CST);
	wake_up(&H.pdev->idle_wq);
}

static void add_thread(const char *name, int role, int idx)
{
	int n = shim_nthreads;
	H.roles[n] = (struct hthr){ role, idx };
	struct shim_thread *t = shim_thread_new(name, run_role, &H.roles[n]);
	if (role == H_WORKER)
		H.workers[idx].t = t;
	if (role != H_FINI)
		H.pdev->users.counter++;
}

/* ---- the driver's interface ------------------------------------------------------------ */
int h_setup(int kind, long long size, int nworkers, const int *nops, const int *ops, int injectors, int recoverers,
	    int stats_readers, int shutdown, int worker_loop)
{
	char name[24];
	int r, at = 0;

	shim_reset();
	free(H.pdev);
	memset(&H, 0, sizeof(H));
	H.kind = kind;
	H.pdev = calloc(1, sizeof(*H.pdev));
	init_waitqueue_head(&H.pdev->idle_wq);
	r = pddgpu_vram_mgr_init(H.pdev, (u64)(kind == K_VRAM ? size : 4) * PAGE_SIZE, PAGE_SIZE);
	if (r)
		return r;
	r = pddgpu_gtt_mgr_init(H.pdev, (u64)(kind == K_GTT ? size : 4));
	if (r)
		return r;
	if (nworkers + injectors + recoverers + stats_readers + 1 > SHIM_MAX_THREADS)
		return -EINVAL;
	H.nworkers = nworkers;
	H.recoverers = recoverers;
	H.worker_loop = worker_loop;
	for (int i = 0; i < nworkers; i++) {
		if (nops[i] > H_MAX_OPS)
			return -EINVAL;
		H.workers[i].nops = nops[i];
		for (int k = 0; k < nops[i]; k++)
			H.workers[i].ops[k] = ops[at++];
		snprintf(name, sizeof(name), "w%d", i);
		add_thread(name, H_WORKER, i);
	}
	for (int i = 0; i < injectors; i++) {
		snprintf(name, sizeof(name), "inj%d", i);
		add_thread(name, H_INJ, i);
	}
	for (int i = 0; i < recoverers; i++) {
		snprintf(name, sizeof(name), "rec%d", i);
		add_thread(name, H_REC, i);
	}
	for (int i = 0; i < stats_readers; i++) {
		snprintf(name, sizeof(name), "stats%d", i);
		add_thread(name, H_STATS, i);
	}
	if (shutdown)
		add_thread("fini", H_FINI, 0);
	return 0;
}

int h_spawn_all(void)
{
	for (int i = 0; i < shim_nthreads; i++)
		if (shim_spawn(shim_threads[i]))
			return -1;
	return 0;
}

int h_nthreads(void) { return shim_nthreads; }
const char *h_name(int i) { return shim_threads[i]->name; }
const char *h_label(int i) { return shim_threads[i]->state == T_DONE ? "done" : shim_threads[i]->label; }
int h_state(int i) { return shim_threads[i]->state; }
int h_enabled(int i) { return shim_enabled(shim_threads[i]); }
int h_step(int i) { return shim_run_step(shim_threads[i]); }
void h_set_stop(void) { H.stop = 1; }
void h_fail_next_init(void) { shim_fail_next_init = 1; }
void h_set_timeout_ms(int ms) { shim_step_timeout_ms = ms; }
void h_teardown(void) { shim_reset(); }

struct h_snap {
	long long dev_state, state, lock_owner, used, vis, alive, gen, lost, users, kmem_live;
};

void h_snapshot(struct h_snap *s)
{
	struct shim_lock *l;
	memset(s, 0, sizeof(*s));
	s->dev_state = H.pdev->device_state.counter;
	s->state = mgr_state();
	if (H.kind == K_VRAM) {
		struct pddgpu_vram_mgr *m = &H.pdev->mman.vram_mgr;
		l = &m->lock.l;
		s->used = m->used.counter;
		s->vis = m->vis_usage.counter;
		s->alive = m->mm.magic == 1;
		s->gen = m->mm.inits ? m->mm.inits - 1 : 0;
	} else {
		struct pddgpu_gtt_mgr *m = &H.pdev->mman.gtt_mgr;
		l = &m->lock.l;
		s->used = (long long)(m->mm.allocated_size << PAGE_SHIFT);
		s->alive = m->mm.magic == 1;
		s->gen = m->mm.inits ? m->mm.inits - 1 : 0;
	}
	s->lock_owner = l->owner ? l->owner->index + 1 : 0;
	s->lost = H.lost;
	s->users = H.pdev->users.counter;
	s->kmem_live = shim_kmem_live_count();
}

/* allocated blocks of the live allocator, in bytes */
int h_blocks(long long *starts, long long *sizes, int max)
{
	struct shim_extent ext[256];
	int n = H.kind == K_VRAM ? shim_buddy_allocated(&H.pdev->mman.vram_mgr.mm, ext, 256)
				 : shim_mm_allocated(&H.pdev->mman.gtt_mgr.mm, ext, 256);
	for (int i = 0; i < n && i < max && i < 256; i++) {
		starts[i] = (long long)ext[i].start;
		sizes[i] = (long long)ext[i].size;
	}
	return n;
}

static int res_extent(void *obj, long long *start, long long *end)
{
	if (!obj || !shim_kmem_live(obj))
		return 0;
	if (H.kind == K_VRAM) {
		struct pddgpu_vram_res *v = obj;
		struct drm_buddy_block *b;
		int any = 0;
		if (list_empty(&v->blocks))
			return 0;
		list_for_each_entry(b, &v->blocks, link) {
			long long s = (long long)b->offset, e = s + (long long)(PAGE_SIZE << b->order);
			if (!any || s < *start) *start = s;
			if (!any || e > *end) *end = e;
			any = 1;
		}
		return any;
	}
	struct pddgpu_gtt_node *n = obj;
	if (!drm_mm_node_allocated(&n->mm_node))
		return 0;
	*start = (long long)(n->mm_node.start << PAGE_SHIFT);
	*end = (long long)((n->mm_node.start + n->mm_node.size) << PAGE_SHIFT);
	return 1;
}

/* which 0: the resource of the call in progress; 1: the one the worker holds.  Bytes [start, end). */
int h_worker_res(int i, int which, long long *start, long long *end)
{
	struct hworker *w = &H.workers[i];
	void *obj;
	if (which == 1)
		obj = w->held;
	else if (!w->in_call)
		obj = NULL;
	else
		obj = w->freeing ? w->cur : w->t->last_alloc;
	return res_extent(obj, start, end);
}

int h_fini_leaks(long long *starts, long long *sizes, int max)
{
	for (int i = 0; i < shim_fini_nleaks && i < max; i++) {
		starts[i] = (long long)shim_fini_leaks[i].start;
		sizes[i] = (long long)shim_fini_leaks[i].size;
	}
	return shim_fini_nleaks;
}

int h_nreports(void) { return shim_nreports; }
const char *h_report(int i, int f)
{
	return f == 0 ? shim_reports[i].prop : f == 1 ? shim_reports[i].thread : shim_reports[i].msg;
}
int h_nlogs(void) { return shim_nlogs; }
const char *h_log(int i, int f) { return f == 0 ? shim_logs[i].level : f == 1 ? shim_logs[i].thread : shim_logs[i].msg; }
int h_nresults(void) { return H.nresults; }
const char *h_result(int i, int f) { return f == 0 ? H.results[i].thread : f == 1 ? H.results[i].call : H.results[i].value; }
