"""Counterexamples of the model replayed on the implementation.

Each defect of the catalogue is found by the explorer (written as an ITF
trace to a tmp dir and loaded back, as the CLI does), replayed on the code
as written -- the same violation must be observed in the real code and the
code must meet every step of the trace at the same label -- and on the code
with the fix, where the same schedule must end cleanly.  Every trace shipped
in ``traces/`` is replayed the same way.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from pddgpu_verify.checker.explorer import explore
from pddgpu_verify.checker.trace import load_trace, to_itf, write_trace
from pddgpu_verify.model import gtt, vram
from pddgpu_verify.model.manager import Workload as W
from pddgpu_verify.model.options import ALL_FIXES
from pddgpu_verify.conformance.impl_replay import format_report, replay_on_impl, suggested_fix

A = lambda n: ("alloc", n)  # noqa: E731
F = ("free",)

# name, manager, options (readings), workload, size, properties checked, fix options
CATALOGUE = [
    ("free_during_shutdown_vram", "vram", {}, W([[A(1), F]], shutdown=True), 4, None,
     {"fix_free_always_releases": True}),
    ("free_during_shutdown_gtt", "gtt", {}, W([[A(1), F]], shutdown=True), 4, None,
     {"fix_free_always_releases": True}),
    ("free_during_error", "vram", {"fix_is_ready": True}, W([[A(1), F]], error_injectors=1, shutdown=True), 4,
     ["no_leak_at_fini"], {"fix_free_always_releases": True}),
    ("alloc_failure_sets_error_leak", "vram", {"fix_alloc_failure_sets_error": True},
     W([[A(4), F], [A(4), F]], shutdown=True), 4, ["no_leak_at_fini"], {"fix_free_always_releases": True}),
    ("error_serves_alloc_vram", "vram", {}, W([[A(1), F]], error_injectors=1), 4, ["error_serves_no_alloc"],
     {"fix_is_ready": True, "fix_free_always_releases": True}),
    ("error_serves_alloc_gtt", "gtt", {}, W([[A(1), F]], error_injectors=1), 4, ["error_serves_no_alloc"],
     {"fix_is_ready": True, "fix_free_always_releases": True}),
    ("reinit_live_vram", "vram", {}, W([[A(1), F]], recoverers=1), 4, ["no_reinit_of_live_allocator"],
     {"fix_recover_reinit": True}),
    ("reinit_live_gtt", "gtt", {}, W([[A(1), F]], recoverers=1), 4, ["no_reinit_of_live_allocator"],
     {"fix_recover_reinit": True}),
    ("foreign_free_vram", "vram", {}, W([[A(1), F]], recoverers=1), 4, ["no_foreign_free"],
     {"fix_recover_reinit": True}),
    ("foreign_free_gtt", "gtt", {}, W([[A(1), F]], recoverers=1), 4, ["no_foreign_free"],
     {"fix_recover_reinit": True}),
    ("overlap_after_recover", "vram", {}, W([[A(1), F], [A(1), F]], recoverers=1), 4, ["no_overlap"],
     {"fix_recover_reinit": True}),
    ("used_negative_after_recover", "vram", {}, W([[A(1), F]], recoverers=1), 4, ["used_matches_allocations"],
     {"fix_recover_reinit": True}),
    ("buddy_metadata_leak", "vram", {}, W([[A(1), F]], recoverers=1), 4, ["no_buddy_metadata_leak"],
     {"fix_recover_reinit": True}),
    ("recover_clears_shutdown_vram", "vram", {}, W([[A(1), F]], recoverers=1, shutdown=True), 4,
     ["shutdown_sticky"], {"fix_recover_state": True, "fix_recover_reinit": True}),
    ("recover_clears_shutdown_gtt", "gtt", {}, W([[A(1), F]], recoverers=1, shutdown=True), 4,
     ["shutdown_sticky"], {"fix_recover_state": True}),
    ("failed_init_then_alloc", "vram", {"init_can_fail": True}, W([[A(1), F]], recoverers=1), 4,
     ["no_allocator_use_after_fini"], dict(ALL_FIXES)),
    ("retry_reacquires_mutex", "vram", {"retry_holds_lock": True}, W([[A(4), F], [A(4), F]]), 4,
     ["lock_no_self_reacquire"], {"fix_retry_unlock": True}),
    ("retry_sleeps_under_spinlock", "gtt", {"retry_holds_lock": True}, W([[A(4), F], [A(4), F]]), 4,
     ["no_sleep_under_spinlock"], {"fix_retry_unlock": True}),
    ("retry_deadlock", "vram", {"retry_holds_lock": True}, W([[A(4), F], [A(4), F]]), 4, ["no_overlap"],
     {"fix_retry_unlock": True}),
    ("enomem_leaks_vres", "vram", {}, W([[A(4), F], [A(4), F]]), 4, ["no_lost_resource"],
     {"fix_retry_unlock": True}),
    ("stats_torn_vram", "vram", {}, W([[A(1), F]], stats_readers=1), 4, ["stats_consistent"],
     {"fix_stats_snapshot": True}),
    ("stats_race_gtt", "gtt", {}, W([[A(1), F]], stats_readers=1), 4, ["no_data_race"],
     {"fix_stats_snapshot": True}),
    ("alloc_after_fini_vram", "vram", {"fini_concurrent": True}, W([[A(1), F]], shutdown=True), 4,
     ["no_allocator_use_after_fini"], {"fix_fini_evicts": True, "fix_free_always_releases": True}),
    ("alloc_after_fini_gtt", "gtt", {"fini_concurrent": True}, W([[A(1), F]], shutdown=True), 4,
     ["no_allocator_use_after_fini"], {"fix_fini_evicts": True, "fix_free_always_releases": True}),
]


def make_trace(tmp_path: Path, name, kind, options, workload, size, props) -> dict:
    m = (vram if kind == "vram" else gtt).make(options, workload, size, name)
    r = explore(m, properties=props)
    assert r.verdict in ("VIOLATION", "DEADLOCK"), (name, r.verdict)
    itf = to_itf(m, r.path, spec=name, source=f"tests/{name}", verdict=r.verdict, prop=r.property,
                 thread=r.thread)
    return load_trace(write_trace(tmp_path / f"{name}.itf.json", itf))


@pytest.mark.parametrize("entry", CATALOGUE, ids=[c[0] for c in CATALOGUE])
def test_defect_reproduces_on_code_and_fix_ends_clean(tmp_path, entry):
    name, kind, options, workload, size, props, fix = entry
    data = make_trace(tmp_path, name, kind, options, workload, size, props)
    written = replay_on_impl(data)
    assert written.strict and written.conforms, format_report(written)
    assert written.matched == written.transitions, format_report(written)
    assert written.reproduced, format_report(written)
    # clean on the properties the trace was made for (other defects of the same run are reported apart)
    fixed = replay_on_impl(data, fix, properties=props)
    assert fixed.clean, format_report(fixed)
    assert written.expected not in fixed.observed
    assert written.as_expected and fixed.as_expected


def test_free_during_shutdown_report(tmp_path):
    data = make_trace(tmp_path, "free_during_shutdown", "vram", {}, W([[A(1), F]], shutdown=True), 4, None)
    rep = replay_on_impl(data)
    text = format_report(rep)
    assert rep.status == "REPRODUCED"
    assert rep.leaks == [(0, 0x1000)]
    assert rep.final["used"] == 0x1000 and rep.final["vis_usage"] == 0x1000
    assert rep.results["w0"] == [("op0:alloc(1)", 0), ("op1:free", "skipped")]
    assert "fini leak report: [0x0, 0x1000)" in text
    assert "result: REPRODUCED - no_leak_at_fini observed in the code" in text
    fixed = replay_on_impl(data, {"fix_free_always_releases": True})
    assert fixed.status == "CLEAN" and fixed.leaks == [] and fixed.final["used"] == 0
    assert fixed.results["w0"] == [("op0:alloc(1)", 0), ("op1:free", "released")]
    assert "result: CLEAN" in format_report(fixed)


def test_strict_replay_reports_nonconformance(tmp_path):
    """A trace whose steps the code does not take is reported, not papered over."""
    data = make_trace(tmp_path, "fds", "vram", {}, W([[A(1), F]], shutdown=True), 4, None)
    data["#meta"]["transitions"][1]["step"] = "op0.alloc.lock"        # skip is_ready in the trace
    rep = replay_on_impl(data)
    assert not rep.conforms and "op0.alloc.mgr_check" in rep.mismatch
    assert "NONCONFORMANCE" in format_report(rep)


def test_init_failure_branch_is_injected(tmp_path):
    data = make_trace(tmp_path, "initfail", "vram", {"init_can_fail": True}, W([[A(1), F]], recoverers=1), 4,
                      ["no_allocator_use_after_fini"])
    assert any(t["note"] == "init fails" for t in data["#meta"]["transitions"])
    rep = replay_on_impl(data)
    assert rep.reproduced and any("failed init" in o.message or "uninitialised" in o.message
                                  for o in rep.observations)


ROOT = Path(__file__).resolve().parent.parent
SHIPPED = sorted(ROOT.joinpath("traces").glob("**/*.json"))


@pytest.mark.skipif(not SHIPPED, reason="no traces shipped in traces/ yet")
@pytest.mark.parametrize("path", SHIPPED, ids=[p.name for p in SHIPPED])
def test_shipped_trace_replays_on_code(path):
    data = load_trace(path)
    meta = data["#meta"]
    if meta["verdict"] not in ("VIOLATION", "DEADLOCK", "LIVENESS"):
        pytest.skip(f"verdict {meta['verdict']}: nothing to reproduce")
    if meta.get("backend") == "z3-cti":
        pytest.skip("a CTI does not start in the initial state")
    written = replay_on_impl(data, root=ROOT)
    assert written.conforms, format_report(written)
    assert written.reproduced, format_report(written)
    fix = suggested_fix(meta, ROOT)
    if not fix:
        pytest.xfail(f"the model names no fix for {meta.get('spec')} ({meta.get('defect')})")
    fixed = replay_on_impl(data, fix, root=ROOT)
    assert fixed.clean, format_report(fixed)
    assert written.expected not in fixed.observed


def test_livelock_cycle_repeats_on_code_and_bounded_retry_ends_it(tmp_path):
    opts = {"state_check_failure": "retry", "fix_is_ready": True}
    m = vram.make(opts, W([[A(1)]], error_injectors=1), 4, "livelock")
    r = explore(m, properties=[], liveness=True)
    assert r.verdict == "LIVENESS"
    itf = to_itf(m, r.path, spec="livelock", source="tests/livelock", verdict=r.verdict, prop=r.property,
                 thread=r.thread, loop_start=r.loop_start)
    data = load_trace(write_trace(tmp_path / "livelock.itf.json", itf))
    written = replay_on_impl(data)
    assert written.conforms and written.reproduced and written.loop_repeats == 2, format_report(written)
    assert written.outcome == "budget"
    fixed = replay_on_impl(data, {"fix_state_retry_bounded": True})
    assert fixed.clean, format_report(fixed)
    assert fixed.results["w0"] == [("op0:alloc(1)", -19)]


def test_bad_input_is_a_value_error(tmp_path):
    data = make_trace(tmp_path, "fds", "vram", {}, W([[A(1), F]], shutdown=True), 4, None)
    with pytest.raises(ValueError, match="unknown option"):
        replay_on_impl(data, {"fix_everything": True})
    bad = dict(data, **{"#meta": dict(data["#meta"], model_kind="toy")})
    with pytest.raises(ValueError, match="model_kind"):
        replay_on_impl(bad)
    with pytest.raises(ValueError, match="#meta"):
        replay_on_impl({"#meta": {}})


# -- the monitor is the model's expressions ------------------------------------------------------------------

def _with_property(monkeypatch, name, expr):
    """Every model built from a run configuration from now on has ``name``'s expression replaced by ``expr``."""
    from dataclasses import replace

    from pddgpu_verify.model.run_config import RunConfig
    real = RunConfig.build

    def build(self, *a, **k):
        m = real(self, *a, **k)
        m.properties[name] = replace(m.properties[name], expr=expr)
        return m
    monkeypatch.setattr(RunConfig, "build", build)


