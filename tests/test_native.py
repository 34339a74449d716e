"""The native back end (checker/native.py) against the Python explorer, the reference, on every shipped spec:
the same verdict, violated property, distinct-state and transition counts, counterexample length and vacuous
properties, with and without symmetry."""
from pathlib import Path

import pytest

from pddgpu_verify.checker import native
from pddgpu_verify.checker.explorer import INCOMPLETE, OK, explore
from pddgpu_verify.checker.spec import load_spec
from pddgpu_verify.model import interpret
from pddgpu_verify.model.compile import symmetry_groups
from pddgpu_verify.model.compile_c import Unsupported

from toy_models import lock_order, lost_update, peterson

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.skipif(native.compiler() is None, reason="no gcc on PATH: the native back end is not built")

SPECS = sorted(p.name for p in (ROOT / "specs").glob("*.toml"))
# the Python explorer needs about a minute for each (two million states): too slow to serve as the reference here
SLOW = {"42_vram_fixed_exhaustion.toml", "43_gtt_fixed_exhaustion.toml"}
# 120k-220k states as the spec configures them (3-5 s in Python), several times that without symmetry: compared
# in the spec's own configuration only
BIG = {"40_vram_fixed.toml", "41_gtt_fixed.toml", "45_vram_fixed_1m.toml", "46_gtt_fixed_1m.toml",
       "47_vram_fixed_stats.toml", "48_gtt_fixed_stats.toml", "49_vram_fixed_odd_size.toml"}


def _cases():
    for name in SPECS:
        if name in SLOW:
            yield pytest.param(name, None, marks=pytest.mark.skip(reason="the Python reference run takes ~1 min"))
            continue
        yield pytest.param(name, None, id=f"{name}-as-spec")
        if name in BIG:
            continue
        spec = load_spec(ROOT / "specs" / name)
        if symmetry_groups(spec.build()) and not spec.liveness:     # liveness runs without symmetry anyway
            yield pytest.param(name, not spec.symmetry, id=f"{name}-symmetry-{'off' if spec.symmetry else 'on'}")


def _explore(spec, model, symmetry, backend, **kw):
    return explore(model, properties=spec.checked_properties(model), strategy=spec.strategy,
                   symmetry=spec.symmetry if symmetry is None else symmetry, max_states=spec.max_states,
                   max_depth=spec.max_depth, liveness=spec.liveness, backend=backend, **kw)


@pytest.mark.parametrize("name,symmetry", list(_cases()))
def test_native_agrees_with_python(name, symmetry):
    spec = load_spec(ROOT / "specs" / name)
    model = spec.build()
    nat = _explore(spec, model, symmetry, "native")
    if spec.liveness:
        # a lasso needs the whole graph: liveness stays on the Python back end, and says so
        assert nat.stats["backend"] == "python" and "liveness" in nat.stats["backend_reason"]
        assert nat.verdict == spec.expect_verdict
        return
    assert nat.stats["backend"] == "native", nat.stats.get("backend_reason")
    py = _explore(spec, model, symmetry, "python")
    assert py.stats["backend"] == "python"
    if symmetry is None:
        assert nat.verdict == spec.expect_verdict
    assert (nat.verdict, nat.property, nat.thread) == (py.verdict, py.property, py.thread)
    for k in ("states", "transitions", "diameter", "vacuous", "absent"):
        assert nat.stats.get(k) == py.stats.get(k), k
    assert len(nat.path) == len(py.path)
    assert nat.detail == py.detail
    for (_, s), (mv, n) in zip(nat.path, nat.path[1:]):
        assert (mv.thread, mv.pc, mv.branch, n) in interpret.successors(model, s)


def _small():
    spec = load_spec(ROOT / "specs/50_vram_fixed_three_workers.toml")
    return spec, spec.build()


def test_hash_compaction_gives_the_same_verdicts():
    spec, model = _small()
    exact = _explore(spec, model, None, "native")
    compact = _explore(spec, model, None, "native", hash_compact=True)
    assert exact.verdict == compact.verdict == OK
    assert compact.stats["backend"] == "native" and compact.stats["hash_compact"]
    assert compact.stats["states"] == exact.stats["states"] == 3813
    assert compact.stats["vacuous"] == exact.stats["vacuous"]
    bad = load_spec(ROOT / "specs/06_vram_recover_overlap.toml")
    bm = bad.build()
    a, b = _explore(bad, bm, None, "python"), _explore(bad, bm, None, "native", hash_compact=True)
    assert a.label == b.label == "VIOLATION(no_overlap)" and len(a.path) == len(b.path)


