"""Translation of a ``Model`` into z3 terms, from the very same definition the
explorer compiles (no second hand-written encoding).

Value semantics (``model/expr.py``): every value is a 64-bit two's complement
integer and a variable stores a ``bits``-wide signed value, wrapping on store.
Here a state variable is a z3 ``BitVec`` of its declared width (a 64-bit
counter is a ``BitVec(64)``), read as its 64-bit sign extension and stored as
the low ``bits`` of the 64-bit result.  Every bit-vector value of the declared
width is exactly one storable value, so a symbolic state can never hold a value
the explicit model could not, and z3's modular ``bvadd``/``bvmul``, signed
comparisons, ``bvshl`` (0 for shift amounts >= 64 or negative) and ``bvashr``
(sign fill) are the interpreter's ``wrap``/``_shl``/``_shr`` bit for bit.  Only
program counters get a range constraint (``0 <= pc <= done``, see ``wf``).

The pieces:

* ``Encoder.state(tag)``: fresh symbolic state (one term per layout slot);
* ``init(s)``: the initial state;
* ``trans(s, t, sel)``: the transition relation, one disjunct per (thread,
  step, branch) with frame conditions (every slot not written keeps its value);
  ``sel`` (a fresh integer-valued selector) names the disjunct taken, so a
  model of a path gives real (thread, pc, branch) moves;
* ``bad(s, prop)`` / ``holds(s, prop)``: assertion, invariant and final
  properties as state predicates; ``deadlock`` too;
* ``decode(m, s)``: a z3 model's state as the explorer's state tuple.

Constructs the translator does not know raise ``EncodeError`` naming the model
element (thread, step, branch, property) in which they occur.
"""
from __future__ import annotations

from dataclasses import dataclass

import z3

from ..model import expr as E
from ..model.program import Model, Var

BV64 = z3.BitVecSort(64)


class EncodeError(ValueError):
    """A model element the z3 back end cannot translate."""

    def __init__(self, where: str, message: str):
        super().__init__(f"{where}: {message}")
        self.where = where


# one comparison term built, not all six and one kept
_COMPARE = {"==": lambda a, b: a == b, "!=": lambda a, b: a != b, "<": lambda a, b: a < b,
            "<=": lambda a, b: a <= b, ">": lambda a, b: a > b, ">=": lambda a, b: a >= b}


def _bv64(v: int):
    return z3.BitVecVal(v & E.MASK64, 64)


@dataclass(frozen=True)
class MoveRef:
    """One disjunct of the transition relation."""
    index: int
    thread: int
    pc: int
    branch: int


def substitution(src: list, dst: list):
    """term -> term with the constants ``src`` replaced by ``dst`` (same sorts: two states of one encoder).
    A term over one state is built once in Python and substituted for every other state it is needed on
    (candidates before and after a step, BMC's unrolling), several times faster than building it again, and
    the same term.  ``z3.substitute`` is the same C call, but it re-checks every pair's sorts in Python on
    each call, which costs more than the substitution itself when thousands of terms go over the same
    pairs."""
    from z3.z3 import Ast, Z3_substitute, _to_expr_ref
    n = len(src)
    frm, to = (Ast * n)(*(x.as_ast() for x in src)), (Ast * n)(*(y.as_ast() for y in dst))
    keep = (src, dst)       # the arrays hold raw pointers: the expressions must outlive them

    def sub(term):
        return _to_expr_ref(Z3_substitute(term.ctx.ref(), term.as_ast(), n, frm, to), term.ctx)
    sub.keep = keep
    return sub


