"""Sequential conformance: random operation sequences applied to the model
(reference interpreter, one thread's call run to completion) and to the
implementation give the same return codes, statistics, allocator contents
(mapped to the model's candidate blocks), per-worker blocks, skipped frees,
state words and the same property violations; every invariant is checked
after each call on both sides.

The model is rebuilt for the workload as it grows (one more operation for a
worker, one more injector / recoverer / stats thread) and the previous state
carried over by variable name; the implementation runs the calls directly
(no scheduler: the main thread runs each call to its end).
"""
from __future__ import annotations

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from pddgpu_verify.model import gtt, interpret, vram
from pddgpu_verify.model.manager import Workload
from pddgpu_verify.model.options import OPTIONS
from pddgpu_verify.pddgpu.device import PAGE_SIZE, Resource
from pddgpu_verify.pddgpu.errors import AllocatorBug
from pddgpu_verify.conformance.impl_replay import Harness, WorkerState

NW = 3
SIZES = {"vram": 8, "gtt": 6}
FIXES = sorted(n for n, o in OPTIONS.items() if o.kind == "fix")

# properties both sides report; the rest are concurrency-only or ghost-based
TRACKED = ("error_serves_no_alloc", "no_reinit_of_live_allocator", "no_buddy_metadata_leak", "no_foreign_free",
           "no_double_free", "no_allocator_use_after_fini", "no_leak_at_fini", "used_matches_allocations",
           "documented_return_code", "returns_without_lock", "stats_consistent", "no_overlap")


class SeqModel:
    """The model driven one call at a time."""

    def __init__(self, kind, size, options):
        self.kind, self.size, self.options = kind, size, options
        self.ops = [[] for _ in range(NW)]
        self.counts = {"inj": 0, "rec": 0, "stats": 0}
        self.shutdown = False
        self.model = None
        self.values = None          # var name -> value, pcs as labels
        self.at_return = None       # the values before the call's last step (its return)

    def _rebuild(self):
        wl = Workload([list(o) for o in self.ops], self.counts["inj"], self.counts["rec"], self.counts["stats"],
                      self.shutdown)
        m = (vram if self.kind == "vram" else gtt).make(self.options, wl, self.size)
        lay = m.layout
        old = self.values or {}
        state = []
        for k, d in enumerate(lay.decls):
            v = old.get(d.name, d.init)
            if d.kind == "pc":
                t = lay.pc_index.index(k)
                v = old.get(d.name, lay.labels[t][0])
                if v not in lay.labels[t]:
                    v = lay.labels[t][-1]
                v = lay.labels[t].index(v)
            state.append(v)
        self.model, self.state = m, tuple(state)

    def call(self, thread: str, first_label: str | None = None, init_fails: bool = False):
        """Run ``thread``'s next call to completion.  Returns (outcome,
        violated properties)."""
        self._rebuild()
        m, lay = self.model, self.model.layout
        tid = m.thread_index(thread)
        s = list(self.state)
        if first_label is not None:
            s[lay.pc_slot(tid)] = lay.pc_of_label(tid, first_label)
        s = tuple(s)
        violated = set(self._violations(s, assertions_only=True))
        done = lay.done_pc[tid]
        outcome = "returned"
        last = s
        for _ in range(500):
            if s[lay.pc_slot(tid)] == done:
                break
            last = s
            succ = [x for x in interpret.successors(m, s) if x[0] == tid]
            if not succ:
                outcome = "blocked"
                break
            if len(succ) > 1:
                pick = [x for x in succ if (m.threads[tid].program.steps[x[1]].branches[x[2]].note == "init fails")
                        == init_fails]
                succ = pick or succ
            s = succ[0][3]
            violated |= set(self._violations(s, assertions_only=True))
        else:
            outcome = "runaway"
        violated |= set(self._violations(s))      # invariants: in the state the call leaves
        if outcome == "returned" and all(s[lay.pc_slot(t)] == lay.done_pc[t] for t in range(len(m.threads))):
            p = interpret.check_final(m, s, ["no_lost_resource"])
            if p:
                violated.add(p)
        self.state = s
        self.values = lay.as_dict(s)
        self.at_return = lay.as_dict(last)
        return outcome, violated

    def _violations(self, s, assertions_only=False):
        out = []
        for p in TRACKED:
            prop = self.model.properties.get(p)
            if prop is None or (assertions_only and prop.kind != "assertion"):
                continue
            if interpret.check(self.model, s, [p]) is not None:
                out.append(p)
        return out


