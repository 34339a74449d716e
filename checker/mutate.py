"""``pddgpu-verify mutate``: mutation testing of a model's properties.

A model is data, so a careless change to the code it stands for can be made
mechanically: each *operator* below rewrites one program (the thread programs
of ``model/program.py``) in one way a reviewer would reject, and each mutant is
explored with the spec's own properties.  A property set that lets a mutant
through (it *survives*) is missing a property, unless the mutant is
*equivalent*: it behaves as the original does.

One program, every thread running it.  A mutant rewrites the code of one
program (the workers of a group, the recoverer, fini...) and every thread that
runs that program runs the mutated one: a change to the code of
``alloc`` is a change for every caller, and interchangeable workers stay
interchangeable, so symmetry reduction applies to the mutant as to the
original.  The model is rebuilt with the mutated program substituted where the
builder produced the original (``substituted``), so whatever the model derives
from its programs (which steps are inside a call, where a thread is done) is
derived from the mutated program.

Equivalence.  A mutant that survives is *equivalent* when

* it changes only steps the original never reaches (the original's search
  recorded every reached step), or
* it reaches exactly the original's set of canonical states, up to the mutated
  step: states in which a thread running the mutated program stands inside the
  rewritten region (between two reordered steps, at the store half of a split
  read-modify-write) are left out on both sides; every other state, mapped onto
  the original's layout when the mutant added a step and a local, is hashed by
  both searches into an order-independent 128-bit fingerprint of the set,
  compared with the counts.  A mutant that changes what some reachable step
  does thus differs in some state (the lock word it no longer writes, the flag
  it no longer sets) and is no equivalent.

Equivalents are listed apart and left out of the score's denominator.
"""
from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass, replace

from ..model import builder as B
from ..model import expr as E
from ..model.compile import compile_model
from ..model.program import Branch, Model, Program, Step, VarDecl
from .observe import Fingerprints, Observer

OP_KINDS = ("alloc", "free", "init", "fini")     # allocator calls: their updates are the allocator's own
STAT_VARS = ("used", "vis")                       # the manager's statistics counters
LOCK_PROPS = (B.LOCK_NO_REACQUIRE, B.LOCK_OWNER_RELEASE, B.NO_SLEEP_UNDER_SPINLOCK)
# locals the model keeps only for its properties (the real code has no such variable); the model does not mark
# them, so they are named here: a mark of the ghost ERROR counters is recognised by what it reads
GHOST_LOCALS = ("s_units", "s_vis0", "s_state0")
FLAG_NAMES = {"state": {1: "INITIALIZING", 2: "READY", 4: "SHUTDOWN", 8: "ERROR"}, "dev_state": {1: "DEV_SHUTDOWN"}}

CAUGHT, SURVIVED, EQUIVALENT, UNBUILDABLE, INCOMPLETE = "caught", "survived", "equivalent", "unbuildable", \
    "incomplete"
# a survivor the spec declares redundant ([mutate] redundant): its code is duplicated by another check, so no
# property can tell it apart; listed apart, not scored.  A declared mutant that is caught is a stale declaration.
REDUNDANT, STALE = "redundant", "stale"


@dataclass(frozen=True)
class Mutant:
    id: str                  # operator:role:label[:detail], stable across runs
    operator: str
    role: str
    label: str
    description: str
    original: Program
    program: Program
    changed: tuple = ()      # labels whose step differs from (or is not in) the original
    hidden: tuple = ()       # labels inside the rewritten region (between reordered steps, an added step): the
                             # states there are not compared when deciding equivalence


@dataclass
class Target:
    """A program and the threads that run it."""
    name: str
    program: Program
    threads: tuple


# ---------------------------------------------------------------------------------------------- expressions

def _map(e, fn):
    """``e`` rebuilt bottom-up with ``fn`` applied to every node."""
    if isinstance(e, E.Op):
        e = E.Op(e.op, tuple(_map(a, fn) for a in e.args))
    elif isinstance(e, E.Ite):
        e = E.Ite(_map(e.cond, fn), _map(e.then, fn), _map(e.other, fn))
    elif isinstance(e, E.Table):
        e = E.Table(e.values, _map(e.index, fn), e.default)
    elif isinstance(e, E.FirstFit):
        e = E.FirstFit(e.sizes, e.conflicts, _map(e.mask, fn), _map(e.size, fn))
    return fn(e)


def _subst(e, old, new):
    return _map(e, lambda n: new if n == old else n)


def _reads(e, names) -> bool:
    return any(isinstance(n, E.Var) and n.name in names for n in E.walk(e))


_INFIX = {"and": "&&", "or": "||"}


def show(e) -> str:
    """An expression the way a reviewer reads it."""
    if isinstance(e, E.Const):
        return str(e.value)
    if isinstance(e, E.Var):
        return e.name
    if isinstance(e, E.Local):
        return e.name
    if isinstance(e, E.Pc):
        return f"pc[{e.thread}]"
    if isinstance(e, E.SelfId):
        return "self"
    if isinstance(e, E.Op):
        if e.op == "not":
            return f"!({show(e.args[0])})"
        if len(e.args) == 1:
            return f"{e.op}({show(e.args[0])})"
        if e.op in ("min", "max"):
            return f"{e.op}({show(e.args[0])}, {show(e.args[1])})"
        return f"({show(e.args[0])} {_INFIX.get(e.op, e.op)} {show(e.args[1])})"
    if isinstance(e, E.Ite):
        return f"({show(e.cond)} ? {show(e.then)} : {show(e.other)})"
    if isinstance(e, E.Table):
        return f"size_of[{show(e.index)}]"
    if isinstance(e, E.FirstFit):
        return f"first_fit({show(e.mask)}, {show(e.size)})"
    return repr(e)


def _upd(target, value) -> str:
    return f"{target.name} := {show(value)}"


# ------------------------------------------------------------------------------------ the model seen by the operators

class Ctx:
    """What the operators need to know of the model around a program."""

    def __init__(self, model: Model, program: Program):
        self.model, self.prog = model, program
        self.kind = {v.name: v.kind for v in model.shared}
        self.bits = {v.name: v.bits for v in model.shared}
        self.ghost_shared = {v.name for v in model.shared if v.doc.lower().startswith("ghost")}
        ghost = {v.name for v in program.locals if v.doc.lower().startswith("ghost") or v.name in GHOST_LOCALS}
        for st in program.steps:                   # a local that copies a ghost counter is a mark: a ghost too
            for br in st.branches:
                for t, v in br.updates:
                    if isinstance(t, E.Local) and _reads(v, self.ghost_shared):
                        ghost.add(t.name)
        self.ghost_locals = ghost
        self.preds = {}
        for st in program.steps:
            for br in st.branches:
                self.preds.setdefault(br.goto, set()).add(st.label)
        self.first = program.steps[0].label if program.steps else None
        self.flags = _flag_bits(model)

    def ghost(self, target) -> bool:
        return target.name in (self.ghost_shared if isinstance(target, E.Var) else self.ghost_locals)

    def real_shared(self, target) -> bool:
        return isinstance(target, E.Var) and not self.ghost(target) and self.kind.get(target.name) != "owner"

    def straight(self, st: Step) -> bool:
        """Every branch goes to the same next step."""
        return len({br.goto for br in st.branches}) == 1 and st.branches[0].goto != st.label

    def only_pred(self, label: str, pred: str) -> bool:
        return label != self.first and self.preds.get(label, set()) == {pred}

    def where(self, st: Step) -> str:
        what = st.call.split(":", 1)[-1] if st.call else st.label
        return f"{self.prog.role} {what}"


