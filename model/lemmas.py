"""Named auxiliary invariants (lemmas) that strengthen inductive proofs.

A spec names them in its ``[prove]`` table (``lemmas = ["held_blocks_in_mask"]``);
``lemma_expr(model, name)`` builds the expression for that model (over all its
workers).  A lemma is proved like a property -- it is a hypothesis of the
induction step only together with the obligation to show it itself -- so a
wrong lemma can make a proof fail, never make it unsound.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from .expr import Const, Expr, Local, Pc, SelfId, Var, and_, eq, implies, ne, not_, or_


class LemmaError(KeyError):
    pass


@dataclass(frozen=True)
class Lemma:
    name: str
    description: str
    build: Callable          # model -> Expr


LEMMAS: dict[str, Lemma] = {}


def lemma(name, description):
    def deco(fn):
        LEMMAS[name] = Lemma(name, description, fn)
        return fn
    return deco


def lemma_expr(model, name: str) -> Expr:
    if name not in LEMMAS:
        raise LemmaError(f"unknown lemma '{name}' (known: {', '.join(sorted(LEMMAS))})")
    return LEMMAS[name].build(model)


# ---------------------------------------------------------------------------
# hand-written lemmas (over every thread / worker of the model)

def _threads(model, role=None):
    return [t for t, th in enumerate(model.threads) if role is None or th.program.role == role]


def _held_pcs(model, t, lock="lock"):
    """pcs of thread t at which it holds ``lock``: forward data flow over the
    program's steps (acquire sets, release clears)."""
    prog = model.threads[t].program
    labels = prog.labels
    held = {0: False}
    work = [0]
    out = set()
    while work:
        pc = work.pop()
        if pc >= len(prog.steps):
            continue
        st = prog.steps[pc]
        h = held[pc]
        if h:
            out.add(pc)
        nh = True if (st.kind == "acquire" and st.lock == lock) else False if (st.kind == "release" and st.lock == lock) else h
        for br in st.branches:
            q = labels.index(br.goto)
            if q not in held:
                held[q] = nh
                work.append(q)
            elif held[q] != nh:
                raise ValueError(f"{model.threads[t].name}: lock '{lock}' held and not held at {labels[q]}")
    return out


@lemma("mask_conflict_free", "the allocator never holds two overlapping candidate blocks")
def mask_conflict_free(model):
    geo = model.geometry
    m = Var("mask")
    parts = [m >= 0]
    for a in range(geo.count):
        for b in range(a + 1, geo.count):
            if geo.conflicts[a] >> b & 1:
                parts.append(not_(and_(ne(m & (1 << a), 0), ne(m & (1 << b), 0))))
    parts.append(eq(m >> geo.count, 0))
    return and_(*parts)


@lemma("held_blocks_distinct", "two workers never hold the same block")
def held_blocks_distinct(model):
    W = _threads(model, "worker")
    return and_(*(implies(and_(Local("blk", i) >= 0, Local("blk", j) >= 0), ne(Local("blk", i), Local("blk", j)))
                  for a, i in enumerate(W) for j in W[a + 1:]))


@lemma("held_blocks_in_mask", "a block a worker holds is allocated in the allocator of the same generation")
def held_blocks_in_mask(model):
    geo = model.geometry
    W = _threads(model, "worker")
    return and_(*(implies(Local("blk", i) >= 0, and_(geo.has(Var("mask"), Local("blk", i)), eq(Local("bgen", i), Var("gen")),
                                                      Local("blk", i) < geo.count)) for i in W))


@lemma("dead_allocator_flagged",
       "an allocator that is not alive (failed init, or fini) is flagged ERROR or SHUTDOWN in the state word, "
       "so a worker whose re-check passed under the lock finds it alive")
def dead_allocator_flagged(model):
    # between a failed init and set_state (both under the lock) the recoverer has not flagged it yet
    flagging = [and_(eq(Pc(t), th.program.labels.index("set_state")), ne(Local("r", t), 0))
                for t, th in enumerate(model.threads)
                if th.program.role == "recoverer" and "set_state" in th.program.labels]
    # ... nor between tearing the old allocator down and initialising the new one (fix_recover_reinit)
    flagging += [eq(Pc(t), th.program.labels.index("init")) for t, th in enumerate(model.threads)
                 if th.program.role == "recoverer" and "teardown_old" in th.program.labels]
    parts = [implies(eq(Var("alive"), 0), or_(ne(Var("state") & (0x04 | 0x08), 0), *flagging))]
    # a recoverer past a successful init, still under the lock, has a live allocator
    for t, th in enumerate(model.threads):
        if th.program.role != "recoverer" or "set_state" not in th.program.labels:
            continue
        for label in ("set_state", "unlock"):
            parts.append(implies(and_(eq(Pc(t), th.program.labels.index(label)), eq(Local("r", t), 0)),
                                 eq(Var("alive"), 1)))
    return and_(*parts)