def test_monitor_reports_what_the_models_expression_says(monkeypatch):
    """No hand-written copy of no_overlap or used_matches_allocations decides the replay's verdict: weaken
    the model's invariant and the overlap goes unreported; strengthen one and a clean run is not clean."""
    from pddgpu_verify.model.expr import Const, Var, eq
    overlap = load_trace(ROOT / "traces" / "vram_recover_overlap.itf.json")
    assert "no_overlap" in replay_on_impl(overlap, root=ROOT).observed
    shutdown = load_trace(ROOT / "traces" / "vram_free_during_shutdown.itf.json")
    fix = {"fix_free_always_releases": True}
    assert replay_on_impl(shutdown, fix, root=ROOT).clean
    with monkeypatch.context() as mp:
        _with_property(mp, "no_overlap", Const(1))
        weakened = replay_on_impl(overlap, root=ROOT)
        assert "no_overlap" not in weakened.observed and not weakened.reproduced, format_report(weakened)
    with monkeypatch.context() as mp:
        _with_property(mp, "used_matches_allocations", eq(Var("used"), 0))
        strict = replay_on_impl(shutdown, fix, root=ROOT)
        assert not strict.clean and "used_matches_allocations" in strict.observed, format_report(strict)
        o = next(o for o in strict.findings if o.property == "used_matches_allocations")
        assert "the model's invariant used_matches_allocations is false" in o.message and "used=1" in o.message


def test_unscheduled_calls_are_checked_by_the_models_step_assertions(monkeypatch):
    """A call run directly (no scheduler, as the sequential conformance test runs them) is checked at its
    allocator event by the assertions of the model's step for it."""
    from pddgpu_verify.conformance import impl_replay
    from pddgpu_verify.pddgpu.device import PAGE_SIZE, Resource
    h = impl_replay.Harness("vram", 4, {}, W())
    assert h.mgr.alloc(Resource(PAGE_SIZE)) == 0 and not h.monitor.observations
    assert h.mgr.recover() == 0         # re-initialises the buddy under the live block
    assert {"no_reinit_of_live_allocator", "no_buddy_metadata_leak"} <= h.monitor.properties
    assert all("the model's assertion" in o.message for o in h.monitor.observations)
