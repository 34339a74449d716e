"""Verdicts a driver engineer can trust (issue 8): the race the old property
missed, the documented state machine as properties, and vacuity reported
instead of a silent OK.  Each test states the answer the checker must find."""
from dataclasses import replace

import pytest
from pathlib import Path

from pddgpu_verify.checker.explorer import explore
from pddgpu_verify.checker.run import run_spec
from pddgpu_verify.checker.spec import SpecError, load_spec
from pddgpu_verify.model import gtt, vram
from pddgpu_verify.model.manager import Workload
from pddgpu_verify.model.options import ALL_FIXES

from helpers import pair

EVERY_FIX = dict(ALL_FIXES, fix_state_retry_bounded=False)


def _labels(model, path):
    return [(model.threads[m.thread].name, model.layout.label(m.thread, m.pc)) for m, _ in path[1:]]


@pytest.mark.parametrize("mod", [vram, gtt], ids=["vram", "gtt"])
def test_unlocked_set_error_lands_between_recheck_and_allocator_call(mod):
    # every other fix on, fix_is_ready included: the re-check under the lock looks at ERROR, and too early
    opts = dict(EVERY_FIX, fix_error_under_lock=False)
    m = mod.make(opts, Workload(workers=pair(1), error_injectors=1))
    r = explore(m)
    assert r.label == "VIOLATION(error_serves_no_alloc)"
    assert _labels(m, r.path) == [("w0", "op0.alloc.dev_check"), ("w0", "op0.alloc.mgr_check"),
                                  ("w0", "op0.alloc.lock"), ("w0", "op0.alloc.recheck"), ("inj0", "set_error")]
    fixed = explore(mod.make(EVERY_FIX, Workload(workers=pair(1), error_injectors=1)))
    assert fixed.verdict == "OK" and "error_serves_no_alloc" not in fixed.stats["vacuous"]


def test_spec_40_fails_without_the_error_lock_fix():
    spec = load_spec("specs/40_vram_fixed.toml")
    assert spec.workload.error_injectors == 1
    broken = replace(spec, fixes={**spec.fixes, "fix_error_under_lock": False})
    o = run_spec(broken, traces_dir=None)
    assert o.result.label == "VIOLATION(error_serves_no_alloc)" and len(o.result.path) - 1 == 5


def test_document_alloc_code_breaks_its_own_promise_that_failure_sets_error():
    wl = Workload(workers=pair(2))
    r = explore(vram.make({"fix_retry_unlock": True}, wl, size=1))
    assert r.label == "VIOLATION(alloc_failure_sets_error)"
    ok = explore(vram.make({"fix_retry_unlock": True, "fix_alloc_failure_sets_error": True}, wl, size=1))
    assert ok.verdict == "OK"
    # the failure path was exercised: the property is not vacuous in the OK
    assert "alloc_failure_sets_error" not in ok.stats["vacuous"]
    assert "alloc_retries_before_failure" not in ok.stats["vacuous"]


def test_vacuous_and_absent_properties_are_named():
    # one worker, blocks to spare, no reader, no recoverer, no fini: nothing fails, no two blocks are ever live,
    # and the recover, get_stats and fini checks are in no thread of the model
    r = explore(vram.make(EVERY_FIX, Workload(workers=pair(1)), size=4))
    assert r.verdict == "OK"
    assert sorted(r.stats["vacuous"]) == sorted([
        "no_overlap", "shutdown_sticky", "alloc_failure_sets_error", "alloc_retries_before_failure",
        "no_sleep_under_spinlock", "alloc_enodev_only_when_unready", "device_shutdown_refuses_calls"])
    assert sorted(r.stats["absent"]) == sorted([
        "init_failure_sets_error", "recover_leaves_ready", "stats_snapshot", "stats_consistent", "no_data_race",
        "no_reinit_of_live_allocator", "no_buddy_metadata_leak", "no_leak_at_fini", "fini_shuts_down",
        "set_error_sets_error", "recover_refused_only_at_shutdown"])


