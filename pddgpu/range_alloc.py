"""Range allocator with the semantics of the kernel's ``drm_mm``.

Placement follows ``drm_mm_insert_node_in_range``:

* ``BEST``  - try holes from the smallest that is large enough upward;
* ``LOW``   - try holes from the lowest address upward, node at hole bottom;
* ``HIGH``  - try holes from the highest address downward, node at hole top;
* ``EVICT`` - the kernel walks the most recently freed holes first, to reuse
  what an eviction scan just released.  This model has no eviction roster,
  so EVICT places exactly like BEST; it exists so callers can pass the mode
  they would pass to the kernel.

Alignment is absolute (relative to address 0, not to ``start``) and may be
any positive integer, as in the kernel.  Units are whatever the caller uses
(bytes or pages); the allocator never scales them.

Deliberate differences: size <= 0 is EINVAL (the kernel says ENOSPC), an
inverted range is EINVAL (the kernel BUG()s), and misuse raises
``AllocatorBug``.  There is no colour-adjust callback; ``color`` is only
stored.  Not thread-safe: callers hold their own lock.
"""

from __future__ import annotations

import bisect
import enum
from typing import Any, Iterator

from .errors import EINVAL, ENOSPC, AllocatorBug, AllocError

__all__ = ["InsertMode", "Node", "RangeAllocator"]


class InsertMode(enum.Enum):
    BEST = "best"
    LOW = "low"
    HIGH = "high"
    EVICT = "evict"


class Node:
    """An allocated range [start, start + size)."""

    __slots__ = ("start", "size", "color", "_owner")

    def __init__(self, start: int, size: int, color: Any, owner: RangeAllocator) -> None:
        self.start = start
        self.size = size
        self.color = color
        self._owner: RangeAllocator | None = owner

    @property
    def end(self) -> int:
        return self.start + self.size

    @property
    def allocated(self) -> bool:
        return self._owner is not None

    def __repr__(self) -> str:
        state = "" if self._owner is not None else ", removed"
        color = "" if self.color is None else f", color={self.color!r}"
        return f"Node(start={self.start:#x}, size={self.size:#x}{color}{state})"


