"""The native explorer: the model compiled to C (``model/compile_c.py``), built
by the system C compiler into a shared object cached by the hash of its
source, loaded through ctypes, and the whole breadth-first search run there.

It reproduces ``explorer.explore`` state for state: the same order of
successors, checks and vacuity triggers, the same first violation, the same
number of distinct states, the same shortest counterexample.  Only the
search runs in C: a counterexample comes back as a list of moves that the
Python compiled model re-executes, so paths, traces and reports are built by
the same code as on the Python back end.

Where the native back end cannot serve a run (liveness, a kept graph,
depth-first search, no C compiler, an expression it cannot compile, a
compiler failure), ``dispatch`` runs the Python explorer and says why in
``stats['backend_reason']``.
"""
from __future__ import annotations

import ctypes
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ..model import interpret
from ..model.compile import Compiled, compile_model
from ..model.compile_c import Unsupported, _decl_range, _width, generate, value_ranges
from ..model.program import Model
from .explorer import (DEADLOCK, INCOMPLETE, OK, VIOLATION, Move, Result, blocked_threads, default_memory_limit_mb,
                       peak_rss_mb, rss_mb)

CFLAGS = ["-O2", "-shared", "-fPIC", "-std=gnu11", "-w", "-pthread"]
# a search of a few hundred thousand states is over before -O2's extra second of gcc would pay (mutate: one build
# for each mutant): gcc -O0 builds in a third of the time, and the search runs two to three times slower
QUICK_CFLAGS = ["-O0", "-pipe", *CFLAGS[1:]]
ST_OK, ST_VIOLATION, ST_FINAL, ST_DEADLOCK, ST_BOUND, ST_MEMORY, ST_OVERFLOW, ST_NOMEM, ST_INTERRUPTED = range(9)
MAX_WIDENINGS = 64
BACKENDS = ("auto", "native", "python")
PROBE_STATES = 20_000
CACHE_KEEP = 1000             # shared objects kept in the cache (about 100-300 KB each)
# explore()'s options the native search implements; any other option set to a non-default value runs on Python
NATIVE_OPTIONS = {"properties", "strategy", "symmetry", "max_states", "max_depth", "deadlock", "liveness",
                  "progress", "keep_graph", "hash_compact", "memory_limit_mb", "memory_budget", "workers"}


class _Res(ctypes.Structure):
    _fields_ = [(n, ctypes.c_int64) for n in (
        "status", "prop", "tid", "index", "states", "transitions", "diameter", "depth")] + [
        ("exercised", ctypes.c_uint64), ("frontier_left", ctypes.c_int64), ("bytes", ctypes.c_int64),
        ("table_bytes", ctypes.c_int64), ("frontier_peak_bytes", ctypes.c_int64),
        ("overflow_slot", ctypes.c_int64), ("overflow_value", ctypes.c_int64), ("seconds", ctypes.c_double),
        ("cpu_seconds", ctypes.c_double), ("threads", ctypes.c_int64), ("expanded", ctypes.c_int64 * 64)]
MAX_WORKERS = 64
PAR_MIN = 512                 # states in a level below which the parallel search works it on one thread


_SCHEMA_SOURCES: dict = {}


def cache_dir() -> Path:
    base = os.environ.get("PDDGPU_VERIFY_CACHE")
    root = Path(base) if base else Path.home() / ".cache" / "pddgpu-verify"
    return root / "native"


def compiler() -> str | None:
    return shutil.which(os.environ.get("CC", "gcc"))


_LOADED: dict = {}


class NotBuilt(Unsupported):
    """explore_native(only_if_built=True) found no shared object built for this run."""


def shared_object(source: str, flags=None) -> Path:
    """Where the shared object of ``source`` is cached: named by the hash of the source, compiler and flags."""
    cc = compiler()
    if cc is None:
        raise Unsupported("no C compiler (gcc) found")
    digest = hashlib.sha256((" ".join([cc, *(flags or CFLAGS)]) + "\n" + source).encode()).hexdigest()[:32]
    return cache_dir() / f"m_{digest}.so"


