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

The same runs are made on the document's C managers (``csrc/`` through
``conformance/c_harness.py``, ``lang="c"``), over a fixed list of option sets
(each a build of its own, cached): every drawn option set would be a compile.
"""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pddgpu_verify.checker.explorer import Move
from pddgpu_verify.checker.trace import to_itf
from pddgpu_verify.model import gtt, interpret, vram
from pddgpu_verify.model.manager import Workload
from pddgpu_verify.model.options import ALL_FIXES, OPTIONS
from pddgpu_verify.pddgpu.errors import AllocatorBug
from pddgpu_verify.conformance.impl_replay import Harness
from pddgpu_verify.pddgpu.sched import Scheduler

FIXES = sorted(n for n, o in OPTIONS.items() if o.kind == "fix")
SIZE = 4
MISUSE = ("no_allocator_use_after_fini", "no_foreign_free", "no_double_free")


class Nonconformance(AssertionError):
    pass


def drawn_options(draw):
    opts = {f: True for f in draw(st.sets(st.sampled_from(FIXES)))}
    opts["stats_update_point"] = draw(st.sampled_from(["after_unlock", "under_lock"]))
    opts["fix_alloc_failure_sets_error"] = draw(st.booleans())
    opts["state_check_failure"] = draw(st.sampled_from(["return", "retry"]))
    opts["retry_holds_lock"] = draw(st.booleans())
    opts["fini_concurrent"] = draw(st.booleans())
    opts["fini_takes_lock"] = draw(st.booleans())
    opts["init_can_fail"] = draw(st.booleans())
    opts["is_ready_reads"] = draw(st.sampled_from([1, 2]))
    return opts


# the option sets the C runs draw from: as written, every fix, and readings that change the code's shape
C_OPTIONS = [{}, dict(ALL_FIXES), {"fix_retry_unlock": True}, {"retry_holds_lock": True},
             {"stats_update_point": "under_lock", "fini_concurrent": True, "fini_takes_lock": True},
             {"state_check_failure": "retry", "fix_is_ready": True, "fix_state_retry_bounded": True},
             {"init_can_fail": True, "is_ready_reads": 1, "fix_alloc_failure_sets_error": True},
             {"fix_recover_reinit": True, "fix_recover_state": True, "fix_fini_evicts": True}]


@st.composite
def workloads(draw, options=drawn_options):
    kind = draw(st.sampled_from(["vram", "gtt"]))
    size = draw(st.sampled_from([4, 8]))
    # any request up to the allocator, for VRAM too: the buddy places a request that is not a power of two in
    # one block of it rounded up, and both statistics count that block (tests/test_odd_sizes.py)
    sizes = list(range(1, size + 1))
    op = st.one_of(st.builds(lambda n: ("alloc", n), st.sampled_from(sizes)), st.just(("free",)))
    workers = draw(st.lists(st.lists(op, min_size=1, max_size=3), min_size=1, max_size=3))
    wl = Workload(workers, draw(st.integers(0, 1)), draw(st.integers(0, 1)), draw(st.integers(0, 1)),
                  draw(st.booleans()))
    return kind, options(draw), wl, size


# waits the C code takes as two steps: it parks at the wait's point first and only in the step finds the
# condition false (and sleeps, its state unchanged), so there it may be enabled where the model's guard is not
C_WAITS = ("drain", "evict_wait")
# steps of the C code past the model's last one (fini's leak report after the teardown): the model's done
C_PAST_MODEL = {("fini", "leak_check")}


class PyRun:
    """The Python code under the controlled scheduler."""

    def __init__(self, kind, size, opts, wl):
        self.h, self.s = Harness(kind, size, opts, wl), Scheduler()
        self.h.spawn_all(self.s)
        self.kind = kind
        self.threads = self.s.threads

    def enabled(self):
        return [t.index for t in self.s.enabled()]

    def label(self, t):
        return "done" if t.done else t.label

    def step(self, tid, init_fails):
        if init_fails:
            self.h.dev.fail_next_init.add(self.kind)
        self.s.step(self.s.threads[tid])
        self.h.dev.fail_next_init.discard(self.kind)

    def misuse(self, tid):
        """The allocator refused a call (BUG_ON): the thread died of it."""
        err = self.s.threads[tid].error
        return str(err) if isinstance(err, AllocatorBug) else None

    def died(self, t):
        return t.error

    def results(self, name):
        return self.h.results[name]

    def stats(self, name):
        st_ = self.h.stats_seen[name]
        return st_.used_size, st_.visible_used, st_.state

    def close(self):
        self.s.close()


class CRun:
    """The C code: one pthread per model thread, run one at a time by the shim."""

    def __init__(self, kind, size, opts, wl):
        from pddgpu_verify.conformance.c_harness import CHarness
        self.h = CHarness(kind, size, opts, wl)
        self.threads = self.h.threads
        self._reports = 0

    def enabled(self):
        return [t.index for t in self.h.enabled() if (t.name, t.label) not in C_PAST_MODEL]

    def label(self, t):
        return "done" if t.done or (t.name, t.label) in C_PAST_MODEL else t.label

    def step(self, tid, init_fails):
        if init_fails:
            self.h.lib.h_fail_next_init()
        self.h.step(self.h.threads[tid])

    def misuse(self, tid):
        """The shim's allocators refused a call (their BUG_ON reports)."""
        lib, n = self.h.lib, self.h.lib.h_nreports()
        new = [lib.h_report(i, 0).decode() for i in range(self._reports, n)]
        self._reports = n
        bad = [p for p in new if p in MISUSE]
        return ", ".join(bad) if bad else None

    def died(self, t):
        return None

    def results(self, name):
        return self.h.results().get(name, [])

    def stats(self, name):
        val = self.results(name)[-1][1]
        got = dict(kv.split("=", 1) for kv in val.split())
        return int(got["used_size"]), int(got.get("visible_used", 0)), int(got["state"], 16)

    def close(self):
        self.h.close()


