"""Expressions of the modelling language.

An expression is an immutable tree.  The same tree is evaluated on a concrete
state (``evaluate``), compiled to Python source for the explorer's hot loop
(``model.compile``) and translated to z3 (``checker.z3_backend``); that is why
guards and effects are data and never Python callables.

Value semantics, shared by every back end: all values are 64-bit two's
complement integers; booleans are 0/1.  A variable stores a ``bits``-wide
signed value and wraps on store, like the C type it models.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

# Operators and their arities.  Comparisons and logic yield 0/1.
BINARY = {
    "+", "-", "*", "&", "|", "^", "<<", ">>",
    "==", "!=", "<", "<=", ">", ">=",
    "and", "or", "min", "max",
}
UNARY = {"not", "neg", "~"}


class Expr:
    """Base of every expression node; arithmetic operators build new nodes."""

    __slots__ = ()

    def __add__(self, o): return Op("+", (self, lift(o)))
    def __radd__(self, o): return Op("+", (lift(o), self))
    def __sub__(self, o): return Op("-", (self, lift(o)))
    def __rsub__(self, o): return Op("-", (lift(o), self))
    def __mul__(self, o): return Op("*", (self, lift(o)))
    def __and__(self, o): return Op("&", (self, lift(o)))
    def __rand__(self, o): return Op("&", (lift(o), self))
    def __or__(self, o): return Op("|", (self, lift(o)))
    def __ror__(self, o): return Op("|", (lift(o), self))
    def __xor__(self, o): return Op("^", (self, lift(o)))
    def __lshift__(self, o): return Op("<<", (self, lift(o)))
    def __rshift__(self, o): return Op(">>", (self, lift(o)))
    def __invert__(self): return Op("~", (self,))
    def __neg__(self): return Op("neg", (self,))
    def __lt__(self, o): return Op("<", (self, lift(o)))
    def __le__(self, o): return Op("<=", (self, lift(o)))
    def __gt__(self, o): return Op(">", (self, lift(o)))
    def __ge__(self, o): return Op(">=", (self, lift(o)))
    # == stays structural equality so expressions can live in sets and dicts;
    # use eq()/ne() to build comparisons.


@dataclass(frozen=True, slots=True)
class Const(Expr):
    value: int


@dataclass(frozen=True, slots=True)
class Var(Expr):
    """A shared variable."""
    name: str


@dataclass(frozen=True, slots=True)
class Local(Expr):
    """A local of the thread executing the step (or of ``thread`` if given)."""
    name: str
    thread: int | None = None


@dataclass(frozen=True, slots=True)
class Pc(Expr):
    """Program counter (label index) of a given thread; for invariants."""
    thread: int


@dataclass(frozen=True, slots=True)
class SelfId(Expr):
    """Index of the executing thread."""


@dataclass(frozen=True, slots=True)
class Op(Expr):
    op: str
    args: tuple


@dataclass(frozen=True, slots=True)
class Ite(Expr):
    cond: Expr
    then: Expr
    other: Expr


@dataclass(frozen=True, slots=True)
class Table(Expr):
    """``values[index]`` for a constant table; out of range gives ``default``.

    Allocator geometry (block sizes, conflict masks) is a table, so that
    finding a free block stays a finite, solver-friendly expression.
    """
    values: tuple
    index: Expr
    default: int = -1


@dataclass(frozen=True, slots=True)
class FirstFit(Expr):
    """First candidate ``i`` (in table order) with ``size_of[i] == size`` and
    ``mask & conflicts[i] == 0``; -1 when none.  Models an allocator's search
    for a free block over a small concrete geometry."""
    sizes: tuple
    conflicts: tuple
    mask: Expr
    size: Expr


def lift(x) -> Expr:
    if isinstance(x, Expr):
        return x
    if isinstance(x, bool):
        return Const(int(x))
    if isinstance(x, int):
        return Const(x)
    raise TypeError(f"cannot use {x!r} as an expression")


TRUE = Const(1)
FALSE = Const(0)


def eq(a, b) -> Expr: return Op("==", (lift(a), lift(b)))
def ne(a, b) -> Expr: return Op("!=", (lift(a), lift(b)))
def not_(a) -> Expr: return Op("not", (lift(a),))
def ite(c, a, b) -> Expr: return Ite(lift(c), lift(a), lift(b))
def min_(a, b) -> Expr: return Op("min", (lift(a), lift(b)))
def max_(a, b) -> Expr: return Op("max", (lift(a), lift(b)))


def and_(*xs) -> Expr:
    xs = [lift(x) for x in xs if not (isinstance(x, Const) and x.value)]
    if not xs:
        return TRUE
    out = xs[0]
    for x in xs[1:]:
        out = Op("and", (out, x))
    return out


def or_(*xs) -> Expr:
    xs = [lift(x) for x in xs if not (isinstance(x, Const) and not x.value)]
    if not xs:
        return FALSE
    out = xs[0]
    for x in xs[1:]:
        out = Op("or", (out, x))
    return out


def implies(a, b) -> Expr: return or_(not_(a), b)
def bit(x, mask) -> Expr: return ne(lift(x) & mask, 0)
def in_set(x, values: Iterable[int]) -> Expr: return or_(*(eq(x, v) for v in values))


def sum_(xs) -> Expr:
    xs = list(xs)
    if not xs:
        return Const(0)
    out = lift(xs[0])
    for x in xs[1:]:
        out = out + x
    return out


def table(values, index, default=-1) -> Expr:
    return Table(tuple(values), lift(index), default)


def children(e: Expr) -> tuple:
    if isinstance(e, Op):
        return e.args
    if isinstance(e, Ite):
        return (e.cond, e.then, e.other)
    if isinstance(e, Table):
        return (e.index,)
    if isinstance(e, FirstFit):
        return (e.mask, e.size)
    return ()


def walk(e: Expr):
    """Every node of ``e``, parents first (pre-order), without recursion: a
    conjunction over every step of a long worker is a chain hundreds deep."""
    stack = [e]
    while stack:
        x = stack.pop()
        yield x
        stack.extend(reversed(children(x)))


# associative operators whose left- or right-deep chains (``and_``/``or_``/``sum_`` over many operands) are
# evaluated and compiled flat, so neither Python's recursion nor its parser nests once per operand
FLAT = {"and", "or", "+", "&", "|", "^"}


def chain(e: Expr, op: str) -> list:
    """The operands of the maximal ``op`` chain rooted at ``e``, left to right."""
    out, stack = [], [e]
    while stack:
        x = stack.pop()
        if isinstance(x, Op) and x.op == op:
            stack.extend(reversed(x.args))
        else:
            out.append(x)
    return out


MASK64 = (1 << 64) - 1


def wrap(value: int, bits: int = 64) -> int:
    """Store ``value`` into a ``bits``-wide signed cell."""
    m = (1 << bits) - 1
    v = value & m
    return v - (1 << bits) if v >> (bits - 1) else v


def _shl(a, b):
    return wrap(a << b) if 0 <= b < 64 else 0


def _shr(a, b):
    return a >> b if 0 <= b < 64 else (-1 if a < 0 else 0)


def _first_fit(sizes, conflicts, mask, size):
    for i, sz in enumerate(sizes):
        if sz == size and not (mask & conflicts[i]):
            return i
    return -1


def evaluate(e: Expr, state, layout, tid: int | None = None) -> int:
    """Evaluate on a concrete state.  Slow and obviously correct: it is the
    reference the compiled successors are tested against."""
    ev = lambda x: evaluate(x, state, layout, tid)  # noqa: E731
    if isinstance(e, Const):
        return e.value
    if isinstance(e, Var):
        return state[layout.shared_slot(e.name)]
    if isinstance(e, Local):
        t = tid if e.thread is None else e.thread
        return state[layout.local_slot(t, e.name)]
    if isinstance(e, Pc):
        return state[layout.pc_slot(e.thread)]
    if isinstance(e, SelfId):
        return tid
    if isinstance(e, Ite):
        return ev(e.then) if ev(e.cond) else ev(e.other)
    if isinstance(e, Table):
        i = ev(e.index)
        return e.values[i] if 0 <= i < len(e.values) else e.default
    if isinstance(e, FirstFit):
        return _first_fit(e.sizes, e.conflicts, ev(e.mask), ev(e.size))
    if isinstance(e, Op):
        o = e.op
        if o == "and":
            return 1 if all(ev(x) for x in chain(e, o)) else 0
        if o == "or":
            return 1 if any(ev(x) for x in chain(e, o)) else 0
        if o in FLAT:
            vals = [ev(x) for x in chain(e, o)]
            acc = vals[0]
            for v in vals[1:]:
                acc = wrap(acc + v) if o == "+" else acc & v if o == "&" else acc | v if o == "|" else acc ^ v
            return acc
        vals = [ev(a) for a in e.args]
        if o == "not":
            return 0 if vals[0] else 1
        if o == "neg":
            return wrap(-vals[0])
        if o == "~":
            return ~vals[0]
        a, b = vals
        if o == "+": return wrap(a + b)
        if o == "-": return wrap(a - b)
        if o == "*": return wrap(a * b)
        if o == "&": return a & b
        if o == "|": return a | b
        if o == "^": return a ^ b
        if o == "<<": return _shl(a, b)
        if o == ">>": return _shr(a, b)
        if o == "==": return int(a == b)
        if o == "!=": return int(a != b)
        if o == "<": return int(a < b)
        if o == "<=": return int(a <= b)
        if o == ">": return int(a > b)
        if o == ">=": return int(a >= b)
        if o == "min": return min(a, b)
        if o == "max": return max(a, b)
    raise TypeError(f"unknown expression node {e!r}")


def to_python(e: Expr, slot_of, local_slot_of, pc_slot_of, tid) -> str:
    """Python source for ``e`` reading the state tuple ``s``.

    ``slot_of(name)``, ``local_slot_of(thread, name)`` and ``pc_slot_of(thread)``
    resolve names to tuple indices at compile time, so the generated code is
    plain indexing and arithmetic."""
    rec = lambda x: to_python(x, slot_of, local_slot_of, pc_slot_of, tid)  # noqa: E731
    if isinstance(e, Const):
        return repr(e.value)
    if isinstance(e, Var):
        return f"s[{slot_of(e.name)}]"
    if isinstance(e, Local):
        t = tid if e.thread is None else e.thread
        return f"s[{local_slot_of(t, e.name)}]"
    if isinstance(e, Pc):
        return f"s[{pc_slot_of(e.thread)}]"
    if isinstance(e, SelfId):
        return repr(tid)
    if isinstance(e, Ite):
        return f"({rec(e.then)} if {rec(e.cond)} else {rec(e.other)})"
    if isinstance(e, Table):
        return f"_table({e.values!r}, {rec(e.index)}, {e.default})"
    if isinstance(e, FirstFit):
        return f"_first_fit({e.sizes!r}, {e.conflicts!r}, {rec(e.mask)}, {rec(e.size)})"
    if isinstance(e, Op) and e.op in ("and", "or"):
        # x != c1 and x != c2 ... (a thread at none of its busy steps) becomes x not in {c1, c2, ...}; likewise
        # x == c1 or x == c2 ...: one set test instead of a line growing with the program
        o, cmp = e.op, ("!=" if e.op == "and" else "==")
        args, sets = [], {}
        for a in chain(e, o):
            if isinstance(a, Op) and a.op == cmp and isinstance(a.args[1], Const) and \
                    isinstance(a.args[0], (Var, Local, Pc)):
                key = rec(a.args[0])
                if key not in sets:
                    sets[key] = []
                    args.append(key)
                sets[key].append(a.args[1].value)
            else:
                args.append(rec(a))
        test = "not in" if o == "and" else "in"
        parts = [f"({a})" if a not in sets else
                 f"({a}) {cmp} {sets[a][0]}" if len(sets[a]) == 1 else
                 f"({a}) {test} {{{', '.join(map(repr, sorted(set(sets[a]))))}}}" for a in args]
        return f"(1 if {f' {o} '.join(parts)} else 0)"
    if isinstance(e, Op) and e.op in FLAT:
        o, args = e.op, [rec(a) for a in chain(e, e.op)]
        if len(args) > 32:       # a + b + c ... is a nested tree to Python's compiler too: fold a flat tuple
            return f"{_FOLD[o]}(({', '.join(args)},))"
        if o == "+": return f"_wrap({' + '.join(f'({a})' for a in args)})"     # wrapping once is wrapping each sum
        return f"({f' {o} '.join(f'({a})' for a in args)})"
    if isinstance(e, Op):
        o, args = e.op, [rec(a) for a in e.args]
        if o == "not": return f"(0 if ({args[0]}) else 1)"
        if o == "neg": return f"_wrap(-({args[0]}))"
        if o == "~": return f"(~({args[0]}))"
        a, b = args
        if o in ("+", "-", "*"): return f"_wrap(({a}) {o} ({b}))"
        if o in ("&", "|", "^"): return f"(({a}) {o} ({b}))"
        if o == "<<": return f"_shl({a}, {b})"
        if o == ">>": return f"_shr({a}, {b})"
        if o in ("==", "!=", "<", "<=", ">", ">="): return f"(1 if ({a}) {o} ({b}) else 0)"
        if o == "min": return f"min({a}, {b})"
        if o == "max": return f"max({a}, {b})"
    raise TypeError(f"unknown expression node {e!r}")


def _table(values, i, default):
    return values[i] if 0 <= i < len(values) else default


def _fold(op):
    def fold(xs):
        acc = xs[0]
        for x in xs[1:]:
            acc = op(acc, x)
        return acc
    return fold


_FOLD = {"+": "_sum_all", "&": "_and_all", "|": "_or_all", "^": "_xor_all"}

RUNTIME = {
    "_wrap": wrap, "_shl": _shl, "_shr": _shr,
    "_table": _table, "_first_fit": _first_fit,
    "_sum_all": lambda xs: wrap(sum(xs)), "_and_all": _fold(int.__and__), "_or_all": _fold(int.__or__),
    "_xor_all": _fold(int.__xor__),
}