def build(source: str, flags=None) -> Path:
    """The shared object of ``source`` built with ``flags`` (default ``CFLAGS``): built once, then found in
    the cache."""
    cc = compiler()
    flags = flags or CFLAGS
    so = shared_object(source, flags)
    d = so.parent
    if so.exists():
        try:
            os.utime(so)          # the pruning below keeps what is used
        except OSError:
            pass
        return so
    try:
        d.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise Unsupported(f"cannot create the cache directory {d}: {e}") from None
    # built under a private name and renamed into place: two runs building the same model never see half a file
    with tempfile.TemporaryDirectory(dir=d) as tmp:
        c_file = Path(tmp) / "model.c"
        c_file.write_text(source)
        out = Path(tmp) / "model.so"
        try:
            p = subprocess.run([cc, *flags, "-o", str(out), str(c_file)], capture_output=True, text=True,
                               timeout=600)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise Unsupported(f"C compiler failed: {e}") from None
        if p.returncode != 0:
            first = (p.stderr.strip().splitlines() or ["no message"])[0]
            raise Unsupported(f"C compiler failed (exit {p.returncode}): {first[:300]}")
        os.replace(out, so)
    _prune(d)
    return so


def _prune(d: Path, keep: int = CACHE_KEEP) -> None:
    """Every mutant and every range change is a new shared object: keep the ``keep`` most recently used."""
    try:
        files = sorted(d.glob("m_*.so"), key=lambda p: p.stat().st_mtime, reverse=True)
        for p in files[keep:]:
            p.unlink(missing_ok=True)
    except OSError:
        pass


def load(so: Path):
    lib = _LOADED.get(so)
    if lib is None:
        try:
            lib = ctypes.CDLL(str(so))
        except OSError as e:
            raise Unsupported(f"cannot load {so}: {e}") from None
        lib.pdd_run.restype = ctypes.c_void_p
        lib.pdd_run.argtypes = [ctypes.POINTER(ctypes.c_int64), ctypes.c_int64, ctypes.c_int64, ctypes.c_int,
                                ctypes.c_int, ctypes.c_int64, ctypes.c_int, ctypes.c_char_p, ctypes.POINTER(_Res)]
        if hasattr(lib, "pdd_run_par"):             # not built with an observer
            lib.pdd_run_par.restype = ctypes.c_void_p
            lib.pdd_run_par.argtypes = lib.pdd_run.argtypes + [ctypes.c_int]
            lib.pdd_set_par_min.restype = None
            lib.pdd_set_par_min.argtypes = [ctypes.c_int64]
        lib.pdd_path.restype = ctypes.c_int64
        lib.pdd_path.argtypes = [ctypes.c_void_p, ctypes.c_int64, ctypes.POINTER(ctypes.c_int32), ctypes.c_int64]
        lib.pdd_free.restype = None
        lib.pdd_free.argtypes = [ctypes.c_void_p]
        lib.pdd_key.restype = None
        lib.pdd_key.argtypes = [ctypes.POINTER(ctypes.c_int64), ctypes.POINTER(ctypes.c_uint64)]
        lib.pdd_roundtrip.restype = None
        lib.pdd_roundtrip.argtypes = [ctypes.POINTER(ctypes.c_int64), ctypes.POINTER(ctypes.c_int64)]
        lib.pdd_key_words.restype = ctypes.c_int
        lib.pdd_observed.restype = None
        lib.pdd_observed.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_int64), ctypes.POINTER(ctypes.c_int64)]
        if hasattr(lib, "pdd_obs_result"):          # built with an observer (checker/observe.py)
            lib.pdd_obs_combos.restype = ctypes.c_int64
            lib.pdd_obs_result.restype = ctypes.c_int64
            lib.pdd_obs_result.argtypes = [ctypes.POINTER(ctypes.c_uint64)] * 3 + [ctypes.c_int64]
        _LOADED[so] = lib
    return lib


