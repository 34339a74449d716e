"""Range allocator with the semantics of the kernel's ``drm_mm``.

Placement follows ``drm_mm_insert_node_in_range`` (drivers/gpu/drm/drm_mm.c)
and is held to a port of its KUnit suite (``tests/kernel/test_drm_mm.py``):

* ``BEST``    - holes from the smallest that is large enough upward; among
  holes of one size the most recently created first;
* ``LOW``     - holes from the lowest address upward, node at hole bottom;
* ``HIGH``    - holes from the highest address downward, node at hole top;
* ``EVICT``   - holes from the most recently created one backwards (the
  kernel's hole stack: what an eviction just released is tried first);
* ``once=True`` (``LOWEST`` = LOW once, ``HIGHEST`` = HIGH once) - only the
  first hole the mode would try (DRM_MM_INSERT_ONCE).

A hole is "created" whenever the kernel adds it to its hole trees: when a
node is placed (the parts of the hole left on either side, the upper part
last), reserved, or removed (the merged hole).  ``holes()`` walks them in the
kernel's order, newest first (drm_mm_for_each_hole).

An optional ``color_adjust(before, after, color, start, end) -> (start,
end)`` narrows a hole for a node of ``color`` (the kernel's
``mm->color_adjust``; ``before``/``after`` are the allocated nodes bordering
the hole, or None).

Alignment is absolute (relative to address 0, not to ``start``) and may be
any positive integer, as in the kernel.  Units are whatever the caller uses
(bytes or pages); the allocator never scales them.  Values are u64 as in the
kernel: a size of 0, or a reservation whose end wraps past 2^64, is ENOSPC.

Deliberate differences: negative or non-integer arguments are EINVAL, an
inverted range is EINVAL (the kernel BUG()s), misuse raises ``AllocatorBug``;
the eviction scanner (``drm_mm_scan_*``) is not modelled; for LOW and HIGH
the first hole tried is the first usable one (size at least the request) in
address order, where the kernel's first hole is wherever its augmented
rb-tree search stops -- the same hole except when a too-small hole contains
the range boundary, which can only matter with ``once``.  Not thread-safe:
callers hold their own lock.
"""

from __future__ import annotations

import enum
from typing import Any, Callable, Iterator

from sortedcontainers import SortedList

from .errors import EINVAL, ENOSPC, AllocatorBug, AllocError

__all__ = ["InsertMode", "Node", "RangeAllocator", "U64_MAX"]

U64_MAX = (1 << 64) - 1


class InsertMode(enum.Enum):
    BEST = "best"
    LOW = "low"
    HIGH = "high"
    EVICT = "evict"
    LOWEST = "lowest"       # LOW | ONCE
    HIGHEST = "highest"     # HIGH | ONCE


_ONCE_OF = {InsertMode.LOWEST: InsertMode.LOW, InsertMode.HIGHEST: InsertMode.HIGH}


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