def test_fixed_spec_with_undeclared_vacuity_is_not_as_expected(tmp_path):
    text = open("specs/47_vram_fixed_stats.toml").read()
    assert 'vacuous = ["alloc_failure_sets_error"' in text
    bad = tmp_path / "x.toml"
    bad.write_text(text.replace('vacuous = [', 'vacuous = ["no_overlap", ', 1))
    o = run_spec(load_spec(bad), traces_dir=None)
    assert o.result.verdict == "OK" and not o.matches      # no_overlap was exercised: the claim is wrong
    good = run_spec(load_spec("specs/47_vram_fixed_stats.toml"), traces_dir=None)
    assert good.matches and "no_overlap" not in good.vacuous and "stats_snapshot" not in good.vacuous


def test_fix_run_must_exercise_the_property_its_defect_broke():
    spec = load_spec("specs/31_vram_alloc_failure_no_error.toml")
    fixed = spec.with_fixes()
    assert fixed.must_exercise == ["alloc_failure_sets_error"]
    o = run_spec(fixed, traces_dir=None)
    assert o.result.verdict == "OK" and o.matches
    # the same fix on a workload that never fails proves nothing about it
    idle = replace(fixed, workload=Workload(workers=pair(1)), size=4)
    o2 = run_spec(idle, traces_dir=None)
    assert o2.result.verdict == "OK" and "alloc_failure_sets_error" in o2.vacuous and not o2.matches


def test_expect_vacuous_names_known_properties(tmp_path):
    text = open("specs/47_vram_fixed_stats.toml").read()
    bad = tmp_path / "y.toml"
    bad.write_text(text.replace('vacuous = ["alloc_failure_sets_error"', 'vacuous = ["no_such_thing"', 1))
    with pytest.raises(SpecError) as e:
        load_spec(bad)
    assert e.value.field == "expect.vacuous[0]"


def test_every_shipped_spec_states_what_z3_must_say():
    """check --prove compares z3's word with [expect] prove: a spec without it can never match, so make check
    would fail on it (it did, unseen, until a whole make check ran from a fresh clone)."""
    import glob
    from pddgpu_verify.checker.spec import load_spec
    files = sorted(glob.glob(str(Path(__file__).resolve().parent.parent / "specs" / "*.toml")))
    assert len(files) >= 40
    want = {"VIOLATION": "VIOLATED", "OK": "PROVED", "LIVENESS": "none", "DEADLOCK": "none"}
    for f in files:
        s = load_spec(f)
        if s.expect_prove == "NOT INDUCTIVE":      # a partial proof is pinned by how much of it z3 proves
            assert s.expect_verdict == "OK" and isinstance(s.expect_proved, int), f
            continue
        assert s.expect_prove == want[s.expect_verdict], (f, s.expect_prove)


def test_every_proved_spec_ships_its_certificate_and_no_certificate_is_orphaned():
    """make check re-checks a shipped certificate instead of searching (checker/certificate.py): a fixed spec
    without one would only be slow, but a certificate of a renamed or removed spec is dead weight that
    misleads a reader."""
    import glob
    from pddgpu_verify.checker import certificate
    root = Path(__file__).resolve().parent.parent / "specs"
    specs = [load_spec(f) for f in sorted(glob.glob(str(root / "*.toml")))]
    owners = {certificate.path_for(s): s for s in specs}
    for s in specs:
        if s.expect_prove == "PROVED":
            tps = certificate.load(s)
            assert tps, f"{certificate.path_for(s)}: missing or empty (make certificates)"
    for p in sorted((root / "certificates").glob("*")):
        assert p in owners, f"{p}: no spec of that name"
        s = owners[p]
        assert s.expect_prove == "PROVED", f"{p}: its spec expects {s.expect_prove}: a certificate only serves a proof"
        import json
        assert json.loads(p.read_text())["spec"] == s.name, p