def _model_digest(model: Model) -> str:
    return hashlib.sha256(repr((model.name, model.shared, model.threads)).encode()).hexdigest()[:32]


def _learned_path(model: Model) -> Path:
    return cache_dir() / f"ranges_{_model_digest(model)}.json"


def _pinned(model: Model, k: int) -> bool:
    """Slots whose range is never learned from a run: a pc is stored unchecked (its range is exact anyway), and
    an owner word seen under symmetry names only the representatives' owners."""
    return model.layout.decls[k].kind in ("pc", "owner")


def _read_learned(model: Model) -> dict:
    try:
        learned = json.loads(_learned_path(model).read_text())
    except (OSError, ValueError):
        return {}
    return learned if isinstance(learned, dict) else {}


def _write_learned(model: Model, learned: dict) -> None:
    try:
        p = _learned_path(model)
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(learned))
        os.replace(tmp, p)
    except OSError:
        pass          # the cache only saves reruns and bits


def analysis_ranges(model: Model, learned: dict | None = None) -> list:
    """The value-set analysis of ``model`` (``compile_c.value_ranges``): [(lo, hi)] per slot, computed once per
    model and kept in the cache."""
    learned = _read_learned(model) if learned is None else learned
    names = model.layout.var_names()
    cached = learned.get("analysis")
    if isinstance(cached, list) and len(cached) == len(names) and all(
            isinstance(r, list) and len(r) == 2 and all(isinstance(x, int) for x in r) for r in cached):
        return [tuple(r) for r in cached]
    ranges = [(lo, hi) for lo, hi, _ in value_ranges(model)]
    learned["analysis"] = [list(r) for r in ranges]
    _write_learned(model, learned)
    return ranges


def initial_ranges(model: Model, guess: dict | None = None) -> list:
    """Each slot's packed range: what an exhaustive run of this model stored there (checked stores widen it if
    another run stores more), else the value-set analysis widened by what earlier runs overflowed.  ``guess``
    ({slot name: (lo, hi)}, every slot named) stands in for the analysis: every store is checked against its
    range all the same, so a wrong guess costs a rebuild, never a state (mutate guesses a mutant's ranges
    from the original's analysis, which would take longer than the mutant's whole search)."""
    learned = _read_learned(model)
    names = model.layout.var_names()
    ranges = [tuple(guess[n]) for n in names] if guess is not None else analysis_ranges(model, learned)
    seen, wide = learned.get("seen") or {}, learned.get("wide") or {}
    lay = model.layout
    for k, name in enumerate(names):
        for table, tight in ((seen, True), (wide, False)):
            r = table.get(name) if isinstance(table, dict) else None
            if isinstance(r, list) and len(r) == 2 and all(isinstance(x, int) for x in r) and r[0] <= r[1]:
                if tight and not _pinned(model, k):
                    ranges[k] = (r[0], r[1])
                elif not tight:
                    ranges[k] = (min(ranges[k][0], r[0]), max(ranges[k][1], r[1]))
        # whatever the cache says: a pc is stored unchecked, so its range is the labels', and every range holds
        # the initial value and stays inside the declared width
        dlo, dhi = _decl_range(lay.decls[k].bits)
        init = lay.decls[k].init
        ranges[k] = (max(dlo, min(ranges[k][0], init)), min(dhi, max(ranges[k][1], init)))
    for t, slot in enumerate(lay.pc_index):
        ranges[slot] = (0, len(lay.labels[t]) - 1)
    return ranges


