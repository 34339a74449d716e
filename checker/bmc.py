"""Bounded model checking on the z3 translation of a model.

The path s0 .. sk is unrolled one transition at a time on one incremental
solver; after each unrolling the solver is asked, under an assumption, whether
s_k violates a checked property.  Depths are tried in increasing order, so the
first violation found is at the smallest depth at which any violation exists:
the depth of the explorer's breadth-first counterexample.

The selector of each transition names the (thread, pc, branch) disjunct taken,
so the counterexample is a list of real moves; before it is returned it is
replayed on the reference interpreter (``model.interpret.successors``), and a
mismatch is an internal error, never a silent wrong trace.

Consecutive independent moves of different threads are kept in thread-index
order (``_Reduction``, a partial-order reduction; ``reduce=False`` turns it
off): it leaves the set of states reachable in exactly k steps unchanged for
every k, so the first depth and the verdict are the same, with far fewer paths
for the solver to refute (spec 14 at depth 32: 93 s -> 11 s, docs/BENCH.md).

Nothing is enumerated: a retry limit of 100 or a 64-bit counter costs the
solver no more states, only what the path to depth K needs.

A bound of the model (``Model.bounds``: the allocator window of a model of a
large VRAM or GTT) is searched for with every run, whatever properties are
asked: the first depth at which it can be reached ends the search with
INCOMPLETE and what to raise, since past it the model is not exact (unless a
real property fails in that same state, which is then the verdict).

Each depth's query gets the same budget of z3 resource units (``rlimit``,
``z3_budget``; z3 limits every ``check()`` of the incremental solver
separately), never wall time: UNKNOWN names the depth whose query ran out, and
every shallower depth is settled (no violation there).  The run builds its
terms in a z3 context of its own, so what a query costs does not depend on
what ran before it in the process.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import z3

from ..model import interpret
from ..model.program import Model
from .explorer import Move
from .z3_budget import DEFAULT_RLIMIT, Budget, own_context
from .z3_progress import note_phase
from .z3_encode import substitution, Encoder

VIOLATION, NO_VIOLATION, UNKNOWN, INCOMPLETE = "VIOLATION", "NO_VIOLATION", "UNKNOWN", "INCOMPLETE"


@dataclass
class BmcResult:
    verdict: str                       # VIOLATION | NO_VIOLATION (up to depth) | UNKNOWN | INCOMPLETE (a bound)
    property: str | None = None
    thread: int | None = None
    depth: int | None = None           # depth of the violation, or the depth checked
    path: list = field(default_factory=list)   # [(Move | None, state)]
    seconds: float = 0.0
    detail: str = ""


class ReplayMismatch(AssertionError):
    pass


def replay(model: Model, path) -> None:
    """Every transition of ``path`` must be a move of the reference interpreter."""
    s0 = path[0][1]
    if s0 != model.initial_state():
        raise ReplayMismatch("the path does not start in the initial state")
    for i in range(1, len(path)):
        mv, s = path[i]
        prev = path[i - 1][1]
        ok = any((t, pc, b, n) == (mv.thread, mv.pc, mv.branch, s) for t, pc, b, n in interpret.successors(model, prev))
        if not ok:
            raise ReplayMismatch(f"transition {i} ({model.threads[mv.thread].name} pc {mv.pc} branch {mv.branch}) "
                                 "is not a move of the interpreter")


def _which(model: Model, state, props, deadlock):
    """Name the violated property the way the explorer's check does."""
    hit = interpret.check(model, state, [p for p in props if p != "deadlock"])
    if hit:
        return hit
    lay = model.layout
    if all(state[lay.pc_slot(t)] == lay.done_pc[t] for t in range(len(model.threads))):
        p = interpret.check_final(model, state, [p for p in props if p != "deadlock"])
        if p:
            return (p, None)
    elif deadlock and not interpret.successors(model, state):
        return ("deadlock", None)
    return None


