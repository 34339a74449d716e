"""Concurrent conformance: hypothesis draws a workload (threads and their
operations), options, and a schedule; the controlled scheduler runs the
schedule on the implementation's real threads while the model (reference
interpreter) takes the same steps.  At every step both sides must agree on
each thread's next step label, on which threads can move (a thread blocked
on the lock or on fini's drain in one must be blocked in the other), on
every shared variable and every worker's block (the code's state mapped to
the model's variables), and on every return code.  So every run of the code
is a run the model allows.

Shrinking goes to the shortest workload and the lowest-index schedule; the
failure message carries the failing schedule as an ITF trace file that
``pddgpu-verify replay`` (model) and ``replay --impl`` (code) accept.
"""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pddgpu_verify.checker.explorer import Move
from pddgpu_verify.checker.trace import to_itf
from pddgpu_verify.model import gtt, interpret, vram
from pddgpu_verify.model.manager import Workload
from pddgpu_verify.model.options import OPTIONS
from pddgpu_verify.pddgpu.errors import AllocatorBug
from pddgpu_verify.conformance.impl_replay import Harness
from pddgpu_verify.pddgpu.sched import Scheduler

FIXES = sorted(n for n, o in OPTIONS.items() if o.kind == "fix")
SIZE = 4
MISUSE = ("no_allocator_use_after_fini", "no_foreign_free", "no_double_free")


class Nonconformance(AssertionError):
    pass


@st.composite
def workloads(draw):
    kind = draw(st.sampled_from(["vram", "gtt"]))
    size = draw(st.sampled_from([4, 8]))
    # any request up to the allocator, for VRAM too: the buddy places a request that is not a power of two in
    # one block of it rounded up, and both statistics count that block (tests/test_odd_sizes.py)
    sizes = list(range(1, size + 1))
    op = st.one_of(st.builds(lambda n: ("alloc", n), st.sampled_from(sizes)), st.just(("free",)))
    workers = draw(st.lists(st.lists(op, min_size=1, max_size=3), min_size=1, max_size=3))
    wl = Workload(workers, draw(st.integers(0, 1)), draw(st.integers(0, 1)), draw(st.integers(0, 1)),
                  draw(st.booleans()))
    opts = {f: True for f in draw(st.sets(st.sampled_from(FIXES)))}
    opts["stats_update_point"] = draw(st.sampled_from(["after_unlock", "under_lock"]))
    opts["fix_alloc_failure_sets_error"] = draw(st.booleans())
    opts["state_check_failure"] = draw(st.sampled_from(["return", "retry"]))
    opts["retry_holds_lock"] = draw(st.booleans())
    opts["fini_concurrent"] = draw(st.booleans())
    opts["fini_takes_lock"] = draw(st.booleans())
    opts["init_can_fail"] = draw(st.booleans())
    opts["is_ready_reads"] = draw(st.sampled_from([1, 2]))
    return kind, opts, wl, size


