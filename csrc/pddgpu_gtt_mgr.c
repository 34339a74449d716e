/*
 * The GTT manager as the design document writes it (sections 1-6 of its GTT
 * part): a drm_mm range allocator behind a spinlock; used_size is drm_mm's
 * own allocated_size.  Defects included; readings and fixes as preprocessor
 * options (pddgpu_options.h); STEP()/SCHED_POINT() name the model's steps.
 */
#include "pddgpu.h"

#define GTT_READY PDDGPU_GTT_MGR_STATE_READY
#define GTT_SHUTDOWN PDDGPU_GTT_MGR_STATE_SHUTDOWN
#define GTT_ERROR PDDGPU_GTT_MGR_STATE_ERROR
#define GTT_INITIALIZING PDDGPU_GTT_MGR_STATE_INITIALIZING

static inline struct pddgpu_device *gtt_to_pddgpu_device(struct pddgpu_gtt_mgr *mgr)
{
	return container_of(mgr, struct pddgpu_device, mman.gtt_mgr);
}

/* 1.2 */
static inline bool pddgpu_gtt_mgr_is_ready(struct pddgpu_gtt_mgr *mgr)
{
#if defined(FIX_IS_READY)
	int s = atomic_read(&mgr->state);

	return (s & (GTT_READY | GTT_SHUTDOWN | GTT_ERROR | GTT_INITIALIZING)) == GTT_READY;
#elif IS_READY_READS == 1
	int s = atomic_read(&mgr->state);

	return (s & GTT_READY) && !(s & GTT_SHUTDOWN);
#else
	return (atomic_read(&mgr->state) & PDDGPU_GTT_MGR_STATE_READY) &&
	       !(atomic_read(&mgr->state) & PDDGPU_GTT_MGR_STATE_SHUTDOWN);
#endif
}

static inline bool pddgpu_gtt_state_is_healthy(int s)
{
	return (s & GTT_READY) && !(s & (GTT_SHUTDOWN | GTT_ERROR));
}

static inline bool pddgpu_gtt_mgr_is_healthy(struct pddgpu_gtt_mgr *mgr)
{
	return pddgpu_gtt_state_is_healthy(atomic_read(&mgr->state));
}

/* 2.1 */
static inline void __pddgpu_gtt_mgr_set_error(struct pddgpu_gtt_mgr *mgr)
{
	atomic_or(PDDGPU_GTT_MGR_STATE_ERROR, &mgr->state);
	PDDGPU_ERROR("GTT manager entered error state\n");
}

static inline void pddgpu_gtt_mgr_set_error(struct pddgpu_gtt_mgr *mgr)
{
#ifdef FIX_ERROR_UNDER_LOCK
	spin_lock(&mgr->lock);
	STEP_SUB("_set");
	__pddgpu_gtt_mgr_set_error(mgr);
	STEP_SUB("_unlock");
	spin_unlock(&mgr->lock);
#else
	__pddgpu_gtt_mgr_set_error(mgr);
#endif
}

/* 2.2 */
static inline void pddgpu_gtt_mgr_clear_error(struct pddgpu_gtt_mgr *mgr)
{
	atomic_and(~PDDGPU_GTT_MGR_STATE_ERROR, &mgr->state);
}

void pddgpu_gtt_mgr_inject_error(struct pddgpu_gtt_mgr *mgr)
{
	pddgpu_gtt_mgr_set_error(mgr);
}

int pddgpu_gtt_mgr_init(struct pddgpu_device *pdev, u64 pages)
{
	struct pddgpu_gtt_mgr *mgr = &pdev->mman.gtt_mgr;
	int r;

	atomic_set(&mgr->state, PDDGPU_GTT_MGR_STATE_INITIALIZING);
	spin_lock_init(&mgr->lock);
	init_waitqueue_head(&mgr->idle_wq);
	r = drm_mm_init(&mgr->mm, 0, pages);
	if (r) {
		pddgpu_gtt_mgr_set_error(mgr);
		return r;
	}
	atomic_set(&mgr->state, PDDGPU_GTT_MGR_STATE_READY);
	return 0;
}

