/*
 * The readings and fixes of model/options.py as preprocessor options: the
 * option's name in upper case turns it on (-DFIX_IS_READY), a reading with a
 * value other than its default is NAME_VALUE (-DSTATS_UPDATE_POINT_UNDER_LOCK)
 * or NAME=value (-DIS_READY_READS=1).  conformance/c_build.py derives the set
 * from a spec's or a trace's options; nothing here is chosen silently.
 *
 *   retry_holds_lock            RETRY_HOLDS_LOCK
 *   stats_update_point          STATS_UPDATE_POINT_UNDER_LOCK (default after_unlock)
 *   state_check_failure         STATE_CHECK_FAILURE_RETRY     (default return)
 *   fini_concurrent             FINI_CONCURRENT
 *   fini_takes_lock             FINI_TAKES_LOCK
 *   init_can_fail               INIT_CAN_FAIL   (no code change: the harness injects the failure)
 *   is_ready_reads              IS_READY_READS=1              (default 2)
 *   gtt_mm_fields               (one reading: the shim's struct drm_mm has size and allocated_size)
 *   fix_free_always_releases    FIX_FREE_ALWAYS_RELEASES
 *   fix_free_no_prelock_return  FIX_FREE_NO_PRELOCK_RETURN
 *   fix_fini_evicts             FIX_FINI_EVICTS
 *   fix_is_ready                FIX_IS_READY
 *   fix_recover_reinit          FIX_RECOVER_REINIT
 *   fix_recover_state           FIX_RECOVER_STATE
 *   fix_retry_unlock            FIX_RETRY_UNLOCK
 *   fix_state_retry_bounded     FIX_STATE_RETRY_BOUNDED
 *   fix_alloc_failure_sets_error FIX_ALLOC_FAILURE_SETS_ERROR
 *   fix_error_under_lock        FIX_ERROR_UNDER_LOCK
 *   fix_stats_snapshot          FIX_STATS_SNAPSHOT
 *
 * A trace's retry_count sets PDDGPU_VRAM_ALLOC_RETRY_COUNT / _GTT_ (default 3).
 */
#ifndef PDDGPU_OPTIONS_H
#define PDDGPU_OPTIONS_H

#ifndef IS_READY_READS
#define IS_READY_READS 2
#endif
#if IS_READY_READS != 1 && IS_READY_READS != 2
#error "IS_READY_READS must be 1 or 2"
#endif

/* fix_free_always_releases includes fix_free_no_prelock_return */
#if defined(FIX_FREE_ALWAYS_RELEASES) || defined(FIX_FREE_NO_PRELOCK_RETURN)
#define PDDGPU_FREE_PRELOCK_CHECKS 0
#else
#define PDDGPU_FREE_PRELOCK_CHECKS 1
#endif

#if defined(STATS_UPDATE_POINT_UNDER_LOCK) || defined(FIX_STATS_SNAPSHOT)
#define PDDGPU_STATS_UNDER_LOCK 1
#else
#define PDDGPU_STATS_UNDER_LOCK 0
#endif

/* the failure path as printed keeps the lock (retry_holds_lock) unless fixed */
#if defined(RETRY_HOLDS_LOCK) && !defined(FIX_RETRY_UNLOCK)
#define PDDGPU_FAILURE_HOLDS_LOCK 1
#else
#define PDDGPU_FAILURE_HOLDS_LOCK 0
#endif

#endif
