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
import gc
import heapq
import itertools
import operator
import weakref
from functools import partial
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


# Node codes in BuddyAllocator._st: the state, plus 1 when clear.
_FREE = 0
_SPLIT = 2
_ALLOC = 4
_STATE_OF = (FREE, FREE, SPLIT, SPLIT, ALLOCATED, ALLOCATED)


# Handle layout: an int.  Bits 0-63 the offset, 64-69 the order, 70-75 log2
# of the size, 76 and up the serial of the allocator (0: none).
_OFF_MASK = (1 << 64) - 1
_ORDER_SHIFT = 64
_LSIZE_SHIFT = 70
_SERIAL_SHIFT = 76

# serial -> weak reference to the allocator: a handle finds its allocator
# without holding it (an int has no room for a reference).
_ALLOCATORS: dict[int, weakref.ref] = {}
_serials = itertools.count(1)


class _BlockBase(int):
    """A node of the buddy tree.  Only ALLOCATED blocks belong to callers.

    ``clear`` is the kernel's header clear bit: for a free block, its memory
    is known to be zeroed; for an allocated one, it was served from zeroed
    memory (the caller need not clear it).

    The tree itself lives in the allocator as integers (see
    ``BuddyAllocator``); a Block is a handle on one node, made when a caller
    is given the node and kept while the node exists, so a node is always
    the same object.  A handle whose node was merged away, or one made
    directly (``Block(offset, order, None, chunk_size)``), is detached: it
    belongs to no allocator and reads as a free block without relatives.

    A handle is an ``int`` (offset, order, size and the allocator's serial
    packed together; see ``_OFF_MASK`` and after) of a type the cyclic
    garbage collector does not track, so the handles a caller holds cost
    the collector nothing.  Two handles of one node are equal, of different
    nodes (or allocators) unequal; the allocator still checks identity, so a
    handle of an earlier life of a node is not the node's current one."""

    __slots__ = ()

    def __new__(cls, offset: int, order: int, parent: object = None, chunk_size: int = _PAGE_SIZE) -> Block:
        lsize = (chunk_size << order).bit_length() - 1
        return int.__new__(cls, offset | order << _ORDER_SHIFT | lsize << _LSIZE_SHIFT)

    offset = property(partial(operator.and_, _OFF_MASK))

    @property
    def order(self) -> int:
        return self >> _ORDER_SHIFT & 63

    @property
    def size(self) -> int:
        return 1 << (self >> _LSIZE_SHIFT & 63)

    @property
    def end(self) -> int:
        return (self & _OFF_MASK) + (1 << (self >> _LSIZE_SHIFT & 63))

    @property
    def _mm(self) -> BuddyAllocator | None:
        """The allocator holding this handle's node; None once detached."""
        if type(self) is not Block:
            return None                         # merged away
        ref = _ALLOCATORS.get(self >> _SERIAL_SHIFT)
        return None if ref is None else ref()

    @property
    def state(self) -> BlockState:
        mm = self._mm
        if mm is None:
            return FREE
        return _STATE_OF[mm._st[mm._key_of(self)]]

    @property
    def clear(self) -> bool:
        mm = self._mm
        if mm is None:
            return type(self) is _FreedClearBlock
        return bool(mm._st[mm._key_of(self)] & 1)

    @property
    def parent(self) -> Block | None:
        mm = self._mm
        if mm is None:
            return None
        key = mm._key_of(self)
        return None if key in mm._root_keys else mm._handle(key >> 1)

    @property
    def left(self) -> Block | None:
        return self._child(0)

    @property
    def right(self) -> Block | None:
        return self._child(1)

    def _child(self, side: int) -> Block | None:
        mm = self._mm
        if mm is None:
            return None
        key = mm._key_of(self)
        return mm._handle(key << 1 | side) if mm._st[key] >> 1 == 1 else None

    @property
    def buddy(self) -> Block | None:
        """The sibling this block merges with, None for a root."""
        mm = self._mm
        if mm is None:
            return None
        key = mm._key_of(self)
        return None if key in mm._root_keys else mm._handle(key ^ 1)

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

    __str__ = __repr__

    def __copy__(self) -> Block:
        return self                             # immutable, like the int it is

    def __deepcopy__(self, memo: dict) -> Block:
        return self

    def __reduce__(self):
        raise TypeError("a Block handle belongs to its allocator and cannot be pickled")


