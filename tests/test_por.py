"""Partial-order reduction (checker/por.py, model/independence.py, docs/POR.md): on every shipped spec the
verdict, the violated property and the vacuous properties agree with the reduction on and off (the
counterexamples may differ in length: both are reported), and a deliberately wrong independence relation is
caught by that same comparison."""
from __future__ import annotations

import random
from pathlib import Path

import pytest

from pddgpu_verify.checker.explorer import explore
from pddgpu_verify.checker.por import Reduction
from pddgpu_verify.checker.spec import load_spec
from pddgpu_verify.model import expr as E
from pddgpu_verify.model.independence import Independence, Visibility, fold
from pddgpu_verify.model.program import Branch, Model, Program, Property, Step, ThreadDef, VarDecl

ROOT = Path(__file__).resolve().parent.parent
SPECS = sorted((ROOT / "specs").glob("*.toml"))
# about two million states each: minutes in the Python explorer, twice (the reduction runs only there)
SLOW = {"42_vram_fixed_exhaustion.toml", "43_gtt_fixed_exhaustion.toml"}


def run(spec, por):
    m = spec.build()
    return explore(m, properties=spec.checked_properties(m), strategy=spec.strategy, symmetry=spec.symmetry,
                   max_states=spec.max_states, max_depth=spec.max_depth, liveness=spec.liveness,
                   backend="python", por=por)


def outcome(r):
    return r.verdict, r.property, sorted(r.stats.get("vacuous") or [])


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.stem)
def test_reduction_keeps_the_verdict(path, record_property):
    if path.name in SLOW:
        pytest.skip(f"{path.name}: about 2 M states, minutes in the Python explorer (the reduction runs there only)")
    spec = load_spec(path)
    if spec.liveness and path.name != "19_vram_state_retry_livelock.toml":
        pytest.skip(f"{path.name}: liveness runs without the reduction (a lasso needs every interleaving of its "
                    "cycle); spec 19 checks that it is switched off")
    full, red = run(spec, False), run(spec, True)
    record_property("states", f"{full.stats['states']} -> {red.stats['states']}")
    record_property("counterexample_steps", f"{max(len(full.path) - 1, 0)} -> {max(len(red.path) - 1, 0)}")
    print(f"{path.stem}: {full.label} {full.stats['states']} states, {len(full.path) - 1} steps; "
          f"with por: {red.label} {red.stats['states']} states, {len(red.path) - 1} steps")
    assert outcome(red) == outcome(full)
    assert red.stats["states"] <= full.stats["states"] or red.verdict != "OK"
    assert red.stats["por"] is (not spec.liveness)
    if red.path:          # the counterexample is a real run: replayed step by step from the initial state
        assert red.path[0][1] == spec.build().initial_state()


class EveryPairIndependent(Independence):
    """Wrong on purpose: calls every pair of steps of different threads independent (visibility kept)."""

    def dependent_masks(self, t, p):
        return 0, 0


class ReadsNeverConflict(Independence):
    """Wrong on purpose: only write/write conflicts count (a read of what another thread writes is ignored)."""

    def dependent_masks(self, t, p):
        return 0, self.W[t][p]

    def reach(self, u, pc, held):
        return super().reach(u, pc, held)[0], 0


class NothingVisible(Visibility):
    """Wrong on purpose: no step can hide a property."""

    def extra_reads(self, t, p, held):
        return 0


def with_independence(cls, visibility=None):
    def make(comp):
        r = Reduction(comp, ind=cls(comp.model))
        if visibility is not None:
            r.vis = visibility(comp.model, comp.properties, comp.watched, r.ind)
        return r
    return make


@pytest.mark.parametrize("wrong", [with_independence(EveryPairIndependent), with_independence(ReadsNeverConflict),
                                   with_independence(EveryPairIndependent, NothingVisible)],
                         ids=["every_pair_independent", "reads_never_conflict", "nothing_visible"])
def test_a_wrong_independence_relation_is_caught(wrong):
    changed = []
    for path in SPECS:
        spec = load_spec(path)
        if path.name in SLOW or spec.expect_verdict == "OK":
            continue            # a defect spec ends within a few hundred states: the cheap place to look
        full, bad = run(spec, False), run(spec, wrong)
        if outcome(bad) != outcome(full):
            changed.append((path.stem, full.label, bad.label))
    print("verdicts changed by the wrong relation:", changed)
    assert changed, "the comparison must catch a wrong relation"


def test_native_back_end_hands_por_to_python():
    spec = load_spec(ROOT / "specs" / "06_vram_recover_overlap.toml")
    m = spec.build()
    r = explore(m, properties=spec.checked_properties(m), symmetry=spec.symmetry, por=True)
    assert r.stats["backend"] == "python" and "por" in r.stats["backend_reason"]
    assert r.stats["por"] is True