# ---------------------------------------------------------------------------
# mined candidate invariants ("auto")
#
# Candidates are templates over thread *programs*, not thread indices, so the
# same template instantiates on a model with any number of workers (the
# parametric proof relies on that).  They are mined from reachable states of
# a small configuration and are only candidates: the prover keeps the subset
# it can show inductive (Houdini), so a wrong guess costs time, never
# soundness.

def prog_key(th) -> str:
    return th.group or th.name


def _derived_terms(model):
    """Model-specific terms whose values are worth tracking (name -> Expr)."""
    out = {}
    geo = getattr(model, "geometry", None)
    if geo is not None:
        units = geo.allocated_units(Var("mask"))
        out["used-units"] = Var("used") - units
        if getattr(model, "profile", None) is not None and model.profile.has_vis:
            out["vis-units"] = Var("vis") - units
    return out


def _thread_terms(model, t):
    """Terms about thread t whose per-pc values are worth tracking: unlike the
    block index itself (which depends on how many workers allocate before),
    the size of the block a worker holds is fixed by its program."""
    geo = getattr(model, "geometry", None)
    names = {v.name for v in model.threads[t].program.locals}
    return {"blk_size": geo.size_of(Local("blk", t))} if geo is not None and "blk" in names else {}


def _subst(e, env: dict):
    """``e`` with shared variables / the executing thread's locals replaced
    (``env``: ("var" | "local", name) -> Expr)."""
    from . import expr as E
    if isinstance(e, E.Var):
        return env.get(("var", e.name), e)
    if isinstance(e, E.Local) and e.thread is None:
        return env.get(("local", e.name), e)
    if isinstance(e, E.Op):
        return E.Op(e.op, tuple(_subst(a, env) for a in e.args))
    if isinstance(e, E.Ite):
        return E.Ite(_subst(e.cond, env), _subst(e.then, env), _subst(e.other, env))
    if isinstance(e, E.Table):
        return E.Table(e.values, _subst(e.index, env), e.default)
    if isinstance(e, E.FirstFit):
        return E.FirstFit(e.sizes, e.conflicts, _subst(e.mask, env), _subst(e.size, env))
    return e


def wp_atoms(model, t, depth: int = 3) -> dict:
    """Weakest preconditions of thread t's own assertions, pulled back up to
    ``depth`` steps along its program: name -> (pc, Expr), meaning "at pc, the
    Expr holds".  An assertion such as get_stats' "0 <= used_size <= total"
    then has a candidate at the step that reads the counters ("used <= total"
    under the lock), which is what makes it provable for any number of
    writers; whether each holds is for mining and the solver to decide."""
    cache = model.__dict__.setdefault("_wp_atoms", {})     # instantiating templates asks once per instance
    if (t, depth) not in cache:
        cache[(t, depth)] = _wp_atoms(model, t, depth)
    return cache[(t, depth)]


def _wp_atoms(model, t, depth):
    prog = model.threads[t].program
    labels = prog.labels
    preds = {}
    for q, st in enumerate(prog.steps):
        for b, br in enumerate(st.branches):
            preds.setdefault(br.goto, []).append((q, b, br))
    out = {}
    layer = [(st.label, f"{st.label}:{p}", a) for st in prog.steps for p, a in st.asserts]
    for _ in range(depth):
        nxt = []
        for label, name, a in layer:
            for q, b, br in preds.get(label, ()):
                env = {("var" if isinstance(x, Var) else "local", x.name): v for x, v in br.updates
                       if isinstance(x, Var) or x.thread is None}
                w = implies(br.guard, _subst(a, env))
                nm = f"wp:{labels[q]}/{b}<-{name}"
                out[nm] = (q, w)
                nxt.append((labels[q], nm, w))
        layer = nxt
    return out


def _atoms(model, t):
    """Boolean facts about thread t (name -> Expr) mined per pc."""
    out = {}
    for lk in model.locks:
        out[f"holds:{lk}"] = eq(Var(lk), SelfId() + 1)
    geo = getattr(model, "geometry", None)
    th = model.threads[t]
    names = {v.name for v in th.program.locals}
    if geo is not None and "blk" in names:
        out["blk_in_mask"] = geo.has(Var("mask"), Local("blk", t))
        if "bgen" in names:
            out["bgen_current"] = eq(Local("bgen", t), Var("gen"))
    return out