def _untracked_type(name: str, base: type, body: dict | None = None) -> type:
    """A subclass of ``base`` (an int type) that the cyclic garbage
    collector does not track, with the attributes of ``body``.

    Every class a ``class`` statement makes is a GC type in CPython 3.11
    (an instance refers to its heap type), even an int subclass without
    slots; the C API's PyType_FromSpecWithBases makes one that is not when
    neither the spec nor the base asks for GC.  Its instances hold nothing
    but the int's digits, so they cannot be part of a cycle.  None when the
    interpreter has no such API (the caller then uses a plain subclass)."""
    try:
        import ctypes
        api = ctypes.pythonapi.PyType_FromSpecWithBases
    except (ImportError, AttributeError, OSError):
        return None

    class _Slot(ctypes.Structure):
        _fields_ = [("slot", ctypes.c_int), ("pfunc", ctypes.c_void_p)]

    class _Spec(ctypes.Structure):
        _fields_ = [("name", ctypes.c_char_p), ("basicsize", ctypes.c_int), ("itemsize", ctypes.c_int),
                    ("flags", ctypes.c_uint), ("slots", ctypes.POINTER(_Slot))]

    api.restype = ctypes.py_object
    api.argtypes = [ctypes.POINTER(_Spec), ctypes.py_object]
    full = f"{__name__}.{name}".encode()
    slots = (_Slot * 1)()                                  # none: everything inherited from the base
    spec = _Spec(full, 0, 0, 1 << 10 | 1 << 18, slots)     # Py_TPFLAGS_BASETYPE | Py_TPFLAGS_DEFAULT
    _KEEP.append((full, slots, spec))                      # the type may point into the spec's name
    try:
        cls = api(ctypes.byref(spec), (base,))
    except Exception:
        return None
    if cls.__flags__ & 1 << 14 or cls.__basicsize__ != base.__basicsize__:   # Py_TPFLAGS_HAVE_GC
        return None
    for attr, value in (body or {}).items():
        if attr not in ("__module__", "__qualname__", "__slots__", "__dict__", "__weakref__"):
            setattr(cls, attr, value)
    return cls


# Detached handles (see Block) change class to one of _FREED (dirty,
# clear): an int has no room for the state, and a class costs nothing to keep.
_KEEP: list = []
Block = _untracked_type("Block", int, dict(vars(_BlockBase)))
_UNTRACKED = Block is not None and not gc.is_tracked(Block(0, 0))
if _UNTRACKED:
    _FreedBlock = _untracked_type("_FreedBlock", Block)
    _FreedClearBlock = _untracked_type("_FreedClearBlock", Block)
    _UNTRACKED = _FreedBlock is not None and _FreedClearBlock is not None
if not _UNTRACKED:
    Block = _BlockBase
    Block.__name__ = Block.__qualname__ = "Block"

    class _FreedBlock(Block):
        __slots__ = ()

    class _FreedClearBlock(Block):
        __slots__ = ()
_FREED = (_FreedBlock, _FreedClearBlock)
_new_handle = int.__new__