def _check_u64(name: str, value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise AllocError(EINVAL, f"{name} must be an integer, got {value!r}")
    if value < 0 or value > U64_MAX:
        raise AllocError(EINVAL, f"{name} {value} is not a u64")
    return value


_U64_MASK = (1 << 64) - 1


def _size_key(size: int, seq: int, start: int) -> int:
    """The BEST order as one integer: by size, then newest (highest seq) first."""
    return size << 128 | (_U64_MASK - seq) << 64 | start


ColorAdjust = Callable[[Any, Any, Any, int, int], tuple]


class RangeAllocator:
    """drm_mm-style allocator over [start, start + size)."""

    def __init__(self, start: int, size: int, color_adjust: ColorAdjust | None = None) -> None:
        _check_u64("start", start)
        _check_u64("size", size)
        if size == 0 or start + size > U64_MAX:
            raise AllocError(EINVAL, f"bad range start={start} size={size}")
        self._start = start
        self._size = size
        self.color_adjust = color_adjust
        self._allocated_size = 0
        self._dead = False
        self._nodes: dict[int, Node] = {}
        self._node_by_end: dict[int, Node] = {}
        # Holes: by start (with their end and creation number), by end (the
        # hole left of a freed node), and three orders the kernel walks --
        # address, (size, newest first) for BEST, newest first for EVICT.
        self._seq = 0
        self._hole_end: dict[int, int] = {}
        self._hole_seq: dict[int, int] = {}    # also the hole stack: insertion order is creation order
        self._hole_by_end: dict[int, int] = {}
        self._by_addr = SortedList()
        self._by_size = SortedList()      # size << 128 | (SEQ_MAX - seq) << 64 | start: one int per hole
        # Hole starts by size class (size.bit_length()): lets LOW and HIGH
        # skip runs of holes too small for a request without visiting them,
        # as the kernel's max-hole-size augmented tree does.  Built the first
        # time a search needs it, then kept up to date.
        self._classes: dict[int, SortedList] | None = None
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
        """(start, end) of every hole, most recently created first (the
        kernel's drm_mm_for_each_hole)."""
        self._check_alive()
        ends = self._hole_end
        return iter([(s, ends[s]) for s in reversed(self._hole_seq)])

    def holes_by_address(self) -> Iterator[tuple[int, int]]:
        """(start, end) of every hole, in address order."""
        self._check_alive()
        ends = self._hole_end
        return iter([(s, ends[s]) for s in self._by_addr])

    def nodes(self) -> Iterator[Node]:
        """Allocated nodes in address order."""
        self._check_alive()
        return iter(sorted(self._nodes.values(), key=lambda n: n.start))

    def hole_follows(self, node: Node) -> bool:
        """drm_mm_hole_follows: a hole starts where ``node`` ends."""
        self._check_owned(node)
        return node.end in self._hole_end

    def clean(self) -> bool:
        """drm_mm_clean: no node allocated."""
        self._check_alive()
        return not self._nodes

    # -- allocation -------------------------------------------------------

    def insert_node(
        self,
        size: int,
        alignment: int = 0,
        start: int | None = None,
        end: int | None = None,
        mode: InsertMode = InsertMode.BEST,
        color: Any = None,
        once: bool = False,
    ) -> Node:
        """Place a node of ``size`` inside [start, end) (drm_mm_insert_node_in_range)."""
        self._check_alive()
        _check_u64("size", size)
        _check_u64("alignment", alignment)
        range_start = self._start if start is None else _check_u64("start", start)
        range_end = self.end if end is None else _check_u64("end", end)
        if range_start > range_end:
            raise AllocError(EINVAL, f"inverted range [{range_start:#x}, {range_end:#x})")
        if not isinstance(mode, InsertMode):
            raise AllocError(EINVAL, f"unknown insert mode {mode!r}")
        if mode in _ONCE_OF:
            mode, once = _ONCE_OF[mode], True
        if size == 0 or range_end - range_start < size:
            raise AllocError(ENOSPC, f"range [{range_start:#x}, {range_end:#x}) cannot hold {size:#x}")
        if not self._by_size or self._by_size[-1] >> 128 < size:
            raise AllocError(ENOSPC, f"no hole of {size:#x}")
        if alignment <= 1:
            alignment = 0

        ends = self._hole_end
        adjust = self.color_adjust
        low, high = mode is InsertMode.LOW, mode is InsertMode.HIGH
        for hs in self._candidate_holes(mode, size, range_start, range_end):
            he = ends[hs]
            if low and hs >= range_end:
                break
            if high and he <= range_start:
                break
            col_start, col_end = hs, he
            if adjust is not None:
                col_start, col_end = adjust(self._node_by_end.get(hs), self._nodes.get(he), color, hs, he)
            lo = col_start if col_start > range_start else range_start
            hi = col_end if col_end < range_end else range_end
            if hi <= lo or hi - lo < size:
                if once:
                    break
                continue
            pos = hi - size if high else lo
            if alignment:
                rem = pos % alignment
                if rem:
                    pos -= rem
                    if not high:
                        pos += alignment
                    if pos < lo or hi - pos < size:
                        if once:
                            break
                        continue
            return self._place(hs, he, pos, size, color)
        raise AllocError(ENOSPC, f"no hole for {size:#x} (align {alignment:#x}) in [{range_start:#x}, {range_end:#x})")

    def reserve_node(self, start: int, size: int, color: Any = None) -> Node:
        """Claim exactly [start, start + size) (drm_mm_reserve_node)."""
        self._check_alive()
        _check_u64("start", start)
        _check_u64("size", size)
        end = start + size
        if size == 0 or end > U64_MAX:          # the kernel's end <= start, in u64
            raise AllocError(ENOSPC, f"[{start:#x}, +{size:#x}) is empty or wraps")
        i = self._by_addr.bisect_right(start) - 1
        if i >= 0:
            hs = self._by_addr[i]
            he = self._hole_end[hs]
            if start < he:
                adj_start, adj_end = hs, he
                if self.color_adjust is not None:
                    adj_start, adj_end = self.color_adjust(self._node_by_end.get(hs), self._nodes.get(he),
                                                           color, hs, he)
                if adj_start <= start and end <= adj_end:
                    return self._place(hs, he, start, size, color)
        raise AllocError(ENOSPC, f"[{start:#x}, {end:#x}) is not inside a single hole")

    def replace_node(self, old: Node) -> Node:
        """drm_mm_replace_node: a new node takes ``old``'s place (start,
        size, colour and the holes around it unchanged); ``old`` is no
        longer allocated."""
        self._check_alive()
        self._check_owned(old)
        new = Node(old.start, old.size, old.color, self)
        self._nodes[old.start] = new
        self._node_by_end[old.end] = new
        old._owner = None
        return new

    def remove_node(self, node: Node) -> None:
        """Free a node; the hole it leaves merges with its neighbours and is
        the newest hole."""
        self._check_alive()
        self._check_owned(node)
        del self._nodes[node.start]
        del self._node_by_end[node.end]
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
        pieces = [(s, e, "hole") for s, e in self.holes_by_address()]
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
        if {n.end: n for n in self._nodes.values()} != self._node_by_end:
            raise AllocatorBug("node index out of sync")
        by_size = sorted(_size_key(e - s, self._hole_seq[s], s) for s, e in self._hole_end.items())
        by_age = sorted(self._hole_seq, key=self._hole_seq.get)
        classes: dict[int, list] = {}
        for st in sorted(self._hole_end):
            classes.setdefault((self._hole_end[st] - st).bit_length(), []).append(st)
        if self._classes is not None and classes != {k: list(v) for k, v in self._classes.items()}:
            raise AllocatorBug("hole size classes out of sync")
        if (by_size != list(self._by_size) or by_age != list(self._hole_seq)
                or sorted(self._hole_end) != list(self._by_addr) or len(self._hole_by_end) != len(self._hole_end)):
            raise AllocatorBug("hole indexes out of sync")

    # -- internals --------------------------------------------------------

    def _check_alive(self) -> None:
        if self._dead:
            raise AllocatorBug("range allocator used after takedown()")

    def _check_owned(self, node: object) -> None:
        self._check_alive()
        start = getattr(node, "start", None)
        if start is None or self._nodes.get(start) is not node:
            raise AllocatorBug(f"{node!r} is not allocated in this allocator")

    def _candidate_holes(self, mode, size, range_start, range_end) -> Iterator[int]:
        """Hole starts in the order the kernel tries them (first_hole, then
        next_hole), skipping holes smaller than ``size`` as its augmented
        trees do."""
        ends = self._hole_end
        if mode is InsertMode.BEST:
            for key in self._by_size.islice(self._by_size.bisect_left(size << 128)):
                yield key & _U64_MASK
        elif mode is InsertMode.LOW:
            addr = self._by_addr
            i = addr.bisect_right(range_start) - 1
            if i < 0 or ends[addr[i]] < range_start:
                i += 1
            yield from self._usable_by_address(i, size, False)
        elif mode is InsertMode.HIGH:
            addr = self._by_addr
            i = addr.bisect_left(range_end) - 1
            yield from self._usable_by_address(i, size, True)
        else:  # EVICT: the hole stack, newest first
            for s in reversed(self._hole_seq):
                yield s

    _SCAN = 32      # holes visited one by one before switching to the size classes

    def _usable_by_address(self, i: int, size: int, down: bool) -> Iterator[int]:
        """Starts of the holes of at least ``size``, in address order from
        index ``i`` of the address list (downwards if ``down``)."""
        addr, ends = self._by_addr, self._hole_end
        n = len(addr)
        step = -1 if down else 1
        scanned = 0
        while 0 <= i < n and scanned < self._SCAN:
            s = addr[i]
            if ends[s] - s >= size:
                yield s
            i += step
            scanned += 1
        if not 0 <= i < n:
            return
        cursor = addr[i - step]       # the last hole visited
        least = size.bit_length()
        if self._classes is None:
            self._classes = {}
            for st in addr:
                self._class_add(st, ends[st] - st)
        while True:
            best = None
            for cls, starts in self._classes.items():
                if cls < least:
                    continue
                if down:
                    j = starts.bisect_left(cursor) - 1
                    while j >= 0:
                        s = starts[j]
                        if cls > least or ends[s] - s >= size:
                            break
                        j -= 1
                    if j >= 0 and (best is None or starts[j] > best):
                        best = starts[j]
                else:
                    j = starts.bisect_right(cursor)
                    m = len(starts)
                    while j < m:
                        s = starts[j]
                        if cls > least or ends[s] - s >= size:
                            break
                        j += 1
                    if j < m and (best is None or starts[j] < best):
                        best = starts[j]
            if best is None:
                return
            yield best
            cursor = best

    def _place(self, hs: int, he: int, pos: int, size: int, color: Any) -> Node:
        self._del_hole(hs)
        if pos > hs:
            self._add_hole(hs, pos)
        if pos + size < he:
            self._add_hole(pos + size, he)
        node = Node(pos, size, color, self)
        self._nodes[pos] = node
        self._node_by_end[pos + size] = node
        self._allocated_size += size
        return node

    def _add_hole(self, s: int, e: int) -> None:
        self._seq += 1
        seq = self._seq
        self._hole_end[s] = e
        self._hole_seq[s] = seq
        self._hole_by_end[e] = s
        self._by_addr.add(s)
        self._by_size.add(_size_key(e - s, seq, s))
        if self._classes is not None:
            self._class_add(s, e - s)

    def _class_add(self, s: int, size: int) -> None:
        cls = size.bit_length()
        starts = self._classes.get(cls)
        if starts is None:
            starts = self._classes[cls] = SortedList()
        starts.add(s)

    def _del_hole(self, s: int) -> None:
        e = self._hole_end.pop(s)
        seq = self._hole_seq.pop(s)
        del self._hole_by_end[e]
        self._by_addr.remove(s)
        self._by_size.remove(_size_key(e - s, seq, s))
        if self._classes is not None:
            cls = (e - s).bit_length()
            starts = self._classes[cls]
            starts.remove(s)
            if not starts:
                del self._classes[cls]
