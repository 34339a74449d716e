"""The PDDGPU memory managers as a transition system, step by step as the
design document writes them (sections cited on every step), with each reading
of an ambiguity and each fix a named option (see ``options.py``).

``vram.py`` and ``gtt.py`` instantiate this with their lock kind, allocator,
retry limit and return codes; everything they share lives here once.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from .builder import LOCK_NO_REACQUIRE, LOCK_OWNER_RELEASE, NO_SLEEP_UNDER_SPINLOCK, ProgramBuilder, owner_value
from .expr import (Const, Local, Op, Pc, Var, and_, bit, eq, implies, in_set, ite, min_, ne, not_, or_)
from .geometry import WINDOW_PROPERTY, Geometry, block_units
from .options import resolve
from .program import Model, Property, ThreadDef, VarDecl

# state word flags (document 1.1)
INITIALIZING, READY, SHUTDOWN, ERROR = 0x01, 0x02, 0x04, 0x08
DEV_SHUTDOWN = 0x01          # PDDGPU_DEVICE_STATE_SHUTDOWN; its value is not given
ENODEV, ENOMEM, ENOSPC = 19, 12, 28
MAX_RETRIES = 1 << 20        # the largest allocation retry limit a spec or trace may set (the counters widen to fit)

# property names
P = dict(
    no_leak_at_fini="fini finds nothing allocated: no block left in the allocator, used and vis_usage back to 0, "
                    "no free skipped",
    no_lost_resource="no resource structure or block is lost: a failed alloc frees its vres, every thread ends "
                     "holding nothing and no free was skipped",
    used_matches_allocations="used is never negative and, whenever no call is in progress, equals the size of "
                             "the blocks the allocator holds (vis_usage too, for VRAM)",
    no_overlap="no two live allocations share a unit of memory",
    no_double_free="a block is freed only while the allocator holds it",
    no_foreign_free="a block is freed only into the allocator instance that handed it out",
    no_allocator_use_after_fini="the allocator is used only while initialised: never after fini or a failed init",
    no_reinit_of_live_allocator="recover never re-initialises an allocator that still holds live blocks",
    no_buddy_metadata_leak="drm_buddy_init is only called on a torn-down allocator (else its free lists leak)",
    shutdown_sticky="SHUTDOWN, once set in the manager's state word, is never cleared",
    returns_without_lock="no call returns while still holding the manager lock",
    error_serves_no_alloc="no allocation reaches the allocator while ERROR is set in the state word (2.2: READY -> "
                          "ERROR stops service; checked at the allocator call, not where a check looked)",
    allocator_lock_held="every allocator call (alloc, free, init, fini) and every read of the allocator's own fields "
                        "happens with the manager lock held by the caller (lockdep_assert_held)",
    alloc_failure_sets_error="an allocation that fails for good returns with ERROR set, unless a recover has cleared "
                             "it since (并发保护机制 3.1: 分配失败时设置错误状态)",
    alloc_retries_before_failure="an allocation fails for good only after the allocator refused it RETRY_COUNT "
                                 "times, counted at the allocator, not by the code's counter (3.3 / 并发保护机制 "
                                 "4.1: 分配失败时自动重试)",
    alloc_retries_bounded="one allocation asks the allocator at most RETRY_COUNT times (3.3: RETRY_COUNT, then "
                          "-ENOMEM)",
    alloc_success_hands_a_block="an allocation that returns 0 hands the caller a block, and for VRAM its resource "
                                "(3.3: r == 0 is success)",
    alloc_enodev_only_when_unready="an allocation returns -ENODEV only if the device was shutting down or the "
                                   "manager was not READY at some instant of the call (3.1 / 3.2: -ENODEV means "
                                   "not ready; a READY manager serves)",
    device_shutdown_refuses_calls="alloc and recover called once the device is shutting down return -ENODEV "
                                  "(3.1 / 5.1: Device is shutting down)",
    recover_refused_only_at_shutdown="recover returns -ENODEV only while the device or the manager is shutting "
                                     "down (5.1)",
    set_error_sets_error="set_error leaves ERROR set, unless a recover has cleared it since (2.1)",
    state_transitions_documented="the state word moves only as 2.2 (状态转换) draws it: INITIALIZING is not "
                                 "re-entered after init, and only the shutdown path sets SHUTDOWN",
    fini_shuts_down="fini tears the allocator down only once the device and the manager are marked SHUTDOWN, "
                    "so that every later call is refused (3.1 / 3.2)",
    init_failure_sets_error="a recover whose allocator init failed returns with ERROR set, unless a recover has "
                            "cleared it since (并发保护机制 3.1: 初始化失败时设置错误状态)",
    recover_leaves_ready="a recover that returns 0 leaves the manager READY without ERROR, unless ERROR was set again "
                         "since (2.2: ERROR -> READY; 3.2: 清除错误状态)",
    stats_snapshot="get_stats returns values that all held at one instant, when the statistics agreed with the "
                   "allocator (a linearizable snapshot, 6.2 / 2.1)",
    documented_return_code="every call returns a code the document names",
    stats_consistent="get_stats reports a possible snapshot: 0 <= used_size <= total_size and visible_used <= "
                     "used_size",
    no_data_race="no unlocked read of lock-protected allocator fields while another thread holds the lock",
    **{LOCK_NO_REACQUIRE: "a lock is never acquired again by the thread that holds it",
       LOCK_OWNER_RELEASE: "a lock is released only by its owner",
       NO_SLEEP_UNDER_SPINLOCK: "no sleep (msleep, mutex_lock) while a spinlock is held"},
)


@dataclass(frozen=True)
class Profile:
    """What distinguishes the VRAM manager from the GTT manager."""
    name: str
    lock_kind: str                 # mutex | spinlock
    alloc_fn: str
    free_fn: str
    init_fn: str
    fini_fn: str
    retry_count: int
    retry_delay_ms: int
    alloc_codes: tuple             # documented return codes of alloc (negated errnos and 0)
    alloc_fail_code: int           # what alloc returns after the last retry
    has_vres: bool                 # VRAM allocates a vres that the -ENOMEM path forgets to free
    has_vis: bool                  # VRAM keeps vis_usage beside used
    used_in_allocator: bool        # GTT's used_size is mm.allocated_size, kept by the allocator itself
    recover_resets_stats: bool     # VRAM's recover resets used and vis_usage; GTT's relies on drm_mm_init


@dataclass
class Workload:
    workers: list = field(default_factory=list)     # per worker: [("alloc", size) | ("free",)]
    error_injectors: int = 0
    recoverers: int = 0
    stats_readers: int = 0
    shutdown: bool = False
    worker_loop: bool = False                       # workers repeat their operations forever


def workload_allocs(w: Workload) -> tuple[tuple, int]:
    """The allocation sizes of a workload and the number of its alloc
    operations: each holds at most one block, so (without a loop) no more
    blocks than that are ever in the allocator at once.  What the default
    allocator window is computed from (``geometry.geometry_for``)."""
    allocs = [op[1] for ops in w.workers for op in ops if op[0] == "alloc"]
    return tuple(sorted(set(allocs))), len(allocs)


class _Ctx:
    def __init__(self, prof: Profile, geo: Geometry, opt: dict, workload: Workload):
        self.prof, self.geo, self.opt, self.wl = prof, geo, opt, workload
        self.spin = ("lock",) if prof.lock_kind == "spinlock" else ()

    @property
    def lk(self):
        return self.prof.lock_kind

    def stats_locked(self) -> bool:
        return self.opt["stats_update_point"] == "under_lock" or self.opt["fix_stats_snapshot"]


S = Var("state")
DEV = Var("dev_state")
MASK = Var("mask")
USED = Var("used")
VIS = Var("vis")
RET = Local("ret")
BLK = Local("blk")


# Ghost counters of the writes that set and clear ERROR, saturating at GHOST_CAP so the state space stays
# finite with looping workers; a mark taken at the cap makes its property vacuous there, never false.
GHOST_CAP = 3
ESETS = Var("err_sets")
ECLEARS = Var("err_clears")


def _bump(v):
    return (v, Op("min", (v + 1, Const(GHOST_CAP))))


def _set_error_updates():
    """set_error (2.1): atomic_or(ERROR) and the ghost count of ERROR sets."""
    return [(S, S | ERROR), _bump(ESETS)]


def _unless_since(cond, claim, mark, counter):
    """``cond -> claim``, unless ``counter`` moved since ``mark`` was taken.  A mark taken at the cap cannot
    tell, so there the premise is false: the property is not exercised (vacuous), never wrongly failed."""
    return implies(and_(cond, mark < GHOST_CAP), or_(claim, ne(counter, mark)))


def _serving():
    """The manager serves (2.2): device up, state word exactly READY."""
    return and_(not_(bit(DEV, DEV_SHUTDOWN)), eq(S & 15, READY))


def _entry_marks():
    """Taken at a call's first step: was the device down (dmark), and the ERROR sets so far, or the cap when the
    manager was not serving at entry (umark: an -ENODEV is then justified, the premise made false)."""
    return [(Local("dmark"), ite(bit(DEV, DEV_SHUTDOWN), 1, 0)), (Local("umark"), ite(_serving(), ESETS, GHOST_CAP))]


def _lock_held():
    return eq(Var("lock"), owner_value())


def _allocator_usable():
    return and_(eq(Var("alive"), 1), eq(Var("finied"), 0))


def _is_ready_steps(b: ProgramBuilder, c: _Ctx, label, ok, fail, *, fail_updates=(), ok_updates=(), section, call):
    """1.2 is_ready: two separate atomic_reads as written, one with the fix.
    Returns the entry label."""
    seen = []
    if c.opt["fix_is_ready"]:
        cond = eq(S & (READY | SHUTDOWN | ERROR | INITIALIZING), READY)
        b.branch(label, [(cond, [*ok_updates, *seen], ok), (not_(cond), list(fail_updates), fail)],
                 section=section, call=call, code="state = atomic_read(&mgr->state); ready = (state & (READY|SHUTDOWN|ERROR)) == READY;")
        return label
    if c.opt["is_ready_reads"] == 1:
        cond = and_(bit(S, READY), not_(bit(S, SHUTDOWN)))
        b.branch(label, [(cond, [*ok_updates, *seen], ok), (not_(cond), list(fail_updates), fail)],
                 section=section, call=call, code="is_ready(mgr) (one read)")
        return label
    b.branch(label, [(bit(S, READY), [], label + "2"), (not_(bit(S, READY)), list(fail_updates), fail)],
             section=section, call=call, code="atomic_read(&mgr->state) & STATE_READY")
    b.branch(label + "2", [(not_(bit(S, SHUTDOWN)), [*ok_updates, *seen], ok),
                           (bit(S, SHUTDOWN), list(fail_updates), fail)],
             section=section, call=call, code="!(atomic_read(&mgr->state) & STATE_SHUTDOWN)")
    return label


def _return_step(b: ProgramBuilder, label, nxt, codes, call, updates=(), extra_asserts=()):
    asserts = [("documented_return_code", in_set(RET, codes)),
               ("returns_without_lock", ne(Var("lock"), owner_value()))] + list(extra_asserts)
    b.go(label, nxt, list(updates), kind="return", call=call, asserts=asserts, code="return r;")


def _alloc(b: ProgramBuilder, c: _Ctx, k: int, size: int, nxt: str):
    """Document 3.1-3.3: alloc of ``size`` units."""
    prof, geo, opt = c.prof, c.geo, c.opt
    p = f"op{k}.alloc."
    call = f"op{k}:alloc({size})"
    L = lambda s: p + s  # noqa: E731
    vres = [(Local("vres"), 1)] if prof.has_vres else []
    unvres = [(Local("vres"), 0)] if prof.has_vres else []
    retry_state = opt["state_check_failure"] == "retry"

    marks = _entry_marks()
    b.branch(L("dev_check"), [
        (bit(DEV, DEV_SHUTDOWN), [(RET, -ENODEV), (Local("retry"), 0), *marks], L("return")),
        (not_(bit(DEV, DEV_SHUTDOWN)), [(Local("retry"), 0), *marks], L("mgr_check")),
    ], section="3.1", call=call, code="if (atomic_read(&pdev->device_state) & SHUTDOWN) return -ENODEV;")
    if retry_state and opt["fix_state_retry_bounded"]:
        _is_ready_steps(b, c, L("mgr_check"), L("lock"), L("state_retry_check"), ok_updates=vres,
                        section="3.2 / 4.2", call=call)
        b.branch(L("state_retry_check"), [
            (Local("sretry") + 1 < prof.retry_count, [(Local("sretry"), Local("sretry") + 1)], L("state_retry_sleep")),
            (Local("sretry") + 1 >= prof.retry_count, [(RET, -ENODEV)], L("return")),
        ], section="4.2 (fix)", call=call, code="if (++state_retries >= RETRY_COUNT) return -ENODEV;")
        b.sleep(L("state_retry_sleep"), L("dev_check"), section="4.2", call=call,
                code="msleep(); /* 状态检查失败时重试 */")
    elif retry_state:
        _is_ready_steps(b, c, L("mgr_check"), L("lock"), L("state_retry_sleep"), ok_updates=vres,
                        section="3.2 / 4.2", call=call)
        b.sleep(L("state_retry_sleep"), L("dev_check"), section="4.2", call=call,
                code="msleep(); /* 状态检查失败时重试 */")
    else:
        _is_ready_steps(b, c, L("mgr_check"), L("lock"), L("return"), fail_updates=[(RET, -ENODEV)],
                        ok_updates=vres, section="3.2", call=call)
    b.acquire(L("lock"), "lock", L("recheck"), c.lk, section="3.3", call=call,
              code=f"retry_alloc: {'mutex' if c.lk == 'mutex' else 'spin'}_lock(&mgr->lock);")
    _is_ready_steps(b, c, L("recheck"), L("alloc_call"), L("recheck_unlock"), section="3.3", call=call)
    b.release(L("recheck_unlock"), "lock", L("return"), c.lk, updates=[(RET, -ENODEV), *unvres],
              section="3.3", call=call, code="unlock; kfree(vres); return -ENODEV; /* state changed */")

    # the request (``size``, in the call's name) and the block the allocator hands out for it (``bsize``: VRAM
    # rounds up to a power of two, GTT takes exactly ``size`` pages) are both kept: a trace shows alloc(3) placed
    # in a block of 4, and the allocator and the statistics count the block
    bsize = block_units(geo.kind, size)
    fit = geo.first_fit(MASK, bsize)
    # the ghost count of allocator calls of this alloc, saturating one past the bound so a runaway loop stays finite
    counted = (Local("calls"), min_(Local("calls") + 1, prof.retry_count + 1))
    ok_updates = [(MASK, MASK | geo.bit_of(fit)), (BLK, fit), (Local("bgen"), Var("gen")), (Local("r"), 0), counted]
    if prof.used_in_allocator:
        ok_updates.append((USED, USED + bsize))
    asserts = [("no_allocator_use_after_fini", _allocator_usable()),
               ("error_serves_no_alloc", eq(S & ERROR, 0)),
               ("allocator_lock_held", _lock_held()),
               ("alloc_retries_bounded", Local("calls") < prof.retry_count)]
    if geo.windowed:
        # the model sees only the window; the real allocator, everything outside it free, has a block for this
        # request (geometry: window + size <= units), so a first fit that finds the window full is where the
        # model would part from the real allocator
        asserts.append((WINDOW_PROPERTY, fit >= 0))
    b.branch(L("alloc_call"), [
        (fit >= 0, ok_updates, L("ok_stats") if c.stats_locked() else L("ok_unlock")),
        (fit < 0, [(Local("r"), -ENOSPC), counted], L("fail_check") if _holds(c) else L("fail_unlock")),
    ], section="3.3", call=call, kind="alloc", asserts=asserts,
        code=f"r = {prof.alloc_fn}(&mgr->mm, ...);" + (
            f" /* alloc({size}): one block of {bsize} (min_block_size rounded up to a power of two) */"
            if bsize != size else ""))

    # success: statistics (2.1 atomic64) and unlock, in the order the reading says
    stats = _stat_updates(c, +bsize, size)
    if c.stats_locked():
        _stat_chain(b, L("ok_stats"), stats, L("ok_unlock"), call)
        b.release(L("ok_unlock"), "lock", L("return"), c.lk, updates=[(RET, 0)], section="3.3", call=call)
    else:
        b.release(L("ok_unlock"), "lock", L("ok_stats"), c.lk, updates=[(RET, 0)], section="3.3", call=call)
        _stat_chain(b, L("ok_stats"), stats, L("return"), call)

    # failure: 3.3 retry with msleep, then the final error
    if not _holds(c):
        b.release(L("fail_unlock"), "lock", L("fail_check"), c.lk, section="3.3", call=call)
    b.branch(L("fail_check"), [
        (Local("retry") + 1 < prof.retry_count, [(Local("retry"), Local("retry") + 1)], L("retry_sleep")),
        (Local("retry") + 1 >= prof.retry_count, [(Local("retry"), Local("retry") + 1)], L("fail")),
    ], section="3.3", call=call, code=f"if (++retry_count < RETRY_COUNT /* {prof.retry_count} */)")
    b.sleep(L("retry_sleep"), L("lock"), section="3.3", call=call,
            code=f"msleep({prof.retry_delay_ms}); goto retry_alloc;")
    # the mark of ERROR clears: alloc_failure_sets_error asks whether a recover ran since this final failure
    fail_updates = [(RET, prof.alloc_fail_code), (Local("emark"), ECLEARS)]
    if prof.has_vres and opt["fix_retry_unlock"]:
        fail_updates += unvres
    # GTT: err_free frees the node, so only VRAM has a resource to lose here
    code = "return -ENOMEM;" if prof.has_vres else "goto err_free; /* return r */"
    if not opt["fix_alloc_failure_sets_error"]:
        b.go(L("fail"), L("return"), fail_updates, section="3.3", call=call, code=code)
    elif opt["fix_error_under_lock"] and not _holds(c):
        b.go(L("fail"), L("fail_lock"), fail_updates, section="3.3", call=call, code="/* retries exhausted */")
        _locked_set_error(b, c, L("fail_lock"), L("return"), call, section="3.1 错误检测 (fix)")
    else:
        b.go(L("fail"), L("return"), fail_updates + _set_error_updates(), section="3.3 / 3.1 错误检测 (fix)",
             call=call, code="pddgpu_mgr_set_error(mgr); " + code)

    fail = eq(RET, prof.alloc_fail_code)
    promised = [("alloc_failure_sets_error", _unless_since(fail, bit(S, ERROR), Local("emark"), ECLEARS)),
                ("alloc_retries_before_failure", implies(fail, eq(Local("calls"), prof.retry_count))),
                ("alloc_success_hands_a_block", implies(eq(RET, 0), and_(BLK >= 0, *(
                    [eq(Local("vres"), 1)] if prof.has_vres else [])))),
                ("alloc_enodev_only_when_unready", _unless_since(eq(RET, -ENODEV), not_(_serving()), Local("umark"),
                                                                 ESETS)),
                ("device_shutdown_refuses_calls", implies(eq(Local("dmark"), 1), eq(RET, -ENODEV)))]
    lost_vres = [("no_lost_resource", implies(ne(RET, 0), eq(Local("vres"), 0)))] if prof.has_vres else []
    # the return's checks read the pre-state; the ghost mark is dead after it
    _return_step(b, L("return"), nxt, prof.alloc_codes, call, extra_asserts=lost_vres + promised,
                 updates=[(Local("emark"), 0), *_ghost_resets()] + ([(Local("sretry"), 0)] if retry_state and opt["fix_state_retry_bounded"] else []))


def _ghost_resets():
    return [(Local("calls"), 0), (Local("umark"), GHOST_CAP), (Local("dmark"), 0)]


def _locked_set_error(b: ProgramBuilder, c: _Ctx, label, nxt, call, section, mark=None):
    """set_error under the manager lock (fix_error_under_lock): lock, atomic_or(ERROR), unlock.  ``mark``: a
    ghost local that takes the ERROR clears at the write, so that set_error_sets_error is checked at the end."""
    b.acquire(label, "lock", label + "_set", c.lk, section=section, call=call)
    marked = [(Local(mark), ECLEARS)] if mark else []
    b.go(label + "_set", label + "_unlock", _set_error_updates() + marked, section=section, call=call,
         code="atomic_or(STATE_ERROR, &mgr->state); /* under mgr->lock */")
    promised = [("set_error_sets_error", _unless_since(Const(1), bit(S, ERROR), Local(mark), ECLEARS))] if mark else []
    b.release(label + "_unlock", "lock", nxt, c.lk, section=section, call=call, asserts=promised,
              updates=[(Local(mark), 0)] if mark else [])


def _holds(c: _Ctx) -> bool:
    """Does the failure path keep the lock through the retry (as printed)?"""
    return c.opt["retry_holds_lock"] and not c.opt["fix_retry_unlock"]


def _stat_updates(c: _Ctx, delta: int, request: int | None = None):
    """The atomic64 statistics updates of an alloc (``delta`` > 0) or a free.

    What they count: the blocks the allocator handed out, not the bytes asked for.  The document's used and
    vis_usage are the manager's own atomic64 counters (2.1) whose get_stats reports used_size beside
    total_size and visible_used (6.2): what the allocator's memory is taken by.  A VRAM request that is not a
    power of two takes a whole rounded-up block, and amdgpu counts vis_usage per block
    (amdgpu_vram_mgr_vis_size) and usage as the allocator's own accounting (size - avail), so both count the
    block; counting the request in one and the block in the other would give visible_used > used_size
    (stats_consistent) and used != allocated (used_matches_allocations).  ``delta`` is therefore the block's
    size; ``request`` (when it differs) is named in the step's code so a trace shows both."""
    if c.prof.used_in_allocator:
        return []
    what = f"{delta} /* the block of alloc({request}) */" if request is not None and delta != request else "size"
    out = [(USED, f"atomic64_add({what}, &mgr->used);" if delta > 0 else "atomic64_sub(size, &mgr->used);")]
    if c.prof.has_vis:
        out.append((VIS, f"atomic64_add({what}, &mgr->vis_usage);" if delta > 0
                    else "atomic64_sub(size, &mgr->vis_usage);"))
    return [(v, v + delta, code) for v, code in out]


