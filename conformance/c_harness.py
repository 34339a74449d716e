"""Drive the document's C managers (``csrc/``) as the model's threads.

``CHarness`` loads the shared object built for a configuration's -D set and
runs one pthread per model thread (``w0``.., ``inj0``.., ``rec0``..,
``stats0``.., ``fini``).  The shim's token passing lets exactly one C thread
run at a time, from one scheduling point to the next; each point carries the
model's step label, so a trace's transitions (thread, step) map onto the C
code one to one, as ``conformance/impl_replay.py`` maps them onto the Python code.

``replay_on_c`` follows a trace's interleaving on the C code and reports what
was observed -- the model's properties evaluated on the C state mapped onto
the model's variables (``conformance/monitor.py``: fini's leaks, ``used`` left
non-zero, a return with the lock held, overlapping allocations, ...) and the
shim's reports (might_sleep, lockdep, KCSAN, the allocators' BUG_ONs,
kmemleak) -- in the same report as the Python replay (``ImplReplayReport``,
``format_report``).
"""
from __future__ import annotations

import ctypes
from dataclasses import dataclass

from ..model.options import resolve
from ..model.run_config import RunConfig
from .impl_replay import ImplReplayReport, Observation, drive_trace, format_report as _format_py, trace_run
from .c_build import build, defines_for
from .monitor import ModelMonitor

__all__ = ["CHarness", "replay_on_c", "format_c_report", "load_lib"]

PAGE = 4096
STATE_READY, STATE_SHUTDOWN, STATE_ERROR = 0x02, 0x04, 0x08
T_NEW, T_PARKED, T_RUNNING, T_DONE = range(4)


class _Snap(ctypes.Structure):
    _fields_ = [(n, ctypes.c_longlong) for n in
                ("dev_state", "state", "lock_owner", "used", "vis", "alive", "gen", "lost", "users", "kmem_live")]


_LIBS: dict = {}


def load_lib(defines: list[str], src=None):
    """The C managers built with ``defines`` (from ``csrc/`` or the tree ``src``), loaded once per process."""
    path = build(defines, src)
    lib = _LIBS.get(path)
    if lib is None:
        lib = ctypes.CDLL(str(path))
        LL, I, S = ctypes.c_longlong, ctypes.c_int, ctypes.c_char_p
        PLL, PI = ctypes.POINTER(LL), ctypes.POINTER(I)
        sig = {"h_setup": (I, [I, LL, I, PI, PI, I, I, I, I, I]), "h_spawn_all": (I, []), "h_nthreads": (I, []),
               "h_name": (S, [I]), "h_label": (S, [I]), "h_state": (I, [I]), "h_enabled": (I, [I]),
               "h_step": (I, [I]), "h_set_stop": (None, []), "h_fail_next_init": (None, []),
               "h_set_timeout_ms": (None, [I]), "h_teardown": (None, []),
               "h_snapshot": (None, [ctypes.POINTER(_Snap)]), "h_blocks": (I, [PLL, PLL, I]),
               "h_worker_res": (I, [I, I, PLL, PLL]), "h_fini_leaks": (I, [PLL, PLL, I]),
               "h_nreports": (I, []), "h_report": (S, [I, I]), "h_nlogs": (I, []), "h_log": (S, [I, I]),
               "h_nresults": (I, []), "h_result": (S, [I, I]),
               "h_selftest": (I, [I]), "h_holds_lock": (I, [I]), "h_kmem_live": (I, [])}
        for name, (res, args) in sig.items():
            f = getattr(lib, name)
            f.restype, f.argtypes = res, args
        _LIBS[path] = lib
    return lib


@dataclass
class CThread:
    h: "CHarness"
    index: int
    name: str

    @property
    def label(self) -> str:
        return self.h.lib.h_label(self.index).decode()

    @property
    def done(self) -> bool:
        return self.h.lib.h_state(self.index) == T_DONE

    def enabled(self) -> bool:
        return bool(self.h.lib.h_enabled(self.index))


