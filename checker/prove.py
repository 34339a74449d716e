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
* UNKNOWN when the solver times out, with the time spent.

A property kind the solver cannot state (liveness) is refused with an error.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import z3

from ..model import interpret
from ..model.program import Model
from .explorer import Move
from .z3_encode import EncodeError, Encoder

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


class _Timer:
    def __init__(self, timeout):
        self.t0 = time.perf_counter()
        self.deadline = None if timeout is None else self.t0 + timeout

    def left_ms(self):
        if self.deadline is None:
            return None
        return max(1, int((self.deadline - time.perf_counter()) * 1000))

    def elapsed(self):
        return round(time.perf_counter() - self.t0, 3)


def _solver(timer):
    s = z3.Solver()
    ms = timer.left_ms()
    if ms is not None:
        s.set("timeout", ms)
    return s


def candidate_term(enc: Encoder, c, st, tag: str):
    """``c.holds(enc, st)``, built once per encoder: the state named ``tag``
    ("s", "t") is the same z3 constants in every query on that encoder."""
    cache = enc.__dict__.setdefault("_candidate_terms", {})
    if (c, tag) not in cache:
        cache[(c, tag)] = c.holds(enc, st)
    return cache[(c, tag)]


def houdini(enc: Encoder, cands: list, *, timer, extra_hyp=None, key=None, harvest: int = 0, moves=None,
            goal=None):
    """Prune ``cands`` to an inductive subset.  Returns (kept, {name: (s, s', move_index)}, unknown names).

    One query per round asks whether any kept member fails after a step; the
    members false in the model's s' are removed (each with that CTI).

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
    goals = {}
    for c in cands:
        if goal is None or goal(c):
            goals.setdefault(key(c), c)
    post = {k: candidate_term(enc, c, t, "t") for k, c in goals.items()}
    kept = list(cands)
    ctis = {}
    view = None
    if harvest:
        from .cti_harvest import ConcreteView, harvest as explore_ctis
        view = ConcreteView(enc.model, cands)
        index = {c.name: i for i, c in enumerate(cands)}
        key_of = [key(c) for c in cands]
        move_index = {(mv.thread, mv.pc, mv.branch): mv.index for mv in enc.moves}
    while kept:
        keys = [k for k in dict.fromkeys(key(c) for c in kept) if k in post]
        if not keys:
            return kept, ctis, []
        # a fresh solver per round: z3's incremental mode (push/pop, assumptions, adding after a check) is
        # an order of magnitude slower on these bit-vector queries
        solver = _solver(timer)
        solver.add(*base, *(pre[c.name] for c in kept))
        solver.add(z3.Or([z3.Not(post[k]) for k in keys]))
        r = solver.check()
        if r == z3.unsat:
            return kept, ctis, []
        if r == z3.unknown:
            return [], ctis, [c.name for c in kept]
        m = solver.model()
        sv, tv = enc.decode(m, s), enc.decode(m, t)
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
        kept = [c for c in kept if key(c) not in found]
    return kept, ctis, []


def k_induction_step(enc: Encoder, cand, hyps: list, k: int, timer):
    """sat/unsat/unknown of: s0..sk linked by T, cand and hyps on s0..s(k-1), not cand on sk.
    Returns (verdict, path or None)."""
    S = [enc.state(f"k{i}") for i in range(k + 1)]
    sels = [enc.selector(f"ksel{i}") for i in range(k)]
    solver = _solver(timer)
    for i in range(k):
        solver.add(enc.wf(S[i]), cand.holds(enc, S[i]), *(h.holds(enc, S[i]) for h in hyps))
        solver.add(enc.trans(S[i], S[i + 1], sels[i]))
    solver.add(z3.Not(cand.holds(enc, S[k])))
    r = solver.check()
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


def _init_ok(cand, enc):
    s = enc.state("i")
    solver = z3.Solver()
    solver.add(enc.init(s), z3.Not(cand.holds(enc, s)))
    return solver.check() == z3.unsat


def prove(model: Model, properties=None, lemmas=(), *, k: int = 1, timeout: float | None = 60.0,
          bmc_depth: int = 8, bmc_timeout: float | None = 30.0, encoder: Encoder | None = None,
          templates=None) -> list[ProofResult]:
    """Prove each safety property of ``properties`` (default: all the model's);
    ``lemmas``: names from ``model.lemmas`` that strengthen the induction."""
    timer = _Timer(timeout)
    enc = encoder or Encoder(model)
    cands = candidates(model, properties, lemmas, templates)
    results = {}
    # base case
    init_bad = [c for c in cands if not _init_ok(c, enc)]
    for c in init_bad:
        if c.kind == "auto":
            continue
        init = model.initial_state()
        results[c.name] = ProofResult(c.name, c.kind, VIOLATED, timer.elapsed(), trace=[(None, init)],
                                      detail="the initial state violates it")
    live = [c for c in cands if c not in init_bad]
    kept, ctis, unknown = houdini(enc, live, timer=timer)
    n_auto = sum(1 for c in kept if c.kind == "auto")
    for c in kept:
        results[c.name] = ProofResult(c.name, c.kind, PROVED, timer.elapsed(),
                                      detail=f"inductive together with {len(kept) - 1 - n_auto} other properties/lemmas and "
                                             f"{n_auto} mined invariants"
                                      if len(kept) > 1 else "inductive")
    for name in unknown:
        c = next(x for x in live if x.name == name)
        if c.kind == "auto":
            continue
        results[name] = ProofResult(name, c.kind, UNKNOWN, timer.elapsed(), detail="solver timeout")
    for c in live:
        if c.name not in ctis or c.kind == "auto":
            continue
        sv, tv, mi = ctis[c.name]
        mv = enc.moves[mi]
        res = ProofResult(c.name, c.kind, NOT_INDUCTIVE, timer.elapsed(),
                          cti=[(None, sv), (Move(mv.thread, mv.pc, mv.branch), tv)],
                          breaking=enc.where(mv), thread=mv.thread)
        if c.kind == "property":
            _try_violation(model, c.name, res, bmc_depth, bmc_timeout)
        if res.verdict == NOT_INDUCTIVE and k > 1:
            verdict, path = k_induction_step(enc, c, kept, k, timer)
            if verdict == "unsat":
                from .bmc import NO_VIOLATION, bmc
                b = bmc(model, k - 1, properties=[c.name] if c.kind == "property" else [], deadlock=False,
                        timeout=bmc_timeout)
                if c.kind == "lemma":
                    ok = all(_lemma_holds_on_paths(c, enc, k - 1))
                else:
                    ok = b.verdict == NO_VIOLATION
                if ok:
                    res.verdict, res.k, res.cti, res.breaking = PROVED, k, [], ""
                    res.detail = f"{k}-induction (base: no violation on paths of length < {k})"
            elif verdict == "sat":
                last = path[-1][0]
                mv = enc.moves[[m.index for m in enc.moves
                                if (m.thread, m.pc, m.branch) == (last.thread, last.pc, last.branch)][0]]
                res.cti, res.k, res.breaking, res.thread = path, k, enc.where(mv), mv.thread
                res.detail = f"not {k}-inductive"
            else:
                res.verdict, res.detail = UNKNOWN, f"solver timeout in {k}-induction"
        res.seconds = timer.elapsed()
        results[c.name] = res
    order = [c.name for c in cands if c.kind != "auto"]
    return [results[n] for n in order if n in results]


def _lemma_holds_on_paths(cand, enc, depth):
    """Base case of k-induction for a lemma: it holds on every path of length <= depth."""
    S = [enc.state(f"b{i}") for i in range(depth + 1)]
    solver = z3.Solver()
    solver.add(enc.init(S[0]))
    for i in range(depth):
        solver.add(enc.trans(S[i], S[i + 1]))
    for i in range(depth + 1):
        solver.push()
        solver.add(z3.Not(cand.holds(enc, S[i])))
        yield solver.check() == z3.unsat
        solver.pop()


def _try_violation(model, prop, res, depth, timeout):
    from .bmc import VIOLATION, bmc
    if depth <= 0:
        return
    b = bmc(model, depth, properties=[prop], deadlock=False, timeout=timeout)
    if b.verdict == VIOLATION:
        res.verdict, res.trace, res.thread = VIOLATED, b.path, b.thread
        res.detail = f"violated on a path of length {b.depth} (bounded model checking)"


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


def prove_spec(spec, *, k: int | None = None, timeout: float | None = None, bmc_depth: int | None = None):
    """Run ``prove`` as a spec's ``[prove]`` table configures it (for ``make
    check`` to show beside the explorer's verdict).  Returns
    (overall verdict, [ProofResult]); overall is VIOLATED or NOT INDUCTIVE if
    a property is, else UNKNOWN if one is, else PROVED."""
    from ..model.lemmas import DEFAULT
    model = spec.build()
    p = spec.prove or {}
    if p.get("any_workers"):
        from .parametric import CutoffError, prove_spec_any_workers
        try:
            pr = prove_spec_any_workers(spec, timeout=timeout)
        except CutoffError as e:
            return UNKNOWN, [ProofResult(n, "property", UNKNOWN, 0.0, detail=str(e))
                             for n in spec.checked_properties(model)]
        res = pr.results
        if pr.refused:
            return UNKNOWN, res
    else:
        res = prove(model, spec.checked_properties(model), p.get("lemmas", DEFAULT), k=k or p.get("k", 1),
                    timeout=timeout or p.get("timeout", 120.0),
                    bmc_depth=p.get("bmc_depth", 8) if bmc_depth is None else bmc_depth)
    verdicts = {r.verdict for r in res if r.kind == "property"}
    for v in (VIOLATED, NOT_INDUCTIVE, UNKNOWN):
        if v in verdicts:
            return v, res
    return PROVED, res