class Encoder:
    """z3 view of one model.

    ``SelfId`` of each thread is its index (the parametric proof needs no
    other identities: its side condition S5).  ``slot_bits`` may widen a slot
    (used by abstractions); by default the declared width."""

    def __init__(self, model: Model, slot_bits: dict | None = None):
        self.model = model
        self.lay = model.layout
        n = len(model.threads)
        self._consts = {}      # value -> its 64-bit numeral (built once; the same term every time)
        self._reads = {}       # a slot's constant -> its 64-bit read (likewise)
        self.ids = [self._bv(i) for i in range(n)]
        self.bits = [min(max(d.bits, 1), 64) for d in self.lay.decls]
        for k, b in (slot_bits or {}).items():
            self.bits[k] = b
        self.names = self.lay.var_names()
        self.moves: list[MoveRef] = []
        for t, th in enumerate(model.threads):
            for pc, st in enumerate(th.program.steps):
                for b in range(len(st.branches)):
                    self.moves.append(MoveRef(len(self.moves), t, pc, b))
        self._counter = 0

    def _bv(self, v: int):
        c = self._consts.get(v)
        if c is None:
            c = self._consts[v] = _bv64(v)
        return c

    # states -----------------------------------------------------------------
    def state(self, tag: str) -> list:
        return [z3.BitVec(f"{tag}|{nm}", b) for nm, b in zip(self.names, self.bits)]

    def fresh(self, prefix: str) -> str:
        self._counter += 1
        return f"{prefix}{self._counter}"

    def read(self, s, k):
        b = self.bits[k]
        if b == 64:
            return s[k]
        x = s[k]
        hit = self._reads.get(id(x))
        if hit is None or hit[0] is not x:      # keyed by the slot's constant, kept alive beside its term
            hit = self._reads[id(x)] = (x, z3.SignExt(64 - b, x))
        return hit[1]

    def store(self, k, v64):
        b = self.bits[k]
        return v64 if b == 64 else z3.Extract(b - 1, 0, v64)

    def read_store(self, k, v64):
        """``v64`` stored into slot k and read back (wrapped to its width)."""
        b = self.bits[k]
        return v64 if b == 64 else z3.SignExt(64 - b, z3.Extract(b - 1, 0, v64))

    def const(self, k, value: int):
        return z3.BitVecVal(value & ((1 << self.bits[k]) - 1), self.bits[k])

    def init(self, s):
        return z3.And([s[k] == self.const(k, d.init) for k, d in enumerate(self.lay.decls)])

    def equal(self, s, v: tuple):
        """``s`` is the concrete state ``v``."""
        return z3.And([s[k] == self.const(k, x) for k, x in enumerate(v)])

    def wf(self, s):
        """Well-formed: every pc is a label index (0 .. done)."""
        out = []
        for t in range(len(self.model.threads)):
            k = self.lay.pc_slot(t)
            out.append(z3.And(self.read(s, k) >= 0, self.read(s, k) <= self.lay.done_pc[t]))
        return z3.And(out)

    def pc_is(self, s, t, pc):
        return s[self.lay.pc_slot(t)] == self.const(self.lay.pc_slot(t), pc)

    def decode(self, m: z3.ModelRef, s) -> tuple:
        out = []
        for k, v in enumerate(s):
            x = m.eval(v, model_completion=True).as_long()
            b = self.bits[k]
            out.append(x - (1 << b) if x >> (b - 1) else x)
        return tuple(out)

    # expressions --------------------------------------------------------------
    def expr(self, e, s, tid, where="expression"):
        """64-bit term for ``e`` in state ``s`` executed by thread ``tid``."""
        ex = lambda x: self.expr(x, s, tid, where)  # noqa: E731
        if isinstance(e, E.Const):
            return self._bv(e.value)
        if isinstance(e, E.Var):
            if e.name not in self.lay.shared_index:
                raise EncodeError(where, f"unknown shared variable '{e.name}'")
            return self.read(s, self.lay.shared_slot(e.name))
        if isinstance(e, E.Local):
            t = tid if e.thread is None else e.thread
            if t is None:
                raise EncodeError(where, f"Local('{e.name}') without a thread outside a thread's step")
            if not 0 <= t < len(self.model.threads) or e.name not in self.lay.local_index[t]:
                raise EncodeError(where, f"thread {t} has no local '{e.name}'")
            return self.read(s, self.lay.local_slot(t, e.name))
        if isinstance(e, E.Pc):
            if not 0 <= e.thread < len(self.model.threads):
                raise EncodeError(where, f"Pc({e.thread}) names no thread")
            return self.read(s, self.lay.pc_slot(e.thread))
        if isinstance(e, E.SelfId):
            if tid is None:
                raise EncodeError(where, "SelfId outside a thread's step")
            return self.ids[tid]
        if isinstance(e, E.Ite):
            return z3.If(self.cond(e.cond, s, tid, where), ex(e.then), ex(e.other))
        if isinstance(e, E.Table):
            i = ex(e.index)
            out = self._bv(e.default)
            for j in range(len(e.values) - 1, -1, -1):
                out = z3.If(i == j, self._bv(e.values[j]), out)
            return out
        if isinstance(e, E.FirstFit):
            mask, size = ex(e.mask), ex(e.size)
            out = self._bv(-1)
            for j in range(len(e.sizes) - 1, -1, -1):
                ok = z3.And(size == e.sizes[j], (mask & self._bv(e.conflicts[j])) == 0)
                out = z3.If(ok, self._bv(j), out)
            return out
        if isinstance(e, E.Op):
            o = e.op
            if o in ("==", "!=", "<", "<=", ">", ">=", "and", "or", "not"):
                return z3.If(self.cond(e, s, tid, where), self._bv(1), self._bv(0))
            if o not in E.BINARY and o not in E.UNARY:
                raise EncodeError(where, f"unsupported operator '{o}'")
            args = [ex(a) for a in e.args]
            if o == "neg": return -args[0]
            if o == "~": return ~args[0]
            if len(args) != 2:
                raise EncodeError(where, f"operator '{o}' with {len(args)} operands")
            a, b = args
            if o == "+": return a + b
            if o == "-": return a - b
            if o == "*": return a * b
            if o == "&": return a & b
            if o == "|": return a | b
            if o == "^": return a ^ b
            if o == "<<": return a << b          # bvshl: 0 when b >= 64 or b < 0 (as unsigned)
            if o == ">>": return a >> b          # bvashr: sign fill when b out of range
            if o == "min": return z3.If(a <= b, a, b)
            if o == "max": return z3.If(a >= b, a, b)
            raise EncodeError(where, f"unsupported operator '{o}'")
        raise EncodeError(where, f"unsupported expression node {type(e).__name__}: {e!r}")

    def cond(self, e, s, tid, where="condition"):
        """z3 Bool for ``e != 0``."""
        if isinstance(e, E.Const):
            return z3.BoolVal(e.value != 0)
        if isinstance(e, E.Op):
            o = e.op
            if o == "and":
                return z3.And(self.cond(e.args[0], s, tid, where), self.cond(e.args[1], s, tid, where))
            if o == "or":
                return z3.Or(self.cond(e.args[0], s, tid, where), self.cond(e.args[1], s, tid, where))
            if o == "not":
                return z3.Not(self.cond(e.args[0], s, tid, where))
            if o in ("==", "!=", "<", "<=", ">", ">="):
                a, b = (self.expr(x, s, tid, where) for x in e.args)
                return _COMPARE[o](a, b)
        return self.expr(e, s, tid, where) != 0

    # transitions --------------------------------------------------------------
    def where(self, mv: MoveRef) -> str:
        th = self.model.threads[mv.thread]
        return f"thread {th.name} step {th.program.steps[mv.pc].label} branch {mv.branch}"

    def move(self, s, t, mv: MoveRef):
        """The disjunct of ``mv``: its pc, its guard, its updates, the frame."""
        en, written = self._move_effect(s, mv)
        parts = [en]
        for k in range(len(s)):
            parts.append(t[k] == written[k] if k in written else t[k] == s[k])
        return z3.And(parts)

    def _move_effect(self, s, mv):
        """(enabling condition, {slot: stored value}) of one (thread, step, branch)."""
        lay = self.lay
        th = self.model.threads[mv.thread]
        br = th.program.steps[mv.pc].branches[mv.branch]
        w = self.where(mv)
        tid = mv.thread
        en = z3.And(self.pc_is(s, tid, mv.pc), self.cond(br.guard, s, tid, w + " guard"))
        written = {}
        for target, value in br.updates:
            if isinstance(target, Var):
                if target.name not in lay.shared_index:
                    raise EncodeError(w, f"writes unknown variable '{target.name}'")
                k = lay.shared_slot(target.name)
            elif isinstance(target, E.Local):
                tt = tid if target.thread is None else target.thread
                if target.name not in lay.local_index[tt]:
                    raise EncodeError(w, f"writes unknown local '{target.name}'")
                k = lay.local_slot(tt, target.name)
            else:
                raise EncodeError(w, f"cannot assign to {target!r}")
            written[k] = self.store(k, self.expr(value, s, tid, f"{w} update of {self.names[k]}"))
        pk = lay.pc_slot(tid)
        written[pk] = self.const(pk, lay.pc_of_label(tid, br.goto))
        return en, written

    def trans_disjunctive(self, s, t, sel=None, moves=None):
        """Transition relation as the issue states it: one disjunct per
        (thread, step, branch), each with its frame conditions; with ``sel``
        the disjunct taken is ``sel == move.index``."""
        ds = []
        for mv in (self.moves if moves is None else moves):
            d = self.move(s, t, mv)
            ds.append(z3.And(sel == self.sel_val(mv.index), d) if sel is not None else d)
        return z3.Or(ds)

    SEL_BITS = 16

    def selector(self, name: str):
        return z3.BitVec(name, self.SEL_BITS)

    def sel_val(self, i: int):
        return z3.BitVecVal(i, self.SEL_BITS)

    def _effects(self, s):
        """Per move: (enabling condition, {slot: stored value})."""
        key = id(s)
        if getattr(self, "_eff_key", None) == key:
            return self._eff
        out = [self._move_effect(s, mv) for mv in self.moves]
        self._eff_key, self._eff = key, out
        return out

    def trans(self, s, t, sel=None, moves=None):
        """Transition relation in functional form, equivalent to
        ``trans_disjunctive`` (tested): the selector ``sel`` (a fresh
        bit-vector) picks one enabled disjunct, and each slot of ``t`` is the
        value that disjunct stores there, or the slot of ``s`` when the
        disjunct does not write it (the frame condition)."""
        if sel is None:
            sel = self.selector(self.fresh("sel"))
        moves = self.moves if moves is None else moves
        eff = self._effects(s)
        parts = [z3.Or([z3.And(sel == self.sel_val(mv.index), eff[mv.index][0]) for mv in moves])]
        for k in range(len(s)):
            v = s[k]
            for mv in moves:
                w = eff[mv.index][1]
                if k in w:
                    v = z3.If(sel == self.sel_val(mv.index), w[k], v)
            parts.append(t[k] == v)
        return z3.And(parts)

    # footprints (partial-order reduction) --------------------------------------
    def _slot_of(self, e, tid):
        if isinstance(e, E.Var):
            return self.lay.shared_index.get(e.name)
        if isinstance(e, E.Local):
            t = tid if e.thread is None else e.thread
            return None if t is None else self.lay.local_index[t].get(e.name)
        if isinstance(e, E.Pc):
            return self.lay.pc_slot(e.thread) if 0 <= e.thread < len(self.model.threads) else None
        return None

    def reads(self, e, tid) -> set:
        """Slots an expression evaluated by thread ``tid`` can read (syntactically)."""
        out = set()
        for x in E.walk(e):
            k = self._slot_of(x, tid)
            if k is not None:
                out.add(k)
        return out

    def footprint(self, mv: MoveRef) -> tuple[frozenset, frozenset]:
        """(slots read, slots written) by one move, syntactically: its own pc
        (read by the pc test, written by the goto), every slot its guard and
        the right-hand sides of its updates mention, and its update targets."""
        fp = getattr(self, "_fp", None)
        if fp is None:
            fp = self._fp = {}
        if mv.index not in fp:
            br = self.model.threads[mv.thread].program.steps[mv.pc].branches[mv.branch]
            pk = self.lay.pc_slot(mv.thread)
            r, w = {pk} | self.reads(br.guard, mv.thread), {pk}
            for target, value in br.updates:
                r |= self.reads(value, mv.thread)
                k = self._slot_of(target, mv.thread)
                if k is None:
                    raise EncodeError(self.where(mv), f"cannot assign to {target!r}")
                w.add(k)
            fp[mv.index] = (frozenset(r), frozenset(w))
        return fp[mv.index]

    def independent(self, a: MoveRef, b: MoveRef) -> bool:
        """Moves of two different threads neither of which writes a slot the
        other reads or writes: from any state in which both can run, they run
        in either order, each with the same guard outcome and the same
        updates, and reach the same state."""
        if a.thread == b.thread:
            return False
        ra, wa = self.footprint(a)
        rb, wb = self.footprint(b)
        return not (wa & (rb | wb)) and not (wb & ra)

    def enabled(self, s, tid=None):
        out = []
        for mv in self.moves:
            if tid is not None and mv.thread != tid:
                continue
            br = self.model.threads[mv.thread].program.steps[mv.pc].branches[mv.branch]
            out.append(z3.And(self.pc_is(s, mv.thread, mv.pc),
                              self.cond(br.guard, s, mv.thread, self.where(mv) + " guard")))
        return z3.Or(out)

    def all_done(self, s):
        return z3.And([self.pc_is(s, t, self.lay.done_pc[t]) for t in range(len(self.model.threads))])

    # properties ---------------------------------------------------------------
    def bad(self, s, prop: str):
        """States violating ``prop`` (as the explorer's ``check``/``check_final`` see them)."""
        if prop == "deadlock":
            return z3.And(z3.Not(self.enabled(s)), z3.Not(self.all_done(s)))
        if prop not in self.model.properties:
            raise EncodeError(f"property {prop}", "unknown property")
        p = self.model.properties[prop]
        where = f"property {prop}"
        out = []
        for t, pc, a in self.model.assertion_sites(prop):
            th = self.model.threads[t]
            out.append(z3.And(self.pc_is(s, t, pc),
                              z3.Not(self.cond(a, s, t, f"{where} asserted at {th.name} step "
                                                        f"{th.program.steps[pc].label}"))))
        if p.kind == "invariant":
            out.append(z3.Not(self.cond(p.expr, s, None, where)))
        elif p.kind == "final":
            out.append(z3.And(self.all_done(s), z3.Not(self.cond(p.expr, s, None, where))))
        elif p.kind not in ("assertion",):
            raise EncodeError(where, f"property kind '{p.kind}' is not a state predicate (liveness needs the explorer)")
        return z3.Or(out) if out else z3.BoolVal(False)

    def holds(self, s, prop: str):
        return z3.Not(self.bad(s, prop))

    def expr_holds(self, s, e, where="lemma"):
        return self.cond(e, s, None, where)

    def safety_properties(self, properties=None) -> list[str]:
        names = list(self.model.properties) if properties is None else list(properties)
        return [p for p in names if p in self.model.properties
                and self.model.properties[p].kind in ("invariant", "assertion", "final")]


