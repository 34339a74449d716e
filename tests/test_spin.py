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
