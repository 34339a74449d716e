import random
import threading

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pddgpu_verify.pddgpu.buddy import (
    CLEAR_ALLOCATION,
    CLEARED,
    CONTIGUOUS_ALLOCATION,
    RANGE_ALLOCATION,
    TOPDOWN_ALLOCATION,
    TRIM_DISABLE,
    Block,
    BuddyAllocator,
)
from pddgpu_verify.pddgpu.errors import EINVAL, ENOSPC, AllocatorBug, AllocError

C = 4096  # chunk size used throughout


def snapshot(mm):
    """Structural picture of the whole tree: equal snapshots mean equal allocators."""
    nodes = []
    stack = list(mm.roots)
    while stack:
        b = stack.pop()
        nodes.append((b.offset, b.order, b.state))
        if b.is_split:
            stack += (b.left, b.right)
    return sorted(nodes, key=lambda t: (t[0], t[1])), mm.avail, [id(b) for b in mm.allocated_blocks()]


def alloc(mm, size, min_block=C, flags=0, start=0, end=None):
    return mm.alloc_blocks(start, mm.size if end is None else end, size, min_block, flags)


def check_blocks(mm):
    mm.check_invariants()
    blocks = list(mm.allocated_blocks())
    for b in blocks:
        assert b.offset % b.size == 0
        assert b.is_allocated
    for a, b in zip(blocks, blocks[1:]):
        assert a.end <= b.offset
    assert mm.avail + sum(b.size for b in blocks) == mm.size


def expect_errno(errno, fn, *args, **kwargs):
    with pytest.raises(AllocError) as exc:
        fn(*args, **kwargs)
    assert exc.value.errno == errno
    return exc.value


# -- construction ----------------------------------------------------------


def test_power_of_two_size_has_single_root():
    mm = BuddyAllocator(16 * C, C)
    assert [(r.offset, r.order) for r in mm.roots] == [(0, 4)]
    assert mm.avail == mm.size == 16 * C
    assert mm.max_order == 4


def test_non_power_of_two_size_uses_several_roots_largest_first():
    mm = BuddyAllocator(13 * C + 100, C)  # rounded down to 13 chunks
    assert mm.size == 13 * C
    assert [(r.offset, r.size) for r in mm.roots] == [(0, 8 * C), (8 * C, 4 * C), (12 * C, C)]
    assert all(r.buddy is None for r in mm.roots)
    assert list(mm.iter_free_blocks()) == list(mm.roots)
    blocks = alloc(mm, 13 * C)
    assert sum(b.size for b in blocks) == 13 * C and mm.avail == 0
    mm.free_blocks(blocks)
    assert [r.is_free for r in mm.roots] == [True, True, True]


@pytest.mark.parametrize("size,chunk", [(16 * C, 3 * C), (16 * C, 2048), (C - 1, C), (0, C), (16 * C, 0)])
def test_invalid_construction(size, chunk):
    expect_errno(EINVAL, BuddyAllocator, size, chunk)


# -- exhaustion, fragmentation, merging ------------------------------------


def test_exhaustion_leaves_allocator_unchanged():
    mm = BuddyAllocator(16 * C, C)
    blocks = [alloc(mm, C) for _ in range(16)]
    assert mm.avail == 0
    before = snapshot(mm)
    expect_errno(ENOSPC, alloc, mm, C)
    assert snapshot(mm) == before
    for bl in blocks:
        mm.free_blocks(bl)
    assert mm.avail == mm.size


def test_partial_fit_is_rolled_back():
    # 6 chunks free but split across pieces that cannot all be used at
    # min_block 2 chunks: the first blocks succeed, the last fails.
    mm = BuddyAllocator(16 * C, C)
    singles = sorted((alloc(mm, C)[0] for _ in range(16)), key=lambda b: b.offset)
    keep = {0, 2, 4, 6, 7, 8, 9}  # frees chunks 1, 3, 5 and 10..15
    mm.free_blocks([b for i, b in enumerate(singles) if i not in keep])
    before = snapshot(mm)
    assert mm.avail == 9 * C
    expect_errno(ENOSPC, alloc, mm, 8 * C, 2 * C)
    assert snapshot(mm) == before
    check_blocks(mm)


