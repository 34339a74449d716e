"""Compile a model to C for the native explorer (``checker/native.py``).

The generated translation unit holds the model-specific parts -- successor
generation, assertions and invariants, final properties, the vacuity
triggers, the bit packing of a state and its canonical key under thread
symmetry -- and, after them, the model-independent breadth-first search
(``RUNTIME_C``).  Semantics follow ``model/expr.py`` and ``model/compile.py``
exactly: 64-bit two's complement arithmetic, stores wrapped to the declared
width, the same order of successors, checks and triggers, the same
canonical-key equivalence as ``_emit_canon``.

Packing: a variable takes only as many bits as its value range needs.  The
range comes from a value-set analysis of the model (``value_ranges``); where
that analysis gives up, a guess is taken and every store is checked against
it, so a wrong guess never loses a state: the search stops with OVERFLOW and
the caller widens that variable and runs again.
"""
from __future__ import annotations

from dataclasses import dataclass

from . import expr as E
from .compile import Compiled, symmetry_groups
from .program import Local, Var


class Unsupported(Exception):
    """A model the C back end cannot compile; the caller falls back to Python."""


INT64_MIN, INT64_MAX = -(1 << 63), (1 << 63) - 1
SET_CAP = 32          # values a variable's set may hold before the analysis gives up on it
PRODUCT_CAP = 4096     # operand combinations an abstract operation may enumerate


def _decl_range(bits: int) -> tuple[int, int]:
    return -(1 << (bits - 1)), (1 << (bits - 1)) - 1


def _width(lo: int, hi: int) -> int:
    return (hi - lo).bit_length()


# ---------------------------------------------------------------- value-set analysis

class _Top:
    def __repr__(self):
        return "TOP"


TOP = _Top()
_CMP = {"==": lambda a, b: a == b, "!=": lambda a, b: a != b, "<": lambda a, b: a < b,
        "<=": lambda a, b: a <= b, ">": lambda a, b: a > b, ">=": lambda a, b: a >= b}
_BIN = {
    "+": lambda a, b: E.wrap(a + b), "-": lambda a, b: E.wrap(a - b), "*": lambda a, b: E.wrap(a * b),
    "&": lambda a, b: a & b, "|": lambda a, b: a | b, "^": lambda a, b: a ^ b,
    "<<": E._shl, ">>": E._shr, "min": min, "max": max,
    "and": lambda a, b: int(bool(a) and bool(b)), "or": lambda a, b: int(bool(a) or bool(b)),
    **{k: (lambda f: lambda a, b: int(f(a, b)))(f) for k, f in _CMP.items()},
}
_BOOL_OPS = {"and", "or", "not", *_CMP}


def _submasks(c: int) -> set:
    out, s = set(), c
    while True:
        out.add(s)
        if s == 0:
            return out
        s = (s - 1) & c


class _Analysis:
    """Non-relational value sets per state slot, guards refining the slots
    they compare with constants.  Sound: every reachable value of a slot is
    in its set (or the slot is TOP)."""

    def __init__(self, model):
        self.m = model
        self.lay = model.layout
        self.env = [frozenset([d.init]) for d in self.lay.decls]
        for t, slot in enumerate(self.lay.pc_index):
            self.env[slot] = frozenset(range(len(self.lay.labels[t])))

    def slot_of(self, e, tid):
        lay = self.lay
        if isinstance(e, Var):
            return lay.shared_slot(e.name)
        if isinstance(e, Local):
            t = tid if e.thread is None else e.thread
            if t is None:
                raise Unsupported(f"local {e.name} read outside a thread")
            return lay.local_slot(t, e.name)
        if isinstance(e, E.Pc):
            return lay.pc_slot(e.thread)
        return None

    def ev(self, e, env, tid):
        if isinstance(e, E.Const):
            return frozenset([e.value])
        k = self.slot_of(e, tid)
        if k is not None:
            return env[k]
        if isinstance(e, E.SelfId):
            return TOP if tid is None else frozenset([tid])
        if isinstance(e, E.Ite):
            c = self.ev(e.cond, env, tid)
            if c is not TOP and all(c):
                return self.ev(e.then, env, tid)
            if c is not TOP and not any(c):
                return self.ev(e.other, env, tid)
            return self._union(self.ev(e.then, env, tid), self.ev(e.other, env, tid))
        if isinstance(e, E.Table):
            i = self.ev(e.index, env, tid)
            if i is TOP:
                return frozenset(e.values) | {e.default}
            return frozenset(e.values[x] if 0 <= x < len(e.values) else e.default for x in i)
        if isinstance(e, E.FirstFit):
            return frozenset(range(-1, len(e.sizes)))
        if isinstance(e, E.Op):
            o = e.op
            if o in E.FLAT:
                args = E.chain(e, o)
                acc = self.ev(args[0], env, tid)
                for a in args[1:]:
                    acc = self._bin(o, acc, self.ev(a, env, tid))
                return acc
            if o in ("not", "neg", "~"):
                a = self.ev(e.args[0], env, tid)
                if a is TOP:
                    return frozenset([0, 1]) if o == "not" else TOP
                f = {"not": lambda x: 0 if x else 1, "neg": lambda x: E.wrap(-x), "~": lambda x: ~x}[o]
                return frozenset(f(x) for x in a)
            if o in _BIN:
                return self._bin(o, self.ev(e.args[0], env, tid), self.ev(e.args[1], env, tid))
        raise Unsupported(f"expression node {type(e).__name__} {getattr(e, 'op', '')}")

    @staticmethod
    def _union(a, b):
        if a is TOP or b is TOP:
            return TOP
        u = a | b
        return u if len(u) <= SET_CAP else TOP

    def _bin(self, o, a, b):
        if a is TOP or b is TOP:
            if o in _BOOL_OPS:
                return frozenset([0, 1])
            if o == "&":
                known = b if a is TOP else a
                if known is not TOP and all(x >= 0 for x in known) and max(known).bit_count() <= 8:
                    out = set()
                    for x in known:
                        out |= _submasks(x)
                    return frozenset(out)
            return TOP
        if len(a) * len(b) > PRODUCT_CAP:
            return frozenset([0, 1]) if o in _BOOL_OPS else TOP
        f = _BIN[o]
        out = frozenset(f(x, y) for x in a for y in b)
        return out if len(out) <= SET_CAP else TOP

    def refine(self, guard, env, tid):
        """``env`` narrowed to the states where ``guard`` can hold; None when it cannot."""
        env = list(env)
        for c in E.chain(guard, "and"):
            k, allowed = self._constraint(c, tid)
            if k is not None:
                cur = env[k]
                if cur is TOP:
                    if isinstance(allowed, frozenset):
                        env[k] = allowed
                else:
                    env[k] = frozenset(x for x in cur if (x in allowed if isinstance(allowed, frozenset)
                                                          else allowed(x)))
                    if not env[k]:
                        return None
        g = self.ev(guard, env, tid)
        if g is not TOP and not any(g):
            return None
        return env

    def _constraint(self, c, tid):
        """(slot, allowed values as a set or a predicate) when ``c`` constrains one slot, else (None, None)."""
        k = self.slot_of(c, tid)
        if k is not None:
            return k, (lambda x: x != 0)
        if isinstance(c, E.Op):
            if c.op == "not":
                k = self.slot_of(c.args[0], tid)
                if k is not None:
                    return k, frozenset([0])
            if c.op in _CMP:
                a, b = c.args
                f = _CMP[c.op]
                if isinstance(b, E.Const) and self.slot_of(a, tid) is not None:
                    v = b.value
                    return self.slot_of(a, tid), (frozenset([v]) if c.op == "==" else (lambda x: f(x, v)))
                if isinstance(a, E.Const) and self.slot_of(b, tid) is not None:
                    v = a.value
                    return self.slot_of(b, tid), (frozenset([v]) if c.op == "==" else (lambda x: f(v, x)))
            if c.op == "or":
                vals, slot = set(), None
                for d in E.chain(c, "or"):
                    if not (isinstance(d, E.Op) and d.op == "==" and isinstance(d.args[1], E.Const)):
                        return None, None
                    k = self.slot_of(d.args[0], tid)
                    if k is None or (slot is not None and k != slot):
                        return None, None
                    slot = k
                    vals.add(d.args[1].value)
                return slot, frozenset(vals)
        return None, None

    def run(self):
        lay = self.lay
        changed = True
        rounds = 0
        while changed:
            changed = False
            rounds += 1
            if rounds > 10000:
                raise Unsupported("value-set analysis did not converge")
            for tid, th in enumerate(self.m.threads):
                ps = lay.pc_slot(tid)
                for pc, st in enumerate(th.program.steps):
                    base = list(self.env)
                    base[ps] = frozenset([pc])
                    for br in st.branches:
                        env = self.refine(br.guard, base, tid)
                        if env is None:
                            continue
                        for target, value in br.updates:
                            k = lay.shared_slot(target.name) if isinstance(target, Var) else lay.local_slot(
                                tid if target.thread is None else target.thread, target.name)
                            if self.env[k] is TOP:
                                continue
                            v = self.ev(value, env, tid)
                            bits = lay.decls[k].bits
                            new = TOP if v is TOP else frozenset(E.wrap(x, bits) for x in v)
                            merged = self._union(self.env[k], new)
                            if merged is TOP or merged != self.env[k]:
                                self.env[k] = merged
                                changed = True
        return self.env


def value_ranges(model) -> list:
    """[(lo, hi, exact)] per slot: ``exact`` when the analysis proved the range, else a guess."""
    env = _Analysis(model).run()
    out = []
    for k, d in enumerate(model.layout.decls):
        dlo, dhi = _decl_range(d.bits)
        if env[k] is TOP:
            lo, hi = max(dlo, min(d.init, -16)), min(dhi, max(d.init, 15))
            out.append((lo, hi, False))
        else:
            out.append((min(env[k]), max(env[k]), True))
    return out