class BuddyAllocator:
    """drm_buddy-style allocator over [0, size) in units of ``chunk_size``.

    The tree is kept as integers, not objects.  A node is its index in the
    implicit binary tree over the smallest power of two of chunks covering
    the allocator (``M`` levels): the node of order ``o`` at chunk ``page``
    is ``1 << (M - o) | page >> o``, so its children are ``2k`` and
    ``2k + 1``, its parent ``k >> 1`` and its buddy ``k ^ 1``; the roots are
    some of these nodes.  ``_st`` maps each existing node to its code
    (``_FREE``, ``_SPLIT`` or ``_ALLOC``, plus 1 when clear).  Dicts and
    lists of ints cost Python's cyclic garbage collector little (a dict of
    ints is not tracked at all), where two tracked objects per split made
    its passes most of the cost of filling 1 GiB page by page; the indexes
    of one level are consecutive, which suits the dicts' hashing.  Block
    handles exist only for nodes a caller was given."""

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
        shift = self._chunk_shift = chunk_size.bit_length() - 1
        self._avail = size
        self._clear_avail = 0
        self._max_order = size.bit_length() - 1 - shift
        assert self._max_order <= MAX_ORDER
        self._M = ((size >> shift) - 1).bit_length()
        # One int object per order for the handles' sizes (fewer objects).
        self._sizes = tuple(chunk_size << o for o in range(self._max_order + 1))
        # Per order: the key of the node at offset 0, and the shift from an
        # offset to the node's index in its level (key = base | off >> shift).
        self._bases = tuple(1 << (self._M - o) for o in range(self._max_order + 1))
        self._shifts = tuple(shift + o for o in range(self._max_order + 1))
        # Per order: the bits of a handle's value besides its offset (order,
        # log2 of the size, this allocator's serial; see Block).
        serial = next(_serials)
        _ALLOCATORS[serial] = weakref.ref(self, lambda _, s=serial, reg=_ALLOCATORS: reg.pop(s, None))
        self._tags = tuple(o << _ORDER_SHIFT | (shift + o) << _LSIZE_SHIFT | serial << _SERIAL_SHIFT
                           for o in range(self._max_order + 1))
        self._dead = False
        self._st: dict[int, int] = {}
        # Per tree and order: the free nodes (a dict used as a set, for the
        # kernel's rb-trees), plus a lazily pruned max-heap of the same keys
        # for "highest free block" (keys of one order sort like offsets).
        n = self._max_order + 1
        self._free: list[list[dict[int, None]]] = [[{} for _ in range(n)] for _ in range(2)]
        self._heaps: list[list[list[int]]] = [[[] for _ in range(n)] for _ in range(2)]
        # Allocated blocks by first chunk: they never overlap, so an
        # identity check against it rejects double and foreign frees in O(1).
        self._allocated: dict[int, Block] = {}
        # Handles of the existing nodes that are not allocated, by key.
        self._handles: dict[int, Block] = {}
        # A node whose parent link is cut for the time of a trim (-1: none).
        self._detached = -1
        # For offset-aligned requests: per tree and order, offset alignment
        # level (trailing zero bits) -> max-heap of keys, lazily pruned --
        # the kernel's subtree_max_alignment augmentation.  Built on the
        # first offset-aligned request, then kept up to date.
        self._aligned: list[list[dict[int, list[int]]]] | None = None
        self._aligned_pushes = 0

        roots = []
        offset, remaining = 0, size
        while remaining:
            order = remaining.bit_length() - 1 - shift
            key = 1 << (self._M - order) | (offset >> shift) >> order
            self._mark_free(key, order, 0)
            roots.append(key)
            offset += chunk_size << order
            remaining -= chunk_size << order
        self._roots = tuple(roots)
        self._root_keys = frozenset(roots)

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
        return tuple(self._handle(k) for k in self._roots)

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
        found = sorted((self._off(k, o), k) for t in self._free for o, d in enumerate(t) for k in d)
        return iter([self._handle(k) for _, k in found])

    def free_blocks_of_order(self, order: int, clear: bool | None = None) -> list[Block]:
        """The free blocks of one order (of one free tree if ``clear`` is
        given), in address order: what the kernel's per-order trees hold."""
        self._check_alive()
        trees = (0, 1) if clear is None else ((_CLEAR_TREE,) if clear else (_DIRTY_TREE,))
        return [self._handle(k) for k in sorted(k for t in trees for k in self._free[t][order])]

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
        total = self._size
        # The common request -- one power-of-two block from the free trees,
        # the range unused -- checked and served without the general path.
        if (type(size) is int is type(min_block_size) is type(flags) is type(start) is type(end)
                and size == min_block_size and not flags & _FAST_MASK and cs <= size < total
                and not size & (size - 1) and 0 <= start and start + size <= total
                and start + size != end and 0 <= end <= total and not (start | end) & (cs - 1)):
            block = self._from_freetree((size >> self._chunk_shift).bit_length() - 1, flags)
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
        self._release(block, -1)

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
        mark = 1 if flags & CLEARED else 0
        for b in blocks:
            self._release(b, mark)

    def reset_clear(self, is_clear: bool) -> None:
        """gpu_buddy_reset_clear: merge everything mergeable, then mark every
        free block clear (``is_clear``) or dirty."""
        self._check_alive()
        self._merge_all()
        src = _DIRTY_TREE if is_clear else _CLEAR_TREE
        mark = 1 if is_clear else 0
        cs = self._chunk_size
        for order in range(self._max_order + 1):
            for key in list(self._free[src][order]):
                self._unlink_free(key, order, mark ^ 1)
                if is_clear:
                    self._clear_avail += cs << order
                else:
                    self._clear_avail -= cs << order
                self._mark_free(key, order, mark)

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
        cs = self._chunk_size
        st = self._st
        free_total = alloc_total = clear_total = 0
        seen_free = seen_alloc = seen = 0
        stack = list(self._roots)
        while stack:
            key = stack.pop()
            o = self._order_of(key)
            off = self._off(key, o)
            size = cs << o
            code = st.get(key)
            if code is None:
                raise AllocatorBug(f"node {off:#x}/{o} missing from the tree")
            seen += 1
            if off % size or off + size > self._size:
                raise AllocatorBug(f"node {off:#x}/{o} not aligned to its size or outside the allocator")
            if code >> 1 == 1:
                left, right = key << 1, key << 1 | 1
                if not o or left not in st or right not in st:
                    raise AllocatorBug(f"split node {off:#x}/{o} has broken children")
                if st[left] == st[right] and st[left] <= 1:
                    raise AllocatorBug(f"split node {off:#x}/{o} has two free children that should have merged")
                if code & 1:
                    raise AllocatorBug(f"split node {off:#x}/{o} marked clear")
                stack += (left, right)
            elif code >> 1 == 0:
                tree = _CLEAR_TREE if code & 1 else _DIRTY_TREE
                if key not in self._free[tree][o]:
                    raise AllocatorBug(f"free node {off:#x}/{o} missing from its free tree")
                free_total += size
                clear_total += size if code & 1 else 0
                seen_free += 1
            else:
                b = self._allocated.get(off >> self._chunk_shift)
                if b is None or b.order != o or b.offset != off or b._mm is not self:
                    raise AllocatorBug(f"allocated node {off:#x}/{o} missing from the allocated set")
                alloc_total += size
                seen_alloc += 1
        if seen != len(st):
            raise AllocatorBug("nodes outside the tree")
        if seen_free != sum(len(d) for t in self._free for d in t) or seen_alloc != len(self._allocated):
            raise AllocatorBug("free trees or allocated set hold blocks outside the tree")
        for key, h in self._handles.items():
            if h._mm is not self or self._key_of(h) != key or st.get(key, _ALLOC) >= _ALLOC:
                raise AllocatorBug(f"stale handle {h!r}")
        if free_total != self._avail or free_total + alloc_total != self._size:
            raise AllocatorBug(f"avail {self._avail:#x} != free {free_total:#x}")
        if clear_total != self._clear_avail:
            raise AllocatorBug(f"clear_avail {self._clear_avail:#x} != clear free {clear_total:#x}")

    # -- internals: nodes and handles ---------------------------------------

    def _check_alive(self) -> None:
        if self._dead:
            raise AllocatorBug("buddy allocator used after fini()")

    def _check_owned(self, block: object) -> None:
        # An allocated block is a Block (a detached handle has another class)
        # and the very object the allocated set holds at its offset.
        if type(block) is not Block or self._allocated.get((block & _OFF_MASK) >> self._chunk_shift) is not block:
            raise AllocatorBug(f"{block!r} is not allocated from this allocator")

    def _order_of(self, key: int) -> int:
        return self._M + 1 - key.bit_length()

    def _off(self, key: int, order: int) -> int:
        return (key - (1 << (self._M - order))) << (order + self._chunk_shift)

    def _item(self, key: int) -> int:
        o = self._order_of(key)
        return self._off(key, o) | o

    def _key_of(self, block: Block) -> int:
        o = block >> _ORDER_SHIFT & 63
        return self._bases[o] | (block & _OFF_MASK) >> self._shifts[o]

    def _handle(self, key: int) -> Block:
        """The handle of an existing node, made on first use."""
        o = self._order_of(key)
        off = self._off(key, o)
        if self._st[key] >= _ALLOC:
            return self._allocated[off >> self._chunk_shift]
        h = self._handles.get(key)
        if h is None:
            h = self._handles[key] = _new_handle(Block, off | self._tags[o])
        return h

    def _detach(self, key: int, clear: int) -> None:
        """The node ``key`` ceases to exist: its handle, if any, is detached."""
        h = self._handles.pop(key, None)
        if h is not None:
            h.__class__ = _FREED[clear]

    # -- internals: free trees ---------------------------------------------

    def _link_free(self, key: int, order: int, clear: int) -> None:
        tree = clear ^ 1                       # _CLEAR_TREE is 0
        free = self._free[tree][order]
        if not free:
            free[key] = None
            self._heaps[tree][order] = [-key]
        else:
            free[key] = None
            heap = self._heaps[tree][order]
            heappush(heap, -key)
            # Stale heap entries are dropped lazily; rebuild before they dominate.
            if len(heap) > 2 * len(free) + 64:
                heap[:] = [-k for k in free]
                heapq.heapify(heap)
        if self._aligned is not None:
            self._aligned_push(tree, order, key)

    def _unlink_free(self, key: int, order: int, clear: int) -> None:
        del self._free[clear ^ 1][order][key]

    def _mark_free(self, key: int, order: int, clear: int) -> None:
        self._st[key] = clear
        self._link_free(key, order, clear)

    def _highest(self, tree: int, order: int) -> int:
        """The free node of highest offset of one tree and order, -1 if none."""
        free = self._free[tree][order]
        if not free:
            return -1
        heap = self._heaps[tree][order]
        while -heap[0] not in free:
            heappop(heap)
        return -heap[0]

    def _lowest_order_highest(self, tree: int, order: int) -> int:
        """The highest free node of the smallest order at least ``order``
        that has one, in one tree; -1 if none."""
        free = self._free[tree]
        for o in range(order, self._max_order + 1):
            if free[o]:
                return self._highest(tree, o)
        return -1

    def _split(self, key: int, order: int) -> None:
        """split_block on a free node: both halves free, of its clear state."""
        st = self._st
        clear = st[key]
        self._unlink_free(key, order, clear)
        st[key] = _SPLIT
        self._mark_free(key << 1, order - 1, clear)
        self._mark_free(key << 1 | 1, order - 1, clear)

    def _take(self, key: int, order: int) -> Block:
        """mark_allocated on a free node in its free tree."""
        clear = self._st[key]
        self._unlink_free(key, order, clear)
        return self._claim(key, order, clear)

    def _claim(self, key: int, order: int, clear: int) -> Block:
        """mark_allocated on a free node already out of the free trees, and
        the accounting of the caller."""
        self._st[key] = _ALLOC | clear
        size = self._sizes[order]
        self._avail -= size
        if clear:
            self._clear_avail -= size
        off = (key - self._bases[order]) << self._shifts[order]
        h = self._handles.pop(key, None) if self._handles else None
        if h is None:
            h = _new_handle(Block, off | self._tags[order])
        self._allocated[off >> self._chunk_shift] = h
        return h

    def _merge_up(self, key: int, order: int, clear: int, force: bool) -> int:
        """__gpu_buddy_free: merge a free node (in no free tree) of clear
        state ``clear`` with its free buddies and put the result in the free
        trees; its key."""
        st = self._st
        roots = self._root_keys
        while key not in roots and key != self._detached:
            bud = key ^ 1
            bclear = st[bud]
            if bclear > 1:                     # split or allocated
                break
            if not force:
                if clear != bclear:
                    break
            elif bclear:
                self._clear_avail -= self._chunk_size << order
            self._unlink_free(bud, order, bclear)
            del st[key], st[bud]
            if self._handles:
                self._detach(key, clear)
                self._detach(bud, bclear)
            if force:
                clear = 0                      # a force-merged block is dirty
            key >>= 1
            order += 1
        self._mark_free(key, order, clear)
        return key

    def _release(self, block: Block, clear: int) -> None:
        """gpu_buddy_free_block; ``clear`` -1 keeps the block's clear state."""
        order = block >> _ORDER_SHIFT & 63
        off = block & _OFF_MASK
        key = self._bases[order] | off >> self._shifts[order]
        del self._allocated[off >> self._chunk_shift]
        if clear < 0:
            clear = self._st[key] & 1
        size = self._sizes[order]
        self._avail += size
        if clear:
            self._clear_avail += size
        if self._merge_up(key, order, clear, False) == key:
            self._handles[key] = block         # the node lives on, with its handle
        else:
            block.__class__ = _FREED[clear]

    def _free_internal(self, blocks: list[Block]) -> None:
        for b in blocks:
            self._release(b, -1)
        blocks.clear()

    def _force_merge(self, start: int, end: int, min_order: int) -> bool:
        """__force_merge: merge free clear/dirty buddies inside [start, end]
        until a block of ``min_order`` exists; True on success."""
        if not min_order or min_order > self._max_order:
            return False
        cs = self._chunk_size
        st = self._st
        roots = self._root_keys
        for tree in (_CLEAR_TREE, _DIRTY_TREE):
            clear = tree ^ 1
            for i in range(min_order - 1, -1, -1):
                free = self._free[tree][i]
                for key in sorted(free, reverse=True):
                    if key not in free or key in roots:
                        continue
                    off = self._off(key, i)
                    if not (start <= off and end >= off + (cs << i) - 1):
                        continue
                    if st[key ^ 1] > 1:        # the buddy is not free
                        continue
                    self._unlink_free(key, i, clear)
                    if clear:
                        self._clear_avail -= cs << i
                    if self._order_of(self._merge_up(key, i, clear, True)) >= min_order:
                        return True
        return False

    def _merge_all(self) -> None:
        size = self._size
        for key in self._roots:
            order = size.bit_length() - 1 - self._chunk_shift
            off = self._off(key, order)
            self._force_merge(off, off + size, order)
            size -= self._chunk_size << order

    # -- internals: searches ----------------------------------------------

    def _alloc_step(self, start, end, size, min_block_size, order, flags) -> Block | None:
        """__gpu_buddy_alloc_blocks: one block of ``order``, allocated; None if none."""
        if flags & RANGE_ALLOCATION:
            key = self._range_bias(start, end, order, flags, False)
            if key < 0:
                key = self._range_bias(start, end, order, flags, True)
        elif size < min_block_size:
            key = self._offset_aligned(size, min_block_size, flags)
        else:
            return self._from_freetree(order, flags)
        return self._take(key, order) if key >= 0 else None

    def _from_freetree(self, order: int, flags: int) -> Block | None:
        """alloc_from_freetree and mark_allocated: the highest free block of
        the smallest sufficient order (of any order with TOPDOWN) of the
        preferred tree, else of the other, split down along its right edge."""
        tree = _CLEAR_TREE if flags & CLEAR_ALLOCATION else _DIRTY_TREE
        free = self._free[tree]
        key = -1
        if not flags & TOPDOWN_ALLOCATION:
            # _lowest_order_highest inlined: this is every driver's request
            # (half of a page-by-page fill finds a page of its own order)
            o = order
            d = free[order]
            if not d:
                for o in range(order + 1, self._max_order + 1):
                    d = free[o]
                    if d:
                        break
            if d:
                heap = self._heaps[tree][o]
                key = -heap[0]
                while key not in d:
                    heappop(heap)
                    key = -heap[0]
        else:
            best = -1
            for i in range(order, self._max_order + 1):
                k = self._highest(tree, i)
                if k >= 0 and self._off(k, i) > best:
                    key, o, best = k, i, self._off(k, i)
        if key < 0:
            tree ^= 1
            free = self._free[tree]
            key = self._lowest_order_highest(tree, order)
            if key < 0:
                return None
            o = self._order_of(key)
        st = self._st
        clear = st[key]
        del free[o][key]
        if o != order:
            # split_block down the right edge, each left half left free
            heaps = self._heaps[tree]
            aligned = self._aligned
            while o != order:
                st[key] = _SPLIT
                o -= 1
                left = key << 1
                key = left | 1
                st[left] = clear
                d = free[o]
                if d:
                    self._link_free(left, o, clear)
                else:
                    # the common case (the smallest sufficient order was
                    # taken, so the orders below it are empty): no heap to keep
                    d[left] = None
                    heaps[o] = [-left]
                    if aligned is not None:
                        self._aligned_push(tree, o, left)
        return self._claim(key, o, clear)

    def _offset_aligned(self, size: int, min_block_size: int, flags: int) -> int:
        order = (size >> self._chunk_shift).bit_length() - 1
        mask = min_block_size - 1
        tree = _CLEAR_TREE if flags & CLEAR_ALLOCATION else _DIRTY_TREE
        key = -1
        for o in range(order, self._max_order + 1):
            key = self._aligned_key(tree, o, mask)
            if key < 0:
                tree ^= 1          # the kernel keeps the switched tree for the next order
                key = self._aligned_key(tree, o, mask)
            if key >= 0:
                break
        if key < 0:
            return -1
        while o > order:
            self._split(key, o)
            o -= 1
            right = key << 1 | 1
            key = right if not self._off(right, o) & mask else key << 1
        return key

    def _aligned_push(self, tree: int, order: int, key: int) -> None:
        off = self._off(key, order)
        level = (off & -off).bit_length() - 1 if off else 64
        heaps = self._aligned[tree][order]
        h = heaps.get(level)
        if h is None:
            heaps[level] = [-key]
        else:
            heappush(h, -key)
        self._aligned_pushes += 1
        if self._aligned_pushes > 4 * self._size // self._chunk_size + 4096:
            self._build_aligned()

    def _build_aligned(self) -> None:
        self._aligned = [[{} for _ in range(self._max_order + 1)] for _ in range(2)]
        self._aligned_pushes = 0
        for tree in (0, 1):
            for order, free in enumerate(self._free[tree]):
                heaps = self._aligned[tree][order]
                for key in free:
                    off = self._off(key, order)
                    level = (off & -off).bit_length() - 1 if off else 64
                    heaps.setdefault(level, []).append(-key)
                for h in heaps.values():
                    heapq.heapify(h)

    def _aligned_key(self, tree: int, order: int, mask: int) -> int:
        """The free node of highest offset aligned to ``mask + 1`` (a power
        of two) in one tree and order, -1 if none: the kernel's
        gpu_buddy_find_block_aligned."""
        free = self._free[tree][order]
        if not free:
            return -1
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
        return best

    def _highest_aligned(self, tree: int, order: int, mask: int) -> Block | None:
        """_aligned_key as a handle (tests)."""
        key = self._aligned_key(tree, order, mask)
        return self._handle(key) if key >= 0 else None

    def _highest_aligned_scan(self, tree: int, order: int, mask: int) -> Block | None:
        """Reference for _highest_aligned (tests): a scan of the whole tree."""
        best = -1
        for key in self._free[tree][order]:
            if not self._off(key, order) & mask and key > best:
                best = key
        return self._handle(best) if best >= 0 else None

    def _range_bias(self, start: int, end: int, order: int, flags: int, fallback: bool) -> int:
        """__alloc_range_bias: depth-first, lowest address first, only into
        blocks overlapping [start, end); a free node of ``order``, -1 if none."""
        st = self._st
        sizes = self._sizes
        bases, shifts = self._bases, self._shifts
        req = sizes[order]
        last = end - 1
        needs_clear = 1 if flags & CLEAR_ALLOCATION else 0
        if (last + 1) // req * req <= _round_up(start, req):
            return -1                          # no aligned block of the order fits: every node fails below
        # The stack holds offset | order (offsets are multiples of 4 KiB):
        # the bounds come first and cheaply, the key only for nodes that
        # overlap the range.
        top = self._descend(self._roots, start, last, order, -1 if fallback else needs_clear)
        if top == -1:
            return -1
        stack = [self._item(k) for k in reversed(self._roots)] if top is None else [top]
        while stack:
            item = stack.pop()
            o = item & 63
            if o < order:
                continue
            bs = item - o
            size = sizes[o]
            be = bs + size - 1
            if not (start <= be and last >= bs):
                continue
            key = bases[o] | bs >> shifts[o]
            code = st[key]
            if code >= _ALLOC:
                continue
            contained = start <= bs and last >= be
            if not contained:
                lo = bs if bs > start else start
                hi = be if be < last else last
                if (hi + 1) // req * req <= -(-lo // req) * req:
                    continue
            if not fallback and needs_clear != code & 1:
                continue
            if contained and o == order:
                if code < _SPLIT:
                    return key
                continue
            if code < _SPLIT:
                self._split(key, o)
            stack.append(item - 1 + (size >> 1))
            stack.append(item - 1)
        return -1

    def _descend(self, dfs: list[int] | tuple[int, ...], start: int, last: int, order: int, clear: int) -> int | None:
        """Where the depth-first walks of _range_bias and _alloc_range over
        the subtrees ``dfs`` start doing anything: the smallest node that
        holds all of [start, last] (as offset | order), reached by splitting
        the free nodes above it as the walk would.  Above it the walk only
        goes down one side (the other does not overlap the range), so this
        skips visits, not decisions.  -1 when the walk would find nothing
        there (a node on the way allocated, below ``order``, or of the other
        clear state than ``clear`` unless it is -1); None when no single
        subtree holds the range (the walk then starts from all of them)."""
        st = self._st
        sizes, bases, shifts = self._sizes, self._bases, self._shifts
        for key in dfs:
            item = self._item(key)
            o = item & 63
            if item - o <= start and last < item - o + sizes[o]:
                break
        else:
            return None
        while o:
            bs = item - o
            half = sizes[o] >> 1
            if last < bs + half:
                child = item - 1
            elif start >= bs + half:
                child = item - 1 + half
            else:
                break                          # the range straddles the halves: the walk starts here
            code = st[bases[o] | bs >> shifts[o]]
            if code >= _ALLOC or o < order or (clear >= 0 and clear != code & 1):
                return -1
            if code < _SPLIT:
                self._split(bases[o] | bs >> shifts[o], o)
            item = child
            o -= 1
        return item

    def _alloc_range(self, dfs: list[int], start: int, size: int, partial: list | None = None) -> list[Block] | None:
        """__alloc_range: allocate exactly [start, start + size) from the
        subtrees in ``dfs`` (keys, in address order).  On failure everything
        taken is released and None returned -- unless ``partial`` is a list,
        which then receives the blocks taken before the failure (the caller
        owns them)."""
        st = self._st
        sizes = self._sizes
        bases, shifts = self._bases, self._shifts
        last = start + size - 1
        out: list[Block] = []
        total = 0
        top = self._descend(dfs, start, last, 0, -1)
        if top == -1:
            return None
        stack = [self._item(k) for k in reversed(dfs)] if top is None else [top]   # as in _range_bias
        ok = True
        while stack:
            item = stack.pop()
            o = item & 63
            bs = item - o
            bsize = sizes[o]
            be = bs + bsize - 1
            if not (start <= be and last >= bs):
                continue
            key = bases[o] | bs >> shifts[o]
            code = st[key]
            if code >= _ALLOC:
                ok = False
                break
            if start <= bs and last >= be:
                if code < _SPLIT:
                    out.append(self._take(key, o))
                    total += bsize
                    continue
                if not self._clear_avail:
                    ok = False
                    break
            if code < _SPLIT:
                self._split(key, o)
            stack.append(item - 1 + (bsize >> 1))
            stack.append(item - 1)
        if ok and total >= size:
            return out
        if partial is not None:
            partial += out
        else:
            self._free_internal(out)
        return None

    def _trim(self, block: Block, new_start: int, new_size: int) -> list[Block]:
        """gpu_buddy_block_trim on a validated block."""
        key = self._key_of(block)
        del self._allocated[block.offset >> self._chunk_shift]
        clear = self._st[key] & 1
        self._avail += block.size
        if clear:
            self._clear_avail += block.size
        self._mark_free(key, block.order, clear)
        self._handles[key] = block
        # Cut it off its parent so the trimmed-off parts cannot merge past it.
        self._detached = key
        try:
            got = self._alloc_range([key], new_start, new_size)
        finally:
            self._detached = -1
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
            for key in sorted(free, reverse=True):
                if key not in free:
                    continue
                off = self._off(key, order)
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
