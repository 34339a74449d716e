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
      properties) is not put in the inductive set but shown implied by it;
 (S5) thread identities are only compared: ``SelfId`` occurs only as
      ``SelfId + 1`` compared (== / !=) with an owner word, and an owner
      word is read only in such a comparison or one with 0.

Why it is sound.  Let Inv(N) be the universal conjunction, proved inductive
by z3 for the systems of M <= 3 tracked workers -- every multiset of the
spec's worker programs of size 1..3 -- where an owner word is free, holds a
tracked thread's identity + 1, or holds the identity + 1 of one extra
*untracked* thread ("other") that never moves.  By (S5) renaming identities
maps runs to runs, so the tracked threads keep their indices and "other" is
the next one (the result holds for N + non-workers <= 2^(bits-1) - 2 = 126
threads with the model's 8-bit lock word).

 * Base: the initial state of the N-system restricted to any <= 3 workers is
   the initial state of that M-system, and every conjunct reads <= 2
   workers, so Init(N) => Inv(N).
 * Step: suppose s |= Inv(N) and s -> s' by thread k, and a conjunct about
   workers W (|W| <= 2) fails in s'.  Let S = W plus k if k is a worker.
   The projection s|S (shared state, non-workers, workers in S; the lock
   holder, if an untracked worker, is "other") satisfies Inv(|S|), because
   Inv(N) is universal (dropping workers only drops conjuncts).  By (S1) a
   worker k in S makes the same move in the projection; by (S2) a
   non-worker move is enabled in the projection (its guard's conjuncts over
   S are a subset of those over all N workers) and has the same effect; a
   worker outside S cannot be k.  So s|S -> s'|S in the |S|-system, where
   Inv is inductive: the conjunct holds in s'|S, hence in s'.  When N >= 2
   and |S| < 2, S can be padded with any other worker, so the 1-worker
   system is needed only for N = 1 and the 3-worker system only for
   |S| = 3: a conjunct about two workers broken by a step of a third
   (``_obligations``).  (S3) makes "owner word = 0 or some identity + 1"
   true in every reachable N-state.
 * Implied properties: if ``(forall i Q_i) and Q(g) => R(l_i, l_j)`` failed
   in a reachable N-state s, take S = {i, j} plus the lock holder h if it is
   a worker: s|S satisfies Inv(|S|), every Q over S, the owner word names a
   tracked thread or is free, and not R -- contradicting the M-system check
   ``Inv and owner-not-other and Q => R``.

What the argument does not cover: properties that need a count over all
workers (e.g. "the allocator holds exactly the blocks the workers hold");
with the eviction fix the fixed models do not need one.  The lemma
``mask_is_held_blocks`` is such a global fact and is refused here (S4).

Budgets.  Every solver query gets the same budget of z3 resource units
(``rlimit``, ``z3_budget``), never wall time.  The Houdini fixpoint over the
systems is shared by all properties; a candidate whose own query runs out of
budget in some system is dropped from every system (it is then neither a
hypothesis nor an obligation, so what stays is still inductive).  Each
property is then PROVED (kept in the invariant, or implied by it), UNKNOWN (it
was dropped itself, its implication query ran out, or it was refuted only
after a drop: that CTI may need the dropped candidate) or NOT INDUCTIVE.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import z3

from ..model import expr as E
from ..model.manager import Workload
from ..model.program import Model
from .prove import (NOT_INDUCTIVE, PROVED, UNKNOWN, ProofResult, _Clock, candidate_term, candidates, houdini,
                    sample_states)
from .z3_budget import DEFAULT_RLIMIT, Budget, out_of_budget, own_context
from .z3_progress import note_phase, note_settled
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


_OWNER_VALUE = E.Op("+", (E.SelfId(), E.Const(1)))


def _identity_uses(e, owner: set) -> list[str]:
    """(S5) problems: thread identities must be data the model cannot tell
    apart except by equality, so ``SelfId`` may occur only as ``SelfId + 1``
    compared (== / !=) with an owner word, and an owner word only in such a
    comparison or one with 0."""
    if isinstance(e, E.Op) and e.op in ("==", "!=") and len(e.args) == 2:
        a, b = e.args
        for x, y in ((a, b), (b, a)):
            if isinstance(x, E.Var) and x.name in owner and (
                    (isinstance(y, E.Const) and y.value == 0) or y == _OWNER_VALUE):
                return []
    if isinstance(e, E.Var) and e.name in owner:
        return [f"reads owner word {e.name} other than by == / != with 0 or SelfId + 1 (S5)"]
    if isinstance(e, E.SelfId):
        return ["uses SelfId other than as SelfId + 1 compared with an owner word (S5)"]
    out = []
    for c in E.children(e):
        out += _identity_uses(c, owner)
    return out


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
                for target, v in br.updates:
                    if not (isinstance(target, E.Var) and target.name in owner):
                        probs += [f"{where} branch {bi} update of {getattr(target, 'name', target)}: {p}"
                                  for p in _identity_uses(v, owner)]
                probs += [f"{where} branch {bi} guard: {p}" for p in _identity_uses(br.guard, owner)]
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
                probs += [f"{where} assertion {p}: {x}" for x in _identity_uses(a, owner)]
                if t in workers and {r[1] for r in _reads(a) if r[0] == "thread" and r[1] not in (None, t)}:
                    probs.append(f"{where} assertion {p}: a worker assertion reads another thread (S1)")
                if t not in workers and _workers_read(a, workers, t):
                    probs.append(f"{where} assertion {p}: a non-worker assertion reads worker state (S2)")
    for name, p in model.properties.items():
        if p.expr is not None:
            probs += [f"property {name}: {x}" for x in _identity_uses(p.expr, owner)]
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
    hyp: object          # s -> z3 Bool: every owner word free, a tracked thread + 1 or "other" + 1
    other: dict          # owner var -> z3 term of "other"'s identity + 1


@dataclass
class ParametricResult:
    results: list                       # ProofResult per property
    systems: int = 0
    seconds: float = 0.0
    refused: list = field(default_factory=list)   # side-condition problems (then nothing is proved)
    detail: str = ""


def _build(builder, programs, base: Workload):
    wl = Workload(workers=[list(p) for p in programs], error_injectors=base.error_injectors,
                  recoverers=base.recoverers, stats_readers=base.stats_readers, shutdown=base.shutdown,
                  worker_loop=base.worker_loop)
    return builder(wl)


HARVEST = 1000          # states explored from each solver CTI for more CTIs (``cti_harvest``)
MINE_STATES = 50_000    # breadth-first and depth-first states per mined configuration


def _mine(builder, stress_builder, programs, base) -> list:
    """Candidate templates from every pair of worker programs beside the
    spec's non-workers, on the spec's allocator and (``stress_builder``) on a
    one-unit allocator where allocations fail and the retry path runs out.
    Breadth-first states give the early interleavings, depth-first ones the
    late pcs (the final -ENOMEM) a capped breadth-first search never reaches.
    Guesses only: what is not inductive is removed by the solver."""
    from ..model.lemmas import mine
    out = []
    for combo in itertools.combinations_with_replacement(programs, 2):
        for b in (builder, stress_builder):
            if b is None:
                continue
            m = _build(b, combo, base)
            out += mine(m, sample_states(m, limit=MINE_STATES, dfs=MINE_STATES))
    return list(dict.fromkeys(out))


def _obligations(sys) -> dict:
    """Which steps and which candidates the system of ``sys`` must check.

    The cutoff argument needs the system of |S| workers, S = the workers a
    broken conjunct reads plus the mover.  Up to two workers (padded with
    any other worker when N >= 2) the 1- and 2-worker systems check every
    candidate against every step.  The 3-worker system is needed only when S
    has three workers: a conjunct about two workers broken by a third, so
    there only worker steps are checked, and only candidates reading two
    workers are goals (the rest are hypotheses)."""
    if len(sys.programs) < MAX_TRACKED:
        return {}
    m = sys.model
    workers = {t for t, th in enumerate(m.threads) if th.program.role == "worker"}

    def pair(c):
        if c.expr is not None:
            return len(_workers_read(c.expr, workers, c.tid)) >= 2
        p = m.properties.get(c.name)
        return p is not None and p.expr is not None and len(_workers_read(p.expr, workers)) >= 2
    return {"moves": [mv for mv in sys.enc.moves if mv.thread in workers], "goal": pair}


def _system(model: Model, programs, props, lemmas, templates) -> System:
    # (S5) makes identities interchangeable, so the tracked threads keep their indices and "other" (an
    # untracked holder of a lock) is the next one: no symbolic identities for the solver to reason about
    n = len(model.threads)
    owner = [d for d in model.shared if d.kind == "owner"]
    enc = Encoder(model)
    others = {}

    def hyp(s):
        out = []
        for d in owner:
            v = enc.read(s, model.layout.shared_slot(d.name))
            out.append(z3.And(v >= 0, v <= n + 1))
        return z3.And(out) if out else z3.BoolVal(True)
    for d in owner:
        others[d.name] = z3.BitVecVal(n + 1, 64)
    cands = candidates(model, props, lemmas, templates)
    cands = [c for c in cands if not c.name.startswith("owner_range:")]
    return System(tuple(programs), model, enc, cands, hyp, others)


def prove_any_workers(builder, base: Workload, properties, *, lemmas=("auto", "mask_conflict_free",
                      "held_blocks_distinct", "held_blocks_in_mask"), rlimit: int | None = DEFAULT_RLIMIT,
                      budget: Budget | None = None, stress_builder=None, templates=None,
                      kept_out: list | None = None) -> ParametricResult:
    """``builder(workload) -> Model`` builds the spec's model for a workload;
    ``base`` is the spec's workload (its worker programs and non-workers).
    Every solver query gets ``rlimit`` resource units (``budget``, if given,
    instead); the proof runs in a z3 context of its own.  ``templates`` (a
    certificate) replaces mining; ``kept_out`` receives the templates kept."""
    budget = budget if budget is not None else Budget(rlimit)
    with own_context():
        return _prove_any_workers(builder, base, properties, lemmas, budget, stress_builder, templates, kept_out)


@dataclass
class Setting:
    """What the cutoff proof is about: the properties it checks and how (``classify``), the systems of 1 to
    MAX_TRACKED tracked workers with their candidates, or why the argument is refused."""
    props: list
    kinds: dict
    universal: list
    systems: list
    refused: list
    templates: list | None = None      # the mined (or certified) candidates' templates


def key(c):
    """A candidate's group across the systems: its template (a mined invariant), else its name."""
    return getattr(c, "template", None) or c.name


def setting(builder, base, properties, lemmas, budget, stress_builder=None, templates=None) -> Setting:
    note_phase(budget, "side conditions of the cutoff argument")
    programs = list(dict.fromkeys(tuple(tuple(op) for op in w) for w in base.workers))
    m3 = _build(builder, [programs[0]] * MAX_TRACKED, base)
    probs = side_conditions(m3)
    props = [p for p in (properties or list(m3.properties))
             if p in m3.properties and m3.properties[p].kind in ("invariant", "assertion", "final")]
    from ..model.lemmas import lemma_expr
    workers3 = {t for t, th in enumerate(m3.threads) if th.program.role == "worker"}
    for lm in lemmas:
        if lm != "auto" and any(len(_workers_read(c, workers3)) > 2 for c in _conjuncts(lemma_expr(m3, lm))):
            probs.append(f"lemma {lm}: a conjunct reads more than two workers at once (S4)")
    kinds = {p: classify(m3, p) for p in props}
    universal = [p for p in props if kinds[p] == "universal"]
    if probs:
        return Setting(props, kinds, universal, [], probs, templates)
    if "auto" in lemmas and templates is None:
        note_phase(budget, "mining candidate invariants from reachable states (explorer)")
        templates = _mine(builder, stress_builder, programs, base)
    elif "auto" not in lemmas:
        templates = None
    systems = []
    for size in range(1, MAX_TRACKED + 1):
        for combo in itertools.combinations_with_replacement(programs, size):
            note_phase(budget, f"encoding the system of {size} worker(s) for z3")
            systems.append(_system(_build(builder, combo, base), combo, universal, lemmas, templates))
    return Setting(props, kinds, universal, systems, [], templates)


def _prove_any_workers(builder, base, properties, lemmas, budget, stress_builder, templates=None, kept_out=None):
    clock = _Clock()
    st = setting(builder, base, properties, lemmas, budget, stress_builder, templates)
    props, kinds, systems, templates = st.props, st.kinds, st.systems, st.templates
    if st.refused:
        return ParametricResult([ProofResult(p, "property", UNKNOWN, 0.0, detail="cutoff argument refused")
                                 for p in props], refused=st.refused, detail="side conditions fail")
    alive = set(key(c) for sys in systems for c in sys.cands)
    ctis = {}
    starved = set()         # keys dropped because their own query ran out of budget (in some system)
    weakened = set()        # properties refuted only after something was starved
    changed = True
    # the two-worker systems first: they carry almost every obligation and remove most wrong guesses
    order = sorted(systems, key=lambda sy: (len(sy.programs) != 2, len(sy.programs)))
    settled = {}        # system -> the alive set it last found inductive (no need to ask again)
    while changed:
        changed = False
        for sys in order:
            if settled.get(id(sys)) == alive:
                continue
            cs = [c for c in sys.cands if key(c) in alive]
            was_starved = bool(starved)
            hr = houdini(sys.enc, cs, budget=budget, extra_hyp=sys.hyp, key=key, harvest=HARVEST,
                         **_obligations(sys))
            starved |= {key(c) for c in cs if c.name in hr.starved}
            gone = {key(c) for c in cs} - {key(c) for c in hr.kept}
            for c in cs:
                if c.name in hr.ctis and c.kind == "property" and c.name not in ctis:
                    ctis[c.name] = (sys, hr.ctis[c.name])
                    if was_starved or c.name in hr.weakened:
                        weakened.add(c.name)
            if gone:
                alive -= gone
                changed = True
            settled[id(sys)] = set(alive)
            note_settled(budget, sum(settled.get(id(sy)) == alive for sy in systems), len(systems),
                         "systems inductive")
    if kept_out is not None and templates:
        kept_out.extend(t for t in templates if t in alive)
    results = []
    scope = f"{len(systems)} systems of 1-{MAX_TRACKED} workers"
    for p in props:
        note_settled(budget, len(results), len(props))
        if kinds[p] == "unsupported":
            results.append(ProofResult(p, "property", UNKNOWN, clock.elapsed(),
                                       detail="not of the universal form the cutoff argument needs (S4)"))
            continue
        if kinds[p] == "universal":
            if p in alive:
                results.append(ProofResult(p, "property", PROVED, clock.elapsed(),
                                           detail=f"inductive for every N (cutoff {MAX_TRACKED}, {scope})"))
            elif p in starved:
                results.append(ProofResult(p, "property", UNKNOWN, clock.elapsed(),
                                           detail=f"induction step {out_of_budget(budget)}"))
            else:
                r = _cti_result(p, *ctis[p], clock)
                if p in weakened:
                    r.verdict = UNKNOWN
                    r.detail = (f"refuted only after {len(starved)} candidate(s) were dropped "
                                f"{out_of_budget(budget)}; {r.detail}")
                results.append(r)
            continue
        # implied property: Inv and owner word not "other" => P, in every system
        failed = None
        for sys in systems:
            enc = sys.enc
            s = enc.state("s")
            solver = z3.Solver()
            solver.add(*implication_query(sys, p, s, [candidate_term(enc, c, s, "s") for c in sys.cands
                                                      if key(c) in alive]))
            r = budget.check(solver, what=f"{p} implied in the system of {len(sys.programs)} workers")
            if r == z3.sat:
                failed = (sys, enc.decode(solver.model(), s))
                break
            if r == z3.unknown:
                failed = "unknown"
                break
        if failed is None:
            results.append(ProofResult(p, "property", PROVED, clock.elapsed(),
                                       detail=f"implied for every N by the universal invariant ({scope})"))
        elif failed == "unknown":
            results.append(ProofResult(p, "property", UNKNOWN, clock.elapsed(),
                                       detail=f"implication {out_of_budget(budget)}"))
        elif starved:
            sys, st = failed
            results.append(ProofResult(p, "property", UNKNOWN, clock.elapsed(), cti=[(None, st)],
                                       detail=f"not implied by the universal invariant in the system of "
                                              f"{len(sys.programs)} workers after {len(starved)} candidate(s) "
                                              f"were dropped {out_of_budget(budget)}"))
        else:
            sys, st = failed
            results.append(ProofResult(p, "property", NOT_INDUCTIVE, clock.elapsed(), cti=[(None, st)],
                                       detail=f"not implied by the universal invariant in the system of "
                                              f"{len(sys.programs)} workers"))
    note_settled(budget, len(results), len(props))
    return ParametricResult(results, len(systems), clock.elapsed(), [],
                            detail=f"{len(alive)} invariants kept" + (f", {len(starved)} dropped out of budget"
                                                                      if starved else ""))


def implication_query(sys, p, s, invariant: list) -> list:
    """The query that refutes the implied property ``p`` in ``sys`` when sat: a well-formed state ``s``
    satisfying ``invariant`` (terms over ``s``) whose owner words name no untracked thread, where ``p``
    fails."""
    enc = sys.enc
    out = [enc.wf(s), sys.hyp(s)]
    out += [enc.read(s, sys.model.layout.shared_slot(lk)) != o for lk, o in sys.other.items()]
    return out + list(invariant) + [enc.bad(s, p)]


def _cti_result(p, sys, cti, clock):
    from .explorer import Move
    sv, tv, mi = cti
    mv = sys.enc.moves[mi]
    r = ProofResult(p, "property", NOT_INDUCTIVE, clock.elapsed(),
                    cti=[(None, sv), (Move(mv.thread, mv.pc, mv.branch), tv)], breaking=sys.enc.where(mv),
                    thread=mv.thread, detail=f"CTI in the system of {len(sys.programs)} tracked workers")
    r.model = sys.model
    return r


def prove_spec_any_workers(spec, properties=None, lemmas=None, rlimit: int | None = None,
                           budget: Budget | None = None, templates=None,
                           kept_out: list | None = None) -> ParametricResult:
    """``prove --any-workers`` for a loaded spec: its model options, allocator and
    non-workers, every number of workers running its worker programs.  Budget
    per query: ``budget``, else ``rlimit``, else the spec's ``[prove] rlimit``,
    else ``DEFAULT_RLIMIT``."""
    p = spec.prove or {}
    if budget is None:
        budget = Budget(rlimit or p.get("rlimit", DEFAULT_RLIMIT))
    builder, stress, props, lemmas = spec_arguments(spec, properties, lemmas)
    return prove_any_workers(builder, spec.workload, props, lemmas=lemmas, budget=budget, templates=templates,
                             kept_out=kept_out, stress_builder=stress)


def spec_arguments(spec, properties=None, lemmas=None):
    """(builder, stress builder, properties, lemmas) of ``prove_any_workers`` for a spec: every number of
    workers under the spec's configuration (its retry count too), only the workload varies."""
    from dataclasses import replace

    from ..model.lemmas import DEFAULT
    model = spec.build()
    if model.geometry.windowed:
        raise CutoffError("allocator.size: --any-workers needs an explicit allocator (a window sized for this "
                          "workload cannot bound every number of workers); use a size the explorer models in full")
    lemmas = [x for x in (lemmas or (spec.prove or {}).get("lemmas", DEFAULT)) if x != "mask_is_held_blocks"]
    cfg = spec.run_config
    return (lambda wl: cfg.with_workload(wl).build(spec.name),
            lambda wl: replace(cfg, size=1).with_workload(wl).build(spec.name),
            properties or spec.checked_properties(model), lemmas)
