"""The PDDGPU device and what both memory managers share, as the design
document writes them (defects included).

The managers (``vram.py``, ``gtt.py``) follow the document's code line by
line; the steps they share (3.1-3.3 alloc with its retries, 4.1-4.2 free,
5.1 recover, 2.1/2.2 error state, 6.2 statistics and the implied fini) are
written once here, in ``ManagerBase``, with the allocator-specific pieces
left to the subclasses -- the same split as ``model/manager.py``.

Every reading of an ambiguity and every fix is an option with the name
``model/options.py`` gives it, so a trace's ``#meta.options`` configures
this code exactly as it configured the model.

Scheduling points carry the model's step labels (``dev_check``,
``mgr_check``/``mgr_check2``, ``lock``, ``recheck``, ``alloc_call`` ...),
so a trace's (thread, step) transitions map onto this code one to one.

Diagnostics the kernel would print go to ``Device.dmesg``; bugs its
debugging options would catch (lockdep, scheduling while atomic, KCSAN,
kmemleak, the allocators' BUG_ONs, drm_buddy_fini's leak warning) are
recorded in ``Device.bugs`` as (property, thread, message), named by the
model property they correspond to.  ``Device.tracepoints`` lets checkers
observe the steps that matter to the properties.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field

from ..model.options import resolve
from . import sched
from .atomics import Atomic, Atomic64
from .errors import ENODEV, ENOMEM, AllocatorBug
from .sched import Mutex

__all__ = ["DEVICE_STATE_SHUTDOWN", "STATE_INITIALIZING", "STATE_READY", "STATE_SHUTDOWN", "STATE_ERROR",
           "PAGE_SHIFT", "PAGE_SIZE", "Device", "ManagerBase", "Resource", "Stats"]

DEVICE_STATE_SHUTDOWN = 0x01          # PDDGPU_DEVICE_STATE_SHUTDOWN (value not given by the document)

# PDDGPU_{VRAM,GTT}_MGR_STATE_* (document 1.1, identical for both managers)
STATE_INITIALIZING = 0x01
STATE_READY = 0x02
STATE_SHUTDOWN = 0x04
STATE_ERROR = 0x08

PAGE_SHIFT = 12
PAGE_SIZE = 1 << PAGE_SHIFT


class Dmesg:
    """The kernel log: (level, thread, message)."""

    def __init__(self, keep: int = 2000):
        self.lines: list[tuple[str, str, str]] = []
        self.keep = keep
        self._mu = threading.Lock()

    def __call__(self, level: str, msg: str) -> None:
        with self._mu:
            if len(self.lines) < self.keep:
                self.lines.append((level, sched.current_name(), msg))

    def text(self, last: int | None = None) -> str:
        lines = self.lines if last is None else self.lines[-last:]
        return "\n".join(f"[{lvl}] {who}: {m}" for lvl, who, m in lines)


class Kmem:
    """kzalloc/kfree bookkeeping, so leaked objects are visible (kmemleak)."""

    def __init__(self):
        self.live: dict[int, tuple[str, object]] = {}
        self._mu = threading.Lock()
        self._next = 0

    def kzalloc(self, kind: str, owner=None) -> int:
        with self._mu:
            self._next += 1
            self.live[self._next] = (kind, owner)
            return self._next

    def kfree(self, obj: int | None) -> None:
        if obj is None:
            return
        with self._mu:
            self.live.pop(obj, None)

    def count(self, kind: str) -> int:
        return sum(1 for k, _ in self.live.values() if k == kind)


@dataclass
class Resource:
    """What TTM hands the manager (a ``ttm_resource``) and gets back filled in."""
    size: int                         # bytes
    blocks: list = field(default_factory=list)   # VRAM: drm_buddy blocks; GTT: [drm_mm node]
    allocator: object = None          # the allocator instance the blocks came from
    vres: int | None = None           # VRAM: the kzalloc'ed vres owned by this resource
    released: bool = False            # its blocks went back to an allocator
    gen: int = -1                     # allocator generation at allocation

    @property
    def start(self) -> int:
        return min((self._off(b) for b in self.blocks), default=-1)

    @staticmethod
    def _off(b):
        return b.offset if hasattr(b, "offset") else b.start

    def extents(self) -> list[tuple[int, int]]:
        """Byte ranges [start, end) held."""
        out = []
        for b in self.blocks:
            if hasattr(b, "offset"):
                out.append((b.offset, b.offset + b.size))
            else:
                out.append((b.start << PAGE_SHIFT, (b.start + b.size) << PAGE_SHIFT))
        return out


@dataclass
class Stats:
    """pddgpu_vram_stats / pddgpu_gtt_stats (document 6.1)."""
    total_size: int = 0
    used_size: int = 0
    visible_used: int = 0             # VRAM only
    state: int = 0
    is_healthy: bool = False


class _Uninitialised:
    """mgr->mm after a failed drm_*_init: any use is a bug.  Plain fields
    (drm_mm's allocated_size) keep what the struct held."""

    def __init__(self, prev=None):
        self._allocated_size = getattr(prev, "_allocated_size", 0)

    def __getattr__(self, name):
        raise AllocatorBug(f"allocator used after a failed init ({name})")


class Device:
    """``struct pddgpu_device`` with both memory managers.

    ``vram_size``: bytes (a multiple of ``vram_page``); ``gtt_pages``: the
    GTT aperture in pages.  ``options``: the model's option names.
    ``sleep_scale``: multiplies every msleep (0 in tests; 1 as documented).
    """

    def __init__(self, vram_size: int = 16 * PAGE_SIZE, gtt_pages: int = 16, options: dict | None = None,
                 sleep_scale: float = 1.0, vram_page: int = PAGE_SIZE, visible_size: int | None = None):
        from .gtt import GttManager
        from .vram import VramManager
        self.options = resolve(dict(options or {}))
        self.sleep_scale = sleep_scale
        self.device_state = Atomic(0, "device_state")
        self.dmesg = Dmesg()
        self.kmem = Kmem()
        self.bugs: list[tuple[str, str, str]] = []
        self.tracepoints: list = []               # callables (event, mgr, **data)
        self._bug_mu = threading.Lock()
        self._users = 0
        self._users_cv = threading.Condition()
        self.fail_next_init: set[str] = set()     # fault injection: manager names whose next init fails
        self.vram_mgr = VramManager(self, vram_size, vram_page, visible_size)
        self.gtt_mgr = GttManager(self, gtt_pages)

    # diagnostics ------------------------------------------------------------------
    def bug(self, prop: str, msg: str) -> None:
        with self._bug_mu:
            self.bugs.append((prop, sched.current_name(), msg))
        self.dmesg("BUG", msg)

    def trace(self, event: str, mgr, **data) -> None:
        for tp in self.tracepoints:
            tp(event, mgr, **data)

    # users (open handles): fini waits for them -----------------------------------------
    def user_enter(self) -> None:
        with self._users_cv:
            self._users += 1

    def user_exit(self) -> None:
        with self._users_cv:
            self._users -= 1
            self._users_cv.notify_all()

    @property
    def users(self) -> int:
        return self._users

    def wait_idle(self, at: str = "drain") -> None:
        sched.wait_event(lambda: self._users == 0, at, self._users_cv)

    # shutdown ----------------------------------------------------------------------
    def shutting_down(self, at: str) -> bool:
        """``!pdev || (atomic_read(&pdev->device_state) & PDDGPU_DEVICE_STATE_SHUTDOWN)``"""
        return bool(self.device_state.read(at) & DEVICE_STATE_SHUTDOWN)

    def fini(self, managers=None) -> dict:
        """Device teardown: set SHUTDOWN, then fini each manager.  Returns
        each manager's leak report."""
        self.device_state.or_(DEVICE_STATE_SHUTDOWN, at="dev_shutdown")
        out = {}
        for m in (managers if managers is not None else (self.vram_mgr, self.gtt_mgr)):
            out[m.NAME] = m.fini()
        return out

    def manager(self, name: str):
        return {"vram": self.vram_mgr, "gtt": self.gtt_mgr}[name]


class ManagerBase:
    """The protocol both managers share; subclasses supply the allocator."""

    NAME = "?"
    LOCK = Mutex
    RETRY_COUNT = 3
    RETRY_DELAY_MS = 10
    ALLOC_FAIL_ERRNO = ENOMEM
    HAS_VIS = False
    RECOVER_RESETS_STATS = False

    def __init__(self, dev: Device):
        self.dev = dev
        self.opt = dev.options
        self.state = Atomic(STATE_INITIALIZING, f"{self.NAME}.state")
        self.lock = self.LOCK(f"{self.NAME}_mgr->lock", on_bug=dev.bug)
        self.used = Atomic64(0, f"{self.NAME}.used")
        self.vis_usage = Atomic64(0, f"{self.NAME}.vis_usage")
        self._idle = threading.Condition()
        self._tl = threading.local()          # per-thread: the state word is_ready read last
        self.gen = 0
        self.alive = True          # allocator initialised
        self.finied = False
        self.leak_report: list | None = None
        self.mm = self._allocator_init()
        self.state.set(STATE_READY, at=None)      # INITIALIZING -> READY (document 2.2)

    # helpers ---------------------------------------------------------------------
    def _log(self, level, msg):
        self.dev.dmesg(level, msg)

    def _pt(self, label):
        sched.point(label)

    def _msleep(self, ms, at):
        sched.msleep(ms, at, self.dev.sleep_scale, self.dev.bug)

    def _stats_locked(self) -> bool:
        return self.opt["stats_update_point"] == "under_lock" or self.opt["fix_stats_snapshot"]

    def _holds_on_failure(self) -> bool:
        return self.opt["retry_holds_lock"] and not self.opt["fix_retry_unlock"]

    def live_blocks(self) -> int:
        if not self.alive:
            return 0
        return self._live_count()

    # 1.2 / 2.1 / 2.2 -----------------------------------------------------------------
    def is_ready(self, at: str = "is_ready") -> bool:
        """pddgpu_*_mgr_is_ready: two separate atomic_reads, as written."""
        if self.opt["fix_is_ready"]:
            s = self.state.read(at)
            self._seen = s
            return (s & (STATE_READY | STATE_SHUTDOWN | STATE_ERROR | STATE_INITIALIZING)) == STATE_READY
        if self.opt["is_ready_reads"] == 1:
            s = self.state.read(at)
            self._seen = s
            return bool(s & STATE_READY) and not (s & STATE_SHUTDOWN)
        if not (self.state.read(at) & STATE_READY):
            return False
        s = self.state.read(at + "2")
        self._seen = s
        return not (s & STATE_SHUTDOWN)

    @property
    def _seen(self):
        return getattr(self._tls(), "seen", 0)

    @_seen.setter
    def _seen(self, v):
        self._tls().seen = v

    def _tls(self):
        return self._tl

    def set_error(self, at: str = "set_error", lock_held: bool = False) -> None:
        """pddgpu_*_mgr_set_error.  With fix_error_under_lock it takes the manager lock (unless the caller
        holds it), so ERROR cannot land between alloc's re-check under the lock and its allocator call."""
        if self.opt["fix_error_under_lock"] and not lock_held:
            self.lock.acquire(at)
            self.state.or_(STATE_ERROR, at=at + "_set")
            self.lock.release(at + "_unlock")
        else:
            self.state.or_(STATE_ERROR, at=at)
        self._log("ERROR", f"{self.NAME.upper()} manager entered error state")

    def clear_error(self, at: str = "clear_error") -> None:
        """pddgpu_*_mgr_clear_error; under fix_error_under_lock the caller holds the manager lock."""
        self.state.and_(~STATE_ERROR, at=at)

    def is_healthy(self, state: int) -> bool:
        return bool(state & STATE_READY) and not state & (STATE_SHUTDOWN | STATE_ERROR)

    # 3. alloc ----------------------------------------------------------------------------
    def alloc(self, res: Resource) -> int:
        """Returns 0 or a negative errno, as the kernel function does."""
        up = self.NAME.upper()
        retry_count = 0
        state_retries = 0
        while True:
            # 3.1
            if self.dev is None or self.dev.shutting_down("dev_check"):
                self._log("DEBUG", f"Device is shutting down, skipping {up} allocation")
                return self._return(-ENODEV)
            retry_count = 0
            # 3.2
            if self.is_ready("mgr_check"):
                break
            if self.opt["state_check_failure"] == "retry":      # 4.2 状态重试, read literally
                if self.opt["fix_state_retry_bounded"]:
                    self._pt("state_retry_check")
                    state_retries += 1
                    if state_retries >= self.RETRY_COUNT:
                        self._log("ERROR", f"{up} manager is not ready after {state_retries} state checks")
                        return self._return(-ENODEV)
                self._msleep(self.RETRY_DELAY_MS, "state_retry_sleep")
                continue
            self._log("ERROR", f"{up} manager is not ready")
            return self._return(-ENODEV)
        vres = self._vres_alloc()
        # 3.3
        while True:
            # retry_alloc:
            self.lock.acquire("lock")
            if not self.is_ready("recheck"):
                self.lock.release("recheck_unlock")
                self._log("ERROR", f"{up} manager state changed during allocation")
                self.dev.kmem.kfree(vres)
                return self._return(-ENODEV)
            self._pt("alloc_call")
            self.dev.trace("alloc_call", self, seen=self._seen, res=res)
            r = self._alloc_call(res)
            if r == 0:
                res.vres = vres
                if self._stats_locked():
                    self._stats_add(res, "ok_stats")
                    self.lock.release("ok_unlock")
                else:
                    self.lock.release("ok_unlock")
                    self._stats_add(res, "ok_stats")
                return self._return(0)
            if not self._holds_on_failure():
                self.lock.release("fail_unlock")
            self._pt("fail_check")
            retry_count += 1
            if retry_count < self.RETRY_COUNT:
                self._log("DEBUG", f"{up} allocation failed, retrying ({retry_count}/{self.RETRY_COUNT})")
                self._msleep(self.RETRY_DELAY_MS, "retry_sleep")
                continue
            if not self.opt["fix_alloc_failure_sets_error"]:
                self._pt("fail")                 # 3.3 as written: no set_error, whatever 3.1 promises
            elif self.opt["fix_error_under_lock"] and not self._holds_on_failure():
                self._pt("fail")
                self.set_error(at="fail_lock")
            else:
                self.set_error(at="fail", lock_held=True)
            self._log("ERROR", f"{up} allocation failed after {retry_count} retries: {r}")
            return self._return(self._alloc_failed(vres, r))

    def _return(self, r: int) -> int:
        self._pt("return")
        return r

    # 4. free ---------------------------------------------------------------------------------
    def free(self, res: Resource) -> None:
        up = self.NAME.upper()
        if not (self.opt["fix_free_always_releases"] or self.opt["fix_free_no_prelock_return"]):
            # 4.1
            if self.dev is None or self.dev.shutting_down("dev_check"):
                self._log("DEBUG", f"Device is shutting down, skipping {up} free")
                return self._skipped()
            if not self.is_ready("mgr_check"):
                self._log("ERROR", f"{up} manager is not ready during free")
                return self._skipped()
        # 4.2
        self.lock.acquire("lock")
        if not self.opt["fix_free_always_releases"]:
            if not self.is_ready("recheck"):
                self.lock.release("recheck_unlock")
                self._log("ERROR", f"{up} manager state changed during free")
                return self._skipped()
        self._pt("free_call")
        self.dev.trace("free_call", self, res=res)
        self._free_call(res)
        if self._stats_locked():
            self._stats_sub(res, "stats")
            self.lock.release("unlock")
        else:
            self.lock.release("unlock")
            self._stats_sub(res, "stats")
        sched.wake_up(self._idle)
        self._pt("return")
        self.dev.kmem.kfree(res.vres)
        res.vres = None

    def _skipped(self) -> None:
        """return; -- the block stays in the allocator, the resource with it."""
        self._pt("skipped")

    # 5. recover ----------------------------------------------------------------------------------
    def recover(self) -> int:
        up = self.NAME.upper()
        self._log("DEBUG", f"Recovering {up} manager")
        if self.dev is None or self.dev.shutting_down("dev_check"):
            self._log("ERROR", f"Device is shutting down, cannot recover {up} manager")
            return self._return(-ENODEV)
        fix_state, fix_reinit = self.opt["fix_recover_state"], self.opt["fix_recover_reinit"]
        if not fix_state and self.opt["fix_error_under_lock"]:
            self.lock.acquire("lock")
            self.clear_error("clear_error")
            r = self._reinit("init")
        elif not fix_state:
            self.clear_error("clear_error")
            self.lock.acquire("lock")
            r = self._reinit("init")
        else:
            self.lock.acquire("lock")
            if self.state.read("shutdown_check") & STATE_SHUTDOWN:
                r = -ENODEV
            else:
                r = self._reinit("init")
                if r == 0:
                    self.state.try_update(lambda s: (s & ~STATE_ERROR) | STATE_READY, at="set_state")
                else:       # a failed init marks ERROR before anyone can take the lock
                    self.set_error("set_state", lock_held=True)
        self.lock.release("unlock")
        self._pt("check_r")
        if r and r != -ENODEV:
            self._log("ERROR", f"Failed to recover {up} allocator: {r}")
            self.set_error("set_error")
            return self._return(r)
        if r == -ENODEV:
            return self._return(r)
        if self.RECOVER_RESETS_STATS and not fix_reinit:
            self.used.set(0, at="reset_used")
            if self.HAS_VIS:
                self.vis_usage.set(0, at="reset_vis")
        if not fix_state:
            self.state.set(STATE_READY, at="set_ready")
        self._pt("ok")
        self._log("INFO", f"{up} manager recovered successfully")
        return self._return(0)

    def _reinit(self, at: str) -> int:
        """drm_*_init(&mgr->mm, ...) under the lock (fix: only when empty,
        after tearing the old one down)."""
        if self.opt["fix_recover_reinit"]:
            self._pt("init_check")
            if self.live_blocks():
                return 0
            self._pt("teardown_old")
            self.dev.trace("teardown_old", self)
            if self.alive:
                self._allocator_fini()
                self.alive = False
        self._pt(at)
        self.dev.trace("init", self, live=self.live_blocks(), was_alive=self.alive)
        return self._init_into_mm()          # fix: statistics left alone, with no live block they are 0

    def _init_into_mm(self) -> int:
        if self.NAME in self.dev.fail_next_init:
            self.dev.fail_next_init.discard(self.NAME)
            self.mm = _Uninitialised(self.mm)
            self.alive = False
            return -ENOMEM
        self.mm = self._allocator_init()
        self.alive = True
        self.gen += 1
        return 0

    # 6. statistics --------------------------------------------------------------------------------
    def get_stats(self) -> Stats:
        st = Stats(total_size=self._total_size())
        if self.opt["fix_stats_snapshot"]:
            self.lock.acquire("lock")
            self._pt("read")
            st.used_size = self._read_used(None)
            st.visible_used = self.vis_usage.read(None) if self.HAS_VIS else 0
            st.state = self.state.read(None)
            self.lock.release("unlock")
        else:
            st.used_size = self._read_used("read_used")
            if self.HAS_VIS:
                st.visible_used = self.vis_usage.read("read_vis")
            st.state = self.state.read("read_state")
        self._pt("report")
        st.is_healthy = self.is_healthy(st.state)
        return st

    # fini (implied by the document) ------------------------------------------------------------------
    def fini(self) -> list:
        self.state.or_(STATE_SHUTDOWN, at="mgr_shutdown")
        if not self.opt["fini_concurrent"]:
            self.dev.wait_idle("drain")
        if self.opt["fix_fini_evicts"]:
            while True:
                self.lock.acquire("lock")
                self._pt("evict_check")
                if self.live_blocks() == 0:
                    break
                self.lock.release("evict_unlock")
                sched.wait_event(lambda: self.live_blocks() == 0, "evict_wait", self._idle)
            leaks = self._teardown("teardown")
            self.lock.release("unlock")
        elif self.opt["fini_takes_lock"]:
            self.lock.acquire("lock")
            leaks = self._teardown("teardown")
            self.lock.release("unlock")
        else:
            leaks = self._teardown("teardown")
        return leaks

    def _teardown(self, at: str) -> list:
        self._pt(at)
        self.dev.trace("fini_call", self)
        used, vis = self.used.peek(), self.vis_usage.peek()
        leaks = self._allocator_fini() if self.alive else []
        self.finied = True
        self.alive = False
        self.leak_report = leaks
        used = self._used_bytes_at_fini(used)
        if leaks or used or vis:
            self._log("WARN", f"{self.NAME}_mgr_fini: {len(leaks)} block(s) still allocated "
                              f"({', '.join(f'[{a:#x}, {b:#x})' for r in leaks for a, b in _ext(r))}); "
                              f"used={used}, vis_usage={vis}")
        self.dev.trace("teardown", self, leaks=leaks, used=used, vis=vis)
        return leaks

    def _used_bytes_at_fini(self, used):
        return used

    # subclass hooks --------------------------------------------------------------------------------------
    def _allocator_init(self):
        raise NotImplementedError

    def _allocator_fini(self) -> list:
        raise NotImplementedError

    def _live_count(self) -> int:
        raise NotImplementedError

    def _alloc_call(self, res: Resource) -> int:
        raise NotImplementedError

    def _free_call(self, res: Resource) -> None:
        raise NotImplementedError

    def _stats_add(self, res: Resource, at: str) -> None:
        raise NotImplementedError

    def _stats_sub(self, res: Resource, at: str) -> None:
        raise NotImplementedError

    def _vres_alloc(self):
        return None

    def _alloc_failed(self, vres, r: int) -> int:
        raise NotImplementedError

    def _read_used(self, at):
        raise NotImplementedError

    def _total_size(self) -> int:
        raise NotImplementedError


def _ext(block):
    if hasattr(block, "offset"):
        return [(block.offset, block.offset + block.size)]
    return [(block.start << PAGE_SHIFT, (block.start + block.size) << PAGE_SHIFT)]
