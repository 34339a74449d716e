"""Replay a trace on the model, step by step, with the reference semantics
(``model.interpret``), independent of the compiled code that found it.

Each transition must be a step the named thread can take from the previous
state and must produce exactly the next recorded state; the end must show
the recorded verdict (the property false, a deadlock, or a fair cycle in
which the thread never returns).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..model import interpret
from .trace import model_of_trace, validated_states


@dataclass
class ReplayStep:
    index: int
    thread: str
    step: str
    section: str
    code: str
    changed: dict          # var -> (before, after)


@dataclass
class ReplayResult:
    model: object
    confirmed: bool
    message: str
    steps: list = field(default_factory=list)
    start_is_initial: bool = True


def replay(path, data) -> ReplayResult:
    model = model_of_trace(path, data)
    meta = data["#meta"]
    lay = model.layout
    states = validated_states(path, data, model)
    cti = meta.get("backend") == "z3-cti"
    steps = []
    if not cti and states[0] != model.initial_state():
        return ReplayResult(model, False, "states[0] is not the model's initial state", steps, False)
    cur = states[0]
    names = lay.var_names()
    for i, tr in enumerate(meta["transitions"]):
        nxt = states[i + 1]
        tid = model.thread_index(tr["thread"])
        pc = cur[lay.pc_slot(tid)]
        label = lay.label(tid, pc)
        if label != tr.get("step"):
            return ReplayResult(model, False, f"transition {i + 1}: {tr['thread']} is at {label}, "
                                              f"not at {tr.get('step')}", steps, not cti)
        ok = [n for t, p, b, n in interpret.successors(model, cur) if t == tid and n == nxt]
        if not ok:
            return ReplayResult(model, False, f"transition {i + 1}: {tr['thread']} cannot go from step {label} "
                                              f"to the recorded state {i + 1}", steps, not cti)
        st = model.threads[tid].program.steps[pc]
        changed = {names[k]: (lay.as_dict(cur)[names[k]], lay.as_dict(nxt)[names[k]])
                   for k in range(len(cur)) if cur[k] != nxt[k]}
        steps.append(ReplayStep(i + 1, tr["thread"], label, st.section, st.code, changed))
        cur = nxt
    verdict, prop = meta.get("verdict"), meta.get("property")
    return _confirm(model, states, meta, verdict, prop, steps, cti)


def _confirm(model, states, meta, verdict, prop, steps, cti) -> ReplayResult:
    last = states[-1]
    done = all(last[model.layout.pc_slot(t)] == model.layout.done_pc[t] for t in range(len(model.threads)))
    if cti and verdict == "NOT INDUCTIVE" and prop is None:       # a CTI of a lemma (prove's helper invariant)
        from ..model.expr import evaluate
        from ..model.lemmas import LemmaError, lemma_expr
        name = meta.get("lemma")
        try:
            e = lemma_expr(model, name)
        except LemmaError:
            return ReplayResult(model, False, f"not confirmed: lemma {name!r} is mined by prove, not one replay "
                                              "can evaluate", steps, False)
        first_ok, last_ok = (bool(evaluate(e, s, model.layout)) for s in (states[0], last))
        if first_ok and not last_ok:
            return ReplayResult(model, True, f"confirmed: counterexample to induction: lemma {name} holds in the "
                                             "first state and fails after the recorded step", steps, False)
        return ReplayResult(model, False, f"not confirmed: lemma {name} " + (
            "already fails in the first state" if not first_ok else "still holds after the step"), steps, False)
    if cti and verdict == "NOT INDUCTIVE":
        first_ok = interpret.check(model, states[0], [prop]) is None
        last_bad = interpret.check(model, last, [prop]) is not None or (
            done and interpret.check_final(model, last, [prop]) == prop)
        if first_ok and last_bad:
            return ReplayResult(model, True, f"confirmed: counterexample to induction: {prop} holds in the first "
                                             "state and fails after the recorded step", steps, False)
        return ReplayResult(model, False, f"not confirmed: {prop} " + (
            "already fails in the first state" if not first_ok else "still holds after the step"), steps, False)
    if verdict == "VIOLATION":
        if cti:
            first = interpret.check(model, states[0], [prop])
            if first is not None:
                return ReplayResult(model, False, f"CTI: the first state already violates {prop}", steps, False)
        v = interpret.check(model, last, [prop])
        if v is not None:
            who = f" ({model.threads[v[1]].name} at {model.layout.label(v[1], last[model.layout.pc_slot(v[1])])})" \
                if v[1] is not None else ""
            return ReplayResult(model, True, f"confirmed: {prop} is violated in the last state{who}", steps, not cti)
        if done and interpret.check_final(model, last, [prop]) == prop:
            return ReplayResult(model, True, f"confirmed: {prop} is violated when every thread has finished",
                                steps, not cti)
        return ReplayResult(model, False, f"not confirmed: {prop} holds in the last state", steps, not cti)
    if verdict == "DEADLOCK":
        if not interpret.successors(model, last) and not done:
            return ReplayResult(model, True, "confirmed: no thread can move and not every thread has finished", steps)
        return ReplayResult(model, False, "not confirmed: the last state is not a deadlock", steps)
    if verdict == "LIVENESS":
        loop = meta.get("loop")
        if not isinstance(loop, int) or not 0 <= loop < len(states) - 1 or states[loop] != last:
            return ReplayResult(model, False, "not confirmed: the trace does not end where its loop starts", steps)
        t = model.thread_index(meta["thread"])
        lay = model.layout
        prog = model.threads[t].program.steps
        calls = {prog[s[lay.pc_slot(t)]].call if s[lay.pc_slot(t)] < len(prog) else None for s in states[loop:]}
        if len(calls) != 1 or None in calls:
            return ReplayResult(model, False, "not confirmed: the thread leaves its call inside the loop", steps)
        movers = {model.thread_index(tr["thread"]) for tr in meta["transitions"][loop:]}
        for u in range(len(model.threads)):
            if u in movers:
                continue
            if all(u in interpret.enabled_threads(model, s) for s in states[loop:]):
                return ReplayResult(model, False, f"not confirmed: the loop is unfair to {model.threads[u].name}",
                                    steps)
        return ReplayResult(model, True, f"confirmed: {meta['thread']} never returns from {calls.pop()} on a "
                                         "weakly fair cycle", steps)
    return ReplayResult(model, False, f"nothing to confirm for verdict {verdict!r}", steps)
