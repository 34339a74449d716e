"""Compile a model into Python functions over state tuples.

The explorer calls ``successors``, ``check`` and ``canon`` millions of times,
so they are generated source: one function per (thread, pc) holding that
step's guards and effects as straight-line arithmetic, dispatched through a
list indexed by pc.  No expression tree is walked at run time.
"""
from __future__ import annotations

import functools
import struct
from dataclasses import dataclass

from . import expr as E
from .program import Model, Var


@dataclass
class Compiled:
    model: Model
    successors: callable      # s -> [(tid, pc, branch, s')]
    check: callable           # s -> None | (property, tid | None)
    check_final: callable     # s -> None | property   (only meaningful when all threads are done)
    triggers: callable        # s -> bit mask over ``watched``: the properties this state exercises
    canon: callable           # s -> visited-set key: packed bytes, canonical under thread symmetry
    is_done: callable         # s -> bool (every thread finished)
    source: str
    properties: tuple
    symmetry: bool = False
    watched: tuple = ()       # the properties whose exercise is tracked (bit i of ``triggers`` is watched[i]);
    #                           an assertion checked at no step of this model is absent, not watched
    finals: int = 0           # bit mask of the final properties in ``watched``: exercised by a final state


_RUNTIME = dict(E.RUNTIME)
_RUNTIME["_first_fit"] = functools.lru_cache(maxsize=None)(E._first_fit)


def _needs_wrap(e: E.Expr) -> bool:
    return any(isinstance(n, E.Op) and n.op in ("+", "-", "*", "<<", "~", "neg") for n in E.walk(e))


def compile_model(model: Model, properties=None, symmetry: bool = False) -> Compiled:
    """``properties``: names to check (default: all the model declares)."""
    lay = model.layout
    props = tuple(model.properties) if properties is None else tuple(properties)
    wanted = set(props)
    slot = lay.shared_slot
    lslot = lay.local_slot
    pslot = lay.pc_slot

    def py(e, tid):
        return E.to_python(e, slot, lslot, pslot, tid)

    lines: list[str] = []
    emit = lines.append
    bits_of = {i: d.bits for i, d in enumerate(lay.decls)}

    # successor functions
    for tid, th in enumerate(model.threads):
        labels = lay.labels[tid]
        pc_of = {l: i for i, l in enumerate(labels)}
        fn_names = []
        for pc, st in enumerate(th.program.steps):
            fn = f"_s_{tid}_{pc}"
            fn_names.append(fn)
            emit(f"def {fn}(s, out):")
            for bi, br in enumerate(st.branches):
                guard = py(br.guard, tid)
                ind = "    "
                if guard != "1":
                    emit(f"    if {guard}:")
                    ind = "        "
                emit(f"{ind}n = list(s)")
                # right-hand sides read s, the pre-state: updates are simultaneous
                for target, value in br.updates:
                    k = slot(target.name) if isinstance(target, Var) else lslot(
                        tid if target.thread is None else target.thread, target.name)
                    rhs = py(value, tid)
                    if _needs_wrap(value) or bits_of[k] < 64:
                        if not (isinstance(value, E.Const) and E.wrap(value.value, bits_of[k]) == value.value):
                            rhs = f"_wrapb({rhs}, {bits_of[k]})"
                    emit(f"{ind}n[{k}] = {rhs}")
                emit(f"{ind}n[{pslot(tid)}] = {pc_of[br.goto]}")
                emit(f"{ind}out.append(({tid}, {pc}, {bi}, tuple(n)))")
            emit("    return")
        emit(f"def _s_{tid}_done(s, out):\n    return")
        emit(f"_S{tid} = [{', '.join(fn_names + [f'_s_{tid}_done'])}]")

    emit("def successors(s):")
    emit("    out = []")
    for tid in range(len(model.threads)):
        emit(f"    _S{tid}[s[{pslot(tid)}]](s, out)")
    emit("    return out")

    # assertions attached to steps, then invariants
    for tid, th in enumerate(model.threads):
        fns = []
        for pc, st in enumerate(th.program.steps):
            active = [(p, a) for p, a in st.asserts if p in wanted]
            if not active:
                fns.append("_a_none")
                continue
            fn = f"_a_{tid}_{pc}"
            fns.append(fn)
            emit(f"def {fn}(s):")
            for p, a in active:
                emit(f"    if not ({py(a, tid)}): return {p!r}")
            emit("    return None")
        emit(f"_A{tid} = [{', '.join(fns + ['_a_none'])}]")
    emit("def check(s):")
    for tid in range(len(model.threads)):
        emit(f"    r = _A{tid}[s[{pslot(tid)}]](s)")
        emit(f"    if r is not None: return (r, {tid})")
    for p in props:
        prop = model.properties[p]
        if prop.kind == "invariant":
            emit(f"    if not ({py(prop.expr, None)}): return ({p!r}, None)")
    emit("    return None")

    emit("def check_final(s):")
    for p in props:
        prop = model.properties[p]
        if prop.kind == "final":
            emit(f"    if not ({py(prop.expr, None)}): return {p!r}")
    emit("    return None")

    # vacuity: which watched properties a state exercises (a bound of the model is no property of the driver)
    watched = tuple(p for p in props if model.properties[p].kind in ("invariant", "assertion", "final")
                    and p not in model.bounds and model.trigger_sites(p))
    finals = 0
    site_code: dict = {}
    emit("def triggers(s):")
    emit("    m = 0")
    for i, p in enumerate(watched):
        if model.properties[p].kind == "final":
            finals |= 1 << i
            continue
        for t, pc, trig in model.trigger_sites(p):
            cond = py(trig, t)
            if t is not None:
                site_code.setdefault((t, pc), []).append((cond, i))
            elif cond == "1":
                emit(f"    m |= {1 << i}")
            else:
                emit(f"    if {cond}: m |= {1 << i}")
    for (t, pc), items in sorted(site_code.items()):
        emit(f"    if s[{pslot(t)}] == {pc}:")
        for cond, i in items:
            emit(f"        m |= {1 << i}" if cond == "1" else f"        if {cond}: m |= {1 << i}")
    emit("    return m")

    done = " and ".join(f"s[{pslot(t)}] == {lay.done_pc[t]}" for t in range(len(model.threads))) or "True"
    emit(f"def is_done(s):\n    return {done}")

    canon_tables = _emit_canon(model, emit, symmetry)

    src = "\n".join(lines) + "\n"
    ns = dict(_RUNTIME)
    ns.update(canon_tables)
    ns["_a_none"] = lambda s: None
    ns["_wrapb"] = E.wrap
    exec(compile(src, f"<compiled {model.name}>", "exec"), ns)
    return Compiled(model, ns["successors"], ns["check"], ns["check_final"], ns["triggers"], ns["canon"],
                    ns["is_done"], src, props, bool(symmetry_groups(model)) and symmetry, watched, finals)


