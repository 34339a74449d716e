import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pddgpu_verify.pddgpu.errors import EINVAL, ENOSPC, AllocatorBug, AllocError
from pddgpu_verify.pddgpu.range_alloc import InsertMode, Node, RangeAllocator

LOW, HIGH, BEST, EVICT = InsertMode.LOW, InsertMode.HIGH, InsertMode.BEST, InsertMode.EVICT


def snapshot(mm):
    return list(mm.holes()), [(n.start, n.size, id(n)) for n in mm.nodes()], mm.allocated_size


def expect_errno(errno, fn, *args, **kwargs):
    with pytest.raises(AllocError) as exc:
        fn(*args, **kwargs)
    assert exc.value.errno == errno


def check_tiling(mm):
    mm.check_invariants()
    holes = list(mm.holes_by_address())
    assert sorted(mm.holes()) == holes
    nodes = list(mm.nodes())
    pieces = sorted([(s, e) for s, e in holes] + [(n.start, n.end) for n in nodes])
    assert pieces[0][0] == mm.start and pieces[-1][1] == mm.start + mm.size
    assert all(a[1] == b[0] for a, b in zip(pieces, pieces[1:]))
    assert all(a[1] < b[0] for a, b in zip(holes, holes[1:])), "two holes are adjacent"
    assert mm.allocated_size == sum(n.size for n in nodes)
    assert mm.allocated_size + sum(e - s for s, e in holes) == mm.size


@pytest.mark.parametrize("start,size", [(0, 0), (0, -5), (-1, 10), (0, 2.5)])
def test_invalid_construction(start, size):
    expect_errno(EINVAL, RangeAllocator, start, size)


def test_low_and_high_placement():
    mm = RangeAllocator(0, 1000)
    assert mm.insert_node(10, mode=LOW).start == 0
    assert mm.insert_node(10, mode=HIGH).start == 990
    assert mm.insert_node(10, mode=LOW).start == 10
    assert mm.insert_node(10, mode=HIGH).start == 980
    check_tiling(mm)


def test_non_power_of_two_alignment():
    mm = RangeAllocator(0, 1000)
    mm.reserve_node(0, 5)
    low = mm.insert_node(10, alignment=12, mode=LOW)
    assert low.start == 12
    # HIGH aligns downward from the top of the hole: 990 - 990 % 7 == 987.
    high = mm.insert_node(10, alignment=7, mode=HIGH)
    assert high.start == 987
    best = mm.insert_node(3, alignment=9)
    assert best.start % 9 == 0
    check_tiling(mm)


def test_alignment_is_absolute_not_relative_to_start():
    mm = RangeAllocator(5, 100)
    assert mm.insert_node(10, alignment=4, mode=LOW).start == 8
    assert mm.insert_node(1, alignment=1, mode=LOW).start == 5  # 1 means none


def test_best_fit_picks_smallest_hole_that_fits():
    mm = RangeAllocator(0, 200)
    # Holes of 50 @0, 20 @60 and 30 @100, separated by nodes.
    for start, size in ((50, 10), (80, 20), (130, 70)):
        mm.reserve_node(start, size)
    assert list(mm.holes_by_address()) == [(0, 50), (60, 80), (100, 130)]
    assert mm.insert_node(20).start == 60
    # With alignment 45 the 30 hole (100..130) has no aligned slot, so the
    # search moves on to the next larger hole.
    assert mm.insert_node(10, alignment=45).start == 0
    # EVICT tries the newest hole first: [10, 50), left by the last insert
    # (BEST would take the smaller [100, 130)).
    assert list(mm.holes()) == [(10, 50), (100, 130)]
    assert mm.insert_node(25, mode=EVICT).start == 10
    check_tiling(mm)


