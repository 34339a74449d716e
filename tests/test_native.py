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
        if symmetry_groups(spec.build()):
            yield pytest.param(name, not spec.symmetry, id=f"{name}-symmetry-{'off' if spec.symmetry else 'on'}")


def _explore(spec, model, symmetry, backend, **kw):
    return explore(model, properties=spec.checked_properties(model), strategy=spec.strategy,
                   symmetry=spec.symmetry if symmetry is None else symmetry, max_states=spec.max_states,
                   max_depth=spec.max_depth, liveness=spec.liveness, backend=backend, **kw)


@pytest.mark.parametrize("name,symmetry", list(_cases()))
def test_native_agrees_with_python(name, symmetry):
    spec = load_spec(ROOT / "specs" / name)
    model = spec.build()
    py = _explore(spec, model, symmetry, "python")
    nat = _explore(spec, model, symmetry, "native")
    assert py.stats["backend"] == "python"
    if spec.liveness:
        # a lasso needs the whole graph: liveness stays on the Python back end, and says so
        assert nat.stats["backend"] == "python" and "liveness" in nat.stats["backend_reason"]
    else:
        assert nat.stats["backend"] == "native", nat.stats.get("backend_reason")
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


def test_auto_leaves_a_small_run_to_python_and_a_large_one_to_native():
    spec, model = _small()
    assert _explore(spec, model, None, "auto").stats["backend"] == "python"       # 3,813 states
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
    spec, model = _small()
    monkeypatch.setenv("PDDGPU_VERIFY_CACHE", str(tmp_path))
    monkeypatch.setattr(native, "CFLAGS", native.CFLAGS + ["-fno-such-option-anywhere"])
    r = _explore(spec, model, None, "native")
    assert r.verdict == OK and r.stats["states"] == 3813 and r.stats["backend"] == "python"
    assert r.stats["backend_reason"].startswith("C compiler failed")


def test_an_unsupported_model_falls_back_to_python(monkeypatch):
    spec, model = _small()

    def refuse(*a, **k):
        raise Unsupported("expression node Foo")
    monkeypatch.setattr(native, "generate", refuse)
    r = _explore(spec, model, None, "native")
    assert r.stats["backend"] == "python" and r.stats["backend_reason"] == "expression node Foo"


def test_a_range_guessed_too_narrow_is_widened_and_the_search_rerun(monkeypatch, tmp_path):
    spec, model = _small()
    monkeypatch.setenv("PDDGPU_VERIFY_CACHE", str(tmp_path))
    real = native.initial_ranges
    slot = model.layout.var_names().index("state")

    def narrow(m):
        r = real(m)
        r[slot] = (2, 3)           # the manager state word takes READY|ERROR (10) and more
        return r
    monkeypatch.setattr(native, "initial_ranges", narrow)
    r = _explore(spec, model, None, "native")
    assert r.stats["backend"] == "native" and r.stats["range_widenings"] >= 1
    assert (r.verdict, r.stats["states"]) == (OK, 3813)