def test_fragmentation_blocks_large_requests_but_not_small_ones():
    mm = BuddyAllocator(16 * C, C)
    singles = sorted((alloc(mm, C)[0] for _ in range(16)), key=lambda b: b.offset)
    mm.free_blocks(singles[::2])  # every other chunk free: no two free buddies
    assert mm.avail == 8 * C
    before = snapshot(mm)
    expect_errno(ENOSPC, alloc, mm, 2 * C, 2 * C)
    expect_errno(ENOSPC, alloc, mm, 2 * C, C, CONTIGUOUS_ALLOCATION)
    assert snapshot(mm) == before
    got = alloc(mm, 8 * C, C)
    assert len(got) == 8 and mm.avail == 0


def test_freeing_everything_merges_back_to_single_root():
    mm = BuddyAllocator(64 * C, C)
    initial = snapshot(mm)
    rng = random.Random(1)
    allocs = [alloc(mm, rng.choice([1, 2, 3, 4]) * C) for _ in range(20)]
    check_blocks(mm)
    rng.shuffle(allocs)
    for bl in allocs:
        mm.free_blocks(bl)
        check_blocks(mm)
    assert snapshot(mm) == initial
    (root,) = mm.roots
    assert root.is_free and root.left is None and root.right is None


def test_scattered_allocation_returns_blocks_of_at_least_min_block():
    mm = BuddyAllocator(64 * C, C)
    blocks = alloc(mm, 5 * C)
    assert [b.size for b in blocks] == [4 * C, C]
    blocks = alloc(mm, 5 * C, 2 * C)  # rounded up to 6 chunks, the last block trimmed back
    assert [b.size for b in blocks] == [4 * C, C]
    assert mm.avail == 64 * C - 10 * C
    blocks = alloc(mm, 5 * C, 2 * C, TRIM_DISABLE)  # no trim: every block at least min_block
    assert [b.size for b in blocks] == [4 * C, 2 * C]
    assert all(b.offset % (2 * C) == 0 for b in blocks)
    assert mm.avail == 64 * C - 16 * C


# -- placement -------------------------------------------------------------


def test_default_is_best_fit_and_topdown_takes_highest_address():
    mm = BuddyAllocator(16 * C, C)
    alloc(mm, C, start=0, end=C)  # fixed range: pins chunk 0
    # Free now: order0@1, order1@2, order2@4, order3@8 (in chunks).
    (best,) = alloc(mm, C)
    assert best.offset == 1 * C
    (top,) = alloc(mm, C, flags=TOPDOWN_ALLOCATION)
    assert top.offset == 15 * C
    check_blocks(mm)


def test_default_placement_descends_right_like_drm_buddy():
    mm = BuddyAllocator(16 * C, C)
    (b,) = alloc(mm, C)
    assert b.offset == 15 * C
    assert b.buddy.offset == 14 * C and b.buddy.is_free
    assert b.parent.is_split


def test_range_allocation_stays_inside_window():
    mm = BuddyAllocator(64 * C, C)
    blocks = alloc(mm, 6 * C, flags=RANGE_ALLOCATION, start=10 * C, end=20 * C)
    assert sum(b.size for b in blocks) == 6 * C
    assert all(10 * C <= b.offset and b.end <= 20 * C for b in blocks)
    # End is exclusive: 4 chunks remain in [10, 20) and 4 more fit exactly.
    more = alloc(mm, 4 * C, flags=RANGE_ALLOCATION, start=10 * C, end=20 * C)
    assert all(b.end <= 20 * C for b in more)
    before = snapshot(mm)
    expect_errno(ENOSPC, alloc, mm, C, flags=RANGE_ALLOCATION, start=10 * C, end=20 * C)
    assert snapshot(mm) == before
    check_blocks(mm)


def test_range_allocation_bottom_up_and_top_down():
    mm = BuddyAllocator(64 * C, C)
    (low,) = alloc(mm, 2 * C, 2 * C, RANGE_ALLOCATION, start=6 * C, end=30 * C)
    assert low.offset == 6 * C
    # The kernel's range search ignores TOPDOWN: still the lowest fit.
    (next_low,) = alloc(mm, 2 * C, 2 * C, RANGE_ALLOCATION | TOPDOWN_ALLOCATION, start=6 * C, end=30 * C)
    assert next_low.offset == 8 * C


def test_failed_range_search_leaves_no_stray_splits():
    mm = BuddyAllocator(64 * C, C)
    initial = snapshot(mm)
    # A 4-chunk aligned block cannot fit in [1, 6) chunks.
    expect_errno(ENOSPC, alloc, mm, 4 * C, 4 * C, RANGE_ALLOCATION, start=C, end=6 * C)
    assert snapshot(mm) == initial