/* 3: alloc.  *res is set on success. */
int pddgpu_gtt_mgr_alloc(struct pddgpu_gtt_mgr *mgr, u64 size, struct pddgpu_gtt_node **res)
{
	struct pddgpu_device *pdev = gtt_to_pddgpu_device(mgr);
	struct pddgpu_gtt_node *node;
	u64 num_pages = (size + PAGE_SIZE - 1) >> PAGE_SHIFT;
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
		PDDGPU_DEBUG("Device is shutting down, skipping GTT allocation\n");
		SCHED_POINT("return");
		return -ENODEV;
	}

	/* 3.2 */
	STEP("mgr_check");
	if (!pddgpu_gtt_mgr_is_ready(mgr)) {
#ifdef STATE_CHECK_FAILURE_RETRY
#ifdef FIX_STATE_RETRY_BOUNDED
		SCHED_POINT("state_retry_check");
		if (++state_retries >= PDDGPU_GTT_ALLOC_RETRY_COUNT) {
			PDDGPU_ERROR("GTT manager is not ready after %d state checks\n", state_retries);
			SCHED_POINT("return");
			return -ENODEV;
		}
#endif
		STEP("state_retry_sleep");
		msleep(PDDGPU_GTT_ALLOC_RETRY_DELAY);
		goto retry_state;
#else
		PDDGPU_ERROR("GTT manager is not ready\n");
		SCHED_POINT("return");
		return -ENODEV;
#endif
	}

	node = kzalloc(sizeof(*node), GFP_KERNEL);
	if (!node) {
		SCHED_POINT("return");
		return -ENOMEM;
	}
	node->size = size;

	/* 3.3 */
retry_alloc:
	STEP("lock");
	spin_lock(&mgr->lock);

	STEP("recheck");
	if (!pddgpu_gtt_mgr_is_ready(mgr)) {
		STEP("recheck_unlock");
		spin_unlock(&mgr->lock);
		PDDGPU_ERROR("GTT manager state changed during allocation\n");
		r = -ENODEV;
		goto err_free;
	}

	STEP("alloc_call");
	r = drm_mm_insert_node_in_range(&mgr->mm, &node->mm_node, num_pages, 0, 0, 0, mgr->mm.size,
					DRM_MM_INSERT_LOW);
	if (likely(!r)) {
#if PDDGPU_STATS_UNDER_LOCK
		/* the model's statistics step: empty here, used_size is drm_mm's own count */
		SCHED_POINT("ok_stats");
		STEP("ok_unlock");
		spin_unlock(&mgr->lock);
#else
		STEP("ok_unlock");
		spin_unlock(&mgr->lock);
		SCHED_POINT("ok_stats");
#endif
		*res = node;
		SCHED_POINT("return");
		return 0;
	}

#if !PDDGPU_FAILURE_HOLDS_LOCK
	STEP("fail_unlock");
	spin_unlock(&mgr->lock);
#endif

	/* 分配失败时的重试 */
	SCHED_POINT("fail_check");
	if (unlikely(r)) {
		if (++retry_count < PDDGPU_GTT_ALLOC_RETRY_COUNT) {
			PDDGPU_DEBUG("GTT allocation failed, retrying (%d/%d)\n", retry_count,
				     PDDGPU_GTT_ALLOC_RETRY_COUNT);
			STEP("retry_sleep");
			msleep(PDDGPU_GTT_ALLOC_RETRY_DELAY);
			goto retry_alloc;
		}
#if !defined(FIX_ALLOC_FAILURE_SETS_ERROR)
		SCHED_POINT("fail");
#elif defined(FIX_ERROR_UNDER_LOCK) && !PDDGPU_FAILURE_HOLDS_LOCK
		SCHED_POINT("fail");
		STEP("fail_lock");
		pddgpu_gtt_mgr_set_error(mgr);
#else
		STEP("fail");
		__pddgpu_gtt_mgr_set_error(mgr);
#endif
		PDDGPU_ERROR("GTT allocation failed after %d retries: %d\n", retry_count, r);
		goto err_free;
	}

