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

Nothing is enumerated: a retry limit of 100 or a 64-bit counter costs the
solver no more states, only what the path to depth K needs.

A bound of the model (``Model.bounds``: the allocator window of a model of a
large VRAM or GTT) is searched for with every run, whatever properties are
asked: the first depth at which it can be reached ends the search with
INCOMPLETE and what to raise, since past it the model is not exact (unless a
real property fails in that same state, which is then the verdict).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import z3

from ..model import interpret
from ..model.program import Model
from .explorer import Move
from .z3_encode import Encoder

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


def bmc(model: Model, depth: int, *, properties=None, deadlock: bool = True, timeout: float | None = None,
        start: int = 0) -> BmcResult:
    """Search for a violation of ``properties`` (default: every safety property
    of the model) on paths of length ``start`` .. ``depth``."""
    t0 = time.perf_counter()
    enc = Encoder(model)
    props = [p for p in enc.safety_properties(properties) if p not in model.bounds]
    if deadlock and (properties is None or "deadlock" in properties):
        props.append("deadlock")
    bounds = list(model.bounds)
    props += bounds
    solver = z3.SolverFor("QF_BV")
    if timeout is not None:
        solver.set("timeout", max(1, int(timeout * 1000)))
    states = [enc.state("s0")]
    sels = []
    solver.add(enc.init(states[0]))
    deadline = None if timeout is None else t0 + timeout

    for k in range(depth + 1):
        if k >= start:
            bad = z3.Or([enc.bad(states[k], p) for p in props]) if props else z3.BoolVal(False)
            flag = z3.Bool(f"bad{k}")
            solver.add(z3.Implies(flag, bad))
            if deadline is not None:
                solver.set("timeout", max(1, int((deadline - time.perf_counter()) * 1000)))
            r = solver.check(flag)
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
                return BmcResult(UNKNOWN, depth=k, seconds=round(time.perf_counter() - t0, 3),
                                 detail=f"solver gave up at depth {k}: {solver.reason_unknown()}")
            solver.add(z3.Not(flag))    # no violation at depth k: keep it as a fact
        if k == depth:
            break
        nxt = enc.state(f"s{k + 1}")
        sel = enc.selector(f"sel{k}")
        solver.add(enc.trans(states[k], nxt, sel))
        states.append(nxt)
        sels.append(sel)
    return BmcResult(NO_VIOLATION, depth=depth, seconds=round(time.perf_counter() - t0, 3),
                     detail=f"no violation on any path of length <= {depth}")


def bmc_trace(model: Model, res: BmcResult, *, spec: str, source: str) -> dict:
    """The violation as an ITF trace (backend ``bmc``) that ``replay`` confirms."""
    from .trace import to_itf
    return to_itf(model, res.path, spec=spec, source=source,
                  verdict="DEADLOCK" if res.property == "deadlock" else "VIOLATION", prop=res.property,
                  thread=res.thread, backend="bmc", extra={"depth": res.depth})
