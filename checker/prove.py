"""Inductive proofs of safety properties on the z3 translation of a model.

For a set C of state predicates (the properties to prove plus the lemmas of
``model/lemmas.py`` named by the spec):

* base case: the initial state satisfies every member of C;
* induction step: ``wf(s) and AND C(s) and T(s, s') and not c(s')`` is
  unsatisfiable for every c in C.

C is pruned Houdini-style: a member whose step fails is removed (with the
counterexample to induction, CTI, that refuted it) and the rest re-checked,
until what remains is inductive.  Every remaining member is PROVED: it holds
initially and the conjunction is closed under every transition, so it holds in
every reachable state.  A removed property is then

* VIOLATED when bounded model checking finds a real path to a violation
  (up to ``bmc_depth``), with that trace;
* PROVED by k-induction when ``k > 1`` and the k-step induction succeeds
  (states s0..sk linked by T, the property and C on s0..s(k-1), not on sk),
  together with a k-1 deep BMC base case;
* NOT INDUCTIVE otherwise, with its CTI: a pair of states (s, s'), s
  satisfying every hypothesis, s' violating the property, and the (thread,
  step, branch) move between them;
* UNKNOWN when a query about it runs out of its budget.

Budgets are z3 resource units per query (``z3_budget``: ``rlimit``), never
wall time, so a verdict is the same on a loaded machine as on an idle one.  A
Houdini round whose query runs out of budget is split in halves until each
query either finds a CTI, is unsat, or is about one member alone; a member
whose own query runs out is dropped from C (UNKNOWN, "out of budget") and the
rest goes on, so the properties that do not need it are still PROVED.  A
property refuted only after such a drop is reported UNKNOWN as well: its CTI
may be an artefact of the missing member.

A property kind the solver cannot state (liveness) is refused with an error.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import z3

from ..model import interpret
from ..model.program import Model
from .explorer import Move
from .z3_budget import DEFAULT_RLIMIT, Budget, out_of_budget, own_context
from .z3_progress import note_phase, note_settled
from .z3_encode import EncodeError, Encoder, substitution

PROVED, NOT_INDUCTIVE, VIOLATED, UNKNOWN = "PROVED", "NOT INDUCTIVE", "VIOLATED", "UNKNOWN"


@dataclass
class ProofResult:
    name: str
    kind: str                              # property | lemma
    verdict: str
    seconds: float = 0.0
    cti: list = field(default_factory=list)      # [(Move | None, state)]: s then s' (k+1 states for k-induction)
    breaking: str = ""                     # "thread <name> step <label> branch <b>"
    trace: list = field(default_factory=list)    # VIOLATED: real path from the initial state
    thread: int | None = None
    k: int = 1
    detail: str = ""


class Candidate:
    """A member of C: a property name or a lemma (name, expr)."""

    def __init__(self, name, kind, holds, expr=None, tid=None):
        self.name, self.kind, self.holds = name, kind, holds   # holds(enc, s) -> z3 Bool
        self.expr, self.tid = expr, tid     # the same predicate as a model expression (None: a property)


def owner_candidate(model: Model) -> list:
    """Every owner word (lock) is free or holds some thread's identity + 1
    (the only values the builder's acquire and release store)."""
    out = []
    for d in model.shared:
        if d.kind != "owner":
            continue
        k = model.layout.shared_slot(d.name)

        def holds(enc, s, k=k):
            v = enc.read(s, k)
            return z3.Or([v == 0] + [v == enc.read_store(k, i + 1) for i in enc.ids])
        out.append(Candidate(f"owner_range:{d.name}", "lemma", holds))
    return out


def sample_states(model: Model, limit: int = 3_000_000, dfs: int = 0):
    """Reachable states of ``model`` for mining candidates: the first
    ``limit`` states of the explorer's breadth-first search (one per symmetry
    orbit: mined templates are per thread program, so a representative gives
    the templates of its whole orbit), plus the first ``dfs`` states of a
    depth-first search, which reach the deep states (retries run out late) a
    capped breadth-first search misses.  Only a source of guesses: the proof
    never trusts them."""
    from .explorer import explore
    states = list(explore(model, keep_graph=True, deadlock=False, max_states=limit, symmetry=True).graph[0])
    if dfs:
        states += list(explore(model, keep_graph=True, deadlock=False, max_states=dfs, symmetry=True,
                               strategy="dfs").graph[0])
    return states


def mined_candidates(model: Model, templates) -> list:
    from ..model.lemmas import instantiate
    out = []
    for i, (tp, e, _threads, tid) in enumerate(instantiate(model, templates)):
        out.append(Candidate(f"auto:{tp[0]}#{i}", "auto",
                             lambda enc, s, e=e, tid=tid, i=i: enc.cond(e, s, tid, f"mined lemma {i}"), e, tid))
        out[-1].template = tp
    return out


def candidates(model: Model, properties=None, lemmas=(), templates=None) -> list[Candidate]:
    """Properties, named lemmas, and (lemma "auto") mined candidates."""
    from ..model.lemmas import lemma_expr
    out = []
    for p in (properties if properties is not None else list(model.properties)):
        if p not in model.properties:
            raise EncodeError(f"property {p}", "unknown property")
        if model.properties[p].kind not in ("invariant", "assertion", "final"):
            continue
        out.append(Candidate(p, "property", lambda enc, s, p=p: enc.holds(s, p)))
    for name in lemmas:
        if name == "auto":
            out += owner_candidate(model)
            if templates is None:
                from ..model.lemmas import mine
                templates = mine(model, sample_states(model))
            out += mined_candidates(model, templates)
            continue
        e = lemma_expr(model, name)
        out.append(Candidate(name, "lemma", lambda enc, s, e=e, name=name: enc.expr_holds(s, e, f"lemma {name}"), e))
    return out


class _Clock:
    """Wall time, for reporting only: no budget and no verdict reads it."""

    def __init__(self):
        self.t0 = time.perf_counter()

    def elapsed(self):
        return round(time.perf_counter() - self.t0, 3)


def candidate_term(enc: Encoder, c, st, tag: str):
    """``c.holds(enc, st)``, built once per encoder: the state named ``tag``
    ("s", "t", "i") is the same z3 constants in every query on that encoder.
    Only the term over the first state asked for is built in Python; the others
    are z3's substitution of one state's constants for another's (a candidate
    reads nothing but its state), several times faster than building it again."""
    cache = enc.__dict__.setdefault("_candidate_terms", {})
    if (c, tag) not in cache:
        src = cache.setdefault("_source", (tag, st))
        if src[0] == tag:
            cache[(c, tag)] = c.holds(enc, st)
        else:
            sub = cache.get(("_substitute", tag))
            if sub is None:
                sub = cache[("_substitute", tag)] = substitution(src[1], st)
            cache[(c, tag)] = sub(candidate_term(enc, c, src[1], src[0]))
    return cache[(c, tag)]


def goal_groups(cands, key, goal=None) -> dict:
    """key -> the first candidate of its group whose preservation is checked (``goal``: default all); under
    a symmetric key one instance stands for its group (``houdini``)."""
    out = {}
    for c in cands:
        if goal is None or goal(c):
            out.setdefault(key(c), c)
    return out


@dataclass
class HoudiniResult:
    kept: list                 # the inductive subset
    ctis: dict                 # name -> (s, s', move index) that removed it
    starved: list              # names dropped because their own query ran out of budget
    weakened: set              # names removed by a CTI found after some member was starved


def houdini(enc: Encoder, cands: list, *, budget: Budget, extra_hyp=None, key=None, harvest: int = 0, moves=None,
            goal=None) -> HoudiniResult:
    """Prune ``cands`` to an inductive subset.

    One query per round asks whether any kept member fails after a step; the
    members false in the model's s' are removed (each with that CTI).  A
    query out of ``budget`` is split in halves of its goals until each part
    is unsat, finds a CTI, or is one goal alone that still runs out: that
    goal's members are dropped (``starved``) and the next round goes on
    without them.  What is kept at the end is inductive whatever was dropped
    (dropping a member only removes a hypothesis and its obligation).

    ``key`` (candidate -> hashable) groups the instances of one symmetric
    template: when the model and the candidate set are symmetric under
    permuting the threads of a group, an instance is inductive exactly when
    every instance of its group is, so only the first instance of each group
    is a goal (all stay hypotheses) and a failing goal removes its group.

    ``harvest`` > 0: from each solver CTI, explore that many states
    explicitly for more CTIs (``cti_harvest``), so one solver call can remove
    many candidates.

    ``moves`` (default: all) restricts the steps checked and ``goal``
    (candidate -> bool, default: all) the candidates whose preservation is
    checked; the others are only hypotheses.  Sound only when a caller's
    argument covers the rest elsewhere (the parametric proof does)."""
    s, t = enc.state("s"), enc.state("t")
    sel = enc.selector("sel")
    base = [enc.wf(s), enc.trans(s, t, sel, moves=moves)]
    if extra_hyp is not None:
        base.append(extra_hyp(s))
    key = key or (lambda c: c.name)
    pre = {c.name: candidate_term(enc, c, s, "s") for c in cands}
    goals = goal_groups(cands, key, goal)
    post = {k: candidate_term(enc, c, t, "t") for k, c in goals.items()}
    kept = list(cands)
    ctis = {}
    starved: list = []
    weakened: set = set()
    view = None
    if harvest:
        from .cti_harvest import ConcreteView, harvest as explore_ctis
        index = {c.name: i for i, c in enumerate(cands)}
        key_of = [key(c) for c in cands]
        move_index = {(mv.thread, mv.pc, mv.branch): mv.index for mv in enc.moves}

    def search(ks, hyps):
        """(a z3 model of a CTI, []) | (None, goals whose lone query ran out of budget); (None, []): unsat."""
        # a fresh solver per query: z3's incremental mode (push/pop, assumptions, adding after a check) is
        # an order of magnitude slower on these bit-vector queries
        solver = z3.Solver()
        solver.add(*base, *hyps)
        solver.add(z3.Or([z3.Not(post[k]) for k in ks]))
        r = budget.check(solver, what=f"houdini: {len(ks)} goal(s), {len(hyps)} hypotheses")
        if r == z3.unsat:
            return None, []
        if r == z3.sat:
            return solver.model(), []
        if len(ks) == 1:
            return None, list(ks)
        half = len(ks) // 2
        m, lost = search(ks[:half], hyps)
        if m is not None:
            return m, []
        m, lost2 = search(ks[half:], hyps)
        if m is not None:
            return m, []
        return None, lost + lost2

    while kept:
        keys = [k for k in dict.fromkeys(key(c) for c in kept) if k in post]
        if not keys:
            break
        m, lost = search(keys, [pre[c.name] for c in kept])
        if m is None and not lost:
            break
        if m is None:
            lost = set(lost)
            starved += [c.name for c in kept if key(c) in lost]
            kept = [c for c in kept if key(c) not in lost]
            continue
        sv, tv = enc.decode(m, s), enc.decode(m, t)
        if harvest and view is None:     # compiled at the first CTI: a checked certificate has none
            view = ConcreteView(enc.model, cands)
        kept_idx = {index[c.name] for c in kept} if view is not None else set()
        mi = m.eval(sel, model_completion=True).as_long()
        found = {}
        if view is not None:    # the compiled predicates judge s' far faster than evaluating each term in z3
            for i in view.failing(tv):
                if key_of[i] in post and key_of[i] not in found and i in kept_idx:
                    found[key_of[i]] = (sv, tv, mi)
        if not found:
            found = {k: (sv, tv, mi) for k in keys if z3.is_false(m.eval(post[k], model_completion=True))}
        if view is not None:
            alive_idx = {i for i in kept_idx if key_of[i] not in found}
            for k, c3 in explore_ctis(view, sv, alive_idx, key_of, move_index, harvest).items():
                found.setdefault(k, c3)
        for c in kept:
            if key(c) in found:
                ctis[c.name] = found[key(c)]
                if starved:
                    weakened.add(c.name)
        kept = [c for c in kept if key(c) not in found]
    return HoudiniResult(kept, ctis, starved, weakened)


def k_induction_step(enc: Encoder, cand, hyps: list, k: int, budget: Budget):
    """sat/unsat/unknown of: s0..sk linked by T, cand and hyps on s0..s(k-1), not cand on sk.
    Returns (verdict, path or None)."""
    S = [enc.state(f"k{i}") for i in range(k + 1)]
    sels = [enc.selector(f"ksel{i}") for i in range(k)]
    solver = z3.Solver()
    for i in range(k):
        solver.add(enc.wf(S[i]), cand.holds(enc, S[i]), *(h.holds(enc, S[i]) for h in hyps))
        solver.add(enc.trans(S[i], S[i + 1], sels[i]))
    solver.add(z3.Not(cand.holds(enc, S[k])))
    r = budget.check(solver, what=f"{k}-induction step of {cand.name}")
    if r == z3.unsat:
        return "unsat", None
    if r == z3.unknown:
        return "unknown", None
    m = solver.model()
    path = [(None, enc.decode(m, S[0]))]
    for i in range(k):
        mv = enc.moves[m.eval(sels[i], model_completion=True).as_long()]
        path.append((Move(mv.thread, mv.pc, mv.branch), enc.decode(m, S[i + 1])))
    return "sat", path


def _init_check(cand, enc, budget: Budget):
    """unsat (the initial state satisfies ``cand``), sat or unknown."""
    s = enc.state("i")
    solver = z3.Solver()
    solver.add(enc.init(s), z3.Not(cand.holds(enc, s)))
    return budget.check(solver, what=f"base case of {cand.name}")


def _init_checks(cands, enc, budget: Budget) -> dict:
    """``_init_check`` of every candidate, by name: one query for a group whose members all hold initially
    (mined and certified candidates nearly always do), halved where one does not or the query runs out of
    budget, down to the members alone -- the same answers as one query each, in a few queries."""
    s = enc.state("i")
    init = enc.init(s)
    terms = {c.name: candidate_term(enc, c, s, "i") for c in cands}
    out = {}

    def check(group):
        if len(group) == 1:
            out[group[0].name] = _init_check(group[0], enc, budget)
            return
        solver = z3.Solver()
        solver.add(init, z3.Or([z3.Not(terms[c.name]) for c in group]))
        if budget.check(solver, what=f"base case of {len(group)} candidates") == z3.unsat:
            out.update((c.name, z3.unsat) for c in group)
            return
        half = len(group) // 2
        check(group[:half])
        check(group[half:])
    if cands:
        check(list(cands))
    return out


def prove(model: Model, properties=None, lemmas=(), *, k: int = 1, rlimit: int | None = DEFAULT_RLIMIT,
          bmc_depth: int = 8, encoder: Encoder | None = None, templates=None,
          budget: Budget | None = None, kept_out: list | None = None) -> list[ProofResult]:
    """Prove each safety property of ``properties`` (default: all the model's);
    ``lemmas``: names from ``model.lemmas`` that strengthen the induction.
    Every solver query (the BMC of a refuted property's too) gets ``rlimit``
    resource units (``budget``, if given, instead; it logs what each query
    used).  Without ``encoder`` the proof runs in a z3 context of its own.

    ``templates``: the mined candidates' templates to use instead of mining (a
    certificate, ``checker/certificate.py``); ``kept_out`` receives the
    templates of the mined candidates the proof kept."""
    budget = budget if budget is not None else Budget(rlimit)
    note_phase(budget, "encoding the model for z3")
    if encoder is not None:
        return _prove(model, properties, lemmas, k, bmc_depth, encoder, templates, budget, kept_out)
    with own_context():
        return _prove(model, properties, lemmas, k, bmc_depth, Encoder(model), templates, budget, kept_out)


def _prove(model, properties, lemmas, k, bmc_depth, enc, templates, budget, kept_out=None):
    clock = _Clock()
    note_phase(budget, "mining candidate invariants from reachable states (explorer)"
               if "auto" in lemmas and templates is None else "building candidates")
    cands = candidates(model, properties, lemmas, templates)
    results = {}
    order = [c.name for c in cands if c.kind != "auto"]
    props = [c.name for c in cands if c.kind == "property"]

    def settled():
        note_settled(budget, sum(1 for n in props if n in results), len(props))
    settled()
    # base case
    base = _init_checks(cands, enc, budget)
    init_bad = [c for c in cands if base[c.name] != z3.unsat]
    for c in init_bad:
        if c.kind == "auto":
            continue
        if base[c.name] == z3.unknown:
            results[c.name] = ProofResult(c.name, c.kind, UNKNOWN, clock.elapsed(),
                                          detail=f"base case {out_of_budget(budget)}")
            continue
        init = model.initial_state()
        results[c.name] = ProofResult(c.name, c.kind, VIOLATED, clock.elapsed(), trace=[(None, init)],
                                      detail="the initial state violates it")
    settled()
    live = [c for c in cands if c not in init_bad]
    hr = houdini(enc, live, budget=budget)
    kept, ctis = hr.kept, hr.ctis
    if kept_out is not None:
        kept_out.extend(c.template for c in kept if c.kind == "auto")
    n_auto = sum(1 for c in kept if c.kind == "auto")
    for c in kept:
        results[c.name] = ProofResult(c.name, c.kind, PROVED, clock.elapsed(),
                                      detail=f"inductive together with {len(kept) - 1 - n_auto} other properties/lemmas and "
                                             f"{n_auto} mined invariants"
                                      if len(kept) > 1 else "inductive")
    for name in hr.starved:
        c = next(x for x in live if x.name == name)
        if c.kind == "auto":
            continue
        res = ProofResult(name, c.kind, UNKNOWN, clock.elapsed(), detail=f"induction step {out_of_budget(budget)}")
        if c.kind == "property":        # a real violation is a verdict whatever the induction could not settle
            _try_violation(model, name, res, bmc_depth, budget)
        results[name] = res
    settled()
    for c in live:
        if c.name not in ctis or c.kind == "auto":
            continue
        sv, tv, mi = ctis[c.name]
        mv = enc.moves[mi]
        res = ProofResult(c.name, c.kind, NOT_INDUCTIVE, clock.elapsed(),
                          cti=[(None, sv), (Move(mv.thread, mv.pc, mv.branch), tv)],
                          breaking=enc.where(mv), thread=mv.thread)
        if c.kind == "property":
            _try_violation(model, c.name, res, bmc_depth, budget)
        if res.verdict == NOT_INDUCTIVE and k > 1:
            verdict, path = k_induction_step(enc, c, kept, k, budget)
            if verdict == "unsat":
                from .bmc import NO_VIOLATION, bmc
                if c.kind == "lemma":
                    base_ok = _lemma_holds_on_paths(c, enc, k - 1, budget)
                else:
                    b = bmc(model, k - 1, properties=[c.name], deadlock=False, budget=budget)
                    base_ok = "yes" if b.verdict == NO_VIOLATION else "unknown" if b.verdict == "UNKNOWN" else "no"
                if base_ok == "yes":
                    res.verdict, res.k, res.cti, res.breaking = PROVED, k, [], ""
                    res.detail = f"{k}-induction (base: no violation on paths of length < {k})"
                elif base_ok == "unknown":
                    res.verdict, res.detail = UNKNOWN, f"base case of {k}-induction {out_of_budget(budget)}"
            elif verdict == "sat":
                last = path[-1][0]
                mv = enc.moves[[m.index for m in enc.moves
                                if (m.thread, m.pc, m.branch) == (last.thread, last.pc, last.branch)][0]]
                res.cti, res.k, res.breaking, res.thread = path, k, enc.where(mv), mv.thread
                res.detail = f"not {k}-inductive"
            else:
                res.verdict, res.detail = UNKNOWN, f"{k}-induction step {out_of_budget(budget)}"
        if res.verdict == NOT_INDUCTIVE and c.name in hr.weakened:
            res.verdict = UNKNOWN
            res.detail = (f"refuted only after {len(hr.starved)} member(s) were dropped {out_of_budget(budget)} "
                          f"({res.breaking} breaks it without them)" + (f"; {res.detail}" if res.detail else ""))
        res.seconds = clock.elapsed()
        results[c.name] = res
        settled()
    return [results[n] for n in order if n in results]


def _lemma_holds_on_paths(cand, enc, depth, budget):
    """Base case of k-induction for a lemma: "yes" if it holds on every path of length <= depth, "no", or
    "unknown" (a query out of budget)."""
    S = [enc.state(f"b{i}") for i in range(depth + 1)]
    solver = z3.Solver()
    solver.add(enc.init(S[0]))
    for i in range(depth):
        solver.add(enc.trans(S[i], S[i + 1]))
    out = "yes"
    for i in range(depth + 1):
        solver.push()
        solver.add(z3.Not(cand.holds(enc, S[i])))
        r = budget.check(solver, what=f"k-induction base of {cand.name} at depth {i}")
        solver.pop()
        if r == z3.sat:
            return "no"
        if r == z3.unknown:
            out = "unknown"
    return out


def _try_violation(model, prop, res, depth, budget):
    from .bmc import UNKNOWN as BMC_UNKNOWN, VIOLATION, bmc
    if depth <= 0:
        return
    b = bmc(model, depth, properties=[prop], deadlock=False, budget=budget)
    if b.verdict == VIOLATION:
        res.verdict, res.trace, res.thread = VIOLATED, b.path, b.thread
        res.detail = f"violated at depth {b.depth} (a path of {b.depth} steps, bounded model checking)"
    elif b.verdict == BMC_UNKNOWN:
        res.detail = (f"{res.detail}; " if res.detail else "") + \
            f"BMC for a real violation {out_of_budget(budget)} at depth {b.depth}"


def cti_trace(model: Model, res: ProofResult, *, spec: str, source: str) -> dict:
    """The CTI as an ITF trace of its states (backend ``z3-cti``)."""
    from .trace import to_itf
    return to_itf(model, res.cti, spec=spec, source=source, verdict="NOT INDUCTIVE", prop=res.name if res.kind ==
                  "property" else None, thread=res.thread, backend="z3-cti",
                  detail=f"counterexample to induction of {res.kind} {res.name}: {res.breaking} breaks it",
                  extra={"cti": True, "breaking": res.breaking, "k": res.k, "lemma": res.name if res.kind == "lemma"
                         else None})


def violation_trace(model: Model, res: ProofResult, *, spec: str, source: str) -> dict:
    from .trace import to_itf
    return to_itf(model, res.trace, spec=spec, source=source, verdict="VIOLATION", prop=res.name,
                  thread=res.thread, backend="bmc")


def check_cti(model: Model, res: ProofResult) -> bool:
    """The CTI's last move is a real move of the interpreter from its previous state."""
    for i in range(1, len(res.cti)):
        mv, s = res.cti[i]
        prev = res.cti[i - 1][1]
        if not any((t, pc, b, n) == (mv.thread, mv.pc, mv.branch, s) for t, pc, b, n in interpret.successors(model, prev)):
            return False
    return True


def prove_spec(spec, *, k: int | None = None, rlimit: int | None = None, bmc_depth: int | None = None,
               budget: Budget | None = None, progress=None, templates=None, kept_out: list | None = None):
    """Run ``prove`` as a spec's ``[prove]`` table configures it (for ``make
    check`` to show beside the explorer's verdict).  Returns
    (overall verdict, [ProofResult]); overall is VIOLATED or NOT INDUCTIVE if
    a property is, else UNKNOWN if one is, else PROVED.  The budget per query
    is ``budget``, else ``rlimit``, else the spec's ``[prove] rlimit``, else
    ``DEFAULT_RLIMIT``.  ``templates`` / ``kept_out``: as for ``prove``."""
    from ..model.lemmas import DEFAULT
    model = spec.build()
    p = spec.prove or {}
    if budget is None:
        budget = Budget(rlimit or p.get("rlimit", DEFAULT_RLIMIT))
    if progress is not None:
        budget.progress = progress
    if p.get("any_workers"):
        from .parametric import CutoffError, prove_spec_any_workers
        try:
            pr = prove_spec_any_workers(spec, budget=budget, templates=templates, kept_out=kept_out)
        except CutoffError as e:
            return UNKNOWN, [ProofResult(n, "property", UNKNOWN, 0.0, detail=str(e))
                             for n in spec.checked_properties(model)]
        res = pr.results
        if pr.refused:
            return UNKNOWN, res
    else:
        res = prove(model, spec.checked_properties(model), p.get("lemmas", DEFAULT), k=k or p.get("k", 1),
                    budget=budget, bmc_depth=p.get("bmc_depth", 8) if bmc_depth is None else bmc_depth,
                    templates=templates, kept_out=kept_out)
    return overall_verdict(res), res


def prove_violation(spec, *, budget: Budget | None = None, progress=None, mine: bool = False,
                    at_depth: int | None = None):
    """``prove_spec`` on a defect spec's ``expect.property`` alone.  BMC finds a violation whatever the
    candidates are, and no candidate makes a violated property inductive, so the first attempt mines none;
    the full search (``mine``, or when that finds no violation) is what a property that is not violated needs
    to be judged at all.

    ``at_depth``: the length of the explorer's shortest counterexample.  z3 is then first asked for a
    violation at that depth alone, which it finds on its own encoding (the interpreter replays its path) in
    a third of the time that asking every shorter depth first takes; that no shorter path exists is then the
    explorer's word (its search is breadth-first), not z3's.  Without a violation there, as above."""
    from dataclasses import replace
    target = replace(spec, properties=[spec.expect_property])
    if at_depth is not None and at_depth >= 0 and not mine:
        from .bmc import VIOLATION, bmc
        budget = budget if budget is not None else Budget((spec.prove or {}).get("rlimit", DEFAULT_RLIMIT))
        if progress is not None:
            budget.progress = progress
        t0 = time.perf_counter()
        b = bmc(spec.build(), at_depth, properties=[spec.expect_property], deadlock=False, budget=budget,
                start=at_depth)
        if b.verdict == VIOLATION and b.property == spec.expect_property:
            return VIOLATED, [ProofResult(
                b.property, "property", VIOLATED, round(time.perf_counter() - t0, 3), trace=b.path,
                thread=b.thread, detail=f"violated at depth {b.depth} (a path of {b.depth} steps, bounded model "
                                        "checking at the explorer's depth; no shorter depth asked)")]
    if not mine:
        overall, results = prove_spec(target, budget=budget, progress=progress, templates=[])
        if any(r.verdict == VIOLATED for r in results if r.kind == "property"):
            return overall, results
    return prove_spec(target, budget=budget, progress=progress)


def overall_verdict(results) -> str:
    """VIOLATED or NOT INDUCTIVE if a property is, else UNKNOWN if one is, else PROVED."""
    verdicts = {r.verdict for r in results if r.kind == "property"}
    for v in (VIOLATED, NOT_INDUCTIVE, UNKNOWN):
        if v in verdicts:
            return v
    return PROVED