err_free:
	kfree(node);
	SCHED_POINT("return");
	return r;
}

/* 4: free */
void pddgpu_gtt_mgr_free(struct pddgpu_gtt_mgr *mgr, struct pddgpu_gtt_node *node)
{
	struct pddgpu_device *pdev = gtt_to_pddgpu_device(mgr);

	(void)pdev;
#if PDDGPU_FREE_PRELOCK_CHECKS
	/* 4.1 */
	STEP("dev_check");
	if (!pdev || (atomic_read(&pdev->device_state) & PDDGPU_DEVICE_STATE_SHUTDOWN)) {
		PDDGPU_DEBUG("Device is shutting down, skipping GTT free\n");
		SCHED_POINT("skipped");
		return;
	}

	STEP("mgr_check");
	if (!pddgpu_gtt_mgr_is_ready(mgr)) {
		PDDGPU_ERROR("GTT manager is not ready during free\n");
		SCHED_POINT("skipped");
		return;
	}
#endif

	/* 4.2 */
	STEP("lock");
	spin_lock(&mgr->lock);

#ifndef FIX_FREE_ALWAYS_RELEASES
	STEP("recheck");
	if (!pddgpu_gtt_mgr_is_ready(mgr)) {
		STEP("recheck_unlock");
		spin_unlock(&mgr->lock);
		PDDGPU_ERROR("GTT manager state changed during free\n");
		SCHED_POINT("skipped");
		return;
	}
#endif

	STEP("free_call");
	drm_mm_remove_node(&node->mm_node);
#if PDDGPU_STATS_UNDER_LOCK
	SCHED_POINT("stats");
	STEP("unlock");
	spin_unlock(&mgr->lock);
#else
	STEP("unlock");
	spin_unlock(&mgr->lock);
	SCHED_POINT("stats");
#endif
#ifdef FIX_FINI_EVICTS
	wake_up(&mgr->idle_wq);
#endif
	SCHED_POINT("return");
	kfree(node);
}

static int pddgpu_gtt_mgr_reinit(struct pddgpu_gtt_mgr *mgr)
{
#ifdef FIX_RECOVER_REINIT
	SCHED_POINT("init_check");
	if (!drm_mm_clean(&mgr->mm))
		return 0;
	STEP("teardown_old");
	drm_mm_takedown(&mgr->mm);
#endif
	STEP("init");
	return drm_mm_init(&mgr->mm, 0, mgr->mm.size);
}

/* 5.1 */
int pddgpu_gtt_mgr_recover(struct pddgpu_gtt_mgr *mgr)
{
	struct pddgpu_device *pdev = container_of(mgr, struct pddgpu_device, mman.gtt_mgr);
	int r;

	PDDGPU_DEBUG("Recovering GTT manager\n");

	STEP("dev_check");
	if (!pdev || (atomic_read(&pdev->device_state) & PDDGPU_DEVICE_STATE_SHUTDOWN)) {
		PDDGPU_ERROR("Device is shutting down, cannot recover GTT manager\n");
		SCHED_POINT("return");
		return -ENODEV;
	}

#if defined(FIX_RECOVER_STATE)
	STEP("lock");
	spin_lock(&mgr->lock);
	STEP("shutdown_check");
	if (atomic_read(&mgr->state) & PDDGPU_GTT_MGR_STATE_SHUTDOWN) {
		r = -ENODEV;
	} else {
		r = pddgpu_gtt_mgr_reinit(mgr);
		if (!r) {
			int old;

			SCHED_ATOMIC_BEGIN("set_state");
			old = atomic_read(&mgr->state);
			while (!atomic_try_cmpxchg(&mgr->state, &old, (old & ~GTT_ERROR) | GTT_READY))
				;
			SCHED_ATOMIC_END();
		} else {
			STEP("set_state");
			__pddgpu_gtt_mgr_set_error(mgr);
		}
	}
#elif defined(FIX_ERROR_UNDER_LOCK)
	STEP("lock");
	spin_lock(&mgr->lock);
	STEP("clear_error");
	pddgpu_gtt_mgr_clear_error(mgr);
	r = pddgpu_gtt_mgr_reinit(mgr);
#else
	/* 清除错误状态 */
	STEP("clear_error");
	pddgpu_gtt_mgr_clear_error(mgr);

	/* 重新初始化DRM MM分配器 */
	STEP("lock");
	spin_lock(&mgr->lock);
	r = pddgpu_gtt_mgr_reinit(mgr);
#endif
	STEP("unlock");
	spin_unlock(&mgr->lock);

	SCHED_POINT("check_r");
	if (r && r != -ENODEV) {
		PDDGPU_ERROR("Failed to recover DRM MM: %d\n", r);
		STEP("set_error");
		pddgpu_gtt_mgr_set_error(mgr);
		SCHED_POINT("return");
		return r;
	}
	if (r) {
		SCHED_POINT("return");
		return r;
	}

#ifndef FIX_RECOVER_STATE
	/* 设置就绪状态 */
	STEP("set_ready");
	atomic_set(&mgr->state, PDDGPU_GTT_MGR_STATE_READY);
#endif

	SCHED_POINT("ok");
	PDDGPU_INFO("GTT manager recovered successfully\n");
	SCHED_POINT("return");
	return 0;
}

