"""The document's C managers (csrc/), compiled with the system C compiler and driven through the shim.

Every trace in traces/ reproduces its defect on the C code as written (the trace's readings, its steps met at
the same labels and its states by the C state) and ends cleanly with the defines of its spec's fix; each of
the shim's detectors is tripped by a small scenario of its own.
"""
from __future__ import annotations

import ctypes
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from pddgpu_verify.conformance.c_build import CBackendUnavailable, build, compiler, defines_for
from pddgpu_verify.model.options import ALL_FIXES, OPTIONS

if compiler() is None:
    pytest.skip("C back end unavailable: no C compiler (gcc or cc) on PATH", allow_module_level=True)

from pddgpu_verify.checker.trace import load_trace  # noqa: E402
from pddgpu_verify.conformance.c_harness import format_c_report, load_lib, replay_on_c  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
TRACES = sorted(ROOT.joinpath("traces").glob("*.itf.json"))

# traces that cannot (yet) be mapped onto the C code, with the reason; none today
NOT_MAPPED: dict[str, str] = {}


def spec_fix(meta: dict) -> list[str]:
    """``fixed_by`` of the spec the trace came from, found by the spec's name in specs/*.toml."""
    for p in sorted(ROOT.joinpath("specs").glob("*.toml")):
        spec = tomllib.loads(p.read_text()).get("spec", {})
        if spec.get("name") == meta.get("spec") or spec.get("trace") == meta.get("spec"):
            return list(spec.get("fixed_by", []))
    return []


# -- build ---------------------------------------------------------------------------------------

def test_defines_follow_the_option_names():
    assert defines_for({}) == []
    assert defines_for({"fix_is_ready": True, "stats_update_point": "under_lock", "is_ready_reads": 1}) == [
        "FIX_IS_READY", "IS_READY_READS=1", "STATS_UPDATE_POINT_UNDER_LOCK"]
    assert "PDDGPU_VRAM_ALLOC_RETRY_COUNT=1" in defines_for({}, retry_count=1)


@pytest.mark.parametrize("name", [n for n, o in OPTIONS.items() if len(o.choices) > 1])
def test_each_option_builds(name):
    """Every reading and fix that changes the code compiles on its own (-Werror)."""
    o = OPTIONS[name]
    value = next(c for c in o.choices if c != o.default)
    assert build(defines_for({name: value})).exists()


def test_all_fixes_build_and_a_build_is_cached():
    a = build(defines_for(dict(ALL_FIXES)))
    assert build(defines_for(dict(ALL_FIXES))) == a and a.parent.name == "csrc"


def test_bad_define_is_reported_not_raised_as_traceback():
    with pytest.raises(CBackendUnavailable, match="do not build"):
        build(["IS_READY_READS=3"])


# -- every trace on the C code ----------------------------------------------------------------------

@pytest.mark.parametrize("path", TRACES, ids=[p.name for p in TRACES])
def test_trace_reproduces_on_c_and_fix_ends_clean(path):
    if path.name in NOT_MAPPED:
        pytest.xfail(NOT_MAPPED[path.name])
    data = load_trace(path)
    meta = data["#meta"]
    written = replay_on_c(data, root=ROOT)
    assert written.conforms, format_c_report(written)
    assert written.reproduced, format_c_report(written)
    fix = spec_fix(meta)
    assert fix, f"no spec in specs/ names a fix for {meta.get('spec')}"
    fixed = replay_on_c(data, {f: True for f in fix}, root=ROOT)
    assert fixed.clean, format_c_report(fixed)
    assert written.expected not in fixed.observed


def test_free_during_shutdown_report_names_the_leak():
    data = load_trace(ROOT / "traces" / "vram_free_during_shutdown.itf.json")
    text = format_c_report(replay_on_c(data, root=ROOT))
    assert "fini leak report: [0x0, 0x1000)" in text
    assert "used=4096, vis_usage=4096 left non-zero" in text
    assert "drm_buddy_fini: 1 block(s) still allocated" in text
    assert text.rstrip().endswith("result: REPRODUCED - no_leak_at_fini observed in the code")


