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