def _check_int(name: str, value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise AllocError(EINVAL, f"{name} must be an integer, got {value!r}")
    return value


class RangeAllocator:
    """drm_mm-style allocator over [start, start + size)."""

    def __init__(self, start: int, size: int) -> None:
        _check_int("start", start)
        _check_int("size", size)
        if start < 0 or size <= 0:
            raise AllocError(EINVAL, f"bad range start={start} size={size}")
        self._start = start
        self._size = size
        self._allocated_size = 0
        self._dead = False
        self._nodes: dict[int, Node] = {}
        # Holes are indexed three ways: by start (address-ordered walks),
        # by end (finding the hole left of a freed node) and by (size, start)
        # for best fit.  Empty holes are never stored.
        self._hole_end: dict[int, int] = {}
        self._hole_by_end: dict[int, int] = {}
        self._hole_starts: list[int] = []
        self._hole_sizes: list[tuple[int, int]] = []
        self._add_hole(start, start + size)

    # -- public read-only state ------------------------------------------

    @property
    def start(self) -> int:
        return self._start

    @property
    def size(self) -> int:
        return self._size

    @property
    def end(self) -> int:
        return self._start + self._size

    @property
    def allocated_size(self) -> int:
        self._check_alive()
        return self._allocated_size

    def holes(self) -> Iterator[tuple[int, int]]:
        """(start, end) of every hole, in address order."""
        self._check_alive()
        return iter([(s, self._hole_end[s]) for s in self._hole_starts])

    def nodes(self) -> Iterator[Node]:
        """Allocated nodes in address order."""
        self._check_alive()
        return iter(sorted(self._nodes.values(), key=lambda n: n.start))

    # -- allocation -------------------------------------------------------

    def insert_node(
        self,
        size: int,
        alignment: int = 0,
        start: int | None = None,
        end: int | None = None,
        mode: InsertMode = InsertMode.BEST,
        color: Any = None,
    ) -> Node:
        """Place a node of ``size`` inside [start, end) (drm_mm_insert_node_in_range)."""
        self._check_alive()
        _check_int("size", size)
        _check_int("alignment", alignment)
        range_start = self._start if start is None else _check_int("start", start)
        range_end = self.end if end is None else _check_int("end", end)
        if size <= 0:
            raise AllocError(EINVAL, f"size {size} must be positive")
        if alignment < 0:
            raise AllocError(EINVAL, f"alignment {alignment} must not be negative")
        if range_start > range_end:
            raise AllocError(EINVAL, f"inverted range [{range_start:#x}, {range_end:#x})")
        if not isinstance(mode, InsertMode):
            raise AllocError(EINVAL, f"unknown insert mode {mode!r}")
        if alignment <= 1:
            alignment = 0
        if range_end - range_start < size:
            raise AllocError(ENOSPC, f"range [{range_start:#x}, {range_end:#x}) smaller than {size:#x}")

        high = mode is InsertMode.HIGH
        for hs, he in self._candidate_holes(mode, size, range_start, range_end):
            pos = self._fit(hs, he, size, alignment, range_start, range_end, high)
            if pos is not None:
                return self._place(hs, he, pos, size, color)
        raise AllocError(ENOSPC, f"no hole for {size:#x} (align {alignment:#x}) in [{range_start:#x}, {range_end:#x})")

    def reserve_node(self, start: int, size: int, color: Any = None) -> Node:
        """Claim exactly [start, start + size) (drm_mm_reserve_node)."""
        self._check_alive()
        _check_int("start", start)
        _check_int("size", size)
        if size <= 0:
            raise AllocError(EINVAL, f"size {size} must be positive")
        i = bisect.bisect_right(self._hole_starts, start) - 1
        if i >= 0:
            hs = self._hole_starts[i]
            he = self._hole_end[hs]
            if start + size <= he:
                return self._place(hs, he, start, size, color)
        raise AllocError(ENOSPC, f"[{start:#x}, {start + size:#x}) is not inside a single hole")

    def remove_node(self, node: Node) -> None:
        """Free a node; the hole it leaves merges with its neighbours."""
        self._check_alive()
        start = getattr(node, "start", None)
        if start is None or self._nodes.get(start) is not node:
            raise AllocatorBug(f"{node!r} is not allocated in this allocator")
        del self._nodes[start]
        self._allocated_size -= node.size
        node._owner = None
        lo, hi = node.start, node.end
        if hi in self._hole_end:
            new_hi = self._hole_end[hi]
            self._del_hole(hi)
            hi = new_hi
        if lo in self._hole_by_end:
            new_lo = self._hole_by_end[lo]
            self._del_hole(new_lo)
            lo = new_lo
        self._add_hole(lo, hi)

    def takedown(self) -> list[Node]:
        """Tear down; returns the nodes still allocated (the leak report)."""
        self._check_alive()
        leaks = sorted(self._nodes.values(), key=lambda n: n.start)
        self._dead = True
        return leaks

    # -- invariants -------------------------------------------------------

    def check_invariants(self) -> None:
        """Raise AllocatorBug unless holes and nodes tile the range exactly."""
        self._check_alive()
        pieces = [(s, e, "hole") for s, e in self.holes()]
        pieces += [(n.start, n.end, "node") for n in self._nodes.values()]
        pieces.sort()
        cursor, prev_kind = self._start, None
        for s, e, kind in pieces:
            if s != cursor or e <= s:
                raise AllocatorBug(f"gap, overlap or empty piece at {s:#x} (expected {cursor:#x})")
            if kind == "hole" and prev_kind == "hole":
                raise AllocatorBug(f"adjacent holes meet at {s:#x}")
            cursor, prev_kind = e, kind
        if cursor != self.end:
            raise AllocatorBug(f"pieces end at {cursor:#x}, not {self.end:#x}")
        if self._allocated_size != sum(n.size for n in self._nodes.values()):
            raise AllocatorBug("allocated_size out of sync")
        by_size = sorted((e - s, s) for s, e in self._hole_end.items())
        if by_size != self._hole_sizes or len(self._hole_by_end) != len(self._hole_end):
            raise AllocatorBug("hole indexes out of sync")

    # -- internals --------------------------------------------------------

    def _check_alive(self) -> None:
        if self._dead:
            raise AllocatorBug("range allocator used after takedown()")

    def _candidate_holes(self, mode, size, range_start, range_end) -> Iterator[tuple[int, int]]:
        starts, ends = self._hole_starts, self._hole_end
        if mode is InsertMode.LOW:
            i = max(bisect.bisect_right(starts, range_start) - 1, 0)
            for s in starts[i:]:
                if s >= range_end:
                    return
                yield s, ends[s]
        elif mode is InsertMode.HIGH:
            i = bisect.bisect_left(starts, range_end)
            for s in reversed(starts[:i]):
                if ends[s] <= range_start:
                    return
                yield s, ends[s]
        else:
            i = bisect.bisect_left(self._hole_sizes, (size, -1))
            for hsize, s in self._hole_sizes[i:]:
                yield s, s + hsize

    @staticmethod
    def _fit(hs, he, size, alignment, range_start, range_end, high) -> int | None:
        lo, hi = max(hs, range_start), min(he, range_end)
        if hi - lo < size:
            return None
        pos = hi - size if high else lo
        if alignment:
            rem = pos % alignment
            if rem:
                pos = pos - rem if high else pos + alignment - rem
        if pos < lo or pos + size > hi:
            return None
        return pos

    def _place(self, hs: int, he: int, pos: int, size: int, color: Any) -> Node:
        self._del_hole(hs)
        self._add_hole(hs, pos)
        self._add_hole(pos + size, he)
        node = Node(pos, size, color, self)
        self._nodes[pos] = node
        self._allocated_size += size
        return node

    def _add_hole(self, s: int, e: int) -> None:
        if s == e:
            return
        self._hole_end[s] = e
        self._hole_by_end[e] = s
        bisect.insort(self._hole_starts, s)
        bisect.insort(self._hole_sizes, (e - s, s))

    def _del_hole(self, s: int) -> None:
        e = self._hole_end.pop(s)
        del self._hole_by_end[e]
        del self._hole_starts[bisect.bisect_left(self._hole_starts, s)]
        del self._hole_sizes[bisect.bisect_left(self._hole_sizes, (e - s, s))]
