"""Static independence and visibility of the model's steps, for partial-order
reduction (checker/por.py; the argument is docs/POR.md).

Everything is a bit mask over the state tuple's slots (``Layout``): a shared
variable, a lock's owner word, an allocator field, a thread's local and a
thread's pc are each one slot.  Naming slots rather than kinds means a step
that reads another thread's local or pc (``Local(n, thread=k)``, ``Pc(k)``)
is caught by the same disjointness test as one touching shared state: no
variable is assumed local because of its kind.

Per step (thread t, pc p), over all its branches:
  R  the slots its guards and right-hand sides read, and t's pc;
  W  the slots it writes, and t's pc.
Two steps of different threads are independent when W1 & (R2 | W2) and
W2 & R1 are empty: neither can enable, disable or change the other, and they
commute (updates are functions of the pre-state).

Locks: a lock word L is *protected* when every branch that writes L either
runs at a pc where its thread provably holds L (a must-hold dataflow over the
thread's control flow) or has a guard that implies L == 0.  Then, while
L == t+1, no other thread can write L, run a step where it holds L, or pass
an acquire of L (see ``blocked``): such steps are cut from what other threads
can do while t is frozen.
"""
from __future__ import annotations

from . import expr as E
from .program import Model

# ---------------------------------------------------------------------------------------------- expressions


def slot_of(node, lay, tid):
    """The state slot a Var/Local/Pc node reads, bound to thread ``tid`` (None for invariants)."""
    if isinstance(node, E.Var):
        return lay.shared_slot(node.name)
    if isinstance(node, E.Local):
        t = tid if node.thread is None else node.thread
        if t is None:
            raise ValueError(f"local {node.name} outside a thread")
        return lay.local_slot(t, node.name)
    if isinstance(node, E.Pc):
        return lay.pc_slot(node.thread)
    return None


def reads(e, lay, tid) -> int:
    m = 0
    for x in E.walk(e):
        k = slot_of(x, lay, tid)
        if k is not None:
            m |= 1 << k
    return m


def _truthy(c):
    return isinstance(c, E.Const) and c.value != 0


def _falsy(c):
    return isinstance(c, E.Const) and c.value == 0


def fold(e, env: dict, lay, tid, atoms=None):
    """``e`` with the slots in ``env`` replaced by their values, ``SelfId``/own locals bound to ``tid``, and
    constant subterms evaluated.  It evaluates to the same value as ``e`` on every state agreeing with ``env``
    (so a Const result is the value on all of them).  And/or chains are folded flat (n-ary), never nested.
    ``atoms``: comparisons (after folding their operands) whose value is known, replaced by it."""
    if isinstance(e, E.Const):
        return e
    if isinstance(e, E.SelfId):
        return E.Const(tid) if tid is not None else e
    k = slot_of(e, lay, tid)
    if k is not None:
        if k in env:
            return E.Const(env[k])
        if isinstance(e, E.Local) and e.thread is None:
            return E.Local(e.name, tid)
        return e
    rec = lambda x: fold(x, env, lay, tid, atoms)  # noqa: E731
    if isinstance(e, E.Ite):
        c = rec(e.cond)
        if isinstance(c, E.Const):
            return rec(e.then) if c.value else rec(e.other)
        return E.Ite(c, rec(e.then), rec(e.other))
    if isinstance(e, E.Table):
        i = rec(e.index)
        if isinstance(i, E.Const):
            return E.Const(E.evaluate(E.Table(e.values, i, e.default), (), lay))
        return E.Table(e.values, i, e.default)
    if isinstance(e, E.FirstFit):
        m, s = rec(e.mask), rec(e.size)
        if isinstance(m, E.Const) and isinstance(s, E.Const):
            return E.Const(E.evaluate(E.FirstFit(e.sizes, e.conflicts, m, s), (), lay))
        return E.FirstFit(e.sizes, e.conflicts, m, s)
    if isinstance(e, E.Op) and e.op in ("and", "or"):
        args = [rec(a) for a in E.chain(e, e.op)]
        absorbing, neutral = (_falsy, _truthy) if e.op == "and" else (_truthy, _falsy)
        if any(absorbing(a) for a in args):
            return E.Const(0 if e.op == "and" else 1)
        rest = [a for a in args if not neutral(a)]
        if not rest:
            return E.Const(1 if e.op == "and" else 0)
        if len(rest) == 1:                 # and/or of one operand is its truth value, 0 or 1
            return E.Op("!=", (rest[0], E.Const(0)))
        return E.Op(e.op, tuple(rest))
    if isinstance(e, E.Op) and e.op in E.FLAT:
        args = tuple(rec(a) for a in E.chain(e, e.op))
        if all(isinstance(a, E.Const) for a in args):
            return E.Const(E.evaluate(E.Op(e.op, args), (), lay))
        return E.Op(e.op, args)
    if isinstance(e, E.Op):
        args = tuple(rec(a) for a in e.args)
        if all(isinstance(a, E.Const) for a in args):
            return E.Const(E.evaluate(E.Op(e.op, args), (), lay))
        out = E.Op(e.op, args)
        return atoms.get(out, out) if atoms else out
    raise TypeError(f"unknown expression node {e!r}")