class _Reduction:
    """Partial-order reduction of the unrolled path: two consecutive moves of
    different threads that are independent (``Encoder.independent``: neither
    writes a slot the other reads or writes, computed syntactically from the
    model) must appear in thread-index order.

    Why the answer at every depth stays the same.  Swapping two adjacent
    independent moves of a path gives a path of the same length from the same
    initial state to the same final state (each move reads nothing the other
    writes, so its guard and its updates are the same in either order, and
    they write disjoint slots).  Among the paths reachable from one path by
    such swaps (finitely many: permutations of its moves) take the one whose
    sequence of thread indices is lexicographically least; if it had two
    adjacent independent moves with the later one's thread index smaller,
    swapping them would give a smaller sequence.  So that path satisfies the
    constraint.  Hence the set of states reachable by a reduced path of
    exactly k steps equals the set reachable by any path of exactly k steps,
    for every k, and every checked predicate (properties, assertion sites,
    final properties, the deadlock predicate, the bounds) is a predicate of
    the last state only: a violation exists at depth k with the reduction iff
    it exists without it.  The first depth, the facts "no violation at depth
    j < k" kept on the solver, and the verdict are therefore unchanged; the
    trace is still a real path (it is replayed on the interpreter).

    Only slots that moves of two or more threads touch can make moves of
    different threads dependent, so the constraint is written over those
    slots (``shared``), per step: the thread index of the move and, per such
    slot, whether the move reads or writes it."""

    def __init__(self, enc: Encoder):
        self.enc = enc
        moves = enc.moves
        n = len(enc.model.threads)
        by_thread = [[mv for mv in moves if mv.thread == t] for t in range(n)]
        # moves are numbered thread by thread: thread t's selectors form one range
        self.hi = []
        for t in range(n):
            idx = [mv.index for mv in by_thread[t]]
            assert not idx or idx == list(range(idx[0], idx[-1] + 1))
            self.hi.append(idx[-1] + 1 if idx else (self.hi[-1] if self.hi else 0))
        touched: dict[int, set] = {}
        for mv in moves:
            r, w = enc.footprint(mv)
            for k in r | w:
                touched.setdefault(k, set()).add(mv.thread)
        self.shared = sorted(k for k, ts in touched.items() if len(ts) > 1)
        self.readers = {k: [mv.index for mv in moves if k in enc.footprint(mv)[0]] for k in self.shared}
        self.writers = {k: [mv.index for mv in moves if k in enc.footprint(mv)[1]] for k in self.shared}
        self.n = n

    def _is(self, sel, idxs):
        return z3.Or([sel == self.enc.sel_val(i) for i in idxs]) if idxs else z3.BoolVal(False)

    def step(self, sel):
        """(thread index term, {slot: reads}, {slot: writes}) of the move ``sel``."""
        tid = z3.BitVecVal(self.n - 1, 8)
        for t in range(self.n - 2, -1, -1):
            tid = z3.If(z3.ULT(sel, self.enc.sel_val(self.hi[t])), z3.BitVecVal(t, 8), tid)
        r = {k: self._is(sel, self.readers[k]) for k in self.shared}
        w = {k: self._is(sel, self.writers[k]) for k in self.shared}
        return tid, r, w

    def order(self, a, b):
        """Moves ``a`` then ``b`` (results of ``step``): if b's thread index is
        smaller than a's, they must be dependent."""
        (ta, ra, wa), (tb, rb, wb) = a, b
        dep = z3.Or([z3.Or(z3.And(wa[k], z3.Or(rb[k], wb[k])), z3.And(wb[k], ra[k])) for k in self.shared])
        return z3.Implies(z3.ULT(tb, ta), dep)


def bmc(model: Model, depth: int, *, properties=None, deadlock: bool = True, rlimit: int | None = DEFAULT_RLIMIT,
        budget: Budget | None = None, start: int = 0, reduce: bool = True) -> BmcResult:
    """Search for a violation of ``properties`` (default: every safety property
    of the model) on paths of length ``start`` .. ``depth``.  ``reduce``: the
    partial-order reduction of ``_Reduction`` (same answer, fewer paths).
    Each depth's query gets ``rlimit`` resource units (``budget``, if given,
    instead; it logs what each query used)."""
    budget = budget if budget is not None else Budget(rlimit)
    with own_context():
        return _bmc(model, depth, properties, deadlock, budget, start, reduce)