def successors(model: Model, state: tuple, enc: Encoder | None = None, disjunctive: bool = False) -> list:
    """All successors of a concrete state as z3 enumerates them from the
    transition relation: [(tid, pc, branch, state')], sorted."""
    enc = enc or Encoder(model)
    s, t = enc.state("s"), enc.state("t")
    sel = enc.selector("sel")
    solver = z3.Solver()
    solver.add(enc.equal(s, state), (enc.trans_disjunctive if disjunctive else enc.trans)(s, t, sel))
    out = []
    while solver.check() == z3.sat:
        m = solver.model()
        i = m.eval(sel, model_completion=True).as_long()
        if i >= len(enc.moves):
            raise EncodeError("transition relation", f"selector {i} names no move")
        mv = enc.moves[i]
        nxt = enc.decode(m, t)
        out.append((mv.thread, mv.pc, mv.branch, nxt))
        # block this (move, successor) pair; a move is deterministic, so block the move
        solver.add(sel != enc.sel_val(i))
    return sorted(out)


def check_model(model: Model, properties=None) -> None:
    """Translate everything once; raise EncodeError on the first element z3 cannot take."""
    enc = Encoder(model)
    s, t = enc.state("s"), enc.state("t")
    enc.trans(s, t)
    for p in enc.safety_properties(properties):
        enc.bad(s, p)
