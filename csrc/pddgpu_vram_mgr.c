/*
 * The VRAM manager as the design document writes it (sections 1-6 of its
 * VRAM part), completed where it elides code, defects included.  Each reading
 * and fix of model/options.py is a preprocessor option (pddgpu_options.h).
 *
 * STEP()/SCHED_POINT() name the scheduling points with the model's step labels
 * (model/manager.py); they change nothing the code does.
 */
#include "pddgpu.h"

#define VRAM_READY PDDGPU_VRAM_MGR_STATE_READY
#define VRAM_SHUTDOWN PDDGPU_VRAM_MGR_STATE_SHUTDOWN
#define VRAM_ERROR PDDGPU_VRAM_MGR_STATE_ERROR
#define VRAM_INITIALIZING PDDGPU_VRAM_MGR_STATE_INITIALIZING

/* 1.2 */
static inline bool pddgpu_vram_mgr_is_ready(struct pddgpu_vram_mgr *mgr)
{
#if defined(FIX_IS_READY)
	/* one read, and ERROR (or INITIALIZING) is not ready either */
	int s = atomic_read(&mgr->state);

	return (s & (VRAM_READY | VRAM_SHUTDOWN | VRAM_ERROR | VRAM_INITIALIZING)) == VRAM_READY;
#elif IS_READY_READS == 1
	int s = atomic_read(&mgr->state);

	return (s & VRAM_READY) && !(s & VRAM_SHUTDOWN);
#else
	return (atomic_read(&mgr->state) & PDDGPU_VRAM_MGR_STATE_READY) &&
	       !(atomic_read(&mgr->state) & PDDGPU_VRAM_MGR_STATE_SHUTDOWN);
#endif
}

/* not in the document; get_stats calls it: ready, and neither shut down nor in error */
static inline bool pddgpu_vram_state_is_healthy(int s)
{
	return (s & VRAM_READY) && !(s & (VRAM_SHUTDOWN | VRAM_ERROR));
}

static inline bool pddgpu_vram_mgr_is_healthy(struct pddgpu_vram_mgr *mgr)
{
	return pddgpu_vram_state_is_healthy(atomic_read(&mgr->state));
}

/* 2.1, for a caller that holds mgr->lock (or, as written, for everyone) */
static inline void __pddgpu_vram_mgr_set_error(struct pddgpu_vram_mgr *mgr)
{
	atomic_or(PDDGPU_VRAM_MGR_STATE_ERROR, &mgr->state);
	PDDGPU_ERROR("VRAM manager entered error state\n");
}

static inline void pddgpu_vram_mgr_set_error(struct pddgpu_vram_mgr *mgr)
{
#ifdef FIX_ERROR_UNDER_LOCK
	/* the in-lock re-check only means something if every writer of the state takes the lock */
	mutex_lock(&mgr->lock);
	STEP_SUB("_set");
	__pddgpu_vram_mgr_set_error(mgr);
	STEP_SUB("_unlock");
	mutex_unlock(&mgr->lock);
#else
	__pddgpu_vram_mgr_set_error(mgr);
#endif
}

/* 2.2 (with fix_error_under_lock the caller holds mgr->lock) */
static inline void pddgpu_vram_mgr_clear_error(struct pddgpu_vram_mgr *mgr)
{
	atomic_and(~PDDGPU_VRAM_MGR_STATE_ERROR, &mgr->state);
}

void pddgpu_vram_mgr_inject_error(struct pddgpu_vram_mgr *mgr)
{
	pddgpu_vram_mgr_set_error(mgr);
}

static u64 pddgpu_vram_mgr_vis_size(struct pddgpu_vram_mgr *mgr, struct drm_buddy_block *block)
{
	u64 start = drm_buddy_block_offset(block);
	u64 end = start + drm_buddy_block_size(&mgr->mm, block);

	if (start >= mgr->visible_size)
		return 0;
	return min_t(u64, end, mgr->visible_size) - start;
}

