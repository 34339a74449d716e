"""Buddy allocator with the semantics of the kernel's ``drm_buddy``.

Placement policy mirrors ``drivers/gpu/drm/drm_buddy.c`` so that traces from
this model line up with what a real driver would see:

* default allocations take the smallest sufficient order first, the highest
  offset within that order, and always descend into the right child;
* ``TOPDOWN_ALLOCATION`` takes the highest-offset free block of any
  sufficient order;
* ``RANGE_ALLOCATION`` picks the lowest fitting block inside [start, end)
  (the highest with ``TOPDOWN_ALLOCATION``);
* ``CONTIGUOUS_ALLOCATION`` rounds up to a power of two, trims back, and
  falls back to searching free runs when no single block is big enough.

Deliberate differences from the kernel (each makes the model stricter or
simpler, never more lenient about misuse):

* every failing request leaves the tree exactly as it was, including splits
  (the kernel can leave split-but-empty blocks behind after a failed range
  search);
* misuse raises ``AllocatorBug`` instead of corrupting state;
* ``size < min_block_size`` is EINVAL, and non-contiguous requests are rounded
  up to ``min_block_size`` without trimming, so every returned block of a
  non-contiguous request is at least ``min_block_size``.

The allocator is not thread-safe; callers hold their own lock, like drivers
do around ``drm_buddy`` calls.
"""

from __future__ import annotations

import enum
import heapq
from typing import Iterable, Iterator

from .errors import EINVAL, ENOSPC, AllocatorBug, AllocError

__all__ = [
    "BlockState",
    "Block",
    "BuddyAllocator",
    "RANGE_ALLOCATION",
    "TOPDOWN_ALLOCATION",
    "CONTIGUOUS_ALLOCATION",
]

# Same bit values as DRM_BUDDY_*_ALLOCATION.
RANGE_ALLOCATION = 1 << 0
TOPDOWN_ALLOCATION = 1 << 1
CONTIGUOUS_ALLOCATION = 1 << 2
_KNOWN_FLAGS = RANGE_ALLOCATION | TOPDOWN_ALLOCATION | CONTIGUOUS_ALLOCATION

_PAGE_SIZE = 4096


class BlockState(enum.Enum):
    ALLOCATED = "allocated"
    FREE = "free"
    SPLIT = "split"


ALLOCATED = BlockState.ALLOCATED
FREE = BlockState.FREE
SPLIT = BlockState.SPLIT


def _is_pow2(x: int) -> bool:
    return x > 0 and x & (x - 1) == 0


