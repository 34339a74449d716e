"""A model as Promela, so SPIN can check exactly what the explorer checks.

The translation keeps the explorer's state graph, state for state, so that
SPIN's ``states, stored`` equals the explorer's distinct-state count (without
symmetry).  What that takes, and why each choice is made:

- Every variable is a global: shared variables, each thread's locals and its
  program counter (``pc_<thread>``).  Invariants, final properties and
  ``Pc``/``Local(thread=)`` read other threads' variables, which Promela
  locals cannot offer.  The explicit pc duplicates SPIN's own process counter
  and is a function of it, so it adds no state.
- One ``active proctype`` per thread instance: every process exists in the
  initial state, so there are no start-up states (no ``init``, no ``run``).
- A model step is a label of its proctype and an ``if`` over its branches;
  each branch is its own ``d_step { guard -> updates; pc = goto }`` followed
  by ``goto`` the target step.  A ``d_step`` resolves nondeterminism inside
  it to the first true guard, so branches whose guards overlap (an init that
  may succeed or fail) must be separate options of the ``if``, never one
  ``if`` inside the ``d_step``.  A step whose guards are all false blocks.
- Updates are simultaneous: right-hand sides that read a variable the branch
  writes are evaluated first into ``hidden`` scratch globals (not part of the
  state vector).  Stores wrap to the declared width, as ``model/compile.py``
  does.  Widths up to 8 bits live in a ``byte`` holding the two's-complement
  bits (read back through ``S<bits>()``) to keep SPIN's state vector as small
  as a hand-written model's; wider ones in ``short``/``int``.  SPIN has no
  64-bit integers: a 64-bit variable is an ``int``, exact while the model's
  values fit in 32 bits (every shipped spec's do; constants that do not are
  refused here).
- A finished thread waits at ``end_<thread>: false``: a valid end state that
  never terminates, so process deaths (which SPIN only allows in reverse
  creation order, each a new state) never add states.  A thread blocked
  anywhere else is SPIN's invalid end state: the explorer's DEADLOCK.
- Properties are checked by a monitor process, on every reachable state,
  exactly where ``compile.py``'s ``check`` evaluates them: the assertions of
  each thread's current step, then the invariants, and the final properties
  once every thread is done.  The monitor's one ``d_step { !(ok_1 && ... && ok_n) -> assert(ok_1); ... }``
  is enabled only in a violating state, so the monitor adds no state and never
  hides a deadlock (it waits at an end label).  Each assertion's text begins
  with ``P_<property>`` (a hidden constant 0) so pan's message names it.
"""
from __future__ import annotations

import re

from ..model import expr as E
from ..model.program import Model, Var

INT_MIN, INT_MAX = -(1 << 31), (1 << 31) - 1