def _flag_bits(model: Model) -> dict:
    """Per flags variable, the single-bit flags the model combines it with (``x & c``, ``x | c``, ``x & ~c``)."""
    bits = {v.name: v.bits for v in model.shared if v.kind == "flags"}
    out = {name: set() for name in bits}
    exprs = [p.expr for p in model.properties.values() if p.expr is not None]
    exprs += [e for t in model.threads for st in t.program.steps for br in st.branches
              for e in (br.guard, *(v for _, v in br.updates))]
    for e in exprs:
        for n in E.walk(e):
            if isinstance(n, E.Op) and n.op in ("&", "|"):
                var, c = _flag_operand(n, out)
                if var is not None:
                    c = c if c >= 0 else ~c
                    out[var] |= {1 << i for i in range(bits[var]) if c >> i & 1}
    return out


def _flag_operand(n: E.Op, flags) -> tuple:
    """(flags variable, constant) of ``x & c`` / ``x | c`` where x reads exactly one flags variable."""
    a, b = n.args
    if not isinstance(b, E.Const):
        return None, 0
    names = {x.name for x in E.walk(a) if isinstance(x, E.Var) and x.name in flags}
    return (names.pop(), b.value) if len(names) == 1 else (None, 0)


def _flag_name(var, bit) -> str:
    return FLAG_NAMES.get(var, {}).get(bit, hex(bit))


# ---------------------------------------------------------------------------------------------- program edits

def _with_steps(prog: Program, steps: dict, inserted: dict | None = None, locals_=()) -> Program:
    """``prog`` with steps replaced by label (``steps``) and new steps placed right after a label (``inserted``)."""
    out = []
    for st in prog.steps:
        out.append(steps.get(st.label, st))
        out += (inserted or {}).get(st.label, [])
    return replace(prog, steps=tuple(out), locals=prog.locals + tuple(locals_))


def _without(ctx: Ctx, br: Branch, drop) -> Branch:
    """``br`` without the updates ``drop(target)`` selects; when that leaves none of the branch's real shared
    updates, the ghost updates that recorded them go too (a ghost counts events that no longer happen)."""
    kept = [(t, v) for t, v in br.updates if not drop(t)]
    had = any(ctx.real_shared(t) for t, _ in br.updates)
    if had and not any(ctx.real_shared(t) for t, _ in kept):
        kept = [(t, v) for t, v in kept if not (isinstance(t, E.Var) and ctx.ghost(t))]
    return replace(br, updates=tuple(kept))


def _unlocked(st: Step) -> Step:
    """A lock operation turned into a plain step that leaves the lock alone."""
    brs = tuple(Branch(E.TRUE if st.kind == "acquire" else br.guard,
                       tuple((t, v) for t, v in br.updates if not (isinstance(t, E.Var) and t.name == st.lock)),
                       br.goto, br.note) for br in st.branches)
    return replace(st, branches=brs, kind="plain", lock=None,
                   asserts=tuple(a for a in st.asserts if a[0] not in LOCK_PROPS))


def _moved(st: Step, goto: str) -> Step:
    """``st``'s content, going to ``goto`` instead."""
    return replace(st, branches=tuple(replace(br, goto=goto) for br in st.branches))


def _flow(prog: Program, start: str, stop) -> list:
    """Steps reachable from ``start`` along gotos, not entering a step where ``stop(step)`` holds (those are
    returned too, but not passed)."""
    seen, todo, out = set(), [start], []
    while todo:
        lab = todo.pop()
        if lab in seen or lab == Program.DONE:
            continue
        seen.add(lab)
        st = prog.step(lab)
        out.append(st)
        if not stop(st):
            todo += [br.goto for br in st.branches]
    return out


# ---------------------------------------------------------------------------------------------- operators
# Each operator: (ctx) -> iterable of (label, detail, description, {label: new step}, {after label: [steps]},
# new locals[, hidden labels]).  ``OPERATORS`` keeps them in catalogue order with a one-line summary.

OPERATORS: dict = {}


def operator(summary: str):
    def reg(fn):
        OPERATORS[fn.__name__] = (fn, summary)
        return fn
    return reg


@operator("a lock and its matching unlock(s) deleted: the critical section runs unprotected")
def drop_lock(ctx: Ctx):
    prog = ctx.prog
    for st in prog.steps:
        if st.kind != "acquire":
            continue
        rels = [s for s in _flow(prog, st.branches[0].goto, lambda s: s.lock == st.lock)
                if s.kind == "release" and s.lock == st.lock]
        # a release also reached from another acquire stays: that acquire still needs it
        others = [a for a in prog.steps if a.kind == "acquire" and a.lock == st.lock and a is not st]
        shared = {r.label for a in others for r in _flow(prog, a.branches[0].goto, lambda s: s.lock == st.lock)
                  if r.kind == "release"}
        rels = [r for r in rels if r.label not in shared]
        if not rels:
            continue
        names = ", ".join(r.label.rsplit(".", 1)[-1] for r in rels)
        yield (st.label, "", f"{ctx.where(st)} without the lock: the {st.lock} acquire at {st.label} and its "
                             f"release(s) at {names} deleted",
               {st.label: _unlocked(st), **{r.label: _unlocked(r) for r in rels}}, {}, ())


@operator("one unlock deleted: that path goes on (and returns) holding the lock")
def drop_unlock(ctx: Ctx):
    for st in ctx.prog.steps:
        if st.kind == "release":
            yield (st.label, "", f"{ctx.where(st)}: the unlock at {st.label} is deleted (the lock stays held)",
                   {st.label: _unlocked(st)}, {}, ())


def _proceeds(ctx: Ctx, st: Step, br: Branch) -> bool:
    """Does this branch go on with the operation (to an allocator call), rather than bail out?"""
    if st.kind in OP_KINDS:
        return any(ctx.real_shared(t) for t, _ in br.updates)
    reach = _flow(ctx.prog, br.goto, lambda s: s.label == st.label or s.kind == "return")
    return any(s.kind in OP_KINDS for s in reach if s.label != st.label)


@operator("a check's bail-out branch deleted: the check always lets the operation go on")
def skip_check(ctx: Ctx):
    for st in ctx.prog.steps:
        if len(st.branches) < 2 or st.kind == "alloc":      # an allocator's answer is no check of the code
            continue
        go = [br for br in st.branches if _proceeds(ctx, st, br)]
        if not go or len(go) == len(st.branches) or len({br.guard for br in go}) != 1:
            continue
        new = replace(st, branches=tuple(replace(br, guard=E.TRUE) for br in go))
        bail = "; ".join(f"if {show(br.guard)} -> {br.goto}" for br in st.branches if br not in go)
        yield (st.label, "", f"{ctx.where(st)}: the bail-out at {st.label} ({bail}) is deleted: always on to "
                             f"{go[0].goto}", {st.label: new}, {}, ())