def _stat_chain(b, label, stats, nxt, call):
    if not stats:
        b.go(label, nxt, [], section="6", call=call, code="/* used_size is mm.allocated_size */")
        return
    for i, (var, value, code) in enumerate(stats):
        here = label if i == 0 else f"{label}{i + 1}"
        after = nxt if i == len(stats) - 1 else f"{label}{i + 2}"
        b.go(here, after, [(var, value)], section="2.1 / 6", call=call, code=code)


def _free(b: ProgramBuilder, c: _Ctx, k: int, nxt: str):
    """Document 4.1-4.2: free of the block this worker holds (no call if none)."""
    prof, geo, opt = c.prof, c.geo, c.opt
    p = f"op{k}.free."
    call = f"op{k}:free"
    L = lambda s: p + s  # noqa: E731
    skip = [(Var("lost"), Var("lost") + 1), (BLK, -1)]   # the BO is gone, its block is not
    prelock = not (opt["fix_free_always_releases"] or opt["fix_free_no_prelock_return"])   # 4.1's checks
    first = L("dev_check") if prelock else L("lock")
    b.branch(L("entry"), [(BLK >= 0, [], first), (BLK < 0, [], nxt)], section="4", code="if (!res) return;")
    if prelock:
        b.branch(L("dev_check"), [
            (bit(DEV, DEV_SHUTDOWN), skip, L("skipped")),
            (not_(bit(DEV, DEV_SHUTDOWN)), [], L("mgr_check")),
        ], section="4.1", call=call, code="if (atomic_read(&pdev->device_state) & SHUTDOWN) return; /* skip free */")
        _is_ready_steps(b, c, L("mgr_check"), L("lock"), L("skipped"), fail_updates=skip, section="4.1", call=call)
    b.acquire(L("lock"), "lock", L("recheck") if not opt["fix_free_always_releases"] else L("free_call"), c.lk,
              section="4.2", call=call)
    if not opt["fix_free_always_releases"]:
        _is_ready_steps(b, c, L("recheck"), L("free_call"), L("recheck_unlock"), section="4.2", call=call)
        b.release(L("recheck_unlock"), "lock", L("skipped"), c.lk, updates=skip, section="4.2", call=call,
                  code="unlock; return; /* state changed during free */")
    size = geo.size_of(BLK)
    # the block leaves the worker in the same step it leaves the allocator; its size is kept for the stats
    upd = [(MASK, MASK & ~geo.bit_of(BLK)), (BLK, -1), (Local("fsz"), size)]
    if prof.used_in_allocator:
        upd.append((USED, USED - size))
    b.go(L("free_call"), L("stats") if c.stats_locked() else L("unlock"), upd, kind="free", call=call,
         section="4.2", code=f"{prof.free_fn}(&mgr->mm, ...);",
         asserts=[("no_allocator_use_after_fini", _allocator_usable()),
                  ("no_foreign_free", eq(Local("bgen"), Var("gen"))),
                  ("no_double_free", geo.has(MASK, BLK)),
                  ("allocator_lock_held", _lock_held())])
    stats = [(v, v - Local("fsz"), code) for v, _, code in _stat_updates(c, -1)]
    if c.stats_locked():
        _stat_chain(b, L("stats"), stats, L("unlock"), call)
        b.release(L("unlock"), "lock", L("return"), c.lk, section="4.2", call=call)
    else:
        b.release(L("unlock"), "lock", L("stats"), c.lk, section="4.2", call=call)
        _stat_chain(b, L("stats"), stats, L("return"), call)
    freed = [(Local("vres"), 0)] if prof.has_vres else []
    b.go(L("return"), nxt, freed, kind="return", call=call, code="return;",
         asserts=[("returns_without_lock", ne(Var("lock"), owner_value()))])
    b.go(L("skipped"), nxt, [(Local("vres"), 0)] if prof.has_vres else [], kind="return", call=call,
         code="return; /* block and resource leaked */",
         asserts=[("returns_without_lock", ne(Var("lock"), owner_value()))])