def test_fixed_range_allocation():
    mm = BuddyAllocator(16 * C, C)
    blocks = alloc(mm, 5 * C, start=3 * C, end=8 * C)
    assert [(b.offset, b.size) for b in blocks] == [(3 * C, C), (4 * C, 4 * C)]
    before = snapshot(mm)
    expect_errno(ENOSPC, alloc, mm, 2 * C, start=7 * C, end=9 * C)  # overlaps chunk 7
    assert snapshot(mm) == before
    expect_errno(EINVAL, alloc, mm, 2 * C, 2 * C, start=9 * C, end=11 * C)  # not min-aligned


# -- contiguous allocation and trim ----------------------------------------


def contiguous(blocks):
    blocks = sorted(blocks, key=lambda b: b.offset)
    return all(a.end == b.offset for a, b in zip(blocks, blocks[1:]))


def test_contiguous_is_rounded_up_then_trimmed():
    mm = BuddyAllocator(16 * C, C)
    blocks = alloc(mm, 3 * C, flags=CONTIGUOUS_ALLOCATION)
    assert sum(b.size for b in blocks) == 3 * C and contiguous(blocks)
    assert mm.avail == 13 * C
    check_blocks(mm)
    mm.free_blocks(blocks)
    assert mm.avail == mm.size and mm.roots[0].is_free


def test_contiguous_falls_back_to_runs_across_buddies():
    mm = BuddyAllocator(16 * C, C)
    singles = sorted((alloc(mm, C)[0] for _ in range(16)), key=lambda b: b.offset)
    mm.free_blocks(singles[3:6])  # chunks 3..5 free: no free 4-chunk block
    blocks = alloc(mm, 3 * C, flags=CONTIGUOUS_ALLOCATION)
    assert sorted((b.offset, b.size) for b in blocks) == [(3 * C, C), (4 * C, 2 * C)]
    assert mm.avail == 0


def test_contiguous_fallback_anchors_on_blocks_of_the_rounded_down_order():
    mm = BuddyAllocator(32 * C, C)
    singles = sorted((alloc(mm, C)[0] for _ in range(32)), key=lambda b: b.offset)
    # Free runs [3, 6), [9, 15) and [17, 23) chunks: none holds an aligned
    # 4-chunk block.  The kernel's fallback only starts from free blocks of
    # the size rounded down to a power of two -- for 4 chunks, a 4-chunk
    # block, which would have satisfied the request: ENOSPC.
    mm.free_blocks(singles[3:6] + singles[9:15] + singles[17:23])
    before = snapshot(mm)
    expect_errno(ENOSPC, alloc, mm, 4 * C, 2 * C, CONTIGUOUS_ALLOCATION | TOPDOWN_ALLOCATION)
    assert snapshot(mm) == before
    # 3 chunks: anchored on the highest free 2-chunk block, [20, 22), then 22.
    blocks = alloc(mm, 3 * C, C, CONTIGUOUS_ALLOCATION)
    assert contiguous(blocks)
    assert [(b.offset, b.size) for b in blocks] == [(20 * C, 2 * C), (22 * C, C)]


def test_contiguous_larger_than_any_root():
    mm = BuddyAllocator(12 * C, C)  # roots of 8 and 4 chunks
    blocks = alloc(mm, 10 * C, flags=CONTIGUOUS_ALLOCATION)
    assert contiguous(blocks) and sum(b.size for b in blocks) == 10 * C


def test_block_trim():
    mm = BuddyAllocator(16 * C, C)
    blocks = alloc(mm, 8 * C, 8 * C)
    (big,) = blocks
    assert mm.block_trim(blocks, 8 * C) == blocks
    trimmed = mm.block_trim(blocks, 5 * C)
    assert [(b.offset - big.offset, b.size) for b in trimmed] == [(0, 4 * C), (4 * C, C)]
    assert mm.avail == 11 * C
    with pytest.raises(AllocatorBug):
        mm.free_block(big)  # the pre-trim block is no longer a live allocation
    mm.free_blocks(trimmed)
    assert mm.avail == mm.size and mm.roots[0].is_free


def test_block_trim_invalid():
    mm = BuddyAllocator(16 * C, C)
    blocks = alloc(mm, 4 * C, 4 * C)
    other = alloc(mm, C)
    before = snapshot(mm)
    for new_size in (0, 5 * C, C + 1):
        expect_errno(EINVAL, mm.block_trim, blocks, new_size)
    expect_errno(EINVAL, mm.block_trim, blocks + other, C)
    assert snapshot(mm) == before
    mm.free_blocks(blocks)
    with pytest.raises(AllocatorBug):
        mm.block_trim(blocks, C)


