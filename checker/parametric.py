"""Safety for ANY number of worker threads, by a cutoff argument.

Setting.  A spec fixes the non-worker threads (error injectors, recoverers,
stats readers, fini) and a list of worker *programs*; the question is whether
the safety properties hold for every number N >= 1 of workers, each running
one of those programs.  Write a state as (g, l_1 .. l_N): g the shared
variables and the non-worker threads, l_i worker i's pc and locals.

Side conditions, checked syntactically on the model (``side_conditions``);
the proof is refused, naming the offending element, when one fails:

 (S1) a worker step reads (guards, updates, assertions) only shared
      variables, its own locals and pc, and its own identity ``SelfId``; it
      writes only shared variables and its own locals;
 (S2) a non-worker step writes no worker state; its updates and assertions
      read no worker state; its guard is a conjunction in which each
      conjunct reads at most one worker, and the worker-reading conjuncts
      range over every worker (a "wait until every worker ..." guard);
 (S3) an owner word (lock) is only ever assigned 0 or ``SelfId + 1``;
 (S4) every member of the inductive set is a conjunction of conjuncts that
      each read at most two workers (the universal form
      ``A(g) and forall i B(g, l_i) and forall i != j C(g, l_i, l_j)``);
      a property of the form ``(forall i Q(g, l_i)) and Q(g) => R`` with R
      reading at most two workers (``used_matches_allocations``, final
      properties) is not put in the inductive set but shown implied by it.

Why it is sound.  Let Inv(N) be the universal conjunction, proved inductive
by z3 for every system of M <= 3 *symbolic* workers -- every multiset of the
spec's worker programs of size 1..3 -- where thread identities are symbolic,
pairwise distinct and small enough that identity + 1 fits the owner word
(so the result holds for every N with N + non-workers <= 2^(bits-1) - 2 =
126 threads for the 8-bit lock word of the model), and where an owner word is
free, holds a tracked thread's identity + 1, or holds the identity + 1 of one
extra *untracked* thread ("other") that never moves.

 * Base: the initial state of the N-system restricted to any <= 3 workers is
   the initial state of that M-system, and every conjunct reads <= 2
   workers, so Init(N) => Inv(N).
 * Step: suppose s |= Inv(N) and s -> s' by thread k, and a conjunct about
   workers {i, j} fails in s'.  Let S = {i, j, k} (workers only; |S| <= 3).
   The projection s|S (shared state, non-workers, workers in S; the lock
   holder, if an untracked worker, is "other") satisfies Inv(|S|), because
   Inv(N) is universal (dropping workers only drops conjuncts).  By (S1) a
   worker k in S makes the same move in the projection; by (S2) a
   non-worker move is enabled in the projection (its guard's conjuncts over
   S are a subset of those over all N workers) and has the same effect; a
   worker outside S cannot be k.  So s|S -> s'|S in the |S|-system, where
   Inv is inductive: the conjunct holds in s'|S, hence in s'.  (S3) makes
   "owner word = 0 or some identity + 1" true in every reachable N-state.
 * Implied properties: if ``(forall i Q_i) and Q(g) => R(l_i, l_j)`` failed
   in a reachable N-state s, take S = {i, j} plus the lock holder h if it is
   a worker: s|S satisfies Inv(|S|), every Q over S, the owner word names a
   tracked thread or is free, and not R -- contradicting the M-system check
   ``Inv and owner-not-other and Q => R``.

What the argument does not cover: properties that need a count over all
workers (e.g. "the allocator holds exactly the blocks the workers hold");
with the eviction fix the fixed models do not need one.  The lemma
``mask_is_held_blocks`` is such a global fact and is refused here (S4).
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import z3

from ..model import expr as E
from ..model.manager import Workload
from ..model.program import Model
from .prove import (NOT_INDUCTIVE, PROVED, UNKNOWN, ProofResult, _Timer, candidates, houdini,
                    sample_states)
from .z3_encode import Encoder

MAX_TRACKED = 3


class CutoffError(ValueError):
    """A side condition of the cutoff argument fails; names the model element."""


def _reads(e) -> set:
    """('pc', t) / ('local', t, name) / ('self',) nodes read by ``e`` (thread None = executing thread)."""
    out = set()
    for n in E.walk(e):
        if isinstance(n, E.Pc):
            out.add(("thread", n.thread))
        elif isinstance(n, E.Local):
            out.add(("thread", n.thread))
        elif isinstance(n, E.SelfId):
            out.add(("self",))
    return out


def _workers_read(e, workers, tid=None) -> set:
    ws = set()
    for r in _reads(e):
        if r[0] == "thread":
            t = tid if r[1] is None else r[1]
            if t in workers:
                ws.add(t)
    return ws


def _conjuncts(e) -> list:
    """Flatten and / not-or into conjuncts."""
    if isinstance(e, E.Op) and e.op == "and":
        return _conjuncts(e.args[0]) + _conjuncts(e.args[1])
    if isinstance(e, E.Op) and e.op == "not" and isinstance(e.args[0], E.Op) and e.args[0].op == "or":
        a, b = e.args[0].args
        return _conjuncts(E.Op("not", (a,))) + _conjuncts(E.Op("not", (b,)))
    if isinstance(e, E.Const) and e.value:
        return []
    return [e]


def side_conditions(model: Model) -> list[str]:
    """Problems with (S1)-(S3); empty when the cutoff argument applies."""
    workers = {t for t, th in enumerate(model.threads) if th.program.role == "worker"}
    owner = {d.name for d in model.shared if d.kind == "owner"}
    probs = []
    for t, th in enumerate(model.threads):
        for st in th.program.steps:
            where = f"thread {th.name} step {st.label}"
            for bi, br in enumerate(st.branches):
                exprs = [("guard", br.guard)] + [(f"update of {getattr(x, 'name', x)}", v) for x, v in br.updates]
                for target, v in br.updates:
                    if isinstance(target, E.Local) and target.thread is not None and target.thread != t:
                        probs.append(f"{where} branch {bi}: writes another thread's local {target.name}")
                    if isinstance(target, E.Var) and target.name in owner:
                        ok = (isinstance(v, E.Const) and v.value == 0) or v == E.SelfId() + 1
                        if not ok:
                            probs.append(f"{where} branch {bi}: assigns owner word {target.name} something other "
                                         "than 0 or SelfId + 1 (S3)")
                for what, e in exprs:
                    others = {r[1] for r in _reads(e) if r[0] == "thread" and r[1] is not None and r[1] != t}
                    if t in workers and others:
                        probs.append(f"{where} branch {bi} {what}: a worker reads thread(s) "
                                     f"{sorted(model.threads[o].name for o in others)} (S1)")
                    if t not in workers and what != "guard" and _workers_read(e, workers, t):
                        probs.append(f"{where} branch {bi} {what}: a non-worker reads worker state (S2)")
                if t not in workers:
                    cs = _conjuncts(br.guard)
                    covered = set()
                    for c in cs:
                        ws = _workers_read(c, workers, t)
                        if len(ws) > 1:
                            probs.append(f"{where} branch {bi} guard: a conjunct reads several workers (S2)")
                        covered |= ws
                    if covered and covered != workers:
                        probs.append(f"{where} branch {bi} guard: reads some workers but not all (S2)")
            for p, a in st.asserts:
                if t in workers and {r[1] for r in _reads(a) if r[0] == "thread" and r[1] not in (None, t)}:
                    probs.append(f"{where} assertion {p}: a worker assertion reads another thread (S1)")
                if t not in workers and _workers_read(a, workers, t):
                    probs.append(f"{where} assertion {p}: a non-worker assertion reads worker state (S2)")
    return probs


def classify(model: Model, prop: str) -> str:
    """'universal' | 'implied' | 'unsupported' (S4) for a property of ``model``."""
    p = model.properties[prop]
    workers = {t for t, th in enumerate(model.threads) if th.program.role == "worker"}
    if p.kind == "assertion":
        return "universal"
    if p.kind == "final":
        return "implied" if all(len(_workers_read(c, workers)) <= 2 for c in _conjuncts(p.expr)) else "unsupported"
    kinds = set()
    for c in _conjuncts(p.expr):
        if len(_workers_read(c, workers)) <= 2:
            continue
        # implies(A, B) is or(not(A), B)
        if isinstance(c, E.Op) and c.op == "or" and isinstance(c.args[0], E.Op) and c.args[0].op == "not":
            ant, cons = c.args[0].args[0], c.args[1]
            if all(len(_workers_read(a, workers)) <= 1 for a in _conjuncts(ant)) and \
                    all(len(_workers_read(b, workers)) <= 2 for b in _conjuncts(cons)):
                kinds.add("implied")
                continue
        return "unsupported"
    return "implied" if kinds else "universal"


@dataclass
class System:
    programs: tuple
    model: Model
    enc: Encoder
    cands: list
    hyp: object          # s -> z3 Bool: ids distinct and in range, owner words tracked/free/other
    other: dict          # owner var -> z3 term of "other"'s identity + 1


@dataclass
class ParametricResult:
    results: list                       # ProofResult per property
    systems: int = 0
    seconds: float = 0.0
    refused: list = field(default_factory=list)   # side-condition problems (then nothing is proved)
    max_threads: int = 0
    detail: str = ""


def _build(builder, programs, base: Workload):
    wl = Workload(workers=[list(p) for p in programs], error_injectors=base.error_injectors,
                  recoverers=base.recoverers, stats_readers=base.stats_readers, shutdown=base.shutdown,
                  worker_loop=base.worker_loop)
    return builder(wl)


def _system(model: Model, programs, props, lemmas, templates) -> System:
    ids = [z3.BitVec(f"id|{th.name}", 64) for th in model.threads]
    owner = [d for d in model.shared if d.kind == "owner"]
    limit = min((1 << (d.bits - 1)) - 2 for d in owner) if owner else (1 << 62)
    other_id = z3.BitVec("id|other", 64)
    enc = Encoder(model, ids=ids)
    all_ids = ids + [other_id]
    fixed = [z3.Distinct(*all_ids)] + [z3.And(i >= 0, i < limit) for i in all_ids]
    others = {}

    def hyp(s):
        out = list(fixed)
        for d in owner:
            k = model.layout.shared_slot(d.name)
            v = enc.read(s, k)
            out.append(z3.Or([v == 0] + [v == enc.read_store(k, i + 1) for i in all_ids]))
        return z3.And(out)
    for d in owner:
        k = model.layout.shared_slot(d.name)
        others[d.name] = enc.read_store(k, other_id + 1)
    cands = candidates(model, [p for p in props if classify(model, p) == "universal"], lemmas, templates)
    cands = [c for c in cands if not c.name.startswith("owner_range:")]
    return System(tuple(programs), model, enc, cands, hyp, others)


def prove_any_workers(builder, base: Workload, properties, *, lemmas=("auto", "mask_conflict_free",
                      "held_blocks_distinct", "held_blocks_in_mask"), timeout: float | None = 120.0,
                      concrete: Model | None = None, stress_builder=None) -> ParametricResult:
    """``builder(workload) -> Model`` builds the spec's model for a workload;
    ``base`` is the spec's workload (its worker programs and non-workers)."""
    timer = _Timer(timeout)
    programs = list(dict.fromkeys(tuple(tuple(op) for op in w) for w in base.workers))
    m3 = _build(builder, [programs[0]] * MAX_TRACKED, base)
    probs = side_conditions(m3)
    props = [p for p in (properties or list(m3.properties))
             if p in m3.properties and m3.properties[p].kind in ("invariant", "assertion", "final")]
    bad_lemmas = [lm for lm in lemmas if lm == "mask_is_held_blocks"]
    probs += [f"lemma {lm}: reads every worker at once (S4)" for lm in bad_lemmas]
    lemmas = [lm for lm in lemmas if lm not in bad_lemmas]
    kinds = {p: classify(m3, p) for p in props}
    if probs:
        return ParametricResult([ProofResult(p, "property", UNKNOWN, 0.0, detail="cutoff argument refused")
                                 for p in props], refused=probs, detail="side conditions fail")
    # candidate invariants mined from the spec's own (concrete) configuration
    from ..model.lemmas import mine
    conc = concrete or _build(builder, [tuple(w) for w in base.workers], base)
    templates = mine(conc, sample_states(conc)) if "auto" in lemmas else None
    if templates is not None and stress_builder is not None:
        # the symbolic systems reach the allocation-failure path (blocks of untracked workers fill the
        # allocator) that the spec's own configuration may never take: mine a smaller allocator too
        stress = _build(stress_builder, [tuple(w) for w in base.workers], base)
        templates = list(dict.fromkeys(templates + mine(stress, sample_states(stress))))
    systems = []
    for size in range(1, MAX_TRACKED + 1):
        for combo in itertools.combinations_with_replacement(programs, size):
            systems.append(_system(_build(builder, combo, base), combo, props, lemmas, templates))

    def key(c):
        return getattr(c, "template", None) or c.name

    alive = set(key(c) for sys in systems for c in sys.cands)
    ctis = {}
    unknown = False
    changed = True
    while changed and not unknown:
        changed = False
        for sys in systems:
            cs = [c for c in sys.cands if key(c) in alive]
            kept, cti, unk = houdini(sys.enc, cs, timer=timer, extra_hyp=sys.hyp)
            if unk:
                unknown = True
                break
            gone = {key(c) for c in cs} - {key(c) for c in kept}
            for c in cs:
                if c.name in cti and c.kind == "property" and c.name not in ctis:
                    ctis[c.name] = (sys, cti[c.name])
            if gone:
                alive -= gone
                changed = True
    results = []
    for p in props:
        if unknown:
            results.append(ProofResult(p, "property", UNKNOWN, timer.elapsed(), detail="solver timeout"))
            continue
        if kinds[p] == "unsupported":
            results.append(ProofResult(p, "property", UNKNOWN, timer.elapsed(),
                                       detail="not of the universal form the cutoff argument needs (S4)"))
            continue
        if kinds[p] == "universal":
            if p in alive:
                results.append(ProofResult(p, "property", PROVED, timer.elapsed(),
                                           detail=f"inductive for every N (cutoff {MAX_TRACKED}, "
                                                  f"{len(systems)} symbolic systems)"))
            else:
                results.append(_cti_result(p, *ctis[p], timer))
            continue
        # implied property: Inv and owner word not "other" => P, in every system
        failed = None
        for sys in systems:
            enc = sys.enc
            s = enc.state("s")
            solver = z3.Solver()
            ms = timer.left_ms()
            if ms is not None:
                solver.set("timeout", ms)
            solver.add(enc.wf(s), sys.hyp(s))
            for lk, o in sys.other.items():
                solver.add(enc.read(s, sys.model.layout.shared_slot(lk)) != o)
            solver.add(*(c.holds(enc, s) for c in sys.cands if key(c) in alive))
            solver.add(enc.bad(s, p))
            r = solver.check()
            if r == z3.sat:
                failed = (sys, enc.decode(solver.model(), s))
                break
            if r == z3.unknown:
                failed = "unknown"
                break
        if failed is None:
            results.append(ProofResult(p, "property", PROVED, timer.elapsed(),
                                       detail=f"implied for every N by the universal invariant "
                                              f"({len(systems)} symbolic systems)"))
        elif failed == "unknown":
            results.append(ProofResult(p, "property", UNKNOWN, timer.elapsed(), detail="solver timeout"))
        else:
            sys, st = failed
            results.append(ProofResult(p, "property", NOT_INDUCTIVE, timer.elapsed(), cti=[(None, st)],
                                       detail=f"not implied by the universal invariant in the system of "
                                              f"{len(sys.programs)} workers"))
    mt = None
    return ParametricResult(results, len(systems), timer.elapsed(), [], mt or 0,
                            detail=f"{len(alive)} invariants kept")


def _cti_result(p, sys, cti, timer):
    from .explorer import Move
    sv, tv, mi = cti
    mv = sys.enc.moves[mi]
    r = ProofResult(p, "property", NOT_INDUCTIVE, timer.elapsed(),
                    cti=[(None, sv), (Move(mv.thread, mv.pc, mv.branch), tv)], breaking=sys.enc.where(mv),
                    thread=mv.thread, detail=f"CTI in the system of {len(sys.programs)} symbolic workers")
    r.model = sys.model
    return r