def _worker(c: _Ctx, ops) -> ProgramBuilder:
    b = ProgramBuilder("worker", c.spin)
    rbits = max(8, c.prof.retry_count.bit_length() + 2)     # the retry counters reach retry_count, signed
    for name, bits, init in (("ret", 8, 0), ("retry", rbits, 0), ("r", 8, 0), ("blk", 8, -1), ("bgen", 8, 0), ("fsz", 8, 0), ("sretry", rbits, 0),
                             ("emark", 4, 0)):
        b.local(name, bits, init)
    b.local("calls", rbits, 0, doc="ghost: allocator calls of the current alloc")
    b.local("umark", 4, GHOST_CAP, doc="ghost: ERROR sets at the call's entry (the cap if not serving then, "
                                      "and between calls)")
    b.local("dmark", 2, 0, doc="ghost: the device was shutting down at the call's entry")
    if c.prof.has_vres:
        b.local("vres", 2, 0)
    n = len(ops)
    for k, op in enumerate(ops):
        nxt = f"op{k + 1}.{ops[k + 1][0]}.{'dev_check' if ops[k + 1][0] == 'alloc' else 'entry'}" if k + 1 < n else (
            ("op0.alloc.dev_check" if ops[0][0] == "alloc" else "op0.free.entry") if c.wl.worker_loop else "done")
        if op[0] == "alloc":
            _alloc(b, c, k, op[1], nxt)
        else:
            _free(b, c, k, nxt)
    return b