def test_fold_agrees_with_evaluate():
    """The folding behind visibility (a Const result is the value on every state agreeing with the substitution)
    against the reference evaluator, on every predicate of a spec and random states."""
    spec = load_spec(ROOT / "specs" / "40_vram_fixed.toml")
    m = spec.build()
    lay = m.layout
    ind = Independence(m)
    vis = Visibility(m, tuple(m.properties), tuple(m.properties), ind)
    rnd = random.Random(11)
    for e, rd in vis.preds:
        slots = [k for k in range(lay.size) if rd >> k & 1]
        for _ in range(20):
            s = [rnd.choice((-1, 0, 1, 2, 3, 4, 8, 15)) for _ in range(lay.size)]
            for t in range(len(m.threads)):
                s[lay.pc_slot(t)] = rnd.randrange(len(lay.labels[t]))
            env = {k: s[k] for k in slots if rnd.random() < 0.5}
            f = fold(e, env, lay, None)
            assert bool(E.evaluate(f, s, lay)) == bool(E.evaluate(e, s, lay))


def test_lock_protection_found():
    m = load_spec(ROOT / "specs" / "40_vram_fixed.toml").build()
    ind = Independence(m)
    assert ind.protected == ["lock"] and ind.clean == ["lock"]
    w = m.layout.pc_of_label(0, "op0.alloc.alloc_call")
    assert w in ind.held[(0, "lock")]
    assert m.layout.pc_of_label(0, "op0.alloc.dev_check") not in ind.held[(0, "lock")]


def test_check_por_compare_shows_both(tmp_path):
    from click.testing import CliRunner
    from pddgpu_verify.cli.main import main
    res = CliRunner().invoke(main, ["check", str(ROOT / "specs" / "06_vram_recover_overlap.toml"), "--por-compare",
                                    "--traces-dir", str(tmp_path)])
    assert "por vram_recover_overlap:" in res.output and "without:" in res.output, res.output


# ---------------------------------------------------------------------------------------------- random models
# Small random models beside the shipped ones: shared variables that wrap, a lock taken and released (and
# sometimes written wrongly, so its protection must be refused), loops, step assertions, invariants reading
# pcs and other threads' locals, triggers, and symmetric pairs.  Each property is checked alone, and deadlock
# alone, so the first violation found is that property's.


_SH = ["x", "y", "z"]


def _rexpr(r, depth=2, owner=None):
    if depth == 0 or r.random() < 0.3:
        c = r.random()
        if c < 0.3:
            return E.Const(r.randrange(0, 3))
        if c < 0.8 or owner == 0:
            return E.Var(r.choice(_SH))
        return E.Local("a", owner if owner is None else r.randrange(owner))
    op = r.choice(["+", "-", "==", "!=", "<", "and", "or", "not", "ite", "&"])
    q = lambda: _rexpr(r, depth - 1, owner)  # noqa: E731
    if op == "not":
        return E.not_(q())
    if op == "ite":
        return E.ite(q(), q(), q())
    return E.Op(op, (q(), q()))


def _program(r, nsteps, nassert):
    labels = [f"s{i}" for i in range(nsteps)] + ["done"]
    steps = []
    for i in range(nsteps):
        def goto():
            return r.choice(labels[i + 1:] + labels[max(0, i - 2):i + 1]) if r.random() < 0.3 else labels[i + 1]
        kind = r.random()
        asserts = []
        if r.random() < nassert:
            asserts.append((f"a{r.randrange(3)}", _rexpr(r)))
        if kind < 0.2:
            steps.append(Step(labels[i], (Branch(E.eq(E.Var("L"), 0), ((E.Var("L"), E.SelfId() + 1),), goto()),),
                              kind="acquire", lock="L",
                              asserts=tuple(asserts) + (("no_reacq", E.ne(E.Var("L"), E.SelfId() + 1)),)))
        elif kind < 0.35:
            ups = ((E.Var("L"), E.Const(0)),)
            if r.random() < 0.5:
                ups += ((E.Var(r.choice(_SH)), _rexpr(r)),)
            steps.append(Step(labels[i], (Branch(E.TRUE, ups, goto()),), kind="release", lock="L",
                              asserts=tuple(asserts)))
        elif kind < 0.38:          # a write of the lock word no lock discipline allows
            steps.append(Step(labels[i], (Branch(E.TRUE, ((E.Var("L"), E.Const(r.randrange(3))),), goto()),),
                              asserts=tuple(asserts)))
        else:
            g = _rexpr(r) if r.random() < 0.6 else E.TRUE
            brs = []
            for gg in ([g, E.not_(g)] if r.random() < 0.6 else [g]):
                ups = []
                for tgt in r.sample(_SH + ["a"], r.randrange(0, 3)):
                    ups.append((E.Local("a") if tgt == "a" else E.Var(tgt), _rexpr(r)))
                brs.append(Branch(gg, tuple(ups), goto()))
            steps.append(Step(labels[i], tuple(brs), asserts=tuple(asserts)))
    return Program("p", tuple(steps), (VarDecl("a", bits=3),))


