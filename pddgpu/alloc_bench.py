"""A small bench of the buddy allocator (issue 10's speed rows).

``run()`` measures, on a 1 GiB allocator of 4 KiB chunks:

* ``fill_1g_s``          - filling it page by page (262144 single-page calls);
* ``fill_1g_nogc_s``     - the same with Python's cyclic garbage collector
  paused (its passes over the objects a fill leaves are the rest);
* ``fill_1g_tracked``    - how many of the objects the fill returned the
  collector tracks: the caller's 262144 one-block lists, plus the blocks
  where they are tracked objects (a count, no ``_cpu`` twin);
* ``alloc_1page_us``     - one single-page allocation on a fresh allocator
  (mean over a batch);
* ``range_100_us``       - a 1-page RANGE allocation in a 256 KiB window
  with 100 free pages in the whole allocator (alloc + free, mean);
* ``range_131k_us``      - the same with 131072 free pages (every other page);
* ``contig_fail_ms``     - a 3-page CONTIGUOUS request that fails (every
  other page free: no two free pages are adjacent).

``run_mm()`` measures the range allocator (drm_mm) with 131072 one-page
holes (every other page of 2^18 pages free): a 2-page LOW and a 2-page HIGH
insertion (insert + remove, mean), which must skip every small hole.

Each figure is measured with two clocks over the same calls: wall-clock
under its key, CPU time of the process (``time.process_time``) under the key
plus ``_cpu``.  On a shared machine the CPU time moves much less with the
load.

``main()`` prints them and the load average before and after;
``markdown()`` renders them beside the figures issue 10 recorded before the
rewrite.  Pure pddgpu: no checker import.  Timings depend on the machine
and its load; nothing asserts on them.
"""
from __future__ import annotations

import gc
import time
from typing import Callable

from .buddy import CONTIGUOUS_ALLOCATION, RANGE_ALLOCATION, BuddyAllocator
from .errors import AllocError
from .range_alloc import InsertMode, RangeAllocator

KiB, MiB, GiB = 1 << 10, 1 << 20, 1 << 30
PAGE = 4 * KiB
WINDOW = (512 * MiB, 512 * MiB + 256 * KiB)

# Issue 10's figures for the allocator before the rewrite (same rows).
BEFORE = {
    "fill_1g_s": 7.0,
    "alloc_1page_us": 27.0,
    "range_131k_us": 317_000.0,
    "contig_fail_ms": 1300.0,
}

ROWS = (
    ("fill_1g_s", "fill 1 GiB with 4 KiB blocks, page by page", "s", "< 1 s"),
    ("fill_1g_nogc_s", "the same, cyclic GC paused (allocator work only)", "s", "-"),
    ("alloc_1page_us", "single-page allocation", "µs", "-"),
    ("range_100_us", "1-page RANGE alloc in a 256 KiB window, 100 free pages", "µs", "same as 131k"),
    ("range_131k_us", "1-page RANGE alloc in a 256 KiB window, 131k free pages", "µs", "µs, same as 100"),
    ("contig_fail_ms", "failing 3-page CONTIGUOUS request (131k free pages)", "ms", "milliseconds"),
)

MM_ROWS = (
    ("mm_low_us", "drm_mm: 2-page LOW insert past 131k 1-page holes", "µs", "-"),
    ("mm_high_us", "drm_mm: 2-page HIGH insert past 131k 1-page holes", "µs", "-"),
)


def _mean(fn: Callable[[], object], n: int) -> tuple[float, float]:
    """Mean wall and CPU seconds of ``n`` calls."""
    t, c = time.perf_counter(), time.process_time()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t) / n, (time.process_time() - c) / n


def _put(out: dict, key: str, times: tuple[float, float], scale: float = 1.0) -> None:
    out[key], out[key + "_cpu"] = times[0] * scale, times[1] * scale


def run(size: int = GiB, cls=BuddyAllocator, quick: bool = False, repeat: int = 1) -> dict:
    """The bench figures (see the module docstring), each the best of
    ``repeat`` runs.  ``quick`` uses fewer repetitions inside a run; ``cls``
    lets the same bench time another implementation of the allocator's
    interface."""
    runs = [_run_once(size, cls, quick) for _ in range(max(repeat, 1))]
    return {k: min(r[k] for r in runs) for k in runs[0]}


