"""More counterexamples to induction per solver call, for Houdini.

A solver model of ``C(s) and T(s, s') and not c(s')`` gives one pre-state s
satisfying every kept candidate.  Everything explicitly reachable from s
through states that also satisfy every kept candidate is an equally valid
pre-state, so the explorer's own successor function, run for a few hundred
states from s, finds the other candidates those states break without asking
the solver again.  Dropping a candidate on such evidence is exactly what the
solver would have done in a later round (the pair (x, y) is a genuine CTI:
x satisfies the kept set, y is its successor); it only saves the rounds.
"""
from __future__ import annotations

from ..model import expr as E
from ..model.compile import _RUNTIME, compile_model
from ..model.program import Model


class ConcreteView:
    """The candidates of one Houdini run as compiled Python predicates."""

    def __init__(self, model: Model, cands: list):
        lay = model.layout
        self.model = model
        self.succ = compile_model(model, properties=()).successors
        py = lambda e, tid: E.to_python(e, lay.shared_slot, lay.local_slot, lay.pc_slot, tid)  # noqa: E731
        done = " and ".join(f"s[{lay.pc_slot(t)}] == {lay.done_pc[t]}" for t in range(len(model.threads))) or "True"
        lines = ["def _failing(s):", "    out = []"]
        for i, c in enumerate(cands):
            if c.expr is not None:
                code = py(c.expr, c.tid)
            elif c.kind == "property":
                code = self._property(c.name, py, done)
            else:
                continue            # no expression form: the solver alone judges it
            lines.append(f"    if not ({code}): out.append({i})")
        lines.append("    return out")
        ns = dict(_RUNTIME)
        exec(compile("\n".join(lines), f"<candidates of {model.name}>", "exec"), ns)
        self.failing = ns["_failing"]

    def _property(self, name, py, done):
        m, lay = self.model, self.model.layout
        parts = [f"(s[{lay.pc_slot(t)}] != {pc} or ({py(a, t)}))" for t, pc, a in m.assertion_sites(name)]
        p = m.properties[name]
        if p.kind == "invariant":
            parts.append(f"({py(p.expr, None)})")
        elif p.kind == "final":
            parts.append(f"(not ({done}) or ({py(p.expr, None)}))")
        return " and ".join(parts) or "True"


def harvest(view: ConcreteView, start: tuple, kept: set, key_of: list, move_index: dict, budget: int = 300):
    """Explore from ``start`` (which satisfies every candidate index in
    ``kept``) through states that satisfy the still-kept candidates.
    Returns {key: (x, y, move index)}: a CTI for every group key broken."""
    broken = {}
    alive = set(kept)
    frontier, seen = [start], {start}
    n = 0
    while frontier and n < budget:
        x = frontier.pop()
        n += 1
        for t, pc, b, y in view.succ(x):
            bad = [i for i in view.failing(y) if i in alive]
            if bad:
                mi = move_index[(t, pc, b)]
                for i in bad:
                    k = key_of[i]
                    if k not in broken:
                        broken[k] = (x, y, mi)
                gone = {key_of[i] for i in bad}
                alive = {i for i in alive if key_of[i] not in gone}
            if y not in seen:       # y satisfies what is still kept: another valid pre-state
                seen.add(y)
                frontier.append(y)
    return broken