@operator("a wait deleted: the step no longer waits for its condition")
def drop_wait(ctx: Ctx):
    for st in ctx.prog.steps:
        if len(st.branches) == 1 and st.kind != "acquire" and st.branches[0].guard != E.TRUE:
            br = st.branches[0]
            yield (st.label, "", f"{ctx.where(st)}: no longer waits at {st.label} for {show(br.guard)}",
                   {st.label: replace(st, branches=(replace(br, guard=E.TRUE),))}, {}, ())


_OPPOSITE = {"<": ">=", ">=": "<", ">": "<=", "<=": ">", "==": "!=", "!=": "=="}


def _complementary(a, b) -> bool:
    if b == E.Op("not", (a,)) or a == E.Op("not", (b,)):
        return True
    return (isinstance(a, E.Op) and isinstance(b, E.Op) and a.args == b.args
            and _OPPOSITE.get(a.op) == b.op)


@operator("a two-way check inverted: each branch taken when the other was")
def negate_guard(ctx: Ctx):
    for st in ctx.prog.steps:
        if len(st.branches) == 2 and st.kind != "alloc" and _complementary(*(br.guard for br in st.branches)):
            b0, b1 = st.branches
            new = replace(st, branches=(replace(b0, guard=b1.guard), replace(b1, guard=b0.guard)))
            yield (st.label, "", f"{ctx.where(st)}: the check at {st.label} is inverted ({show(b0.guard)} "
                                 f"goes to {b1.goto})", {st.label: new}, {}, ())


@operator("an atomic read-modify-write split into a read and a later plain store (a write in between is lost)")
def split_rmw(ctx: Ctx):
    for st in ctx.prog.steps:
        if st.kind in OP_KINDS or st.kind in ("acquire", "release"):
            continue
        rmw = sorted({t.name for br in st.branches for t, v in br.updates
                      if ctx.real_shared(t) and _reads(v, {t.name})})
        for var in rmw:
            tmp = E.Local(f"{var}~read")
            brs, writes = [], []
            for i, br in enumerate(st.branches):
                hit = [(t, v) for t, v in br.updates if isinstance(t, E.Var) and t.name == var]
                if not hit:
                    brs.append(br)
                    continue
                lab = f"{st.label}~{var}" + (str(i) if sum(any(isinstance(t, E.Var) and t.name == var
                                                               for t, _ in b.updates) for b in st.branches) > 1 else "")
                ghosts = [(t, v) for t, v in br.updates if isinstance(t, E.Var) and ctx.ghost(t)]
                rest = [(t, v) for t, v in br.updates if (t, v) not in hit and (t, v) not in ghosts]
                brs.append(replace(br, updates=tuple(rest + [(tmp, E.Var(var))]), goto=lab))
                store = [(E.Var(var), _subst(hit[0][1], E.Var(var), tmp)), (tmp, E.Const(0))] + ghosts
                writes.append(Step(lab, (Branch(E.TRUE, tuple(store), br.goto),), st.section,
                                   f"(plain store) {st.code}", "plain", st.call))
            new = replace(st, branches=tuple(brs))
            yield (st.label, var, f"{ctx.where(st)}: {_upd(*hit[0])} at {st.label} becomes a read of {var} and a "
                                  f"later plain store (another thread can write {var} in between)",
                   {st.label: new}, {st.label: writes}, (VarDecl(tmp.name, ctx.bits[var], 0),),
                   tuple(w.label for w in writes))


def _chain_to_release(ctx: Ctx, st: Step):
    """The straight-line steps from ``st``'s successor up to and including the next release, or None."""
    chain, lab, prev = [], st.branches[0].goto, st.label
    while lab != Program.DONE and len(chain) < 4:
        nxt = ctx.prog.step(lab)
        if not ctx.only_pred(lab, prev) or nxt.call != st.call or nxt.kind == "acquire":
            return None
        chain.append(nxt)
        if nxt.kind == "release":
            return chain
        if not ctx.straight(nxt):
            return None
        prev, lab = lab, nxt.branches[0].goto
    return None


def _shift(first: Step, chain: list, moved_last: bool) -> dict:
    """Contents rotated over the labels [first, *chain]: with ``moved_last`` first's content goes to the last
    label (a move down), else the last's content goes to the first label (a move up)."""
    labels = [first.label] + [c.label for c in chain]
    contents = [*chain, first] if moved_last else [chain[-1], first, *chain[:-1]]
    end = chain[-1].branches[0].goto
    return {lab: replace(_moved(c, labels[i + 1] if i + 1 < len(labels) else end), label=lab)
            for i, (lab, c) in enumerate(zip(labels, contents))}


@operator("an update inside a critical section moved past the unlock")
def move_after_unlock(ctx: Ctx):
    for st in ctx.prog.steps:
        if st.kind != "plain" or not ctx.straight(st) or st.asserts:
            continue
        writes = [(t, v) for br in st.branches for t, v in br.updates if ctx.real_shared(t)]
        chain = _chain_to_release(ctx, st) if writes else None
        if chain:
            yield (st.label, "", f"{ctx.where(st)}: {_upd(*writes[0])} ({st.label}) moved after the unlock at "
                                 f"{chain[-1].label}", _shift(st, chain, True), {}, (), tuple(c.label for c in chain))


@operator("a step that reads or writes shared state moved before the lock")
def move_before_lock(ctx: Ctx):
    for st in ctx.prog.steps:
        if st.kind != "acquire":
            continue
        lab = st.branches[0].goto
        if lab == Program.DONE:
            continue
        nxt = ctx.prog.step(lab)
        touches = any(ctx.real_shared(t) or _reads(v, set(ctx.kind) - ctx.ghost_shared - {st.lock})
                      for br in nxt.branches for t, v in br.updates if not ctx.ghost(t))
        if (touches and ctx.straight(nxt) and ctx.only_pred(lab, st.label) and nxt.kind not in ("acquire", "release")
                and nxt.call == st.call):
            yield (lab, "", f"{ctx.where(nxt)}: {lab} ({nxt.code or nxt.kind}) moved before the lock at {st.label}",
                   _shift(st, [nxt], False), {}, (), (lab,))


@operator("two consecutive steps of a call swapped")
def swap_steps(ctx: Ctx):
    for a in ctx.prog.steps:
        if not ctx.straight(a) or a.kind == "acquire":
            continue
        lab = a.branches[0].goto
        if lab == Program.DONE:
            continue
        b = ctx.prog.step(lab)
        if (not ctx.straight(b) or b.kind in ("acquire", "release") or not ctx.only_pred(lab, a.label)
                or b.call != a.call or a.call is None or b.branches[0].goto in (a.label, lab)):
            continue
        if a.kind == "release" and b.kind != "return":
            continue            # moving a step into the critical section it follows: move_after_unlock's inverse
        if a.kind == "plain" and not any(br.updates for br in a.branches) and not a.asserts:
            continue            # a step that does nothing: swapping it changes nothing
        yield (a.label, "", f"{ctx.where(a)}: {a.label} and {lab} swapped ({b.code or b.kind} now first)",
               _shift(a, [b], True), {}, (), (lab,))


def _drop_updates(ctx: Ctx, st: Step, drop) -> Step:
    return replace(st, branches=tuple(_without(ctx, br, drop) for br in st.branches))


