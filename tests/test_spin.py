"""SPIN on the exported Promela agrees with the explorer (checker/promela.py, checker/spin.py): the same verdict and
property on every shipped defect spec, the same number of states on the fixed specs without symmetry."""
import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from pddgpu_verify.checker.explorer import explore
from pddgpu_verify.checker.promela import to_promela
from pddgpu_verify.checker.run import run_spec
from pddgpu_verify.checker.spec import load_spec
from pddgpu_verify.checker.spin import missing_tools, run_model, run_pml

ROOT = Path(__file__).resolve().parent.parent
MISSING = missing_tools()
pytestmark = pytest.mark.skipif(bool(MISSING), reason=f"SPIN tests skipped: {', '.join(MISSING)} not installed")

DEFECTS = sorted(p.name for p in (ROOT / "specs").glob("[0-3][0-9]_*.toml"))
# small models: pan compiled without optimisation (0.6 s instead of 4 s of gcc) and a small hash table
QUICK = dict(cflags=("-O0", "-DSAFETY", "-DNOREDUCE"), hash_bits=18, time_limit=60)


def test_the_defect_specs_are_there():
    assert len(DEFECTS) >= 29


@pytest.mark.parametrize("name", DEFECTS)
def test_spin_finds_what_the_explorer_finds(name):
    spec = load_spec(ROOT / "specs" / name)
    model = spec.build()
    ours = run_spec(spec, traces_dir=None).result
    assert (ours.verdict, ours.property) == (spec.expect_verdict, spec.expect_property)
    spin = run_model(model, spec.checked_properties(model), **QUICK)
    if spec.liveness:
        # calls_return is a cycle, which a safety search cannot see and the translation does not carry: what SPIN
        # must agree on is that no safety property fails and nothing deadlocks on the way (the explorer found none)
        assert ours.verdict == "LIVENESS"
        assert spin.label == "OK", spin.detail or spin.output[-2000:]
        return
    assert spin.label == ours.label, spin.detail or spin.output[-2000:]


def _workers(spec, n):
    return dataclasses.replace(spec, workload=dataclasses.replace(spec.workload, workers=spec.workload.workers[:1] * n))


@pytest.mark.parametrize("name", ["40_vram_fixed.toml", "41_gtt_fixed.toml"])
@pytest.mark.parametrize("workers", [1, 2])
def test_same_state_count_on_the_fixed_specs(name, workers):
    spec = _workers(load_spec(ROOT / "specs" / name), workers)
    model = spec.build()
    props = spec.checked_properties(model)
    ours = explore(model, properties=props, symmetry=False)
    spin = run_model(model, props, cflags=("-O0", "-DSAFETY", "-DNOREDUCE"), hash_bits=21, time_limit=120)
    assert ours.verdict == spin.verdict == "OK", spin.detail
    assert spin.states == ours.stats["states"]


def test_a_violating_state_only_the_monitor_sees_is_named():
    # the initial state breaks an invariant: the monitor checks states nobody has moved into yet, and says which
    spec = load_spec(ROOT / "specs" / "40_vram_fixed.toml")
    model = spec.build()
    from pddgpu_verify.model.expr import Const
    from pddgpu_verify.model.program import Property
    model.properties["never"] = Property("never", "invariant", "false", Const(0))
    spin = run_pml(to_promela(model, ["never"]), model, **QUICK)
    assert spin.label == "VIOLATION(never)"
    assert spin.depth is not None and spin.depth <= 1


def _cli(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "pddgpu_verify.cli.main", *args], cwd=cwd, capture_output=True,
                          text=True)


def test_export_writes_what_spin_accepts(tmp_path):
    out = tmp_path / "m.pml"
    r = _cli("export", "--promela", "specs/01_vram_free_during_shutdown.toml", "-o", str(out))
    assert r.returncode == 0, r.stderr
    spin = run_pml(out.read_text(), load_spec(ROOT / "specs" / "01_vram_free_during_shutdown.toml").build(), **QUICK)
    assert spin.label == "VIOLATION(no_leak_at_fini)"


