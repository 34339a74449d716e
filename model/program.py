"""Models as data: typed variables, threads of labelled guarded steps, locks
and properties.  Every back end (explorer, z3, replay, conformance) reads this
one definition.

A state is a flat tuple of ints laid out by ``Layout``: the shared variables,
then for each thread its program counter followed by its locals.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from .expr import Const, Expr, Local, Op, Var, lift


@dataclass(frozen=True)
class VarDecl:
    name: str
    bits: int = 64
    init: int = 0
    kind: str = "int"          # int | bool | flags | mask | owner
    doc: str = ""


@dataclass(frozen=True)
class Branch:
    """One guarded alternative of a step: if ``guard`` holds, apply all
    ``updates`` simultaneously (right-hand sides read the pre-state) and
    jump to ``goto``."""
    guard: Expr
    updates: tuple            # ((Var | Local, Expr), ...)
    goto: str
    note: str = ""


@dataclass(frozen=True)
class Step:
    label: str
    branches: tuple
    section: str = ""          # section of the design document this step encodes
    code: str = ""             # the C statement(s) it stands for
    kind: str = "plain"        # plain | acquire | release | sleep | alloc | free | return ...
    call: str | None = None    # operation in progress at this pc (for liveness)
    asserts: tuple = ()        # ((property name, Expr), ...) checked whenever a thread is here
    lock: str | None = None


@dataclass(frozen=True)
class Program:
    role: str
    steps: tuple
    locals: tuple = ()         # VarDecl
    DONE = "done"

    @property
    def labels(self) -> list[str]:
        return [s.label for s in self.steps] + [self.DONE]

    def step(self, label: str) -> Step:
        for s in self.steps:
            if s.label == label:
                return s
        raise KeyError(label)


@dataclass(frozen=True)
class ThreadDef:
    name: str
    program: Program
    group: str = ""            # threads sharing a non-empty group are interchangeable


@dataclass(frozen=True)
class Property:
    name: str
    kind: str                  # invariant | assertion | final | deadlock | liveness
    description: str
    expr: Expr | None = None   # for invariant and final
    section: str = ""
    # when the property is exercised (see ``Model.trigger_sites``): for an invariant or a final property, a state
    # predicate (None: every state exercises it); assertions are exercised where they are checked
    trigger: Expr | None = None


@dataclass
class Model:
    name: str
    shared: tuple
    threads: tuple
    properties: dict = field(default_factory=dict)   # name -> Property
    locks: dict = field(default_factory=dict)        # lock var name -> "mutex" | "spinlock"
    options: dict = field(default_factory=dict)
    doc: str = ""
    # properties whose violation means a bound of the model was reached (e.g. an allocator window too small),
    # not a defect: name -> what to do.  The explorer and bmc always check them and report INCOMPLETE.
    bounds: dict = field(default_factory=dict)

    def __post_init__(self):
        self.layout = Layout(self)
        self.check_wellformed()

    def check_wellformed(self):
        names = {v.name for v in self.shared}
        for t in self.threads:
            labels = set(t.program.labels)
            local_names = {v.name for v in t.program.locals}
            for st in t.program.steps:
                for br in st.branches:
                    if br.goto not in labels:
                        raise ValueError(f"{t.name}: step {st.label} jumps to unknown label {br.goto}")
                    for target, _ in br.updates:
                        if isinstance(target, Var) and target.name not in names:
                            raise ValueError(f"{t.name}: step {st.label} writes unknown variable {target.name}")
                        if isinstance(target, Local) and target.name not in local_names:
                            raise ValueError(f"{t.name}: step {st.label} writes unknown local {target.name}")
                for prop, _ in st.asserts:
                    if prop not in self.properties:
                        self.properties[prop] = Property(prop, "assertion", prop)

    def assertion_sites(self, prop: str) -> list:
        """[(thread, pc, expr)]: where the assertion property ``prop`` is checked."""
        return [(t, pc, a) for t, th in enumerate(self.threads) for pc, st in enumerate(th.program.steps)
                for p, a in st.asserts if p == prop]

    def trigger_sites(self, prop: str) -> list:
        """[(thread | None, pc | None, Expr)]: the states that exercise ``prop``.  An assertion is exercised
        where it is checked, and, when it reads ``a -> b``, only where ``a`` holds: an implication whose
        premise never held has tested nothing.  A run that reaches none of them left ``prop`` vacuous."""
        p = self.properties[prop]
        if p.kind == "assertion":
            return [(t, pc, antecedent(a)) for t, pc, a in self.assertion_sites(prop)]
        return [(None, None, p.trigger if p.trigger is not None else Const(1))]

    def thread_index(self, name: str) -> int:
        for i, t in enumerate(self.threads):
            if t.name == name:
                return i
        raise KeyError(name)

    def initial_state(self) -> tuple:
        return self.layout.initial()

    def fingerprint(self) -> dict:
        """What a trace must match to be replayed on this model."""
        return {"model": self.name, "vars": self.layout.var_names(),
                "threads": [t.name for t in self.threads]}


class Layout:
    def __init__(self, model: Model):
        self.model = model
        self.shared_index = {v.name: i for i, v in enumerate(model.shared)}
        self.decls = list(model.shared)
        self.pc_index = []
        self.local_index = []
        self.thread_slices = []
        pos = len(model.shared)
        for t in model.threads:
            start = pos
            self.pc_index.append(pos)
            self.decls.append(VarDecl(f"{t.name}.pc", bits=16, init=0, kind="pc"))
            pos += 1
            idx = {}
            for v in t.program.locals:
                idx[v.name] = pos
                self.decls.append(VarDecl(f"{t.name}.{v.name}", v.bits, v.init, v.kind, v.doc))
                pos += 1
            self.local_index.append(idx)
            self.thread_slices.append((start, pos))
        self.size = pos
        self.labels = [t.program.labels for t in model.threads]
        self.done_pc = [len(l) - 1 for l in self.labels]

    def shared_slot(self, name: str) -> int:
        return self.shared_index[name]

    def local_slot(self, tid: int, name: str) -> int:
        return self.local_index[tid][name]

    def pc_slot(self, tid: int) -> int:
        return self.pc_index[tid]

    def var_names(self) -> list[str]:
        return [d.name for d in self.decls]

    def initial(self) -> tuple:
        return tuple(d.init for d in self.decls)

    def label(self, tid: int, pc: int) -> str:
        return self.labels[tid][pc]

    def pc_of_label(self, tid: int, label: str) -> int:
        return self.labels[tid].index(label)

    def as_dict(self, state) -> dict:
        """Readable view: pcs as labels, everything else as ints."""
        out = {}
        for i, d in enumerate(self.decls):
            out[d.name] = state[i]
        for t, slot in enumerate(self.pc_index):
            out[self.decls[slot].name] = self.labels[t][state[slot]]
        return out


def antecedent(e: Expr) -> Expr:
    """``a`` of an assertion written ``implies(a, b)`` (``or_(not_(a), b)``), else true."""
    if isinstance(e, Op) and e.op == "or" and isinstance(e.args[0], Op) and e.args[0].op == "not":
        return e.args[0].args[0]
    return Const(1)


def assign(target, value) -> tuple:
    return (target, lift(value))