@operator("a statistics update (used, vis_usage) deleted")
def drop_stat_update(ctx: Ctx):
    for st in ctx.prog.steps:
        if st.kind in OP_KINDS:
            continue
        for var in sorted({t.name for br in st.branches for t, _ in br.updates
                           if isinstance(t, E.Var) and t.name in STAT_VARS}):
            u = next((t, v) for br in st.branches for t, v in br.updates if isinstance(t, E.Var) and t.name == var)
            yield (st.label, var, f"{ctx.where(st)}: {_upd(*u)} at {st.label} deleted",
                   {st.label: _drop_updates(ctx, st, lambda t, var=var: isinstance(t, E.Var) and t.name == var)},
                   {}, ())


@operator("the allocator's free skipped: the block stays in the allocator")
def skip_free(ctx: Ctx):
    for st in ctx.prog.steps:
        if st.kind == "free" and any(ctx.real_shared(t) for br in st.branches for t, _ in br.updates):
            yield (st.label, "", f"{ctx.where(st)}: the allocator free at {st.label} is skipped ({st.code})",
                   {st.label: _drop_updates(ctx, st, ctx.real_shared)}, {}, ())


def _droppable(ctx: Ctx, st: Step, t) -> bool:
    """An update the other update operators do not already cover, of the code (not a ghost, not the lock word,
    not the allocator's own state in an allocator call)."""
    if ctx.ghost(t) or (isinstance(t, E.Var) and ctx.kind.get(t.name) == "owner"):
        return False
    if isinstance(t, E.Var) and (st.kind in OP_KINDS or t.name in STAT_VARS):
        return False
    return True


@operator("one assignment deleted")
def drop_update(ctx: Ctx):
    for st in ctx.prog.steps:
        names = []
        for br in st.branches:
            for t, v in br.updates:
                if _droppable(ctx, st, t) and (type(t), t.name) not in [(type(x), x.name) for x, _ in names]:
                    names.append((t, v))
        for t, v in names:
            drop = (lambda x, t=t: type(x) is type(t) and x.name == t.name)
            yield (st.label, t.name, f"{ctx.where(st)}: {_upd(t, v)} at {st.label} deleted",
                   {st.label: _drop_updates(ctx, st, drop)}, {}, ())


@operator("an assertion-free step's whole effect deleted: it does nothing")
def drop_effect(ctx: Ctx):
    for st in ctx.prog.steps:
        if st.asserts or st.kind in OP_KINDS or st.kind in ("acquire", "release"):
            continue
        real = {(type(t), t.name) for br in st.branches for t, _ in br.updates if not ctx.ghost(t)}
        if len(real) < 2:
            continue            # one assignment: drop_update's mutant
        yield (st.label, "", f"{ctx.where(st)}: {st.label} does nothing ({', '.join(sorted(n for _, n in real))} "
                             "no longer assigned)", {st.label: _drop_updates(ctx, st, lambda t: not ctx.ghost(t))},
               {}, ())


def _flag_sites(ctx: Ctx, st: Step):
    """(node, replacement, operator, detail, what) for every flag constant the step tests, sets or clears."""
    out = []
    exprs = [br.guard for br in st.branches] + [v for br in st.branches for t, v in br.updates if not ctx.ghost(t)]
    for e in exprs:
        for n in E.walk(e):
            if isinstance(n, E.Op) and n.op in ("&", "|"):
                var, c = _flag_operand(n, ctx.flags)
                if var is None:
                    continue
                neg = c < 0
                bit = ~c if neg else c
                if bit and not bit & (bit - 1):               # one flag: replace it by each other one
                    verb = "clears" if neg else ("sets" if n.op == "|" else "tests")
                    for other in sorted(ctx.flags[var] - {bit}):
                        new = E.Op(n.op, (n.args[0], E.Const(~other if neg else other)))
                        out.append((n, new, "flag_replace", f"{verb}:{_flag_name(var, bit)}->{_flag_name(var, other)}",
                                    f"{verb} {_flag_name(var, other)} where it {verb} {_flag_name(var, bit)}"))
            if (isinstance(n, E.Op) and n.op in ("==", "!=") and isinstance(n.args[1], E.Const)
                    and isinstance(n.args[0], E.Op) and n.args[0].op == "&"):
                var, m = _flag_operand(n.args[0], ctx.flags)
                c = n.args[1].value
                if var is None or m < 0:
                    continue
                if c and not c & (c - 1):                     # compared with one flag: another one
                    for other in sorted(ctx.flags[var] - {c}):
                        new = E.Op(n.op, (n.args[0], E.Const(other)))
                        out.append((n, new, "flag_replace", f"compares:{_flag_name(var, c)}->{_flag_name(var, other)}",
                                    f"compares {var} with {_flag_name(var, other)} where it compared it with "
                                    f"{_flag_name(var, c)}"))
                for b in sorted(ctx.flags[var]):              # a flag of the mask forgotten
                    if m & b and not c & b and m != b:
                        new = E.Op(n.op, (E.Op("&", (n.args[0].args[0], E.Const(m & ~b))), n.args[1]))
                        out.append((n, new, "flag_drop", f"-{_flag_name(var, b)}",
                                    f"no longer looks at {_flag_name(var, b)}"))
    seen, uniq = set(), []
    for item in out:
        if (item[0], item[1]) not in seen:
            seen.add((item[0], item[1]))
            uniq.append(item)
    return uniq


def _replaced(st: Step, old, new) -> Step:
    return replace(st, branches=tuple(replace(br, guard=_subst(br.guard, old, new),
                                              updates=tuple((t, _subst(v, old, new)) for t, v in br.updates))
                                      for br in st.branches))


def _flag_mutants(ctx: Ctx, which: str):
    for st in ctx.prog.steps:
        for node, new, kind, detail, what in _flag_sites(ctx, st):
            if kind == which:
                yield (st.label, detail, f"{ctx.where(st)}: {st.label} {what} ({show(node)} -> {show(new)})",
                       {st.label: _replaced(st, node, new)}, {}, ())


@operator("a flag constant (READY, SHUTDOWN, ERROR, ...) tested, set or cleared replaced by another")
def flag_replace(ctx: Ctx):
    yield from _flag_mutants(ctx, "flag_replace")


@operator("a flag forgotten in a multi-flag state test (e.g. is_ready no longer rejects ERROR)")
def flag_drop(ctx: Ctx):
    yield from _flag_mutants(ctx, "flag_drop")


_SHIFTED = {"<": "<=", "<=": "<", ">": ">=", ">=": ">"}


@operator("a comparison's boundary shifted by one (< for <=, >= for >)")
def off_by_one(ctx: Ctx):
    for st in ctx.prog.steps:
        if st.kind == "alloc":
            continue
        pairs = []
        for br in st.branches:
            for n in E.walk(br.guard):
                if isinstance(n, E.Op) and n.op in _SHIFTED and n.args not in pairs:
                    pairs.append(n.args)
        for args in pairs:
            def shift(n, args=args):
                return E.Op(_SHIFTED[n.op], n.args) if isinstance(n, E.Op) and n.op in _SHIFTED and n.args == args \
                    else n
            new = replace(st, branches=tuple(replace(br, guard=_map(br.guard, shift)) for br in st.branches))
            yield (st.label, show(args[0]).replace(" ", ""),
                   f"{ctx.where(st)}: off by one at {st.label}: {show(args[0])} against {show(args[1])} with the "
                   "boundary moved (< as <=, >= as >)", {st.label: new}, {}, ())


# ---------------------------------------------------------------------------------------------- the catalogue