# ---------------------------------------------------------------- expressions to C

def _lit(v: int) -> str:
    if not INT64_MIN <= v <= INT64_MAX:
        raise Unsupported(f"constant {v} outside 64 bits")
    if v == INT64_MIN:
        return "(-INT64_MAX - 1)"
    return f"INT64_C({v})"


class _ExprC:
    def __init__(self, model, tables: list):
        self.lay = model.layout
        self.tables = tables          # C declarations of constant tables, shared across the unit
        self.table_ids: dict = {}

    def table(self, values) -> str:
        key = tuple(values)
        if key not in self.table_ids:
            name = f"T{len(self.table_ids)}"
            self.table_ids[key] = name
            body = ", ".join(_lit(v) for v in key) or "0"
            self.tables.append(f"static const i64 {name}[] = {{{body}}};")
        return self.table_ids[key]

    def slot(self, e, tid):
        lay = self.lay
        if isinstance(e, Var):
            return lay.shared_slot(e.name)
        if isinstance(e, Local):
            t = tid if e.thread is None else e.thread
            if t is None:
                raise Unsupported(f"local {e.name} read outside a thread")
            return lay.local_slot(t, e.name)
        return lay.pc_slot(e.thread)

    def c(self, e, tid, s="s") -> str:
        rec = lambda x: self.c(x, tid, s)  # noqa: E731
        if isinstance(e, E.Const):
            return _lit(e.value)
        if isinstance(e, (Var, Local, E.Pc)):
            return f"{s}[{self.slot(e, tid)}]"
        if isinstance(e, E.SelfId):
            if tid is None:
                raise Unsupported("SelfId outside a thread")
            return _lit(tid)
        if isinstance(e, E.Ite):
            return f"({rec(e.cond)} ? {rec(e.then)} : {rec(e.other)})"
        if isinstance(e, E.Table):
            return f"tbl({self.table(e.values)}, {len(e.values)}, {rec(e.index)}, {_lit(e.default)})"
        if isinstance(e, E.FirstFit):
            if len(e.sizes) != len(e.conflicts):
                raise Unsupported("FirstFit tables of different lengths")
            return (f"first_fit({self.table(e.sizes)}, {self.table(e.conflicts)}, {len(e.sizes)}, "
                    f"{rec(e.mask)}, {rec(e.size)})")
        if isinstance(e, E.Op):
            o = e.op
            if o in E.FLAT:
                args = [rec(a) for a in E.chain(e, o)]
                if o == "and":
                    return "((i64)(" + " && ".join(args) + "))"
                if o == "or":
                    return "((i64)(" + " || ".join(args) + "))"
                if o == "+":
                    return "((i64)(" + " + ".join(f"(u64){a}" for a in args) + "))"
                return "(" + f" {o} ".join(args) + ")"
            if o == "not":
                return f"((i64)!{rec(e.args[0])})"
            if o == "neg":
                return f"((i64)(UINT64_C(0) - (u64){rec(e.args[0])}))"
            if o == "~":
                return f"(~{rec(e.args[0])})"
            if o in E.BINARY:
                a, b = rec(e.args[0]), rec(e.args[1])
                if o in ("-", "*"):
                    return f"((i64)((u64){a} {o} (u64){b}))"
                if o == "<<":
                    return f"shl({a}, {b})"
                if o == ">>":
                    return f"shr({a}, {b})"
                if o in _CMP:
                    return f"((i64)({a} {o} {b}))"
                if o == "min":
                    return f"imin({a}, {b})"
                if o == "max":
                    return f"imax({a}, {b})"
        raise Unsupported(f"expression node {e!r:.80}")


# ---------------------------------------------------------------- the translation unit

@dataclass
class CModel:
    source: str
    moves: list               # move id -> (thread, pc, branch)
    ranges: list              # [(lo, hi)] per slot, as packed
    state_bytes: int
    key_bytes: int
    key_bits: int
    watched: tuple
    properties: tuple         # property id (as the C code reports it) -> name