def _small(values, limit=12):
    return len(values) <= limit


def mine(model, states, *, limit: int = 12) -> list:
    """Templates true on every state of ``states`` (a sample of reachable states)."""
    from .expr import evaluate
    lay = model.layout
    owner = {d.name for d in model.shared if d.kind == "owner"}
    gvars = [d.name for d in model.shared if d.name not in owner]
    derived = _derived_terms(model)
    T = range(len(model.threads))
    keys = [prog_key(th) for th in model.threads]
    # per (key, pc label): value sets of locals, shared vars, derived terms; atom truth sets; other threads' pcs
    vals, atoms, cross, holder, g_vals, g_imp, lock0, limp = {}, {}, {}, {}, {}, {}, {}, {}
    atom_exprs = [_atoms(model, t) for t in T]
    tterms = [_thread_terms(model, t) for t in T]
    wps = []
    for t in T:
        by_pc = {}
        for n, (q, e) in wp_atoms(model, t).items():
            by_pc.setdefault(q, []).append((n, e))
        wps.append(by_pc)
    small_g = [v for v in gvars]
    # one fast pass keeps the distinct projections: shared part, per-thread part, pc vector
    from operator import itemgetter
    shared_slots = list(range(len(model.shared)))
    get_g = itemgetter(*shared_slots)
    tslots = [[lay.pc_slot(t)] + list(lay.local_index[t].values()) for t in T]
    get_t = [itemgetter(*(shared_slots + sl)) for sl in tslots]
    get_pcs = itemgetter(*[lay.pc_slot(t) for t in T])
    G, P, PCV = set(), [set() for _ in T], set()
    for s in states:
        G.add(get_g(s))
        PCV.add(get_pcs(s))
        for t in T:
            P[t].add(get_t[t](s))

    def fake(values, slots):
        st = [0] * lay.size
        for k, v in zip(slots, values):
            st[k] = v
        return st

    for gt in G:
        s = fake(gt, shared_slots)
        dv = {n: evaluate(e, s, lay) for n, e in derived.items()}
        gv = {n: s[lay.shared_slot(n)] for n in gvars}
        for n, v in gv.items():
            g_vals.setdefault(n, set()).add(v)
        for x in small_g:
            for y in small_g:
                if x != y:
                    g_imp.setdefault((x, gv[x], y), set()).add(gv[y])
        for lk in owner:
            if s[lay.shared_slot(lk)] == 0:
                for n, v in dv.items():
                    lock0.setdefault((lk, n), set()).add(v)
    for t in T:
        slots = shared_slots + tslots[t]
        for proj in P[t]:
            s = fake(proj, slots)
            dv = {n: evaluate(e, s, lay) for n, e in derived.items()}
            gv = {n: s[lay.shared_slot(n)] for n in gvars}
            pc = s[lay.pc_slot(t)]
            lab = lay.labels[t][pc]
            k = (keys[t], lab)
            d = vals.setdefault(k, {})
            for name, slot in lay.local_index[t].items():
                d.setdefault("local:" + name, set()).add(s[slot])
            for n, v in gv.items():
                d.setdefault("var:" + n, set()).add(v)
            for n, v in dv.items():
                d.setdefault("derived:" + n, set()).add(v)
            for n, e in tterms[t].items():
                d.setdefault("tderived:" + n, set()).add(evaluate(e, s, lay, t))
            a = atoms.setdefault(k, {})
            for n, e in wps[t].get(pc, ()):
                a.setdefault(n, set()).add(bool(evaluate(e, s, lay, t)))
            for n, e in atom_exprs[t].items():
                a.setdefault(n, set()).add(bool(evaluate(e, s, lay, t)))
                if n.startswith("holds:") and evaluate(e, s, lay, t):
                    holder.setdefault((keys[t], n), set()).add(lab)
            ls = [(name, s[slot]) for name, slot in lay.local_index[t].items()]
            li = limp.setdefault(k, {})
            for x, a_ in ls:
                for y, b in ls:
                    if x != y:
                        li.setdefault((x, a_, y), set()).add(b)
    for pcs in PCV:
        for t in T:
            k = (keys[t], lay.labels[t][pcs[t]])
            for u in T:
                if u != t:
                    cross.setdefault((k, keys[u]), set()).add(lay.labels[u][pcs[u]])
    out = []
    for (key, lab), d in vals.items():
        for term, vs in d.items():
            if _small(vs, limit):
                out.append(("pcval", key, lab, term, tuple(sorted(vs))))
    for (key, lab), d in vals.items():
        # bounds survive where value sets do not: a block index grows with the number of workers, its
        # "-1 or a block" lower bound does not
        for term, vs in d.items():
            if term.startswith("local:") and len(vs) > 1:
                out.append(("pcmin", key, lab, term, min(vs)))
                out.append(("pcmax", key, lab, term, max(vs)))
    for (key, lab), li in limp.items():
        d = vals[(key, lab)]
        for (x, a, y), vs in li.items():
            if _small(vs, limit) and _small(d["local:" + x], limit) and len(vs) < len(d["local:" + y]):
                out.append(("limp", key, lab, x, a, y, tuple(sorted(vs))))
    seen_labs = {}
    for (key, lab) in vals:
        seen_labs.setdefault(key, set()).add(lab)
    for t in T:
        for lab in lay.labels[t]:
            if lab not in seen_labs.get(keys[t], ()):
                out.append(("pcnever", keys[t], lab))
    out = list(dict.fromkeys(out))
    for (key, lab), a in atoms.items():
        for n, vs in a.items():
            if len(vs) == 1:
                out.append(("pcatom", key, lab, n, next(iter(vs))))
    for (key, n), labs in holder.items():
        out.append(("holder", key, n, tuple(sorted(labs))))
    for ((key, lab), ukey), labs in cross.items():
        out.append(("cross", key, lab, ukey, tuple(sorted(labs))))
    for n, vs in g_vals.items():
        if _small(vs, limit):
            out.append(("gval", n, tuple(sorted(vs))))
    for (x, a, y), vs in g_imp.items():
        if _small(vs, limit) and _small(g_vals[x], limit) and len(vs) < len(g_vals[y]):
            out.append(("gimp", x, a, y, tuple(sorted(vs))))
    for (lk, n), vs in lock0.items():
        if _small(vs, limit):
            out.append(("lock0", lk, n, tuple(sorted(vs))))
    return out


