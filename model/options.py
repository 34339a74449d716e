"""Every choice the design document leaves open (a *reading*) and every fix of
a defect we found (a *fix*), as named options of the manager models.  A spec
sets them by name; nothing here is chosen silently."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Option:
    name: str
    kind: str            # "reading" | "fix"
    default: object
    choices: tuple       # allowed values
    section: str
    text: str
    finding: str = ""    # a reading that stands in for a fact of the document (not a concurrency defect),
                         # reported by ``findings`` under this heading
    subsumed_by: str = ""  # a partial fix that this fix includes: on with it, a no-op; not one of ALL_FIXES


_R, _F = "reading", "fix"
BOOL = (False, True)

OPTIONS = {o.name: o for o in [
    # readings: the document is silent or ambiguous here
    Option("retry_holds_lock", _R, False, BOOL, "VRAM/GTT 3.3",
           "The printed retry code sleeps and jumps back to retry_alloc (and returns -ENOMEM / goes to "
           "err_free) with no unlock between the lock and the retry block. true: the lock is still held "
           "there, as printed; false: the elided allocator call is followed by an unlock."),
    Option("stats_update_point", _R, "after_unlock", ("after_unlock", "under_lock"), "VRAM 6 / 2.1",
           "Where alloc and free update the atomic64 statistics (not shown): after the unlock (as amdgpu "
           "does for vis_usage) or inside the critical section."),
    Option("state_check_failure", _R, "return", ("return", "retry"), "3.2 / 4.2 (状态重试)",
           "What alloc does when the pre-lock manager check fails: return -ENODEV as the code shows, or "
           "sleep and retry the checks as the text 'state retry' says."),
    Option("fini_concurrent", _R, False, BOOL, "(implied fini)",
           "Whether manager fini may run while alloc/free/recover calls are still in flight. false: fini "
           "starts once every other thread has returned (after setting device SHUTDOWN)."),
    Option("fini_takes_lock", _R, False, BOOL, "(implied fini)",
           "Whether fini tears the allocator down under the manager's lock."),
    Option("init_can_fail", _R, False, BOOL, "5.1",
           "Whether drm_buddy_init / drm_mm_init in recover can fail (e.g. -ENOMEM)."),
    Option("is_ready_reads", _R, 2, (1, 2), "1.2",
           "is_ready reads the state word twice, as written (2), or once (1)."),
    Option("gtt_mm_fields", _R, "aperture_and_node_pages", ("aperture_and_node_pages",), "GTT 5.1 / 6.2",
           "The document's GTT code does not compile against drm_mm: recover calls drm_mm_init(&mgr->mm, 0, "
           "mgr->mm.size) and get_stats reads mgr->mm.size and mgr->mm.allocated_size, but the kernel's struct "
           "drm_mm (include/drm/drm_mm.h: color_adjust, hole_stack, head_node, interval_tree, holes_size, "
           "holes_addr, scan_active) has neither a size nor an allocated_size field, and drm_mm_init returns "
           "void, so 'r = drm_mm_init(...)' does not compile either. The model takes mm.size to be the page count "
           "of the aperture the manager was set up with (recover re-creates the allocator over the same pages; "
           "get_stats' total_size reports it) and mm.allocated_size to be the pages held by allocated nodes, "
           "changed by the allocator itself in the same step as the node, under the spinlock (so get_stats' "
           "unlocked read of it is a data race, spec 16). No other meaning is modelled.",
           finding="the document's code does not compile against drm_mm"),
    # fixes: each one repairs one defect and is turned on by name
    Option("fix_free_always_releases", _F, False, BOOL, "4.1 / 4.2",
           "free never returns early while it holds a block: it takes the lock and returns the block "
           "whatever the device or manager state (the free-during-shutdown and free-during-error leaks)."),
    Option("fix_free_no_prelock_return", _F, False, BOOL, "4.1",
           "A partial fix of the free-during-shutdown leak: free drops 4.1's checks before the lock and their "
           "early returns, but keeps 4.2's re-check under the lock, whose 'unlock; return;' still leaves the "
           "block in the allocator (spec 22). fix_free_always_releases drops both and subsumes this one.",
           subsumed_by="fix_free_always_releases"),
    Option("fix_fini_evicts", _F, False, BOOL, "(fini)",
           "fini marks the manager SHUTDOWN, waits under the lock until no block is live (evicts), and "
           "only then tears the allocator down, under the lock (as amdgpu does)."),
    Option("fix_is_ready", _F, False, BOOL, "1.2",
           "is_ready reads the state word once and also rejects ERROR (and INITIALIZING)."),
    Option("fix_recover_reinit", _F, False, BOOL, "5.1",
           "recover re-initialises the allocator only when no block is live, tears it down first, and "
           "does not reset the statistics (with no live block they are 0 once in-flight updates land)."),
    Option("fix_recover_state", _F, False, BOOL, "5.1 / 2.2",
           "recover clears ERROR and sets READY last, under the lock, with a compare-and-exchange that "
           "fails if SHUTDOWN is set, instead of clear_error first and a plain atomic_set(READY); a failed "
           "init sets ERROR before the unlock."),
    Option("fix_retry_unlock", _F, False, BOOL, "3.3",
           "The failure path unlocks before sleeping or returning, and frees vres before -ENOMEM."),
    Option("fix_state_retry_bounded", _F, False, BOOL, "4.2",
           "Under the 'retry' reading of a failed state check, give up with -ENODEV after RETRY_COUNT attempts."),
    Option("fix_alloc_failure_sets_error", _F, False, BOOL, "并发保护机制 3.1 (错误检测)",
           "The document promises that allocation failure sets the error state (分配失败时设置错误状态); its "
           "alloc code returns -ENOMEM / goes to err_free without doing so. The fix calls set_error on the final "
           "failure, after the last retry."),
    Option("fix_error_under_lock", _F, False, BOOL, "2.1 / 2.2 / 5.1",
           "set_error and clear_error take the manager lock (as every other writer of the state word that the "
           "in-lock re-check relies on must): an unlocked atomic_or(ERROR) can land between alloc's re-check "
           "under the lock and its allocator call, so an ERROR manager serves the allocation."),
    Option("fix_stats_snapshot", _F, False, BOOL, "6.2",
           "Statistics are updated inside the critical section and get_stats reads them under the lock."),
]}


class OptionError(ValueError):
    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


def resolve(given: dict) -> dict:
    """Defaults filled in; unknown names or values rejected with the field named."""
    out = {n: o.default for n, o in OPTIONS.items()}
    for k, v in given.items():
        if k not in OPTIONS:
            raise OptionError(k, f"unknown option '{k}' (known: {', '.join(sorted(OPTIONS))})")
        o = OPTIONS[k]
        if v not in o.choices or type(v) is not type(o.default):
            raise OptionError(k, f"option '{k}' must be one of {list(o.choices)}, not {v!r}")
        out[k] = v
    return out


ALL_FIXES = {n: True for n, o in OPTIONS.items() if o.kind == _F and not o.subsumed_by}
"""Every fix on: the fully fixed protocol (a partial fix another one subsumes is left out: it would change
nothing with its whole fix on, and a test that turns the whole fix off means the protocol without it)."""