def symmetry_groups(model: Model) -> list[list[int]]:
    groups: dict[str, list[int]] = {}
    for i, t in enumerate(model.threads):
        if t.group:
            groups.setdefault(t.group, []).append(i)
    return [g for g in groups.values() if len(g) > 1]


def _emit_canon(model: Model, emit, symmetry: bool):
    """Canonical key under permutations of interchangeable threads: each
    group's thread slices, each tagged with whether that thread owns each
    lock, sorted; owner words that name a group member become a group marker.
    Two states get the same key exactly when a permutation of group members
    maps one onto the other, so the key is sound and complete for the orbit."""
    lay = model.layout
    groups = symmetry_groups(model) if symmetry else []
    tables = {}
    if not groups:
        tables["_KEY"] = struct.Struct("<" + "".join(_fmt(d.bits) for d in lay.decls)).pack
        emit("def canon(s):\n    return _KEY(*s)")
        return tables
    owner_slots = [i for i, d in enumerate(lay.decls) if d.kind == "owner"]
    member_of = {t: gi for gi, g in enumerate(groups) for t in g}
    emit("def canon(s):")
    for k in owner_slots:
        emit(f"    o{k} = s[{k}]")
    shared = []
    n_shared = len(model.shared)
    for i in range(n_shared):
        if i in owner_slots:
            marks = {t + 1: -(member_of[t] + 2) for t in member_of}
            shared.append(f"_OWN{i}.get(o{i}, o{i})")
            emit(f"    # owner word {lay.decls[i].name}: a group member becomes its group's marker")
            tables[f"_OWN{i}"] = marks
        else:
            shared.append(f"s[{i}]")
    parts = [f"({', '.join(shared)},)"]    # concatenated into one flat tuple: the cheapest key to store
    for g in groups:
        items = []
        for t in g:
            a, b = lay.thread_slices[t]
            tag = ", ".join(f"o{k} == {t + 1}" for k in owner_slots)
            items.append(f"s[{a}:{b}] + ({tag},)" if owner_slots else f"s[{a}:{b}]")
        emit(f"    g{len(parts)} = sorted(({', '.join(items)},))")
        parts.append(" + ".join(f"g{len(parts)}[{i}]" for i in range(len(items))))
    rest = []
    grouped = set(member_of)
    for t in range(len(model.threads)):
        if t not in grouped:
            a, b = lay.thread_slices[t]
            rest.append(f"s[{a}:{b}]")
    if rest:
        parts.append(" + ".join(rest))
    fmt = [_fmt(lay.decls[i].bits) for i in range(n_shared)]
    for g in groups:
        a, b = lay.thread_slices[g[0]]
        fmt += ([_fmt(lay.decls[k].bits) for k in range(a, b)] + ["b"] * len(owner_slots)) * len(g)
    for t in range(len(model.threads)):
        if t not in grouped:
            a, b = lay.thread_slices[t]
            fmt += [_fmt(lay.decls[k].bits) for k in range(a, b)]
    tables["_KEY"] = struct.Struct("<" + "".join(fmt)).pack
    emit(f"    return _KEY(*({' + '.join(parts)}))")
    return tables


def _fmt(bits: int) -> str:
    """Smallest struct code holding a ``bits``-wide signed value: states are
    stored as packed bytes, a fifth of a tuple's size."""
    return "b" if bits <= 8 else "h" if bits <= 16 else "i" if bits <= 32 else "q"