# -- argument validation and misuse ----------------------------------------


@pytest.mark.parametrize(
    "start,end,size,min_block,flags",
    [
        (0, 16 * C, 0, C, 0),  # zero size
        (0, 16 * C, C + 1, C, 0),  # size not chunk aligned
        (0, 16 * C, 2 * C, 3 * C, 0),  # min_block not a power of two
        (0, 16 * C, 2 * C, 2048, 0),  # min_block below chunk
        (100, 16 * C, C, C, RANGE_ALLOCATION),  # start not aligned
        (0, 17 * C, C, C, 0),  # end beyond size
        (0, 16 * C, 17 * C, C, 0),  # larger than the allocator
        (0, 16 * C, C, C, 1 << 8),  # unknown flag
        (0, 16 * C, 1.5, C, 0),  # not an integer
    ],
)
def test_invalid_alloc_arguments(start, end, size, min_block, flags):
    mm = BuddyAllocator(16 * C, C)
    alloc(mm, C)
    before = snapshot(mm)
    expect_errno(EINVAL, mm.alloc_blocks, start, end, size, min_block, flags)
    assert snapshot(mm) == before


def test_double_free_raises():
    mm = BuddyAllocator(16 * C, C)
    (b,) = alloc(mm, C)
    mm.free_block(b)
    before = snapshot(mm)
    with pytest.raises(AllocatorBug):
        mm.free_block(b)
    assert snapshot(mm) == before


def test_foreign_block_raises():
    mm, other = BuddyAllocator(16 * C, C), BuddyAllocator(16 * C, C)
    (mine,) = alloc(mm, C)
    (theirs,) = alloc(other, C)
    assert mine.offset == theirs.offset
    with pytest.raises(AllocatorBug):
        mm.free_block(theirs)
    with pytest.raises(AllocatorBug):
        mm.free_block(Block(mine.offset, 0, None, C))
    with pytest.raises(AllocatorBug):
        mm.free_block("not a block")
    assert mine.is_allocated and theirs.is_allocated


def test_free_blocks_is_all_or_nothing():
    mm = BuddyAllocator(16 * C, C)
    a, b = alloc(mm, C)[0], alloc(mm, C)[0]
    before = snapshot(mm)
    with pytest.raises(AllocatorBug):
        mm.free_blocks([a, b, a])
    assert snapshot(mm) == before


def test_stale_block_after_merge_raises():
    mm = BuddyAllocator(16 * C, C)
    (b,) = alloc(mm, C)
    mm.free_block(b)
    (again,) = alloc(mm, C)  # same offset, new Block object
    assert again.offset == b.offset and again is not b
    with pytest.raises(AllocatorBug):
        mm.free_block(b)
    assert not b.is_allocated


def test_fini_reports_leaks_and_poisons_the_allocator():
    mm = BuddyAllocator(16 * C, C)
    kept = alloc(mm, 2 * C)
    freed = alloc(mm, C)
    mm.free_blocks(freed)
    assert mm.fini() == kept
    for use in (
        lambda: alloc(mm, C),
        lambda: mm.free_blocks(kept),
        lambda: mm.avail,
        lambda: list(mm.allocated_blocks()),
        mm.fini,
    ):
        with pytest.raises(AllocatorBug):
            use()


def test_clean_fini_reports_nothing():
    mm = BuddyAllocator(16 * C, C)
    mm.free_blocks(alloc(mm, 3 * C))
    assert mm.fini() == []


def test_many_threads_under_external_lock_is_fast():
    mm = BuddyAllocator(1 << 30, C)
    lock = threading.Lock()
    errors = []

    def worker(seed):
        rng = random.Random(seed)
        try:
            for _ in range(1000):
                with lock:
                    blocks = alloc(mm, rng.choice((1, 2, 4)) * C)
                with lock:
                    mm.free_blocks(blocks)
        except Exception as exc:  # surfaced below; threads swallow otherwise
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(100)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert mm.avail == mm.size
    mm.check_invariants()


# -- property test ---------------------------------------------------------

SIZE_CHUNKS = 22  # roots of 16, 4 and 2 chunks