class PromelaError(ValueError):
    """The model uses something this translation cannot express exactly."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field


# Promela's keywords and pan's own names: a thread called ``init`` or ``never`` must not become one
RESERVED = {"active", "assert", "atomic", "bit", "bool", "break", "byte", "chan", "d_step", "do", "else", "empty",
            "enabled", "eval", "false", "fi", "full", "goto", "hidden", "if", "init", "inline", "int", "len", "local",
            "ltl", "mtype", "nempty", "never", "nfull", "notrace", "np_", "od", "of", "pc_value", "pid", "print",
            "printf", "priority", "proctype", "provided", "run", "select", "short", "show", "skip", "timeout",
            "trace", "true", "typedef", "unless", "unsigned", "xr", "xs", "monitor", "main", "now"}


def ident(name: str) -> str:
    n = re.sub(r"\W", "_", name)
    return f"t_{n}" if n in RESERVED or n[:1].isdigit() else n


class _Names:
    def __init__(self, model: Model):
        self.model = model
        lay = model.layout
        self.threads = []
        seen = set()
        for i, t in enumerate(model.threads):
            n = ident(t.name)
            while n in seen:
                n += f"_{i}"
            seen.add(n)
            self.threads.append(n)
        # slot -> (Promela name, declared bits; None for a pc)
        self.slot = {}
        for i, d in enumerate(model.shared):
            self.slot[i] = ("g_" + re.sub(r"\W", "_", d.name), d.bits)
        for t, tn in enumerate(self.threads):
            self.slot[lay.pc_slot(t)] = ("pc_" + tn, None)
            for v in model.threads[t].program.locals:
                self.slot[lay.local_slot(t, v.name)] = ("l_" + tn + "_" + re.sub(r"\W", "_", v.name), v.bits)
        taken = set()
        for k, (n, b) in sorted(self.slot.items()):
            while n in taken:            # thread w0's local x_y and thread w0_x's local y
                n += f"_{k}"
            taken.add(n)
            self.slot[k] = (n, b)
        self.pc_short = {t for t in range(len(self.threads)) if len(lay.labels[t]) > 256}

    def pc(self, t):
        return self.slot[self.model.layout.pc_slot(t)][0]

    def storage_of(self, slot):
        name, bits = self.slot[slot]
        if bits is None:
            t = self.model.layout.pc_index.index(slot)
            return "short" if t in self.pc_short else "byte"
        return self.storage(bits)

    @staticmethod
    def storage(bits):
        if bits <= 8:
            return "byte"
        if bits <= 16:
            return "short"
        return "int"


def _const(v: int, where: str) -> str:
    if not INT_MIN <= v <= INT_MAX:
        raise PromelaError(where, f"constant {v} does not fit SPIN's 32-bit int")
    return f"({v})" if v < 0 else str(v)


class _Expr:
    """Expression IR to Promela text (C semantics on 32-bit ints, 0/1 booleans)."""

    def __init__(self, names: _Names, where: str):
        self.n, self.where = names, where
        self.lay = names.model.layout

    def read(self, slot: int) -> str:
        name, bits = self.n.slot[slot]
        if bits is not None and bits <= 8:
            return f"S{bits}({name})"
        return name

    def __call__(self, e, tid):
        rec = lambda x: self(x, tid)  # noqa: E731
        if isinstance(e, E.Const):
            return _const(e.value, self.where)
        if isinstance(e, E.Var):
            return self.read(self.lay.shared_slot(e.name))
        if isinstance(e, E.Local):
            t = tid if e.thread is None else e.thread
            if t is None:
                raise PromelaError(self.where, f"local {e.name} read outside a thread")
            return self.read(self.lay.local_slot(t, e.name))
        if isinstance(e, E.Pc):
            return self.n.slot[self.lay.pc_slot(e.thread)][0]
        if isinstance(e, E.SelfId):
            if tid is None:
                raise PromelaError(self.where, "the executing thread's id read outside a thread")
            return str(tid)
        if isinstance(e, E.Ite):
            return f"({rec(e.cond)} -> {rec(e.then)} : {rec(e.other)})"
        if isinstance(e, E.Table):
            i = rec(e.index)
            out = _const(e.default, self.where)
            for k in reversed(range(len(e.values))):
                out = f"({i} == {k} -> {_const(e.values[k], self.where)} : {out})"
            return out
        if isinstance(e, E.FirstFit):
            mask, size = rec(e.mask), rec(e.size)
            known = e.size.value if isinstance(e.size, E.Const) else None
            out = "(-1)"
            for k in reversed(range(len(e.sizes))):
                if known is not None and e.sizes[k] != known:
                    continue       # a constant size rules the candidate out at translation time
                test = f"(({mask} & {_const(e.conflicts[k], self.where)}) == 0)"
                if known is None:
                    test = f"({size} == {_const(e.sizes[k], self.where)} && {test})"
                out = f"({test} -> {k} : {out})"
            return out
        if isinstance(e, E.Op):
            o = e.op
            if o in E.FLAT:
                # a long conjunction is one flat chain: neither this recursion nor SPIN's parser nests per operand
                args = [rec(a) for a in E.chain(e, o)]
                sym = {"and": "&&", "or": "||"}.get(o, o)
                return "(" + f" {sym} ".join(args) + ")"
            args = [rec(a) for a in e.args]
            if o == "not":
                return f"(!{args[0]})"
            if o == "neg":
                return f"(-{args[0]})"
            if o == "~":
                return f"(~{args[0]})"
            a, b = args
            if o in ("-", "*", "==", "!=", "<", "<=", ">", ">="):
                return f"({a} {o} {b})"
            if o == "<<":
                return f"(({b} >= 0 && {b} < 32) -> ({a} << {b}) : 0)"
            if o == ">>":
                return f"(({b} >= 0 && {b} < 32) -> ({a} >> {b}) : ({a} < 0 -> -1 : 0))"
            if o == "min":
                return f"({a} < {b} -> {a} : {b})"
            if o == "max":
                return f"({a} > {b} -> {a} : {b})"
        raise PromelaError(self.where, f"no Promela for expression node {type(e).__name__}")


def _comment(text: str) -> str:
    return " ".join(str(text).replace("*/", "* /").split())


def _store(names: _Names, slot: int, rhs: str) -> str:
    name, bits = names.slot[slot]
    if bits is None:
        return f"{name} = {rhs}"
    if bits <= 8:
        return f"{name} = ({rhs}) & {(1 << bits) - 1}"
    width = 16 if bits <= 16 else 32
    if bits < width:
        h, m = 1 << (bits - 1), (1 << bits) - 1
        return f"{name} = ((({rhs}) + {h}) & {m}) - {h}"
    return f"{name} = {rhs}"


def _reads(e) -> set:
    """The (kind, name, thread) cells an expression reads (threads resolved by the caller)."""
    out = set()
    for x in E.walk(e):
        if isinstance(x, E.Var):
            out.add(("v", x.name, None))
        elif isinstance(x, E.Local):
            out.add(("l", x.name, x.thread))
        elif isinstance(x, E.Pc):
            out.add(("p", None, x.thread))
    return out


def to_promela(model: Model, properties=None, *, source: str = "") -> str:
    """Promela text for ``model``; ``properties``: the names to check (default: every property the model has;
    deadlock is SPIN's invalid end state and always checked; liveness properties are not translated)."""
    props = list(model.properties) if properties is None else [p for p in properties if p in model.properties]
    wanted = set(props)
    names = _Names(model)
    lay = model.layout
    lines = []
    emit = lines.append
    emit(f"/* {_comment(model.name)}: generated by pddgpu-verify export --promela"
         + (f" from {_comment(source)}" if source else "") + " (checker/promela.py).")
    emit("   One state of this model is one state of pddgpu-verify's explorer (without symmetry; spin -o2 keeps")
    emit("   the variables no property reads, which SPIN would otherwise drop);")
    emit("   run: spin -o2 -a FILE && gcc -O2 -DSAFETY -DNOREDUCE -o pan pan.c && ./pan -m100000 */")
    emit("")
    widths = sorted({bits for _, bits in names.slot.values() if bits is not None and bits <= 8})
    for b in widths:
        h = 1 << (b - 1)
        emit(f"#define S{b}(x) ((((x) ^ {h}) - {h}))")
    emit("")
    emit("/* property names: hidden (outside the state vector), always 0; each assertion starts with one */")
    checked = [p for p in props if model.properties[p].kind in ("invariant", "final", "assertion")]
    for p in checked:
        emit(f"hidden byte P_{ident(p)};")
    emit("")

    def init_of(slot, d):
        name, bits = names.slot[slot]
        v = d.init
        if bits is not None and bits <= 8:
            v = E.wrap(v, bits) & ((1 << bits) - 1)
        return _const(v, f"{name}.init")

    for i, d in enumerate(lay.decls):
        name, bits = names.slot[i]
        doc = f"   /* {_comment(d.doc)} */" if d.doc and i < len(model.shared) else ""
        emit(f"{names.storage_of(i)} {name} = {init_of(i, d)};{doc}")
    emit("")

    # scratch for simultaneous updates: as many as the widest branch needs
    scratch = 0
    bodies = []
    for tid, th in enumerate(model.threads):
        tn = names.threads[tid]
        labels = lay.labels[tid]
        pc_of = {l: k for k, l in enumerate(labels)}
        done = lay.done_pc[tid]
        body = [f"active proctype {tn}() {{"]
        for pc, st in enumerate(th.program.steps):
            where = f"{th.name}.{st.label}"
            ex = _Expr(names, where)
            body.append(f"S_{pc}:  /* {_comment(st.label)} */")
            opts = []
            for br in st.branches:
                guard = ex(br.guard, tid)
                targets = []
                for target, value in br.updates:
                    if isinstance(target, Var):
                        slot = lay.shared_slot(target.name)
                        cell = ("v", target.name, None)
                    else:
                        t = tid if target.thread is None else target.thread
                        slot = lay.local_slot(t, target.name)
                        cell = ("l", target.name, t)
                    targets.append((slot, cell, value))
                written = {c for _, c, _ in targets}
                pre, post = [], []
                nscratch = 0
                for slot, cell, value in targets:
                    reads = {(k, n, tid if k == "l" and t is None else t) for k, n, t in _reads(value)}
                    rhs = ex(value, tid)
                    if len(targets) > 1 and reads & written:
                        pre.append(f"tmp{nscratch} = {rhs}")
                        rhs = f"tmp{nscratch}"
                        nscratch += 1
                    post.append(_store(names, slot, rhs))
                scratch = max(scratch, nscratch)
                goto = pc_of[br.goto]
                post.append(f"{names.pc(tid)} = {goto}")
                stmts = "; ".join(pre + post)
                dest = f"end_{tn}" if goto == done else f"S_{goto}"
                opts.append(f"    :: d_step {{ {guard} -> {stmts} }}; goto {dest}")
            if opts:
                body.append("    if")
                body += opts
                body.append("    fi;")
            else:
                body.append("    false;   /* no branch: the thread blocks here, as in the model */")
        body.append(f"end_{tn}:  /* done: a valid end state that never terminates */")
        body.append("    false")
        body.append("}")
        assert done == len(th.program.steps)
        bodies.append(body)
    for k in range(scratch):
        emit(f"hidden int tmp{k};")
    if scratch:
        emit("")
    for body in bodies:
        lines += body
        emit("")

    # the monitor: compile.py's check() order, then check_final()
    checks = []
    for tid, th in enumerate(model.threads):
        tn = names.threads[tid]
        for pc, st in enumerate(th.program.steps):
            ex = _Expr(names, f"{th.name}.{st.label}")
            for p, a in st.asserts:
                if p in wanted:
                    checks.append((p, f"{names.pc(tid)} == {pc} && !{ex(a, tid)}",
                                   f"({names.pc(tid)} != {pc} || {ex(a, tid)})"))
    for p in props:
        prop = model.properties[p]
        if prop.kind == "invariant":
            ok = _Expr(names, f"properties.{p}")(prop.expr, None)
            checks.append((p, f"!{ok}", ok))
    all_done = " && ".join(f"{names.pc(t)} == {lay.done_pc[t]}" for t in range(len(model.threads))) or "1"
    for p in props:
        prop = model.properties[p]
        if prop.kind == "final":
            ok = _Expr(names, f"properties.{p}")(prop.expr, None)
            checks.append((p, f"({all_done}) && !{ok}", f"(!({all_done}) || {ok})"))
    emit("active proctype monitor() {")
    emit("end_monitor:")
    if checks:
        # one guard, the conjunction of every check, tried once a state: separate options would cost pan one
        # transition attempt each.  The asserts then run in compile.py's order, so the first that fails names
        # the property the explorer names in the same state.
        emit("    do")
        emit("    :: d_step { !(" + "\n               && ".join(ok for _, _, ok in checks) + ") ->")
        for p, _, ok in checks:
            emit(f"         assert(P_{ident(p)} || {ok});")
        emit("       }")
        emit("    od")
    else:
        emit("    false")
    emit("}")
    return "\n".join(lines) + "\n"


def property_of(message: str, model: Model) -> str | None:
    """The property named by pan's ``assertion violated (P_name || ...)`` line."""
    m = re.search(r"assertion violated \(?\s*P_(\w+?)\s*\|\|", message)
    if not m:
        return None
    by_ident = {ident(p): p for p in model.properties}
    return by_ident.get(m.group(1), m.group(1))