def test_a_memory_budget_ends_incomplete_with_what_was_explored():
    spec = load_spec(ROOT / "specs/40_vram_fixed.toml")
    model = spec.build()
    r = native.explore_native(model, properties=spec.checked_properties(model), symmetry=True,
                              memory_budget=256 * 1024)
    assert r.verdict == INCOMPLETE and r.stats["backend"] == "native"
    assert "memory budget of 262,144 bytes reached" in r.detail
    assert 0 < r.stats["states"] < 200_530 and r.stats["memory_budget"] == 256 * 1024
    assert "vacuous" in r.stats


def test_auto_leaves_a_small_run_to_python_until_its_c_is_built(monkeypatch, tmp_path):
    monkeypatch.setenv("PDDGPU_VERIFY_CACHE", str(tmp_path))
    r = explore(peterson(), backend="auto")
    assert (r.stats["states"], r.stats["backend"]) == (34, "python")
    assert explore(peterson(), backend="native").stats["backend"] == "native"      # builds it
    assert explore(peterson(), backend="auto").stats["backend"] == "native"


def test_auto_runs_a_large_spec_natively():
    big = load_spec(ROOT / "specs/40_vram_fixed.toml")
    r = _explore(big, big.build(), None, "auto")
    assert (r.verdict, r.stats["states"], r.stats["backend"]) == (OK, 200_530, "native")


def test_without_a_compiler_the_python_back_end_runs_and_says_why(monkeypatch):
    spec, model = _small()
    monkeypatch.setattr(native, "compiler", lambda: None)
    r = _explore(spec, model, None, "auto")
    assert r.verdict == OK and r.stats["backend"] == "python"
    assert r.stats["backend_reason"] == "no C compiler (gcc) found"


def test_a_compiler_failure_falls_back_to_python(monkeypatch, tmp_path):
    monkeypatch.setenv("PDDGPU_VERIFY_CACHE", str(tmp_path))
    monkeypatch.setattr(native, "CFLAGS", native.CFLAGS + ["-fno-such-option-anywhere"])
    r = explore(peterson(), backend="native")
    assert (r.verdict, r.stats["states"], r.stats["backend"]) == (OK, 34, "python")
    assert r.stats["backend_reason"].startswith("C compiler failed")


def test_an_unsupported_model_falls_back_to_python(monkeypatch):
    def refuse(*a, **k):
        raise Unsupported("expression node Foo")
    monkeypatch.setattr(native, "generate", refuse)
    r = explore(peterson(), backend="native")
    assert r.stats["backend"] == "python" and r.stats["backend_reason"] == "expression node Foo"


def test_a_range_guessed_too_narrow_is_widened_and_the_search_rerun(monkeypatch, tmp_path):
    monkeypatch.setenv("PDDGPU_VERIFY_CACHE", str(tmp_path))
    real = native.initial_ranges

    def narrow(m, guess=None):
        r = real(m, guess)
        r[0] = (0, 1)              # the counter reaches 3
        return r
    monkeypatch.setattr(native, "initial_ranges", narrow)
    r = explore(lost_update(3), properties=[], backend="native")
    assert r.stats["backend"] == "native" and r.stats["range_widenings"] >= 1
    assert (r.verdict, r.stats["states"]) == (OK, explore(lost_update(3), properties=[], backend="python").stats["states"])


# the explorer's hand-checked toy systems (tests/test_explorer.py), on the native back end
def test_toy_lost_update_has_13_states_14_transitions_and_a_4_step_counterexample():
    r = explore(lost_update(), properties=[], backend="native")
    assert (r.stats["backend"], r.verdict, r.stats["states"], r.stats["transitions"]) == ("native", OK, 13, 14)
    r = explore(lost_update(), backend="native")
    assert r.label == "VIOLATION(no_lost_update)" and len(r.path) == 5 and r.path[-1][1][0] == 1


