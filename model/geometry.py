"""Allocator geometries: the finite set of blocks an allocator can hand out.

An allocator's contents are a bit mask over these candidates (bit i set:
candidate i is allocated).  Overlap, double free and leaks become bit tests
against precomputed conflict masks, which every back end can evaluate.
"""
from __future__ import annotations

from dataclasses import dataclass

from .expr import Expr, FirstFit, Op, Table, ite, lift, ne, sum_


@dataclass(frozen=True)
class Geometry:
    kind: str                 # "buddy" | "range"
    units: int                # minimum blocks (buddy) or pages (range)
    starts: tuple             # start unit of each candidate
    sizes: tuple              # size in units of each candidate
    conflicts: tuple          # mask of candidates overlapping each candidate (itself included)

    @property
    def count(self) -> int:
        return len(self.sizes)

    @property
    def mask_bits(self) -> int:
        return self.count + 1   # + sign bit: masks stay non-negative

    def describe(self, i: int) -> str:
        if i < 0:
            return "-"
        return f"[{self.starts[i]},{self.starts[i] + self.sizes[i]})"

    # expressions over a mask -------------------------------------------------
    def first_fit(self, mask, size) -> Expr:
        return FirstFit(self.sizes, self.conflicts, lift(mask), lift(size))

    def size_of(self, blk) -> Expr:
        return Table(self.sizes, lift(blk), 0)

    def bit_of(self, blk) -> Expr:
        return ite(lift(blk) >= 0, Op("<<", (lift(1), lift(blk))), 0)

    def has(self, mask, blk) -> Expr:
        return ne(lift(mask) & self.bit_of(blk), 0)

    def overlap(self, a, b) -> Expr:
        """Candidates a and b (both >= 0) share a unit."""
        return ne((Table(self.conflicts, lift(a), 0) >> lift(b)) & 1, 0)

    def allocated_units(self, mask) -> Expr:
        return sum_(ite(ne(lift(mask) & (1 << i), 0), sz, 0) for i, sz in enumerate(self.sizes))


def _conflicts(starts, sizes):
    out = []
    for i in range(len(sizes)):
        m = 0
        for j in range(len(sizes)):
            if starts[i] < starts[j] + sizes[j] and starts[j] < starts[i] + sizes[i]:
                m |= 1 << j
        out.append(m)
    return tuple(out)


def buddy(units: int) -> Geometry:
    """drm_buddy over ``units`` minimum blocks: every block is a power of two
    aligned to its size.  Candidates in order of size then offset, so the
    first fit takes the lowest free aligned block (a bottom-up policy)."""
    if units < 1 or units & (units - 1):
        raise ValueError("buddy size must be a power of two number of minimum blocks")
    starts, sizes = [], []
    sz = 1
    while sz <= units:
        for off in range(0, units, sz):
            starts.append(off)
            sizes.append(sz)
        sz *= 2
    if len(sizes) > 62:
        raise ValueError("buddy too large for an explicit model (at most 32 minimum blocks)")
    return Geometry("buddy", units, tuple(starts), tuple(sizes), _conflicts(starts, sizes))


def range_allocator(pages: int, max_size: int | None = None) -> Geometry:
    """drm_mm over ``pages`` pages: any start, any size (lowest hole first)."""
    max_size = pages if max_size is None else max_size
    starts, sizes = [], []
    for sz in range(1, max_size + 1):
        for st in range(0, pages - sz + 1):
            starts.append(st)
            sizes.append(sz)
    if len(sizes) > 62:
        raise ValueError("range allocator too large for an explicit model (at most 62 candidate nodes)")
    return Geometry("range", pages, tuple(starts), tuple(sizes), _conflicts(starts, sizes))
