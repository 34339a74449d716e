/* The PDDGPU device and its two memory managers (design document, sections 1-6). */
#ifndef PDDGPU_H
#define PDDGPU_H

#include "shim/kshim.h"
#include "pddgpu_options.h"

#define PDDGPU_ERROR(...) pr_err(__VA_ARGS__)
#define PDDGPU_INFO(...) pr_info(__VA_ARGS__)
#define PDDGPU_DEBUG(...) pr_debug(__VA_ARGS__)

/* the document uses the flag without giving its value */
#define PDDGPU_DEVICE_STATE_SHUTDOWN 0x01

#define PDDGPU_VRAM_MGR_STATE_INITIALIZING 0x01
#define PDDGPU_VRAM_MGR_STATE_READY 0x02
#define PDDGPU_VRAM_MGR_STATE_SHUTDOWN 0x04
#define PDDGPU_VRAM_MGR_STATE_ERROR 0x08

#define PDDGPU_GTT_MGR_STATE_INITIALIZING 0x01
#define PDDGPU_GTT_MGR_STATE_READY 0x02
#define PDDGPU_GTT_MGR_STATE_SHUTDOWN 0x04
#define PDDGPU_GTT_MGR_STATE_ERROR 0x08

#ifndef PDDGPU_VRAM_ALLOC_RETRY_COUNT
#define PDDGPU_VRAM_ALLOC_RETRY_COUNT 3
#endif
#define PDDGPU_VRAM_ALLOC_RETRY_DELAY 10 /* ms */
#ifndef PDDGPU_GTT_ALLOC_RETRY_COUNT
#define PDDGPU_GTT_ALLOC_RETRY_COUNT 3
#endif
#define PDDGPU_GTT_ALLOC_RETRY_DELAY 5 /* ms */

struct pddgpu_vram_mgr {
	struct drm_buddy mm;
	struct mutex lock;
	atomic_t state;
	atomic64_t used;
	atomic64_t vis_usage;
	u64 size;
	u64 visible_size;
	u64 default_page_size;
	wait_queue_head_t idle_wq;     /* fix_fini_evicts: fini waits here for the last free */
};

/* what alloc hands back: the block list of one request */
struct pddgpu_vram_res {
	u64 size;
	struct list_head blocks;
};

struct pddgpu_gtt_mgr {
	struct drm_mm mm;
	spinlock_t lock;
	atomic_t state;
	wait_queue_head_t idle_wq;
};

struct pddgpu_gtt_node {
	u64 size;
	struct drm_mm_node mm_node;
};

struct pddgpu_vram_stats {
	u64 total_size;
	u64 used_size;
	u64 visible_used;
	u32 state;
	bool is_healthy;
};

struct pddgpu_gtt_stats {
	u64 total_size;
	u64 used_size;
	u32 state;
	bool is_healthy;
};

struct pddgpu_mman {
	struct pddgpu_vram_mgr vram_mgr;
	struct pddgpu_gtt_mgr gtt_mgr;
};

struct pddgpu_device {
	atomic_t device_state;
	atomic_t users;                /* calls in flight: the implied fini waits for none */
	wait_queue_head_t idle_wq;
	struct pddgpu_mman mman;
};

static inline struct pddgpu_device *to_pddgpu_device(struct pddgpu_vram_mgr *mgr)
{
	return container_of(mgr, struct pddgpu_device, mman.vram_mgr);
}

int pddgpu_vram_mgr_init(struct pddgpu_device *pdev, u64 size, u64 page_size);
int pddgpu_vram_mgr_alloc(struct pddgpu_vram_mgr *mgr, u64 size, struct pddgpu_vram_res **res);
void pddgpu_vram_mgr_free(struct pddgpu_vram_mgr *mgr, struct pddgpu_vram_res *vres);
void pddgpu_vram_mgr_inject_error(struct pddgpu_vram_mgr *mgr);
int pddgpu_vram_mgr_recover(struct pddgpu_vram_mgr *mgr);
void pddgpu_vram_mgr_get_stats(struct pddgpu_vram_mgr *mgr, struct pddgpu_vram_stats *stats);
void pddgpu_vram_mgr_fini(struct pddgpu_vram_mgr *mgr);

int pddgpu_gtt_mgr_init(struct pddgpu_device *pdev, u64 pages);
int pddgpu_gtt_mgr_alloc(struct pddgpu_gtt_mgr *mgr, u64 size, struct pddgpu_gtt_node **res);
void pddgpu_gtt_mgr_free(struct pddgpu_gtt_mgr *mgr, struct pddgpu_gtt_node *node);
void pddgpu_gtt_mgr_inject_error(struct pddgpu_gtt_mgr *mgr);
int pddgpu_gtt_mgr_recover(struct pddgpu_gtt_mgr *mgr);
void pddgpu_gtt_mgr_get_stats(struct pddgpu_gtt_mgr *mgr, struct pddgpu_gtt_stats *stats);
void pddgpu_gtt_mgr_fini(struct pddgpu_gtt_mgr *mgr);

void pddgpu_device_shutdown(struct pddgpu_device *pdev);

#endif