def test_toy_systems_agree_with_their_hand_counts():
    assert explore(lost_update(atomic=True), backend="native").stats["states"] == 4
    r = explore(peterson(), backend="native")
    assert (r.stats["backend"], r.verdict, r.stats["states"]) == ("native", OK, 34)
    assert explore(peterson(broken=True), backend="native").label == "VIOLATION(mutual_exclusion)"
    d = explore(lock_order(), backend="native")
    assert d.verdict == "DEADLOCK" and len(d.path) == 3 and d.stats["backend"] == "native"
    plain = explore(lost_update(3), properties=[], backend="native")
    sym = explore(lost_update(3), properties=[], symmetry=True, backend="native")
    assert plain.verdict == sym.verdict == OK and sym.stats["states"] < plain.stats["states"]
    assert sym.stats["states"] == explore(lost_update(3), properties=[], symmetry=True, backend="python").stats["states"]
    assert explore(lost_update(3), symmetry=True, backend="native").label == "VIOLATION(no_lost_update)"


@pytest.mark.parametrize("bound", [{"max_states": 5000}, {"max_depth": 12}, {"max_states": 1}])
def test_state_and_depth_bounds_stop_where_python_stops(bound):
    spec = load_spec(ROOT / "specs/40_vram_fixed.toml")
    model = spec.build()
    kw = dict(properties=spec.checked_properties(model), symmetry=True, **bound)
    py, nat = explore(model, backend="python", **kw), explore(model, backend="native", **kw)
    assert nat.stats["backend"] == "native" and nat.verdict == py.verdict == INCOMPLETE
    for k in ("states", "transitions", "diameter", "vacuous"):
        assert nat.stats[k] == py.stats[k], k


def test_a_compiled_model_and_deadlock_off_are_served_natively():
    from pddgpu_verify.model.compile import compile_model
    d = explore(lock_order(), deadlock=False, backend="native")
    assert (d.stats["backend"], d.verdict) == ("native", OK)
    assert d.stats["states"] == explore(lock_order(), deadlock=False, backend="python").stats["states"]
    comp = compile_model(peterson(), None, False)
    r = explore(comp, backend="native")
    assert (r.stats["backend"], r.verdict, r.stats["states"]) == ("native", OK, 34)


def test_a_compiled_model_with_a_hooked_check_runs_in_python():
    # mutate sees every state through a wrapped check: the C search would never call it
    from dataclasses import replace
    from pddgpu_verify.model.compile import compile_model
    comp = compile_model(peterson(), None, False)
    seen = []
    inner = comp.check

    def check(s):
        seen.append(s)
        return inner(s)
    r = explore(replace(comp, check=check), backend="native")
    assert r.stats["backend"] == "python" and "check is replaced" in r.stats["backend_reason"]
    assert len(seen) == r.stats["states"] == 34


def test_the_cache_keeps_the_most_recently_used_shared_objects(tmp_path):
    import os
    for i in range(5):
        p = tmp_path / f"m_{i}.so"
        p.write_text("x")
        os.utime(p, (1000 + i, 1000 + i))
    native._prune(tmp_path, keep=2)
    assert sorted(p.name for p in tmp_path.glob("m_*.so")) == ["m_3.so", "m_4.so"]


def test_ctrl_c_stops_a_native_search(tmp_path):
    """A signal handler cannot run inside a C call: the search runs in a thread and stops when told."""
    import signal
    import subprocess
    import sys
    import time
    from helpers import eight_workers_spec, sigint_delivered
    p = eight_workers_spec(tmp_path)
    # a first run builds the shared object (so the second is inside the C search when the signal comes)
    subprocess.run([sys.executable, "-m", "pddgpu_verify.cli.main", "check", str(p), "--backend", "native",
                    "--max-states", "1000", "--traces-dir", str(tmp_path / "t")], capture_output=True, timeout=300)
    proc = subprocess.Popen([sys.executable, "-m", "pddgpu_verify.cli.main", "check", str(p), "--backend", "native",
                             "--traces-dir", str(tmp_path / "t")], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, preexec_fn=sigint_delivered)
    time.sleep(4.0)
    t = time.monotonic()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, (proc.returncode, err[-1000:])
    assert "Traceback" not in err and err.strip().splitlines()[-1] == "pddgpu-verify: interrupted"
    assert time.monotonic() - t < 30