def test_range_restriction_end_is_exclusive():
    mm = RangeAllocator(0, 1000)
    assert mm.insert_node(20, start=100, end=200, mode=LOW).start == 100
    assert mm.insert_node(20, start=100, end=200, mode=HIGH).start == 180
    node = mm.insert_node(60, start=100, end=200)
    assert (node.start, node.end) == (120, 180)
    before = snapshot(mm)
    expect_errno(ENOSPC, mm.insert_node, 1, start=100, end=200)
    expect_errno(ENOSPC, mm.insert_node, 101, start=100, end=200)
    expect_errno(ENOSPC, mm.insert_node, 1, start=5000, end=6000)
    assert snapshot(mm) == before


def test_exhaustion_leaves_allocator_unchanged():
    mm = RangeAllocator(0x1000, 64)
    nodes = [mm.insert_node(8, mode=random.choice(list(InsertMode))) for _ in range(8)]
    assert list(mm.holes()) == [] and mm.allocated_size == 64
    before = snapshot(mm)
    expect_errno(ENOSPC, mm.insert_node, 1)
    expect_errno(ENOSPC, mm.reserve_node, 0x1000, 1)
    assert snapshot(mm) == before
    for n in nodes:
        mm.remove_node(n)
    assert list(mm.holes()) == [(0x1000, 0x1040)]


def test_fragmentation():
    mm = RangeAllocator(0, 100)
    nodes = [mm.insert_node(10, mode=LOW) for _ in range(10)]
    for n in nodes[::2]:
        mm.remove_node(n)
    assert mm.allocated_size == 50
    expect_errno(ENOSPC, mm.insert_node, 11)
    assert mm.insert_node(10, mode=HIGH).start == 80
    check_tiling(mm)


def test_reserve_node():
    mm = RangeAllocator(100, 100)
    a = mm.reserve_node(120, 10, color="vram")
    assert (a.start, a.size, a.color) == (120, 10, "vram")
    before = snapshot(mm)
    for start, size in ((125, 10), (115, 10), (120, 1), (90, 20), (195, 10), (0, 1), (200, 1)):
        expect_errno(ENOSPC, mm.reserve_node, start, size)
    expect_errno(ENOSPC, mm.reserve_node, 150, 0)  # the kernel's end <= start
    expect_errno(EINVAL, mm.reserve_node, 150, -1)
    assert snapshot(mm) == before
    mm.reserve_node(100, 20)
    mm.reserve_node(130, 70)
    assert list(mm.holes()) == []
    check_tiling(mm)


def test_holes_merge_on_remove():
    mm = RangeAllocator(0, 100)
    a, b, c = (mm.reserve_node(s, 10) for s in (10, 20, 30))
    assert list(mm.holes_by_address()) == [(0, 10), (40, 100)]
    mm.remove_node(b)
    assert list(mm.holes_by_address()) == [(0, 10), (20, 30), (40, 100)]
    assert list(mm.holes()) == [(20, 30), (40, 100), (0, 10)]  # newest first
    mm.remove_node(a)  # merges with both neighbours
    assert list(mm.holes()) == [(0, 30), (40, 100)]
    mm.remove_node(c)
    assert list(mm.holes()) == [(0, 100)]
    check_tiling(mm)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(size=-4),
        dict(size=4, alignment=-1),
        dict(size=4, start=50, end=40),
        dict(size=4, mode="best"),
        dict(size=4.0),
    ],
)
def test_invalid_insert(kwargs):
    mm = RangeAllocator(0, 100)
    mm.insert_node(10)
    before = snapshot(mm)
    expect_errno(EINVAL, mm.insert_node, **kwargs)
    assert snapshot(mm) == before


def test_zero_size_insert_is_enospc_like_the_kernel():
    mm = RangeAllocator(0, 100)
    before = snapshot(mm)
    expect_errno(ENOSPC, mm.insert_node, 0)
    expect_errno(ENOSPC, mm.reserve_node, 10, 0)
    assert snapshot(mm) == before