/* both statistics count the blocks handed out, not the bytes asked for */
static void pddgpu_vram_res_sizes(struct pddgpu_vram_mgr *mgr, struct pddgpu_vram_res *vres, u64 *used, u64 *vis)
{
	struct drm_buddy_block *block;

	*used = *vis = 0;
	list_for_each_entry(block, &vres->blocks, link) {
		*used += drm_buddy_block_size(&mgr->mm, block);
		*vis += pddgpu_vram_mgr_vis_size(mgr, block);
	}
}

int pddgpu_vram_mgr_init(struct pddgpu_device *pdev, u64 size, u64 page_size)
{
	struct pddgpu_vram_mgr *mgr = &pdev->mman.vram_mgr;
	int r;

	atomic_set(&mgr->state, PDDGPU_VRAM_MGR_STATE_INITIALIZING);
	mutex_init(&mgr->lock);
	init_waitqueue_head(&mgr->idle_wq);
	mgr->size = size;
	mgr->visible_size = size;
	mgr->default_page_size = page_size;
	atomic64_set(&mgr->used, 0);
	atomic64_set(&mgr->vis_usage, 0);
	r = drm_buddy_init(&mgr->mm, mgr->size, mgr->default_page_size);
	if (r) {
		/* 并发保护机制 3.1: an init failure sets the error state */
		pddgpu_vram_mgr_set_error(mgr);
		return r;
	}
	atomic_set(&mgr->state, PDDGPU_VRAM_MGR_STATE_READY);   /* INITIALIZING -> READY */
	return 0;
}

