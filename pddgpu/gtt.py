"""The GTT manager of the design document: a drm_mm range allocator behind a
spinlock; ``used_size`` is the allocator's own ``allocated_size`` (6.2).

As written: ``PDDGPU_GTT_ALLOC_RETRY_COUNT`` 3, ``_DELAY`` 5 ms; after the
last retry ``goto err_free`` (the node is freed, drm_mm's -ENOSPC
returned); recover re-inits the drm_mm under the spinlock (5.1) and resets
nothing else (allocated_size restarts with the new drm_mm).

get_stats reads ``mm.allocated_size`` -- a field the spinlock protects --
without taking it; a KCSAN-style check reports the race when another thread
holds the lock at that moment.

Placement: ``DRM_MM_INSERT_LOW`` (lowest hole first), the model's first fit.
"""
from __future__ import annotations

from .device import PAGE_SHIFT, ManagerBase, Resource
from .errors import ENOSPC, AllocError
from .range_alloc import InsertMode, RangeAllocator
from .sched import SpinLock

PDDGPU_GTT_ALLOC_RETRY_COUNT = 3
PDDGPU_GTT_ALLOC_RETRY_DELAY = 5        # ms


class GttManager(ManagerBase):
    NAME = "gtt"
    LOCK = SpinLock
    RETRY_COUNT = PDDGPU_GTT_ALLOC_RETRY_COUNT
    RETRY_DELAY_MS = PDDGPU_GTT_ALLOC_RETRY_DELAY
    ALLOC_FAIL_ERRNO = ENOSPC
    HAS_VIS = False
    RECOVER_RESETS_STATS = False
    INSERT_MODE = InsertMode.LOW

    def __init__(self, dev, pages: int):
        self.pages = pages
        super().__init__(dev)

    # allocator ------------------------------------------------------------------
    def _allocator_init(self):
        return RangeAllocator(0, self.pages)                                # drm_mm_init(&mgr->mm, 0, size)

    def _allocator_fini(self) -> list:
        return self.mm.takedown()                                          # drm_mm_takedown

    def _live_count(self) -> int:
        return sum(1 for _ in self.mm.nodes())

    def _alloc_call(self, res: Resource) -> int:
        pages = -(-res.size >> PAGE_SHIFT)
        try:
            node = self.mm.insert_node(pages, 0, 0, self.pages, self.INSERT_MODE)   # drm_mm_insert_node_in_range
        except AllocError as e:
            return -e.errno
        res.blocks = [node]
        res.allocator = self.mm
        res.gen = self.gen
        return 0

    def _free_call(self, res: Resource) -> None:
        for node in res.blocks:
            self.mm.remove_node(node)                                      # drm_mm_remove_node
        res.released = True

    def _stats_add(self, res: Resource, at: str) -> None:
        self._pt(at)                      # used_size is mm.allocated_size: nothing to update

    def _stats_sub(self, res: Resource, at: str) -> None:
        self._pt(at)

    def _alloc_failed(self, vres, r: int) -> int:
        return r                          # err_free: the node was never inserted; return drm_mm's r

    def _allocated_size(self) -> int:
        """``mgr->mm.allocated_size``: a plain field of the struct (readable
        after takedown, as in C)."""
        return getattr(self.mm, "_allocated_size", 0)

    def _read_used(self, at):
        if at is not None:
            self._pt(at)
            owner = self.lock.owner
            import threading
            if owner is not None and owner != threading.get_ident():
                self.dev.bug("no_data_race",
                             f"KCSAN: data race: get_stats reads {self.NAME}_mgr->mm.allocated_size without the "
                             f"lock while {self.lock.owner_name} holds it")
        return self._allocated_size() << PAGE_SHIFT

    def _used_bytes_at_fini(self, used):
        return self._allocated_size() << PAGE_SHIFT

    def _total_size(self) -> int:
        return self.pages << PAGE_SHIFT