def test_double_remove_and_foreign_node_raise():
    mm, other = RangeAllocator(0, 100), RangeAllocator(0, 100)
    mine = mm.insert_node(10, mode=LOW)
    theirs = other.insert_node(10, mode=LOW)
    assert mine.start == theirs.start
    with pytest.raises(AllocatorBug):
        mm.remove_node(theirs)
    with pytest.raises(AllocatorBug):
        mm.remove_node(Node(0, 10, None, mm))
    with pytest.raises(AllocatorBug):
        mm.remove_node(object())
    mm.remove_node(mine)
    assert not mine.allocated
    before = snapshot(mm)
    with pytest.raises(AllocatorBug):
        mm.remove_node(mine)
    assert snapshot(mm) == before and theirs.allocated


def test_takedown_reports_leaks_and_poisons_the_allocator():
    mm = RangeAllocator(0, 100)
    leaked = mm.insert_node(10)
    mm.remove_node(mm.insert_node(5))
    assert mm.takedown() == [leaked]
    for use in (lambda: mm.insert_node(1), lambda: mm.remove_node(leaked), lambda: list(mm.holes()),
                lambda: mm.allocated_size, mm.takedown):
        with pytest.raises(AllocatorBug):
            use()


def test_clean_takedown():
    mm = RangeAllocator(0, 100)
    mm.remove_node(mm.insert_node(10))
    assert mm.takedown() == []


# -- property test ---------------------------------------------------------

START, SIZE = 7, 200

insert_op = st.tuples(
    st.just("insert"),
    st.integers(1, 40),  # size
    st.integers(0, 13),  # alignment (0/1: none, others include non powers of two)
    st.sampled_from(list(InsertMode)),
    st.one_of(st.none(), st.tuples(st.integers(0, SIZE + 20), st.integers(0, SIZE + 20))),
)
reserve_op = st.tuples(st.just("reserve"), st.integers(0, SIZE + 10), st.integers(1, 30))
remove_op = st.tuples(st.just("remove"), st.integers(0, 1 << 16))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(insert_op, reserve_op, remove_op), max_size=50))
def test_random_insert_remove_keeps_invariants(ops):
    mm = RangeAllocator(START, SIZE)
    initial = snapshot(mm)
    live: list[Node] = []
    for op in ops:
        before = snapshot(mm)
        try:
            if op[0] == "insert":
                _, size, align, mode, window = op
                lo, hi = (None, None) if window is None else (min(window), max(window))
                node = mm.insert_node(size, align, lo, hi, mode)
                assert node.size == size
                if align > 1:
                    assert node.start % align == 0
                if window is not None:
                    assert lo <= node.start and node.end <= hi
                live.append(node)
            elif op[0] == "reserve":
                _, start, size = op
                node = mm.reserve_node(start, size)
                assert (node.start, node.size) == (start, size)
                live.append(node)
            elif live:
                mm.remove_node(live.pop(op[1] % len(live)))
        except AllocError as exc:
            assert exc.errno == ENOSPC
            assert snapshot(mm) == before
        check_tiling(mm)
        spans = sorted((n.start, n.end) for n in live)
        assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:]))
        assert all(START <= s and e <= START + SIZE for s, e in spans)
    for node in live:
        mm.remove_node(node)
    assert snapshot(mm) == initial
    assert mm.takedown() == []


# -- issue 10: deviations from the kernel's drm_mm ---------------------------


def _three_holes():
    # holes [0, 10), [20, 30), [40, 50) created in that order
    mm = RangeAllocator(0, 60)
    a = mm.reserve_node(10, 10)
    b = mm.reserve_node(30, 10)
    c = mm.reserve_node(50, 10)
    for n in (a, b, c):
        mm.remove_node(n)
    for s in (10, 30, 50):
        mm.reserve_node(s, 10)
    return mm


def test_issue10_evict_walks_newest_hole_first():
    mm = RangeAllocator(0, 60)
    nodes = [mm.reserve_node(s, 10) for s in range(0, 60, 10)]
    for i in (1, 5, 3):
        mm.remove_node(nodes[i])
    assert list(mm.holes()) == [(30, 40), (50, 60), (10, 20)]
    assert mm.insert_node(10, mode=EVICT).start == 30
    assert mm.insert_node(10, mode=EVICT).start == 50


