"""Replay a counterexample trace on the Python implementation (``pddgpu/``).

It lives in ``conformance/`` with everything that joins the model to code: ``pddgpu/`` keeps only the code
under test and imports nothing of the checker (``_source_spec`` reads a spec through ``checker.spec``).

``replay_on_impl(trace_data, options_override=None)`` builds a device with
the trace's manager, allocator size and options (``#meta``), starts one real
thread per model thread (``w0``, ``inj0``, ``rec0``, ``stats0``, ``fini``)
running the workload's calls, and drives them with the controlled scheduler
through the trace's interleaving: each transition (thread, step label) is
one scheduling point of the code.  Then the remaining threads run to the
end (the thread the trace blames first).  The verdict is the model's: its
property expressions are evaluated on the code's state mapped onto the
model's variables (``conformance/monitor.py``) where the model checks them,
beside what only the code shows (lockdep/KCSAN/kmemleak-like reports, the
allocators' BUG_ONs, a crash, a deadlock of the real threads).

With the trace's own options every transition must meet the code at the
same step label and leave the code in the trace's next state (shared
variables and each worker's block: the code's state mapped to the model's
variables), else the code does not conform to the model and the report says
where.  With ``options_override`` (a fix) the code's steps differ; the
same schedule -- the same sequence of thread choices -- is followed as far
as it applies (a thread that is done or blocked is skipped; label
differences are listed as divergences), and the run must end cleanly.

``Harness`` and ``Monitor`` are shared with the conformance tests.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field

from ..model.options import OPTIONS, resolve
from ..model.registry import workload_from_dict
from ..model.run_config import RunConfig, RunConfigError, load_run_config
from ..pddgpu import sched
from ..pddgpu.device import (PAGE_SHIFT, PAGE_SIZE, STATE_ERROR, STATE_READY, STATE_SHUTDOWN,
                     Device, Resource)
from ..pddgpu.errors import AllocatorBug
from ..pddgpu.sched import LockError, Scheduler
from .monitor import ModelMonitor

__all__ = ["Harness", "Monitor", "Observation", "ImplReplayReport", "replay_on_impl", "format_report",
           "suggested_fix", "fix_for_property"]


def _specs_dir(root=None):
    from pathlib import Path
    here = Path(root) / "specs" if root is not None else None
    return here if here is not None and here.is_dir() else Path(__file__).resolve().parent.parent / "specs"


_FIXES_BY_PROPERTY: dict = {}


def fix_for_property(prop: str | None, root=None) -> list:
    """The fixes the shipped specs name (``fixed_by``) for the defect whose property is ``prop``: the first spec
    (in file order) that expects a violation of ``prop`` and names a fix."""
    if not prop:
        return []
    d = _specs_dir(root)
    table = _FIXES_BY_PROPERTY.get(d)
    if table is None:
        from ..checker.spec import load_spec
        table = {}
        for path in sorted(d.glob("*.toml")):
            try:
                spec = load_spec(path)
            except ValueError:
                continue
            if spec.expect_property and spec.fixed_by:
                table.setdefault(spec.expect_property, list(spec.fixed_by))
        _FIXES_BY_PROPERTY[d] = table
    return list(table.get(prop, []))


def _source_spec(meta: dict, root=None):
    """The spec a trace came from (``#meta.source``), if it can be read."""
    from pathlib import Path
    src = meta.get("source")
    if not (isinstance(src, str) and src.endswith(".toml")):
        return None
    path = Path(src) if root is None or Path(src).is_absolute() else Path(root) / src
    if not path.exists():
        return None
    from ..checker.spec import load_spec
    try:
        return load_spec(path)
    except ValueError:
        return None


def suggested_fix(meta: dict, root=None) -> dict:
    """The fix options for a trace: the ones its #meta names (``fix`` /
    ``fixes`` / ``fixed_by``), else the ``fixed_by`` of the spec it came
    from (``#meta.source``, relative to ``root`` or the working directory),
    else the ``fixed_by`` of a shipped spec expecting the same property
    (``fix_for_property``).  Empty when no spec names a fix for the defect."""
    for key in ("fixes", "fixed_by", "fix"):
        v = meta.get(key)
        if isinstance(v, dict):
            return dict(v)
        if isinstance(v, str):
            return {v: True}
        if isinstance(v, list) and v:
            return {f: True for f in v}
    spec = _source_spec(meta, root)
    if spec is not None:
        return {f: True for f in getattr(spec, "fixed_by", [])}
    return {f: True for f in fix_for_property(meta.get("property"), root)}


def checked_properties(meta: dict, root=None) -> list | None:
    """The properties the trace's spec checks (#meta.properties, else the
    source spec's [check].properties); None: all of them."""
    if isinstance(meta.get("properties"), list):
        return list(meta["properties"])
    spec = _source_spec(meta, root)
    if spec is not None and spec.properties is not None:
        return list(spec.properties)
    return None


# failures of the code that count whatever the spec checks
ALWAYS_RELEVANT = ("deadlock", "calls_return", "crash", "allocator_bug")


@dataclass
class Observation:
    property: str
    thread: str | None
    message: str

    def __str__(self):        # no square brackets: the CLI prints through rich, which reads [x] as markup
        return f"{self.property} ({self.thread}): {self.message}" if self.thread else f"{self.property}: {self.message}"


@dataclass
class WorkerState:
    held: Resource | None = None      # the BO's resource this worker holds
    cur: Resource | None = None       # the resource of the call in progress
    in_call: bool = False
    lost: int = 0


class Harness:
    """One device, one manager under test, one function per model thread."""

    def __init__(self, kind: str, size: int, options: dict, workload, sleep_scale: float = 0.0,
                 window: int | None = None, retry_count: int | None = None):
        self.config = RunConfig(kind, size, workload, dict(options), window, retry_count)
        self.kind, self.size = kind, size
        self.options = resolve(dict(options))
        self.workload = workload
        self.unit = PAGE_SIZE
        self.dev = Device(vram_size=(size if kind == "vram" else 4) * PAGE_SIZE,
                          gtt_pages=size if kind == "gtt" else 4, options=self.options, sleep_scale=sleep_scale)
        self.mgr = self.dev.manager(kind)
        if retry_count is not None:
            self.mgr.RETRY_COUNT = retry_count      # PDDGPU_*_ALLOC_RETRY_COUNT as the trace's spec set it
        # the model's geometry (for a large allocator: the window of its lowest units the model tracks), to name
        # the code's blocks by the model's candidate indices; the allocators themselves are the whole size
        self.geo = self.config.geometry()
        self.names: list[str] = []
        self.fns: list = []
        self.workers: list[WorkerState] = []
        self.results: dict[str, list] = {}
        self.stop = False
        self.lost = 0
        self.fini_leaks: list | None = None
        self.stats_seen: dict = {}        # stats thread -> the Stats its get_stats returned
        self.written_off: set = set()     # vres objects of resources a skipped free lost (the model's vres is 0)
        self.model = self.config.build()
        self.monitor = Monitor(self)
        wl = workload
        for i, ops in enumerate(wl.workers):
            self.workers.append(WorkerState())
            self._add(f"w{i}", self._worker, i, ops)
        for i in range(wl.error_injectors):
            self._add(f"inj{i}", self._injector)
        for i in range(wl.recoverers):
            self._add(f"rec{i}", self._recoverer)
        for i in range(wl.stats_readers):
            self._add(f"stats{i}", self._stats)
        if wl.shutdown:
            self._add("fini", self._fini)
        self.sched: Scheduler | None = None
        self._ident_to_index: dict[int, int] = {}

    @classmethod
    def from_config(cls, cfg: RunConfig, **kw) -> "Harness":
        return cls(cfg.kind, cfg.size, cfg.options, cfg.workload, window=cfg.window, retry_count=cfg.retry_count,
                   **kw)

    def _add(self, name, fn, *args):
        self.names.append(name)
        self.fns.append((fn, args))
        self.results[name] = []

    # running ----------------------------------------------------------------------
    def spawn_all(self, s: Scheduler) -> Scheduler:
        self.sched = s
        for name, (fn, args) in zip(self.names, self.fns):
            if name != "fini":
                self.dev.user_enter()
            t = s.spawn(name, self._wrap(name, fn), *args)
            self._ident_to_index[t.ident] = t.index
        s.after_step.append(lambda t, label: self.monitor.after_step(t, label))
        return s

    def run_free(self, timeout: float = 60.0):
        """Run every thread free (real concurrency, no scheduler)."""
        threads = []
        errors = {}
        for name, (fn, args) in zip(self.names, self.fns):
            if name != "fini":
                self.dev.user_enter()

            def body(name=name, fn=fn, args=args):
                try:
                    self._wrap(name, fn)(*args)
                except BaseException as e:  # noqa: BLE001
                    errors[name] = e
            threads.append(threading.Thread(target=body, name=name))
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout)
        return errors

    def _wrap(self, name, fn):
        def run(*args):
            try:
                return fn(*args)
            finally:
                if name != "fini":
                    self.dev.user_exit()
        return run

    def _call(self, name: str, call: str, kind: str, thunk):
        r = thunk()
        self.results[name].append((call, r))
        if kind in ("alloc", "recover") and self.sched is not None:
            # the return step's assertions (documented codes, the lock let go) read the value returned
            mm = self.monitor.model_monitor
            mm.check_step(name, mm.return_label(name, call), self.model_values(), {"ret": r})
        return r

    # thread bodies ----------------------------------------------------------------------
    def _worker(self, i, ops):
        name = f"w{i}"
        ws = self.workers[i]
        while True:
            for k, op in enumerate(ops):
                if op[0] == "alloc":
                    sched.set_prefix(f"op{k}.alloc.")
                    res = Resource(op[1] * self.unit)
                    ws.cur, ws.in_call = res, True
                    r = self._call(name, f"op{k}:alloc({op[1]})", "alloc", lambda: self.mgr.alloc(res))
                    if r == -self.mgr.ALLOC_FAIL_ERRNO and not self.mgr.state.peek() & STATE_ERROR:
                        # (a recover may clear ERROR in between; the model's property allows for it, this
                        # observation does not, so it is only made where no recoverer runs)
                        if not self.workload.recoverers:
                            self.monitor.observe("alloc_failure_sets_error", name,
                                                 f"op{k}:alloc({op[1]}) failed for good and returned {r} "
                                                 "without setting ERROR (3.1: 分配失败时设置错误状态)")
                    if r != 0:
                        self._check_vres_leak(name, f"op{k}:alloc({op[1]})")
                    ws.cur, ws.in_call = None, False
                    if r == 0:
                        ws.held = res
                else:
                    sched.set_prefix(f"op{k}.free.")
                    sched.point("entry")
                    res = ws.held
                    if res is None:
                        continue
                    ws.cur, ws.held, ws.in_call = res, None, True
                    self._call(name, f"op{k}:free", "free", lambda: self.mgr.free(res))
                    ws.cur, ws.in_call = None, False
                    self.results[name][-1] = (f"op{k}:free", "released" if res.released else "skipped")
                    if not res.released:
                        ws.lost += 1
                        self.lost += 1
                        if res.vres is not None:
                            self.written_off.add(res.vres)
            if not self.workload.worker_loop or self.stop:
                return

    def _check_vres_leak(self, name, call):
        if self.kind != "vram":
            return
        mine = [o for o, (k, owner) in self.dev.kmem.live.items() if k == "vres" and owner == name]
        held = {w.held.vres for w in self.workers if w.held is not None}
        leaked = [o for o in mine if o not in held]
        if leaked:
            self.monitor.observe("no_lost_resource", name,
                                 f"{call} failed and returned without kfree(vres): kmemleak reports "
                                 f"{len(leaked)} unreferenced vres object(s)")

    def _injector(self):
        self.mgr.set_error("set_error")
        self.results[sched.current_name()].append(("set_error", "done"))

    def _recoverer(self):
        name = sched.current_name()
        self._call(name, "recover", "recover", self.mgr.recover)

    def _stats(self):
        name = sched.current_name()
        st = self._call(name, "get_stats", "stats", self.mgr.get_stats)
        self.stats_seen[name] = st
        self.results[name][-1] = ("get_stats", f"used_size={st.used_size}"
                                  + (f" visible_used={st.visible_used}" if self.kind == "vram" else "")
                                  + f" state={st.state:#x}")
        if self.sched is not None:
            # what the caller is handed, the reader's copies at its report step
            self.monitor.model_monitor.check_step(name, "report", self.model_values(), {
                "s_used": self.unit_of(st.used_size), "s_vis": self.unit_of(st.visible_used) if self.kind == "vram"
                else 0, "s_state": st.state})

    def _fini(self):
        leaks = self.dev.fini([self.mgr])[self.kind]
        self.fini_leaks = leaks
        self.results["fini"].append(("fini", f"{len(leaks)} leaked"))

    # the model's view of the code ---------------------------------------------------------
    def unit_of(self, nbytes: int) -> int:
        return nbytes // PAGE_SIZE

    def block_index(self, res: Resource | None) -> int:
        if res is None or not res.blocks or res.released:
            return -1
        (a, b), = res.extents() if len(res.extents()) == 1 else [(min(x for x, _ in res.extents()),
                                                                  max(y for _, y in res.extents()))]
        st, sz = a // PAGE_SIZE, (b - a) // PAGE_SIZE
        for i in range(self.geo.count):
            if self.geo.starts[i] == st and self.geo.sizes[i] == sz:
                return i
        return -2

    def allocator_mask(self) -> int:
        m = self.mgr
        if not m.alive:
            return 0
        mask = 0
        blocks = m.mm.allocated_blocks() if self.kind == "vram" else m.mm.nodes()
        for b in blocks:
            st, sz = (b.offset // PAGE_SIZE, b.size // PAGE_SIZE) if self.kind == "vram" else (b.start, b.size)
            for i in range(self.geo.count):
                if self.geo.starts[i] == st and self.geo.sizes[i] == sz:
                    mask |= 1 << i
                    break
            else:
                mask |= 1 << self.geo.count      # a block the model has no candidate for (outside its window)
        return mask

    def allocated_units(self) -> int:
        """What the allocator holds, in units (every block, inside the model's window or not)."""
        m = self.mgr
        if not m.alive:
            return 0
        if self.kind == "vram":
            return sum(b.size for b in m.mm.allocated_blocks()) // PAGE_SIZE
        return sum(n.size for n in m.mm.nodes())

    def thread_label(self, i: int) -> str | None:
        if self.sched is None:
            return None
        t = self.sched.threads[i]
        return "done" if t.done else t.label

    def worker_live(self, i: int) -> Resource | None:
        """The block worker i holds in the model's sense (``blk``)."""
        ws = self.workers[i]
        lab = self.thread_label(i) or ""
        if lab.endswith(".free.skipped"):
            return None
        if ws.cur is not None and ws.cur.blocks and not ws.cur.released:
            return ws.cur
        return ws.held

    def abstract(self) -> dict:
        """The implementation's state in the model's variables."""
        m = self.mgr
        owner = m.lock.owner
        lock = 0 if owner is None else self._ident_to_index.get(owner, -2) + 1
        used = m.used.peek() if self.kind == "vram" else (m._allocated_size() << PAGE_SHIFT)
        skipping = sum(1 for i in range(len(self.workers))
                       if (self.thread_label(i) or "").endswith(".free.skipped"))
        out = {"dev_state": self.dev.device_state.peek(), "state": m.state.peek(), "lock": lock,
               "mask": self.allocator_mask(), "alive": int(m.alive), "gen": m.gen % 256,
               "used": self.unit_of(used), "vis": self.unit_of(m.vis_usage.peek()) if self.kind == "vram" else 0,
               "lost": self.lost + skipping, "finied": int(m.finied)}
        for i in range(len(self.workers)):
            out[f"w{i}.blk"] = self.block_index(self.worker_live(i))
        return out

    def model_values(self) -> dict:
        """``abstract`` with what the model's properties read beyond it: each thread's step (its pc), the
        ghost of SHUTDOWN having been set, each worker's resource structure (VRAM's ``vres``) and the
        allocator instance its block came from (``bgen``).  A block the model has no candidate for (-2)
        is left out: the expressions reading it are not evaluated."""
        out = self.abstract()
        out["shutdown_seen"] = int(self.monitor.shutdown_seen)
        for i, name in enumerate(self.names):
            lab = self.thread_label(i)
            if lab is not None:
                out[f"{name}.pc"] = lab
        live = {o for o, (k, owner) in self.dev.kmem.live.items() if k == "vres"}
        for i in range(len(self.workers)):
            if out[f"w{i}.blk"] == -2:
                del out[f"w{i}.blk"]
            res = self.worker_live(i)
            if res is not None and res.blocks:
                out[f"w{i}.bgen"] = res.gen % 256
            if self.kind == "vram":
                mine = [o for o in live if self.dev.kmem.live[o][1] == f"w{i}" and o not in self.written_off]
                out[f"w{i}.vres"] = int(bool(mine))
        return out


class Monitor:
    """The model's properties on the running code.

    Under the scheduler (a replay, the concurrent conformance tests) the model's own expressions are
    evaluated on the code's state after every step (``ModelMonitor``: each parked thread's step assertions,
    the invariants; the final properties at the end; a return step's with the value returned).  A call run
    directly, with no scheduler (the sequential conformance test), has no pc: there the model's assertions of
    the step each allocator event stands for are evaluated at the event, on a model with one thread of each
    role.  What the model cannot see stays here: the kernel's debugging reports (``Device.bugs``), a thread
    that died, a deadlock of the real threads, an overlap of blocks the model has no candidate for."""

    # allocator events -> (thread, step) of the reference model whose assertions they stand for
    SITES = {"alloc_call": ("w0", "op0.alloc.alloc_call"), "free_call": ("w0", "op1.free.free_call"),
             "init": ("rec0", "init"), "teardown_old": ("rec0", "teardown_old"), "fini_call": ("fini", "teardown")}

    def __init__(self, h: Harness):
        self.h = h
        self.observations: list[Observation] = []
        self._seen: set = set()
        self.shutdown_seen = False
        self._bugs_seen = 0
        self.model_monitor = ModelMonitor(h.model, self.observe)
        self._site: ModelMonitor | None = None
        h.dev.tracepoints.append(self.tracepoint)

    def observe(self, prop: str, thread: str | None, msg: str):
        key = (prop, thread)
        if key in self._seen:
            return
        self._seen.add(key)
        self.observations.append(Observation(prop, thread, msg))

    @property
    def properties(self) -> set:
        return {o.property for o in self.observations}

    def _site_monitor(self) -> ModelMonitor | None:
        if self._site is None:
            h = self.h
            wl = workload_from_dict({"workers": [[f"alloc {min(h.geo.sizes)}", "free"]], "recoverers": 1,
                                     "shutdown": True})
            ref = h.config.with_workload(wl).build()
            # the events name blocks by the harness's candidates: usable only where both number them alike
            same = (ref.geometry.starts, ref.geometry.sizes) == (h.geo.starts, h.geo.sizes)
            self._site = ModelMonitor(ref, self.observe) if same else False
        return self._site or None

    def tracepoint(self, event, mgr, **d):
        if mgr is not self.h.mgr or sched.managed() or event not in self.SITES:
            return
        mon = self._site_monitor()
        if mon is None:
            return
        thread, label = self.SITES[event]
        h = self.h
        values = h.abstract()
        owner = mgr.lock.owner
        values["lock"] = (mon.names.index(thread) + 1 if mgr.lock.held_by_me() else 0 if owner is None
                          else len(mon.names) + 1)
        values = {k: v for k, v in values.items() if not k.startswith("w")}
        if event == "free_call":
            res = d["res"]
            blk = h.block_index(res)
            if blk != -2:
                values.update({"w0.blk": blk, "w0.bgen": res.gen % 256})
        # the reference thread is not the caller: the caller is named
        who = sched.current_name()
        mon.observe = lambda p, _t, msg: self.observe(p, who, msg.replace(f" when {thread} returns from {label}",
                                                                           f" at {event}"))
        mon.check_step(thread, label, values)

    def after_step(self, t, label):
        h, m = self.h, self.h.mgr
        if len(h.dev.bugs) != self._bugs_seen:
            self._bugs_seen = len(h.dev.bugs)
            self.collect_bugs()
        if m.state.peek() & STATE_SHUTDOWN:
            self.shutdown_seen = True
        self.model_monitor.check_state(h.model_values())
        # blocks outside the model's candidates: the model cannot compare them, the extents can
        live = [(i, r) for i in range(len(h.workers)) if (r := h.worker_live(i)) is not None]
        if any(h.block_index(r) == -2 for _, r in live):
            for x in range(len(live)):
                for y in range(x + 1, len(live)):
                    if _overlap(live[x][1], live[y][1]):
                        self.observe("no_overlap", None, f"w{live[x][0]} {_fmt_ext(live[x][1])} and w{live[y][0]} "
                                                         f"{_fmt_ext(live[y][1])} hold the same memory")

    def collect_bugs(self):
        """What the kernel's debugging options reported (lockdep, KCSAN, might_sleep)."""
        for prop, who, msg in self.h.dev.bugs:
            self.observe(prop, who, msg)

    def at_end(self, outcome: str):
        h = self.h
        self.collect_bugs()
        if h.sched is not None:
            for t in h.sched.threads:
                if t.error is not None and not isinstance(t.error, LockError):
                    e = t.error
                    prop = "crash"
                    if isinstance(e, AllocatorBug):
                        msg = str(e)
                        prop = ("no_allocator_use_after_fini" if ("after fini" in msg or "takedown" in msg
                                                                   or "failed init" in msg) else "allocator_bug")
                    self.observe(prop, t.name, f"{t.name} died: {type(e).__name__}: {e}")
        if outcome == "deadlock":
            blocked = ", ".join(f"{t.name} at {t.label}" for t in h.sched.blocked())
            self.observe("deadlock", None, f"no thread can move and not every thread has finished ({blocked})")
        if outcome == "done":
            unseen = self.model_monitor.check_final(h.model_values())
            holding = [f"w{i}" for i, w in enumerate(h.workers) if w.held is not None]
            if "no_lost_resource" in unseen and (h.lost or holding):
                # a block the model has no candidate for: what the workers hold, counted in the code
                self.observe("no_lost_resource", None,
                             (f"{h.lost} free(s) returned early: their block(s) and resource(s) are lost" if h.lost
                              else "") + (f"; {', '.join(holding)} end(s) holding a block" if holding else ""))


def _blk_ext(b):
    if hasattr(b, "offset"):
        return [(b.offset, b.offset + b.size)]
    return [(b.start << PAGE_SHIFT, (b.start + b.size) << PAGE_SHIFT)]


def _fmt_ext(res: Resource) -> str:
    return ", ".join(f"[{a:#x}, {b:#x})" for a, b in res.extents())


def _overlap(r1: Resource, r2: Resource) -> bool:
    return any(a < d and c < b for a, b in r1.extents() for c, d in r2.extents())


def _state_name(s: int) -> str:
    names = [n for bit, n in ((1, "INITIALIZING"), (STATE_READY, "READY"), (STATE_SHUTDOWN, "SHUTDOWN"),
                              (STATE_ERROR, "ERROR")) if s & bit]
    return "|".join(names) or "0"


# -- replay ----------------------------------------------------------------------------------------

@dataclass
class ImplReplayReport:
    model_kind: str
    size: int
    trace_options: dict
    options: dict
    override: dict
    expected_verdict: str
    expected_property: str | None
    property_description: str
    strict: bool                          # the code ran with the trace's own options
    window: int | None = None             # the model tracked only the lowest units of a large allocator
    transitions: int = 0
    replayed: int = 0                     # transitions taken on the code
    matched: int = 0                      # ... at the same step label
    divergences: list = field(default_factory=list)   # (index, thread, trace step, code step or state)
    conforms: bool = True                 # strict replay met every step label
    mismatch: str = ""
    loop_repeats: int = 0
    finish_steps: list = field(default_factory=list)  # (thread, label) run after the trace
    outcome: str = ""                     # done | deadlock | budget
    observations: list = field(default_factory=list)
    checked: list | None = None           # properties the trace's spec checks (None: all)
    results: dict = field(default_factory=dict)
    leaks: list = field(default_factory=list)         # fini's leak report as byte ranges
    final: dict = field(default_factory=dict)
    dmesg: list = field(default_factory=list)

    @property
    def expected(self) -> str | None:
        if self.expected_verdict == "VIOLATION":
            return self.expected_property
        if self.expected_verdict == "DEADLOCK":
            return "deadlock"
        if self.expected_verdict == "LIVENESS":
            return "calls_return"
        return None

    def relevant(self, o: Observation) -> bool:
        return self.checked is None or o.property in self.checked or o.property in ALWAYS_RELEVANT \
            or o.property == self.expected

    @property
    def findings(self) -> list[Observation]:
        """Observations of the properties the trace's spec checks."""
        return [o for o in self.observations if self.relevant(o)]

    @property
    def others(self) -> list[Observation]:
        """Observations of properties the spec does not check (other defects on the same run)."""
        return [o for o in self.observations if not self.relevant(o)]

    @property
    def observed(self) -> list[str]:
        out = []
        for o in self.findings:
            if o.property not in out:
                out.append(o.property)
        return out

    @property
    def reproduced(self) -> bool:
        return self.expected is not None and self.expected in self.observed

    @property
    def clean(self) -> bool:
        """Ran to the end and no property the spec checks was violated."""
        return not self.findings and self.outcome == "done"

    @property
    def fixed(self) -> bool:
        """The run used a fix the trace's own options do not have."""
        return any(OPTIONS[k].kind == "fix" and v and not self.trace_options.get(k) for k, v in self.override.items())

    @property
    def as_expected(self) -> bool:
        """What ``replay --impl`` should exit 0 on: as written, the code conforms
        to the trace and shows its violation; with a fix, the schedule ends clean."""
        if self.fixed:
            return self.clean
        return self.conforms and self.reproduced

    @property
    def status(self) -> str:
        if self.reproduced:
            return "REPRODUCED"
        if self.clean:
            return "CLEAN"
        return "OTHER" if self.findings else "NOT REPRODUCED"


def trace_run(trace_data: dict, options_override: dict | None, properties, root):
    """The run a trace describes (its ``#meta`` read by ``load_run_config``) with ``options_override`` on top,
    its transitions, and the report to fill; shared by the replays on the Python and the C code."""
    try:
        meta = trace_data["#meta"]
        trs = list(meta["transitions"])
        cfg = load_run_config(meta)
    except RunConfigError as e:
        raise ValueError(f"{e.field}: {e}") from None
    except (KeyError, TypeError) as e:
        raise ValueError(f"not a trace of a manager model: #meta field {e} missing or invalid") from None
    for k in (options_override or {}):
        if k not in OPTIONS:
            raise ValueError(f"unknown option {k!r} (known: {', '.join(sorted(OPTIONS))})")
    trace_opts = cfg.resolved_options
    override = dict(options_override or {})
    cfg = cfg.with_options(override)
    opts = cfg.resolved_options
    rep = ImplReplayReport(cfg.kind, cfg.size, trace_opts, opts, override, meta.get("verdict", ""),
                           meta.get("property"), meta.get("property_description", ""), opts == trace_opts)
    rep.checked = list(properties) if properties is not None else checked_properties(meta, root)
    return cfg, trs, rep


def drive_trace(rep: "ImplReplayReport", trs: list, trace_data: dict, *, sched, observe, abstract, fail_next_init,
                stop, code: str, loop_repeats: int, finish_budget: int) -> None:
    """Follow the trace's interleaving on code, then run the rest to the end: shared by the Python and the
    C replays, which differ only in what runs the threads.  ``sched`` has ``by_name``, ``enabled()``,
    ``all_done()``, ``threads`` and ``step(thread)``; ``code`` names the code in the report ("the code",
    "the C code")."""
    meta = trace_data["#meta"]
    states = trace_data.get("states") or []
    follow = rep.strict
    rep.transitions = len(trs)

    def take(i, tr, count=True) -> bool:
        nonlocal follow
        try:
            t = sched.by_name(tr["thread"])
        except KeyError:
            rep.divergences.append((i, tr["thread"], tr["step"], "no such thread"))
            return False
        if t.done:
            rep.divergences.append((i, t.name, tr["step"], "done"))
            return False
        if t.label != tr["step"]:
            if follow:
                rep.conforms = False
                rep.mismatch = f"transition {i}: the trace has {t.name} at {tr['step']}, {code} is at {t.label}"
                follow = False
            rep.divergences.append((i, t.name, tr["step"], t.label))
        if not t.enabled():
            rep.divergences.append((i, t.name, tr["step"], f"blocked at {t.label}"))
            return False
        if tr.get("note") == "init fails" and t.label == tr["step"]:
            fail_next_init()
        sched.step(t)
        if count:
            rep.replayed += 1
        return True

    def same_state(i) -> bool:
        """The code's state, in the model's variables, against the trace's state i."""
        nonlocal follow
        if not follow or i >= len(states):
            return True
        want = states[i]
        for k, v in abstract().items():
            if k not in want:
                continue
            w = want[k] % 256 if k == "gen" else want[k]
            if w != v:
                rep.conforms = False
                rep.mismatch = (f"after transition {i}: {k} is {v} in {code}, {w} in the trace"
                                if i else f"initial state: {k} is {v} in {code}, {w} in the trace")
                follow = False
                return False
        return True

    same_state(0)
    for i, tr in enumerate(trs, start=1):
        before = len(rep.divergences)
        if take(i, tr) and len(rep.divergences) == before:
            rep.matched += 1
            same_state(i)
    # a liveness trace: run its cycle again; the blamed thread must still be in its call
    loop = meta.get("loop")
    blamed = meta.get("thread")
    if meta.get("verdict") == "LIVENESS" and isinstance(loop, int) and 0 <= loop < len(trs):
        cycle = trs[loop:]
        ok = not rep.divergences and rep.conforms
        for _ in range(loop_repeats if ok else 0):
            d0 = len(rep.divergences)
            for j, tr in enumerate(cycle, start=loop + 1):
                take(j, tr, count=False)
            if len(rep.divergences) != d0:
                ok = False
                break
            rep.loop_repeats += 1
        if ok and blamed:
            bt = sched.by_name(blamed)
            if not bt.done:
                observe("calls_return", blamed, f"{blamed} is still in its call at {bt.label} after the cycle of "
                                                f"{len(cycle)} steps ran {rep.loop_repeats} more time(s) on {code}")
    # finish: the blamed thread first, then the lowest enabled thread, until the end
    stop()
    if blamed:
        try:
            bt = sched.by_name(blamed)
        except KeyError:
            bt = None
        if bt is not None and bt.enabled():
            rep.finish_steps.append((bt.name, sched.step(bt)))
    n = 0
    while True:
        en = sched.enabled()
        if not en:
            rep.outcome = "done" if sched.all_done() else "deadlock"
            break
        if n >= finish_budget:
            rep.outcome = "budget"
            busy = [t for t in sched.threads if not t.done]
            observe("calls_return", None, f"{', '.join(f'{t.name} at {t.label}' for t in busy)} "
                                          f"still running after {finish_budget} more steps")
            break
        t = en[0]
        rep.finish_steps.append((t.name, sched.step(t)))
        n += 1


def replay_on_impl(trace_data: dict, options_override: dict | None = None, *, properties=None, root=None,
                   loop_repeats: int = 2, finish_budget: int = 5000) -> ImplReplayReport:
    """Drive the implementation through the trace's interleaving; see the module doc.

    ``options_override``: options (fixes) to change from the trace's.
    ``properties``: the properties that decide REPRODUCED / CLEAN (default:
    those the trace's spec checks, found through ``#meta.source`` relative to
    ``root`` or the working directory; all when unknown).  Violations of
    other properties are reported apart."""
    cfg, trs, rep = trace_run(trace_data, options_override, properties, root)
    kind = cfg.kind
    h = Harness.from_config(cfg)
    rep.window = h.geo.window if h.geo.windowed else None
    s = Scheduler()
    try:
        h.spawn_all(s)
        drive_trace(rep, trs, trace_data, sched=s, observe=h.monitor.observe, abstract=h.abstract,
                    fail_next_init=lambda: h.dev.fail_next_init.add(kind), stop=lambda: setattr(h, "stop", True),
                    code="the code", loop_repeats=loop_repeats, finish_budget=finish_budget)
        h.monitor.at_end(rep.outcome)
    finally:
        s.close()
    m = h.mgr
    rep.observations = list(h.monitor.observations)
    rep.results = {k: list(v) for k, v in h.results.items()}
    rep.leaks = [e for b in (h.fini_leaks or []) for e in _blk_ext(b)]
    rep.final = {"device_state": h.dev.device_state.peek(), "state": m.state.peek(),
                 "state_names": _state_name(m.state.peek()),
                 "used": m.used.peek() if kind == "vram" else m._allocated_size() << PAGE_SHIFT,
                 "vis_usage": m.vis_usage.peek() if kind == "vram" else None,
                 "live_blocks_in_allocator": m.live_blocks(), "finied": m.finied,
                 "frees_skipped": h.lost, "vres_live": h.dev.kmem.count("vres")}
    rep.dmesg = list(h.dev.dmesg.lines)
    return rep


def format_report(report: ImplReplayReport) -> str:
    r = report
    L = []
    changed = ", ".join(f"{k}={v}" for k, v in r.override.items()) if r.override else ""
    L.append(f"replay on the implementation: {r.model_kind} manager, {r.size} "
             f"{'minimum blocks' if r.model_kind == 'vram' else 'pages'}"
             + (f" (the model tracks the lowest {r.window})" if r.window else ""))
    set_opts = {k: v for k, v in r.trace_options.items() if v != OPTIONS[k].default}
    L.append("  code: " + ("as written" if not any(OPTIONS[k].kind == "fix" and v for k, v in r.options.items())
                           else "with " + ", ".join(k for k, v in r.options.items()
                                                    if OPTIONS[k].kind == "fix" and v))
             + (f"; trace options {set_opts}" if set_opts else "") + (f"; override {changed}" if changed else ""))
    exp = r.expected
    L.append(f"  trace: {r.expected_verdict}" + (f" of {exp}" if exp else "")
             + (f" ({r.property_description})" if r.property_description else ""))
    sched_line = f"  schedule: {r.replayed}/{r.transitions} transitions taken on the code"
    sched_line += f", {r.matched} at the same step" if r.strict or r.matched != r.replayed else ", each at the same step"
    if r.loop_repeats:
        sched_line += f"; its cycle repeated {r.loop_repeats} more time(s)"
    L.append(sched_line)
    if r.strict and not r.conforms:
        L.append(f"  NONCONFORMANCE: {r.mismatch}")
    if r.divergences:
        shown = r.divergences[:6]
        L.append(f"  divergences from the trace ({len(r.divergences)}): "
                 + "; ".join(f"#{i} {th} {st} -> {got}" for i, th, st, got in shown)
                 + (" ..." if len(r.divergences) > 6 else ""))
    if r.finish_steps:
        L.append(f"  then {len(r.finish_steps)} step(s) to the end: "
                 + ", ".join(f"{th} {lab}" for th, lab in r.finish_steps[:8])
                 + (" ..." if len(r.finish_steps) > 8 else "") + f" -> {r.outcome}")
    else:
        L.append(f"  end: {r.outcome}")
    calls = "; ".join(f"{k}: " + ", ".join(f"{c} -> {v}" for c, v in vs) for k, vs in r.results.items() if vs)
    L.append(f"  calls: {calls or '-'}")
    f = r.final
    L.append(f"  final: state={f['state']:#x} ({f['state_names']}), used={f['used']}"
             + (f", vis_usage={f['vis_usage']}" if f.get('vis_usage') is not None else "")
             + (", allocator torn down" if f["finied"] else f", blocks in allocator={f['live_blocks_in_allocator']}")
             + f", frees skipped={f['frees_skipped']}"
             + (f", vres live={f['vres_live']}" if r.model_kind == "vram" else ""))
    if r.leaks:
        L.append("  fini leak report: " + ", ".join(f"[{a:#x}, {b:#x})" for a, b in r.leaks))
    scope = "" if r.checked is None else f" (checking {', '.join(r.checked) or 'no property'})"
    if r.findings:
        L.append(f"  observed in the code{scope}:")
        for o in r.findings:
            L.append(f"    {o}")
    else:
        L.append(f"  observed in the code{scope}: nothing (every check held)")
    if r.others:
        L.append("  also observed (properties this trace's spec does not check):")
        for o in r.others:
            L.append(f"    {o}")
    if r.dmesg:
        L.append("  dmesg (last 6):")
        for lvl, who, msg in r.dmesg[-6:]:
            L.append(f"    [{lvl}] {who}: {msg}")
    verdict = r.status
    if verdict == "REPRODUCED":
        L.append(f"result: REPRODUCED - {exp} observed in the code")
    elif verdict == "CLEAN":
        L.append("result: CLEAN - the schedule ends with every check holding")
    else:
        L.append(f"result: {verdict}" + (f" - expected {exp}, observed {', '.join(r.observed) or 'nothing'}"
                                         if exp else ""))
    return "\n".join(L)
