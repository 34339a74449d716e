"""Smaller proof certificates: keep only the invariants the proof's queries use.

A certificate as the search leaves it (``certificate.write``) holds every
mined candidate that survived Houdini: thousands of true facts, most of them
needed by no property.  Checking one costs in proportion: the encoder builds
every member twice (before and after a step) and z3 reasons over all of them
in one induction query.

Minimising is a closure over unsat cores.  It starts from what must be shown:
the spec's properties and named lemmas, and for a proof for any number of
workers what each implied property's query uses.  Each round asks, in every
system the proof checks, whether one of the round's *new* members can fail
after a step, with every member of the certificate as a hypothesis behind a
literal of its own; the unsat core names the hypotheses the answer used.
Those join the set and are the next round's new members; the closure ends
when a round adds nothing.  Every member of the set is then preserved by
every step, in every system, from members of the set alone: the set is
inductive.  It is nevertheless checked again as an ordinary certificate
(``prove_spec`` with the kept templates) before it is returned, so a closure
that went wrong costs the minimisation, never a verdict.

The queries are asked with z3's largest budget: minimising runs offline
(``make certificates``), its result is a guess like any certificate, and only
the check of it, under the spec's own budget, decides anything.
"""
from __future__ import annotations

import z3

from .prove import PROVED, candidate_term, candidates, goal_groups, prove_spec
from .z3_budget import MAX_RLIMIT, Budget, own_context
from .z3_encode import Encoder


class _Query:
    """One system the proof checks: its encoder, candidates, how they group (``key``), the extra hypothesis
    on the pre-state, and which steps and candidates its induction step covers (``moves``/``goal``)."""

    def __init__(self, enc, cands, key, extra_hyp=None, moves=None, goal=None):
        self.enc, self.cands, self.key, self.extra_hyp, self.moves, self.goal = enc, cands, key, extra_hyp, moves, goal


def _systems(spec, templates, budget):
    """(the systems, the (system, implied property) pairs whose implication query must stay unsat) of
    ``spec``'s proof with ``templates`` as its mined candidates; None when the proof cannot be set up (a
    refused cutoff)."""
    p = spec.prove or {}
    if p.get("any_workers"):
        from . import parametric as P
        builder, stress, props, lemmas = P.spec_arguments(spec)
        st = P.setting(builder, spec.workload, props, lemmas, budget, stress, templates)
        if st.refused:
            return None
        queries = [_Query(sy.enc, sy.cands, P.key, sy.hyp, **P._obligations(sy)) for sy in st.systems]
        implied = [(sy, prop) for prop in st.props if st.kinds[prop] == "implied" for sy in st.systems]
        return queries, implied
    from ..model.lemmas import DEFAULT
    model = spec.build()
    cands = candidates(model, spec.checked_properties(model), p.get("lemmas", DEFAULT), templates)
    return [_Query(Encoder(model), cands, lambda c: c.name)], []


def closure(spec, templates, *, budget: Budget | None = None, log=None) -> list | None:
    """The templates of ``templates`` the closure over unsat cores keeps (their order kept), or None when
    some query is not unsat (the certificate does not prove the spec, or z3 gave up)."""
    budget = budget or Budget(MAX_RLIMIT)
    with own_context():
        got = _systems(spec, templates, budget)
        if got is None:
            return None
        queries, implied = got
        lits: dict = {}
        names: dict = {}

        def lit(k):
            if k not in lits:
                lits[k] = z3.Bool(f"keep!{len(lits)}")
                names[lits[k].get_id()] = k
            return lits[k]

        def core_of(solver, keys, what):
            r = budget.check(solver, *[lit(k) for k in keys], what=what)
            if r != z3.unsat:
                return None
            return {names[x.get_id()] for x in solver.unsat_core()}

        need = {q.key(c) for q in queries for c in q.cands if c.kind != "auto"}
        if implied:
            from .parametric import implication_query, key
        for sy, prop in implied:
            s = sy.enc.state("s")
            solver = z3.Solver()
            solver.add(*implication_query(sy, prop, s, [z3.Implies(lit(key(c)), candidate_term(sy.enc, c, s, "s"))
                                                        for c in sy.cands]))
            core = core_of(solver, {key(c) for c in sy.cands}, f"{prop} implied")
            if core is None:
                return None
            need |= core
        # what a round asks of each system but its goals is the same every round: built once
        steps = []
        for q in queries:
            enc = q.enc
            s, t, sel = enc.state("s"), enc.state("t"), enc.selector("sel")
            fixed = [enc.wf(s), enc.trans(s, t, sel, moves=q.moves)]
            if q.extra_hyp is not None:
                fixed.append(q.extra_hyp(s))
            fixed += [z3.Implies(lit(q.key(c)), candidate_term(enc, c, s, "s")) for c in q.cands]
            steps.append((q, t, fixed, goal_groups(q.cands, q.key, q.goal), {q.key(c) for c in q.cands}))
        new = set(need)
        rounds = 0
        while new:
            rounds += 1
            added = set()
            for q, t, fixed, goals, keys in steps:
                ks = [k for k in goals if k in new]
                if not ks:
                    continue
                solver = z3.Solver()
                solver.add(*fixed)
                solver.add(z3.Or([z3.Not(candidate_term(q.enc, goals[k], t, "t")) for k in ks]))
                core = core_of(solver, keys, f"closure round {rounds}: {len(ks)} goal(s)")
                if core is None:
                    return None
                added |= core - need
            if log is not None:
                log(f"round {rounds}: {len(new)} new, the cores add {len(added)}; {len(need | added)} kept")
            need |= added
            new = added
        kept = {c.template for q in queries for c in q.cands if c.kind == "auto" and q.key(c) in need}
    return [tp for tp in dict.fromkeys(templates) if tp in kept]


def minimise(spec, templates, *, log=None, passes: int = 4) -> list | None:
    """``closure`` repeated, ``passes`` times at most, while it keeps less than it is given (z3's cores are
    not minimal, so a closure of a closure can keep less: spec 53's certificate 1,034 templates, then 417,
    then 364 after four passes), then checked as the spec's certificate under the spec's
    own budget: the smaller template list when every property is PROVED from it, else None (keep the
    certificate as it is)."""
    small = closure(spec, templates, log=log)
    if small is None:
        return None
    for _ in range(passes - 1):
        again = closure(spec, small, log=log)
        if again is None or len(again) == len(small):
            break
        small = again
    overall, results = prove_spec(spec, templates=small)
    if not all(r.verdict == PROVED for r in results if r.kind == "property"):
        return None
    return small
