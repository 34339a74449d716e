"""Allocator geometries: the finite set of blocks an allocator can hand out.

An allocator's contents are a bit mask over these candidates (bit i set:
candidate i is allocated).  Overlap, double free and leaks become bit tests
against precomputed conflict masks, which every back end can evaluate.

Two kinds of geometry:

* explicit (``buddy``, ``range_allocator``): every block of the allocator is
  a candidate, so the allocator is small (a buddy of at most 32 minimum
  blocks, a range allocator of at most 10 pages);
* windowed (``buddy_window``, ``range_window``): only the blocks of the sizes
  the workload allocates, inside the lowest ``window`` units, are candidates,
  while ``units`` stays the real size (2^20 minimum blocks, say).  The first
  fit of such a geometry is the real allocator's first fit as long as the
  window does not run out; the model built on it asserts that at every
  allocation (``WINDOW_PROPERTY``), so a window too small is reported, never
  silently wrong.  docs/PROOFS.md has the argument.
"""
from __future__ import annotations

from dataclasses import dataclass

from .expr import Expr, FirstFit, Op, Table, ite, lift, ne, sum_


MAX_CANDIDATES = 63           # the mask is a signed 64-bit word whose sign bit stays clear
EXPLICIT_LIMIT = {"buddy": 32, "range": 10}   # the largest allocators modelled block by block
WINDOW_PROPERTY = "window_large_enough"