def call_entries(model) -> list[set]:
    """Per thread, the pcs at which it is between calls: the first step of each call (and done)."""
    out = []
    for th in model.threads:
        seen, entries = set(), set()
        for pc, st in enumerate(th.program.steps):
            if st.call is not None and st.call not in seen:
                seen.add(st.call)
                entries.add(pc)
        out.append(entries | {len(th.program.steps)})
    return out


def run_schedule(kind, opts, wl, choose, max_steps=400, size=SIZE, lang="python", sequential=False):
    """Run model and code side by side; ``choose(n, what)`` picks among n.  ``sequential``: a thread that
    started a call runs it to its end while it can (calls one after another, in a drawn order).
    Returns the number of steps; raises Nonconformance (with a trace file)."""
    model = (vram if kind == "vram" else gtt).make(opts, wl, size)
    lay = model.layout
    names = [t.name for t in model.threads]
    entries = call_entries(model)
    last = None
    code = (PyRun if lang == "python" else CRun)(kind, size, opts, wl)
    h = code.h
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
        assert [t.name for t in code.threads] == names
        while True:
            d = lay.as_dict(state)
            for i, t in enumerate(code.threads):
                ml = d[f"{t.name}.pc"]
                il = code.label(t)
                if ml != il:
                    fail(f"step {steps}: {t.name} is at {il} in the code, at {ml} in the model")
                if code.died(t) is not None:
                    fail(f"step {steps}: {t.name} died in the code: {code.died(t)!r}")
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
            i_en = [i for i in code.enabled() if i not in relock]
            if lang == "c":
                waiting = {i for i, t in enumerate(code.threads) if not t.done and t.label in C_WAITS}
                i_en = [i for i in i_en if i not in waiting or i in m_en]
            if m_en != i_en:
                fail(f"step {steps}: threads that can move: code {[names[i] for i in i_en]}, "
                     f"model {[names[i] for i in m_en]}")
            if not m_en or steps >= max_steps:
                break
            if sequential and last in m_en and state[lay.pc_slot(last)] not in entries[last]:
                tid = last
            else:
                tid = m_en[choose(len(m_en), "thread")]
            last = tid
            mine = [x for x in succ if x[0] == tid]
            fails = False
            if len(mine) > 1:      # init may fail: the same choice on both sides
                fails = choose(2, "init fails") == 1
                mine = [x for x in mine if (model.threads[tid].program.steps[x[1]].branches[x[2]].note
                                            == "init fails") == fails] or mine
            pre = state
            t_, pc, b, state = mine[0]
            path.append((Move(t_, pc, b), state))
            before = len(code.results(names[tid]))
            code.step(tid, fails)
            steps += 1
            err = code.misuse(tid)
            if err:
                # the real allocator refuses (BUG_ON); the model must flag the same misuse at that step
                flagged = [p for p in MISUSE if p in model.properties and interpret.check(model, pre, [p])]
                if not flagged:
                    fail(f"step {steps}: {names[tid]} crashed in the code ({err}) where the model sees no misuse")
                return steps
            res = code.results(names[tid])
            if len(res) > before and res[-1][0] == "get_stats":
                used, vis, sstate = code.stats(names[tid])
                md = lay.as_dict(pre)       # the reader's copies as its return step read them
                got = (used // 4096, vis // 4096 if kind == "vram" else 0, sstate)
                want = (md[f"{names[tid]}.s_used"], md[f"{names[tid]}.s_vis"] if kind == "vram" else 0,
                        md[f"{names[tid]}.s_state"])
                if got != want:
                    fail(f"step {steps}: {names[tid]} get_stats reports (used, vis, state) {got} in the code, "
                         f"{want} in the model")
            if len(res) > before:
                call, r = res[-1]
                ret_slot = f"{names[tid]}.ret"
                if isinstance(r, int) and ret_slot in lay.var_names():
                    mr = lay.as_dict(state)[ret_slot]
                    if mr != r:
                        fail(f"step {steps}: {names[tid]} {call} returns {r} in the code, {mr} in the model")
    finally:
        code.close()
    return steps


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(w=workloads(), data=st.data())
def test_code_runs_are_model_runs(w, data):
    kind, opts, wl, size = w
    run_schedule(kind, opts, wl, lambda n, what: data.draw(st.integers(0, n - 1), label=what), size=size)


def _c_available() -> bool:
    from pddgpu_verify.conformance.c_build import compiler
    return compiler() is not None


LANGS = ["python", pytest.param("c", marks=pytest.mark.skipif(not _c_available(), reason="no C compiler"))]


@pytest.mark.skipif(not _c_available(), reason="C back end unavailable: no C compiler (gcc or cc) on PATH")
@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(w=workloads(options=lambda draw: dict(draw(st.sampled_from(C_OPTIONS)))), data=st.data())
def test_c_code_runs_are_model_runs(w, data):
    kind, opts, wl, size = w
    run_schedule(kind, opts, wl, lambda n, what: data.draw(st.integers(0, n - 1), label=what), size=size, lang="c")


@pytest.mark.parametrize("lang", LANGS)
def test_round_robin_schedules_conform(lang):
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
            run_schedule(kind, opts, wl, lambda n, what: (next(counter) * (k + 1)) % n, lang=lang)
