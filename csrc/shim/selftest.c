/*
 * Small scenarios that trip each of the shim's detectors on purpose, for
 * tests/test_c_managers.py: the driver sets one up with h_selftest(n) and
 * steps its threads (t0, t1) like any other run.
 */
#include <stdlib.h>
#include <string.h>
#include "kshim.h"
#include "shim_rt.h"

static struct {
	struct mutex m;
	spinlock_t s;
	struct drm_buddy buddy;
	struct drm_mm mm;
	struct drm_mm_node node;
	struct list_head blocks;
	u64 field;
	int which;
} S;

static void t0(void *arg)
{
	(void)arg;
	switch (S.which) {
	case 0:                    /* might_sleep: mutex_lock under a spinlock */
		STEP("spin"); spin_lock(&S.s);
		STEP("mutex"); mutex_lock(&S.m);
		STEP("unlock_m"); mutex_unlock(&S.m);
		STEP("unlock_s"); spin_unlock(&S.s);
		break;
	case 1:                    /* scheduling while atomic: msleep under a spinlock */
		STEP("spin"); spin_lock(&S.s);
		STEP("sleep"); msleep(5);
		STEP("unlock_s"); spin_unlock(&S.s);
		break;
	case 2:                    /* lockdep: recursive locking; the thread never runs again */
		STEP("lock"); mutex_lock(&S.m);
		STEP("relock"); mutex_lock(&S.m);
		break;
	case 3:                    /* lockdep: unlock by a non-owner (t1) */
	case 6:                    /* KCSAN: t1 reads S.field while t0 holds the spinlock */
		STEP("lock");
		if (S.which == 3) mutex_lock(&S.m); else spin_lock(&S.s);
		SCHED_POINT("hold");
		STEP("unlock");
		if (S.which == 3) mutex_unlock(&S.m); else spin_unlock(&S.s);
		break;
	case 4:                    /* a function returning with the lock held */
		STEP("lock"); mutex_lock(&S.m);
		break;
	case 5:                    /* kmemleak: an object never freed, a block left at fini */
		kzalloc(32, GFP_KERNEL);
		STEP("init"); drm_buddy_init(&S.buddy, 4 * PAGE_SIZE, PAGE_SIZE);
		STEP("alloc"); drm_buddy_alloc_blocks(&S.buddy, 0, 4 * PAGE_SIZE, PAGE_SIZE, PAGE_SIZE, &S.blocks, 0);
		STEP("fini"); drm_buddy_fini(&S.buddy);
		break;
	case 7:                    /* a block freed into a re-initialised buddy */
		STEP("init"); drm_buddy_init(&S.buddy, 4 * PAGE_SIZE, PAGE_SIZE);
		STEP("alloc"); drm_buddy_alloc_blocks(&S.buddy, 0, 4 * PAGE_SIZE, PAGE_SIZE, PAGE_SIZE, &S.blocks, 0);
		STEP("reinit"); drm_buddy_init(&S.buddy, 4 * PAGE_SIZE, PAGE_SIZE);
		STEP("free"); drm_buddy_free_list(&S.buddy, &S.blocks, 0);
		break;
	case 8: {                  /* double free: a drm_mm node removed twice, an object kfree'd twice */
		void *p = kzalloc(8, GFP_KERNEL);
		STEP("init"); drm_mm_init(&S.mm, 0, 4);
		STEP("insert"); drm_mm_insert_node_in_range(&S.mm, &S.node, 1, 0, 0, 0, 4, DRM_MM_INSERT_LOW);
		STEP("remove"); drm_mm_remove_node(&S.node);
		STEP("remove_again"); drm_mm_remove_node(&S.node);
		kfree(p);
		kfree(p);
		break;
	}
	case 9:                    /* the allocator used after fini */
		STEP("init"); drm_buddy_init(&S.buddy, 4 * PAGE_SIZE, PAGE_SIZE);
		STEP("fini"); drm_buddy_fini(&S.buddy);
		STEP("alloc"); drm_buddy_alloc_blocks(&S.buddy, 0, 4 * PAGE_SIZE, PAGE_SIZE, PAGE_SIZE, &S.blocks, 0);
		break;
	}
}

static void t1(void *arg)
{
	(void)arg;
	if (S.which == 3) {
		STEP("bad_unlock");
		mutex_unlock(&S.m);
	} else {
		u64 v;
		STEP("read");
		v = data_race_read(&S.s, S.field);
		(void)v;
	}
}

int h_selftest(int which)
{
	shim_reset();
	memset(&S, 0, sizeof(S));
	S.which = which;
	mutex_init(&S.m);
	spin_lock_init(&S.s);
	INIT_LIST_HEAD(&S.blocks);
	shim_thread_new("t0", t0, NULL);
	if (which == 3 || which == 6)
		shim_thread_new("t1", t1, NULL);
	for (int i = 0; i < shim_nthreads; i++)
		if (shim_spawn(shim_threads[i]))
			return -1;
	return 0;
}

/* what a harness checks when a call returns: any lock still held by t */
int h_holds_lock(int t) { return shim_holds_any_lock(shim_threads[t]); }

int h_kmem_live(void) { return shim_kmem_live_count(); }