class _Fields:
    """Bit fields laid out one after another over an array of 64-bit words."""

    def __init__(self):
        self.bits = 0
        self.fields = []          # (offset, width)

    def add(self, width: int) -> int:
        off = self.bits
        self.fields.append((off, width))
        self.bits += width
        return off

    @property
    def words(self):
        return max(1, (self.bits + 63) // 64)

    @property
    def nbytes(self):
        return max(1, (self.bits + 7) // 8)


def _put(w, off, width, val) -> list[str]:
    """C statements or-ing the ``width``-bit unsigned ``val`` into words ``w`` at bit ``off``."""
    if width == 0:
        return []
    i, r = divmod(off, 64)
    out = [f"{w}[{i}] |= (u64)({val}) << {r};"]
    if r + width > 64:
        out.append(f"{w}[{i + 1}] |= (u64)({val}) >> {64 - r};")
    return out


def _get(w, off, width) -> str:
    """C expression: the ``width``-bit unsigned field at bit ``off`` of words ``w``."""
    i, r = divmod(off, 64)
    mask = "UINT64_MAX" if width == 64 else f"UINT64_C({(1 << width) - 1})"
    if r + width <= 64:
        return f"(({w}[{i}] >> {r}) & {mask})"
    return f"((({w}[{i}] >> {r}) | ({w}[{i + 1}] << {64 - r})) & {mask})"


def generate(comp: Compiled, ranges: list, observer: str | None = None, variants=()) -> CModel:
    """C source of ``comp`` (a Python-compiled model: its properties, watched set and symmetry decide what
    the C code checks), with slot ``k`` packed over ``ranges[k] = (lo, hi)``.  ``observer``: C code defining
    ``OBS_LEN``, ``OBS_NW``, ``obs_vec`` and ``obs_combo`` (``checker/observe.py``); the sequential search then
    shows it every state it reaches and passes its checks, for mutate's fingerprints (``OBSERVER_C``).
    ``variants``: models that differ from ``comp.model`` only in what some steps' branches do (same layout,
    labels, asserts and properties: ``same_frame``); the global ``pdd_mut`` (0: the model itself, i: the
    i-th variant) selects whose branches a search takes, so one build serves every mutant of a spec."""
    model = comp.model
    lay = model.layout
    nv = lay.size
    props = comp.properties
    wanted = set(props)
    prop_id = {p: i for i, p in enumerate(props)}
    if len(comp.watched) > 64:
        raise Unsupported(f"{len(comp.watched)} watched properties (at most 64)")
    tables: list = []
    X = _ExprC(model, tables)
    lines: list = []
    emit = lines.append

    groups = symmetry_groups(model) if comp.symmetry else []
    # group members' slices are compared as integers: every member packs its slice over the same ranges
    ranges = [tuple(r) for r in ranges]
    for g in groups:
        spans = [lay.thread_slices[t] for t in g]
        n = spans[0][1] - spans[0][0]
        if any(b - a != n for a, b in spans):
            raise Unsupported("symmetric threads with different locals")
        for i in range(n):
            lo = min(ranges[a + i][0] for a, _ in spans)
            hi = max(ranges[a + i][1] for a, _ in spans)
            for a, _ in spans:
                ranges[a + i] = (lo, hi)
    for k, (lo, hi) in enumerate(ranges):
        if not (INT64_MIN <= lo <= hi <= INT64_MAX):
            raise Unsupported(f"range of {lay.decls[k].name}")

    # ---- moves
    variants = list(variants)

    def alternatives(tid, pc):
        """[(variant indices, branches)] of the variants whose step (tid, pc) differs from the model's."""
        mine = _semantic(model.threads[tid].program.steps[pc].branches)
        out: dict = {}
        for i, v in enumerate(variants, 1):
            brs = v.threads[tid].program.steps[pc].branches
            key = _semantic(brs)
            if key != mine:
                out.setdefault(key, ([], brs))[0].append(i)
        return list(out.values())

    moves = []
    move_id = {}
    n_branches = {}
    for tid, th in enumerate(model.threads):
        for pc, st in enumerate(th.program.steps):
            n_branches[(tid, pc)] = max([len(st.branches)] + [len(b) for _, b in alternatives(tid, pc)])
            for bi in range(n_branches[(tid, pc)]):
                move_id[(tid, pc, bi)] = len(moves)
                moves.append((tid, pc, bi))
    max_succ = max(1, sum(max((n_branches[(tid, pc)] for pc in range(len(th.program.steps))), default=0)
                          for tid, th in enumerate(model.threads)))
    move_t = "uint8_t" if len(moves) <= 256 else "uint16_t" if len(moves) <= 65536 else "uint32_t"

    # ---- successors
    emit("static int expand(const sv_t *s, ctx_t *c) {")
    emit("    int k = 0; sv_t *n; i64 v;")
    for tid, th in enumerate(model.threads):
        labels = lay.labels[tid]
        pc_of = {l: i for i, l in enumerate(labels)}
        ps = lay.pc_slot(tid)
        emit(f"    switch (s[{ps}]) {{")

        def branches(pc, brs, ind):
            for bi, br in enumerate(brs):
                g = X.c(br.guard, tid)
                emit(f"{ind}if ({g}) {{")
                emit(f"{ind}    n = c->bn[k]; memcpy(n, s, NV * sizeof(sv_t));")
                # right-hand sides read s, the pre-state: updates are simultaneous
                for target, value in br.updates:
                    kk = lay.shared_slot(target.name) if isinstance(target, Var) else lay.local_slot(
                        tid if target.thread is None else target.thread, target.name)
                    bits = lay.decls[kk].bits
                    rhs = X.c(value, tid)
                    lo, hi = ranges[kk]
                    emit(f"{ind}    v = wrapb({rhs}, {bits});" if bits < 64 else f"{ind}    v = {rhs};")
                    emit(f"{ind}    if ((u64)v - (u64){_lit(lo)} > UINT64_C({hi - lo})) "
                         f"return overflow(c, {kk}, v);")
                    emit(f"{ind}    n[{kk}] = v; if (v < c->olo[{kk}]) c->olo[{kk}] = v; "
                         f"if (v > c->ohi[{kk}]) c->ohi[{kk}] = v;")
                emit(f"{ind}    n[{ps}] = {pc_of[br.goto]};")
                emit(f"{ind}    c->bm[k++] = {move_id[(tid, pc, bi)]};")
                emit(f"{ind}}}")
        for pc, st in enumerate(th.program.steps):
            emit(f"    case {pc}:")
            alts = alternatives(tid, pc)
            if not alts:
                branches(pc, st.branches, "        ")
            else:
                emit("        switch (pdd_mut) {")
                for which, brs in alts:
                    emit("        " + " ".join(f"case {i}:" for i in which))
                    branches(pc, brs, "            ")
                    emit("            break;")
                emit("        default:")
                branches(pc, st.branches, "            ")
                emit("            break;")
                emit("        }")
            emit("        break;")
        emit("    default: break;")
        emit("    }")
    emit("    return k;")
    emit("}")

    # ---- assertions at steps, then invariants (the order of compile.py's check); a variant whose asserts
    # (or, below, vacuity triggers) differ gets its own body, selected by pdd_mut
    def check_body(mx):
        out = []
        for tid, th in enumerate(mx.threads):
            cases = []
            for pc, st in enumerate(th.program.steps):
                active = [(p, a) for p, a in st.asserts if p in wanted]
                if active:
                    cases.append((pc, active))
            if not cases:
                continue
            out.append(f"    switch (s[{lay.pc_slot(tid)}]) {{")
            for pc, active in cases:
                out.append(f"    case {pc}:")
                for p, a in active:
                    out.append(f"        if (!({X.c(a, tid)})) {{ *tid = {tid}; return {prop_id[p] + 1}; }}")
                out.append("        break;")
            out.append("    default: break;")
            out.append("    }")
        return out

    def per_variant(body):
        """``body(model)`` for the model, and for each variant whose body differs, under a switch."""
        mine = body(model)
        alts: dict = {}
        for i, v in enumerate(variants, 1):
            b = body(v)
            if b != mine:
                alts.setdefault(tuple(b), []).append(i)
        if not alts:
            return mine
        out = ["    switch (pdd_mut) {"]
        for b, which in alts.items():
            out.append("    " + " ".join(f"case {i}:" for i in which) + " {")
            out += ["    " + x for x in b]
            out.append("    } break;")
        out.append("    default: {")
        out += ["    " + x for x in mine]
        out.append("    } break;")
        out.append("    }")
        return out

    emit("static int check_state(const sv_t *s, int *tid) {")
    for line in per_variant(check_body):
        emit(line)
    for p in props:
        prop = model.properties[p]
        if prop.kind == "invariant":
            emit(f"    if (!({X.c(prop.expr, None)})) {{ *tid = -1; return {prop_id[p] + 1}; }}")
    emit("    return 0;")
    emit("}")

    emit("static int check_final(const sv_t *s) {")
    for p in props:
        prop = model.properties[p]
        if prop.kind == "final":
            emit(f"    if (!({X.c(prop.expr, None)})) return {prop_id[p] + 1};")
    emit("    return 0;")
    emit("}")

    # ---- vacuity triggers (compile.py's triggers)
    finals = 0
    for i, p in enumerate(comp.watched):
        if model.properties[p].kind == "final":
            finals |= 1 << i

    def trigger_body(mx):
        out = []
        site = {}
        for i, p in enumerate(comp.watched):
            if model.properties[p].kind == "final":
                continue
            for t, pc, trig in mx.trigger_sites(p):
                cond = X.c(trig, t)
                if t is not None:
                    site.setdefault((t, pc), []).append((cond, i))
                else:
                    out.append(f"    if ({cond}) m |= UINT64_C(1) << {i};")
        for (t, pc), items in sorted(site.items()):
            out.append(f"    if (s[{lay.pc_slot(t)}] == {pc}) {{")
            for cond, i in items:
                out.append(f"        if ({cond}) m |= UINT64_C(1) << {i};")
            out.append("    }")
        return out

    emit("static u64 triggers(const sv_t *s) {")
    emit("    u64 m = 0;")
    for line in per_variant(trigger_body):
        emit(line)
    emit("    return m;")
    emit("}")
    done = " && ".join(f"s[{lay.pc_slot(t)}] == {lay.done_pc[t]}" for t in range(len(model.threads))) or "1"
    emit(f"static int is_done(const sv_t *s) {{ return {done}; }}")

    # ---- the packed state: slots in layout order, each over its range
    st = _Fields()
    offs = [st.add(_width(lo, hi)) for lo, hi in ranges]
    emit("static void pack_state(const sv_t *s, u64 *w) {")
    emit(f"    memset(w, 0, {st.words} * sizeof(u64));")
    for k, (lo, hi) in enumerate(ranges):
        for line in _put("w", offs[k], _width(lo, hi), f"(u64)s[{k}] - (u64){_lit(lo)}"):
            emit("    " + line)
    emit("}")
    emit("static void unpack_state(const u64 *w, sv_t *s) {")
    for k, (lo, hi) in enumerate(ranges):
        wd = _width(lo, hi)
        val = _lit(lo) if wd == 0 else f"(i64)((u64){_lit(lo)} + {_get('w', offs[k], wd)})"
        emit(f"    s[{k}] = {val};")
    emit("}")

    # ---- the canonical key (compile.py's _emit_canon, as integers)
    key = _Fields()
    if not groups:
        key = st
        emit("static void canon_key(const sv_t *s, u64 *w) { memset(w, 0, KW * sizeof(u64)); pack_state(s, w); "
             "w[FLAGW] |= FLAGBIT; }")
    else:
        owner_slots = [i for i, d in enumerate(lay.decls) if d.kind == "owner"]
        member_of = {t: gi for gi, g in enumerate(groups) for t in g}
        n_shared = len(model.shared)
        emit("static void canon_key(const sv_t *s, u64 *w) {")
        emit("    memset(w, 0, KW * sizeof(u64));")
        for i in range(n_shared):
            lo, hi = ranges[i]
            span = hi - lo + 1
            if i in owner_slots:
                # an owner word naming a group member becomes the group's marker, coded past the range
                wd = (span - 1 + len(groups)).bit_length()
                off = key.add(wd)
                emit(f"    {{ u64 o = (u64)s[{i}] - (u64){_lit(lo)};")
                for t, gi in member_of.items():
                    emit(f"      if (s[{i}] == {t + 1}) o = UINT64_C({span + gi});")
                for line in _put("w", off, wd, "o"):
                    emit("      " + line)
                emit("    }")
            else:
                wd = _width(lo, hi)
                off = key.add(wd)
                for line in _put("w", off, wd, f"(u64)s[{i}] - (u64){_lit(lo)}"):
                    emit("    " + line)
        for gi, g in enumerate(groups):
            a0, b0 = lay.thread_slices[g[0]]
            sw = sum(_width(*ranges[k]) for k in range(a0, b0)) + len(owner_slots)
            if sw > 64:
                raise Unsupported(f"a symmetric thread's slice needs {sw} bits (at most 64)")
            emit(f"    {{ u64 g[{len(g)}];")
            for j, t in enumerate(g):
                a, b = lay.thread_slices[t]
                parts, pos = [], sw
                # most significant first: slices sort as compile.py's tuples would (any total order will do:
                # two states share a key exactly when their sorted slices agree)
                for k in range(a, b):
                    wd = _width(*ranges[k])
                    pos -= wd
                    if wd:
                        parts.append(f"(((u64)s[{k}] - (u64){_lit(ranges[k][0])}) << {pos})")
                for k in owner_slots:
                    pos -= 1
                    parts.append(f"((u64)(s[{k}] == {t + 1}) << {pos})")
                emit(f"      g[{j}] = {' | '.join(parts) or '0'};")
            emit(f"      sort_u64(g, {len(g)});")
            for j in range(len(g)):
                off = key.add(sw)
                for line in _put("w", off, sw, f"g[{j}]"):
                    emit("      " + line)
            emit("    }")
        grouped = set(member_of)
        for t in range(len(model.threads)):
            if t in grouped:
                continue
            a, b = lay.thread_slices[t]
            for k in range(a, b):
                wd = _width(*ranges[k])
                off = key.add(wd)
                for line in _put("w", off, wd, f"(u64)s[{k}] - (u64){_lit(ranges[k][0])}"):
                    emit("    " + line)
        emit("    w[FLAGW] |= FLAGBIT;")
        emit("}")

    head = [
        "#include <stdint.h>", "#include <string.h>", "#include <stdlib.h>", "#include <stdio.h>",
        "#include <time.h>",
        "typedef int64_t i64; typedef uint64_t u64;",
        f"#define NV {nv}", f"#define SW {st.words}", f"#define SB {st.nbytes}",
        # a stored key carries one more bit, always set: a table slot of zeros is an empty slot
        f"#define KW {key.bits // 64 + 1}", f"#define KB {key.bits // 8 + 1}",
        f"#define FLAGW {key.bits // 64}", f"#define FLAGBIT (UINT64_C(1) << {key.bits % 64})",
        f"#define FLAGBYTE {key.bits // 8}", f"#define FLAGMASK {1 << (key.bits % 8)}",
        f"#define NMOVES {len(moves)}", f"typedef {move_t} move_t;", f"#define MAXSUCC {max_succ}",
        f"#define ALLW UINT64_C({(1 << len(comp.watched)) - 1})", f"#define FINALS UINT64_C({finals})",
        f"#define SYM {1 if groups else 0}",
        # states are worked on unpacked: as 32-bit cells when every range allows, half the bytes to copy
        "typedef int32_t sv_t;" if all(-(1 << 31) <= lo and hi < (1 << 31) for lo, hi in ranges) else "typedef i64 sv_t;",
        PRELUDE_C,
        *(["int pdd_mut = 0;             /* the variant searched (generate's variants) */"] if variants else []),
        *tables,
    ]
    # an observer runs in the sequential search only, so its builds leave out the parallel one: a quarter of gcc's
    # time, paid once a mutant
    tail = [RUNTIME_C, PAR_RUNTIME_C] if observer is None else ["#define OBSERVER 1", observer, OBSERVER_C, RUNTIME_C]
    src = "\n".join(head + lines + tail)
    return CModel(src, moves, ranges, st.nbytes, key.bits // 8 + 1, key.bits, comp.watched, props)


def _semantic(branches) -> tuple:
    """What a step's branches do, without their notes."""
    return tuple((b.guard, b.updates, b.goto) for b in branches)


def same_frame(a, b) -> bool:
    """``b`` differs from ``a`` at most in what the C code does not read (a step's kind, call and lock: the
    Python explorer's liveness and the reports read them) or reads per variant (branches, asserts, vacuity
    triggers): the same variables, labels, locks, properties, bounds and watched properties, so that
    ``generate(a, variants=[b])`` checks ``b`` as ``generate(b)`` would."""
    if a.layout.decls != b.layout.decls or a.layout.labels != b.layout.labels or a.locks != b.locks:
        return False
    if repr(sorted(a.properties.items())) != repr(sorted(b.properties.items())) or a.bounds != b.bounds:
        return False
    if [(t.name, t.group) for t in a.threads] != [(t.name, t.group) for t in b.threads]:
        return False
    # asserts and trigger sites may differ (generate selects them per variant), not which properties are
    # watched: that decides the bits of the vacuity mask
    return all(bool(a.trigger_sites(p)) == bool(b.trigger_sites(p)) for p in a.properties)


# mutate's fingerprints (checker/observe.py): the observed vector of every state the search reaches, hashed; each
# distinct hash counted once, summed per combination of the watched threads' pcs, and the pcs each reached
OBSERVER_C = r"""
static u64 obs_hash(const i64 *v, int n) {      /* checker/observe.py: obs_hash */
    u64 h = UINT64_C(0x9e3779b97f4a7c15);
    for (int i = 0; i < n; i++) h = mix64(h ^ ((u64)v[i] + UINT64_C(0x632be59bd9b4e019) * (u64)(i + 1)));
    return h;
}
static u64 *obs_tab, obs_cap, obs_n;            /* the distinct hashes (0 kept apart: it marks an empty slot) */
static int obs_zero;
static u64 *obs_ck, *obs_cc, *obs_cs; static uint8_t *obs_cu; static u64 obs_ccap, obs_cn;  /* combo -> count, sum */
static void obs_clear(void) {
    free(obs_tab); free(obs_ck); free(obs_cc); free(obs_cs); free(obs_cu);
    obs_tab = obs_ck = obs_cc = obs_cs = NULL; obs_cu = NULL;
    obs_cap = obs_n = obs_ccap = obs_cn = 0; obs_zero = 0;
    memset(pdd_obs_reached, 0, sizeof pdd_obs_reached);
}
static int obs_grow(void) {
    u64 ncap = obs_cap ? obs_cap * 2 : 1 << 14;
    u64 *nt = calloc(ncap, sizeof(u64));
    if (!nt) return 1;
    for (u64 i = 0; i < obs_cap; i++) if (obs_tab[i]) {
        u64 j = obs_tab[i] & (ncap - 1);
        while (nt[j]) j = (j + 1) & (ncap - 1);
        nt[j] = obs_tab[i];
    }
    free(obs_tab); obs_tab = nt; obs_cap = ncap;
    return 0;
}
static int obs_cgrow(void) {
    u64 ncap = obs_ccap ? obs_ccap * 2 : 256;
    u64 *k = calloc(ncap, 8), *cn = calloc(ncap, 8), *sm = calloc(ncap, 8); uint8_t *u = calloc(ncap, 1);
    if (!k || !cn || !sm || !u) { free(k); free(cn); free(sm); free(u); return 1; }
    for (u64 i = 0; i < obs_ccap; i++) if (obs_cu[i]) {
        u64 j = mix64(obs_ck[i]) & (ncap - 1);
        while (u[j]) j = (j + 1) & (ncap - 1);
        u[j] = 1; k[j] = obs_ck[i]; cn[j] = obs_cc[i]; sm[j] = obs_cs[i];
    }
    free(obs_ck); free(obs_cc); free(obs_cs); free(obs_cu);
    obs_ck = k; obs_cc = cn; obs_cs = sm; obs_cu = u; obs_ccap = ncap;
    return 0;
}
/* 0, or 1 when memory ran out (the search then stops: its fingerprints would be wrong) */
static int observe(const sv_t *s) {
    u64 combo = obs_combo(s);
    i64 v[OBS_LEN > 0 ? OBS_LEN : 1];
    if (!obs_vec(s, v)) return 0;               /* a thread at a step the original lacks: hidden */
    u64 h = obs_hash(v, OBS_LEN);
    if (!h) { if (obs_zero) return 0; obs_zero = 1; }
    else {
        if ((obs_n + 1) * 4 > obs_cap * 3 && obs_grow()) return 1;
        u64 j = h & (obs_cap - 1);
        while (obs_tab[j]) { if (obs_tab[j] == h) return 0; j = (j + 1) & (obs_cap - 1); }
        obs_tab[j] = h; obs_n++;
    }
    if ((obs_cn + 1) * 2 > obs_ccap && obs_cgrow()) return 1;
    u64 j = mix64(combo) & (obs_ccap - 1);
    while (obs_cu[j] && obs_ck[j] != combo) j = (j + 1) & (obs_ccap - 1);
    if (!obs_cu[j]) { obs_cu[j] = 1; obs_ck[j] = combo; obs_cn++; }
    obs_cc[j]++; obs_cs[j] += h;
    return 0;
}
/* the combinations seen: their pcs (8 bits a watched thread), distinct states and hash sums; returns how many */
i64 pdd_obs_result(u64 *combo, u64 *count, u64 *sum, i64 max) {
    i64 n = 0;
    for (u64 i = 0; i < obs_ccap && n < max; i++) if (obs_cu[i]) { combo[n] = obs_ck[i]; count[n] = obs_cc[i]; sum[n] = obs_cs[i]; n++; }
    return n;
}
i64 pdd_obs_combos(void) { return (i64)obs_cn; }
"""

PRELUDE_C = r"""
/* the engine's hash and the observer's (checker/observe.py: obs_hash), one mixer */
static inline u64 mix64(u64 x) {
    x ^= x >> 33; x *= UINT64_C(0xff51afd7ed558ccd); x ^= x >> 33; x *= UINT64_C(0xc4ceb9fe1a85ec53); x ^= x >> 33;
    return x;
}
static inline i64 wrapb(i64 v, int b) { return (i64)((u64)v << (64 - b)) >> (64 - b); }
static inline i64 shl(i64 a, i64 b) { return (b >= 0 && b < 64) ? (i64)((u64)a << b) : 0; }
static inline i64 shr(i64 a, i64 b) { return (b >= 0 && b < 64) ? (a >> b) : (a < 0 ? -1 : 0); }
static inline i64 imin(i64 a, i64 b) { return a < b ? a : b; }
static inline i64 imax(i64 a, i64 b) { return a > b ? a : b; }
static inline i64 tbl(const i64 *t, i64 n, i64 i, i64 d) { return (i >= 0 && i < n) ? t[i] : d; }
static inline i64 first_fit(const i64 *sz, const i64 *cf, i64 n, i64 mask, i64 size) {
    for (i64 i = 0; i < n; i++) if (sz[i] == size && !(mask & cf[i])) return i;
    return -1;
}
static inline void sort_u64(u64 *g, int n) {
    for (int i = 1; i < n; i++) { u64 x = g[i]; int j = i - 1; while (j >= 0 && g[j] > x) { g[j + 1] = g[j]; j--; } g[j + 1] = x; }
}

enum { ST_OK = 0, ST_VIOLATION = 1, ST_FINAL = 2, ST_DEADLOCK = 3, ST_BOUND = 4, ST_MEMORY = 5,
       ST_OVERFLOW = 6, ST_NOMEM = 7, ST_INTERRUPTED = 8 };
/* set from Python (Ctrl-C) while the search runs in another thread: a signal handler cannot run inside C */
volatile int pdd_interrupt = 0;

typedef struct {
    i64 status, prop, tid, index;
    i64 states, transitions, diameter, depth;
    u64 exercised;
    i64 frontier_left;
    i64 bytes, table_bytes, frontier_peak_bytes;
    i64 overflow_slot, overflow_value;
    double seconds, cpu_seconds;
    i64 threads, expanded[64];        /* the parallel search: its threads, and the states each expanded */
} result_t;

typedef struct ctx {
    uint8_t *ktab; u64 *htab; u64 cap;       /* the visited set: keys in place, or (hash compaction) hashes */
    uint32_t *parent; move_t *moves;
    u64 count, acap;
    uint8_t *fq; u64 fhead, ftail, fcap;     /* FIFO of packed concrete states: entry e is state fbase + e */
    int hc, progress;
    u64 max_states, budget;
    u64 exercised;
    i64 cur;
    result_t *res;
    struct timespec t0, last, cpu0;
    /* the successors of the state being processed and of the next one, which is expanded ahead */
    sv_t nb[2][MAXSUCC][NV]; int mv[2][MAXSUCC];
    u64 kw[2][MAXSUCC][KW], kh[2][MAXSUCC];
    sv_t (*bn)[NV]; int *bm;                     /* where expand() writes */
    i64 olo[NV], ohi[NV];                       /* the values stored in each slot: the next run packs tighter */
} ctx_t;

static int overflow(ctx_t *c, int slot, i64 v) {
    c->res->status = ST_OVERFLOW; c->res->overflow_slot = slot; c->res->overflow_value = v; return -1;
}
"""

RUNTIME_C = r"""
static inline u64 hash_words(const u64 *w) {
    u64 h = UINT64_C(0x9e3779b97f4a7c15);
    for (int i = 0; i < KW; i++) h = mix64(h ^ (w[i] + UINT64_C(0x632be59bd9b4e019) * (u64)(i + 1)));
    return h;
}

/* keys stay in the table's slots: one cache miss a probe, where an index into a key array costs two */
#define PER_STATE ((u64)(sizeof(uint32_t) + sizeof(move_t)))
#define SLOT ((u64)(c->hc ? sizeof(u64) : KB))
#define OCCUPIED(p) ((p)[FLAGBYTE] & FLAGMASK)

static u64 accounted(ctx_t *c) {
    return c->cap * SLOT + c->count * PER_STATE + c->fcap * SB;
}

/* a slot from the hash's high bits scaled to the capacity: any capacity works, so the table grows by a half
   (bare hashes: a quarter) instead of doubling and stays near its load limit, not between half of it and all
   of it; and POS keeps the order of hashes, so a rehash fills the new table front to back, in cache */
#define POS(h, cap) ((u64)(((unsigned __int128)(h) * (cap)) >> 64))

static int grow_table(ctx_t *c) {
    u64 ncap = c->cap + (c->hc ? c->cap / 4 : c->cap / 2);
    if (accounted(c) + (ncap - c->cap) * SLOT > c->budget) return ST_MEMORY;
    if (c->hc) {
        u64 *nt = calloc(ncap, sizeof(u64));
        if (!nt) return ST_NOMEM;
        for (u64 i = 0; i < c->cap; i++) {
            u64 h = c->htab[i];
            if (!h) continue;
            u64 j = POS(h, ncap);
            while (nt[j]) if (++j == ncap) j = 0;
            nt[j] = h;
        }
        free(c->htab); c->htab = nt;
    } else {
        uint8_t *nt = calloc(ncap, KB);
        if (!nt) return ST_NOMEM;
        for (u64 i = 0; i < c->cap; i++) {
            const uint8_t *p = c->ktab + i * KB;
            if (!OCCUPIED(p)) continue;
            u64 w[KW] = {0};
            memcpy(w, p, KB);
            u64 j = POS(hash_words(w), ncap);
            while (OCCUPIED(nt + j * KB)) if (++j == ncap) j = 0;
            memcpy(nt + j * KB, p, KB);
        }
        free(c->ktab); c->ktab = nt;
    }
    c->cap = ncap;
    return 0;
}

static int grow_arrays(ctx_t *c) {
    u64 ncap = c->acap ? c->acap * 2 : 1024;
    if (ncap > UINT32_MAX) ncap = UINT32_MAX;
    if (ncap <= c->acap) return ST_MEMORY;
    uint32_t *p = realloc(c->parent, ncap * sizeof(uint32_t));
    if (!p) return ST_NOMEM;
    c->parent = p;
    move_t *m = realloc(c->moves, ncap * sizeof(move_t));
    if (!m) return ST_NOMEM;
    c->moves = m;
    c->acap = ncap;
    return 0;
}

/* 0: seen before; 1: inserted as state c->count - 1; otherwise a status */
static int insert(ctx_t *c, const u64 *w, u64 h, int move) {
    /* grown before probing, so a table that cannot grow stops the search before the state is counted; linear
       probing stays short below three quarters full, and below nine tenths where slots hold bare hashes */
    if ((c->count + 1) * (c->hc ? 10 : 4) > c->cap * (c->hc ? 9 : 3)) { int r = grow_table(c); if (r) return r; }
    if (c->hc) {
        if (!h) h = 1;
        u64 j = POS(h, c->cap);
        while (c->htab[j]) { if (c->htab[j] == h) return 0; if (++j == c->cap) j = 0; }
        if (accounted(c) + PER_STATE > c->budget) return ST_MEMORY;
        c->htab[j] = h;
    } else {
        u64 j = POS(h, c->cap);
        uint8_t *p;
        while (OCCUPIED(p = c->ktab + j * KB)) { if (!memcmp(p, w, KB)) return 0; if (++j == c->cap) j = 0; }
        if (accounted(c) + PER_STATE > c->budget) return ST_MEMORY;
        memcpy(p, w, KB);
    }
    if (c->count == c->acap) { int r = grow_arrays(c); if (r) return r; }
    c->parent[c->count] = (uint32_t)c->cur;
    c->moves[c->count] = (move_t)move;
    c->count++;
    return 1;
}

static int push(ctx_t *c, const sv_t *n) {
    if (c->ftail == c->fcap) {
        if (c->fhead > c->fcap / 2) {
            memmove(c->fq, c->fq + c->fhead * SB, (c->ftail - c->fhead) * SB);
            c->ftail -= c->fhead; c->fhead = 0;
        } else {
            u64 ncap = c->fcap ? c->fcap * 2 : 1024;
            if (accounted(c) + (ncap - c->fcap) * SB > c->budget) return ST_MEMORY;
            uint8_t *q = realloc(c->fq, ncap * SB);
            if (!q) return ST_NOMEM;
            c->fq = q; c->fcap = ncap;
            if ((i64)(ncap * SB) > c->res->frontier_peak_bytes) c->res->frontier_peak_bytes = ncap * SB;
        }
    }
    u64 w[SW];
    pack_state(n, w);
    memcpy(c->fq + c->ftail * SB, w, SB);
    c->ftail++;
    return 0;
}

static int emit(ctx_t *c, sv_t *n, const u64 *w, u64 h, int move) {
    result_t *r = c->res;
    r->transitions++;
    int ins = insert(c, w, h, move);
    if (ins == 0) return 0;
    if (ins != 1) { r->status = ins; return 1; }
    int tid = -1;
    int p = check_state(n, &tid);
    if (p) { r->status = ST_VIOLATION; r->prop = p - 1; r->tid = tid; r->index = (i64)c->count - 1; return 1; }
#ifdef OBSERVER
    if (observe(n)) { r->status = ST_NOMEM; return 1; }
#endif
    if (c->exercised != ALLW) c->exercised |= triggers(n);
    if (c->max_states && c->count >= c->max_states) { r->status = ST_BOUND; return 1; }
    { int e = push(c, n); if (e) { r->status = e; return 1; } }
    return 0;
}

static double since(struct timespec *a) {
    struct timespec b; clock_gettime(CLOCK_MONOTONIC, &b);
    return (b.tv_sec - a->tv_sec) + (b.tv_nsec - a->tv_nsec) * 1e-9;
}

static void finish(ctx_t *c, u64 head) {
    result_t *r = c->res;
    r->states = (i64)c->count;
    r->exercised = c->exercised;
    r->table_bytes = (i64)(c->cap * SLOT);
    r->bytes = (i64)(c->cap * SLOT + c->count * PER_STATE);
    r->frontier_left = (i64)(c->count - head);
    r->seconds = since(&c->t0);
    struct timespec b; clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &b);
    r->cpu_seconds = (b.tv_sec - c->cpu0.tv_sec) + (b.tv_nsec - c->cpu0.tv_nsec) * 1e-9;
}

static void prefetch_batch(ctx_t *c, int b, int k, int hc) {
    for (int j = 0; j < k; j++) {
        canon_key(c->nb[b][j], c->kw[b][j]);
        u64 h = c->kh[b][j] = hash_words(c->kw[b][j]);
        if (hc) __builtin_prefetch(&c->htab[POS(h ? h : 1, c->cap)]);
        else __builtin_prefetch(c->ktab + POS(h, c->cap) * KB);
    }
}

/* the breadth-first search of explorer.py, state for state */
ctx_t *pdd_run(const i64 *init, i64 max_states, i64 max_depth, int deadlock, int hc, i64 budget, int progress,
               const char *name, result_t *r) {
    ctx_t *c = calloc(1, sizeof(ctx_t));
    memset(r, 0, sizeof *r);
    r->prop = -1; r->tid = -1; r->index = -1;
    if (!c) { r->status = ST_NOMEM; return NULL; }
    c->res = r; c->hc = hc; c->progress = progress;
    c->max_states = max_states > 0 ? (u64)max_states : 0;
    c->budget = budget > 0 ? (u64)budget : UINT64_MAX;
    clock_gettime(CLOCK_MONOTONIC, &c->t0); c->last = c->t0;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c->cpu0);
    c->cap = 1 << 12;
    if (hc) c->htab = calloc(c->cap, sizeof(u64)); else c->ktab = calloc(c->cap, KB);
    if (!c->htab && !c->ktab) { r->status = ST_NOMEM; return c; }
    sv_t s[NV];
    for (int q = 0; q < NV; q++) s[q] = (sv_t)init[q];
    memcpy(c->olo, init, sizeof c->olo); memcpy(c->ohi, init, sizeof c->ohi);
    u64 w[KW];
    canon_key(s, w);
    c->cur = -1;
    int ins = insert(c, w, hash_words(w), 0);
    if (ins != 1) { r->status = ins ? ins : ST_NOMEM; finish(c, 0); return c; }
    int tid = -1;
    int p = check_state(s, &tid);
    if (p) { r->status = ST_VIOLATION; r->prop = p - 1; r->tid = tid; r->index = 0; finish(c, 0); return c; }
#ifdef OBSERVER
    obs_clear();
    if (observe(s)) { r->status = ST_NOMEM; finish(c, 0); return c; }
#endif
    c->exercised = triggers(s);
    if ((r->status = push(c, s))) { finish(c, 0); return c; }
    u64 head = 0, next_level = 1;
    i64 depth = 0;
    int incomplete = 0;
    int cb = 0, pre = 0, prek = 0;       /* pre: state `head` is expanded ahead, into buffer cb, prek successors */
    sv_t ps[NV];
    while (head < c->count) {
        u64 i = head++;
        if ((i & 0xFFF) == 0 && pdd_interrupt) { r->status = ST_INTERRUPTED; break; }
        if (i >= next_level) { depth++; next_level = c->count; }
        if (depth > r->diameter) r->diameter = depth;
        int k = -2, b = cb;
        if (pre) { memcpy(s, ps, sizeof s); k = prek; pre = 0; }
        else {
            u64 pw[SW] = {0};
            memcpy(pw, c->fq + c->fhead * SB, SB);
            unpack_state(pw, s);
        }
        c->fhead++;
        if (max_depth >= 0 && depth >= max_depth) { incomplete = 1; continue; }
        c->cur = (i64)i;
        if (k == -2) {
            c->bn = c->nb[b]; c->bm = c->mv[b];
            k = expand(s, c);
            if (k < 0) break;
            prefetch_batch(c, b, k, hc);
        }
        /* the next state's successors hashed and their slots prefetched while this state's probes wait on
           memory: expanding is free of side effects, so doing it early changes no count and no order */
        if (head < c->count) {
            u64 pw[SW] = {0};
            memcpy(pw, c->fq + c->fhead * SB, SB);
            unpack_state(pw, ps);
            int nb2 = b ^ 1;
            c->bn = c->nb[nb2]; c->bm = c->mv[nb2];
            int kk = expand(ps, c);
            if (kk < 0) r->status = ST_OK;      /* an overflow there is met again when that state's turn comes */
            else { prefetch_batch(c, nb2, kk, hc); pre = 1; prek = kk; cb = nb2; }
        }
        if (k == 0) {
            if (is_done(s)) {
                int f = check_final(s);
                if (f) { r->status = ST_FINAL; r->prop = f - 1; r->index = (i64)i; break; }
                c->exercised |= FINALS;
            } else if (deadlock) { r->status = ST_DEADLOCK; r->index = (i64)i; break; }
            continue;
        }
        int stop = 0;
        for (int j = 0; j < k && !stop; j++) stop = emit(c, c->nb[b][j], c->kw[b][j], c->kh[b][j], c->mv[b][j]);
        if (stop) break;
        if (progress && (c->count & 0x3FFF) < (u64)k) {
            double el = since(&c->t0), dt = since(&c->last);
            if (dt >= (progress == 1 ? 1.0 : 10.0)) {
                clock_gettime(CLOCK_MONOTONIC, &c->last);
                fprintf(stderr, "  %s: %llu states, depth %lld, %.0f states/s (native)%s", name,
                        (unsigned long long)c->count, (long long)depth, c->count / (el > 1e-9 ? el : 1e-9),
                        progress == 1 ? "\r" : "\n");
                fflush(stderr);
            }
        }
    }
    r->depth = depth;
    if (r->status == ST_OK && incomplete) r->status = ST_BOUND;
    finish(c, head);
    return c;
}

/* the moves from the initial state to state i, last first; returns how many */
i64 pdd_path(ctx_t *c, i64 i, int32_t *out, i64 max) {
    i64 n = 0;
    while (i > 0 && n < max) { out[n++] = c->moves[i]; i = c->parent[i]; }
    return n;
}

void pdd_observed(ctx_t *c, i64 *lo, i64 *hi) { memcpy(lo, c->olo, sizeof c->olo); memcpy(hi, c->ohi, sizeof c->ohi); }

void pdd_free(ctx_t *c) {
    if (!c) return;
    free(c->ktab); free(c->htab); free(c->parent); free(c->moves); free(c->fq); free(c);
}

/* for tests: the key and the packed state of a state, as the search computes them */
void pdd_key(const i64 *s, u64 *w) { sv_t t[NV]; for (int q = 0; q < NV; q++) t[q] = (sv_t)s[q]; canon_key(t, w); }
void pdd_roundtrip(const i64 *s, i64 *out) {
    sv_t t[NV]; u64 w[SW]; for (int q = 0; q < NV; q++) t[q] = (sv_t)s[q];
    pack_state(t, w); unpack_state(w, t); for (int q = 0; q < NV; q++) out[q] = t[q];
}
int pdd_key_words(void) { return KW; }
"""

PAR_RUNTIME_C = r"""
/* ---- the parallel breadth-first search: level by level, T threads.
   Phase A: the level's states are cut into contiguous chunks (chunk j before chunk j+1, so the chunks'
   successor lists, concatenated, are in the sequential search's order of (parent, move)); a thread claims a
   chunk at a time, expands it and drops successors already in the visited set, which nobody writes in this
   phase.  Chunks claimed one by one, not a fixed share per thread: a thread the machine deschedules holds
   up a level by one chunk, not by half of it.
   Phase B: the visited set is split into S shards by hash; one thread at a time fills a shard, walking the
   candidates of chunk 0, then 1, ... in order: the first to claim a state is the one the sequential search
   would have met first, with no lock and no compare-and-swap, and the same on every run.
   Phase C: each chunk numbers its new states from the sum of the counts before it (the sequential
   numbering, state for state), records parents and moves, checks them and writes the next frontier.
   The first event in sequential order is then the first chunk's: its violation, else the state bound if it
   falls in that chunk's states, else the deadlock or final violation it stopped at. */
#include <pthread.h>
#include <stdatomic.h>
#define MAXT 64
#define MAXC 128            /* chunks of a level */
#define MAXS 64             /* shards of the visited set */
static i64 par_min = 512;    /* a level smaller than this is worked by one thread: spawning costs more */
void pdd_set_par_min(i64 n) { par_min = n < 1 ? 1 : n; }     /* tests split every level, however small */

/* without symmetry the key is the packed state (and a flag bit past its fields, which unpacking ignores) */
#if SYM
typedef struct { u64 h, ord; uint32_t parent; move_t move; uint8_t isnew; u64 key[KW]; uint8_t st[SB]; } cand_t;
#define CAND_ST(x) ((x)->st)
#else
typedef struct { u64 h, ord; uint32_t parent; move_t move; uint8_t isnew; u64 key[KW]; } cand_t;
#define CAND_ST(x) ((const uint8_t *)(x)->key)
#endif
typedef struct { uint8_t *ktab; u64 *htab; u64 cap, count; int fail; } shard_t;
struct par;
typedef struct { struct par *P; int t; ctx_t *c; result_t r; u64 expanded; } thread_t;
typedef struct {                 /* a chunk of a level */
    cand_t *cand; u64 ncand, capc;
    uint32_t *bucket[MAXS]; u64 nbk[MAXS], capb[MAXS];
    u64 lo, hi, succ;
    int ev; i64 ev_parent, ev_prop, ov_slot, ov_value;
    i64 first_done; u64 exercised;
    u64 newcnt, base;
    i64 viol_idx, viol_prop, viol_tid, viol_ord, bound_ord; int hit_bound;
} worker_t;
typedef struct par {
    int T, S, NC, hc, deadlock;
    _Atomic int next_job; int njobs; void (*job)(struct par *, thread_t *, int);
    shard_t sh[MAXS];
    u64 count, L0, ncur, bound_idx;
    uint32_t *parent; move_t *moves; u64 acap;
    uint8_t *cur, *next;
    _Atomic u64 used; u64 budget; u64 transient, transient_peak;
    u64 newts[MAXC][MAXS];
    worker_t w[MAXC];
    thread_t th[MAXT];
} par_t;

static int reserve(par_t *P, u64 b) {
    u64 u = atomic_fetch_add(&P->used, b);
    if (u + b > P->budget) { atomic_fetch_sub(&P->used, b); return 0; }
    return 1;
}
static void release(par_t *P, u64 b) { atomic_fetch_sub(&P->used, b); }

#define PSLOT ((u64)(P->hc ? sizeof(u64) : KB))
static inline int shard_of(const par_t *P, u64 h) { return (int)(h % (u64)P->S); }

static int sh_lookup(const par_t *P, const shard_t *S, const u64 *w, u64 h) {
    u64 j = POS(h, S->cap);
    if (P->hc) {
        while (S->htab[j]) { if (S->htab[j] == h) return 1; if (++j == S->cap) j = 0; }
        return 0;
    }
    const uint8_t *p;
    while (OCCUPIED(p = S->ktab + j * KB)) { if (!memcmp(p, w, KB)) return 1; if (++j == S->cap) j = 0; }
    return 0;
}

static int sh_grow(par_t *P, shard_t *S) {
    u64 ncap = S->cap + (P->hc ? S->cap / 4 : S->cap / 2);
    if (!reserve(P, ncap * PSLOT)) return ST_MEMORY;
    if (P->hc) {
        u64 *nt = calloc(ncap, sizeof(u64));
        if (!nt) { release(P, ncap * PSLOT); return ST_NOMEM; }
        for (u64 i = 0; i < S->cap; i++) {
            u64 h = S->htab[i];
            if (!h) continue;
            u64 j = POS(h, ncap);
            while (nt[j]) if (++j == ncap) j = 0;
            nt[j] = h;
        }
        free(S->htab); S->htab = nt;
    } else {
        uint8_t *nt = calloc(ncap, KB);
        if (!nt) { release(P, ncap * PSLOT); return ST_NOMEM; }
        for (u64 i = 0; i < S->cap; i++) {
            const uint8_t *p = S->ktab + i * KB;
            if (!OCCUPIED(p)) continue;
            u64 w[KW] = {0};
            memcpy(w, p, KB);
            u64 j = POS(hash_words(w), ncap);
            while (OCCUPIED(nt + j * KB)) if (++j == ncap) j = 0;
            memcpy(nt + j * KB, p, KB);
        }
        free(S->ktab); S->ktab = nt;
    }
    release(P, S->cap * PSLOT);
    S->cap = ncap;
    return 0;
}

/* 0: present; 1: inserted; otherwise a status */
static int sh_insert(par_t *P, shard_t *S, const u64 *w, u64 h) {
    if ((S->count + 1) * (P->hc ? 10 : 4) > S->cap * (P->hc ? 9 : 3)) { int r = sh_grow(P, S); if (r) return r; }
    u64 j = POS(h, S->cap);
    if (P->hc) {
        while (S->htab[j]) { if (S->htab[j] == h) return 0; if (++j == S->cap) j = 0; }
        S->htab[j] = h;
    } else {
        uint8_t *p;
        while (OCCUPIED(p = S->ktab + j * KB)) { if (!memcmp(p, w, KB)) return 0; if (++j == S->cap) j = 0; }
        memcpy(p, w, KB);
    }
    S->count++;
    return 1;
}

static inline u64 key_hash(const par_t *P, const u64 *w) { u64 h = hash_words(w); return (P->hc && !h) ? 1 : h; }

static int grow_buf(par_t *P, void **p, u64 *cap, u64 need, u64 elem) {
    if (need <= *cap) return 0;
    u64 ncap = *cap ? *cap : 256;
    while (ncap < need) ncap *= 2;
    if (!reserve(P, (ncap - *cap) * elem)) return ST_MEMORY;
    void *q = realloc(*p, ncap * elem);
    if (!q) { release(P, (ncap - *cap) * elem); return ST_NOMEM; }
    *p = q; *cap = ncap;
    return 0;
}

/* the successors of parent i into buffer b of the thread's context, keyed, hashed and their slots prefetched;
   returns the count, or -1 on a range overflow */
static int expand_keyed(par_t *P, ctx_t *c, const sv_t *s, int b) {
    c->bn = c->nb[b]; c->bm = c->mv[b];
    int k = expand(s, c);
    for (int j = 0; j < k; j++) {
        canon_key(c->nb[b][j], c->kw[b][j]);
        u64 h = c->kh[b][j] = key_hash(P, c->kw[b][j]);
        const shard_t *S = &P->sh[shard_of(P, h)];
        if (P->hc) __builtin_prefetch(&S->htab[POS(h, S->cap)]);
        else __builtin_prefetch(S->ktab + POS(h, S->cap) * KB);
    }
    return k;
}

static void phase_expand(par_t *P, thread_t *th, int job) {
    worker_t *W = &P->w[job]; ctx_t *c = th->c;
    W->ncand = 0; W->succ = 0; W->ev = 0; W->ev_parent = -1; W->ev_prop = -1;
    W->first_done = -1; W->exercised = 0;
    for (int s = 0; s < P->S; s++) W->nbk[s] = 0;
    sv_t st[2][NV];
    int b = 0, k = -1;
    if (W->lo < W->hi) {
        u64 pw[SW] = {0};
        memcpy(pw, P->cur + (W->lo - P->L0) * SB, SB);
        unpack_state(pw, st[0]);
        k = expand_keyed(P, c, st[0], 0);
    }
    for (u64 i = W->lo; i < W->hi; i++) {
        /* the next parent expanded while this one's probes wait on memory, as the sequential search does:
           expanding has no side effect a count or an order could see */
        int kn = -1;
        if (i + 1 < W->hi) {
            u64 pw[SW] = {0};
            memcpy(pw, P->cur + (i + 1 - P->L0) * SB, SB);
            unpack_state(pw, st[b ^ 1]);
            kn = expand_keyed(P, c, st[b ^ 1], b ^ 1);
        }
        th->expanded++;
        if (k < 0) {
            c->bn = c->nb[b]; c->bm = c->mv[b];
            expand(st[b], c);            /* again: the overflow it reports is this parent's */
            W->ev = ST_OVERFLOW; W->ev_parent = (i64)i;
            W->ov_slot = th->r.overflow_slot; W->ov_value = th->r.overflow_value; return;
        }
        if (k == 0) {
            if (is_done(st[b])) {
                int f = check_final(st[b]);
                if (f) { W->ev = ST_FINAL; W->ev_parent = (i64)i; W->ev_prop = f - 1; return; }
                if (W->first_done < 0) W->first_done = (i64)i;
            } else if (P->deadlock) { W->ev = ST_DEADLOCK; W->ev_parent = (i64)i; return; }
        }
        for (int j = 0; j < k; j++) {
            u64 ord = W->succ++;
            u64 h = c->kh[b][j];
            int sh = shard_of(P, h);
            if (sh_lookup(P, &P->sh[sh], c->kw[b][j], h)) continue;
            int e = grow_buf(P, (void **)&W->cand, &W->capc, W->ncand + 1, sizeof(cand_t));
            if (!e) e = grow_buf(P, (void **)&W->bucket[sh], &W->capb[sh], W->nbk[sh] + 1, sizeof(uint32_t));
            if (e || W->ncand >= UINT32_MAX) { W->ev = e ? e : ST_MEMORY; W->ev_parent = (i64)i; return; }
            cand_t *x = &W->cand[W->ncand];
            x->h = h; x->ord = ord; x->parent = (uint32_t)i; x->move = (move_t)c->mv[b][j]; x->isnew = 0;
            memcpy(x->key, c->kw[b][j], sizeof x->key);
#if SYM
            u64 w[SW];
            pack_state(c->nb[b][j], w);
            memcpy(x->st, w, SB);
#endif
            W->bucket[sh][W->nbk[sh]++] = (uint32_t)W->ncand++;
        }
        b ^= 1; k = kn;
    }
}

static void phase_insert(par_t *P, thread_t *th, int sid) {
    shard_t *S = &P->sh[sid];
    for (int t = 0; t < P->NC; t++) {
        worker_t *W = &P->w[t];
        u64 n = 0;
        u64 nq = W->nbk[sid];
        for (u64 q = 0; q < nq && !S->fail; q++) {
            if (q + 8 < nq) {      /* the probe eight candidates on: its slot is in cache when its turn comes */
                u64 h8 = W->cand[W->bucket[sid][q + 8]].h;
                if (P->hc) __builtin_prefetch(&S->htab[POS(h8, S->cap)]);
                else __builtin_prefetch(S->ktab + POS(h8, S->cap) * KB);
            }
            cand_t *x = &W->cand[W->bucket[sid][q]];
            int r = sh_insert(P, S, x->key, x->h);
            if (r == 1) { x->isnew = 1; n++; }
            else if (r) S->fail = r;
        }
        P->newts[t][sid] = n;
    }
}

static void phase_number(par_t *P, thread_t *th, int job) {
    worker_t *W = &P->w[job];
    u64 idx = W->base;
    sv_t n[NV];
    W->viol_idx = -1; W->hit_bound = 0;
    for (u64 q = 0; q < W->ncand; q++) {
        cand_t *x = &W->cand[q];
        if (!x->isnew) continue;
        P->parent[idx] = x->parent; P->moves[idx] = x->move;
        memcpy(P->next + (idx - P->L0 - P->ncur) * SB, CAND_ST(x), SB);
        u64 pw[SW] = {0};
        memcpy(pw, CAND_ST(x), SB);
        unpack_state(pw, n);
        int tid = -1;
        int p = check_state(n, &tid);
        if (p) { W->viol_idx = (i64)idx; W->viol_prop = p - 1; W->viol_tid = tid; W->viol_ord = (i64)x->ord; return; }
        if (W->exercised != ALLW) W->exercised |= triggers(n);
        if (P->bound_idx && idx == P->bound_idx) { W->hit_bound = 1; W->bound_ord = (i64)x->ord; return; }
        idx++;
    }
}

static void *thread_main(void *arg) {
    thread_t *th = arg; par_t *P = th->P;
    for (int j; (j = atomic_fetch_add(&P->next_job, 1)) < P->njobs; ) P->job(P, th, j);
    return NULL;
}

/* jobs 0..n-1 of fn, claimed one at a time: by the T threads (this one among them) when parallel, else all
   here */
static void run_phase(par_t *P, void (*fn)(par_t *, thread_t *, int), int n, int parallel) {
    pthread_t tid[MAXT];
    int started[MAXT] = {0};
    P->job = fn; P->njobs = n; atomic_store(&P->next_job, 0);
    if (parallel && n > 1)
        for (int i = 1; i < P->T; i++) started[i] = !pthread_create(&tid[i], NULL, thread_main, &P->th[i]);
    thread_main(&P->th[0]);
    for (int i = 1; i < P->T; i++) if (started[i]) pthread_join(tid[i], NULL);
}

static void par_free(par_t *P) {
    for (int s = 0; s < P->S; s++) { free(P->sh[s].ktab); free(P->sh[s].htab); }
    for (int j = 0; j < MAXC; j++) {
        worker_t *W = &P->w[j];
        free(W->cand);
        for (int s = 0; s < P->S; s++) free(W->bucket[s]);
    }
    for (int t = 0; t < P->T; t++) free(P->th[t].c);
    free(P->cur); free(P->next);
    free(P);
}

ctx_t *pdd_run_par(const i64 *init, i64 max_states, i64 max_depth, int deadlock, int hc, i64 budget, int progress,
                   const char *name, result_t *r, int threads) {
    ctx_t *c = calloc(1, sizeof(ctx_t));
    memset(r, 0, sizeof *r);
    r->prop = -1; r->tid = -1; r->index = -1;
    if (!c) { r->status = ST_NOMEM; return NULL; }
    c->res = r; c->hc = hc; c->progress = progress;
    clock_gettime(CLOCK_MONOTONIC, &c->t0); c->last = c->t0;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c->cpu0);
    memcpy(c->olo, init, sizeof c->olo); memcpy(c->ohi, init, sizeof c->ohi);
    int T = threads < 1 ? 1 : threads > MAXT ? MAXT : threads;
    r->threads = T;
    par_t *P = calloc(1, sizeof(par_t));
    if (!P) { r->status = ST_NOMEM; return c; }
    P->T = T; P->hc = hc; P->deadlock = deadlock;
    P->S = T == 1 ? 1 : (4 * T < MAXS ? 4 * T : MAXS);
    P->budget = budget > 0 ? (u64)budget : UINT64_MAX;
    P->bound_idx = max_states > 0 ? (u64)(max_states > 2 ? max_states - 1 : 1) : 0;
    int status = ST_OK;
    for (int q = 0; q < P->S; q++) {
        shard_t *S = &P->sh[q];
        S->cap = 1 << 10;
        if (hc) S->htab = calloc(S->cap, sizeof(u64)); else S->ktab = calloc(S->cap, KB);
        if (!S->htab && !S->ktab) status = ST_NOMEM;
        atomic_fetch_add(&P->used, S->cap * PSLOT);
    }
    for (int t = 0; t < T; t++) {
        thread_t *th = &P->th[t];
        th->P = P; th->t = t;
        th->c = calloc(1, sizeof(ctx_t));
        if (!th->c) { status = ST_NOMEM; continue; }
        th->c->res = &th->r; th->c->hc = hc;
        memcpy(th->c->olo, init, sizeof c->olo); memcpy(th->c->ohi, init, sizeof c->ohi);
    }
    u64 exercised = 0, trans = 0;
    i64 depth = 0;
    sv_t s0[NV];
    for (int q = 0; q < NV; q++) s0[q] = (sv_t)init[q];
    if (status) goto done;
    {
        u64 w[KW];
        canon_key(s0, w);
        u64 h = key_hash(P, w);
        sh_insert(P, &P->sh[shard_of(P, h)], w, h);
        P->count = 1;
        if (grow_buf(P, (void **)&P->parent, &P->acap, 1, sizeof(uint32_t) + sizeof(move_t))) { status = ST_MEMORY; goto done; }
        P->moves = malloc(P->acap * sizeof(move_t));
        int tid = -1;
        int p = check_state(s0, &tid);
        if (p) { status = ST_VIOLATION; r->prop = p - 1; r->tid = tid; r->index = 0; goto done; }
        exercised = triggers(s0);
        if (!reserve(P, SB + 1)) { status = ST_MEMORY; goto done; }
        P->cur = malloc(SB + 1);
        if (!P->cur || !P->moves) { status = ST_NOMEM; goto done; }
        u64 pw[SW];
        pack_state(s0, pw);
        memcpy(P->cur, pw, SB);
        P->L0 = 0; P->ncur = 1;
        P->transient = SB;
    }
    int incomplete = 0;
    while (P->ncur) {
        if (pdd_interrupt) { r->status = ST_INTERRUPTED; break; }
        if (depth > r->diameter) r->diameter = depth;
        if (max_depth >= 0 && depth >= max_depth) { incomplete = 1; break; }
        /* phase A */
        int par = T > 1 && (i64)P->ncur >= par_min;
        int nc = par ? 8 * T : 1;
        if (nc > MAXC) nc = MAXC;
        if ((u64)nc > P->ncur) nc = (int)P->ncur;
        P->NC = nc;
        for (int t = 0; t < nc; t++) {
            worker_t *W = &P->w[t];
            W->lo = P->L0 + P->ncur * t / nc; W->hi = P->L0 + P->ncur * (t + 1) / nc;
        }
        run_phase(P, phase_expand, nc, par);
        u64 ncand = 0;
        for (int t = 0; t < nc; t++) {
            if (P->w[t].ev == ST_OVERFLOW) {
                r->status = ST_OVERFLOW; r->overflow_slot = P->w[t].ov_slot;
                r->overflow_value = P->w[t].ov_value; status = ST_OVERFLOW; goto done;
            }
            if (P->w[t].ev == ST_MEMORY || P->w[t].ev == ST_NOMEM) { status = P->w[t].ev; goto cut; }
            ncand += P->w[t].ncand;
        }
        /* phase B */
        run_phase(P, phase_insert, P->S, T > 1 && (i64)ncand >= par_min);
        for (int s = 0; s < P->S; s++) if (P->sh[s].fail) { status = P->sh[s].fail; goto cut; }
        u64 total = 0;
        for (int t = 0; t < nc; t++) {
            worker_t *W = &P->w[t];
            W->newcnt = 0;
            for (int s = 0; s < P->S; s++) W->newcnt += P->newts[t][s];
            W->base = P->count + total;
            total += W->newcnt;
        }
        /* the parent and move arrays and the next frontier, for every new state of the level */
        if (P->count + total > UINT32_MAX) { status = ST_MEMORY; goto cut; }
        if (P->count + total > P->acap) {
            u64 ncap = P->acap;
            while (ncap < P->count + total) ncap *= 2;
            if (ncap > UINT32_MAX) ncap = UINT32_MAX;
            if (!reserve(P, (ncap - P->acap) * (sizeof(uint32_t) + sizeof(move_t)))) { status = ST_MEMORY; goto cut; }
            uint32_t *pp = realloc(P->parent, ncap * sizeof(uint32_t));
            if (pp) P->parent = pp;
            move_t *mm = pp ? realloc(P->moves, ncap * sizeof(move_t)) : NULL;
            if (mm) P->moves = mm;
            if (!pp || !mm) { status = ST_NOMEM; goto cut; }
            P->acap = ncap;
        }
        if (!reserve(P, total * SB + 1)) { status = ST_MEMORY; goto cut; }
        P->next = malloc(total * SB + 1);
        if (!P->next) { status = ST_NOMEM; goto cut; }
        {
            u64 tr = P->transient + total * SB + 1;
            for (int t = 0; t < MAXC; t++) tr += P->w[t].capc * sizeof(cand_t);
            if (tr > P->transient_peak) P->transient_peak = tr;
        }
        /* phase C */
        run_phase(P, phase_number, nc, T > 1 && (i64)total >= par_min);
        /* the first event in the sequential order: see the head of this search */
        u64 before = trans;
        int stop = 0;
        for (int t = 0; t < nc && !stop; t++) {
            worker_t *W = &P->w[t];
            u64 ex = exercised | W->exercised;
            if (W->viol_idx >= 0 || W->hit_bound) {
                i64 idx = W->viol_idx >= 0 ? W->viol_idx : (i64)P->bound_idx;
                i64 ord = W->viol_idx >= 0 ? W->viol_ord : W->bound_ord;
                trans = before + (u64)ord + 1;
                P->count = (u64)idx + 1;
                if (W->first_done >= 0 && W->first_done < (i64)P->parent[idx]) ex |= FINALS;
                for (int u = 0; u < t; u++) if (P->w[u].first_done >= 0) ex |= FINALS;
                exercised = ex;
                if (W->viol_idx >= 0) { status = ST_VIOLATION; r->prop = W->viol_prop; r->tid = W->viol_tid; r->index = idx; }
                else status = ST_BOUND;
                r->frontier_left = (i64)(P->L0 + P->ncur - P->parent[idx] - 1);
                stop = 1;
            } else if (W->ev) {
                trans = before + W->succ;
                P->count = W->base + W->newcnt;
                for (int u = 0; u <= t; u++) if (P->w[u].first_done >= 0) ex |= FINALS;
                exercised = ex;
                status = W->ev; r->index = W->ev_parent;
                if (W->ev == ST_FINAL) r->prop = W->ev_prop;
                r->frontier_left = (i64)(P->L0 + P->ncur - (u64)W->ev_parent - 1);
                stop = 1;
            } else {
                before += W->succ;
                exercised = ex;
                for (int u = 0; u <= t; u++) if (P->w[u].first_done >= 0) exercised |= FINALS;
            }
        }
        if (stop) goto done;
        trans = before;
        P->count += total;
        release(P, P->ncur * SB + 1);
        free(P->cur);
        P->cur = P->next; P->next = NULL;
        P->L0 += P->ncur; P->ncur = total;
        P->transient = total * SB + 1;
        depth++;
        if (progress) {
            double el = since(&c->t0), dt = since(&c->last);
            if (dt >= (progress == 1 ? 1.0 : 10.0)) {
                clock_gettime(CLOCK_MONOTONIC, &c->last);
                fprintf(stderr, "  %s: %llu states, depth %lld, %.0f states/s (native, %d threads)%s", name,
                        (unsigned long long)P->count, (long long)depth, P->count / (el > 1e-9 ? el : 1e-9), T,
                        progress == 1 ? "\r" : "\n");
                fflush(stderr);
            }
        }
    }
    if (status == ST_OK && incomplete) { status = ST_BOUND; r->frontier_left = (i64)P->ncur; }
    goto done;
cut:
    /* out of memory inside a level: the search ends with the levels completed before it */
    r->frontier_left = (i64)P->ncur;
done:
    r->status = status;
    r->depth = r->diameter;       /* the level being worked when the search ended, as the sequential search */
    r->transitions = (i64)trans;
    r->exercised = exercised;
    r->states = (i64)P->count;
    u64 tb = 0;
    for (int q = 0; q < P->S; q++) tb += P->sh[q].cap * PSLOT;
    for (int t = 0; t < T; t++) {
        r->expanded[t] = (i64)P->th[t].expanded;
        if (P->th[t].c)
            for (int q = 0; q < NV; q++) {
                if (P->th[t].c->olo[q] < c->olo[q]) c->olo[q] = P->th[t].c->olo[q];
                if (P->th[t].c->ohi[q] > c->ohi[q]) c->ohi[q] = P->th[t].c->ohi[q];
            }
    }
    r->table_bytes = (i64)tb;
    r->bytes = (i64)(tb + P->count * PER_STATE);
    r->frontier_peak_bytes = (i64)P->transient_peak;
    /* the path arrays stay with the context: pdd_path reads them */
    c->parent = P->parent; c->moves = P->moves; c->count = P->count;
    par_free(P);
    r->seconds = since(&c->t0);
    struct timespec b; clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &b);
    r->cpu_seconds = (b.tv_sec - c->cpu0.tv_sec) + (b.tv_nsec - c->cpu0.tv_nsec) * 1e-9;
    return c;
}
"""
