"""Buddy allocator with the semantics of the kernel's ``gpu_buddy`` / ``drm_buddy``.

Written against ``drivers/gpu/buddy.c`` (the current home of ``drm_buddy``)
and held to a port of its KUnit suite (``tests/kernel/test_gpu_buddy.py``).
Placement follows the kernel step by step:

* default allocations take the smallest sufficient order first and the
  highest-offset free block of that order, splitting towards the right child;
* ``TOPDOWN_ALLOCATION`` takes the highest-offset free block of any
  sufficient order;
* ``RANGE_ALLOCATION`` walks the tree depth first, lowest address first,
  descending only into blocks that overlap [start, end) (``TOPDOWN`` is
  ignored there, as in the kernel);
* a request below ``min_block_size`` whose size is a power of two is an
  offset-aligned allocation: one block of the request's size at an offset
  aligned to ``min_block_size``;
* other requests are rounded up to ``min_block_size`` (``CONTIGUOUS``: to a
  power of two) and the last block is trimmed back unless ``TRIM_DISABLE``;
* ``CONTIGUOUS_ALLOCATION`` without ``RANGE`` falls back to the kernel's
  "try harder" search (free blocks of the rounded-down order, highest first,
  filling to their right and then their left);
* free blocks are clear or dirty (``CLEARED`` on free, ``CLEAR_ALLOCATION``
  to prefer clear memory, ``clear_avail``, ``reset_clear``); buddies of
  different clear state do not merge until a request needs them to
  (the kernel's force merge), which makes the merged block dirty.

Deliberate differences from the kernel (stricter, never more lenient):

* misuse raises ``AllocatorBug`` instead of corrupting state (double free,
  foreign block, use after ``fini``);
* arguments that are not integers, negative, or unknown flag bits are
  EINVAL (the kernel has u64 arguments and ignores unknown bits), and an
  allocator of 2^64 bytes or more is EINVAL (the kernel's sizes are u64, so
  ``max_order`` never exceeds ``MAX_ORDER`` = 51);
* the "try harder" fallback never frees blocks the caller got from earlier
  calls (the kernel's fallback frees the whole output list it was given when
  an attempt fails; here every call returns a fresh list).

The allocator is not thread-safe; callers hold their own lock, like drivers
do around ``drm_buddy`` calls.
"""

from __future__ import annotations

import enum
import heapq
from heapq import heappop, heappush
from typing import Iterable, Iterator

from .errors import EINVAL, ENOSPC, AllocatorBug, AllocError

__all__ = [
    "BlockState",
    "Block",
    "BuddyAllocator",
    "RANGE_ALLOCATION",
    "TOPDOWN_ALLOCATION",
    "CONTIGUOUS_ALLOCATION",
    "CLEAR_ALLOCATION",
    "CLEARED",
    "TRIM_DISABLE",
    "MAX_ORDER",
]

# Same bit values as GPU_BUDDY_* / DRM_BUDDY_*.
RANGE_ALLOCATION = 1 << 0
TOPDOWN_ALLOCATION = 1 << 1
CONTIGUOUS_ALLOCATION = 1 << 2
CLEAR_ALLOCATION = 1 << 3
CLEARED = 1 << 4            # a flag of free_blocks: the memory was zeroed
TRIM_DISABLE = 1 << 5
_ALLOC_FLAGS = RANGE_ALLOCATION | TOPDOWN_ALLOCATION | CONTIGUOUS_ALLOCATION | CLEAR_ALLOCATION | TRIM_DISABLE

_FAST_MASK = ~(TOPDOWN_ALLOCATION | CLEAR_ALLOCATION | TRIM_DISABLE)
MAX_ORDER = 63 - 12         # GPU_BUDDY_MAX_ORDER: order zero is at least 4 KiB, offsets are u64
_U64_LIMIT = 1 << 64
_PAGE_SIZE = 4096