def instantiate(model, templates) -> list:
    """[(template, Expr, threads read, tid)]: each template over every thread
    (pair) of ``model`` it applies to; ``tid`` is the thread whose identity
    ``SelfId`` denotes in the expression (None: no SelfId)."""
    lay = model.layout
    derived = _derived_terms(model)
    keys = [prog_key(th) for th in model.threads]
    by_key = {}
    for t, k in enumerate(keys):
        by_key.setdefault(k, []).append(t)
    out = []

    def pc_is(t, lab):
        return eq(Pc(t), lay.labels[t].index(lab))

    def pc_in(t, labs):
        return or_(*(pc_is(t, l) for l in labs if l in lay.labels[t]))

    def term(t, name):
        kind, n = name.split(":", 1)
        if kind == "local":
            return Local(n, t)
        if kind == "var":
            return Var(n)
        if kind == "tderived":
            return _thread_terms(model, t)[n]
        return derived[n]

    def in_vals(e, vs):
        return or_(*(eq(e, v) for v in vs))

    for tp in templates:
        kind = tp[0]
        if kind == "pcval":
            _, key, lab, name, vs = tp
            for t in by_key.get(key, []):
                if lab in lay.labels[t] and (not name.startswith("derived:") or name[8:] in derived):
                    out.append((tp, implies(pc_is(t, lab), in_vals(term(t, name), vs)), [t], None))
        elif kind in ("pcmin", "pcmax"):
            _, key, lab, name, bound = tp
            for t in by_key.get(key, []):
                if lab in lay.labels[t]:
                    x = term(t, name)
                    out.append((tp, implies(pc_is(t, lab), x >= bound if kind == "pcmin" else x <= bound), [t], None))
        elif kind == "limp":
            _, key, lab, x, a, y, vs = tp
            for t in by_key.get(key, []):
                if lab in lay.labels[t]:
                    out.append((tp, implies(and_(pc_is(t, lab), eq(Local(x, t), a)), in_vals(Local(y, t), vs)), [t], None))
        elif kind == "pcnever":
            _, key, lab = tp
            for t in by_key.get(key, []):
                if lab in lay.labels[t]:
                    out.append((tp, not_(pc_is(t, lab)), [t], None))
        elif kind == "pcatom":
            _, key, lab, name, val = tp
            for t in by_key.get(key, []):
                a = _atoms(model, t).get(name)
                if a is None and name.startswith("wp:"):
                    a = wp_atoms(model, t).get(name, (None, None))[1]
                if a is not None and lab in lay.labels[t]:
                    out.append((tp, implies(pc_is(t, lab), a if val else not_(a)), [t], t))
        elif kind == "holder":
            _, key, name, labs = tp
            for t in by_key.get(key, []):
                a = _atoms(model, t).get(name)
                if a is not None:
                    out.append((tp, implies(a, pc_in(t, labs)), [t], t))
        elif kind == "cross":
            _, key, lab, ukey, labs = tp
            for t in by_key.get(key, []):
                for u in by_key.get(ukey, []):
                    if u != t and lab in lay.labels[t]:
                        out.append((tp, implies(pc_is(t, lab), pc_in(u, labs)), [t, u], None))
        elif kind == "gval":
            _, n, vs = tp
            out.append((tp, in_vals(Var(n), vs), [], None))
        elif kind == "gimp":
            _, x, a, y, vs = tp
            out.append((tp, implies(eq(Var(x), a), in_vals(Var(y), vs)), [], None))
        elif kind == "lock0":
            _, lk, n, vs = tp
            if n in derived:
                out.append((tp, implies(eq(Var(lk), 0), in_vals(derived[n], vs)), [], None))
    return out



