"""Exhaustive interleaving explorer.

Breadth-first by default, so the first violation found is reached by a
shortest interleaving; depth-first as an option.  States are the compiled
model's tuples; the visited set maps a (possibly canonical) state to its
index, and parents are kept as flat integer arrays so a million states cost
tens of megabytes, not hundreds.
"""
from __future__ import annotations

import re
import resource
import sys
import time
from array import array
from collections import deque
from dataclasses import dataclass, field

from ..model import interpret
from ..model.compile import Compiled, compile_model
from ..model.program import Model

OK, VIOLATION, DEADLOCK, LIVENESS, INCOMPLETE = "OK", "VIOLATION", "DEADLOCK", "LIVENESS", "INCOMPLETE"


@dataclass
class Move:
    thread: int
    pc: int
    branch: int


@dataclass
class Result:
    verdict: str
    property: str | None = None
    thread: int | None = None           # the thread at fault, when one is
    path: list = field(default_factory=list)   # [(Move | None, state)], from the initial state
    loop_start: int | None = None       # liveness: index in path where the cycle starts
    stats: dict = field(default_factory=dict)
    detail: str = ""



def _label(r: Result) -> str:
    return f"{r.verdict}({r.property})" if r.property and r.verdict != OK else r.verdict


Result.label = property(_label)   # defined outside: the field 'property' shadows the builtin in the class body


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


_PAGE = resource.getpagesize()


def rss_mb() -> float:
    """The resident set now (not its peak): what the memory budget is held against."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * _PAGE / 2 ** 20
    except (OSError, ValueError, IndexError):
        return peak_rss_mb()


def default_memory_limit_mb() -> int:
    """A safe share of the machine: three quarters of the memory available when the run starts, as TLC
    sizes its heap from the machine.  Passing it ends a run INCOMPLETE instead of in MemoryError."""
    avail = 0.0
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                key, _, rest = line.partition(":")
                if key == "MemAvailable":
                    avail = int(rest.split()[0]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    return int(avail * 0.75) if avail else 4096


def parse_memory(text: str) -> int:
    """``--memory-limit``: 512M, 4G, 2048 (MB) -> MB; ValueError otherwise."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kKmMgGtT]?)(?:i?[bB])?\s*", str(text))
    if not m:
        raise ValueError(f"{text!r} is not a size (examples: 512M, 4G, 2048)")
    n, unit = float(m.group(1)), m.group(2).upper()
    mb = n * {"": 1, "K": 1 / 1024, "M": 1, "G": 1024, "T": 1024 ** 2}[unit]
    if mb < 16:
        raise ValueError(f"{text!r}: at least 16 MB")
    return int(mb)


class Progress:
    """One line on stderr, for runs longer than a second."""

    def __init__(self, enabled: bool, name: str):
        self.enabled = enabled
        self.name = name
        self.t0 = time.perf_counter()
        self.last = self.t0
        self.shown = False

    def tick(self, states: int, depth: int):
        if not self.enabled:
            return
        now = time.perf_counter()
        # a live line on a terminal; in logs (make check under CI) one line per 10 s is enough
        if now - self.last < (1.0 if sys.stderr.isatty() else 10.0):
            return
        self.last = now
        rate = states / max(now - self.t0, 1e-9)
        end = "\r" if sys.stderr.isatty() else "\n"
        print(f"  {self.name}: {states:,} states, depth {depth}, {rate:,.0f} states/s", end=end,
              file=sys.stderr, flush=True)
        self.shown = True

    def close(self):
        if self.shown and sys.stderr.isatty():
            print(file=sys.stderr)


def blocked_threads(model: Model, s) -> str:
    """Who waits where, and on whom: the words of a deadlock report."""
    lay = model.layout
    parts = []
    for t, th in enumerate(model.threads):
        pc = s[lay.pc_slot(t)]
        if pc >= len(th.program.steps):
            continue
        st = th.program.steps[pc]
        why = ""
        if st.lock is not None and st.kind == "acquire":
            owner = s[lay.shared_slot(st.lock)]
            why = f" waiting for {st.lock} held by {model.threads[owner - 1].name}" if owner else ""
        parts.append(f"{th.name} at {st.label}{why}")
    return "no thread can move and not every thread has finished: " + "; ".join(parts)