def targets(model: Model) -> list[Target]:
    """One target per distinct program, with every thread that runs it."""
    out: list[Target] = []
    for i, t in enumerate(model.threads):
        for tg in out:
            if tg.program == t.program:
                tg.threads += (i,)
                break
        else:
            out.append(Target(t.program.role, t.program, (i,)))
    roles = [tg.program.role for tg in out]
    for k, tg in enumerate(out):
        if roles.count(tg.name) > 1:
            tg.name = f"{tg.name}#{roles[:k].count(tg.name)}"
    return out


def _step_semantic(s: Step):
    return (s.label, tuple((b.guard, b.updates, b.goto) for b in s.branches), s.kind, s.call, s.asserts, s.lock)


def _semantic(prog: Program):
    """A program without its comments (code, section, note): what a mutant must change."""
    return tuple(_step_semantic(s) for s in prog.steps), prog.locals


def catalogue(model: Model) -> tuple[list[Mutant], list[tuple]]:
    """Every mutant of every program of ``model``, and the rewrites left out as
    (id, reason): no change to the program, or the same program as an earlier mutant."""
    mutants, skipped, seen = [], [], {}
    for tg in targets(model):
        ctx = Ctx(model, tg.program)
        orig = _semantic(tg.program)
        old = {s.label: _step_semantic(s) for s in tg.program.steps}
        for name, (fn, _) in OPERATORS.items():
            for label, detail, desc, steps, inserted, locals_, *hidden in fn(ctx):
                mid = f"{name}:{tg.name}:{label}" + (f":{detail}" if detail else "")
                prog = _with_steps(tg.program, steps, inserted, locals_)
                key = (tg.name, _semantic(prog))
                if key[1] == orig:
                    skipped.append((mid, "no change to the program"))
                elif key in seen:
                    skipped.append((mid, f"same program as {seen[key]}"))
                else:
                    seen[key] = mid
                    changed = tuple(s.label for s in prog.steps if old.get(s.label) != _step_semantic(s))
                    mutants.append(Mutant(mid, name, tg.name, label, desc, tg.program, prog, changed,
                                          tuple(hidden[0]) if hidden else ()))
    ids = [m.id for m in mutants]
    assert len(set(ids)) == len(ids), "mutant ids must be unique"
    return mutants, skipped


@contextmanager
def substituted(original: Program, program: Program):
    """Every program the builder makes equal to ``original`` is ``program`` instead, while in the block: a
    model built there runs the mutant wherever it ran the original, and derives from it what it derives from
    its programs.  Yields a one-element list counting the substitutions."""
    real = B.ProgramBuilder.build
    hits = [0]

    def build(self):
        p = real(self)
        if p == original:
            hits[0] += 1
            return program
        return p
    B.ProgramBuilder.build = build
    try:
        yield hits
    finally:
        B.ProgramBuilder.build = real


class Unbuildable(Exception):
    pass


def build_mutant(subject, mutant: Mutant) -> Model:
    """The model of ``subject`` (anything with ``build()``, a Spec) with ``mutant`` applied; it must be well
    formed (``Model.check_wellformed`` runs as the model is made) and compile."""
    try:
        with substituted(mutant.original, mutant.program) as hits:
            m = subject.build()
    except Exception as e:  # noqa: BLE001 - whatever the builder refuses, the mutant cannot be built
        raise Unbuildable(f"{type(e).__name__}: {e}") from None
    if not hits[0]:
        raise Unbuildable("the model is not built with ProgramBuilder: the mutant cannot be substituted")
    return m


# ---------------------------------------------------------------------------------------------- one search

@dataclass
class CheckConfig:
    """The spec's own check (``check_config``): BFS, deadlock always checked, as ``check`` runs it."""
    properties: list | None = None    # None: the subject's (Spec.checked_properties)
    symmetry: bool = True
    max_states: int | None = None
    max_depth: int | None = None
    liveness: bool = False


def check_config(spec, properties=None) -> CheckConfig:
    return CheckConfig(properties, spec.symmetry, spec.max_states, spec.max_depth, spec.liveness)


def interior(prog: Program, mutant: Mutant) -> set:
    """The labels of ``prog`` inside a call the mutant changes: every step of the call but its first (where a
    thread has not started it), as the model counts a call in progress; and the mutant's hidden labels."""
    calls = {s.call for s in mutant.program.steps if s.label in mutant.changed and s.call is not None}
    out, entered = set(mutant.hidden), set()
    for s in prog.steps:
        if s.call in calls:
            if s.call in entered:
                out.add(s.label)
            entered.add(s.call)
    return out


def _pcs(model: Model, threads, labels) -> dict:
    lay = model.layout
    return {t: {lay.labels[t].index(l) for l in labels if l in lay.labels[t]} for t in threads}


def running(model: Model, program: Program) -> tuple:
    return tuple(i for i, t in enumerate(model.threads) if t.program == program)


def compiled(model: Model, cfg: CheckConfig, properties):
    """``model`` compiled for the check."""
    props = [p for p in properties if p in model.properties] + [p for p in model.bounds if p not in properties]
    return compile_model(model, props, cfg.symmetry and not cfg.liveness)


def observing(comp, on_state):
    """``comp`` whose check runs ``on_state(state)`` once per distinct state reached that passes it (the
    explorer checks each new state exactly once); only the Python explorer calls it."""
    inner = comp.check

    def check(s):
        v = inner(s)
        if v is None:
            on_state(s)
        return v
    return replace(comp, check=check)


def search(comp, cfg: CheckConfig, budget: int | None = None):
    """BFS on the Python back end, stopping at the first violation (and after ``budget`` states, if that is
    below the spec's bound)."""
    from .explorer import explore
    return explore(comp, strategy="bfs", symmetry=comp.symmetry, max_states=_bound(cfg, budget),
                   max_depth=cfg.max_depth, liveness=cfg.liveness, backend="python")


def _bound(cfg: CheckConfig, budget) -> int | None:
    return min((x for x in (cfg.max_states, budget) if x is not None), default=None)


def _range_guess(model: Model, original: Model, shared: bool = False) -> dict:
    """The packed ranges a mutant's native search starts from: the original's value-set analysis (once per
    process), and for a slot the original lacks (an added local) the guess the analysis takes where it gives
    up; a store outside them stops the search, which widens the range and runs again.  ``shared``: the one
    dict every search on the schema build starts from, which a search widens for the next ones."""
    from . import native
    from ..model.compile_c import _decl_range
    key = id(original)
    if _RANGES.get("key") != key:
        _RANGES.update(key=key, ranges=dict(zip(original.layout.var_names(), native.analysis_ranges(original))),
                       shared=None)
    known = _RANGES["ranges"]
    if shared:
        if _RANGES["shared"] is None:
            _RANGES["shared"] = dict(known)
        return _RANGES["shared"]
    out = {}
    for d in model.layout.decls:
        dlo, dhi = _decl_range(d.bits)
        out[d.name] = known.get(d.name) or (max(dlo, min(d.init, -16)), min(dhi, max(d.init, 15)))
    return out


_RANGES: dict = {}
PROBE = 5_000       # states a search runs on Python, where most mutants are caught, before it goes native