def implies_zero(g, lock: str) -> bool:
    """Syntactically: the guard ``g`` holds only where ``lock == 0``."""
    if isinstance(g, E.Op):
        if g.op == "==" and E.Const(0) in g.args and E.Var(lock) in g.args:
            return True
        if g.op == "not" and g.args[0] == E.Var(lock):
            return True
        if g.op == "and":
            return any(implies_zero(a, lock) for a in E.chain(g, "and"))
        if g.op == "or":
            return all(implies_zero(a, lock) for a in E.chain(g, "or"))
    return False


# ---------------------------------------------------------------------------------------------- the analysis


class Independence:
    """Read/write masks, lock protection and control-flow reachability of a model's steps.

    ``dependent(t, p, u, q)`` is the relation itself; the reduction uses the masks directly (``R``/``W``) and
    ``reach`` for what another thread may still do.  Subclass and override ``dependent_masks`` to try another
    relation (tests/test_por.py does, with a deliberately wrong one)."""

    def __init__(self, model: Model):
        self.model = m = model
        self.lay = lay = model.layout
        n = len(m.threads)
        self.R = []          # R[t][p]: slots read by step p of thread t (its pc included)
        self.W = []          # W[t][p]: slots written (its pc included)
        self.succ_pcs = []   # succ_pcs[t][p]: the pcs its branches go to
        for t, th in enumerate(m.threads):
            pc_of = {l: i for i, l in enumerate(lay.labels[t])}
            own = 1 << lay.pc_slot(t)
            rs, ws, gs = [], [], []
            for st in th.program.steps:
                r = w = own
                g = set()
                for br in st.branches:
                    r |= reads(br.guard, lay, t)
                    for target, value in br.updates:
                        r |= reads(value, lay, t)
                        w |= 1 << slot_of(target, lay, t)
                    g.add(pc_of[br.goto])
                rs.append(r)
                ws.append(w)
                gs.append(tuple(sorted(g)))
            self.R.append(rs)
            self.W.append(ws)
            self.succ_pcs.append(gs)
        self.locks = [L for L in m.locks if L in lay.shared_index]
        self.lock_slot = {L: lay.shared_slot(L) for L in self.locks}
        self.held = {}                         # (t, L) -> set of pcs where t provably holds L
        self.protected = []                    # locks whose protection was validated
        for L in self.locks:
            ok = True
            for t in range(n):
                self.held[(t, L)] = h = self._must_hold(t, L)
                ok = ok and self._validate(t, L, h)
            if ok:
                self.protected.append(L)
        # clean: a protected lock whose every write stores 0 or the writer's tid + 1.  Then no thread but t can
        # make L == t+1 true (writing t+1 is t's alone) or false (see ``blocked``): that atom is t's own state
        self.clean = [L for L in self.protected if all(
            self._writes_lock(br, L) is None or fold(self._writes_lock(br, L), {}, lay, t) in (E.Const(0), E.Const(t + 1))
            for t, th in enumerate(m.threads) for st in th.program.steps for br in st.branches)]
        # blocked[(t, L)]: pcs of t whose step cannot run while another thread owns L
        self.blocked = {}
        for L in self.protected:
            for t, th in enumerate(m.threads):
                self.blocked[(t, L)] = {p for p, st in enumerate(th.program.steps)
                                        if p in self.held[(t, L)] or all(implies_zero(br.guard, L)
                                                                         for br in st.branches)}
        self._reach = {}

    # -- locks

    def _writes_lock(self, br, L):
        for target, value in br.updates:
            if isinstance(target, E.Var) and target.name == L:
                return value
        return None

    def _must_hold(self, t, L) -> set:
        """pcs of thread t where, on every control-flow path from its entry, its last write of L was L := t+1:
        a greatest fixpoint (every pc but the entry starts as held)."""
        steps = self.model.threads[t].program.steps
        npc = len(steps) + 1
        held = [True] * npc
        held[0] = False
        changed = True
        while changed:
            changed = False
            incoming = [None] * npc
            for p, st in enumerate(steps):
                for br in st.branches:
                    v = self._writes_lock(br, L)
                    if v is None:
                        out = held[p]
                    else:
                        fv = fold(v, {}, self.lay, t)
                        out = isinstance(fv, E.Const) and fv.value == t + 1
                    g = self.lay.pc_of_label(t, br.goto)
                    incoming[g] = out if incoming[g] is None else (incoming[g] and out)
            for g in range(1, npc):
                new = incoming[g] if incoming[g] is not None else True   # never entered: vacuously held
                if new != held[g] and held[g]:
                    held[g] = False
                    changed = True
        return {p for p in range(len(steps)) if held[p]}

    def _validate(self, t, L, held) -> bool:
        """Every write of L by t runs where t holds L, or under a guard implying L == 0."""
        for p, st in enumerate(self.model.threads[t].program.steps):
            if p in held:
                continue
            for br in st.branches:
                if self._writes_lock(br, L) is not None and not implies_zero(br.guard, L):
                    return False
        return True

    def held_by(self, t, s) -> tuple:
        """The protected locks thread t owns in state s (owner words hold tid + 1)."""
        return tuple(L for L in self.protected if s[self.lock_slot[L]] == t + 1)

    # -- what another thread can still do

    def reach(self, u, pc, held: tuple):
        """(W, R): the union of the write and read masks of every step thread u can run from ``pc`` on, while
        the locks ``held`` stay owned by another (frozen) thread: control flow is not followed through a step
        that cannot run then."""
        key = (u, pc, held)
        r = self._reach.get(key)
        if r is not None:
            return r
        steps = self.model.threads[u].program.steps
        cut = set()
        for L in held:
            cut |= self.blocked[(u, L)]
        w = rd = 0
        seen, stack = set(), [pc]
        while stack:
            q = stack.pop()
            if q in seen or q >= len(steps) or q in cut:
                continue
            seen.add(q)
            w |= self.W[u][q]
            rd |= self.R[u][q]
            stack.extend(self.succ_pcs[u][q])
        self._reach[key] = r = (w, rd)
        return r

    def dependent_masks(self, t, p):
        """(reads, writes) of step p of thread t as the reduction tests them against other threads."""
        return self.R[t][p], self.W[t][p]

    def dependent(self, t, p, u, q) -> bool:
        """The relation: two steps of different threads are dependent unless their masks are disjoint."""
        if t == u:
            return True
        r1, w1 = self.dependent_masks(t, p)
        r2, w2 = self.R[u][q], self.W[u][q]
        return bool(w1 & (r2 | w2) or w2 & r1)