def _recoverer(c: _Ctx) -> ProgramBuilder:
    """Document 5.1 pddgpu_*_mgr_recover."""
    prof, opt = c.prof, c.opt
    b = ProgramBuilder("recoverer", c.spin)
    b.local("ret", 8, 0)
    b.local("r", 8, 0)
    b.local("rmark", 4, 0)      # ERROR sets counted at entry: recover_leaves_ready
    b.local("imark", 4, 0)      # ERROR clears counted when init failed: init_failure_sets_error
    b.local("dmark", 2, 0, doc="ghost: the device was shutting down at the call's entry")
    call = "recover"
    under_lock = opt["fix_error_under_lock"]
    fix_state, fix_reinit = opt["fix_recover_state"], opt["fix_recover_reinit"]
    mark = (Local("rmark"), ESETS)
    dmark = _entry_marks()[0]
    b.branch("dev_check", [
        (bit(DEV, DEV_SHUTDOWN), [(RET, -ENODEV), mark, dmark], "return"),
        (not_(bit(DEV, DEV_SHUTDOWN)), [mark, dmark], "lock" if (fix_state or under_lock) else "clear_error"),
    ], section="5.1", call=call, code="if (device_state & SHUTDOWN) return -ENODEV;")
    clear = [(S, S & ~ERROR), _bump(ECLEARS)]
    if not fix_state and under_lock:
        b.acquire("lock", "lock", "clear_error", c.lk, section="5.1", call=call)
        b.go("clear_error", "init_check" if fix_reinit else "init", clear, section="5.1 / 2.2 (fix: under the lock)", call=call,
             code="pddgpu_mgr_clear_error(mgr); /* atomic_and(~ERROR), under mgr->lock */")
    elif not fix_state:
        b.go("clear_error", "lock", clear, section="5.1 / 2.2", call=call,
             code="pddgpu_mgr_clear_error(mgr); /* atomic_and(~ERROR) */")
        b.acquire("lock", "lock", "init_check" if fix_reinit else "init", c.lk, section="5.1", call=call)
    else:
        b.acquire("lock", "lock", "shutdown_check", c.lk, section="5.1", call=call)
        b.branch("shutdown_check", [
            (bit(S, SHUTDOWN), [(Local("r"), -ENODEV)], "unlock"),
            (not_(bit(S, SHUTDOWN)), [(Local("r"), 0)], "init_check" if fix_reinit else "init"),
        ], section="5.1 (fix)", call=call, code="if (atomic_read(&mgr->state) & SHUTDOWN) { r = -ENODEV; goto out; }")

    fresh = [(MASK, 0), (Var("gen"), Var("gen") + 1), (Var("alive"), 1), (Local("r"), 0)]
    if prof.used_in_allocator:
        fresh.append((USED, 0))
    failed = [(MASK, 0), (Var("alive"), 0), (Local("r"), -ENOMEM), (Local("imark"), ECLEARS)]
    after_init = "set_state" if fix_state else "unlock"
    if fix_reinit:
        # tear down and re-create only an empty allocator.  The statistics are left alone: with no live
        # block they are already 0 once in-flight updates land, and resetting them races with those updates.
        b.branch("init_check", [(ne(MASK, 0), [(Local("r"), 0)], after_init, "live blocks: keep the allocator"),
                                (eq(MASK, 0), [], "teardown_old")],
                 section="5.1 (fix)", call=call, code="if (live_blocks) { r = 0; goto out; }")
        b.go("teardown_old", "init", [(Var("alive"), 0), (MASK, 0)], section="5.1 (fix)", call=call, kind="fini",
             code=f"if (initialised) {prof.fini_fn}(&mgr->mm);",
             asserts=[("no_allocator_use_after_fini", eq(Var("finied"), 0)), ("allocator_lock_held", _lock_held())])
    cases = [(Const(1), fresh, after_init)]
    if opt["init_can_fail"]:
        cases.append((Const(1), failed, after_init, "init fails"))
    # stated where the harm happens, the init call, whatever precedes it
    asserts = [("no_reinit_of_live_allocator", eq(MASK, 0)),
               ("no_allocator_use_after_fini", eq(Var("finied"), 0)),
               ("allocator_lock_held", _lock_held())]
    if prof.name == "vram":
        asserts.append(("no_buddy_metadata_leak", eq(Var("alive"), 0)))
    b.branch("init", cases, section="5.1", call=call, kind="init",
             code=f"r = {prof.init_fn}(&mgr->mm, ...);", asserts=asserts)
    if fix_state:
        b.branch("set_state", [
            (eq(Local("r"), 0), [(S, (S & ~ERROR) | READY), _bump(ECLEARS)], "unlock"),
            # a failed init marks ERROR before anyone can take the lock and use the dead allocator
            (ne(Local("r"), 0), _set_error_updates(), "unlock"),
        ], section="5.1 (fix)", call=call,
            code="if (!r) atomic_cmpxchg(&mgr->state, old, (old & ~ERROR) | READY); else set_error(mgr);")
    b.release("unlock", "lock", "check_r", c.lk, section="5.1", call=call)
    reset_next = "reset_used" if (prof.recover_resets_stats and not fix_reinit) else ("set_ready" if not fix_state else "ok")
    b.branch("check_r", [
        (and_(ne(Local("r"), 0), ne(Local("r"), -ENODEV)), [(RET, Local("r"))], "set_error"),
        (eq(Local("r"), -ENODEV), [(RET, -ENODEV)], "return"),
        (eq(Local("r"), 0), [], reset_next),
    ], section="5.1", call=call, code="if (r) { set_error(mgr); return r; }")
    if under_lock:
        _locked_set_error(b, c, "set_error", "return", call, section="5.1 / 2.1 (fix: under the lock)")
    else:
        b.go("set_error", "return", _set_error_updates(), section="5.1 / 2.1", call=call,
             code="pddgpu_mgr_set_error(mgr);")
    if prof.recover_resets_stats and not fix_reinit:
        b.go("reset_used", "reset_vis" if prof.has_vis else ("set_ready" if not fix_state else "ok"), [(USED, 0)],
             section="5.1", call=call, code="atomic64_set(&mgr->used, 0);")
        if prof.has_vis:
            b.go("reset_vis", "set_ready" if not fix_state else "ok", [(VIS, 0)], section="5.1", call=call,
                 code="atomic64_set(&mgr->vis_usage, 0);")
    if not fix_state:
        b.go("set_ready", "ok", [(S, READY), _bump(ECLEARS)], section="5.1", call=call,
             code="atomic_set(&mgr->state, STATE_READY); /* plain store */")
    b.go("ok", "return", [(RET, 0)], section="5.1", call=call, code="return 0;")
    promised = [("init_failure_sets_error", _unless_since(eq(RET, -ENOMEM), bit(S, ERROR), Local("imark"), ECLEARS)),
                ("recover_leaves_ready", _unless_since(eq(RET, 0), and_(bit(S, READY), not_(bit(S, ERROR)),
                                                                            not_(bit(S, INITIALIZING))),
                                                       Local("rmark"), ESETS)),
                ("device_shutdown_refuses_calls", implies(eq(Local("dmark"), 1), eq(RET, -ENODEV))),
                ("recover_refused_only_at_shutdown", implies(eq(RET, -ENODEV), or_(bit(DEV, DEV_SHUTDOWN),
                                                                                     bit(S, SHUTDOWN))))]
    _return_step(b, "return", "done", (0, -ENODEV, -ENOMEM), call, extra_asserts=promised,
                 updates=[(Local("rmark"), 0), (Local("imark"), 0), (Local("dmark"), 0)])
    return b