/* 3: alloc.  *res is set on success. */
int pddgpu_vram_mgr_alloc(struct pddgpu_vram_mgr *mgr, u64 size, struct pddgpu_vram_res **res)
{
	struct pddgpu_device *pdev = to_pddgpu_device(mgr);
	struct pddgpu_vram_res *vres;
	u64 min_block, used, vis;
	int retry_count = 0;
	int r;
#if defined(STATE_CHECK_FAILURE_RETRY) && defined(FIX_STATE_RETRY_BOUNDED)
	int state_retries = 0;
#endif

#ifdef STATE_CHECK_FAILURE_RETRY
retry_state:
#endif
	/* 3.1 */
	STEP("dev_check");
	if (!pdev || (atomic_read(&pdev->device_state) & PDDGPU_DEVICE_STATE_SHUTDOWN)) {
		PDDGPU_DEBUG("Device is shutting down, skipping VRAM allocation\n");
		SCHED_POINT("return");
		return -ENODEV;
	}

	/* 3.2 */
	STEP("mgr_check");
	if (!pddgpu_vram_mgr_is_ready(mgr)) {
#ifdef STATE_CHECK_FAILURE_RETRY
		/* the text's 状态重试 read literally: sleep and check again */
#ifdef FIX_STATE_RETRY_BOUNDED
		SCHED_POINT("state_retry_check");
		if (++state_retries >= PDDGPU_VRAM_ALLOC_RETRY_COUNT) {
			PDDGPU_ERROR("VRAM manager is not ready after %d state checks\n", state_retries);
			SCHED_POINT("return");
			return -ENODEV;
		}
#endif
		STEP("state_retry_sleep");
		msleep(PDDGPU_VRAM_ALLOC_RETRY_DELAY);
		goto retry_state;
#else
		PDDGPU_ERROR("VRAM manager is not ready\n");
		SCHED_POINT("return");
		return -ENODEV;
#endif
	}

	vres = kzalloc(sizeof(*vres), GFP_KERNEL);
	if (!vres) {
		SCHED_POINT("return");
		return -ENOMEM;
	}
	INIT_LIST_HEAD(&vres->blocks);
	vres->size = size;
	/* one block aligned to its size, as for a BO aligned to its size */
	min_block = mgr->default_page_size;
	while (min_block < size)
		min_block <<= 1;

	/* 3.3 */
retry_alloc:
	STEP("lock");
	mutex_lock(&mgr->lock);

	STEP("recheck");
	if (!pddgpu_vram_mgr_is_ready(mgr)) {
		STEP("recheck_unlock");
		mutex_unlock(&mgr->lock);
		PDDGPU_ERROR("VRAM manager state changed during allocation\n");
		kfree(vres);
		SCHED_POINT("return");
		return -ENODEV;
	}

	STEP("alloc_call");
	r = drm_buddy_alloc_blocks(&mgr->mm, 0, mgr->size, min_block, min_block, &vres->blocks,
				   DRM_BUDDY_RANGE_ALLOCATION);
	if (!r) {
		pddgpu_vram_res_sizes(mgr, vres, &used, &vis);
#if PDDGPU_STATS_UNDER_LOCK
		STEP("ok_stats");
		atomic64_add(used, &mgr->used);
		atomic64_add(vis, &mgr->vis_usage);
		STEP("ok_unlock");
		mutex_unlock(&mgr->lock);
#else
		STEP("ok_unlock");
		mutex_unlock(&mgr->lock);
		STEP("ok_stats");
		atomic64_add(used, &mgr->used);
		atomic64_add(vis, &mgr->vis_usage);
#endif
		*res = vres;
		SCHED_POINT("return");
		return 0;
	}

#if !PDDGPU_FAILURE_HOLDS_LOCK
	/* the reading retry_holds_lock=false: the elided allocator call is followed by an unlock */
	STEP("fail_unlock");
	mutex_unlock(&mgr->lock);
#endif

	/* 分配失败时的重试 */
	SCHED_POINT("fail_check");
	if (r) {
		if (++retry_count < PDDGPU_VRAM_ALLOC_RETRY_COUNT) {
			PDDGPU_DEBUG("VRAM allocation failed, retrying (%d/%d)\n", retry_count,
				     PDDGPU_VRAM_ALLOC_RETRY_COUNT);
			STEP("retry_sleep");
			msleep(PDDGPU_VRAM_ALLOC_RETRY_DELAY);
			goto retry_alloc;
		}
#if !defined(FIX_ALLOC_FAILURE_SETS_ERROR)
		SCHED_POINT("fail");       /* as written: no set_error, whatever 并发保护机制 3.1 promises */
#elif defined(FIX_ERROR_UNDER_LOCK) && !PDDGPU_FAILURE_HOLDS_LOCK
		SCHED_POINT("fail");
		STEP("fail_lock");
		pddgpu_vram_mgr_set_error(mgr);
#else
		STEP("fail");
		__pddgpu_vram_mgr_set_error(mgr);
#endif
		PDDGPU_ERROR("VRAM allocation failed after %d retries\n", retry_count);
#ifdef FIX_RETRY_UNLOCK
		kfree(vres);
#endif
		SCHED_POINT("return");
		return -ENOMEM;            /* as written, vres is not freed here */
	}
	return r;
}

/* 4: free */
void pddgpu_vram_mgr_free(struct pddgpu_vram_mgr *mgr, struct pddgpu_vram_res *vres)
{
	struct pddgpu_device *pdev = to_pddgpu_device(mgr);
	u64 used, vis;

	(void)pdev;
	pddgpu_vram_res_sizes(mgr, vres, &used, &vis);
#if PDDGPU_FREE_PRELOCK_CHECKS
	/* 4.1 */
	STEP("dev_check");
	if (!pdev || (atomic_read(&pdev->device_state) & PDDGPU_DEVICE_STATE_SHUTDOWN)) {
		PDDGPU_DEBUG("Device is shutting down, skipping VRAM free\n");
		SCHED_POINT("skipped");
		return;
	}

	STEP("mgr_check");
	if (!pddgpu_vram_mgr_is_ready(mgr)) {
		PDDGPU_ERROR("VRAM manager is not ready during free\n");
		SCHED_POINT("skipped");
		return;
	}
#endif

	/* 4.2 */
	STEP("lock");
	mutex_lock(&mgr->lock);

#ifndef FIX_FREE_ALWAYS_RELEASES
	STEP("recheck");
	if (!pddgpu_vram_mgr_is_ready(mgr)) {
		STEP("recheck_unlock");
		mutex_unlock(&mgr->lock);
		PDDGPU_ERROR("VRAM manager state changed during free\n");
		SCHED_POINT("skipped");
		return;
	}
#endif

	STEP("free_call");
	drm_buddy_free_list(&mgr->mm, &vres->blocks, 0);
#if PDDGPU_STATS_UNDER_LOCK
	STEP("stats");
	atomic64_sub(used, &mgr->used);
	atomic64_sub(vis, &mgr->vis_usage);
	STEP("unlock");
	mutex_unlock(&mgr->lock);
#else
	STEP("unlock");
	mutex_unlock(&mgr->lock);
	STEP("stats");
	atomic64_sub(used, &mgr->used);
	atomic64_sub(vis, &mgr->vis_usage);
#endif
#ifdef FIX_FINI_EVICTS
	wake_up(&mgr->idle_wq);
#endif
	SCHED_POINT("return");
	kfree(vres);
}

