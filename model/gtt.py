"""The GTT manager of the design document: a drm_mm range allocator behind a
spinlock; used_size is the allocator's own allocated_size."""
from dataclasses import replace

from .geometry import geometry_for
from .manager import ENODEV, ENOSPC, Profile, Workload, build, workload_allocs

PROFILE = Profile(
    name="gtt", lock_kind="spinlock",
    alloc_fn="drm_mm_insert_node_in_range", free_fn="drm_mm_remove_node",
    init_fn="drm_mm_init", fini_fn="drm_mm_takedown",
    retry_count=3, retry_delay_ms=5,                 # PDDGPU_GTT_ALLOC_RETRY_COUNT / _DELAY
    alloc_codes=(0, -ENODEV, -ENOSPC), alloc_fail_code=-ENOSPC,   # err_free returns drm_mm's r
    has_vres=False, has_vis=False, used_in_allocator=True, recover_resets_stats=False,
)


def make(options: dict, workload: Workload, size: int = 4, name: str = "gtt", window: int | None = None,
         retry_count: int | None = None):
    """``size``: GTT aperture in pages; ``window``: model only the lowest
    ``window`` pages (default: all of them up to 10, else a window computed
    from the workload; see ``geometry.geometry_for``)."""
    prof = PROFILE if retry_count is None else replace(PROFILE, retry_count=retry_count)
    return build(prof, geometry_for("range", size, window, *workload_allocs(workload)), options, workload, name)