def test_wrong_readings_are_nonconformance():
    """The C built with another reading than the trace's meets the trace's steps elsewhere."""
    data = load_trace(ROOT / "traces" / "vram_retry_relock.itf.json")
    data["#meta"]["options"] = {**data["#meta"]["options"], "retry_holds_lock": False}
    r = replay_on_c(data, root=ROOT)
    assert not r.conforms and "C code is at" in r.mismatch


def test_cli_replays_on_c():
    cmd = [sys.executable, "-m", "pddgpu_verify.cli.main", "replay", "traces/vram_free_during_shutdown.itf.json",
           "--impl", "--lang", "c"]
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "replay on the C implementation" in p.stdout and "REPRODUCED" in p.stdout
    p = subprocess.run(cmd + ["--fix", "fix_free_always_releases"], cwd=ROOT, capture_output=True, text=True)
    assert p.returncode == 0 and "result: CLEAN" in p.stdout, p.stdout + p.stderr
    p = subprocess.run(cmd[:5] + ["--lang", "c"], cwd=ROOT, capture_output=True, text=True)
    assert p.returncode == 2 and p.stderr.strip() == (
        "pddgpu-verify: error: --lang: only with --impl (the model replay runs no code)")


def test_cli_without_a_c_compiler_says_so_in_one_line():
    import os
    env = {**os.environ, "PATH": "/nonexistent", "CC": "no-such-cc"}
    p = subprocess.run([sys.executable, "-m", "pddgpu_verify.cli.main", "replay",
                        "traces/vram_free_during_shutdown.itf.json", "--impl", "--lang", "c"],
                       cwd=ROOT, capture_output=True, text=True, env=env)
    assert p.returncode == 2 and p.stderr.strip() == (
        "pddgpu-verify: error: --lang: no C compiler (gcc or cc) on PATH: the C back end is unavailable"), p.stderr


# -- the shim's detectors, one scenario each ----------------------------------------------------------

def run_selftest(n: int, schedule=()):
    """Set scenario n up, take the named threads' steps in order, then run every thread to its end (lowest
    first).  Returns what it saw: ``reports`` {property: [messages]}, ``taken`` [(thread, label)],
    ``blocked`` (threads that never finish), ``holds`` (threads ending with a lock held), ``leaks`` (blocks
    the last allocator fini reported), ``kmem`` (kzalloc'ed objects never freed)."""
    lib = load_lib(defines_for({}))
    assert lib.h_selftest(n) == 0
    names = [lib.h_name(i).decode() for i in range(lib.h_nthreads())]
    taken = []

    def step(i):
        taken.append((names[i], lib.h_label(i).decode()))
        assert lib.h_step(i) == 0

    for name in schedule:
        step(names.index(name))
    while True:
        en = [i for i in range(len(names)) if lib.h_enabled(i)]
        if not en:
            break
        step(en[0])
    reports: dict = {}
    for i in range(lib.h_nreports()):
        reports.setdefault(lib.h_report(i, 0).decode(), []).append(lib.h_report(i, 2).decode())
    out = {"reports": reports, "taken": taken,
           "blocked": [names[i] for i in range(len(names)) if lib.h_state(i) != 3],
           "holds": [names[i] for i in range(len(names)) if lib.h_holds_lock(i)],
           "leaks": lib.h_fini_leaks((ctypes.c_longlong * 4)(), (ctypes.c_longlong * 4)(), 4),
           "kmem": lib.h_kmem_live()}
    lib.h_teardown()
    return out


def one(r, prop) -> str:
    return " | ".join(r["reports"].get(prop, ["(not reported)"]))


def test_might_sleep_mutex_under_spinlock():
    r = run_selftest(0)
    assert "sleeping function called from invalid context: mutex_lock" in one(r, "no_sleep_under_spinlock")
    assert [lab for _, lab in r["taken"]] == ["spin", "mutex", "unlock_m", "unlock_s"]


def test_scheduling_while_atomic_msleep_under_spinlock():
    assert "scheduling while atomic: msleep(5)" in one(run_selftest(1), "no_sleep_under_spinlock")


def test_lockdep_recursive_locking_hangs_the_thread():
    r = run_selftest(2)
    assert "possible recursive locking detected" in one(r, "lock_no_self_reacquire")
    assert r["blocked"] == ["t0"]