class Conformance(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.broken = False

    @initialize(kind=st.sampled_from(["vram", "gtt"]),
                fixes=st.sets(st.sampled_from(FIXES)),
                stats_point=st.sampled_from(["after_unlock", "under_lock"]),
                set_error=st.booleans(), reads=st.sampled_from([1, 2]), init_can_fail=st.booleans(),
                fini=st.sampled_from([(False, False), (True, False), (False, True)]), state_retry=st.booleans())
    def setup(self, kind, fixes, stats_point, set_error, reads, init_can_fail, fini, state_retry):
        opts = {f: True for f in fixes}
        opts.update(stats_update_point=stats_point, fix_alloc_failure_sets_error=set_error, is_ready_reads=reads,
                    init_can_fail=init_can_fail, fini_concurrent=fini[0], fini_takes_lock=fini[1])
        if state_retry:         # only bounded: unbounded, one thread alone may retry forever (on both sides)
            opts.update(state_check_failure="retry", fix_state_retry_bounded=True)
        self.kind, self.size = kind, SIZES[kind]
        self.opts = opts
        self.m = SeqModel(kind, self.size, opts)
        self.h = Harness(kind, self.size, opts, Workload())
        self.h.workers = [WorkerState() for _ in range(NW)]
        self.mgr, self.dev = self.h.mgr, self.h.dev
        self.finished = False

    # -- helpers -------------------------------------------------------------------------------
    def _impl_call(self, fn):
        mon = self.h.monitor
        mon.observations.clear()
        mon._seen.clear()
        try:
            return fn(), None
        except AllocatorBug as e:
            if self.mgr.lock.held_by_me():      # the oops left the lock held: let go (next examples)
                self.mgr.lock.release()
            return None, e

    def _impl_props(self, extra=()):
        props = {o.property for o in self.h.monitor.observations} | set(extra)
        m = self.mgr
        a = self.h.abstract()
        if m.used.peek() < 0 or m.vis_usage.peek() < 0:
            props.add("used_matches_allocations")
        if m.alive:
            units = sum(self.h.geo.sizes[i] for i in range(self.h.geo.count) if a["mask"] >> i & 1)
            if a["used"] != units or (self.kind == "vram" and a["vis"] != units):
                props.add("used_matches_allocations")
        live = [w.held for w in self.h.workers if w.held is not None and w.held.blocks and not w.held.released]
        for i in range(len(live)):
            for j in range(i + 1, len(live)):
                if any(a1 < b2 and a2 < b1 for a1, b1 in live[i].extents() for a2, b2 in live[j].extents()):
                    props.add("no_overlap")
        return props & set(TRACKED)

    def _compare(self, model_props, impl_props, what):
        mp = model_props & set(TRACKED)
        assert mp == impl_props, f"{what}: model violates {sorted(mp)}, code shows {sorted(impl_props)}"
        v = self.m.values
        a = self.h.abstract()
        for k, val in a.items():
            if k == "gen":
                continue
            assert v[k] == val, f"{what}: {k} is {v[k]} in the model, {val} in the code ({self.opts})"
        assert (v["gen"] - self.mgr.gen) % 256 == 0

    def _stop_if_crashed(self, err, model_props):
        if err is not None:
            # the real allocator refuses (BUG_ON); the model must have flagged the same misuse
            assert model_props & {"no_foreign_free", "no_double_free", "no_allocator_use_after_fini"}, \
                f"code crashed ({err}) where the model saw {sorted(model_props)}"
            self.broken = True

    # -- rules ------------------------------------------------------------------------------------
    @precondition(lambda self: not self.broken)
    # VRAM requests of any size up to the allocator, not only powers of two: the buddy hands out the request
    # rounded up, and both statistics must count that block (tests/test_odd_sizes.py)
    @rule(w=st.integers(0, NW - 1), size=st.integers(1, SIZES["vram"]), gsize=st.integers(1, 6))
    def alloc(self, w, size, gsize):
        n = size if self.kind == "vram" else gsize
        ws = self.h.workers[w]
        if ws.held is not None or len(self.m.ops[w]) >= 6:
            return
        k = len(self.m.ops[w])
        self.m.ops[w].append(("alloc", n))
        outcome, mprops = self.m.call(f"w{w}", f"op{k}.alloc.dev_check")
        res = Resource(n * PAGE_SIZE)
        r, err = self._impl_call(lambda: self.mgr.alloc(res))
        if r == 0:
            ws.held = res
        iprops = self._impl_props()
        self._stop_if_crashed(err, mprops)
        if self.broken:
            return
        assert outcome == "returned", outcome
        assert self.m.values[f"w{w}.ret"] == r, f"alloc({n}): model returns {self.m.values[f'w{w}.ret']}, code {r}"
        if self.kind == "vram" and r != 0 and not self.opts.get("fix_retry_unlock") and r != -19:
            assert self.dev.kmem.count("vres") > sum(1 for x in self.h.workers if x.held is not None)
        self._compare(mprops - {"no_lost_resource"}, iprops, f"w{w} alloc({n})")

    @precondition(lambda self: not self.broken)
    @rule(w=st.integers(0, NW - 1))
    def free(self, w):
        ws = self.h.workers[w]
        if len(self.m.ops[w]) >= 6:
            return
        k = len(self.m.ops[w])
        self.m.ops[w].append(("free",))
        outcome, mprops = self.m.call(f"w{w}", f"op{k}.free.entry")
        res = ws.held
        err = None
        if res is not None:
            ws.held = None
            _, err = self._impl_call(lambda: self.mgr.free(res))
            if err is None and not res.released:
                ws.lost += 1
                self.h.lost += 1
        else:
            self._impl_call(lambda: None)
        iprops = self._impl_props()
        self._stop_if_crashed(err, mprops)
        if self.broken:
            return
        assert outcome == "returned", outcome
        self._compare(mprops, iprops, f"w{w} free")

    @precondition(lambda self: not self.broken and self.m.counts["inj"] < 3)
    @rule()
    def set_error(self):
        i = self.m.counts["inj"]
        self.m.counts["inj"] += 1
        outcome, mprops = self.m.call(f"inj{i}")
        self._impl_call(lambda: self.mgr.set_error())
        self._compare(mprops, self._impl_props(), "set_error")

    @precondition(lambda self: not self.broken and self.m.counts["rec"] < 3)
    @rule(fails=st.booleans())
    def recover(self, fails):
        fails = fails and self.opts["init_can_fail"]
        i = self.m.counts["rec"]
        self.m.counts["rec"] += 1
        outcome, mprops = self.m.call(f"rec{i}", init_fails=fails)
        if fails:
            self.dev.fail_next_init.add(self.kind)
        r, err = self._impl_call(lambda: self.mgr.recover())
        self.dev.fail_next_init.discard(self.kind)
        assert err is None
        assert outcome == "returned"
        assert self.m.values[f"rec{i}.ret"] == r, f"recover: model {self.m.values[f'rec{i}.ret']}, code {r}"
        self._compare(mprops, self._impl_props(), "recover")

    @precondition(lambda self: not self.broken and self.m.counts["stats"] < 3)
    @rule()
    def get_stats(self):
        i = self.m.counts["stats"]
        self.m.counts["stats"] += 1
        outcome, mprops = self.m.call(f"stats{i}")
        stats, err = self._impl_call(lambda: self.mgr.get_stats())
        v = self.m.at_return        # what the caller is handed: the reader's copies as its return step read them
        assert stats.used_size // PAGE_SIZE == v[f"stats{i}.s_used"]
        if self.kind == "vram":
            assert stats.visible_used // PAGE_SIZE == v[f"stats{i}.s_vis"]
        assert stats.state == v[f"stats{i}.s_state"]
        assert stats.total_size == self.size * PAGE_SIZE
        self._compare(mprops, self._impl_props(), "get_stats")

    def _calls(self):
        return sum(len(o) for o in self.m.ops) + sum(self.m.counts.values())

    @precondition(lambda self: not self.broken and not self.finished and self._calls() >= 6)
    @rule()
    def fini(self):
        self.m.shutdown = True
        outcome, mprops = self.m.call("fini")
        if outcome == "blocked":      # fix_fini_evicts waits for blocks nobody will free: the code would too
            assert self.opts.get("fix_fini_evicts") and self.mgr.live_blocks() > 0
            self.broken = True
            return
        leaks, err = self._impl_call(lambda: self.dev.fini([self.mgr])[self.kind])
        assert err is None
        assert outcome == "returned"
        self._compare(mprops, self._impl_props(), "fini")
        if leaks:
            assert "no_leak_at_fini" in mprops
        self.finished = True

    @precondition(lambda self: self.broken)
    @rule()
    def look(self):
        """Always applicable (after fini too): the invariants are checked again."""

    @invariant()
    def allocator_consistent(self):
        m = getattr(self, "mgr", None)
        if m is not None and m.alive:
            m.mm.check_invariants()


Conformance.TestCase.settings = settings(max_examples=60, stateful_step_count=25, deadline=None,
                                         suppress_health_check=[HealthCheck.too_slow])
TestSequentialConformance = Conformance.TestCase


# -- the same on the C code ------------------------------------------------------------------------------------
# The state machine above calls the Python managers directly.  On the C managers (and on the Python ones again)
# calls run one after another through the controlled scheduler, each to its end once begun, in an order and
# with a workload hypothesis draws; model and code are compared at every step (labels, who can move, every
# shared variable and block, return codes and statistics: tests/test_conformance_concurrent.py's run_schedule).

import pytest  # noqa: E402
from hypothesis import given  # noqa: E402

from test_conformance_concurrent import C_OPTIONS, LANGS, run_schedule, workloads  # noqa: E402


@pytest.mark.parametrize("lang", LANGS)
def test_sequential_calls_conform(lang):
    @settings(max_examples=40, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(w=workloads(options=lambda draw: dict(draw(st.sampled_from(C_OPTIONS)))), data=st.data())
    def run(w, data):
        kind, opts, wl, size = w
        run_schedule(kind, opts, wl, lambda n, what: data.draw(st.integers(0, n - 1), label=what), size=size,
                     lang=lang, sequential=True)
    run()