class CHarness:
    """One run of the C managers: a device, the manager under test, the workload's threads.

    Only one CHarness may be live per process (the shim's state is global); ``close`` ends it."""

    _live = None

    def __init__(self, kind: str, size: int, options: dict, workload, window: int | None = None,
                 retry_count: int | None = None, src=None):
        if CHarness._live is not None:
            CHarness._live.close()
        self.config = RunConfig(kind, size, workload, dict(options), window, retry_count)
        self.kind, self.size = kind, size
        self.options = resolve(dict(options))
        self.defines = defines_for(self.options, retry_count)
        self.lib = load_lib(self.defines, src)
        self.workload = workload
        self.geo = self.config.geometry()
        nops, ops = [], []
        for w in workload.workers:
            nops.append(len(w))
            ops += [op[1] if op[0] == "alloc" else 0 for op in w]
        arr = lambda xs: (ctypes.c_int * max(len(xs), 1))(*xs)  # noqa: E731
        r = self.lib.h_setup(0 if kind == "vram" else 1, size, len(workload.workers), arr(nops), arr(ops),
                             workload.error_injectors, workload.recoverers, workload.stats_readers,
                             int(bool(workload.shutdown)), int(bool(workload.worker_loop)))
        if r:
            raise ValueError(f"the C harness cannot set up this configuration (error {r})")
        self.threads = [CThread(self, i, self.lib.h_name(i).decode()) for i in range(self.lib.h_nthreads())]
        self.names = [t.name for t in self.threads]
        self.observations: list[Observation] = []
        self._seen: set = set()
        self._reports_seen = 0
        self.finied = False
        self.fini_leaks: list[tuple[int, int]] = []
        self.shutdown_seen = False
        self.history: list[tuple[str, str]] = []
        self.closed = False
        self.model = self.config.build()
        self.monitor = ModelMonitor(self.model, self.observe)
        self._results_seen = 0
        CHarness._live = self
        if self.lib.h_spawn_all():
            raise RuntimeError("a C thread did not reach its first scheduling point")

    @classmethod
    def from_config(cls, cfg: RunConfig, src=None) -> "CHarness":
        return cls(cfg.kind, cfg.size, cfg.options, cfg.workload, window=cfg.window, retry_count=cfg.retry_count,
                   src=src)

    # -- scheduler ------------------------------------------------------------------
    def by_name(self, name: str) -> CThread:
        for t in self.threads:
            if t.name == name:
                return t
        raise KeyError(name)

    def enabled(self) -> list[CThread]:
        return [t for t in self.threads if t.enabled()]

    def all_done(self) -> bool:
        return all(t.done for t in self.threads)

    def blocked(self) -> list[CThread]:
        return [t for t in self.threads if not t.done and not t.enabled()]

    def step(self, t: CThread) -> str:
        label = t.label
        r = self.lib.h_step(t.index)
        if r == -1:
            raise RuntimeError(f"{t.name} did not reach its next scheduling point after {label} (C thread stuck)")
        if r == -2:
            raise RuntimeError(f"{t.name} is not enabled at {label}")
        self.history.append((t.name, label))
        self._after(t, label)
        return label

    def close(self):
        if not self.closed:
            self.collect()
            self.lib.h_teardown()
            self.closed = True
            if CHarness._live is self:
                CHarness._live = None

    # -- the C state --------------------------------------------------------------------
    def snap(self) -> _Snap:
        s = _Snap()
        self.lib.h_snapshot(ctypes.byref(s))
        return s

    def blocks(self) -> list[tuple[int, int]]:
        n = 512
        st, sz = (ctypes.c_longlong * n)(), (ctypes.c_longlong * n)()
        k = self.lib.h_blocks(st, sz, n)
        return [(st[i], sz[i]) for i in range(min(k, n))]

    def worker_res(self, i: int, which: int):
        a, b = ctypes.c_longlong(), ctypes.c_longlong()
        return (a.value, b.value) if self.lib.h_worker_res(i, which, ctypes.byref(a), ctypes.byref(b)) else None

    def worker_live(self, i: int):
        """The byte range [start, end) worker i holds in the model's sense (``blk``), or None."""
        t = self.threads[i]
        if not t.done and t.label.endswith(".free.skipped"):
            return None
        return self.worker_res(i, 0) or self.worker_res(i, 1)

    def block_index(self, ext) -> int:
        if ext is None:
            return -1
        st, sz = ext[0] // PAGE, (ext[1] - ext[0]) // PAGE
        for i in range(self.geo.count):
            if self.geo.starts[i] == st and self.geo.sizes[i] == sz:
                return i
        return -2

    def abstract(self) -> dict:
        """The C state in the model's variables."""
        s = self.snap()
        mask = 0
        if s.alive:
            for a, n in self.blocks():
                i = self.block_index((a, a + n))
                mask |= 1 << (i if i >= 0 else self.geo.count)
        nw = len(self.workload.workers)
        skipping = sum(1 for i in range(nw) if not self.threads[i].done and self.threads[i].label.endswith(".free.skipped"))
        out = {"dev_state": s.dev_state, "state": s.state, "lock": s.lock_owner, "mask": mask, "alive": s.alive,
               "gen": s.gen % 256, "used": s.used // PAGE, "vis": s.vis // PAGE if self.kind == "vram" else 0,
               "lost": s.lost + skipping, "finied": int(self.finied)}
        for i in range(nw):
            out[f"w{i}.blk"] = self.block_index(self.worker_live(i))
        return out

    # -- monitor ----------------------------------------------------------------------------
    def observe(self, prop: str, thread: str | None, msg: str):
        if (prop, thread) in self._seen:
            return
        self._seen.add((prop, thread))
        self.observations.append(Observation(prop, thread, msg))

    def collect(self):
        """The shim's and the C harness's reports since the last look."""
        n = self.lib.h_nreports()
        for i in range(self._reports_seen, n):
            self.observe(*(self.lib.h_report(i, f).decode(errors="replace") for f in range(3)))
        self._reports_seen = n

    def model_values(self) -> dict:
        """``abstract`` with each thread's step (its pc) and the ghost of SHUTDOWN having been set; a block the
        model has no candidate for (-2) is left out, and so is what the C harness cannot attribute to one
        worker (its vres): the expressions reading them are not evaluated."""
        out = self.abstract()
        out["shutdown_seen"] = int(self.shutdown_seen)
        for t in self.threads:
            out[f"{t.name}.pc"] = "done" if t.done else t.label
        for k in [k for k, v in out.items() if k.endswith(".blk") and v == -2]:
            del out[k]
        return out

    def _after(self, t: CThread, label: str):
        self.collect()
        s = self.snap()
        if t.name == "fini" and label == "teardown":
            self.finied = True
            n = 64
            st, sz = (ctypes.c_longlong * n)(), (ctypes.c_longlong * n)()
            k = self.lib.h_fini_leaks(st, sz, n)
            self.fini_leaks = [(st[i], st[i] + sz[i]) for i in range(min(k, n))]
        if s.state & STATE_SHUTDOWN:
            self.shutdown_seen = True
        values = self.model_values()
        self.monitor.check_state(values)
        self._returns(values)
        nw = len(self.workload.workers)
        live = [(i, e) for i in range(nw) if (e := self.worker_live(i)) is not None]
        if any(self.block_index(e) == -2 for _, e in live):
            # blocks outside the model's candidates: the model cannot compare them, the extents can
            for x in range(len(live)):
                for y in range(x + 1, len(live)):
                    (i, (a, b)), (j, (c, d)) = live[x], live[y]
                    if a < d and c < b:
                        self.observe("no_overlap", None, f"w{i} [{a:#x}, {b:#x}) and w{j} [{c:#x}, {d:#x}) hold the same memory")

    def _returns(self, values: dict):
        """The return steps' assertions of the calls that returned in this step, on the values they returned."""
        n = self.lib.h_nresults()
        for i in range(self._results_seen, n):
            th, call, val = (self.lib.h_result(i, f).decode() for f in range(3))
            label = self.monitor.return_label(th, call)
            if call == "get_stats":
                got = dict(kv.split("=", 1) for kv in val.split())
                self.monitor.check_step(th, label, values, {
                    "s_used": int(got["used_size"]) // PAGE, "s_vis": int(got.get("visible_used", 0)) // PAGE,
                    "s_state": int(got["state"], 16)})
            elif ":alloc(" in call or call == "recover":
                self.monitor.check_step(th, label, values, {"ret": int(val)})
        self._results_seen = n

    def at_end(self, outcome: str):
        self.collect()
        if outcome == "deadlock":
            blocked = ", ".join(f"{t.name} at {t.label}" for t in self.blocked())
            self.observe("deadlock", None, f"no thread can move and not every thread has finished ({blocked})")
        if outcome == "done":
            unseen = self.monitor.check_final(self.model_values())
            s = self.snap()
            holding = [f"w{i}" for i in range(len(self.workload.workers)) if self.worker_res(i, 1) is not None]
            if "no_lost_resource" in unseen and (s.lost or holding):
                # the model's final reads each worker's vres, which the C harness does not attribute; what the
                # workers still hold and the frees skipped are counted here instead
                self.observe("no_lost_resource", None,
                             (f"{s.lost} free(s) returned early: their block(s) and resource(s) are lost" if s.lost
                              else "") + (f"; {', '.join(holding)} end(s) holding a block" if holding else ""))

    def results(self) -> dict:
        out = {n: [] for n in self.names}
        for i in range(self.lib.h_nresults()):
            th, call, val = (self.lib.h_result(i, f).decode() for f in range(3))
            v = int(val) if val.lstrip("-").isdigit() else val
            out.setdefault(th, []).append((call, v))
        return out

    def dmesg(self) -> list[tuple[str, str, str]]:
        return [tuple(self.lib.h_log(i, f).decode(errors="replace") for f in range(3)) for i in range(self.lib.h_nlogs())]


