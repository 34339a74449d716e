"""Sensitivity of the conformance tests: each mutant of the implementation
(a source-level change of one method, applied with monkeypatch, scheduling
points left in place so that only the behaviour differs) must be caught by
the sequential or the concurrent conformance test."""
from __future__ import annotations

import inspect
import sys
import textwrap

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import run_state_machine_as_test

import test_conformance as seq
import test_conformance_concurrent as conc
from pddgpu_verify.pddgpu.device import Device, ManagerBase
from pddgpu_verify.pddgpu.vram import VramManager

QUICK = dict(deadline=None, database=None, phases=[Phase.generate], derandomize=True,
             suppress_health_check=list(HealthCheck))


def mutate(monkeypatch, cls, name, *replacements):
    """Replace ``cls.name`` by its own source with ``replacements`` applied."""
    fn = getattr(cls, name)
    src = textwrap.dedent(inspect.getsource(fn))
    for old, new in replacements:
        assert old in src, f"mutant does not apply: {old!r} not in {cls.__name__}.{name}"
        src = src.replace(old, new)
    ns: dict = {}
    exec(compile(src, f"<mutant of {cls.__name__}.{name}>", "exec"), dict(vars(sys.modules[fn.__module__])), ns)
    monkeypatch.setattr(cls, name, ns[name])


MUTANTS = {
    # free without the manager lock: the lock operations become bare scheduling points
    "free_without_lock": [(ManagerBase, "free", ('self.lock.acquire("lock")', 'self._pt("lock")'),
                           ('self.lock.release("recheck_unlock")', 'self._pt("recheck_unlock")'),
                           ('self.lock.release("unlock")', 'self._pt("unlock")'))],
    # the re-check under the lock is read but not acted upon
    "alloc_recheck_dropped": [(ManagerBase, "alloc", ('if not self.is_ready("recheck"):',
                                                      'if not (self.is_ready("recheck") or True):'))],
    # free forgets atomic64_sub(size, &mgr->used)
    "free_skips_used_decrement": [(VramManager, "_stats_sub", ("self.used.sub(self._allocated(res), at=at)",
                                                               "self.used.sub(0, at=at)"))],
    # is_ready tests ERROR where the document tests SHUTDOWN
    "is_ready_wrong_flag": [(ManagerBase, "is_ready", ("return not (s & STATE_SHUTDOWN)", "return not (s & STATE_ERROR)"),
                             ("return bool(s & STATE_READY) and not (s & STATE_SHUTDOWN)",
                              "return bool(s & STATE_READY) and not (s & STATE_ERROR)"))],
    # the device check tests a bit nobody sets
    "device_check_wrong_flag": [(Device, "shutting_down", ("& DEVICE_STATE_SHUTDOWN", "& 0x02"))],
    # recover re-initialises outside the lock
    "recover_without_lock": [(ManagerBase, "recover", ('self.lock.acquire("lock")', 'self._pt("lock")'),
                              ('self.lock.release("unlock")', 'self._pt("unlock")'))],
    # set_error clears instead of setting
    "set_error_wrong_op": [(ManagerBase, "set_error", ("self.state.or_(STATE_ERROR, at=at)",
                                                       "self.state.and_(~STATE_ERROR, at=at)"))],
}


def sequential_fails(examples=200) -> str | None:
    try:
        run_state_machine_as_test(seq.Conformance, settings=settings(max_examples=examples, stateful_step_count=25,
                                                                     **QUICK))
    except Exception as e:  # noqa: BLE001
        return f"sequential: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    return None


def concurrent_fails(examples=300) -> str | None:
    @settings(max_examples=examples, **QUICK)
    @given(w=conc.workloads(), data=st.data())
    def check(w, data):
        kind, opts, wl, size = w
        conc.run_schedule(kind, opts, wl, lambda n, what: data.draw(st.integers(0, n - 1)), size=size)

    try:
        check()
    except Exception as e:  # noqa: BLE001
        return f"concurrent: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    return None


@pytest.mark.parametrize("name", sorted(MUTANTS))
def test_mutant_is_caught(monkeypatch, name):
    for cls, meth, *reps in MUTANTS[name]:
        mutate(monkeypatch, cls, meth, *reps)
    caught = concurrent_fails() or sequential_fails()
    assert caught, f"mutant {name} survived the conformance tests"
    print(f"{name}: {caught}")


def test_unmutated_code_passes_the_same_checks():
    assert sequential_fails(30) is None
    assert concurrent_fails(30) is None


SEQUENTIAL_VISIBLE = ["free_skips_used_decrement", "is_ready_wrong_flag", "device_check_wrong_flag",
                      "set_error_wrong_op"]


@pytest.mark.parametrize("name", SEQUENTIAL_VISIBLE)
def test_sequential_conformance_alone_catches(monkeypatch, name):
    """Mutants that need no concurrency are caught without a scheduler too."""
    for cls, meth, *reps in MUTANTS[name]:
        mutate(monkeypatch, cls, meth, *reps)
    assert sequential_fails(), f"mutant {name} survived the sequential conformance test"


@pytest.mark.parametrize("name", ["free_without_lock", "alloc_recheck_dropped", "recover_without_lock"])
def test_sequential_conformance_cannot_see_locking_mutants(monkeypatch, name):
    """...while the locking mutants need the controlled scheduler: the
    sequential test passes on them, the concurrent one does not."""
    for cls, meth, *reps in MUTANTS[name]:
        mutate(monkeypatch, cls, meth, *reps)
    assert sequential_fails(20) is None
    assert concurrent_fails()


def test_shrunk_failing_schedule_is_a_trace_both_replays_accept(monkeypatch):
    """The concurrent test's counterexample for a mutant, shrunk, is written
    as an ITF trace: a run the model takes step for step (model replay) on
    which the mutated code departs from the model (code replay)."""
    import re

    from pddgpu_verify.checker.replay import replay
    from pddgpu_verify.checker.trace import load_trace
    from pddgpu_verify.conformance.impl_replay import format_report, replay_on_impl

    for cls, meth, *reps in MUTANTS["free_without_lock"]:
        mutate(monkeypatch, cls, meth, *reps)

    @settings(max_examples=300, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(w=conc.workloads(), data=st.data())
    def check(w, data):
        kind, opts, wl, size = w
        conc.run_schedule(kind, opts, wl, lambda n, what: data.draw(st.integers(0, n - 1)), size=size)

    with pytest.raises(conc.Nonconformance) as exc:
        check()
    path = re.search(r"trace \(replay / replay --impl\): (\S+)", str(exc.value)).group(1)
    data = load_trace(path)
    trs = data["#meta"]["transitions"]
    assert len(trs) <= 25, f"not shrunk: {len(trs)} steps"
    model_run = replay(path, data)
    assert len(model_run.steps) == len(trs)          # every step is one the model takes
    code_run = replay_on_impl(data)
    assert code_run.divergences or not code_run.conforms or code_run.observations, format_report(code_run)