def observed_search(comp, original: Model, cfg: CheckConfig, fp: Fingerprints, blank, budget: int | None = None,
                    schema=None):
    """``search`` of ``comp`` (``compiled``) that, when it ends OK, has shown ``fp`` every state it reached,
    observed as ``original``'s states (``observe.Observer``).  The first PROBE states run on Python without observing:
    most mutants are caught there, before a C build would pay.  A search that goes past them runs in C with
    the observer compiled in (``QUICK_CFLAGS``), where the Python search's fingerprints cost some 20
    microseconds a state; without a C compiler, or for what the C observer cannot pack, on Python.
    ``schema``: (the original compiled, its same-frame mutants, this one's index) when ``comp`` is one of
    them: the native search then runs on one build holding all of them (``generate``'s variants), built once
    (gcc -O0: 3 s for spec 40's 129), instead of one gcc run per mutant, and goes native from its first state:
    the build is paid once a process, so the probe would save nothing."""
    from . import native
    obs = Observer(comp.model, original, comp.symmetry, blank)
    bound = _bound(cfg, budget)
    limit = 0 if schema is not None else PROBE
    if native.not_native({"liveness": cfg.liveness}) is None and (bound is None or bound > limit):
        probe = search(comp, cfg, limit) if limit else None
        if probe is not None and (probe.verdict != "INCOMPLETE" or probe.stats["states"] < limit):
            if probe.verdict != "OK":
                return probe
        else:
            try:
                code = obs.c_source([slot for slot, _ in fp.watch])
                return native.explore_native(comp, symmetry=comp.symmetry, max_states=bound,
                                             max_depth=cfg.max_depth, observer=code, on_done=fp.add_native,
                                             quick_build=True, schema=schema,
                                             range_guess=_range_guess(comp.model, original, shared=schema is not None))
            except (native.Unsupported, ValueError):
                pass
    return search(observing(comp, lambda s: fp.add(s, obs.vector(s))), cfg, budget)


def unobserved(model: Model) -> set:
    """Variables (layout names) no behaviour depends on: the ghosts, and the variables nothing reads (no guard,
    no assignment, no assertion, no property)."""
    read = set()

    def note(e, tid):
        for n in E.walk(e):
            if isinstance(n, E.Var):
                read.add(n.name)
            elif isinstance(n, E.Local):
                t = tid if n.thread is None else n.thread
                read.add(f"{model.threads[t].name}.{n.name}" if t is not None else n.name)
    for p in model.properties.values():
        for e in (p.expr, getattr(p, "trigger", None)):
            if e is not None:
                note(e, None)
    out = set()
    for t, th in enumerate(model.threads):
        for st in th.program.steps:
            for br in st.branches:
                note(br.guard, t)
                for _, v in br.updates:
                    note(v, t)
            for _, a in st.asserts:
                note(a, t)
        out |= {f"{th.name}.{n}" for n in Ctx(model, th.program).ghost_locals}
    out |= {v.name for v in model.shared if v.doc.lower().startswith("ghost")}
    return out | {d.name for d in model.layout.decls if d.kind != "pc" and d.name not in read}


# ---------------------------------------------------------------------------------------------- the runner

@dataclass
class Outcome:
    id: str
    operator: str
    role: str
    description: str
    verdict: str                      # caught | survived | equivalent | unbuildable | incomplete
    property: str | None = None       # the catching property (deadlock, calls_return for those verdicts)
    trace: int | None = None          # length of the shortest counterexample
    states: int | None = None
    seconds: float = 0.0
    detail: str = ""
    proof: str | None = None
    observable: bool | None = None    # of a survivor: do its states differ while no thread is inside the call?


@dataclass
class Report:
    subject: str
    outcomes: list
    skipped: list                     # (id, reason): duplicates and no-change rewrites, never explored
    original: dict
    seconds: float

    def count(self, verdict) -> int:
        return sum(o.verdict == verdict for o in self.outcomes)

    @property
    def operators(self) -> list:
        return sorted({o.operator for o in self.outcomes})

    @property
    def denominator(self) -> int:
        """Mutants built, less the equivalent ones."""
        return len(self.outcomes) - self.count(UNBUILDABLE) - self.count(EQUIVALENT) - self.count(REDUNDANT)

    @property
    def full(self) -> bool:
        return self.count(CAUGHT) == self.denominator

    @property
    def score(self) -> str:
        return f"{self.count(CAUGHT)}/{self.denominator}"


_CACHE: dict = {}


def prepared(subject, cfg: CheckConfig, select=None) -> dict:
    """The subject's original model, its catalogue and the properties checked, once per process.  ``select``:
    operator names or mutant ids to keep (None: every mutant)."""
    import pickle
    try:
        key = hashlib.sha1(pickle.dumps((subject, cfg.properties, tuple(select or ())))).hexdigest()
    except (AttributeError, TypeError, pickle.PicklingError):     # an in-process subject (jobs=1)
        key = (id(subject), tuple(cfg.properties or ()), tuple(select or ()))
    if key not in _CACHE:
        _CACHE.clear()
        model = subject.build()
        mutants, skipped = catalogue(model)
        if select:
            mutants = [m for m in mutants if m.operator in select or m.id in select]
        props = cfg.properties
        if props is None:
            f = getattr(subject, "checked_properties", None)
            props = f(model) if f else list(model.properties)
        _CACHE[key] = {"model": model, "mutants": {m.id: m for m in mutants}, "order": [m.id for m in mutants],
                       "skipped": skipped, "props": list(props),
                       "blank": unobserved(model)}
    return _CACHE[key]


def _original_job(subject, cfg, select):
    """The original: its verdict, the steps it reaches and, for every mutant, the fingerprints of its states
    outside the mutant's rewritten region and outside the mutant's calls."""
    p = prepared(subject, cfg, select)
    model = p["model"]
    sets, index, where = [], {}, {}
    for mid in p["order"]:
        m = p["mutants"][mid]
        threads = running(model, m.original)
        for labels in (m.hidden, interior(m.original, m)):
            hs = _pcs(model, threads, labels)
            k = repr(sorted((t, sorted(v)) for t, v in hs.items()))
            if k not in index:
                index[k] = len(sets)
                sets.append(hs)
            where.setdefault(mid, []).append(index[k])
    fp = Fingerprints(model.layout, sets, reached=True)
    t0 = time.perf_counter()
    r = observed_search(compiled(model, cfg, p["props"]), model, cfg, fp, p["blank"])
    res = fp.result()
    return {"verdict": r.label, "ok": r.verdict == "OK", "states": r.stats["states"],
            "seconds": round(time.perf_counter() - t0, 2), "reached": [sorted(x) for x in fp.reached],
            "fingerprints": {mid: [res[i] for i in where[mid]] for mid in p["order"]}}


def _schema(subject, p: dict, cfg: CheckConfig):
    """(the original compiled, [mutant models], {mutant id: index}) of the mutants whose frame is the
    original's (``compile_c.same_frame``: only what steps' branches do differs), once per process: every one
    of them searches natively on one build."""
    if p.get("schema") is None:
        from ..model.compile_c import same_frame
        models, index = [], {}
        for mid in p["order"]:
            try:
                mm = build_mutant(subject, p["mutants"][mid])
            except Unbuildable:
                continue
            if same_frame(p["model"], mm):
                models.append(mm)
                index[mid] = len(models)
        p["schema"] = (compiled(p["model"], cfg, p["props"]), tuple(models), index)
    return p["schema"]