def explore(model: Model | Compiled, *, properties=None, strategy: str = "bfs", symmetry: bool = False,
            max_states: int | None = None, max_depth: int | None = None, deadlock: bool = True,
            liveness: bool = False, progress: bool = False, keep_graph: bool = False,
            hash_compact: bool = False, memory_limit_mb: int | None = None, workers: int = 1,
            backend: str | None = "auto", por=False) -> Result:
    """Explore every interleaving.

    Only the frontier keeps whole states; every visited state costs one
    visited-set entry and three integers (parent, move, depth).  A
    counterexample is rebuilt by re-executing its recorded moves from the
    initial state.  ``hash_compact`` stores a 64-bit hash of each state
    instead of the state, as SPIN's hash-compact mode does: far less memory,
    and a verdict of OK then holds unless two states collide (probability
    about n^2 / 2^65 for n states, reported in the statistics).
    ``memory_limit_mb`` bounds the process's resident memory (default: a
    safe share of the machine, ``default_memory_limit_mb``): past it the
    search ends INCOMPLETE, with what it explored and how to go further, as
    SPIN's MEMLIM and TLC do.
    ``backend``: "native" runs the search compiled to C (checker/native.py), "python" the loop below, "auto"
    native wherever it can be built; a run the native back end cannot serve runs here, and
    ``stats['backend']`` (with ``stats['backend_reason']``) says which ran.  None: this loop, no dispatch.
    ``workers``: threads of the native breadth-first search (checker/native.py); this loop runs on one.
    ``por``: partial-order reduction (checker/por.py, docs/POR.md; Python back end only): True, or a
    ``por.Reduction`` factory ``comp -> Reduction`` (tests try wrong relations through it).  Not with
    liveness (a lasso needs every interleaving of its cycle); counterexamples may be longer than the shortest.
    """
    if backend is not None:
        options = {k: v for k, v in locals().items() if k not in ("model", "backend")}
        from .native import dispatch
        return dispatch(explore, model, backend, options)
    if liveness:
        symmetry = False   # a lasso must be a concrete cycle; canonical merging would break it
    if not isinstance(model, Compiled) and properties is not None:
        # a bound of the model (an allocator window) is checked whatever is asked: past it the model is not exact
        properties = list(properties) + [p for p in model.bounds if p not in properties]
    comp = model if isinstance(model, Compiled) else compile_model(model, properties, symmetry)
    symmetry = comp.symmetry
    m = comp.model
    succ, check, check_final, canon, is_done = comp.successors, comp.check, comp.check_final, comp.canon, comp.is_done
    triggers = comp.triggers
    reduction = None
    if por and not liveness:
        from .por import Reduction
        reduction = Reduction(comp) if por is True else por(comp)
    all_watched = (1 << len(comp.watched)) - 1
    exercised = 0         # bit i: comp.watched[i] was exercised by some reached state
    if hash_compact:
        key_of = (lambda s: hash(canon(s))) if symmetry else hash
    else:
        key_of = canon
    t0 = time.perf_counter()
    prog = Progress(progress, m.name)
    budget = memory_limit_mb if memory_limit_mb is not None else default_memory_limit_mb()
    over_budget = None     # (rss MB, states, depth) when the budget stopped the search

    init = m.initial_state()
    keep_states = liveness or keep_graph
    states = [init] if keep_states else None      # every state, only when the graph is needed
    index = {key_of(init): 0}
    parent = array("l", [-1])
    moves = array("l", [0])               # packed (thread, pc, branch)
    depth_of = array("l", [0])
    edges = [] if keep_states else None
    transitions = 0
    diameter = 0

    def pack(t, pc, b):
        return (t << 24) | (pc << 8) | b

    def unpack(mv):
        return Move(mv >> 24, (mv >> 8) & 0xFFFF, mv & 0xFF)

    def path_to(i):
        chain = []
        while i > 0:
            chain.append(moves[i])
            i = parent[i]
        out = [(None, init)]
        cur = init
        for mv in reversed(chain):
            want = unpack(mv)
            cur = next(n for t, pc, b, n in succ(cur) if (t, pc, b) == (want.thread, want.pc, want.branch))
            out.append((want, cur))
        return out

    def violation(v, i) -> Result:
        """The first violation found, in state number i.  A bound of the model
        (``Model.bounds``) is no verdict on the system: INCOMPLETE, unless a
        real property fails in the same state (the state itself is exact)."""
        if v[0] not in m.bounds:
            return finish(Result(VIOLATION, v[0], v[1], path_to(i)))
        path = path_to(i)
        real = interpret.check(m, path[-1][1], [p for p in comp.properties if p not in m.bounds])
        if real:
            return finish(Result(VIOLATION, real[0], real[1], path))
        th = m.threads[v[1]] if v[1] is not None else None
        where = f"{th.name} at {m.layout.label(v[1], path[-1][1][m.layout.pc_slot(v[1])])}" if th else "a state"
        return finish(Result(INCOMPLETE, v[0], v[1], path,
                             detail=f"{m.bounds[v[0]]}; {where} after {len(path) - 1} steps ({v[0]} violated); "
                                    "the search stopped there"))

    def finish(res: Result) -> Result:
        prog.close()
        el = time.perf_counter() - t0
        n = len(parent)
        res.stats = {"states": n, "transitions": transitions, "diameter": diameter,
                     "seconds": round(el, 3), "states_per_s": round(n / max(el, 1e-9)),
                     "peak_mb": round(peak_rss_mb(), 1), "symmetry": symmetry, "strategy": strategy}
        if res.verdict in (OK, INCOMPLETE):
            # a property no reached state exercised was not checked at all: say so, never a silent OK
            res.stats["vacuous"] = [p for i, p in enumerate(comp.watched) if not exercised >> i & 1]
            # checked at no step of this configuration (no spinlock in VRAM, no unlocked read with the fix ...)
            res.stats["absent"] = [p for p in comp.properties if p not in comp.watched and p not in m.bounds
                                   and m.properties[p].kind == "assertion"]
        if hash_compact:
            res.stats["hash_compact"] = True
            res.stats["collision_probability"] = float(f"{n * n / 2 ** 65:.2g}")
        if keep_graph:
            res.graph = (states, edges)
        if reduction is not None:
            res.stats.update(reduction.stats())
        elif por:
            res.stats.update({"por": False, "por_reason": "liveness runs without partial-order reduction"})
        return res

    v = check(init)
    if v:
        return violation(v, 0)
    exercised = triggers(init)

    frontier = deque([(0, init)])
    pop = frontier.popleft if strategy == "bfs" else frontier.pop
    incomplete = False
    count = 1
    while frontier:
        i, s = pop()
        d = depth_of[i]
        if d > diameter:
            diameter = d
        if max_depth is not None and d >= max_depth:
            incomplete = True
            continue
        nexts = succ(s)
        if reduction is not None and len(nexts) > 1:
            nexts = reduction.filter(s, nexts, index, key_of, depth_of, d)
        if not nexts:
            if is_done(s):
                p = check_final(s)
                if p:
                    return finish(Result(VIOLATION, p, None, path_to(i)))
                exercised |= comp.finals
            elif deadlock:
                return finish(Result(DEADLOCK, "deadlock", None, path_to(i), detail=blocked_threads(m, s)))
            continue
        for t, pc, b, n in nexts:
            transitions += 1
            c = key_of(n)
            j = index.get(c)
            if j is None:
                j = count
                count += 1
                index[c] = j
                parent.append(i)
                moves.append(pack(t, pc, b))
                depth_of.append(d + 1)
                if keep_states:
                    states.append(n)
                v = check(n)
                if v:
                    if edges is not None:
                        edges.append((i, j, pack(t, pc, b)))
                    return violation(v, j)
                if exercised != all_watched:
                    exercised |= triggers(n)
                if max_states is not None and count >= max_states:
                    incomplete = True
                    frontier.clear()
                    break
                frontier.append((j, n))
            if edges is not None:
                edges.append((i, j, pack(t, pc, b)))
        if (count & 0x3FFF) < len(nexts):
            if progress:
                prog.tick(count, d)
            # read every ~16k states: cheap, and 16k states are a few MB, far below any budget
            rss = rss_mb()
            if rss > budget:
                over_budget = (rss, count, d)
                break

    if over_budget:
        rss, n, d = over_budget
        r = finish(Result(INCOMPLETE, detail=(
            f"memory budget of {budget:,} MB reached ({rss:,.0f} MB resident) after {n:,} states to depth {d}, "
            f"{len(frontier):,} states still to expand; to go further: --memory-limit (a larger budget), "
            "--hash-compact (a fraction of the memory per state), --symmetry, or bound the run "
            "(--max-states, --max-depth, fewer workers)")))
        r.stats["memory_limit_mb"] = budget
        return r
    if incomplete:
        return finish(Result(INCOMPLETE, detail="state or depth bound reached before the search ended"))
    if liveness:
        from .liveness import find_non_progress
        lasso = find_non_progress(comp, states, edges)
        if lasso is not None:
            stem_end, cycle, thread, call = lasso
            full = path_to(stem_end)
            loop_start = len(full) - 1
            for (mv, j) in cycle:
                full.append((unpack(mv), states[j]))
            return finish(Result(LIVENESS, "calls_return", thread, full, loop_start,
                                 detail=f"{m.threads[thread].name} never returns from {call}"))
    return finish(Result(OK))
