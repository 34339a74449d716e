"""mutate's fingerprints computed in C (checker/observe.py compiled into the native search) must be the Python
ones, number for number: an equivalent mutant is decided by comparing the two, whichever back end searched each."""
import pytest

from pddgpu_verify.checker import mutate as M
from pddgpu_verify.checker import native
from pddgpu_verify.checker.observe import Fingerprints, Observer, obs_hash
from pddgpu_verify.checker.spec import load_spec

needs_cc = pytest.mark.skipif(native.compiler() is None, reason="no C compiler: the native observer is not built")


def _subject(path):
    spec = load_spec(path)
    cfg = M.check_config(spec)
    return spec, cfg, M.prepared(spec, cfg)


def _fingerprints(spec, cfg, p, mid, backend, monkeypatch):
    """(verdict, states, back end, fingerprints, reached) of the original (mid None) or a mutant."""
    model = p["model"]
    if mid is None:
        mm = model
        sets = [M._pcs(model, M.running(model, m.original), labels) for m in p["mutants"].values()
                for labels in (m.hidden, M.interior(m.original, m))]
        fp = Fingerprints(model.layout, sets, reached=True)
    else:
        m = p["mutants"][mid]
        mm = M.build_mutant(spec, m)
        th = M.running(mm, m.program)
        fp = Fingerprints(mm.layout, [M._pcs(mm, th, m.hidden), M._pcs(mm, th, M.interior(m.program, m))])
    comp = M.compiled(mm, cfg, p["props"])
    if backend == "python":
        obs = Observer(mm, model, comp.symmetry, p["blank"])
        r = M.search(M.observing(comp, lambda s: fp.add(s, obs.vector(s))), cfg)
    else:
        monkeypatch.setattr(M, "PROBE", 10)          # past ten states the search goes native
        r = M.observed_search(comp, model, cfg, fp, p["blank"])
    return r.verdict, r.stats["states"], r.stats.get("backend", "python"), fp.result(), fp.reached


@needs_cc
@pytest.mark.parametrize("path, mid, states", [
    # three interchangeable workers: the observer sorts their slices, tagged with the lock they own
    ("specs/50_vram_fixed_three_workers.toml", None, 3_813),
    # the mutant adds a step and a local: its states are mapped onto the original's layout, pcs by label
    ("specs/50_vram_fixed_three_workers.toml", "split_rmw:worker:op0.alloc.ok_stats:used", None),
    # two interchangeable recoverers beside one worker
    ("specs/53_gtt_fixed_two_recoverers.toml", None, 5_072),
    ("specs/53_gtt_fixed_two_recoverers.toml", "split_rmw:recoverer:set_state:state", None),
])
def test_the_native_observer_gives_the_python_fingerprints(path, mid, states, monkeypatch, tmp_path):
    monkeypatch.setenv("PDDGPU_VERIFY_CACHE", str(tmp_path))
    spec, cfg, p = _subject(path)
    py = _fingerprints(spec, cfg, p, mid, "python", monkeypatch)
    c = _fingerprints(spec, cfg, p, mid, "native", monkeypatch)
    assert (py[0], c[0], c[2]) == ("OK", "OK", "native")
    assert py[1] == c[1] and (states is None or c[1] == states)
    assert c[3] == py[3] and c[4] == py[4]
    # and they say something: the mutant's states outside its region differ from the original's, or agree
    assert all(n > 0 for n, _ in c[3])


def test_the_hash_mixes_every_value_and_its_position():
    assert obs_hash((1, 0)) != obs_hash((0, 1))
    assert obs_hash((-1,)) != obs_hash((-2,))
    assert obs_hash(()) == 0x9E3779B97F4A7C15


@needs_cc
def test_mutate_decides_the_same_outcomes_when_its_searches_go_native(monkeypatch, tmp_path):
    """Caught, equivalent (a mutant that adds a step) and survived, with every search past ten states in C,
    against every search on Python."""
    monkeypatch.setenv("PDDGPU_VERIFY_CACHE", str(tmp_path))
    spec, cfg, _ = _subject("specs/50_vram_fixed_three_workers.toml")
    select = ["split_rmw:worker:op0.alloc.ok_stats:used", "drop_lock:worker:op0.alloc.lock",
              "swap_steps:worker:op0.alloc.ok_stats", "negate_guard:worker:op0.alloc.recheck"]
    monkeypatch.setattr(M, "PROBE", 10)
    fast = M.run(spec, cfg, jobs=1, select=select)
    monkeypatch.setattr(M, "PROBE", 10 ** 9)
    slow = M.run(spec, cfg, jobs=1, select=select)
    key = [(o.id, o.verdict, o.property, o.trace, o.states, o.detail) for o in fast.outcomes]
    assert key == [(o.id, o.verdict, o.property, o.trace, o.states, o.detail) for o in slow.outcomes]
    assert len(key) == len(select) and {o.verdict for o in fast.outcomes} >= {"caught", "equivalent"}


@needs_cc
def test_one_build_with_every_same_frame_mutant_searches_each_as_its_own_build_does(monkeypatch, tmp_path):
    """generate's variants: the schema build, selecting mutant i, gives mutant i's verdict, property, states,
    transitions and counterexample, for a caught mutant, one whose asserts differ and a survivor."""
    from pddgpu_verify.model.compile_c import same_frame
    monkeypatch.setenv("PDDGPU_VERIFY_CACHE", str(tmp_path))
    spec, cfg, p = _subject("specs/50_vram_fixed_three_workers.toml")
    base, family, index = M._schema(spec, p, cfg)
    assert len(family) >= 60 and "split_rmw:worker:op0.alloc.ok_stats:used" not in index
    picked = ["drop_lock:worker:op0.alloc.lock", "drop_unlock:worker:op0.alloc.ok_unlock",
              "swap_steps:worker:op0.alloc.ok_stats", "negate_guard:worker:op0.alloc.recheck"]
    seen = set()
    for mid in picked:
        mm = family[index[mid] - 1]
        assert same_frame(p["model"], mm)
        comp = M.compiled(mm, cfg, p["props"])
        alone = native.explore_native(comp, symmetry=comp.symmetry, quick_build=True)
        shared = native.explore_native(comp, symmetry=comp.symmetry, schema=(base, family, index[mid]),
                                       quick_build=True)
        got = [(r.verdict, r.property, r.stats["states"], r.stats["transitions"], len(r.path)) for r in (alone, shared)]
        assert got[0] == got[1], mid
        seen.add(alone.verdict)
    assert seen == {"OK", "VIOLATION"}