alloc_op = st.tuples(
    st.just("alloc"),
    st.integers(1, 9),  # size in chunks
    st.integers(0, 2),  # min block order
    st.sets(st.sampled_from([RANGE_ALLOCATION, TOPDOWN_ALLOCATION, CONTIGUOUS_ALLOCATION, CLEAR_ALLOCATION,
                             TRIM_DISABLE])).map(sum),
    st.integers(0, SIZE_CHUNKS - 1),  # window start
    st.integers(1, SIZE_CHUNKS),  # window length
)
free_op = st.tuples(st.just("free"), st.integers(0, 1 << 16), st.booleans())
trim_op = st.tuples(st.just("trim"), st.integers(0, 1 << 16), st.integers(1, 8))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(alloc_op, free_op, trim_op), max_size=40))
def test_random_alloc_free_keeps_invariants(ops):
    mm = BuddyAllocator(SIZE_CHUNKS * C, C)
    initial = snapshot(mm)
    live: list[list[Block]] = []
    for op in ops:
        before = snapshot(mm)
        had_clear = mm.clear_avail
        if op[0] == "alloc":
            _, pages, min_order, flags, wstart, wlen = op
            size, min_block = pages * C, C << min_order
            start, end = wstart * C, min(SIZE_CHUNKS, wstart + wlen) * C
            if not flags & RANGE_ALLOCATION:
                start, end = 0, mm.size
            try:
                blocks = mm.alloc_blocks(start, end, size, min_block, flags)
            except AllocError as exc:
                assert exc.errno in (ENOSPC, EINVAL)
                if not had_clear:           # else the kernel may force-merge clear and dirty buddies
                    assert snapshot(mm) == before
                continue
            # rounded up to min_block (or a power of two) and trimmed back
            total = sum(b.size for b in blocks)
            if start + size == end or (size < min_block and size & (size - 1) == 0):
                assert total == size
            elif flags & CONTIGUOUS_ALLOCATION:
                # the try-harder fallback rounds its left part up to min_block, untrimmed
                pow2 = 1 << (size - 1).bit_length()
                assert size <= total < size + min_block or (flags & TRIM_DISABLE and total == pow2)
            elif flags & TRIM_DISABLE:
                assert total == -(-size // min_block) * min_block
            else:
                assert total == size
            if flags & RANGE_ALLOCATION:
                assert all(start <= b.offset and b.end <= end for b in blocks)
            if flags & CONTIGUOUS_ALLOCATION:
                assert contiguous(blocks)
            live.append(blocks)
        elif live:
            i = op[1] % len(live)
            if op[0] == "free":
                mm.free_blocks(live.pop(i), CLEARED if op[2] else 0)
            elif len(live[i]) == 1 and live[i][0].size > C:
                new_size = min(op[2] * C, live[i][0].size)
                live[i] = mm.block_trim(live[i], new_size)
                assert sum(b.size for b in live[i]) == new_size and contiguous(live[i])
        check_blocks(mm)
    for blocks in live:
        mm.free_blocks(blocks)
    mm.reset_clear(False)                   # merges what clear/dirty states kept apart
    assert snapshot(mm) == initial
    assert mm.fini() == []


# -- issue 10: deviations from the kernel, each pinned to the kernel's answer --

KiB, MiB, GiB = 1 << 10, 1 << 20, 1 << 30


@pytest.mark.parametrize("flags", [0, RANGE_ALLOCATION])
def test_issue10_rounded_past_max_order_is_einval(flags):
    mm = BuddyAllocator(10 * GiB, C)
    expect_errno(EINVAL, mm.alloc_blocks, 0, mm.size, 9 * GiB, 8 * GiB, flags)
    assert mm.avail == mm.size


def test_issue10_contiguous_range_past_max_order_is_einval():
    mm = BuddyAllocator(10 * GiB, C)
    expect_errno(EINVAL, mm.alloc_blocks, 0, mm.size, 9 * GiB, C, CONTIGUOUS_ALLOCATION | RANGE_ALLOCATION)
    assert mm.avail == mm.size
    # without RANGE the try-harder fallback serves it: 8 GiB + 1 GiB
    blocks = mm.alloc_blocks(0, mm.size, 9 * GiB, C, CONTIGUOUS_ALLOCATION)
    assert [(b.offset, b.size) for b in blocks] == [(0, 8 * GiB), (8 * GiB, GiB)]


def test_issue10_size_below_min_block_is_offset_aligned():
    mm = BuddyAllocator(1 * MiB, C)
    (b,) = mm.alloc_blocks(0, mm.size, 4 * KiB, 256 * KiB, 0)
    assert b.size == 4 * KiB and b.offset % (256 * KiB) == 0
    assert b.offset == 768 * KiB        # the highest aligned slot, as the kernel picks it
    assert mm.avail == mm.size - 4 * KiB
    check_blocks(mm)


def test_issue10_scattered_request_is_trimmed():
    mm = BuddyAllocator(16 * C, C)
    blocks = alloc(mm, 3 * C, 2 * C)
    assert sum(b.size for b in blocks) == 3 * C and mm.avail == 13 * C
    blocks = alloc(mm, 3 * C, 2 * C, TRIM_DISABLE)
    assert sum(b.size for b in blocks) == 4 * C


def test_issue10_range_ignores_topdown():
    mm = BuddyAllocator(16 * C, C)
    (b,) = alloc(mm, C, C, RANGE_ALLOCATION | TOPDOWN_ALLOCATION, start=0, end=16 * C)
    assert b.offset == 0


def test_issue10_contiguous_range_has_no_fallback():
    mm = BuddyAllocator(16 * C, C)
    alloc(mm, C, start=3 * C, end=4 * C)
    expect_errno(ENOSPC, alloc, mm, 3 * C, C, CONTIGUOUS_ALLOCATION | RANGE_ALLOCATION, start=0, end=7 * C)


def test_issue10_contiguous_fallback_placement():
    mm = BuddyAllocator(16 * C, C)
    alloc(mm, C, start=2 * C, end=3 * C)
    alloc(mm, C, start=10 * C, end=11 * C)
    blocks = alloc(mm, 5 * C, C, CONTIGUOUS_ALLOCATION)
    assert contiguous(blocks)
    assert (blocks[0].offset, sum(b.size for b in blocks)) == (11 * C, 5 * C)


def test_issue10_clear_tracking():
    mm = BuddyAllocator(16 * C, C)
    blocks = alloc(mm, 4 * C, flags=TOPDOWN_ALLOCATION)
    mm.free_blocks(blocks, CLEARED)
    assert mm.clear_avail == 4 * C
    (b,) = alloc(mm, C, flags=CLEAR_ALLOCATION)
    assert b.is_clear and mm.clear_avail == 3 * C
    (d,) = alloc(mm, C)
    assert not d.is_clear
    mm.free_block(b)                    # keeps its clear state
    assert mm.clear_avail == 4 * C
    mm.free_blocks([d])                 # dirty
    mm.reset_clear(True)
    assert mm.clear_avail == mm.avail == mm.size
    mm.reset_clear(False)
    assert mm.clear_avail == 0
    check_blocks(mm)


def test_issue10_trim_with_start():
    mm = BuddyAllocator(16 * C, C)
    blocks = alloc(mm, 8 * C, 8 * C)
    base = blocks[0].offset
    got = mm.block_trim(blocks, 2 * C, start=base + 2 * C)
    assert [(b.offset - base, b.size) for b in got] == [(2 * C, 2 * C)]
    assert mm.avail == 14 * C
    expect_errno(EINVAL, mm.block_trim, got, C, start=base)  # before the block
    check_blocks(mm)


def test_issue10_range_ignored_without_range_flag():
    mm = BuddyAllocator(16 * C, C)
    (b,) = alloc(mm, C, start=8 * C, end=8 * C)
    assert b.offset == 15 * C


def test_issue10_u64_limit():
    expect_errno(EINVAL, BuddyAllocator, 1 << 70, C)
    mm = BuddyAllocator((1 << 64) - 1, C)
    assert mm.max_order == 51


@pytest.mark.parametrize("seed", range(4))
def test_aligned_index_finds_what_a_scan_finds(seed):
    # offset-aligned requests use an index of free blocks by offset alignment;
    # after any history it must pick the block a scan of the free tree picks
    rng = random.Random(seed)
    mm = BuddyAllocator(256 * C, C)
    live = []
    for _ in range(400):
        r = rng.random()
        if r < 0.5:
            size = C << rng.randrange(3)
            min_block = size << rng.randrange(0, 4)
            flags = rng.choice([0, CLEAR_ALLOCATION])
            try:
                live.append(mm.alloc_blocks(0, mm.size, size, min_block, flags))
            except AllocError:
                pass
        elif live:
            mm.free_blocks(live.pop(rng.randrange(len(live))), rng.choice([0, CLEARED]))
        for tree in (0, 1):
            for order in range(mm.max_order + 1):
                for align_order in range(order, mm.max_order + 1):
                    mask = (C << align_order) - 1
                    assert mm._highest_aligned(tree, order, mask) is mm._highest_aligned_scan(tree, order, mask)
    check_blocks(mm)