/* drm_buddy_init under the lock; with fix_recover_reinit only over an empty allocator, torn down first */
static int pddgpu_vram_mgr_reinit(struct pddgpu_vram_mgr *mgr)
{
#ifdef FIX_RECOVER_REINIT
	SCHED_POINT("init_check");
	if (mgr->mm.avail != mgr->mm.size)
		return 0;          /* live blocks: keep the allocator; the statistics are left alone */
	STEP("teardown_old");
	drm_buddy_fini(&mgr->mm);
#endif
	STEP("init");
	return drm_buddy_init(&mgr->mm, mgr->size, mgr->default_page_size);
}

/* 5.1 */
int pddgpu_vram_mgr_recover(struct pddgpu_vram_mgr *mgr)
{
	struct pddgpu_device *pdev = to_pddgpu_device(mgr);
	int r;

	PDDGPU_DEBUG("Recovering VRAM manager\n");

	STEP("dev_check");
	if (!pdev || (atomic_read(&pdev->device_state) & PDDGPU_DEVICE_STATE_SHUTDOWN)) {
		PDDGPU_ERROR("Device is shutting down, cannot recover VRAM manager\n");
		SCHED_POINT("return");
		return -ENODEV;
	}

#if defined(FIX_RECOVER_STATE)
	/* READY last, under the lock, and never over SHUTDOWN */
	STEP("lock");
	mutex_lock(&mgr->lock);
	STEP("shutdown_check");
	if (atomic_read(&mgr->state) & PDDGPU_VRAM_MGR_STATE_SHUTDOWN) {
		r = -ENODEV;
	} else {
		r = pddgpu_vram_mgr_reinit(mgr);
		if (!r) {
			int old;

			SCHED_ATOMIC_BEGIN("set_state");
			old = atomic_read(&mgr->state);
			while (!atomic_try_cmpxchg(&mgr->state, &old, (old & ~VRAM_ERROR) | VRAM_READY))
				;
			SCHED_ATOMIC_END();
		} else {
			/* ERROR before anyone can take the lock and meet a failed allocator */
			STEP("set_state");
			__pddgpu_vram_mgr_set_error(mgr);
		}
	}
#elif defined(FIX_ERROR_UNDER_LOCK)
	STEP("lock");
	mutex_lock(&mgr->lock);
	STEP("clear_error");
	pddgpu_vram_mgr_clear_error(mgr);
	r = pddgpu_vram_mgr_reinit(mgr);
#else
	/* 清除错误状态 */
	STEP("clear_error");
	pddgpu_vram_mgr_clear_error(mgr);

	/* 重新初始化DRM Buddy分配器 */
	STEP("lock");
	mutex_lock(&mgr->lock);
	r = pddgpu_vram_mgr_reinit(mgr);
#endif
	STEP("unlock");
	mutex_unlock(&mgr->lock);

	SCHED_POINT("check_r");
	if (r && r != -ENODEV) {
		PDDGPU_ERROR("Failed to recover DRM Buddy: %d\n", r);
		STEP("set_error");
		pddgpu_vram_mgr_set_error(mgr);
		SCHED_POINT("return");
		return r;
	}
	if (r) {                       /* -ENODEV: fix_recover_state found SHUTDOWN */
		SCHED_POINT("return");
		return r;
	}

#ifndef FIX_RECOVER_REINIT
	/* 重置统计信息 */
	STEP("reset_used");
	atomic64_set(&mgr->used, 0);
	STEP("reset_vis");
	atomic64_set(&mgr->vis_usage, 0);
#endif

#ifndef FIX_RECOVER_STATE
	/* 设置就绪状态 */
	STEP("set_ready");
	atomic_set(&mgr->state, PDDGPU_VRAM_MGR_STATE_READY);
#endif

	SCHED_POINT("ok");
	PDDGPU_INFO("VRAM manager recovered successfully\n");
	SCHED_POINT("return");
	return 0;
}