def _injector(c: _Ctx) -> ProgramBuilder:
    b = ProgramBuilder("injector", c.spin)
    if c.opt["fix_error_under_lock"]:
        b.local("xmark", 4, 0, doc="ghost: ERROR clears at the write of set_error")
        _locked_set_error(b, c, "set_error", "done", "set_error", section="2.1 (fix: under the lock)", mark="xmark")
    else:
        b.go("set_error", "done", _set_error_updates(), section="2.1", call="set_error",
             code="atomic_or(STATE_ERROR, &mgr->state);")
    return b


def _stats_reader(c: _Ctx) -> ProgramBuilder:
    """Document 6.2 get_stats: separate unlocked reads, as written."""
    prof, geo = c.prof, c.geo
    b = ProgramBuilder("stats", c.spin)
    for n in ("s_used", "s_vis", "s_state"):
        b.local(n, 64 if n != "s_state" else 8, 0)
    # the instant of the first read: what the allocator held and the other values then (stats_snapshot)
    b.local("s_units", 64, 0)
    b.local("s_vis0", 64, 0)
    b.local("s_state0", 8, 0)
    call = "get_stats"
    total = geo.units
    consistent = and_(Local("s_used") >= 0, Local("s_used") <= total,
                      Local("s_vis") <= Local("s_used") if prof.has_vis else Const(1))
    instant = [(Local("s_units"), geo.allocated_units(MASK)), (Local("s_vis0"), VIS if prof.has_vis else 0),
               (Local("s_state0"), S)]
    snapshot = and_(eq(Local("s_used"), Local("s_units")),
                    eq(Local("s_vis"), Local("s_units")) if prof.has_vis else Const(1),
                    eq(Local("s_vis"), Local("s_vis0")), eq(Local("s_state"), Local("s_state0")))
    race = [("no_data_race", or_(eq(Var("lock"), 0), eq(Var("lock"), owner_value())))] \
        if prof.used_in_allocator else []
    mm_read = race + ([("allocator_lock_held", _lock_held())] if prof.used_in_allocator else [])
    if c.opt["fix_stats_snapshot"]:
        b.acquire("lock", "lock", "read", c.lk, section="6.2 (fix)", call=call)
        b.go("read", "unlock", [(Local("s_used"), USED), (Local("s_vis"), VIS if prof.has_vis else 0),
                                (Local("s_state"), S), *instant], section="6.2 (fix)", call=call,
             code="snapshot used, vis_usage, state under the lock", asserts=mm_read)
        b.release("unlock", "lock", "report", c.lk, section="6.2 (fix)", call=call)
    else:
        b.go("read_used", "read_vis" if prof.has_vis else "read_state", [(Local("s_used"), USED), *instant],
             section="6.2", call=call, asserts=mm_read,
             code="stats->used_size = " + ("mgr->mm.allocated_size << PAGE_SHIFT;" if prof.used_in_allocator
                                           else "atomic64_read(&mgr->used);"))
        if prof.has_vis:
            b.go("read_vis", "read_state", [(Local("s_vis"), VIS)], section="6.2", call=call,
                 code="stats->visible_used = atomic64_read(&mgr->vis_usage);")
        b.go("read_state", "report", [(Local("s_state"), S)], section="6.2", call=call,
             code="stats->state = atomic_read(&mgr->state);")
    # what the caller was handed stays (conformance compares it with the code's Stats); the ghosts are dead
    b.go("report", "done", [(Local(n), 0) for n in ("s_units", "s_vis0", "s_state0")],
         kind="return", call=call, section="6.2", code="return; /* caller reads *stats */",
         asserts=[("stats_consistent", consistent), ("stats_snapshot", snapshot)])
    return b