def test_lockdep_unlock_by_non_owner():
    r = run_selftest(3, ["t0", "t1"])
    assert "by t1, which does not hold it (owner: t0)" in one(r, "lock_released_by_owner")
    assert r["taken"][:2] == [("t0", "lock"), ("t1", "bad_unlock")]


def test_return_with_lock_held():
    r = run_selftest(4)
    assert r["holds"] == ["t0"] and not r["reports"]


def test_kmemleak_and_fini_leak_report():
    r = run_selftest(5)
    assert r["leaks"] == 1 and r["kmem"] == 1 and not r["reports"]


def test_kcsan_plain_read_under_another_threads_lock():
    r = run_selftest(6, ["t0", "t1"])
    assert "KCSAN: data race: t1 reads S.field without the lock while t0 holds it" in one(r, "no_data_race")


def test_foreign_free_and_reinit_of_live_buddy():
    r = run_selftest(7)
    assert "from drm_buddy instance 1 into instance 2" in one(r, "no_foreign_free")
    assert "kmemleak" in one(r, "no_buddy_metadata_leak")
    assert "1 live block" in one(r, "no_reinit_of_live_allocator")


def test_double_free():
    r = run_selftest(8)
    assert "removes a drm_mm node that is not allocated" in one(r, "no_double_free")
    assert "already freed" in one(r, "no_double_free")


def test_allocator_use_after_fini():
    assert "drm_buddy_alloc_blocks on an allocator torn down" in one(run_selftest(9), "no_allocator_use_after_fini")


# -- the C code and the Python code in lockstep, on random schedules ------------------------------------------

A = lambda n: ("alloc", n)  # noqa: E731
F = ("free",)


def _lockstep_configs():
    from pddgpu_verify.model.manager import Workload as W
    return [
        ("vram", {}, W([[A(1), F], [A(1), F]], recoverers=1), 4),
        ("gtt", {}, W([[A(2), F], [A(2), F]], recoverers=1), 4),
        ("vram", {}, W([[A(1), F]], error_injectors=1, stats_readers=1, shutdown=True), 4),
        ("gtt", {}, W([[A(1), F]], error_injectors=1, stats_readers=1, shutdown=True), 4),
        ("vram", dict(ALL_FIXES), W([[A(2), F], [A(2), F]], error_injectors=1, recoverers=1, shutdown=True), 4),
        ("gtt", dict(ALL_FIXES), W([[A(2), F], [A(2), F]], error_injectors=1, recoverers=1, shutdown=True), 4),
        ("vram", {"fix_retry_unlock": True}, W([[A(4), F], [A(4), F]]), 4),
        ("gtt", {"stats_update_point": "under_lock", "fini_concurrent": True, "fini_takes_lock": True},
         W([[A(1), F]], recoverers=1, stats_readers=1, shutdown=True), 4),
        ("vram", {}, W([[A(2), F]], stats_readers=2), 4),
        ("gtt", {}, W([[A(2), F]], stats_readers=2), 4),
    ]


def lockstep_run(config: int, choose, src=None, label="") -> str | None:
    """One schedule on the Python code and on the C code (built from ``src``, default csrc/): ``choose(names,
    step)`` picks the next thread among those enabled on both sides.  None when at every step each thread is
    at the same label and the two states map to the same model state, up to the first defect either one
    reports (past it the kernel's behaviour is undefined), where both report the same properties, and every
    call returned the same; else the first disagreement."""
    from pddgpu_verify.conformance.c_harness import CHarness
    from pddgpu_verify.conformance.impl_replay import Harness
    from pddgpu_verify.pddgpu.sched import Scheduler

    kind, opts, wl, size = _lockstep_configs()[config]
    py, s = Harness(kind, size, opts, wl), Scheduler()
    py.spawn_all(s)
    c = CHarness(kind, size, opts, wl, src=src)
    hist = []
    where = f"config {config} {label}"
    try:
        for _ in range(400):
            # a thread enabled on one side only is at a wait the C takes as two steps (drain, evict_wait: C
            # parks first and then finds the condition false), or past the model's last step (fini's leak
            # check): left alone
            both = sorted({t.name for t in s.enabled()} & {t.name for t in c.enabled()})
            if not both:
                break
            name = choose(both, len(hist))
            hist.append(f"{name} {s.by_name(name).label}")
            if s.by_name(name).label != c.by_name(name).label:
                return f"{where}: {hist}: the C code is at {c.by_name(name).label}"
            s.step(s.by_name(name))
            c.step(c.by_name(name))
            pa, ca = py.abstract(), c.abstract()
            if pa != ca:
                return f"{where}: {hist}: { {k: (pa[k], ca.get(k)) for k in pa if pa[k] != ca.get(k)} } (Python, C)"
            py.monitor.collect_bugs()
            if py.monitor.observations or c.observations:
                break
        pp, cp = {o.property for o in py.monitor.observations}, {o.property for o in c.observations}
        if pp != cp:
            return f"{where}: {hist}: Python observed {sorted(pp)}, C {sorted(cp)}"
        cr = c.results()
        for th, calls in py.results.items():
            if th != "fini" and calls != cr.get(th):        # fini's own count is reported apart
                return f"{where}: {hist}: {th} returned {calls} in Python, {cr.get(th)} in C"
    finally:
        s.close()
        c.close()
    return None


