"""The VRAM manager of the design document: a drm_buddy allocator behind a
mutex, statistics in atomic64 counters (used, vis_usage)."""
from dataclasses import replace

from .geometry import geometry_for
from .manager import ENODEV, ENOMEM, Profile, Workload, build, workload_allocs

PROFILE = Profile(
    name="vram", lock_kind="mutex",
    alloc_fn="drm_buddy_alloc_blocks", free_fn="drm_buddy_free_list",
    init_fn="drm_buddy_init", fini_fn="drm_buddy_fini",
    retry_count=3, retry_delay_ms=10,                # PDDGPU_VRAM_ALLOC_RETRY_COUNT / _DELAY
    alloc_codes=(0, -ENODEV, -ENOMEM), alloc_fail_code=-ENOMEM,
    has_vres=True, has_vis=True, used_in_allocator=False, recover_resets_stats=True,
)


def make(options: dict, workload: Workload, size: int = 4, name: str = "vram", window: int | None = None,
         retry_count: int | None = None):
    """``size``: VRAM in minimum blocks (a power of two); ``window``: model only
    the lowest ``window`` of them (default: all of them up to 32, else a
    window computed from the workload; see ``geometry.geometry_for``)."""
    prof = PROFILE if retry_count is None else replace(PROFILE, retry_count=retry_count)
    return build(prof, geometry_for("buddy", size, window, *workload_allocs(workload)), options, workload, name)