def random_model(seed):
    r = random.Random(seed)
    nth = r.choice([2, 2, 3])
    sym = r.random() < 0.3
    progs = [_program(r, r.randrange(2, 6), 0.3) for _ in range(nth)]
    if sym:
        progs[1] = progs[0]
    threads = tuple(ThreadDef(f"t{i}", progs[i], group="g" if sym and i < 2 else "") for i in range(nth))
    props = {}
    owner = 0 if sym else nth        # a symmetric pair: properties over shared variables only, as symmetry needs
    for k in range(r.randrange(0, 3)):
        e = _rexpr(r, owner=owner)
        if not sym and r.random() < 0.4:
            t = r.randrange(nth)
            e = E.or_(E.eq(E.Pc(t), r.randrange(len(progs[t].steps) + 1)), e)
        props[f"inv{k}"] = Property(f"inv{k}", "invariant", "", e,
                                    trigger=_rexpr(r, owner=owner) if r.random() < 0.5 else None)
    shared = tuple(VarDecl(v, bits=3) for v in _SH) + (VarDecl("L", bits=8, kind="owner"),)
    return Model(f"rand{seed}", shared, threads, props, locks={"L": "mutex"}), sym


def test_random_models_keep_their_verdicts():
    runs = reduced = 0
    for seed in range(80):
        m, sym = random_model(seed)
        for kw in [dict(properties=[p], deadlock=False) for p in m.properties] + [dict(properties=[], deadlock=True)]:
            full = explore(m, symmetry=sym, backend="python", max_states=20000, **kw)
            red = explore(m, symmetry=sym, backend="python", por=True, max_states=20000, **kw)
            if "INCOMPLETE" in (full.verdict, red.verdict):
                continue
            runs += 1
            reduced += red.stats["states"] < full.stats["states"]
            assert outcome(red) == outcome(full), (seed, kw)
    assert runs > 200 and reduced > 50, (runs, reduced)


def test_a_lock_written_outside_its_discipline_protects_nothing():
    """The cut behind the lock-aware reduction holds only while every write of the lock word runs where its
    thread holds it or under a guard L == 0: one stray store, and the lock gives no independence."""
    def locker(stray):
        # pre peeks at the lock word (dependent on every acquire and release): only the cut at t1's acquire
        # makes t0's step on x independent of what t1 can still do
        steps = [Step("pre", (Branch(E.TRUE, ((E.Local("a"), E.Var("L")),), "lock"),)),
                 Step("lock", (Branch(E.eq(E.Var("L"), 0), ((E.Var("L"), E.SelfId() + 1),), "work"),),
                      kind="acquire", lock="L"),
                 Step("work", (Branch(E.TRUE, ((E.Var("x"), E.Var("x") + 1),), "unlock"),)),
                 Step("unlock", (Branch(E.TRUE, ((E.Var("L"), E.Const(0)),), "stray" if stray else "done"),),
                      kind="release", lock="L")]
        if stray:
            steps.append(Step("stray", (Branch(E.TRUE, ((E.Var("L"), E.Const(2)),), "done"),)))
        return Program("p", tuple(steps), (VarDecl("a", bits=8),))

    shared = (VarDecl("x", bits=4), VarDecl("L", bits=8, kind="owner"))
    reduced = []
    for stray, protected in ((False, ["L"]), (True, [])):
        m = Model("locks", shared, (ThreadDef("t0", locker(False)), ThreadDef("t1", locker(stray))),
                  {"x_small": Property("x_small", "invariant", "", E.Var("x") < 3)}, locks={"L": "mutex"})
        ind = Independence(m)
        assert ind.protected == protected
        assert ind.held[(0, "L")] == {2, 3}           # t0 holds L at work and unlock
        full, red = (explore(m, backend="python", por=por) for por in (False, True))
        assert outcome(red) == outcome(full)
        reduced.append(red.stats["por_reduced_states"])
    # inside the critical section, t0's step on x is independent of all t1 can still do only while L protects
    assert reduced[0] > reduced[1], reduced