def lockstep(config: int, seeds=range(25), src=None) -> str | None:
    """``lockstep_run`` on seeded schedules: even seeds a uniform choice at every step; odd ones PCT-like,
    the highest of random thread priorities runs, and at two random steps the running thread drops to the
    lowest priority.  The first disagreement, or None."""
    import random

    for seed in seeds:
        rng = random.Random(seed)
        prio: dict = {}
        changes = {rng.randrange(60), rng.randrange(60)}

        def choose(both, n, seed=seed, rng=rng, prio=prio, changes=changes):
            if seed % 2 == 0:
                return rng.choice(both)
            for t in both:
                prio.setdefault(t, rng.random() + 1)
            name = max(both, key=prio.__getitem__)
            if n in changes:
                prio[name] = rng.random() / 10
            return name

        bad = lockstep_run(config, choose, src, f"seed {seed}")
        if bad:
            return bad
    return None


@pytest.mark.parametrize("config", range(10))
def test_c_and_python_agree_step_by_step_on_random_schedules(config):
    assert lockstep(config) is None


def test_c_and_python_agree_on_hypothesis_schedules():
    """Schedules drawn (and, on a disagreement, shrunk) by hypothesis: each step picks one of the threads
    enabled on both sides by a drawn index, over every configuration."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    @settings(max_examples=60, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(config=st.integers(0, len(_lockstep_configs()) - 1), picks=st.lists(st.integers(0, 7), max_size=120))
    def run(config, picks):
        bad = lockstep_run(config, lambda both, n: both[picks[n] % len(both)] if n < len(picks) else both[0],
                           label=f"picks {picks}")
        assert bad is None, bad

    run()


# -- mutants of the C code (patches of one function, scheduling points kept), each caught ---------------------

V, G = "pddgpu_vram_mgr.c", "pddgpu_gtt_mgr.c"
C_MUTANTS = {
    # free without the manager lock: the lock operations become bare scheduling points
    "vram_free_without_lock": [(V, "pddgpu_vram_mgr_free", "mutex_lock(&mgr->lock)", "shim_point()"),
                               (V, "pddgpu_vram_mgr_free", "mutex_unlock(&mgr->lock)", "shim_point()")],
    "gtt_free_without_lock": [(G, "pddgpu_gtt_mgr_free", "spin_lock(&mgr->lock)", "shim_point()"),
                              (G, "pddgpu_gtt_mgr_free", "spin_unlock(&mgr->lock)", "shim_point()")],
    # the re-check under the lock is read but not acted upon
    "vram_alloc_recheck_dropped": [(V, "pddgpu_vram_mgr_alloc", "if (!pddgpu_vram_mgr_is_ready(mgr)) {\n\t\tSTEP(\"recheck_unlock\")",
                                    "if (!pddgpu_vram_mgr_is_ready(mgr) && 0) {\n\t\tSTEP(\"recheck_unlock\")")],
    # free forgets atomic64_sub(size, &mgr->used)
    "vram_free_skips_used_decrement": [(V, "pddgpu_vram_mgr_free", "atomic64_sub(used, &mgr->used)",
                                        "atomic64_sub(0, &mgr->used)")],
    # is_ready tests ERROR where the document tests SHUTDOWN
    "vram_is_ready_wrong_flag": [(V, "pddgpu_vram_mgr_is_ready", "& PDDGPU_VRAM_MGR_STATE_SHUTDOWN)",
                                  "& PDDGPU_VRAM_MGR_STATE_ERROR)")],
    # the device check tests a bit nobody sets
    "vram_device_check_wrong_flag": [(V, fn, "& PDDGPU_DEVICE_STATE_SHUTDOWN", "& 0x02")
                                     for fn in ("pddgpu_vram_mgr_alloc", "pddgpu_vram_mgr_free", "pddgpu_vram_mgr_recover")],
    # recover re-initialises outside the lock
    "vram_recover_without_lock": [(V, "pddgpu_vram_mgr_recover", "mutex_lock(&mgr->lock)", "shim_point()"),
                                  (V, "pddgpu_vram_mgr_recover", "mutex_unlock(&mgr->lock)", "shim_point()")],
    # set_error clears instead of setting
    "vram_set_error_wrong_op": [(V, "__pddgpu_vram_mgr_set_error", "atomic_or(PDDGPU_VRAM_MGR_STATE_ERROR,",
                                 "atomic_and(~PDDGPU_VRAM_MGR_STATE_ERROR,")],
    # get_stats reports used in pages, not bytes
    "vram_stats_used_in_pages": [(V, "pddgpu_vram_mgr_get_stats", "stats->used_size = atomic64_read(&mgr->used);",
                                  "stats->used_size = atomic64_read(&mgr->used) >> PAGE_SHIFT;")],
    # the GTT allocator asked for one page whatever the request
    "gtt_alloc_one_page": [(G, "pddgpu_gtt_mgr_alloc", "(size + PAGE_SIZE - 1) >> PAGE_SHIFT", "1 + 0 * size")],
}


@pytest.mark.parametrize("name", sorted(C_MUTANTS))
def test_c_mutant_is_caught(name):
    """Each mutant of the C code disagrees with the Python code on some random schedule of some
    configuration of its manager."""
    from pddgpu_verify.conformance.c_build import mutated_tree
    src = mutated_tree(C_MUTANTS[name])
    kind = "vram" if name.startswith("vram") else "gtt"
    for config, (k, *_rest) in enumerate(_lockstep_configs()):
        if k == kind and lockstep(config, range(25), src=src) is not None:
            return
    pytest.fail(f"mutant {name} of the C code agrees with the Python code on every schedule tried")


def test_unmutated_tree_agrees():
    from pddgpu_verify.conformance.c_build import mutated_tree
    assert lockstep(0, range(3), src=mutated_tree([])) is None


# -- the drift check between the C source and the model -------------------------------------------------------

def _spec_options():
    out = []
    for p in sorted(ROOT.joinpath("specs").glob("*.toml")):
        d = tomllib.loads(p.read_text())
        if d.get("spec", {}).get("model") in ("vram", "gtt"):
            out.append((p.name, d["spec"]["model"], {**d.get("readings", {}), **d.get("fixes", {})}))
    return out


SPEC_OPTIONS = _spec_options()


@pytest.mark.parametrize("name,kind,options", SPEC_OPTIONS, ids=[n for n, _, _ in SPEC_OPTIONS])
def test_no_drift_between_c_and_model_for_each_spec(name, kind, options):
    from pddgpu_verify.conformance.drift import check
    drifts = check(kind, options)
    assert not drifts, "\n".join(map(str, drifts))


@pytest.mark.parametrize("kind", ["vram", "gtt"])
def test_no_drift_for_each_option_alone_and_all_fixes(kind):
    from pddgpu_verify.conformance.drift import check
    configs = [{}, dict(ALL_FIXES)] + [{n: next(c for c in o.choices if c != o.default)}
                                       for n, o in OPTIONS.items() if len(o.choices) > 1]
    for options in configs:
        drifts = check(kind, options)
        assert not drifts, f"{options}:\n" + "\n".join(map(str, drifts))


DRIFTS = {
    # recover takes the lock before clearing ERROR: the order of fix_error_under_lock, not the document's
    "reordered": ([(V, "pddgpu_vram_mgr_recover",
                    'STEP("clear_error");\n\tpddgpu_vram_mgr_clear_error(mgr);\n\n\t/* 重新初始化DRM Buddy分配器 */\n'
                    '\tSTEP("lock");\n\tmutex_lock(&mgr->lock);',
                    'STEP("lock");\n\tmutex_lock(&mgr->lock);\n\tSTEP("clear_error");\n'
                    '\tpddgpu_vram_mgr_clear_error(mgr);')],
                  "order: the model has dev_check clear_error lock"),
    # alloc subtracts where it should add
    "renamed": ([(V, "pddgpu_vram_mgr_alloc", "atomic64_add(used, &mgr->used);", "atomic64_sub(used, &mgr->used);")],
                "at ok_stats the model calls atomic64_add, the C atomic64_sub"),
    # recover forgets to reset vis_usage
    "dropped": ([(V, "pddgpu_vram_mgr_recover", 'STEP("reset_vis");\n\tatomic64_set(&mgr->vis_usage, 0);', "")],
                "in the model only: reset_vis"),
    # free reads the state once more before the lock
    "added": ([(V, "pddgpu_vram_mgr_free", 'STEP("lock");\n\tmutex_lock(&mgr->lock);',
                'STEP("peek");\n\t(void)atomic_read(&mgr->state);\n\tSTEP("lock");\n\tmutex_lock(&mgr->lock);')],
              "in the C only: peek"),
}


@pytest.mark.parametrize("name", sorted(DRIFTS))
def test_drift_check_fails_on_a_changed_call_and_prints_both_sides(name):
    from pddgpu_verify.conformance.c_build import mutated_tree
    from pddgpu_verify.conformance.drift import check
    patches, expect = DRIFTS[name]
    drifts = check("vram", {}, src=mutated_tree(patches))
    text = "\n".join(map(str, drifts))
    assert expect in text, text
    assert "\n  model: " in text and "\n  C:     " in text


def test_c_monitor_reports_what_the_models_expression_says(monkeypatch):
    """On the C code too the verdict is the model's expression's: with no_overlap weakened in the model the
    overlap trace reproduces nothing; with used_matches_allocations strengthened the fixed run is not clean."""
    from dataclasses import replace

    from pddgpu_verify.model.expr import Const, Var, eq
    from pddgpu_verify.model.run_config import RunConfig
    real = RunConfig.build

    def with_property(name, expr):
        def build(self, *a, **k):
            m = real(self, *a, **k)
            m.properties[name] = replace(m.properties[name], expr=expr)
            return m
        return build
    overlap = load_trace(ROOT / "traces" / "vram_recover_overlap.itf.json")
    assert "no_overlap" in replay_on_c(overlap, root=ROOT).observed
    monkeypatch.setattr(RunConfig, "build", with_property("no_overlap", Const(1)))
    rep = replay_on_c(overlap, root=ROOT)
    assert "no_overlap" not in rep.observed and not rep.reproduced, format_c_report(rep)
    shutdown = load_trace(ROOT / "traces" / "vram_free_during_shutdown.itf.json")
    monkeypatch.setattr(RunConfig, "build", with_property("used_matches_allocations", eq(Var("used"), 0)))
    rep = replay_on_c(shutdown, {"fix_free_always_releases": True}, root=ROOT)
    assert "used_matches_allocations" in rep.observed and not rep.clean, format_c_report(rep)


def test_drift_reads_the_c_through_a_parser():
    """The drift check walks pycparser's tree: a condition before its branches, both branches in source order,
    a call's callee before its arguments; a file that does not parse is one error naming the parse."""
    from pddgpu_verify.conformance import drift
    funcs = drift.functions("int g(int *x) { return atomic_read(x); }\n"
                            "int f(int x) { if (atomic_read(&x)) mutex_lock(&x); else { spin_lock(&x); }\n"
                            "  msleep(g(&x)); return 0; }")
    assert [p.api for p in drift.c_points(funcs, "f")] == ["atomic_read", "mutex_lock", "spin_lock", "msleep",
                                                           "atomic_read"]
    with pytest.raises(ValueError, match="does not parse"):
        drift.functions("int f( { }")