def _mutant_job(subject, cfg, select, mid, with_proof=False, budget=None):
    p = prepared(subject, cfg, select)
    m = p["mutants"][mid]
    out = Outcome(m.id, m.operator, m.role, m.description, UNBUILDABLE)
    t0 = time.perf_counter()
    base, family, index = _schema(subject, p, cfg)
    try:
        mm = family[index[mid] - 1] if mid in index else build_mutant(subject, m)
    except Unbuildable as e:
        out.detail = str(e)
        return out, None
    threads = running(mm, m.program)
    fp = Fingerprints(mm.layout, [_pcs(mm, threads, m.hidden), _pcs(mm, threads, interior(m.program, m))],
                      watch_all=True)
    try:
        comp = compiled(mm, cfg, p["props"])
    except Exception as e:  # noqa: BLE001 - a mutant that does not compile cannot be built
        out.detail = f"does not compile: {type(e).__name__}: {e}"
        return out, None
    r = observed_search(comp, p["model"], cfg, fp, p["blank"], budget,
                        schema=(base, family, index[mid]) if mid in index else None)
    out.seconds, out.states = round(time.perf_counter() - t0, 2), r.stats["states"]
    if r.verdict in ("VIOLATION", "DEADLOCK", "LIVENESS"):
        out.verdict, out.property, out.trace = CAUGHT, r.property, len(r.path) - 1
    elif r.verdict == "OK":
        out.verdict = SURVIVED
    else:
        out.verdict = INCOMPLETE
        out.detail = (f"no violation in the first {r.stats['states']:,} states (the budget, a multiple of the "
                      "original's); the search stopped there" if budget and r.stats["states"] >= budget
                      else r.detail or r.label)
    if with_proof:
        out.proof = _proof(subject, m, out.property)
    return out, (fp.result() if r.verdict == "OK" else None)


def _proof(subject, m: Mutant, caught: str | None) -> str:
    """``prove_spec`` on the mutated model (for any number of workers when the spec asks for it): how many
    properties it proves, and what it says of the one the explorer caught (else of the first it does not)."""
    from .prove import PROVED, VIOLATED, prove_spec
    try:
        with substituted(m.original, m.program) as hits:
            _, results = prove_spec(subject)
    except Exception as e:  # noqa: BLE001 - the z3 back end refusing a mutant is its answer
        return f"error: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    if not hits[0]:
        return "n/a (mutant not substituted)"
    props = [r for r in results if r.kind == "property"]
    bad = [r for r in props if r.verdict != PROVED]
    head = f"{len(props) - len(bad)}/{len(props)} proved"
    if not bad:
        return f"PROVED {head}"
    r = next((r for r in bad if r.name == caught), None) or next((r for r in bad if r.verdict == VIOLATED), bad[0])
    return f"{head}; {r.name}: {r.verdict}"


def _dead(m: Mutant, model: Model, reached) -> bool:
    """Every step the mutant changes is one the original never reaches (an added step counts as its own)."""
    threads = running(model, m.original)
    labels = model.layout.labels[threads[0]]
    for lab in m.changed:
        base = lab.split("~", 1)[0]
        if base not in labels or any(labels.index(base) in reached[t] for t in threads):
            return False
    return True


def _decide(out: Outcome, fp, original: dict, p: dict):
    """A survivor is equivalent when it changes only steps the original never reaches, or when it reaches the
    original's states (outside the rewritten region): the same count and fingerprint.  Of a survivor, say
    whether its states differ only while a thread is inside a mutated call (``observable`` False)."""
    if out.verdict != SURVIVED:
        return
    m = p["mutants"][out.id]
    want, calls = (tuple(x) for x in original["fingerprints"][out.id])
    if _dead(m, p["model"], [set(x) for x in original["reached"]]):
        out.verdict, out.detail = EQUIVALENT, "changes only steps the original never reaches"
    elif fp is not None and tuple(fp[0]) == want:
        out.verdict, out.detail = EQUIVALENT, f"reaches the original's {want[0]:,} states" + _where(m)
    elif fp is not None:
        out.observable = tuple(fp[1]) != calls
        out.detail = (f"{fp[0][0]:,} states{_where(m)}, the original {want[0]:,}" if fp[0][0] != want[0]
                      else f"{fp[0][0]:,} states{_where(m)}, as many as the original, not the same")
        if not out.observable:
            out.detail += ("; the same states whenever no thread is inside the mutated call: the change shows "
                           "only inside the call")


def _where(m: Mutant) -> str:
    return f" (outside {', '.join(m.hidden)})" if m.hidden else ""


def _job(args):
    kind, subject, cfg, select, rest = args
    if kind == "original":
        return kind, None, _original_job(subject, cfg, select)
    return kind, rest[0], _mutant_job(subject, cfg, select, *rest)


BUDGET = 2        # a mutant's search stops after this many times the original's states: reported incomplete


class BadSubject(ValueError):
    """The subject cannot be mutation-tested: its unmutated model does not verify."""


class ResultCache:
    """Outcomes kept in ``DIR/<subject>.json`` and reused when nothing they depend on changed: the key of the
    original is a hash of the code that decides a verdict (``model/``, the explorer, this module), the whole
    model (shared variables, every program, every property), the properties checked, the check's
    configuration and every mutant's hidden sets; a mutant's adds its own program, the budget and ``--prove``.
    Only the entries of the last run are kept, per selection of mutants: a spec asked as another's companion
    (about that spec's survivors) keeps them apart from its own run, which they would otherwise replace."""

    def __init__(self, directory, subject, p: dict, cfg: CheckConfig, budget, with_proof, select=None):
        from pathlib import Path
        part = f".{_digest(sorted(select))[:12]}" if select else ""
        self.path = Path(directory) / f"{getattr(subject, 'name', 'model')}{part}.json"
        model = p["model"]
        base = (_code_version(), _model_repr(model), tuple(p["props"]), repr(cfg))
        hidden = [(mid, p["mutants"][mid].hidden, sorted(interior(p["mutants"][mid].original, p["mutants"][mid])))
                  for mid in p["order"]]
        self.okey = _digest((base, hidden))
        self.mkey = {mid: _digest((base, mid, repr(_semantic(p["mutants"][mid].program)), p["mutants"][mid].hidden,
                                   budget, with_proof)) for mid in p["order"]}
        try:
            old = json.loads(self.path.read_text())
        except (OSError, ValueError):
            old = {}
        self.old_original = old.get("original", {}).get(self.okey)
        self.old_mutants = old.get("mutants", {})
        self.new = {"original": {}, "mutants": {}}

    def original(self):
        return self.old_original

    def mutant(self, mid):
        hit = self.old_mutants.get(self.mkey[mid])
        return None if hit is None else (Outcome(**hit["outcome"]), hit["fp"])

    def put_original(self, res):
        self.new["original"] = {self.okey: res}

    def put_mutant(self, mid, res):
        from dataclasses import asdict
        self.new["mutants"][self.mkey[mid]] = {"outcome": asdict(res[0]), "fp": res[1]}

    def save(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.new))
        tmp.replace(self.path)


def undecided(report: Report) -> list:
    """The mutants a companion spec is asked about: every one the subject did not catch, but the unbuildable."""
    return [o.id for o in report.outcomes if o.verdict in (SURVIVED, EQUIVALENT, INCOMPLETE)]