def test_issue10_best_takes_newest_of_equal_holes():
    mm = RangeAllocator(0, 60)
    nodes = [mm.reserve_node(s, 10) for s in range(0, 60, 10)]
    for i in (1, 5, 3):
        mm.remove_node(nodes[i])
    assert mm.insert_node(10, mode=BEST).start == 30
    check_tiling(mm)


def test_issue10_once_tries_one_hole():
    mm = RangeAllocator(0, 7)
    mm.reserve_node(1, 1)
    mm.reserve_node(5, 1)
    # LOWEST: the first usable hole, [2, 5)
    n = mm.insert_node(2, mode=InsertMode.LOWEST)
    assert n.start == 2
    mm.remove_node(n)
    assert mm.insert_node(2, mode=InsertMode.HIGHEST).start == 3
    # ONCE fails where the first hole has no room after alignment
    mm = RangeAllocator(0, 10)
    mm.reserve_node(0, 1)
    mm.reserve_node(3, 3)                      # holes [1, 3) and [6, 10)
    expect_errno(ENOSPC, mm.insert_node, 1, alignment=4, mode=LOW, once=True)
    assert mm.insert_node(1, alignment=4, mode=LOW).start == 8


def test_issue10_color_adjust_keeps_colours_apart():
    def separate(before, after, color, start, end):
        if before is not None and before.color != color:
            start += 1
        if after is not None and after.color != color:
            end -= 1
        return start, end

    mm = RangeAllocator(0, 100, color_adjust=separate)
    a = mm.insert_node(10, mode=LOW, color=1)
    b = mm.insert_node(10, mode=LOW, color=2)
    assert (a.start, b.start) == (0, 11)
    c = mm.insert_node(10, mode=LOW, color=2)
    assert c.start == 21                       # same colour may abut
    # the 1-unit gap between colours 1 and 2 takes neither colour
    expect_errno(ENOSPC, mm.reserve_node, 10, 1, color=2)
    expect_errno(ENOSPC, mm.reserve_node, 10, 1, color=1)
    mm.remove_node(b)
    assert mm.reserve_node(10, 1, color=1).start == 10


def test_issue10_replace_node_keeps_place():
    mm = RangeAllocator(0, 100)
    old = mm.insert_node(10, color="x")
    holes = list(mm.holes())
    new = mm.replace_node(old)
    assert (new.start, new.size, new.color) == (old.start, old.size, "x")
    assert not old.allocated and new.allocated and list(mm.holes()) == holes
    mm.remove_node(new)
    check_tiling(mm)


@pytest.mark.parametrize("seed", range(6))
def test_size_classes_visit_holes_like_an_address_scan(seed):
    # LOW/HIGH skip small holes through the size classes after a short scan;
    # the order must be exactly that of a scan of every hole.
    rng = random.Random(seed)
    mm = RangeAllocator(0, 4000)
    mm._SCAN = 2
    nodes = []
    for _ in range(300):
        try:
            nodes.append(mm.reserve_node(rng.randrange(4000), rng.randrange(1, 40)))
        except AllocError:
            pass
        if nodes and rng.random() < 0.3:
            mm.remove_node(nodes.pop(rng.randrange(len(nodes))))
    mm.check_invariants()
    holes = list(mm.holes_by_address())
    for _ in range(200):
        size = rng.randrange(1, 60)
        lo = rng.randrange(4000)
        hi = rng.randrange(lo, 4001)
        want_low = [s for s, e in holes if e - s >= size and e >= lo]
        want_high = [s for s, e in reversed(holes) if e - s >= size and s < hi]
        assert list(mm._candidate_holes(LOW, size, lo, hi)) == want_low
        assert list(mm._candidate_holes(HIGH, size, lo, hi)) == want_high