/* 6.2 */
void pddgpu_gtt_mgr_get_stats(struct pddgpu_gtt_mgr *mgr, struct pddgpu_gtt_stats *stats)
{
	if (!mgr || !stats)
		return;

	stats->total_size = mgr->mm.size << PAGE_SHIFT;
#ifdef FIX_STATS_SNAPSHOT
	STEP("lock");
	spin_lock(&mgr->lock);
	SCHED_ATOMIC_BEGIN("read");
	stats->used_size = mgr->mm.allocated_size << PAGE_SHIFT;
	stats->state = atomic_read(&mgr->state);
	SCHED_ATOMIC_END();
	STEP("unlock");
	spin_unlock(&mgr->lock);
	SCHED_POINT("report");
	stats->is_healthy = pddgpu_gtt_state_is_healthy(stats->state);
#else
	/* a plain read of a field the spinlock protects, without the lock */
	STEP("read_used");
	stats->used_size = data_race_read(&mgr->lock, mgr->mm.allocated_size) << PAGE_SHIFT;
	STEP("read_state");
	stats->state = atomic_read(&mgr->state);
	STEP("report");
	stats->is_healthy = pddgpu_gtt_mgr_is_healthy(mgr);
#endif
}

/* the implied fini */
void pddgpu_gtt_mgr_fini(struct pddgpu_gtt_mgr *mgr)
{
	struct pddgpu_device *pdev = gtt_to_pddgpu_device(mgr);

	(void)pdev;
	STEP("mgr_shutdown");
	atomic_or(PDDGPU_GTT_MGR_STATE_SHUTDOWN, &mgr->state);
#ifndef FINI_CONCURRENT
	STEP("drain");
	wait_event(pdev->idle_wq, atomic_read(&pdev->users) == 0);
#endif
#if defined(FIX_FINI_EVICTS)
	for (;;) {
		STEP("lock");
		spin_lock(&mgr->lock);
		SCHED_POINT("evict_check");
		if (drm_mm_clean(&mgr->mm))
			break;
		STEP("evict_unlock");
		spin_unlock(&mgr->lock);
		STEP("evict_wait");
		wait_event(mgr->idle_wq, drm_mm_clean(&mgr->mm));
	}
	STEP("teardown");
	drm_mm_takedown(&mgr->mm);
	STEP("unlock");
	spin_unlock(&mgr->lock);
#elif defined(FINI_TAKES_LOCK)
	STEP("lock");
	spin_lock(&mgr->lock);
	STEP("teardown");
	drm_mm_takedown(&mgr->mm);
	STEP("unlock");
	spin_unlock(&mgr->lock);
#else
	STEP("teardown");
	drm_mm_takedown(&mgr->mm);
#endif
	WARN(mgr->mm.allocated_size, "gtt_mgr_fini: used=%llu left non-zero\n",
	     (unsigned long long)(mgr->mm.allocated_size << PAGE_SHIFT));
}