class GeometryError(ValueError):
    """A geometry that cannot be built; ``field`` is the allocator setting at
    fault (``size`` or ``window``), for the spec loader's one-line error."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class Geometry:
    kind: str                 # "buddy" | "range"
    units: int                # minimum blocks (buddy) or pages (range): the real size
    starts: tuple             # start unit of each candidate
    sizes: tuple              # size in units of each candidate
    conflicts: tuple          # mask of candidates overlapping each candidate (itself included)
    window: int | None = None  # None: every block is a candidate; else only blocks inside [0, window)
    #                            of the sizes the workload allocates

    @property
    def count(self) -> int:
        return len(self.sizes)

    @property
    def windowed(self) -> bool:
        """Some real block lies outside the candidates: the model must check
        that no first fit ever needs one (``WINDOW_PROPERTY``)."""
        return self.window is not None and self.window < self.units

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
        raise GeometryError("size", "buddy size must be a power of two number of minimum blocks")
    starts, sizes = [], []
    sz = 1
    while sz <= units:
        for off in range(0, units, sz):
            starts.append(off)
            sizes.append(sz)
        sz *= 2
    if len(sizes) > MAX_CANDIDATES:
        raise GeometryError("size", "buddy too large for an explicit model (at most 32 minimum blocks)")
    return Geometry("buddy", units, tuple(starts), tuple(sizes), _conflicts(starts, sizes))


def range_allocator(pages: int, max_size: int | None = None) -> Geometry:
    """drm_mm over ``pages`` pages: any start, any size (lowest hole first)."""
    max_size = pages if max_size is None else max_size
    starts, sizes = [], []
    for sz in range(1, max_size + 1):
        for st in range(0, pages - sz + 1):
            starts.append(st)
            sizes.append(sz)
    if len(sizes) > MAX_CANDIDATES:
        raise GeometryError("size", f"range allocator too large for an explicit model (at most {MAX_CANDIDATES} "
                                    "candidate nodes)")
    return Geometry("range", pages, tuple(starts), tuple(sizes), _conflicts(starts, sizes))


# windowed geometries ----------------------------------------------------------------------------------------

def _window_sizes(kind: str, units: int, window: int, sizes) -> tuple:
    sizes = tuple(sorted(set(sizes))) or (1,)
    top = sizes[-1]
    if window < 1 or window > units:
        raise GeometryError("window", f"must be 1 to the allocator size ({units}), not {window}")
    if top > window:
        raise GeometryError("window", f"{window} units cannot hold an allocation of {top}")
    if kind == "buddy" and window % top:
        raise GeometryError("window", f"must be a multiple of the largest allocation ({top}), not {window}: the "
                                      "first aligned block past the window must be a whole block")
    if kind == "range" and window < units and window + top > units:
        raise GeometryError("window", f"{window} leaves less than the largest allocation ({top}) of the {units} "
                                      f"pages outside the window; use at most {units - top}, or {units}")
    return sizes


def _windowed(kind: str, units: int, window: int, sizes, step) -> Geometry:
    # counted before any candidate is built: a window of 2^30 units must be refused, not enumerated
    count = sum((window - sz) // step(sz) + 1 for sz in sizes if sz <= window)
    if count > MAX_CANDIDATES:
        raise GeometryError("window", f"a window of {window} units holds {count} candidate blocks of sizes "
                                      f"{', '.join(map(str, sizes))}; at most {MAX_CANDIDATES}")
    starts, szs = [], []
    for sz in sizes:
        for off in range(0, window - sz + 1, step(sz)):
            starts.append(off)
            szs.append(sz)
    if len(szs) > MAX_CANDIDATES:
        raise GeometryError("window", f"a window of {window} units holds {len(szs)} candidate blocks of sizes "
                                      f"{', '.join(map(str, sizes))}; at most {MAX_CANDIDATES}")
    return Geometry(kind, units, tuple(starts), tuple(szs), _conflicts(starts, szs), window)


def buddy_window(units: int, window: int, sizes) -> Geometry:
    """A buddy of ``units`` minimum blocks seen through its lowest ``window``
    units: the candidates are the aligned blocks of the allocated ``sizes``
    (powers of two) inside the window, in the order of ``buddy``."""
    if units < 1 or units & (units - 1):
        raise GeometryError("size", "buddy size must be a power of two number of minimum blocks")
    sizes = _window_sizes("buddy", units, window, sizes)
    bad = [s for s in sizes if s & (s - 1)]
    if bad:
        raise GeometryError("size", f"buddy blocks are powers of two, not {bad[0]}")
    return _windowed("buddy", units, window, sizes, lambda sz: sz)


def range_window(pages: int, window: int, sizes) -> Geometry:
    """A range allocator of ``pages`` pages seen through its lowest
    ``window`` pages: nodes of the allocated ``sizes`` at every start inside
    the window, in the order of ``range_allocator``."""
    if pages < 1:
        raise GeometryError("size", f"a range allocator has at least one page, not {pages}")
    sizes = _window_sizes("range", pages, window, sizes)
    return _windowed("range", pages, window, sizes, lambda sz: 1)


def default_window(kind: str, units: int, sizes, live: int) -> int:
    """A window in which a first fit of any size in ``sizes`` always
    succeeds while at most ``live`` blocks of those sizes are allocated,
    wherever they lie (the least such for blocks all of the largest size):
    for a buddy, ``live`` blocks touch at most
    ``live`` of the ``live + 1`` aligned blocks of the largest size, so one is
    free; for a range allocator the ``live`` nodes leave ``live + 1`` gaps,
    one of which is at least as long as the largest size when the window is
    ``(2 live + 1) top - live``.  The whole allocator when that does not fit."""
    top = max(sizes) if sizes else 1
    w = (live + 1) * top if kind == "buddy" else (2 * live + 1) * top - live
    if w >= units or (kind == "range" and w + top > units):
        return units
    return w


def block_units(kind: str, request: int) -> int:
    """The size of the block an allocator hands out for a request of
    ``request`` units: for the buddy (VRAM) one block of the request rounded
    up to a power of two (the manager asks drm_buddy for ``min_block_size`` =
    the request rounded up, one aligned block: ``alloc 3`` gets a block of
    4); for the range allocator (GTT) a node of exactly ``request`` pages."""
    if kind == "buddy":
        return 1 << (max(request, 1) - 1).bit_length()
    return request


def geometry_for(kind: str, units: int, window: int | None = None, sizes=(), live: int = 0) -> Geometry:
    """The geometry a model of an allocator of ``units`` uses: the explicit
    one when the allocator is small and no window is asked for (what every
    spec up to 32 minimum blocks / 10 pages has always used), else a window,
    ``default_window`` of the workload (allocation ``sizes``, at most
    ``live`` blocks at once) unless ``window`` names one.  ``sizes`` are the
    requests; the window's candidates are the blocks they get
    (``block_units``)."""
    if kind not in EXPLICIT_LIMIT:
        raise GeometryError("kind", f"unknown allocator kind {kind!r}")
    sizes = tuple(sorted({block_units(kind, s) for s in sizes}))
    if window is None and units <= EXPLICIT_LIMIT[kind]:
        return buddy(units) if kind == "buddy" else range_allocator(units)
    build = buddy_window if kind == "buddy" else range_window
    if window is not None:
        return build(units, window, sizes)
    w = default_window(kind, units, sizes, live)
    try:
        return build(units, w, sizes)
    except GeometryError as e:
        if e.field != "window":
            raise
        raise GeometryError("window", f"none given, and the default for this workload ({w} units: up to {live} "
                                      f"block(s) live, the largest of {max(sizes, default=1)}) needs more than "
                                      f"{MAX_CANDIDATES} candidate blocks; set a smaller allocator.window (a window "
                                      "that runs out is reported, never silently wrong) or allocate less") from None
