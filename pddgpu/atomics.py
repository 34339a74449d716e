"""``atomic_t`` and ``atomic64_t`` with the kernel's operations.

Every operation is one indivisible step and, when the calling thread runs
under a controlled scheduler (``sched.Scheduler``), a scheduling point: the
thread parks *before* the operation, announcing ``at`` (the model's step
label), and performs it when the scheduler lets it run.  ``at=None`` means
"part of the step that is already running" (no new scheduling point): used
where the model folds several reads into one step (a snapshot under a lock).

Without a scheduler the points cost one thread-local lookup and the
operations are plain atomics (a tiny internal lock makes read-modify-write
indivisible under free-running threads).
"""
from __future__ import annotations

import threading

from . import sched

__all__ = ["Atomic", "Atomic64"]


def _wrap(v: int, bits: int) -> int:
    m = (1 << bits) - 1
    v &= m
    return v - (1 << bits) if v >> (bits - 1) else v


class Atomic:
    """``atomic_t``: a signed 32-bit counter / flag word."""

    BITS = 32
    __slots__ = ("_v", "_mu", "name")

    def __init__(self, value: int = 0, name: str = ""):
        self._v = _wrap(value, self.BITS)
        self._mu = threading.Lock()
        self.name = name

    def __repr__(self):
        return f"{type(self).__name__}({self.name or ''}={self._v:#x})"

    # -- non-RMW ------------------------------------------------------------
    def read(self, at: str | None = "atomic_read") -> int:
        """atomic_read / atomic64_read."""
        if at is not None:
            sched.point(at)
        return self._v

    def set(self, value: int, at: str | None = "atomic_set") -> None:
        """atomic_set / atomic64_set."""
        if at is not None:
            sched.point(at)
        with self._mu:
            self._v = _wrap(value, self.BITS)

    def peek(self) -> int:
        """Read for diagnostics and checkers only (never a scheduling point)."""
        return self._v

    # -- read-modify-write -----------------------------------------------------
    def _rmw(self, at, fn):
        if at is not None:
            sched.point(at)
        with self._mu:
            old = self._v
            self._v = _wrap(fn(old), self.BITS)
            return old, self._v

    def add(self, i: int, at: str | None = "atomic_add") -> None:
        self._rmw(at, lambda v: v + i)

    def sub(self, i: int, at: str | None = "atomic_sub") -> None:
        self._rmw(at, lambda v: v - i)

    def inc(self, at: str | None = "atomic_inc") -> None:
        self._rmw(at, lambda v: v + 1)

    def dec(self, at: str | None = "atomic_dec") -> None:
        self._rmw(at, lambda v: v - 1)

    def add_return(self, i: int, at: str | None = "atomic_add_return") -> int:
        return self._rmw(at, lambda v: v + i)[1]

    def sub_return(self, i: int, at: str | None = "atomic_sub_return") -> int:
        return self._rmw(at, lambda v: v - i)[1]

    def inc_return(self, at: str | None = "atomic_inc_return") -> int:
        return self._rmw(at, lambda v: v + 1)[1]

    def dec_return(self, at: str | None = "atomic_dec_return") -> int:
        return self._rmw(at, lambda v: v - 1)[1]

    def dec_and_test(self, at: str | None = "atomic_dec_and_test") -> bool:
        return self._rmw(at, lambda v: v - 1)[1] == 0

    def or_(self, mask: int, at: str | None = "atomic_or") -> None:
        """atomic_or."""
        self._rmw(at, lambda v: v | mask)

    def and_(self, mask: int, at: str | None = "atomic_and") -> None:
        """atomic_and (``atomic_and(~FLAG, &v)`` clears FLAG)."""
        self._rmw(at, lambda v: v & mask)

    def andnot(self, mask: int, at: str | None = "atomic_andnot") -> None:
        self._rmw(at, lambda v: v & ~mask)

    def fetch_or(self, mask: int, at: str | None = "atomic_fetch_or") -> int:
        return self._rmw(at, lambda v: v | mask)[0]

    def fetch_and(self, mask: int, at: str | None = "atomic_fetch_and") -> int:
        return self._rmw(at, lambda v: v & mask)[0]

    def fetch_add(self, i: int, at: str | None = "atomic_fetch_add") -> int:
        return self._rmw(at, lambda v: v + i)[0]

    def xchg(self, new: int, at: str | None = "atomic_xchg") -> int:
        return self._rmw(at, lambda v: new)[0]

    def cmpxchg(self, old: int, new: int, at: str | None = "atomic_cmpxchg") -> int:
        """atomic_cmpxchg: store ``new`` if the value is ``old``; returns the value found."""
        return self._rmw(at, lambda v: new if v == _wrap(old, self.BITS) else v)[0]

    def try_update(self, fn, at: str | None = "atomic_try_cmpxchg") -> tuple[int, int]:
        """The kernel's ``atomic_try_cmpxchg`` loop (``old = read; do new = fn(old);
        while (!try_cmpxchg(&v, &old, new))``) as one indivisible step: a
        failed compare-exchange is retried inside the step.  Returns (old, new)."""
        return self._rmw(at, fn)


class Atomic64(Atomic):
    """``atomic64_t``: a signed 64-bit counter."""

    BITS = 64
    __slots__ = ()