def _round_up(x: int, a: int) -> int:
    return -(-x // a) * a


class Block:
    """A node of the buddy tree.  Only ALLOCATED blocks belong to callers."""

    __slots__ = ("offset", "order", "state", "parent", "left", "right", "_chunk_size")

    def __init__(self, offset: int, order: int, parent: Block | None, chunk_size: int) -> None:
        self.offset = offset
        self.order = order
        self.state = FREE
        self.parent = parent
        self.left: Block | None = None
        self.right: Block | None = None
        self._chunk_size = chunk_size

    @property
    def size(self) -> int:
        return self._chunk_size << self.order

    @property
    def end(self) -> int:
        return self.offset + (self._chunk_size << self.order)

    @property
    def buddy(self) -> Block | None:
        """The sibling this block merges with, None for a root."""
        p = self.parent
        if p is None:
            return None
        return p.right if p.left is self else p.left

    @property
    def is_allocated(self) -> bool:
        return self.state is ALLOCATED

    @property
    def is_free(self) -> bool:
        return self.state is FREE

    @property
    def is_split(self) -> bool:
        return self.state is SPLIT

    def __repr__(self) -> str:
        return f"Block(offset={self.offset:#x}, order={self.order}, size={self.size:#x}, {self.state.value})"


class BuddyAllocator:
    """drm_buddy-style allocator over [0, size) in units of ``chunk_size``."""

    def __init__(self, size: int, chunk_size: int) -> None:
        if not isinstance(size, int) or not isinstance(chunk_size, int):
            raise AllocError(EINVAL, "size and chunk_size must be integers")
        if chunk_size < _PAGE_SIZE or not _is_pow2(chunk_size):
            raise AllocError(EINVAL, f"chunk_size {chunk_size} must be a power of two >= {_PAGE_SIZE}")
        if size < chunk_size:
            raise AllocError(EINVAL, f"size {size} smaller than chunk_size {chunk_size}")

        size -= size % chunk_size
        self._size = size
        self._chunk_size = chunk_size
        self._chunk_shift = chunk_size.bit_length() - 1
        self._avail = size
        self._max_order = (size >> self._chunk_shift).bit_length() - 1
        self._dead = False
        # Per order: offset -> free block, plus a lazily-pruned max-heap of
        # offsets so "highest free block of this order" is cheap.
        self._free: list[dict[int, Block]] = [{} for _ in range(self._max_order + 1)]
        self._heaps: list[list[int]] = [[] for _ in range(self._max_order + 1)]
        # Allocated blocks never overlap, so the offset is a unique key; an
        # identity check against it rejects double and foreign frees in O(1).
        self._allocated: dict[int, Block] = {}

        roots = []
        offset, remaining = 0, size
        while remaining:
            order = (remaining >> self._chunk_shift).bit_length() - 1
            root = Block(offset, order, None, chunk_size)
            self._mark_free(root)
            roots.append(root)
            offset += root.size
            remaining -= root.size
        self._roots = tuple(roots)

    # -- public read-only state ------------------------------------------

    @property
    def size(self) -> int:
        return self._size

    @property
    def chunk_size(self) -> int:
        return self._chunk_size

    @property
    def max_order(self) -> int:
        return self._max_order

    @property
    def roots(self) -> tuple[Block, ...]:
        self._check_alive()
        return self._roots

    @property
    def avail(self) -> int:
        self._check_alive()
        return self._avail

    def allocated_blocks(self) -> Iterator[Block]:
        self._check_alive()
        return iter(sorted(self._allocated.values(), key=lambda b: b.offset))

    def iter_free_blocks(self) -> Iterator[Block]:
        """Free blocks in address order (for debugging and invariant checks)."""
        self._check_alive()
        blocks = [b for d in self._free for b in d.values()]
        return iter(sorted(blocks, key=lambda b: b.offset))

    # -- allocation -------------------------------------------------------

    def alloc_blocks(self, start: int, end: int, size: int, min_block_size: int, flags: int = 0) -> list[Block]:
        """Allocate ``size`` bytes as a list of blocks (drm_buddy_alloc_blocks).

        Either the whole request succeeds or AllocError is raised and the
        allocator is unchanged.
        """
        self._check_alive()
        self._validate_alloc(start, end, size, min_block_size, flags)

        # An exactly-sized window is a fixed-placement request, as in the kernel.
        if start + size == end:
            if (start | end) % min_block_size:
                raise AllocError(EINVAL, "fixed range not aligned to min_block_size")
            blocks = self._alloc_exact(self._roots, start, end)
            if blocks is None:
                raise AllocError(ENOSPC, f"range [{start:#x}, {end:#x}) is not free")
            return blocks

        if not flags & RANGE_ALLOCATION:
            start, end = 0, self._size
        size = _round_up(size, min_block_size)
        if size > self._avail:
            raise AllocError(ENOSPC, f"{size:#x} requested, {self._avail:#x} available")

        if flags & CONTIGUOUS_ALLOCATION:
            blocks = self._alloc_contiguous(start, end, size, min_block_size, flags)
        else:
            blocks = self._alloc_scattered(start, end, size, min_block_size, flags)
        if blocks is None:
            raise AllocError(ENOSPC, f"cannot satisfy {size:#x} bytes (flags={flags:#x})")
        return blocks

    def block_trim(self, blocks: list[Block], new_size: int) -> list[Block]:
        """Give back the tail of a single allocated block (drm_buddy_block_trim).

        Returns the blocks now covering [offset, offset + new_size) in
        ascending order.  The input block must no longer be used unless the
        size is unchanged, in which case the same list is returned.
        """
        self._check_alive()
        if len(blocks) != 1:
            raise AllocError(EINVAL, "block_trim needs exactly one block")
        block = blocks[0]
        self._check_owned(block)
        if not isinstance(new_size, int) or new_size <= 0 or new_size % self._chunk_size:
            raise AllocError(EINVAL, f"new_size {new_size!r} must be a positive multiple of chunk_size")
        if new_size > block.size:
            raise AllocError(EINVAL, f"new_size {new_size:#x} exceeds block size {block.size:#x}")
        if new_size == block.size:
            return list(blocks)
        return self._trim(block, new_size)

    # -- freeing ----------------------------------------------------------

    def free_block(self, block: Block) -> None:
        self._check_alive()
        self._check_owned(block)
        self._release(block)

    def free_blocks(self, blocks: Iterable[Block]) -> None:
        """Free every block, or none of them if any is invalid."""
        self._check_alive()
        blocks = list(blocks)
        seen: set[int] = set()
        for b in blocks:
            self._check_owned(b)
            if id(b) in seen:
                raise AllocatorBug(f"{b!r} appears twice in the list being freed")
            seen.add(id(b))
        for b in blocks:
            self._release(b)

    def fini(self) -> list[Block]:
        """Tear down; returns the blocks still allocated (the leak report)."""
        self._check_alive()
        leaks = sorted(self._allocated.values(), key=lambda b: b.offset)
        self._dead = True
        return leaks

    # -- invariants -------------------------------------------------------

    def check_invariants(self) -> None:
        """Raise AllocatorBug if the tree or the bookkeeping is inconsistent."""
        self._check_alive()
        free_total = alloc_total = 0
        seen_free = seen_alloc = 0
        stack = list(self._roots)
        while stack:
            b = stack.pop()
            if b.offset % b.size:
                raise AllocatorBug(f"{b!r} not aligned to its size")
            if b.state is SPLIT:
                l, r = b.left, b.right
                if l is None or r is None or l.parent is not b or r.parent is not b:
                    raise AllocatorBug(f"{b!r} has broken children")
                if l.order != b.order - 1 or l.offset != b.offset or r.offset != l.end:
                    raise AllocatorBug(f"{b!r} children do not halve it")
                if l.state is FREE and r.state is FREE:
                    raise AllocatorBug(f"{b!r} has two free children that should have merged")
                stack += (l, r)
            elif b.state is FREE:
                if self._free[b.order].get(b.offset) is not b:
                    raise AllocatorBug(f"{b!r} missing from its free list")
                free_total += b.size
                seen_free += 1
            else:
                if self._allocated.get(b.offset) is not b:
                    raise AllocatorBug(f"{b!r} missing from the allocated set")
                alloc_total += b.size
                seen_alloc += 1
        if seen_free != sum(len(d) for d in self._free) or seen_alloc != len(self._allocated):
            raise AllocatorBug("free lists or allocated set hold blocks outside the tree")
        if free_total != self._avail or free_total + alloc_total != self._size:
            raise AllocatorBug(f"avail {self._avail:#x} != free {free_total:#x}")

    # -- internals --------------------------------------------------------

    def _check_alive(self) -> None:
        if self._dead:
            raise AllocatorBug("buddy allocator used after fini()")

    def _check_owned(self, block: object) -> None:
        off = getattr(block, "offset", None)
        if off is None or self._allocated.get(off) is not block:
            raise AllocatorBug(f"{block!r} is not allocated from this allocator")

    def _validate_alloc(self, start, end, size, min_block_size, flags) -> None:
        args = (start, end, size, min_block_size, flags)
        if not all(isinstance(a, int) for a in args):
            raise AllocError(EINVAL, f"non-integer argument in {args!r}")
        cs = self._chunk_size
        if flags & ~_KNOWN_FLAGS:
            raise AllocError(EINVAL, f"unknown flags {flags & ~_KNOWN_FLAGS:#x}")
        if size < cs or min_block_size < cs:
            raise AllocError(EINVAL, "size and min_block_size must be at least chunk_size")
        if not _is_pow2(min_block_size):
            raise AllocError(EINVAL, f"min_block_size {min_block_size:#x} not a power of two")
        if size < min_block_size:
            raise AllocError(EINVAL, f"size {size:#x} smaller than min_block_size {min_block_size:#x}")
        if (start | end | size) % cs:
            raise AllocError(EINVAL, "start, end and size must be chunk aligned")
        if start < 0 or start >= end or end > self._size:
            raise AllocError(EINVAL, f"bad range [{start:#x}, {end:#x}) for size {self._size:#x}")
        if start + size > self._size:
            raise AllocError(EINVAL, f"size {size:#x} at {start:#x} overflows the allocator")

    def _alloc_scattered(self, start, end, size, min_block_size, flags) -> list[Block] | None:
        # Largest blocks first, stepping the order down only when a size is
        # exhausted, like drm_buddy_alloc_blocks.
        shift = self._chunk_shift
        pages = size >> shift
        min_order = (min_block_size >> shift).bit_length() - 1
        order = min(pages.bit_length() - 1, self._max_order)
        allocated: list[Block] = []
        while pages:
            order = min(order, pages.bit_length() - 1)
            while True:
                block = self._alloc_one(order, start, end, flags)
                if block is not None:
                    break
                if order == min_order:
                    self._rollback(allocated)
                    return None
                order -= 1
            allocated.append(block)
            pages -= 1 << order
        return allocated

    def _alloc_contiguous(self, start, end, size, min_block_size, flags) -> list[Block] | None:
        order = ((size - 1) >> self._chunk_shift).bit_length()
        if order <= self._max_order:
            block = self._alloc_one(order, start, end, flags)
            if block is not None:
                return [block] if block.size == size else self._trim(block, size)
        return self._alloc_contig_try_harder(start, end, size, min_block_size, flags)

    def _alloc_contig_try_harder(self, start, end, size, align, flags) -> list[Block] | None:
        # No power-of-two block is free, but a run of adjacent free blocks
        # (possibly across buddies or roots) may still hold the request.
        # The kernel probes a few runs around order-sized blocks; searching
        # every run finds a superset of its placements.
        runs: list[list[int]] = []
        for b in sorted((b for d in self._free for b in d.values()), key=lambda b: b.offset):
            if runs and runs[-1][1] == b.offset:
                runs[-1][1] = b.end
            else:
                runs.append([b.offset, b.end])
        if flags & TOPDOWN_ALLOCATION:
            runs.reverse()
        for lo, hi in runs:
            lo, hi = max(lo, start), min(hi, end)
            if flags & TOPDOWN_ALLOCATION:
                pos = (hi - size) // align * align
            else:
                pos = _round_up(lo, align)
            if pos >= lo and pos + size <= hi:
                return self._alloc_exact(self._roots, pos, pos + size)
        return None

    def _alloc_one(self, order: int, start: int, end: int, flags: int) -> Block | None:
        if flags & RANGE_ALLOCATION:
            block = self._alloc_range_bias(order, start, end, bool(flags & TOPDOWN_ALLOCATION))
        else:
            block = self._alloc_from_freelist(order, bool(flags & TOPDOWN_ALLOCATION))
        if block is not None:
            self._mark_allocated(block)
        return block

    def _alloc_from_freelist(self, order: int, topdown: bool) -> Block | None:
        block = None
        for o in range(order, self._max_order + 1):
            b = self._highest_free(o)
            if b is None:
                continue
            if not topdown:
                block = b
                break
            if block is None or b.offset > block.offset:
                block = b
        if block is None:
            return None
        while block.order > order:
            self._split(block)
            block = block.right
        return block

    def _alloc_range_bias(self, order: int, start: int, end: int, topdown: bool) -> Block | None:
        # Choose the target position before splitting anything, so a failed
        # search leaves no stray splits behind.
        bs = self._chunk_size << order
        best: Block | None = None
        best_pos = 0
        for o in range(order, self._max_order + 1):
            for b in self._free[o].values():
                lo, hi = max(b.offset, start), min(b.end, end)
                pos = (hi - bs) // bs * bs if topdown else _round_up(lo, bs)
                if pos < lo or pos + bs > hi:
                    continue
                if best is None or (pos > best_pos if topdown else pos < best_pos):
                    best, best_pos = b, pos
        if best is None:
            return None
        block = best
        while block.order > order:
            self._split(block)
            block = block.left if best_pos < block.left.end else block.right
        return block

    def _alloc_exact(self, roots, start: int, end: int) -> list[Block] | None:
        """Allocate exactly [start, end) (kernel __alloc_range), or None."""
        stack = list(roots)
        while stack:
            b = stack.pop()
            if b.end <= start or b.offset >= end:
                continue
            if b.state is ALLOCATED:
                return None
            if b.state is SPLIT:
                stack += (b.left, b.right)

        out: list[Block] = []
        stack = list(reversed(roots))
        while stack:
            b = stack.pop()
            if b.end <= start or b.offset >= end:
                continue
            if b.state is FREE and start <= b.offset and b.end <= end:
                self._mark_allocated(b)
                out.append(b)
                continue
            if b.state is FREE:
                self._split(b)
            stack += (b.right, b.left)
        return out

    def _trim(self, block: Block, new_size: int) -> list[Block]:
        # Release the block into its own free list without merging upwards
        # (its buddy must not absorb it), then carve the head back out of it.
        del self._allocated[block.offset]
        self._avail += block.size
        self._mark_free(block)
        return self._alloc_exact((block,), block.offset, block.offset + new_size)

    def _rollback(self, blocks: list[Block]) -> None:
        for b in reversed(blocks):
            self._release(b)

    def _release(self, block: Block) -> None:
        del self._allocated[block.offset]
        self._avail += block.size
        block.state = FREE
        while block.parent is not None:
            buddy = block.buddy
            if buddy.state is not FREE:
                break
            del self._free[buddy.order][buddy.offset]
            parent = block.parent
            parent.left = parent.right = None
            # Detach the merged halves so stale references cannot pass for
            # live tree nodes.
            block.parent = buddy.parent = None
            block = parent
        self._mark_free(block)

    def _split(self, block: Block) -> None:
        del self._free[block.order][block.offset]
        block.state = SPLIT
        o = block.order - 1
        block.left = Block(block.offset, o, block, self._chunk_size)
        block.right = Block(block.offset + (self._chunk_size << o), o, block, self._chunk_size)
        self._mark_free(block.left)
        self._mark_free(block.right)

    def _mark_allocated(self, block: Block) -> None:
        del self._free[block.order][block.offset]
        block.state = ALLOCATED
        self._avail -= block.size
        self._allocated[block.offset] = block

    def _mark_free(self, block: Block) -> None:
        block.state = FREE
        free = self._free[block.order]
        free[block.offset] = block
        heap = self._heaps[block.order]
        heapq.heappush(heap, -block.offset)
        # Stale heap entries are dropped lazily; rebuild before they dominate.
        if len(heap) > 2 * len(free) + 64:
            heap[:] = [-off for off in free]
            heapq.heapify(heap)

    def _highest_free(self, order: int) -> Block | None:
        heap, free = self._heaps[order], self._free[order]
        while heap:
            b = free.get(-heap[0])
            if b is not None:
                return b
            heapq.heappop(heap)
        return None