def _state_name(s: int) -> str:
    names = [n for bit, n in ((1, "INITIALIZING"), (STATE_READY, "READY"), (STATE_SHUTDOWN, "SHUTDOWN"),
                              (STATE_ERROR, "ERROR")) if s & bit]
    return "|".join(names) or "0"


def replay_on_c(trace_data: dict, options_override: dict | None = None, *, properties=None, root=None,
                loop_repeats: int = 2, finish_budget: int = 5000) -> ImplReplayReport:
    """``impl_replay.replay_on_impl`` on the C managers: the trace's interleaving, its step labels met
    by the C scheduling points (with the trace's own options) and its states by the C state mapped onto the
    model's variables; then the remaining threads to the end, the thread the trace blames first."""
    cfg, trs, rep = trace_run(trace_data, options_override, properties, root)
    kind = cfg.kind
    h = CHarness.from_config(cfg)
    rep.window = h.geo.window if h.geo.windowed else None
    try:
        drive_trace(rep, trs, trace_data, sched=h, observe=h.observe, abstract=h.abstract,
                    fail_next_init=h.lib.h_fail_next_init, stop=h.lib.h_set_stop, code="the C code",
                    loop_repeats=loop_repeats, finish_budget=finish_budget)
        h.at_end(rep.outcome)
        s = h.snap()
        rep.observations = list(h.observations)
        rep.results = h.results()
        rep.leaks = list(h.fini_leaks)
        rep.final = {"device_state": s.dev_state, "state": s.state, "state_names": _state_name(s.state),
                     "used": s.used, "vis_usage": s.vis if kind == "vram" else None,
                     "live_blocks_in_allocator": len(h.blocks()) if s.alive else 0, "finied": h.finied,
                     "frees_skipped": s.lost, "vres_live": s.kmem_live}
        rep.dmesg = h.dmesg()
        rep.defines = h.defines
    finally:
        h.close()
    return rep


def format_c_report(report: ImplReplayReport) -> str:
    text = _format_py(report)
    first, _, rest = text.partition("\n")
    first = first.replace("replay on the implementation:", "replay on the C implementation (csrc/):", 1)
    defs = getattr(report, "defines", None)
    build = "  build: gcc " + (" ".join(f"-D{d}" for d in defs) if defs else "(no defines: the code as written)")
    return first + "\n" + build + "\n" + rest