def _learn_seen(model: Model, lib, ctx, init) -> None:
    """After an exhaustive run: the hull of what each slot held, for the next run's packing."""
    n = len(init)
    lo, hi = (ctypes.c_int64 * n)(), (ctypes.c_int64 * n)()
    lib.pdd_observed(ctx, lo, hi)
    learned = _read_learned(model)
    names = model.layout.var_names()
    # merged with what other runs saw: a run under symmetry sees only the representatives' values
    old = learned.get("seen") if isinstance(learned.get("seen"), dict) else {}
    seen = {}
    for k in range(n):
        if _pinned(model, k):
            continue
        a, b = min(lo[k], init[k]), max(hi[k], init[k])
        o = old.get(names[k])
        if isinstance(o, list) and len(o) == 2 and all(isinstance(x, int) for x in o):
            a, b = min(a, o[0]), max(b, o[1])
        seen[names[k]] = [a, b]
    if learned.get("seen") != seen:
        learned["seen"] = seen
        _write_learned(model, learned)


def _widen(model: Model, ranges: list, slot: int, value: int) -> list:
    """A guessed range was too narrow: take in ``value`` and one more bit, so a counter costs few reruns."""
    lo, hi = ranges[slot]
    dlo, dhi = _decl_range(model.layout.decls[slot].bits)
    lo, hi = min(lo, value), max(hi, value)
    w = _width(lo, hi) + 1
    if value > ranges[slot][1]:
        hi = min(dhi, lo + (1 << w) - 1)
    else:
        lo = max(dlo, hi - (1 << w) + 1)
    out = list(ranges)
    out[slot] = (lo, hi)
    learned = _read_learned(model)
    name = model.layout.var_names()[slot]
    for table in ("wide", "seen"):
        t = learned.get(table) if isinstance(learned.get(table), dict) else {}
        if table == "wide" or name in t:
            t[name] = [lo, hi]
            learned[table] = t
    _write_learned(model, learned)
    return out


def not_native(kw: dict) -> str | None:
    """Why these explore() options must run on the Python back end, or None."""
    if kw.get("liveness"):
        return "liveness runs on the Python back end"
    if kw.get("keep_graph"):
        return "keep_graph runs on the Python back end"
    if kw.get("strategy", "bfs") != "bfs":
        return f"strategy {kw.get('strategy')!r} runs on the Python back end"
    for k, v in kw.items():
        if k not in NATIVE_OPTIONS and v not in (None, False):
            return f"option {k} is not implemented by the native back end"
    if compiler() is None:
        return "no C compiler (gcc) found"
    return None


def _hooked(model) -> str | None:
    """A Compiled model whose functions are not compile_model's own (mutate wraps ``check`` to see every state)
    must run them: only the Python explorer calls them."""
    if not isinstance(model, Compiled):
        return None
    for f in ("successors", "check", "check_final", "triggers", "canon", "is_done"):
        code = getattr(getattr(model, f), "__code__", None)
        if code is None or not code.co_filename.startswith("<compiled "):
            return f"the compiled model's {f} is replaced (only the Python explorer calls it)"
    return None