def _run_once(size: int, cls, quick: bool) -> dict:
    reps = 20 if quick else 200
    out: dict[str, float] = {}
    pages = size // PAGE

    # single-page allocation on a fresh allocator
    mm = cls(size, PAGE)
    batch = 2000 if quick else 10000
    _put(out, "alloc_1page_us", _mean(lambda: mm.alloc_blocks(0, size, PAGE, PAGE, 0), batch), 1e6)

    # fill page by page
    mm = cls(size, PAGE)
    alloc = mm.alloc_blocks
    t, c = time.perf_counter(), time.process_time()
    blocks = [alloc(0, size, PAGE, PAGE, 0) for _ in range(pages)]
    _put(out, "fill_1g_s", (time.perf_counter() - t, time.process_time() - c))
    out["fill_1g_tracked"] = sum(gc.is_tracked(got) + sum(map(gc.is_tracked, got)) for got in blocks)

    # the same with the cyclic garbage collector paused: the allocator's own
    # work, without the collector's passes over the growing set of blocks
    mm2 = cls(size, PAGE)
    alloc2 = mm2.alloc_blocks
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        t, c = time.perf_counter(), time.process_time()
        kept = [alloc2(0, size, PAGE, PAGE, 0) for _ in range(pages)]
        _put(out, "fill_1g_nogc_s", (time.perf_counter() - t, time.process_time() - c))
    finally:
        if was_enabled:
            gc.enable()
    del kept, mm2, alloc2

    # every other page free: 131k free pages, no two adjacent
    for b in blocks[::2]:
        mm.free_blocks(b)
    del blocks
    lo, hi = WINDOW

    def range_once(m=mm):
        got = m.alloc_blocks(lo, hi, PAGE, PAGE, RANGE_ALLOCATION)
        m.free_blocks(got)

    _put(out, "range_131k_us", _mean(range_once, reps), 1e6)

    def contig_fail(m=mm):
        try:
            m.alloc_blocks(0, size, 3 * PAGE, PAGE, CONTIGUOUS_ALLOCATION)
        except AllocError:
            return
        raise AssertionError("the contiguous request should fail")

    _put(out, "contig_fail_ms", _mean(contig_fail, max(reps // 20, 3)), 1e3)
    del mm

    # 100 free pages: 32 of them in the window, the rest spread out; the
    # allocated space is claimed with exact-range requests (few large blocks)
    mm = cls(size, PAGE)
    free_pages = sorted(set(range(lo // PAGE, hi // PAGE, 2)) |
                        {i * (pages // 68) + 7 for i in range(68)})[:100]
    cursor = 0
    for p in free_pages + [pages]:
        if p > cursor:
            mm.alloc_blocks(cursor * PAGE, p * PAGE, (p - cursor) * PAGE, PAGE, 0)
        cursor = p + 1
    assert mm.avail == len(free_pages) * PAGE
    _put(out, "range_100_us", _mean(lambda: range_once(mm), reps), 1e6)
    return out


def run_mm(cls=RangeAllocator, quick: bool = False) -> dict:
    """The range allocator rows (see the module docstring)."""
    reps = 20 if quick else 100
    n = 1 << 17
    mm = cls(0, 2 * n + 2)
    nodes = [mm.insert_node(1, mode=InsertMode.LOW) for _ in range(2 * n)]
    for node in nodes[::2]:
        mm.remove_node(node)
    del nodes
    out = {}
    for key, mode in (("mm_low_us", InsertMode.LOW), ("mm_high_us", InsertMode.HIGH)):
        def once(m=mm, mode=mode):
            m.remove_node(m.insert_node(2, mode=mode))
        once()                      # the first search may build an index
        _put(out, key, _mean(once, reps), 1e6)
    return out


def _fmt(v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v:,.3g}" if v < 1000 else f"{v:,.0f}"


def markdown(after: dict, before: dict | None = None, note: str = "") -> str:
    """A table of ``after`` (wall and CPU) beside ``before`` (issue 10's
    figures unless given; its CPU column shows where ``before`` has one)."""
    before = BEFORE if before is None else before
    lines = ["| measurement | unit | before, wall | before, CPU | after, wall | after, CPU | target |",
             "|---|---|---:|---:|---:|---:|---|"]
    for key, label, unit, target in ROWS + MM_ROWS:
        cells = (before.get(key), before.get(key + "_cpu"), after.get(key), after.get(key + "_cpu"))
        lines.append(f"| {label} | {unit} | " + " | ".join(_fmt(v) for v in cells) + f" | {target} |")
    return "\n".join(lines) + ("\n\n" + note if note else "") + "\n"


def main(argv: list[str] | None = None) -> dict:
    import sys
    argv = sys.argv[1:] if argv is None else argv
    load = _loadavg()
    res = run(quick="--quick" in argv, repeat=1 if "--quick" in argv else 3)
    res.update(run_mm(quick="--quick" in argv))
    print(f"{'':60s} {'wall':>12s} {'CPU':>12s}")
    for key, label, unit, _ in ROWS + MM_ROWS:
        print(f"{label:60s} {res[key]:12.3f} {res[key + '_cpu']:12.3f} {unit}")
    print(f"objects of the fill's result the cyclic GC tracks (lists and blocks): {res['fill_1g_tracked']:,}")
    print(f"load average (1, 5, 15 min): {load} at start, {_loadavg()} at end")
    return res


def _loadavg() -> str:
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "unknown"


if __name__ == "__main__":
    main()
