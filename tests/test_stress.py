"""Stress (document 测试验证 1.1/1.2): 100 threads x 1000 alloc/free pairs on
the fixed implementation, running free (real threads, real locks, no
scheduler), with statistics readers and an error injector / recoverer
running beside them.  At the end every invariant holds: nothing allocated,
used and vis_usage 0, no vres left, no bug reported, fini finds no leak."""
from __future__ import annotations

import random
import threading
import time

import pytest

from pddgpu_verify.model.options import ALL_FIXES
from pddgpu_verify.pddgpu.device import PAGE_SIZE, STATE_ERROR, Device, Resource
from pddgpu_verify.pddgpu.errors import ENODEV, ENOMEM, ENOSPC

THREADS, PAIRS = 100, 1000


@pytest.mark.parametrize("chaos_on", [False, True], ids=["plain", "with_error_and_recover"])
def test_stress_fixed_implementation_running_free(chaos_on):
    dev = Device(vram_size=512 * PAGE_SIZE, gtt_pages=512, options=dict(ALL_FIXES), sleep_scale=0)
    mgrs = [dev.vram_mgr, dev.gtt_mgr]
    codes = {"vram": (0, -ENODEV, -ENOMEM), "gtt": (0, -ENODEV, -ENOSPC)}
    errors, bad_codes, bad_stats = [], [], []
    done = threading.Event()
    counts = {"ok": 0, "failed": 0}
    refused: dict = {}
    mu = threading.Lock()

    def worker(seed):
        rng = random.Random(seed)
        ok = failed = 0
        try:
            for _ in range(PAIRS):
                mgr = mgrs[rng.getrandbits(1)]
                res = Resource(rng.choice((1, 2, 4)) * PAGE_SIZE)
                r = mgr.alloc(res)
                if r not in codes[mgr.NAME]:
                    bad_codes.append((mgr.NAME, r))
                if r == 0:
                    ok += 1
                    mgr.free(res)
                    if not res.released:
                        errors.append(f"{mgr.NAME} free did not release {res.extents()}")
                else:
                    failed += 1
                    with mu:
                        refused[r] = refused.get(r, 0) + 1
        except BaseException as e:  # noqa: BLE001
            errors.append(repr(e))
        with mu:
            counts["ok"] += ok
            counts["failed"] += failed

    def stats_reader():
        while not done.is_set():
            for m in mgrs:
                st = m.get_stats()
                if not (0 <= st.used_size <= st.total_size) or st.visible_used > st.used_size:
                    bad_stats.append(st)
            time.sleep(0.001)

    def chaos():
        rng = random.Random(7)
        while not done.is_set():
            m = mgrs[rng.getrandbits(1)]
            m.set_error()
            time.sleep(0.0002)
            if m.recover() != 0:
                errors.append(f"{m.NAME} recover failed")
            time.sleep(0.1)

    t0 = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(THREADS)]
    side = [threading.Thread(target=stats_reader)] + ([threading.Thread(target=chaos)] if chaos_on else [])
    for t in threads + side:
        t.start()
    for t in threads:
        t.join(60)
    done.set()
    for t in side:
        t.join(10)
    elapsed = time.perf_counter() - t0
    assert not any(t.is_alive() for t in threads + side)

    # every invariant at the end
    for m in mgrs:
        if m.state.peek() & STATE_ERROR:
            assert m.recover() == 0
    assert not errors, errors[:5]
    assert not bad_codes, bad_codes[:5]
    assert not bad_stats, bad_stats[:5]
    assert not dev.bugs, dev.bugs[:5]
    assert counts["ok"] + counts["failed"] == THREADS * PAIRS
    assert counts["ok"] > THREADS * PAIRS // 2
    if not chaos_on:        # room for every thread's largest request: nothing is refused
        assert refused == {}, refused
    for m in mgrs:
        m.mm.check_invariants()
        assert m.live_blocks() == 0
        st = m.get_stats()
        assert st.used_size == 0 and st.visible_used == 0
    assert dev.vram_mgr.used.peek() == 0 and dev.vram_mgr.vis_usage.peek() == 0
    assert dev.kmem.count("vres") == 0
    leaks = dev.fini()
    assert leaks == {"vram": [], "gtt": []}
    print(f"stress: {THREADS}x{PAIRS} pairs in {elapsed:.1f}s, {counts['ok']} allocated, "
          f"{counts['failed']} refused {refused}")


def test_model_workloads_run_free_on_the_fixed_code():
    """The harness that replays traces also runs a workload on free threads."""
    from pddgpu_verify.model.manager import Workload
    from pddgpu_verify.conformance.impl_replay import Harness
    A = lambda n: ("alloc", n)  # noqa: E731
    wl = Workload([[A(1), ("free",), A(2), ("free",)]] * 4, error_injectors=1, recoverers=1, stats_readers=2,
                  shutdown=True)
    for kind in ("vram", "gtt"):
        for _ in range(20):
            h = Harness(kind, 8, dict(ALL_FIXES), wl)
            errors = h.run_free()
            h.monitor.at_end("done")
            assert errors == {}
            assert h.fini_leaks == [] and h.monitor.observations == [], h.monitor.observations
            assert not h.dev.bugs