def dispatch(explore_fn, model, backend, kw: dict) -> Result:
    """``explore(..., backend=...)``: native where it can serve the run, else Python, saying why."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, not {backend!r}")
    reason = None
    if backend != "python":
        reason = not_native(kw) or _hooked(model)
        options = {k: v for k, v in kw.items() if k in NATIVE_OPTIONS}
        if reason is None and backend == "auto":
            try:
                return explore_native(model, only_if_built=True, **options)
            except NotBuilt:
                pass
            except Unsupported as e:
                reason = str(e)
            except Exception as e:      # a bug of the native back end must cost speed, never the verdict
                reason = f"native back end failed: {type(e).__name__}: {e}"
        if reason is None and backend == "auto":
            # most specs end within a few thousand states, sooner in Python than gcc builds their C: unless the
            # C code is built already, the Python explorer gets the first PROBE_STATES states, and the native
            # one only a run that goes past them
            user_max = kw.get("max_states")
            probe = dict(kw, max_states=PROBE_STATES if user_max is None else min(user_max, PROBE_STATES))
            r = explore_fn(model, backend=None, **probe)
            if r.verdict != INCOMPLETE or r.stats["states"] < PROBE_STATES or probe["max_states"] == user_max:
                r.stats["backend"] = "python"
                r.stats["backend_reason"] = f"ended within {PROBE_STATES:,} states, before a C build would pay"
                return r
        if reason is None:
            try:
                return explore_native(model, **options)
            except Unsupported as e:
                reason = str(e)
            except Exception as e:      # a bug of the native back end must cost speed, never the verdict
                reason = f"native back end failed: {type(e).__name__}: {e}"
    r = explore_fn(model, backend=None, **kw)
    r.stats["backend"] = "python"
    if reason:
        r.stats["backend_reason"] = reason
    return r


def explore_native(model: Model | Compiled, *, properties=None, strategy: str = "bfs", symmetry: bool = False,
                   max_states: int | None = None, max_depth: int | None = None, deadlock: bool = True,
                   liveness: bool = False, progress: bool = False, keep_graph: bool = False,
                   hash_compact: bool = False, memory_limit_mb: int | None = None,
                   memory_budget: int | None = None, only_if_built: bool = False, workers: int = 1,
                   observer: str | None = None, on_done=None, quick_build: bool = False,
                   range_guess: dict | None = None, schema=None) -> Result:
    """``explore`` in C.  ``memory_budget`` (bytes; default ``memory_limit_mb``, else three quarters of the
    memory available) bounds the visited set, the parent and move arrays and the frontier: a search that would
    pass it ends INCOMPLETE with what it explored.  Raises ``Unsupported`` for what only Python can run, and
    ``NotBuilt`` when ``only_if_built`` and the C code of this run is not in the cache yet.
    ``workers`` > 1: the level-synchronous search on that many threads (``pdd_run_par``): the same verdict,
    states, transitions and counterexample as one thread; only where a memory budget cuts a run short may
    the cut-off differ.  ``observer``: C code of an observer (``checker/observe.py``) shown every state the
    search reaches; ``on_done(lib)`` is called with the loaded library once the search is over, to read what it
    collected.  ``quick_build``: gcc -O0 (``QUICK_CFLAGS``), for short searches of models built once.
    ``range_guess``: see ``initial_ranges``; a range widened during the run is written back into it, so the
    next run that starts from it does not overflow there again.  ``schema``: (base, variants, i), ``model``
    being the Compiled of ``variants[i - 1]``: the search runs on the build of ``base`` (a Compiled) with
    every variant in it (``generate``'s ``variants``), selecting the i-th, so that one build serves them
    all."""
    workers = 1 if workers is None else int(workers)
    if observer is not None and workers != 1:
        raise Unsupported("an observer runs in the sequential search only")
    if not 1 <= workers <= MAX_WORKERS:
        raise ValueError(f"workers must be between 1 and {MAX_WORKERS}, not {workers}")
    if liveness or keep_graph or strategy != "bfs":
        raise Unsupported("liveness, keep_graph and depth-first search run on the Python back end")
    t0 = time.perf_counter()
    if not isinstance(model, Compiled) and properties is not None:
        # as explore(): a bound of the model (an allocator window) is checked whatever is asked
        properties = list(properties) + [p for p in model.bounds if p not in properties]
    comp = model if isinstance(model, Compiled) else compile_model(model, properties, symmetry)
    m = comp.model
    limit_mb = None
    if memory_budget is None:
        # the Python explorer's budget is the resident memory of the process: the native tables get what is left
        limit_mb = memory_limit_mb if memory_limit_mb is not None else default_memory_limit_mb()
        memory_budget = max(1, int((limit_mb - rss_mb()) * 2 ** 20))
    init = m.initial_state()
    ranges = initial_ranges(m, range_guess)
    widenings = 0
    build_s = 0.0
    mode = 0 if not progress else (1 if sys.stderr.isatty() else 2)
    while True:
        tb = time.perf_counter()
        if schema is not None:
            # one source for every variant: generated once per ranges and observer, not once a mutant
            key = (id(schema[0]), id(schema[1]), tuple(ranges), observer)
            hit = _SCHEMA_SOURCES.get(key)
            if hit is None or hit[0] is not schema[0] or hit[1] is not schema[1]:
                if len(_SCHEMA_SOURCES) > 8:
                    _SCHEMA_SOURCES.clear()
                hit = _SCHEMA_SOURCES[key] = (schema[0], schema[1], generate(schema[0], ranges, observer, schema[1]))
            cm = hit[2]
        else:
            cm = generate(comp, ranges, observer)
        flags = QUICK_CFLAGS if quick_build else CFLAGS
        if only_if_built and not shared_object(cm.source, flags).exists():
            raise NotBuilt("not built yet")
        lib = load(build(cm.source, flags))
        if schema is not None:
            ctypes.c_int.in_dll(lib, "pdd_mut").value = schema[2]
        build_s += time.perf_counter() - tb
        res = _Res()
        arr = (ctypes.c_int64 * len(init))(*init)
        args = (arr, max_states or 0, -1 if max_depth is None else max_depth, int(bool(deadlock)),
                int(bool(hash_compact)), int(memory_budget), mode, m.name.encode()[:200], ctypes.byref(res))
        if workers > 1:
            lib.pdd_set_par_min(PAR_MIN)
        ctx = _interruptible(lib, lambda: lib.pdd_run(*args) if workers == 1 else lib.pdd_run_par(*args, workers),
                             res)
        if res.status != ST_OVERFLOW:
            break
        lib.pdd_free(ctx)
        widenings += 1
        if widenings > MAX_WIDENINGS:
            raise Unsupported(f"the range of {m.layout.decls[res.overflow_slot].name} kept growing")
        ranges = _widen(m, ranges, res.overflow_slot, res.overflow_value)
        if range_guess is not None:
            range_guess[m.layout.decls[res.overflow_slot].name] = ranges[res.overflow_slot]
    if progress and mode == 1 and res.seconds >= 1.0:
        print(file=sys.stderr)
    if res.status == ST_OK and max_depth is None and max_states is None:
        _learn_seen(m, lib, ctx, init)
    if on_done is not None:
        on_done(lib)
    try:
        return _result(comp, cm, lib, ctx, res, init, t0, build_s, widenings, hash_compact, memory_budget, limit_mb)
    finally:
        lib.pdd_free(ctx)


def _interruptible(lib, call, res):
    """Run the search in a thread: Python runs a signal handler only between bytecodes, never inside a C call,
    so the main thread waits here, where Ctrl-C lands, tells the search to stop and re-raises."""
    import threading
    box = []
    flag = ctypes.c_int.in_dll(lib, "pdd_interrupt")
    flag.value = 0
    th = threading.Thread(target=lambda: box.append(call()), daemon=True, name="native-search")
    th.start()
    try:
        while th.is_alive():
            th.join(0.05)
    except KeyboardInterrupt:
        flag.value = 1
        th.join()
        if box:
            lib.pdd_free(box[0])
        raise
    return box[0]


def _result(comp, cm, lib, ctx, res, init, t0, build_s, widenings, hash_compact, budget, limit_mb) -> Result:
    m = comp.model
    succ = comp.successors

    def path_to(i):
        n = max(0, res.diameter + 2)
        buf = (ctypes.c_int32 * n)()
        k = lib.pdd_path(ctx, i, buf, n)
        out = [(None, init)]
        cur = init
        for mv in reversed(buf[:k]):
            t, pc, b = cm.moves[mv]
            cur = next(s for tt, pp, bb, s in succ(cur) if (tt, pp, bb) == (t, pc, b))
            out.append((Move(t, pc, b), cur))
        return out

    def finish(r: Result) -> Result:
        el = time.perf_counter() - t0
        n = res.states
        r.stats = {"states": n, "transitions": res.transitions, "diameter": res.diameter,
                   "seconds": round(el, 3), "states_per_s": round(n / max(res.seconds, 1e-9)),
                   "peak_mb": round(peak_rss_mb(), 1), "symmetry": comp.symmetry, "strategy": "bfs",
                   "backend": "native", "search_seconds": round(res.seconds, 3),
                   "search_cpu_seconds": round(res.cpu_seconds, 3),
                   "states_per_cpu_s": round(n / max(res.cpu_seconds, 1e-9)), "build_seconds": round(build_s, 3),
                   "bytes_per_state": round(res.bytes / max(n, 1), 1),
                   # the frontier is transient (its peak, amortised over every state): reported apart
                   "bytes_per_state_with_frontier": round((res.bytes + res.frontier_peak_bytes) / max(n, 1), 1),
                   "key_bytes": cm.key_bytes,
                   "state_bytes": cm.state_bytes, "table_bytes": res.table_bytes,
                   "frontier_peak_bytes": res.frontier_peak_bytes, "range_widenings": widenings}
        if res.threads:
            r.stats["workers"] = res.threads
            r.stats["expanded_per_thread"] = list(res.expanded[:res.threads])
            # the levels are numbered as the sequential search numbers them; a memory budget, though, is
            # checked per level here, per state there
            r.stats["parallel_note"] = ("verdicts, counts and counterexamples as with one thread; an INCOMPLETE "
                                        "cut-off by the memory budget may differ in its state count")
        if r.verdict in (OK, INCOMPLETE):
            ex = res.exercised
            r.stats["vacuous"] = [p for i, p in enumerate(comp.watched) if not ex >> i & 1]
            r.stats["absent"] = [p for p in comp.properties if p not in comp.watched and p not in m.bounds
                                 and m.properties[p].kind == "assertion"]
        if hash_compact:
            r.stats["hash_compact"] = True
            r.stats["collision_probability"] = float(f"{n * n / 2 ** 65:.2g}")
        return r

    st = res.status
    if st == ST_VIOLATION:
        prop, tid, i = cm.properties[res.prop], (res.tid if res.tid >= 0 else None), res.index
        if prop not in m.bounds:
            return finish(Result(VIOLATION, prop, tid, path_to(i)))
        # a bound of the model is no verdict on the system, unless a real property fails in the same state
        path = path_to(i)
        real = interpret.check(m, path[-1][1], [p for p in comp.properties if p not in m.bounds])
        if real:
            return finish(Result(VIOLATION, real[0], real[1], path))
        th = m.threads[tid] if tid is not None else None
        where = f"{th.name} at {m.layout.label(tid, path[-1][1][m.layout.pc_slot(tid)])}" if th else "a state"
        return finish(Result(INCOMPLETE, prop, tid, path,
                             detail=f"{m.bounds[prop]}; {where} after {len(path) - 1} steps ({prop} violated); "
                                    "the search stopped there"))
    if st == ST_FINAL:
        return finish(Result(VIOLATION, cm.properties[res.prop], None, path_to(res.index)))
    if st == ST_DEADLOCK:
        path = path_to(res.index)
        return finish(Result(DEADLOCK, "deadlock", None, path, detail=blocked_threads(m, path[-1][1])))
    if st == ST_BOUND:
        return finish(Result(INCOMPLETE, detail="state or depth bound reached before the search ended"))
    if st in (ST_MEMORY, ST_NOMEM):
        if st == ST_NOMEM:
            why = "the system refused memory"
        elif limit_mb is not None:
            why = f"memory budget of {limit_mb:,} MB reached ({rss_mb():,.0f} MB resident)"
        else:
            why = f"memory budget of {budget:,} bytes reached"
        r = finish(Result(INCOMPLETE, detail=(
            f"{why} after {res.states:,} states to depth {res.depth}, {res.frontier_left:,} states still to "
            "expand; to go further: a larger budget (--memory-limit), --hash-compact, --symmetry, or bound the "
            "run (--max-states, --max-depth, fewer workers)")))
        r.stats["memory_budget"] = budget
        if limit_mb is not None:
            r.stats["memory_limit_mb"] = limit_mb
        r.stats["frontier_left"] = res.frontier_left
        return r
    if st == ST_OK:
        return finish(Result(OK))
    raise Unsupported(f"native search ended with status {st}")