@pytest.mark.parametrize("args,message", [
    (["export", "--promela", "specs/no_such.toml"], "specs/no_such.toml: file: no such file"),
    (["export", "specs/40_vram_fixed.toml"], "--promela: "),
    (["export", "--promela", "specs/40_vram_fixed.toml", "-o", "/no/such/dir/m.pml"], "--output: /no/such/dir/m.pml"),
])
def test_export_bad_input_is_one_line(args, message):
    r = _cli(*args)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pddgpu-verify: error: ") and message in lines[0], r.stderr


def _toys():
    sys.path.insert(0, str(ROOT / "tests"))
    import toy_models as T
    return {"lost_update": T.lost_update(2), "lost_update_atomic": T.lost_update(2, atomic=True),
            "lost_update_3": T.lost_update(3), "peterson": T.peterson(), "peterson_broken": T.peterson(broken=True),
            "lock_order": T.lock_order(), "lock_order_consistent": T.lock_order(consistent=True)}


@pytest.mark.parametrize("name", sorted(_toys()))
def test_toy_models_agree(name):
    model = _toys()[name]
    ours = explore(model, symmetry=False)
    spin = run_model(model, **QUICK)
    assert spin.label == ours.label, spin.detail or spin.output[-2000:]
    if ours.verdict == "OK":
        assert spin.states == ours.stats["states"]


def _arith_model(expect=None):
    """One thread through every operator, with stores that wrap and updates that read each other's targets."""
    from pddgpu_verify.model import expr as E
    from pddgpu_verify.model.builder import ProgramBuilder
    from pddgpu_verify.model.program import Model, Property, ThreadDef, VarDecl
    V = E.Var
    shared = (VarDecl("a", 8, 127), VarDecl("b", 8, -3), VarDecl("c", 4, 5), VarDecl("m", 2, 0),
              VarDecl("d", 16, 0), VarDecl("e", 64, 0), VarDecl("f", 1, 0))
    b = ProgramBuilder("arith")
    b.local("x", bits=8, init=-1)
    b.go("swap", "mix", [(V("a"), V("b")), (V("b"), V("a") + 1), (V("c"), V("c") + 5), (V("m"), 3),
                         (E.Local("x"), E.Local("x") - V("a"))])
    b.go("mix", "pick", [
        (V("d"), E.table((10, 20, 30, 40), V("c") & 3, -7) * 100 + (V("a") << 2) + (V("b") >> 1)
         + E.min_(V("a"), V("b")) - E.max_(V("a"), V("b")) + E.ite(V("a") < V("b"), 1000, 2000)),
        (V("e"), (~V("c")) + (-V("b")) + (V("a") ^ 0x55) + (V("a") | 6)
         + E.FirstFit((2, 1, 1, 1), (1, 2, 4, 8), V("m") & 3, E.Const(1))),
        (V("f"), 1)])
    b.branch("pick", [(E.eq(V("f"), 1), [(V("f"), 0)], "done"), (E.eq(V("m"), -1), [], "done")])
    th = ThreadDef("calc", b.build())
    m = Model("arith", shared, (th,), {})
    if expect is None:
        return m
    ok = E.and_(*(E.eq(V(n), v) for n, v in expect.items()))
    return Model("arith", shared, (th,), {"values": Property("values", "final", "the explorer's values", ok)})


@pytest.mark.parametrize("off_by", [0, 1])
def test_arithmetic_and_wrapping_agree(off_by):
    # the values of the explorer's final state, as a final property: SPIN must compute the same ones (and see the
    # one altered value as a violation)
    base = _arith_model()
    res = explore(base, symmetry=False, keep_graph=True)
    states, _ = res.graph
    final = [s for s in states if s[base.layout.pc_slot(0)] == base.layout.done_pc[0]]
    assert len(final) == 1
    values = {d.name: final[0][i] for i, d in enumerate(base.shared)}
    # stores wrap to their width: 5 + 5 in 4 bits, 3 in 2 bits, 1 in 1 bit, 127 + 1 in 8 bits
    assert (values["c"], values["m"], values["f"], values["a"], values["b"]) == (-6, -1, -1, -3, -128)
    values["d"] += off_by
    model = _arith_model(values)
    ours = explore(model, symmetry=False)
    spin = run_model(model, **QUICK)
    assert ours.label == ("OK" if not off_by else "VIOLATION(values)")
    assert spin.label == ours.label, spin.output[-3000:]
    if not off_by:
        assert spin.states == ours.stats["states"] == len(states)