def _bmc(model, depth, properties, deadlock, budget, start, reduce):
    t0 = time.perf_counter()        # reported, never a budget
    note_phase(budget, "encoding the model for z3")
    enc = Encoder(model)
    props = [p for p in enc.safety_properties(properties) if p not in model.bounds]
    if deadlock and (properties is None or "deadlock" in properties):
        props.append("deadlock")
    bounds = list(model.bounds)
    props += bounds
    solver = z3.SolverFor("QF_BV")
    states = [enc.state("s0")]
    sels = []
    solver.add(enc.init(states[0]))
    por = None          # built after the first unrolling: a model z3 cannot take fails there, with its message
    steps = []

    # the step and the property check are built in Python once, over s0 -> s1, and substituted for every
    # other depth: the same terms, without rebuilding thousands of them per depth
    first = []          # [(s0 .. s1, sel0) as one list, trans(s0, s1, sel0), por.step(sel0)]
    bad0 = None

    for k in range(depth + 1):
        if k >= start:
            if bad0 is None:
                bad0 = z3.Or([enc.bad(states[0], p) for p in props]) if props else z3.BoolVal(False)
            bad = bad0 if k == 0 else substitution(states[0], states[k])(bad0)
            flag = z3.Bool(f"bad{k}")
            solver.add(z3.Implies(flag, bad))
            r = budget.check(solver, flag, what=f"bmc depth {k}")
            if r == z3.sat:
                m = solver.model()
                path = [(None, enc.decode(m, states[0]))]
                for i in range(k):
                    mv = enc.moves[m.eval(sels[i], model_completion=True).as_long()]
                    path.append((Move(mv.thread, mv.pc, mv.branch), enc.decode(m, states[i + 1])))
                replay(model, path)
                real = [p for p in props if p not in bounds]
                hit = _which(model, path[-1][1], real, deadlock) or _which(model, path[-1][1], bounds, False)
                if hit is None:
                    raise ReplayMismatch("z3 reports a violation the interpreter does not see in the last state")
                took = round(time.perf_counter() - t0, 3)
                if hit[0] in model.bounds:
                    t = hit[1]
                    where = (f"{model.threads[t].name} at {model.layout.label(t, path[-1][1][model.layout.pc_slot(t)])}"
                             if t is not None else "a state")
                    return BmcResult(INCOMPLETE, hit[0], t, k, path, took,
                                     detail=f"{model.bounds[hit[0]]}; {where} after {k} steps ({hit[0]} violated); "
                                            f"no violation on any path of length < {k}")
                return BmcResult(VIOLATION, hit[0], hit[1], k, path, took)
            if r == z3.unknown:
                why = (f"out of budget at depth {k} (rlimit {budget.rlimit:,} per depth; raise --rlimit)"
                       if budget.rlimit is not None else f"solver gave up at depth {k}")
                settled = f"; no violation on any path of length {start}..{k - 1}" if k > start else ""
                return BmcResult(UNKNOWN, depth=k, seconds=round(time.perf_counter() - t0, 3),
                                 detail=f"{why}: {solver.reason_unknown()}{settled}")
            solver.add(z3.Not(flag))    # no violation at depth k: keep it as a fact
        if k == depth:
            break
        nxt = enc.state(f"s{k + 1}")
        sel = enc.selector(f"sel{k}")
        if k == 0:
            first = [states[0] + nxt + [sel], enc.trans(states[0], nxt, sel)]
            sub = None
        else:
            sub = substitution(first[0], states[k] + nxt + [sel])
        solver.add(first[1] if sub is None else sub(first[1]))
        if por is None and reduce and len(model.threads) > 1:
            por = _Reduction(enc)
        if por is not None:
            if k == 0:
                first.append(por.step(sel))
            tid, r, w = first[2] if sub is None else (sub(first[2][0]), {x: sub(v) for x, v in first[2][1].items()},
                                                      {x: sub(v) for x, v in first[2][2].items()})
            steps.append((tid, r, w))
            if k > 0:
                solver.add(por.order(steps[k - 1], steps[k]))
        states.append(nxt)
        sels.append(sel)
    return BmcResult(NO_VIOLATION, depth=depth, seconds=round(time.perf_counter() - t0, 3),
                     detail=f"no violation at any depth <= {depth} (paths of up to {depth} steps)")


def bmc_trace(model: Model, res: BmcResult, *, spec: str, source: str) -> dict:
    """The violation as an ITF trace (backend ``bmc``) that ``replay`` confirms."""
    from .trace import to_itf
    return to_itf(model, res.path, spec=spec, source=source,
                  verdict="DEADLOCK" if res.property == "deadlock" else "VIOLATION", prop=res.property,
                  thread=res.thread, backend="bmc", extra={"depth": res.depth})