/* 6.2 */
void pddgpu_vram_mgr_get_stats(struct pddgpu_vram_mgr *mgr, struct pddgpu_vram_stats *stats)
{
	if (!mgr || !stats)
		return;

	stats->total_size = mgr->size;
#ifdef FIX_STATS_SNAPSHOT
	STEP("lock");
	mutex_lock(&mgr->lock);
	SCHED_ATOMIC_BEGIN("read");
	stats->used_size = atomic64_read(&mgr->used);
	stats->visible_used = atomic64_read(&mgr->vis_usage);
	stats->state = atomic_read(&mgr->state);
	SCHED_ATOMIC_END();
	STEP("unlock");
	mutex_unlock(&mgr->lock);
	SCHED_POINT("report");
	stats->is_healthy = pddgpu_vram_state_is_healthy(stats->state);
#else
	STEP("read_used");
	stats->used_size = atomic64_read(&mgr->used);
	STEP("read_vis");
	stats->visible_used = atomic64_read(&mgr->vis_usage);
	STEP("read_state");
	stats->state = atomic_read(&mgr->state);
	STEP("report");
	stats->is_healthy = pddgpu_vram_mgr_is_healthy(mgr);
#endif
}

/* the implied fini: SHUTDOWN, then the allocator torn down */
void pddgpu_vram_mgr_fini(struct pddgpu_vram_mgr *mgr)
{
	struct pddgpu_device *pdev = to_pddgpu_device(mgr);

	(void)pdev;
	STEP("mgr_shutdown");
	atomic_or(PDDGPU_VRAM_MGR_STATE_SHUTDOWN, &mgr->state);
#ifndef FINI_CONCURRENT
	/* the reading fini_concurrent=false: fini starts once no call is in flight */
	STEP("drain");
	wait_event(pdev->idle_wq, atomic_read(&pdev->users) == 0);
#endif
#if defined(FIX_FINI_EVICTS)
	for (;;) {
		STEP("lock");
		mutex_lock(&mgr->lock);
		SCHED_POINT("evict_check");
		if (mgr->mm.avail == mgr->mm.size)
			break;
		STEP("evict_unlock");
		mutex_unlock(&mgr->lock);
		STEP("evict_wait");
		wait_event(mgr->idle_wq, mgr->mm.avail == mgr->mm.size);
	}
	STEP("teardown");
	drm_buddy_fini(&mgr->mm);
	STEP("unlock");
	mutex_unlock(&mgr->lock);
#elif defined(FINI_TAKES_LOCK)
	STEP("lock");
	mutex_lock(&mgr->lock);
	STEP("teardown");
	drm_buddy_fini(&mgr->mm);
	STEP("unlock");
	mutex_unlock(&mgr->lock);
#else
	STEP("teardown");
	drm_buddy_fini(&mgr->mm);
#endif
	STEP("leak_check");
	{
		s64 used = atomic64_read(&mgr->used), vis = atomic64_read(&mgr->vis_usage);

		WARN(used || vis, "vram_mgr_fini: used=%lld, vis_usage=%lld left non-zero\n", (long long)used,
		     (long long)vis);
	}
	mutex_destroy(&mgr->lock);
}

void pddgpu_device_shutdown(struct pddgpu_device *pdev)
{
	STEP("dev_shutdown");
	atomic_or(PDDGPU_DEVICE_STATE_SHUTDOWN, &pdev->device_state);
}