def _fini(c: _Ctx, others) -> ProgramBuilder:
    """The shutdown path the document implies: device SHUTDOWN, manager
    SHUTDOWN, then the allocator torn down and what is left reported."""
    prof, opt = c.prof, c.opt
    b = ProgramBuilder("fini", c.spin)
    call = "fini"
    b.go("dev_shutdown", "mgr_shutdown", [(DEV, DEV | DEV_SHUTDOWN)], section="3.1 / 4.1 (implied)", call=call,
         code="atomic_or(DEVICE_STATE_SHUTDOWN, &pdev->device_state);")
    after_flag = "lock" if (opt["fix_fini_evicts"] or opt["fini_takes_lock"]) else "teardown"
    b.go("mgr_shutdown", "drain" if not opt["fini_concurrent"] else after_flag,
         [(S, S | SHUTDOWN), (Var("shutdown_seen"), 1)], section="2.2 (READY -> SHUTDOWN)", call=call,
         code="atomic_or(STATE_SHUTDOWN, &mgr->state);")
    if not opt["fini_concurrent"]:
        # users are gone (their BOs released) before the manager is torn down
        all_done = and_(*(eq(Pc(t), done) for t, done in others))
        b.branch("drain", [(all_done, [], after_flag)], section="(implied)", call=call,
                 code="/* wait until every user has returned */")
    leak_free = and_(eq(MASK, 0), eq(USED, 0), eq(VIS, 0) if prof.has_vis else Const(1), eq(Var("lost"), 0))
    teardown = [(Var("alive"), 0), (Var("finied"), 1), (MASK, 0)]
    td_asserts = [("no_leak_at_fini", leak_free), ("no_allocator_use_after_fini", eq(Var("finied"), 0)),
                  ("fini_shuts_down", and_(bit(DEV, DEV_SHUTDOWN), bit(S, SHUTDOWN)))]
    if opt["fix_fini_evicts"] or opt["fini_takes_lock"]:
        # fini's locking is a reading (the document shows no fini): lockdep is asked only of a fini read as locked;
        # a lockless fini's races are what no_allocator_use_after_fini catches
        td_asserts.append(("allocator_lock_held", _lock_held()))
    if opt["fix_fini_evicts"]:
        b.acquire("lock", "lock", "evict_check", c.lk, section="(fini, fix)", call=call)
        b.branch("evict_check", [(eq(MASK, 0), [], "teardown"), (ne(MASK, 0), [], "evict_unlock")],
                 section="(fini, fix)", call=call, code="if (live blocks) { unlock; wait; retry; }")
        b.release("evict_unlock", "lock", "evict_wait", c.lk, section="(fini, fix)", call=call)
        b.branch("evict_wait", [(eq(MASK, 0), [], "lock")], section="(fini, fix)", call=call,
                 code="wait_event(mgr->idle, no live blocks);")
        b.go("teardown", "unlock", teardown, section="(fini)", call=call, kind="fini",
             code=f"{prof.fini_fn}(&mgr->mm); /* reports leaks */", asserts=td_asserts)
        b.release("unlock", "lock", "done", c.lk, section="(fini, fix)", call=call)
    elif opt["fini_takes_lock"]:
        b.acquire("lock", "lock", "teardown", c.lk, section="(fini)", call=call)
        b.go("teardown", "unlock", teardown, section="(fini)", call=call, kind="fini",
             code=f"{prof.fini_fn}(&mgr->mm);", asserts=td_asserts)
        b.release("unlock", "lock", "done", c.lk, section="(fini)", call=call)
    else:
        b.go("teardown", "done", teardown, section="(fini)", call=call, kind="fini",
             code=f"{prof.fini_fn}(&mgr->mm); /* no lock */", asserts=td_asserts)
    return b


