"""Unit tests of the implementation: atomics, the controlled scheduler and its
primitives, the managers' documented behaviour (return codes, retries with
their sleeps, messages, recover, statistics, fini) and resource exhaustion
(document 测试验证 2.2: fill VRAM and GTT, the documented error after the
documented retries, free, recover, allocate again)."""
from __future__ import annotations

import threading
import time

import pytest

from pddgpu_verify.model.options import ALL_FIXES, OPTIONS
from pddgpu_verify.pddgpu import sched
from pddgpu_verify.pddgpu.atomics import Atomic, Atomic64
from pddgpu_verify.pddgpu.device import (PAGE_SIZE, STATE_ERROR, STATE_READY, Device, Resource)
from pddgpu_verify.pddgpu.errors import ENODEV, ENOMEM, ENOSPC
from pddgpu_verify.pddgpu.gtt import PDDGPU_GTT_ALLOC_RETRY_COUNT, PDDGPU_GTT_ALLOC_RETRY_DELAY
from pddgpu_verify.pddgpu.sched import Deadlock, LockError, Mutex, Scheduler, SchedulerError, SpinLock
from pddgpu_verify.pddgpu.vram import PDDGPU_VRAM_ALLOC_RETRY_COUNT, PDDGPU_VRAM_ALLOC_RETRY_DELAY


# -- atomics -------------------------------------------------------------------------------------

def test_atomic_operations_follow_the_kernel():
    a = Atomic(0)
    a.or_(0x2 | 0x8)
    assert a.read() == 0xA
    a.and_(~0x8)
    assert a.read() == 0x2
    assert a.cmpxchg(0x2, 0x6) == 0x2 and a.read() == 0x6
    assert a.cmpxchg(0x2, 0x0) == 0x6 and a.read() == 0x6
    assert a.xchg(1) == 6 and a.read() == 1
    assert a.add_return(4) == 5 and a.sub_return(5) == 0
    a.dec()
    assert a.read() == -1
    assert a.inc_return() == 0 and a.dec_and_test() is False and a.inc_return() == 0
    a.set(0x7FFFFFFF)
    a.inc()
    assert a.read() == -0x80000000           # atomic_t is a signed 32-bit int
    b = Atomic64(0)
    b.sub(4096)
    assert b.read() == -4096
    b.set(1 << 62)
    b.add(1 << 62)
    assert b.read() == -(1 << 63)
    assert b.try_update(lambda v: v + 1) == (-(1 << 63), -(1 << 63) + 1)