class Visibility:
    """The state predicates a reduction must not hide: every checked invariant, every checked assertion as
    ``pc_t != p or a`` and every watched trigger (vacuity).  ``extra_reads(t, p, held)`` is the mask of
    slots that must stay unwritten by other threads for step p of thread t to be ample (docs/POR.md, C2):
    for each predicate the step can change, what is left of it once t's pc and the locks t owns are fixed."""

    def __init__(self, model: Model, properties, watched, ind: Independence):
        self.model, self.lay, self.ind = model, model.layout, ind
        lay = self.lay
        preds = []
        for p in properties:
            prop = model.properties[p]
            if prop.kind == "invariant" and prop.expr is not None:
                preds.append((prop.expr, None, True))
            elif prop.kind == "assertion":
                for t, pc, a in model.assertion_sites(p):
                    preds.append((E.Op("or", (E.ne(E.Pc(t), pc), a)), t, True))
        for p in watched:
            if model.properties[p].kind == "final":
                continue                   # exercised by terminal states, which every persistent set keeps
            for t, pc, trig in model.trigger_sites(p):
                preds.append((trig if t is None else E.and_(E.eq(E.Pc(t), pc), trig), t, False))
        folded = []
        for e, t, prop in preds:
            f = fold(e, {}, lay, t)                  # bound to its thread: SelfId, own locals
            # a property is violated when one of its conjuncts is: each conjunct is a predicate of its own, so
            # a step that moves only one of them is held against that one only (not for triggers: reaching a
            # state where a conjunction holds is no disjunction of its conjuncts)
            parts = E.chain(f, "and") if prop else [f]
            if prop and isinstance(f, E.Op) and f.op == "or" and isinstance(f.args[-1], E.Op) and f.args[-1].op == "and":
                head = f.args[:-1]
                parts = [fold(E.Op("or", head + (c,)), {}, lay, None) for c in E.chain(f.args[-1], "and")]
            folded += parts
        self.preds = [(f, reads(f, lay, None)) for f in folded if not isinstance(f, E.Const)]
        self._folds = {}
        self._extra = {}

    def _class(self, i, t, v):
        key = (i, t, v)
        r = self._folds.get(key)
        if r is None:
            e, _ = self.preds[i]
            self._folds[key] = r = fold(e, {self.lay.pc_slot(t): v}, self.lay, None)
        return r

    def extra_reads(self, t, p, held: tuple) -> int:
        key = (t, p, held)
        r = self._extra.get(key)
        if r is not None:
            return r
        ind, lay = self.ind, self.lay
        pc_bit = 1 << lay.pc_slot(t)
        w = ind.W[t][p]
        env = {lay.pc_slot(t): p}
        for L in held:
            env[ind.lock_slot[L]] = t + 1
        atoms = {}
        for L in ind.clean:
            if L not in held:
                me, v = E.Const(t + 1), E.Var(L)
                atoms.update({E.Op("==", (v, me)): E.Const(0), E.Op("==", (me, v)): E.Const(0),
                              E.Op("!=", (v, me)): E.Const(1), E.Op("!=", (me, v)): E.Const(1)})
        extra = 0
        for i, (e, rd) in enumerate(self.preds):
            if not rd & w:
                continue                   # the step cannot change it
            if not rd & w & ~pc_bit and all(self._class(i, t, g) == self._class(i, t, p)
                                             for g in ind.succ_pcs[t][p]):
                continue                   # it moves t's pc only between pcs the predicate cannot tell apart
            res = fold(e, env, lay, None, atoms)
            if not isinstance(res, E.Const):
                extra |= reads(res, lay, None)
        self._extra[key] = extra
        return extra
