"""Reference semantics: successors and checks computed by walking the model's
expression trees.  Slow; used to test the compiled code and to replay and
explain traces step by step."""
from __future__ import annotations

from .expr import evaluate, wrap
from .program import Model, Var


def successors(model: Model, state) -> list:
    lay = model.layout
    out = []
    for tid, th in enumerate(model.threads):
        pc = state[lay.pc_slot(tid)]
        if pc >= len(th.program.steps):
            continue
        st = th.program.steps[pc]
        for bi, br in enumerate(st.branches):
            if not evaluate(br.guard, state, lay, tid):
                continue
            n = list(state)
            for target, value in br.updates:
                if isinstance(target, Var):
                    k = lay.shared_slot(target.name)
                else:
                    k = lay.local_slot(tid if target.thread is None else target.thread, target.name)
                n[k] = wrap(evaluate(value, state, lay, tid), lay.decls[k].bits)
            n[lay.pc_slot(tid)] = lay.pc_of_label(tid, br.goto)
            out.append((tid, pc, bi, tuple(n)))
    return out


def check(model: Model, state, properties=None):
    lay = model.layout
    wanted = set(model.properties if properties is None else properties)
    for tid, th in enumerate(model.threads):
        pc = state[lay.pc_slot(tid)]
        if pc >= len(th.program.steps):
            continue
        for p, a in th.program.steps[pc].asserts:
            if p in wanted and not evaluate(a, state, lay, tid):
                return (p, tid)
    for p in (model.properties if properties is None else properties):
        prop = model.properties[p]
        if prop.kind == "invariant" and not evaluate(prop.expr, state, lay):
            return (p, None)
    return None


def check_final(model: Model, state, properties=None):
    for p in (model.properties if properties is None else properties):
        prop = model.properties[p]
        if prop.kind == "final" and not evaluate(prop.expr, state, model.layout):
            return p
    return None


def enabled_threads(model: Model, state) -> set[int]:
    return {t for t, *_ in successors(model, state)}