def run_schedule(kind, opts, wl, choose, max_steps=400, size=SIZE):
    """Run model and code side by side; ``choose(n, what)`` picks among n.
    Returns the number of steps; raises Nonconformance (with a trace file)."""
    model = (vram if kind == "vram" else gtt).make(opts, wl, size)
    lay = model.layout
    names = [t.name for t in model.threads]
    h = Harness(kind, size, opts, wl)
    s = Scheduler()
    state = model.initial_state()
    path = [(None, state)]
    steps = 0

    def fail(msg):
        tmp = Path(tempfile.mkdtemp(prefix="pddgpu-nonconf-")) / "schedule.itf.json"
        v = interpret.check(model, state)
        itf = to_itf(model, path, spec="conformance", source="tests/test_conformance_concurrent.py",
                     verdict="VIOLATION" if v else "OK", prop=v[0] if v else None,
                     thread=v[1] if v else None, detail=msg)
        tmp.write_text(json.dumps(itf, indent=1))
        sched = " ".join(f"{model.threads[mv.thread].name}:{model.threads[mv.thread].program.steps[mv.pc].label}"
                         for mv, _ in path[1:])
        raise Nonconformance(f"{msg}\n  options={opts}\n  workload={wl}\n  schedule: {sched}\n"
                             f"  trace (replay / replay --impl): {tmp}")

    try:
        h.spawn_all(s)
        assert [t.name for t in s.threads] == names
        while True:
            d = lay.as_dict(state)
            for i, t in enumerate(s.threads):
                ml = d[f"{t.name}.pc"]
                il = "done" if t.done else t.label
                if ml != il:
                    fail(f"step {steps}: {t.name} is at {il} in the code, at {ml} in the model")
                if t.error is not None:
                    fail(f"step {steps}: {t.name} died in the code: {t.error!r}")
            a = h.abstract()
            for k, v in a.items():
                mv = d[k] if k != "gen" else d[k] % 256
                if mv != v:
                    fail(f"step {steps}: {k} = {v} in the code, {mv} in the model")
            succ = interpret.successors(model, state)
            m_en = sorted({t for t, *_ in succ})
            # a thread about to take a lock it holds: the model blocks it (and flags the assertion), the
            # code lets it run into lockdep's report; neither side schedules it
            relock = {i for i in range(len(names))
                      if interpret.check(model, state, ["lock_no_self_reacquire"]) == ("lock_no_self_reacquire", i)}
            i_en = [t.index for t in s.enabled() if t.index not in relock]
            if m_en != i_en:
                fail(f"step {steps}: threads that can move: code {[names[i] for i in i_en]}, "
                     f"model {[names[i] for i in m_en]}")
            if not m_en or steps >= max_steps:
                break
            tid = m_en[choose(len(m_en), "thread")]
            mine = [x for x in succ if x[0] == tid]
            if len(mine) > 1:      # init may fail: the same choice on both sides
                fails = choose(2, "init fails") == 1
                mine = [x for x in mine if (model.threads[tid].program.steps[x[1]].branches[x[2]].note
                                            == "init fails") == fails] or mine
                if fails:
                    h.dev.fail_next_init.add(kind)
            pre = state
            t_, pc, b, state = mine[0]
            path.append((Move(t_, pc, b), state))
            before = len(h.results[names[tid]])
            s.step(s.threads[tid])
            h.dev.fail_next_init.discard(kind)
            steps += 1
            err = s.threads[tid].error
            if isinstance(err, AllocatorBug):
                # the real allocator refuses (BUG_ON); the model must flag the same misuse at that step
                flagged = [p for p in MISUSE if p in model.properties and interpret.check(model, pre, [p])]
                if not flagged:
                    fail(f"step {steps}: {names[tid]} crashed in the code ({err}) where the model sees no misuse")
                return steps
            if len(h.results[names[tid]]) > before and names[tid] in h.stats_seen:
                st_ = h.stats_seen[names[tid]]
                md = lay.as_dict(pre)       # the reader's copies as its return step read them
                got = (st_.used_size // 4096, st_.visible_used // 4096 if kind == "vram" else 0, st_.state)
                want = (md[f"{names[tid]}.s_used"], md[f"{names[tid]}.s_vis"] if kind == "vram" else 0,
                        md[f"{names[tid]}.s_state"])
                if got != want:
                    fail(f"step {steps}: {names[tid]} get_stats reports (used, vis, state) {got} in the code, "
                         f"{want} in the model")
            if len(h.results[names[tid]]) > before:
                call, r = h.results[names[tid]][-1]
                ret_slot = f"{names[tid]}.ret"
                if isinstance(r, int) and ret_slot in lay.var_names():
                    mr = lay.as_dict(state)[ret_slot]
                    if mr != r:
                        fail(f"step {steps}: {names[tid]} {call} returns {r} in the code, {mr} in the model")
    finally:
        s.close()
    return steps


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(w=workloads(), data=st.data())
def test_code_runs_are_model_runs(w, data):
    kind, opts, wl, size = w
    run_schedule(kind, opts, wl, lambda n, what: data.draw(st.integers(0, n - 1), label=what), size=size)


def test_round_robin_schedules_conform():
    """A few fixed, hand-picked interleavings (rotate through the enabled threads)."""
    A = lambda n: ("alloc", n)  # noqa: E731
    cases = [
        ("vram", {}, Workload([[A(1), ("free",)], [A(2), ("free",)]], 1, 1, 1, True)),
        ("gtt", {}, Workload([[A(2), ("free",)], [A(3), ("free",)]], 1, 1, 1, True)),
        ("vram", {f: True for f in FIXES}, Workload([[A(4), ("free",)], [A(4), ("free",)]], 0, 1, 1, True)),
    ]
    for kind, opts, wl in cases:
        for k in range(3):
            counter = iter(range(10_000))
            run_schedule(kind, opts, wl, lambda n, what: (next(counter) * (k + 1)) % n)