def test_atomic_is_indivisible_running_free():
    a = Atomic64(0)

    def bump():
        for _ in range(20000):
            a.inc()
    ts = [threading.Thread(target=bump) for _ in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert a.read() == 80000


# -- scheduler -----------------------------------------------------------------------------------

def test_scheduler_runs_one_step_at_a_time_in_the_chosen_order():
    log = []

    def body(name):
        for i in range(3):
            sched.point(f"s{i}")
            log.append((name, i))

    with Scheduler() as s:
        s.spawn("a", body, "a")
        s.spawn("b", body, "b")
        assert [t.label for t in s.threads] == ["s0", "s0"] and log == []
        s.step("b")
        assert log == [("b", 0)] and s.by_name("b").label == "s1"
        s.step("a")
        s.step("b")
        assert s.run() == "done"
    assert log == [("b", 0), ("a", 0), ("b", 1), ("a", 1), ("a", 2), ("b", 2)]
    assert s.history[:3] == [("b", "s0"), ("a", "s0"), ("b", "s1")]


def test_lock_blocks_under_scheduler_and_deadlock_is_detected():
    m1, m2 = Mutex("m1"), Mutex("m2")

    def t1():
        m1.acquire("l1")
        m2.acquire("l2")

    def t2():
        m2.acquire("l2")
        m1.acquire("l1")

    with Scheduler() as s:
        s.spawn("t1", t1)
        s.spawn("t2", t2)
        s.step("t1")
        s.step("t2")
        assert s.enabled() == []                       # each waits for the other's lock
        assert s.run() == "deadlock"
        assert {t.label for t in s.blocked()} == {"l1", "l2"}
        with pytest.raises(SchedulerError):
            s.step("t1")


def test_recursive_lock_and_foreign_unlock_are_reported_not_hung():
    bugs = []
    m = Mutex("m", on_bug=lambda p, msg: bugs.append(p))
    m.acquire()
    with pytest.raises(LockError):
        m.acquire()                                  # running free: raises instead of hanging
    other = threading.Thread(target=lambda: pytest.raises(LockError, m.release))
    other.start()
    other.join()
    m.release()
    assert bugs == ["lock_no_self_reacquire", "lock_released_by_owner"]


def test_sleeping_under_a_spinlock_is_a_bug():
    bugs = []
    sl = SpinLock("sl", on_bug=lambda p, msg: bugs.append(p))
    sl.acquire()
    sched.msleep(1, scale=0, on_bug=lambda p, msg: bugs.append(p))
    Mutex("m", on_bug=lambda p, msg: bugs.append(p)).acquire()
    sl.release()
    assert bugs == ["no_sleep_under_spinlock", "no_sleep_under_spinlock"]


def test_points_are_free_without_a_scheduler():
    # outside a scheduler a point never parks: even a never-ready point returns, in any thread
    # (how fast is a benchmark's question, not a test's)
    import threading
    done = []

    def run():
        for _ in range(1000):
            sched.point("x", ready=lambda: False)
        done.append(True)

    t = threading.Thread(target=run)
    t.start()
    t.join(30)
    assert done == [True] and not t.is_alive()


# -- the managers as written ------------------------------------------------------------------------

def dev_for(options=None, **kw):
    return Device(vram_size=8 * PAGE_SIZE, gtt_pages=8, options=options or {}, sleep_scale=kw.pop("scale", 0), **kw)


def test_every_model_option_configures_the_code():
    d = dev_for({n: o.choices[-1] for n, o in OPTIONS.items() if n != "state_check_failure"})
    assert set(d.options) == set(OPTIONS)
    with pytest.raises(ValueError):
        dev_for({"no_such_option": True})


@pytest.mark.parametrize("kind", ["vram", "gtt"])
def test_alloc_free_stats_roundtrip(kind):
    d = dev_for()
    m = d.manager(kind)
    res = Resource(2 * PAGE_SIZE)
    assert m.alloc(res) == 0
    st = m.get_stats()
    assert (st.used_size, st.total_size, st.state, st.is_healthy) == (2 * PAGE_SIZE, 8 * PAGE_SIZE, STATE_READY, True)
    if kind == "vram":
        assert st.visible_used == 2 * PAGE_SIZE and d.kmem.count("vres") == 1
    m.free(res)
    assert res.released and m.get_stats().used_size == 0 and d.kmem.count("vres") == 0
    assert d.fini() == {"vram": [], "gtt": []}


@pytest.mark.parametrize("kind", ["vram", "gtt"])
def test_calls_after_shutdown_as_written(kind):
    d = dev_for()
    m = d.manager(kind)
    res = Resource(PAGE_SIZE)
    assert m.alloc(res) == 0
    d.device_state.or_(1)
    assert m.alloc(Resource(PAGE_SIZE)) == -ENODEV
    m.free(res)                                      # 4.1: skipped, the block leaks
    assert not res.released
    assert m.recover() == -ENODEV
    leaks = d.fini([m])[kind]
    assert len(leaks) == 1
    assert any("skipping" in msg for _, _, msg in d.dmesg.lines)
    assert any("still allocated" in msg for lvl, _, msg in d.dmesg.lines if lvl == "WARN")


def test_error_state_is_ignored_by_is_ready_as_written_and_not_with_the_fix():
    d = dev_for()
    d.vram_mgr.set_error()
    assert d.vram_mgr.state.peek() == STATE_READY | STATE_ERROR
    assert d.vram_mgr.alloc(Resource(PAGE_SIZE)) == 0               # 1.2 does not test ERROR
    f = dev_for({"fix_is_ready": True})
    f.vram_mgr.set_error()
    assert f.vram_mgr.alloc(Resource(PAGE_SIZE)) == -ENODEV
    assert f.vram_mgr.recover() == 0 and f.vram_mgr.state.peek() == STATE_READY
    assert f.vram_mgr.alloc(Resource(PAGE_SIZE)) == 0


def test_recover_as_written_reinitialises_a_live_allocator():
    d = dev_for()
    m = d.vram_mgr
    held = Resource(PAGE_SIZE)
    assert m.alloc(held) == 0
    assert m.recover() == 0
    assert m.gen == 1 and m.used.peek() == 0 and m.live_blocks() == 0    # the live block is forgotten
    again = Resource(PAGE_SIZE)
    assert m.alloc(again) == 0 and again.extents() == held.extents()     # handed out twice
    fixed = dev_for({"fix_recover_reinit": True}).vram_mgr
    held = Resource(PAGE_SIZE)
    assert fixed.alloc(held) == 0 and fixed.recover() == 0
    assert fixed.gen == 0 and fixed.live_blocks() == 1


def test_recover_failure_sets_error():
    d = dev_for({"fix_recover_reinit": True, "fix_recover_state": True, "fix_is_ready": True})
    m = d.gtt_mgr
    d.fail_next_init.add("gtt")
    assert m.recover() == -ENOMEM
    assert m.state.peek() & STATE_ERROR and not m.alive
    assert m.alloc(Resource(PAGE_SIZE)) == -ENODEV                   # the dead allocator is not used
    assert m.recover() == 0 and m.alloc(Resource(PAGE_SIZE)) == 0


def test_state_retry_reading_and_its_bounded_fix():
    d = dev_for({"state_check_failure": "retry", "fix_state_retry_bounded": True, "fix_is_ready": True})
    d.vram_mgr.set_error()
    assert d.vram_mgr.alloc(Resource(PAGE_SIZE)) == -ENODEV
    # read literally and unbounded, alloc never returns while nobody recovers
    live = dev_for({"state_check_failure": "retry", "fix_is_ready": True})
    live.vram_mgr.set_error()
    with Scheduler() as s:
        s.spawn("w", live.vram_mgr.alloc, Resource(PAGE_SIZE))
        assert s.run(max_steps=300) == "budget"
        assert {lab for _, lab in s.history} == {"dev_check", "mgr_check", "state_retry_sleep"}


# -- exhaustion (document 测试验证 2.2) ----------------------------------------------------------------

@pytest.mark.parametrize("kind,errno,count,delay", [("vram", ENOMEM, PDDGPU_VRAM_ALLOC_RETRY_COUNT,
                                                     PDDGPU_VRAM_ALLOC_RETRY_DELAY),
                                                    ("gtt", ENOSPC, PDDGPU_GTT_ALLOC_RETRY_COUNT,
                                                     PDDGPU_GTT_ALLOC_RETRY_DELAY)])
@pytest.mark.parametrize("fixed", [False, True], ids=["as_written", "fixed"])
def test_exhaustion_retries_then_recovers(kind, errno, count, delay, fixed):
    d = Device(vram_size=8 * PAGE_SIZE, gtt_pages=8, options=dict(ALL_FIXES) if fixed else {}, sleep_scale=1.0)
    m = d.manager(kind)
    held = []
    for size in (4, 2, 1, 1):                    # fill it
        r = Resource(size * PAGE_SIZE)
        assert m.alloc(r) == 0
        held.append(r)
    assert m.get_stats().used_size == m.get_stats().total_size
    # the documented error after the documented retries, with their sleeps
    d.dmesg.lines.clear()
    t0 = time.perf_counter()
    assert m.alloc(Resource(PAGE_SIZE)) == -errno
    elapsed = time.perf_counter() - t0
    assert elapsed >= (count - 1) * delay / 1000 * 0.9
    msgs = [msg for _, _, msg in d.dmesg.lines]
    assert [m_ for m_ in msgs if "retrying" in m_] == [
        f"{kind.upper()} allocation failed, retrying ({i}/{count})" for i in range(1, count)]
    assert msgs[-1].startswith(f"{kind.upper()} allocation failed after {count} retries")
    # as written, the VRAM -ENOMEM path leaks its vres; the fix frees it
    if kind == "vram":
        assert d.kmem.count("vres") == len(held) + (0 if fixed else 1)
    # free, recover, allocate again
    for r in held:
        m.free(r)
    assert m.get_stats().used_size == 0
    assert m.recover() == 0
    assert m.state.peek() == STATE_READY
    again = Resource(8 * PAGE_SIZE)
    assert m.alloc(again) == 0 and m.get_stats().used_size == 8 * PAGE_SIZE
    m.free(again)
    assert d.fini([m])[kind] == []


def test_exhaustion_under_the_scheduler_counts_allocator_calls():
    """Each retry is one allocator call and one msleep scheduling point."""
    d = Device(vram_size=4 * PAGE_SIZE, gtt_pages=4, options={}, sleep_scale=0)
    m = d.vram_mgr
    assert m.alloc(Resource(4 * PAGE_SIZE)) == 0
    out = []
    with Scheduler() as s:
        s.spawn("w", lambda: out.append(m.alloc(Resource(PAGE_SIZE))))
        assert s.run() == "done"
    labels = [lab for _, lab in s.history]
    assert labels.count("alloc_call") == PDDGPU_VRAM_ALLOC_RETRY_COUNT
    assert labels.count("retry_sleep") == PDDGPU_VRAM_ALLOC_RETRY_COUNT - 1
    assert out == [-ENOMEM]


def test_retry_holding_the_lock_is_a_self_deadlock_in_the_code():
    d = Device(vram_size=4 * PAGE_SIZE, gtt_pages=4, options={"retry_holds_lock": True}, sleep_scale=0)
    assert d.vram_mgr.alloc(Resource(4 * PAGE_SIZE)) == 0
    with pytest.raises(LockError):
        d.vram_mgr.alloc(Resource(PAGE_SIZE))
    assert [p for p, _, _ in d.bugs] == ["lock_no_self_reacquire"]
    d.vram_mgr.lock.release()                    # this thread still holds it: let go for the next tests
    g = Device(vram_size=4 * PAGE_SIZE, gtt_pages=4, options={"retry_holds_lock": True}, sleep_scale=0)
    assert g.gtt_mgr.alloc(Resource(4 * PAGE_SIZE)) == 0
    with pytest.raises(LockError):
        g.gtt_mgr.alloc(Resource(PAGE_SIZE))
    assert [p for p, _, _ in g.bugs] == ["no_sleep_under_spinlock", "lock_no_self_reacquire"]
    g.gtt_mgr.lock.release()


def test_fini_with_eviction_waits_for_the_last_free():
    d = Device(vram_size=4 * PAGE_SIZE, gtt_pages=4, options=dict(ALL_FIXES, fini_concurrent=True), sleep_scale=0)
    m = d.vram_mgr
    res = Resource(PAGE_SIZE)
    assert m.alloc(res) == 0
    result = {}
    t = threading.Thread(target=lambda: result.setdefault("leaks", d.fini([m])))
    t.start()
    time.sleep(0.05)
    assert t.is_alive()                          # waiting under evict_wait for the live block
    m.free(res)
    t.join(5)
    assert result["leaks"] == {"vram": []} and m.finied


def test_deadlock_error_type_exists():
    assert issubclass(Deadlock, SchedulerError)


# -- the scheduler finds the defects in the code by itself (no model) -------------------------------------

def _search(kind, options, workload, seeds, strategy):
    from pddgpu_verify.conformance.impl_replay import Harness
    found = {}
    for seed in range(seeds):
        h = Harness(kind, 4, options, workload)
        with Scheduler() as s:
            h.spawn_all(s)
            outcome = s.run(strategy(seed), max_steps=2000)
            h.monitor.at_end(outcome)
        for o in h.monitor.observations:
            found.setdefault(o.property, seed)
    return found


@pytest.mark.parametrize("strategy", [sched.RandomStrategy, lambda seed: sched.PCTStrategy(seed, depth=2,
                                                                                            expected_steps=40)],
                         ids=["random", "pct"])
def test_random_schedules_find_free_during_shutdown_in_the_code(strategy):
    from pddgpu_verify.model.manager import Workload
    wl = Workload([[("alloc", 1), ("free",)]], shutdown=True)
    found = _search("vram", {}, wl, 60, strategy)
    assert "no_leak_at_fini" in found
    assert _search("vram", {"fix_free_always_releases": True}, wl, 60, strategy) == {}


def test_vram_hands_out_one_aligned_block_like_the_model():
    """Regression (found by the concurrent conformance test): with free units
    1 and 3 only, a 2-page request fails, as in the model's geometry, instead
    of being served by two scattered 1-page blocks."""
    d = Device(vram_size=4 * PAGE_SIZE, gtt_pages=4, options={}, sleep_scale=0)
    m = d.vram_mgr
    a, b, c = Resource(2 * PAGE_SIZE), Resource(PAGE_SIZE), Resource(PAGE_SIZE)
    assert m.alloc(a) == 0 and a.extents() == [(0, 2 * PAGE_SIZE)]
    assert m.alloc(b) == 0 and b.extents() == [(2 * PAGE_SIZE, 3 * PAGE_SIZE)]
    m.free(a)
    assert m.alloc(c) == 0 and c.extents() == [(0, PAGE_SIZE)]
    assert m.alloc(Resource(2 * PAGE_SIZE)) == -ENOMEM