def build(prof: Profile, geo: Geometry, options: dict, workload: Workload, name: str | None = None) -> Model:
    opt = resolve(options)
    c = _Ctx(prof, geo, opt, workload)
    shared = [
        VarDecl("dev_state", 8, 0, "flags", "pdev->device_state"),
        VarDecl("state", 8, READY, "flags", "mgr->state (INITIALIZING 1, READY 2, SHUTDOWN 4, ERROR 8)"),
        VarDecl("lock", 8, 0, "owner", f"mgr->lock ({prof.lock_kind}): owner thread + 1, 0 when free"),
        VarDecl("mask", geo.mask_bits, 0, "mask", f"{prof.name} allocator contents: bit i = candidate block i allocated"),
        VarDecl("alive", 2, 1, "bool", "allocator initialised"),
        VarDecl("gen", 8, 0, "int", "allocator instance (incremented by every re-init)"),
        VarDecl("used", 64, 0, "int", "mgr->used" if not prof.used_in_allocator else "mgr->mm.allocated_size"),
        VarDecl("vis", 64, 0, "int", "mgr->vis_usage"),
        VarDecl("lost", 8, 0, "int", "ghost: frees skipped (their block and resource leaked)"),
        VarDecl("shutdown_seen", 2, 0, "bool", "ghost: SHUTDOWN was set"),
        VarDecl("finied", 2, 0, "bool", "ghost: the allocator was torn down by fini"),
        VarDecl("err_sets", 4, 0, "int", f"ghost: writes that set ERROR (saturating at {GHOST_CAP})"),
        VarDecl("err_clears", 4, 0, "int", f"ghost: writes that cleared ERROR (saturating at {GHOST_CAP})"),
    ]
    threads = []
    for i, ops in enumerate(workload.workers):
        key = "worker:" + ",".join(f"{o[0]}{o[1] if len(o) > 1 else ''}" for o in ops)
        threads.append(ThreadDef(f"w{i}", _worker(c, ops).build(), group=key))
    for i in range(workload.error_injectors):
        threads.append(ThreadDef(f"inj{i}", _injector(c).build(), group="injector"))
    for i in range(workload.recoverers):
        threads.append(ThreadDef(f"rec{i}", _recoverer(c).build(), group="recoverer"))
    for i in range(workload.stats_readers):
        threads.append(ThreadDef(f"stats{i}", _stats_reader(c).build(), group="stats"))
    if workload.shutdown:
        others = [(t, len(th.program.steps)) for t, th in enumerate(threads)]
        threads.append(ThreadDef("fini", _fini(c, others).build()))

    props = {n: Property(n, "assertion", d) for n, d in P.items()}
    bounds = {}
    if geo.windowed:
        unit = "minimum blocks" if geo.kind == "buddy" else "pages"
        hint = (f"the allocator window ({geo.window} of {geo.units:,} {unit}) is too small for this workload: "
                "raise allocator.window (a limit of the model, not a defect of the driver)")
        props[WINDOW_PROPERTY] = Property(
            WINDOW_PROPERTY, "assertion",
            f"the allocator window never runs out: every first fit lies in the lowest {geo.window} of the "
            f"{geo.units:,} {unit}, the only blocks the model tracks, where the real allocator places it too "
            "(if not, the window is too small: raise allocator.window)", section="(model)")
        bounds[WINDOW_PROPERTY] = hint
    W = [i for i, t in enumerate(threads) if t.program.role == "worker"]

    props["shutdown_sticky"] = Property("shutdown_sticky", "invariant", P["shutdown_sticky"],
                                        implies(eq(Var("shutdown_seen"), 1), bit(S, SHUTDOWN)), "2.2",
                                        trigger=eq(Var("shutdown_seen"), 1))
    props["state_transitions_documented"] = Property(
        "state_transitions_documented", "invariant", P["state_transitions_documented"],
        and_(not_(bit(S, INITIALIZING)), implies(bit(S, SHUTDOWN), eq(Var("shutdown_seen"), 1))), "2.2")
    # overlap only among blocks of the same allocator instance would hide the re-init defect: compare all
    pairs = [and_(ge0(i), ge0(j), geo.overlap(Local("blk", i), Local("blk", j))) for a, i in enumerate(W)
             for j in W[a + 1:]]
    # exercised once two workers hold blocks at the same time
    both = or_(*(and_(ge0(i), ge0(j)) for a, i in enumerate(W) for j in W[a + 1:])) if pairs else Const(0)
    props["no_overlap"] = Property("no_overlap", "invariant", P["no_overlap"], not_(or_(*pairs)) if pairs else Const(1),
                                   trigger=both)
    idle = []
    for t, th in enumerate(threads):
        # a thread at the first step of a call has not started it: only the steps after it are "in progress"
        entries, busy_pcs = set(), []
        for pc, st in enumerate(th.program.steps):
            if st.call is None:
                continue
            if st.call not in entries:
                entries.add(st.call)
            else:
                busy_pcs.append(pc)
        idle.append(and_(*(ne(Pc(t), pc) for pc in busy_pcs)))
    quiet = and_(*idle)
    units = geo.allocated_units(MASK)
    matches = and_(eq(USED, units), eq(VIS, units) if prof.has_vis else Const(1))
    props["used_matches_allocations"] = Property(
        "used_matches_allocations", "invariant", P["used_matches_allocations"],
        and_(USED >= 0, implies(and_(quiet, eq(Var("alive"), 1)), matches)), "2.1 / 6",
        trigger=and_(quiet, eq(Var("alive"), 1), ne(MASK, 0)))
    holds_nothing = and_(eq(Var("lost"), 0), *(
        and_(eq(Local("blk", t), -1), eq(Local("vres", t), 0) if prof.has_vres else Const(1)) for t in W))
    props["no_lost_resource"] = Property("no_lost_resource", "final", P["no_lost_resource"], holds_nothing)
    model = Model(name or prof.name, tuple(shared), tuple(threads), props,
                  {"lock": prof.lock_kind}, opt, doc=f"PDDGPU {prof.name.upper()} manager", bounds=bounds)
    model.geometry = geo
    model.profile = prof
    model.workload = workload
    return model


def ge0(t):
    return Local("blk", t) >= 0