@lemma("mask_is_held_blocks", "the allocator holds exactly the blocks the workers hold (a global, not per-worker, fact)")
def mask_is_held_blocks(model):
    geo = model.geometry
    W = _threads(model, "worker")
    u = Const(0)
    for i in W:
        u = u | geo.bit_of(Local("blk", i))
    return eq(Var("mask"), u)


@lemma("ghost_marks_bounded",
       "a thread's ghost mark never exceeds the counter it was taken from: the ERROR set/clear counters only grow, "
       "up to their cap; "
       "and a worker's entry mark (umark, below the cap only if the manager served at entry) still equal to the "
       "ERROR sets means no ERROR was set since, so ERROR is clear")
def ghost_marks_bounded(model):
    from .manager import GHOST_CAP
    # the counters saturate at the cap: without saying so a CTI may start from a value past it, where the
    # saturating increment goes down and a mark taken earlier ends above its counter
    parts = [Var(c) <= GHOST_CAP for c in ("err_sets", "err_clears") if c in {d.name for d in model.shared}]
    for t, th in enumerate(model.threads):
        names = {v.name for v in th.program.locals}
        for mark, counter in (("emark", "err_clears"), ("imark", "err_clears"), ("rmark", "err_sets"),
                              ("xmark", "err_clears")):
            if mark in names:
                parts.append(and_(Local(mark, t) >= 0, Local(mark, t) <= Var(counter)))
        if "umark" in names:
            u = Local("umark", t)
            parts += [u >= 0, u <= GHOST_CAP, implies(u < GHOST_CAP, u <= Var("err_sets")),
                      implies(and_(u < GHOST_CAP, eq(u, Var("err_sets"))), eq(Var("state") & 0x08, 0))]
    return and_(*parts)


DEFAULT = ["auto", "mask_conflict_free", "held_blocks_distinct", "held_blocks_in_mask", "mask_is_held_blocks",
           "ghost_marks_bounded"]
"""What ``prove`` uses when a spec's [prove] table names no lemmas."""


@lemma("locks_held_in_critical_sections",
       "a thread holds a lock exactly between its acquire and the matching release: there the lock word is its "
       "identity + 1, everywhere else it is not")
def locks_held_in_critical_sections(model):
    parts = []
    for lk in model.locks:
        for t, th in enumerate(model.threads):
            try:
                pcs = sorted(_held_pcs(model, t, lk))
            except ValueError:          # a program that holds the lock on one path to a step and not on another
                continue
            inside = or_(*(eq(Pc(t), pc) for pc in pcs)) if pcs else Const(0)
            parts += [implies(inside, eq(Var(lk), Const(t + 1))), implies(not_(inside), ne(Var(lk), Const(t + 1)))]
    return and_(*parts)


@lemma("teardown_flagged",
       "SHUTDOWN, once fini set it, stays in the state word, and fini tears the allocator down only after setting it "
       "(so a thread whose re-check under the lock sees no SHUTDOWN finds the allocator not torn down)")
def teardown_flagged(model):
    parts = [implies(eq(Var("shutdown_seen"), 1), ne(Var("state") & 0x04, 0)),
             implies(eq(Var("finied"), 1), eq(Var("shutdown_seen"), 1))]
    for t, th in enumerate(model.threads):
        labels = th.program.labels
        if th.program.role == "fini" and "mgr_shutdown" in labels:
            after = range(labels.index("mgr_shutdown") + 1, len(labels))    # labels end with 'done'
            parts.append(implies(or_(*(eq(Pc(t), pc) for pc in after)), eq(Var("shutdown_seen"), 1)))
    return and_(*parts)