def declare_redundant(report: Report, declared: dict) -> Report:
    """``declared``: mutant id -> why it is redundant.  A declared mutant that survives is REDUNDANT; one that is
    caught (or equivalent) makes the declaration STALE, which fails the run as a survivor does."""
    out = []
    for o in report.outcomes:
        if o.id not in declared:
            out.append(o)
        elif o.verdict == SURVIVED:
            out.append(replace(o, verdict=REDUNDANT, detail=f"declared redundant: {declared[o.id]}"))
        else:
            out.append(replace(o, verdict=STALE, detail=f"declared redundant, but {o.verdict}"
                               + (f" by {o.property}" if o.property else "") + ": drop it from [mutate] redundant"))
    return replace(report, outcomes=out)


def shared_mutants(subject: Model, companion: Model, ids) -> list:
    """Of ``ids``, the mutants that are the same rewrite of the same program in both models: a companion with
    other options or other operations runs other programs, and a mutant of those is not this one."""
    mine = {m.id: m for m in catalogue(subject)[0]}
    theirs = {m.id: m for m in catalogue(companion)[0]}
    return [i for i in ids if i in mine and i in theirs and mine[i].original == theirs[i].original
            and mine[i].program == theirs[i].program]


def merge(report: Report, companions: list) -> Report:
    """The subject's report with its companions' verdicts folded in (``companions``: (name, Report) pairs, each
    run on the mutants ``undecided`` named).  A mutant is caught if any spec catches it; it is equivalent only
    if it is equivalent in every spec that has it (a behaviour one workload cannot reach is still behaviour);
    else it survived, or stays incomplete if a search stopped short."""
    by = {name: {o.id: o for o in r.outcomes} for name, r in companions}
    out = []
    for o in report.outcomes:
        others = [(name, got[o.id]) for name, got in by.items() if o.id in got and got[o.id].verdict != UNBUILDABLE]
        if o.verdict in (CAUGHT, UNBUILDABLE) or not others:
            out.append(o)
            continue
        caught = [(n, x) for n, x in others if x.verdict == CAUGHT]
        if caught:
            n, x = min(caught, key=lambda c: c[1].trace or 0)
            out.append(replace(o, verdict=CAUGHT, property=x.property, trace=x.trace,
                               seconds=o.seconds + sum(y.seconds for _, y in others),
                               detail=f"caught in {n} ({o.verdict} in {report.subject})"))
            continue
        verdicts = [o.verdict] + [x.verdict for _, x in others]
        v = INCOMPLETE if INCOMPLETE in verdicts else (EQUIVALENT if all(x == EQUIVALENT for x in verdicts)
                                                       else SURVIVED)
        where = "; ".join(f"{x.verdict} in {n}" + (f" [{x.detail}]" if x.detail else "") for n, x in others)
        out.append(replace(o, verdict=v, detail=(o.detail + "; " if o.detail else "") + where,
                           seconds=o.seconds + sum(y.seconds for _, y in others)))
    return Report(report.subject, out, report.skipped, report.original,
                  round(report.seconds + sum(r.seconds for _, r in companions), 1))


def _digest(x) -> str:
    return hashlib.sha256(repr(x).encode()).hexdigest()


def _code_version() -> str:
    """A hash of the sources that decide a verdict: the model language and the models, the explorer, this."""
    from pathlib import Path
    here = Path(__file__).resolve().parent
    files = sorted((here.parent / "model").glob("*.py")) + [here / f for f in ("explorer.py", "liveness.py",
                                                                                "mutate.py")]
    h = hashlib.sha256()
    for f in files:
        h.update(f.name.encode() + f.read_bytes())
    return h.hexdigest()


def _model_repr(model: Model) -> str:
    return repr((model.name, model.shared, tuple((t.name, t.group, t.program) for t in model.threads),
                 tuple((n, q.kind, q.expr, getattr(q, "trigger", None)) for n, q in sorted(model.properties.items())),
                 sorted(model.bounds), sorted(model.locks.items())))


def run(subject, cfg: CheckConfig, *, jobs: int | None = None, with_proof: bool = False, select=None,
        progress=None, budget: float = BUDGET, cache=None) -> Report:
    """Explore the original and every mutant of ``subject`` (a Spec, or anything with ``build()``), ``jobs``
    searches at a time (default: one per core); ``select``: operator names or mutant ids.  The original goes
    first, alone: a mutant of steps it never reaches is then equivalent without a search, and every mutant's
    search stops after ``budget`` times the original's states.  ``progress(outcome)`` is called as each mutant
    is decided.  ``cache``: a directory where outcomes are kept and reused (``ResultCache``)."""
    import queue
    t0 = time.perf_counter()
    p = prepared(subject, cfg, select)
    todo = list(p["order"])
    jobs = max(1, min(jobs or os.cpu_count() or 1, len(todo) + 1))
    outcomes, waiting, state = {}, [], {"original": None}
    store = ResultCache(cache, subject, p, cfg, budget, with_proof, select) if cache else None

    def decide(mid, fp):
        _decide(outcomes[mid], fp, state["original"], p)
        if progress:
            progress(outcomes[mid])

    def take(kind, mid, res, cached=False):
        if kind == "original":
            state["original"] = res
            if not res["ok"]:
                raise BadSubject(f"the unmutated model does not verify: {res['verdict']}")
            if store and not cached:
                store.put_original(res)
            for w in waiting:
                decide(*w)
            waiting.clear()
            return
        if store and not cached:
            store.put_mutant(mid, res)
        outcomes[mid] = res[0]
        if state["original"] is None:
            waiting.append((mid, res[1]))
        else:
            decide(mid, res[1])

    def next_job():
        """The next mutant worth a search; dead and cached ones are decided on the spot."""
        while todo:
            mid = todo.pop(0)
            o = state["original"]
            m = p["mutants"][mid]
            hit = store.mutant(mid) if store else None
            if hit is not None:
                store.put_mutant(mid, hit)
                take("mutant", mid, hit, cached=True)
                continue
            if _dead(m, p["model"], [set(x) for x in o["reached"]]):
                outcomes[mid] = Outcome(m.id, m.operator, m.role, m.description, EQUIVALENT,
                                        detail="changes only steps the original never reaches (not searched)")
                if progress:
                    progress(outcomes[mid])
                continue
            return ("mutant", subject, cfg, select, (mid, with_proof, int(budget * o["states"]) + 1000))
        return None

    first = ("original", subject, cfg, select, ())
    if store and store.original() is not None:
        store.put_original(store.original())
        take("original", None, store.original(), cached=True)
        first = None
    if jobs == 1:
        if first:
            take(*_job(first))
        while (w := next_job()) is not None:
            take(*_job(w))
    else:
        done: queue.SimpleQueue = queue.SimpleQueue()
        with mp.get_context("spawn").Pool(jobs) as pool:
            def submit(w):
                pool.apply_async(_job, (w,), callback=done.put, error_callback=lambda e: done.put(e))
            busy = 0
            if first:
                submit(first)
                busy = 1
            while True:
                while busy < jobs and state["original"] is not None and (w := next_job()) is not None:
                    submit(w)
                    busy += 1
                if not busy:
                    break
                res = done.get()
                busy -= 1
                if isinstance(res, BaseException):
                    raise res
                take(*res)
    if store:
        store.save()
    return Report(getattr(subject, "name", "model"), [outcomes[i] for i in p["order"]], list(p["skipped"]),
                  state["original"], round(time.perf_counter() - t0, 1))