# Free trees, in the order the kernel walks them (for_each_free_tree).
_CLEAR_TREE = 0
_DIRTY_TREE = 1


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
    """A node of the buddy tree.  Only ALLOCATED blocks belong to callers.

    ``clear`` is the kernel's header clear bit: for a free block, its memory
    is known to be zeroed; for an allocated one, it was served from zeroed
    memory (the caller need not clear it)."""

    __slots__ = ("offset", "order", "state", "parent", "left", "right", "clear", "_chunk_size")

    def __init__(self, offset: int, order: int, parent: Block | None, chunk_size: int) -> None:
        self.offset = offset
        self.order = order
        self.state = FREE
        self.parent = parent
        self.left: Block | None = None
        self.right: Block | None = None
        self.clear = False
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

    @property
    def is_clear(self) -> bool:
        return self.clear

    def __repr__(self) -> str:
        clear = ", clear" if self.clear else ""
        return f"Block(offset={self.offset:#x}, order={self.order}, size={self.size:#x}, {self.state.value}{clear})"


class _Fail(Exception):
    """Internal: an allocation step failed with ENOSPC."""


class BuddyAllocator:
    """drm_buddy-style allocator over [0, size) in units of ``chunk_size``."""

    def __init__(self, size: int, chunk_size: int) -> None:
        if not isinstance(size, int) or not isinstance(chunk_size, int) or isinstance(size, bool):
            raise AllocError(EINVAL, "size and chunk_size must be integers")
        if size >= _U64_LIMIT or chunk_size >= _U64_LIMIT:
            raise AllocError(EINVAL, f"size {size:#x} does not fit in 64 bits")
        if size < chunk_size:
            raise AllocError(EINVAL, f"size {size} smaller than chunk_size {chunk_size}")
        if chunk_size < _PAGE_SIZE or not _is_pow2(chunk_size):
            raise AllocError(EINVAL, f"chunk_size {chunk_size} must be a power of two >= {_PAGE_SIZE}")

        size -= size % chunk_size
        self._size = size
        self._chunk_size = chunk_size
        self._chunk_shift = chunk_size.bit_length() - 1
        self._avail = size
        self._clear_avail = 0
        self._max_order = size.bit_length() - 1 - self._chunk_shift
        assert self._max_order <= MAX_ORDER
        self._dead = False
        # Per tree and order: offset -> free block (the kernel's rb-trees),
        # plus a lazily pruned max-heap of offsets for "highest free block".
        n = self._max_order + 1
        self._free: list[list[dict[int, Block]]] = [[{} for _ in range(n)] for _ in range(2)]
        self._heaps: list[list[list[int]]] = [[[] for _ in range(n)] for _ in range(2)]
        # Allocated blocks never overlap, so the offset is a unique key; an
        # identity check against it rejects double and foreign frees in O(1).
        self._allocated: dict[int, Block] = {}
        # For offset-aligned requests: per tree and order, offset alignment
        # level (trailing zero bits) -> max-heap of offsets, lazily pruned --
        # the kernel's subtree_max_alignment augmentation.  Built on the
        # first offset-aligned request, then kept up to date.
        self._aligned: list[list[dict[int, list[int]]]] | None = None
        self._aligned_pushes = 0

        roots = []
        offset, remaining = 0, size
        while remaining:
            order = remaining.bit_length() - 1 - self._chunk_shift
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
    def n_roots(self) -> int:
        return len(self._roots)

    @property
    def roots(self) -> tuple[Block, ...]:
        self._check_alive()
        return self._roots

    @property
    def avail(self) -> int:
        self._check_alive()
        return self._avail

    @property
    def clear_avail(self) -> int:
        """Free bytes known to be zeroed (a subset of ``avail``)."""
        self._check_alive()
        return self._clear_avail

    def allocated_blocks(self) -> Iterator[Block]:
        self._check_alive()
        return iter(sorted(self._allocated.values(), key=lambda b: b.offset))

    def iter_free_blocks(self) -> Iterator[Block]:
        """Free blocks in address order (for debugging and invariant checks)."""
        self._check_alive()
        blocks = [b for t in self._free for d in t for b in d.values()]
        return iter(sorted(blocks, key=lambda b: b.offset))

    def free_blocks_of_order(self, order: int, clear: bool | None = None) -> list[Block]:
        """The free blocks of one order (of one free tree if ``clear`` is
        given), in address order: what the kernel's per-order trees hold."""
        self._check_alive()
        trees = (0, 1) if clear is None else ((_CLEAR_TREE,) if clear else (_DIRTY_TREE,))
        return sorted((b for t in trees for b in self._free[t][order].values()), key=lambda b: b.offset)

    # -- allocation -------------------------------------------------------

    def alloc_blocks(self, start: int, end: int, size: int, min_block_size: int, flags: int = 0) -> list[Block]:
        """Allocate ``size`` bytes as a list of blocks (gpu_buddy_alloc_blocks).

        Either the whole request succeeds or AllocError is raised; a failed
        request can only change the tree the way the kernel's does (a force
        merge of clear and dirty buddies).
        """
        if self._dead:
            raise AllocatorBug("buddy allocator used after fini()")
        cs = self._chunk_size
        # The common request -- one power-of-two block from the free trees,
        # the range unused -- checked and served without the general path.
        if (type(size) is int and size == min_block_size and type(min_block_size) is int
                and type(flags) is int and not flags & _FAST_MASK and cs <= size < self._size
                and not size & (size - 1) and type(start) is int and type(end) is int
                and 0 <= start and start + size <= self._size and start + size != end
                and 0 <= end <= self._size and not (start | end) & (cs - 1)):
            block = self._fast_freetree(size, flags)
            if block is not None:
                return [block]
            # else: the general path below fails (or force-merges) as the kernel does
        if not (type(start) is int and type(end) is int and type(size) is int
                and type(min_block_size) is int and type(flags) is int):
            raise AllocError(EINVAL, f"non-integer argument in {(start, end, size, min_block_size, flags)!r}")
        if flags & ~_ALLOC_FLAGS:
            raise AllocError(EINVAL, f"unknown flags {flags & ~_ALLOC_FLAGS:#x}")
        if start < 0 or end < 0:
            raise AllocError(EINVAL, "start and end are unsigned")
        if size < cs:
            raise AllocError(EINVAL, f"size {size:#x} below chunk_size")
        if min_block_size < cs:
            raise AllocError(EINVAL, f"min_block_size {min_block_size:#x} below chunk_size")
        if min_block_size & (min_block_size - 1):
            raise AllocError(EINVAL, f"min_block_size {min_block_size:#x} not a power of two")
        if (start | end | size) & (cs - 1):
            raise AllocError(EINVAL, "start, end and size must be chunk aligned")
        if end > self._size:
            raise AllocError(EINVAL, f"end {end:#x} beyond the allocator ({self._size:#x})")
        if start >= self._size or size > self._size - start:
            raise AllocError(EINVAL, f"size {size:#x} at {start:#x} overflows the allocator")

        # An exactly-sized window is a fixed-placement request, whatever the flags.
        if start + size == end:
            if (start | end) & (min_block_size - 1):
                raise AllocError(EINVAL, "fixed range not aligned to min_block_size")
            blocks = self._alloc_range(list(self._roots), start, size)
            if blocks is None:
                raise AllocError(ENOSPC, f"range [{start:#x}, {end:#x}) is not free")
            return blocks

        original_size, original_min = size, min_block_size
        if flags & CONTIGUOUS_ALLOCATION:
            size = 1 << (size - 1).bit_length()
            min_block_size = size
        elif not (size < min_block_size and size & (size - 1) == 0):
            size = _round_up(size, min_block_size)
        shift = self._chunk_shift
        pages = size >> shift
        order = pages.bit_length() - 1
        min_order = min_block_size.bit_length() - 1 - shift

        if order > self._max_order or size > self._size:
            if flags & CONTIGUOUS_ALLOCATION and not flags & RANGE_ALLOCATION:
                return self._try_harder_or_fail(original_size, original_min)
            raise AllocError(EINVAL, f"{size:#x} bytes (rounded) exceed the largest block or the allocator")

        # Short cut for a request that cannot fit: without clear memory the
        # kernel's attempts would change nothing and fail the same way.
        needed = original_size if size >= min_block_size else size
        if needed > self._avail and not self._clear_avail:
            raise AllocError(ENOSPC, f"{needed:#x} requested, {self._avail:#x} available")

        allocated: list[Block] = []
        while True:
            order = min(order, pages.bit_length() - 1)
            while True:
                block = self._alloc_step(start, end, size, min_block_size, order, flags)
                if block is not None:
                    break
                if size < min_block_size:
                    fallback_order = order
                elif order == min_order:
                    fallback_order = min_order
                else:
                    order -= 1
                    continue
                if self._clear_avail and self._force_merge(start, end, fallback_order):
                    block = self._alloc_step(start, end, size, min_block_size, fallback_order, flags)
                    if block is not None:
                        order = fallback_order
                        break
                if flags & CONTIGUOUS_ALLOCATION and not flags & RANGE_ALLOCATION:
                    self._free_internal(allocated)
                    return self._try_harder_or_fail(original_size, original_min)
                self._free_internal(allocated)
                raise AllocError(ENOSPC, f"cannot satisfy {original_size:#x} bytes (flags={flags:#x})")
            self._take(block)
            allocated.append(block)
            pages -= 1 << order
            if not pages:
                break

        if not flags & TRIM_DISABLE and original_size != size:
            last = allocated.pop()
            trim_size = original_size if not allocated else last.size - (size - original_size)
            allocated += self._trim(last, last.offset, trim_size)
        return allocated

    def block_trim(self, blocks: list[Block], new_size: int, start: int | None = None) -> list[Block]:
        """Give back what lies outside [start, start + new_size) of a single
        allocated block (gpu_buddy_block_trim; ``start`` defaults to the
        block's offset).

        Returns the blocks now covering that range in ascending order.  The
        input block must no longer be used unless the size is unchanged, in
        which case the same list is returned.
        """
        self._check_alive()
        if len(blocks) != 1:
            raise AllocError(EINVAL, "block_trim needs exactly one block")
        block = blocks[0]
        self._check_owned(block)
        if type(new_size) is not int or new_size > block.size:
            raise AllocError(EINVAL, f"new_size {new_size!r} exceeds block size {block.size:#x}")
        if new_size <= 0 or new_size % self._chunk_size:
            raise AllocError(EINVAL, f"new_size {new_size!r} must be a positive multiple of chunk_size")
        if new_size == block.size:
            return list(blocks)
        new_start = block.offset
        if start is not None:
            if type(start) is not int or start < block.offset or start % self._chunk_size:
                raise AllocError(EINVAL, f"trim start {start!r} not a chunk-aligned offset inside the block")
            if start >= block.end or new_size > block.end - start:
                raise AllocError(EINVAL, f"[{start:#x}, +{new_size:#x}) overflows the block")
            new_start = start
        return self._trim(block, new_start, new_size)

    # -- freeing ----------------------------------------------------------

    def free_block(self, block: Block) -> None:
        """gpu_buddy_free_block: the block keeps its clear state."""
        self._check_alive()
        self._check_owned(block)
        self._release(block)

    def free_blocks(self, blocks: Iterable[Block], flags: int = 0) -> None:
        """gpu_buddy_free_list: free every block, marking each clear with
        ``CLEARED`` and dirty otherwise.  Nothing is freed if any is invalid."""
        self._check_alive()
        if type(flags) is not int or flags & ~CLEARED:
            raise AllocError(EINVAL, f"free flags {flags!r}: only CLEARED")
        blocks = list(blocks)
        seen: set[int] = set()
        for b in blocks:
            self._check_owned(b)
            if id(b) in seen:
                raise AllocatorBug(f"{b!r} appears twice in the list being freed")
            seen.add(id(b))
        mark = bool(flags & CLEARED)
        for b in blocks:
            b.clear = mark
            self._release(b)

    def reset_clear(self, is_clear: bool) -> None:
        """gpu_buddy_reset_clear: merge everything mergeable, then mark every
        free block clear (``is_clear``) or dirty."""
        self._check_alive()
        self._merge_all()
        src = _DIRTY_TREE if is_clear else _CLEAR_TREE
        for order in range(self._max_order + 1):
            for block in list(self._free[src][order].values()):
                self._unlink_free(block)
                if is_clear:
                    self._clear_avail += block.size
                else:
                    self._clear_avail -= block.size
                block.clear = is_clear
                self._link_free(block)

    def fini(self) -> list[Block]:
        """Tear down; returns the blocks still allocated (the leak report)."""
        self._check_alive()
        self._merge_all()
        leaks = sorted(self._allocated.values(), key=lambda b: b.offset)
        self._dead = True
        return leaks

    # -- invariants -------------------------------------------------------

    def check_invariants(self) -> None:
        """Raise AllocatorBug if the tree or the bookkeeping is inconsistent."""
        self._check_alive()
        free_total = alloc_total = clear_total = 0
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
                if l.state is FREE and r.state is FREE and l.clear == r.clear:
                    raise AllocatorBug(f"{b!r} has two free children that should have merged")
                if b.clear:
                    raise AllocatorBug(f"split {b!r} marked clear")
                stack += (l, r)
            elif b.state is FREE:
                tree = _CLEAR_TREE if b.clear else _DIRTY_TREE
                if self._free[tree][b.order].get(b.offset) is not b:
                    raise AllocatorBug(f"{b!r} missing from its free tree")
                free_total += b.size
                clear_total += b.size if b.clear else 0
                seen_free += 1
            else:
                if self._allocated.get(b.offset) is not b:
                    raise AllocatorBug(f"{b!r} missing from the allocated set")
                alloc_total += b.size
                seen_alloc += 1
        if seen_free != sum(len(d) for t in self._free for d in t) or seen_alloc != len(self._allocated):
            raise AllocatorBug("free trees or allocated set hold blocks outside the tree")
        if free_total != self._avail or free_total + alloc_total != self._size:
            raise AllocatorBug(f"avail {self._avail:#x} != free {free_total:#x}")
        if clear_total != self._clear_avail:
            raise AllocatorBug(f"clear_avail {self._clear_avail:#x} != clear free {clear_total:#x}")

    # -- internals: bookkeeping -------------------------------------------

    def _check_alive(self) -> None:
        if self._dead:
            raise AllocatorBug("buddy allocator used after fini()")

    def _check_owned(self, block: object) -> None:
        off = getattr(block, "offset", None)
        if off is None or self._allocated.get(off) is not block:
            raise AllocatorBug(f"{block!r} is not allocated from this allocator")

    def _link_free(self, block: Block) -> None:
        tree = _CLEAR_TREE if block.clear else _DIRTY_TREE
        free = self._free[tree][block.order]
        if not free:
            free[block.offset] = block
            self._heaps[tree][block.order] = [-block.offset]
            if self._aligned is not None:
                self._aligned_push(tree, block.order, block.offset)
            return
        free[block.offset] = block
        if self._aligned is not None:
            self._aligned_push(tree, block.order, block.offset)
        heap = self._heaps[tree][block.order]
        heappush(heap, -block.offset)
        # Stale heap entries are dropped lazily; rebuild before they dominate.
        if len(heap) > 2 * len(free) + 64:
            heap[:] = [-off for off in free]
            heapq.heapify(heap)

    def _unlink_free(self, block: Block) -> None:
        del self._free[_CLEAR_TREE if block.clear else _DIRTY_TREE][block.order][block.offset]

    def _mark_free(self, block: Block) -> None:
        block.state = FREE
        self._link_free(block)

    def _highest(self, tree: int, order: int) -> Block | None:
        free = self._free[tree][order]
        if not free:
            return None
        heap = self._heaps[tree][order]
        while True:
            b = free.get(-heap[0])
            if b is not None:
                return b
            heapq.heappop(heap)

    def _split(self, block: Block) -> None:
        self._unlink_free(block)
        block.state = SPLIT
        o = block.order - 1
        cs = self._chunk_size
        left = block.left = Block(block.offset, o, block, cs)
        right = block.right = Block(block.offset + (cs << o), o, block, cs)
        if block.clear:
            left.clear = right.clear = True
            block.clear = False
        self._link_free(left)
        self._link_free(right)

    def _take(self, block: Block) -> None:
        """mark_allocated and the accounting of the caller."""
        self._unlink_free(block)
        block.state = ALLOCATED
        self._avail -= block.size
        if block.clear:
            self._clear_avail -= block.size
        self._allocated[block.offset] = block

    def _merge_up(self, block: Block, force: bool) -> int:
        """__gpu_buddy_free: merge a block (not in any free tree) with its
        free buddies and put the result in the free trees; its order."""
        block.state = FREE
        while block.parent is not None:
            buddy = block.buddy
            if buddy.state is not FREE:
                break
            parent = block.parent
            if not force:
                if block.clear != buddy.clear:
                    break
                if block.clear:
                    parent.clear = True
            self._unlink_free(buddy)
            if force and buddy.clear:
                self._clear_avail -= buddy.size
            parent.left = parent.right = None
            # Detach the merged halves so stale references cannot pass for
            # live tree nodes.
            block.parent = buddy.parent = None
            block = parent
        self._mark_free(block)
        return block.order

    def _release(self, block: Block) -> None:
        """gpu_buddy_free_block."""
        del self._allocated[block.offset]
        self._avail += block.size
        if block.clear:
            self._clear_avail += block.size
        self._merge_up(block, False)

    def _free_internal(self, blocks: list[Block]) -> None:
        for b in blocks:
            self._release(b)
        blocks.clear()

    def _force_merge(self, start: int, end: int, min_order: int) -> bool:
        """__force_merge: merge free clear/dirty buddies inside [start, end]
        until a block of ``min_order`` exists; True on success."""
        if not min_order or min_order > self._max_order:
            return False
        cs = self._chunk_size
        for tree in (_CLEAR_TREE, _DIRTY_TREE):
            for i in range(min_order - 1, -1, -1):
                free = self._free[tree][i]
                for off in sorted(free, reverse=True):
                    block = free.get(off)
                    if block is None or block.parent is None:
                        continue
                    if not (start <= off and end >= off + (cs << i) - 1):
                        continue
                    buddy = block.buddy
                    if buddy.state is not FREE:
                        continue
                    self._unlink_free(block)
                    if block.clear:
                        self._clear_avail -= block.size
                    if self._merge_up(block, True) >= min_order:
                        return True
        return False

    def _merge_all(self) -> None:
        size = self._size
        for root in self._roots:
            order = size.bit_length() - 1 - self._chunk_shift
            self._force_merge(root.offset, root.offset + size, order)
            size -= self._chunk_size << order

    # -- internals: searches ----------------------------------------------

    def _alloc_step(self, start, end, size, min_block_size, order, flags) -> Block | None:
        """__gpu_buddy_alloc_blocks: one free block of ``order`` (not yet taken)."""
        if flags & RANGE_ALLOCATION:
            block = self._range_bias(start, end, order, flags, False)
            if block is None:
                block = self._range_bias(start, end, order, flags, True)
            return block
        if size < min_block_size:
            return self._offset_aligned(size, min_block_size, flags)
        return self._from_freetree(order, flags)

    def _fast_freetree(self, size: int, flags: int) -> Block | None:
        """alloc_from_freetree and mark_allocated for one block of ``size``
        (a power of two), inlined: the common request of a driver.  None
        when the preferred tree has no block (the general path takes over)."""
        if flags & TOPDOWN_ALLOCATION:
            return None
        shift = self._chunk_shift
        order = (size >> shift).bit_length() - 1
        tree = _CLEAR_TREE if flags & CLEAR_ALLOCATION else _DIRTY_TREE
        free = self._free[tree]
        heaps = self._heaps[tree]
        for o in range(order, self._max_order + 1):
            d = free[o]
            if d:
                h = heaps[o]
                while True:
                    block = d.get(-h[0])
                    if block is not None:
                        break
                    heappop(h)
                break
        else:
            return None
        del d[block.offset]
        cs = self._chunk_size
        while o != order:
            # split, keep the left half free and descend into the right one
            block.state = SPLIT
            o -= 1
            off = block.offset
            left = Block(off, o, block, cs)
            right = Block(off + (cs << o), o, block, cs)
            block.left = left
            block.right = right
            if block.clear:
                left.clear = right.clear = True
                block.clear = False
            # every order below the one split from was empty: the left half
            # is alone in its tree
            free[o][off] = left
            heaps[o] = [-off]
            if self._aligned is not None:
                self._aligned_push(tree, o, off)
            block = right
        block.state = ALLOCATED
        self._avail -= size
        if block.clear:
            self._clear_avail -= size
        self._allocated[block.offset] = block
        return block

    def _from_freetree(self, order: int, flags: int) -> Block | None:
        tree = _CLEAR_TREE if flags & CLEAR_ALLOCATION else _DIRTY_TREE
        block = None
        top = self._max_order + 1
        if flags & TOPDOWN_ALLOCATION:
            for o in range(order, top):
                b = self._highest(tree, o)
                if b is not None and (block is None or b.offset > block.offset):
                    block = b
        else:
            free = self._free[tree]
            for o in range(order, top):
                if free[o]:
                    block = self._highest(tree, o)
                    break
        if block is None:
            tree ^= 1
            free = self._free[tree]
            for o in range(order, top):
                if free[o]:
                    block = self._highest(tree, o)
                    break
            if block is None:
                return None
        while block.order != order:
            self._split(block)
            block = block.right
        return block

    def _offset_aligned(self, size: int, min_block_size: int, flags: int) -> Block | None:
        order = (size >> self._chunk_shift).bit_length() - 1
        mask = min_block_size - 1
        tree = _CLEAR_TREE if flags & CLEAR_ALLOCATION else _DIRTY_TREE
        block = None
        for o in range(order, self._max_order + 1):
            block = self._highest_aligned(tree, o, mask)
            if block is None:
                tree ^= 1          # the kernel keeps the switched tree for the next order
                block = self._highest_aligned(tree, o, mask)
            if block is not None:
                break
        if block is None:
            return None
        while block.order > order:
            self._split(block)
            block = block.right if not block.right.offset & mask else block.left
        return block

    def _aligned_push(self, tree: int, order: int, off: int) -> None:
        level = (off & -off).bit_length() - 1 if off else 64
        heaps = self._aligned[tree][order]
        h = heaps.get(level)
        if h is None:
            heaps[level] = [-off]
        else:
            heappush(h, -off)
        self._aligned_pushes += 1
        if self._aligned_pushes > 4 * self._size // self._chunk_size + 4096:
            self._build_aligned()

    def _build_aligned(self) -> None:
        self._aligned = [[{} for _ in range(self._max_order + 1)] for _ in range(2)]
        self._aligned_pushes = 0
        for tree in (0, 1):
            for order, free in enumerate(self._free[tree]):
                heaps = self._aligned[tree][order]
                for off in free:
                    level = (off & -off).bit_length() - 1 if off else 64
                    heaps.setdefault(level, []).append(-off)
                for h in heaps.values():
                    heapq.heapify(h)

    def _highest_aligned(self, tree: int, order: int, mask: int) -> Block | None:
        """The free block of highest offset aligned to ``mask + 1`` (a power
        of two) in one tree and order: the kernel's gpu_buddy_find_block_aligned."""
        free = self._free[tree][order]
        if not free:
            return None
        if self._aligned is None:
            self._build_aligned()
        need = mask.bit_length()
        best = -1
        for level, h in self._aligned[tree][order].items():
            if level < need:
                continue
            while h and -h[0] not in free:
                heappop(h)
            if h and -h[0] > best:
                best = -h[0]
        return free[best] if best >= 0 else None

    def _highest_aligned_scan(self, tree: int, order: int, mask: int) -> Block | None:
        """Reference for _highest_aligned (tests): a scan of the whole tree."""
        free = self._free[tree][order]
        if not free:
            return None
        best = -1
        for off in free:
            if not off & mask and off > best:
                best = off
        return free[best] if best >= 0 else None

    def _range_bias(self, start: int, end: int, order: int, flags: int, fallback: bool) -> Block | None:
        """__alloc_range_bias: depth-first, lowest address first, only into
        blocks overlapping [start, end)."""
        req = self._chunk_size << order
        last = end - 1
        needs_clear = bool(flags & CLEAR_ALLOCATION)
        stack = list(reversed(self._roots))
        while stack:
            block = stack.pop()
            if block.order < order:
                continue
            bs = block.offset
            be = block.end - 1
            if not (start <= be and last >= bs):
                continue
            state = block.state
            if state is ALLOCATED:
                continue
            contained = start <= bs and last >= be
            if not contained:
                lo = bs if bs > start else start
                hi = be if be < last else last
                if (hi + 1) // req * req <= _round_up(lo, req):
                    continue
            if not fallback and needs_clear != block.clear:
                continue
            if contained and block.order == order:
                if state is FREE:
                    return block
                continue
            if state is FREE:
                self._split(block)
            stack.append(block.right)
            stack.append(block.left)
        return None

    def _alloc_range(self, dfs: list[Block], start: int, size: int, partial: list | None = None) -> list[Block] | None:
        """__alloc_range: allocate exactly [start, start + size) from the
        subtrees in ``dfs`` (in address order).  On failure everything taken
        is released and None returned -- unless ``partial`` is a list, which
        then receives the blocks taken before the failure (the caller owns
        them)."""
        last = start + size - 1
        out: list[Block] = []
        total = 0
        stack = dfs[::-1]
        ok = True
        while stack:
            block = stack.pop()
            bs = block.offset
            be = block.end - 1
            if not (start <= be and last >= bs):
                continue
            state = block.state
            if state is ALLOCATED:
                ok = False
                break
            if start <= bs and last >= be:
                if state is FREE:
                    self._take(block)
                    out.append(block)
                    total += block.size
                    continue
                if not self._clear_avail:
                    ok = False
                    break
            if state is FREE:
                self._split(block)
            stack.append(block.right)
            stack.append(block.left)
        if ok and total >= size:
            return out
        if partial is not None:
            partial += out
        else:
            self._free_internal(out)
        return None

    def _trim(self, block: Block, new_start: int, new_size: int) -> list[Block]:
        """gpu_buddy_block_trim on a validated block."""
        del self._allocated[block.offset]
        self._avail += block.size
        if block.clear:
            self._clear_avail += block.size
        block.state = FREE
        self._link_free(block)
        # Detach it so the trimmed-off parts cannot merge past it.
        parent, block.parent = block.parent, None
        try:
            got = self._alloc_range([block], new_start, new_size)
        finally:
            block.parent = parent
        assert got is not None, "trimming a free block cannot fail"
        return got

    def _try_harder_or_fail(self, size: int, min_block_size: int) -> list[Block]:
        blocks = self._try_harder(size, min_block_size)
        if blocks is None:
            raise AllocError(ENOSPC, f"no contiguous {size:#x} bytes")
        return blocks

    def _try_harder(self, size: int, min_block_size: int) -> list[Block] | None:
        """__alloc_contig_try_harder: around free blocks of the largest
        order below the size, highest first, fill to the right then the left."""
        order = (1 << (size.bit_length() - 1) >> self._chunk_shift).bit_length() - 1
        if order == 0:
            return None
        for tree in (_CLEAR_TREE, _DIRTY_TREE):
            free = self._free[tree][order]
            for off in sorted(free, reverse=True):
                if off not in free:
                    continue
                rhs: list[Block] = []
                got = self._alloc_range(list(self._roots), off, size, rhs)
                if got is not None:
                    return got
                filled = sum(b.size for b in rhs)
                lhs_size = _round_up(max(size - filled, min_block_size), min_block_size)
                lhs_offset = off - lhs_size
                if lhs_offset >= 0:
                    lhs = self._alloc_range(list(self._roots), lhs_offset, lhs_size)
                    if lhs is not None:
                        return lhs + rhs
                self._free_internal(rhs)
        return None
