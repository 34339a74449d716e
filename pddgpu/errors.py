"""Error types shared by the allocators.

Two kinds of failure are kept apart on purpose:

* ``AllocError`` is an ordinary, recoverable failure that the kernel would
  report as a negative errno (``-ENOSPC``, ``-EINVAL`` ...).  Callers are
  expected to handle it (evict and retry, fall back to another domain ...).
* ``AllocatorBug`` is what the kernel turns into ``BUG_ON``/``WARN_ON``:
  the caller broke the allocator's contract (double free, freeing a block
  that belongs to another allocator, using the allocator after teardown).
  A model checker must never swallow these, so they do not derive from
  ``AllocError``.
"""

from __future__ import annotations

import errno as _errno

__all__ = [
    "AllocError",
    "AllocatorBug",
    "EBUSY",
    "EINVAL",
    "ENODEV",
    "ENOMEM",
    "ENOSPC",
]

# Pinned to the Linux values rather than taken from the host's errno module,
# so traces recorded on another OS still compare equal.
ENOMEM = 12
EBUSY = 16
ENODEV = 19
EINVAL = 22
ENOSPC = 28

_NAMES = {ENOMEM: "ENOMEM", EBUSY: "EBUSY", ENODEV: "ENODEV", EINVAL: "EINVAL", ENOSPC: "ENOSPC"}


class AllocError(Exception):
    """A recoverable allocation failure carrying a positive errno."""

    def __init__(self, errno: int, message: str = "") -> None:
        if not isinstance(errno, int) or errno <= 0:
            raise ValueError(f"errno must be a positive int, got {errno!r}")
        self.errno = errno
        self.message = message or _errno.errorcode.get(errno, "")
        super().__init__(errno, self.message)

    @property
    def name(self) -> str:
        return _NAMES.get(self.errno, f"E{self.errno}")

    def __str__(self) -> str:
        return f"[{self.name}] {self.message}" if self.message else self.name

    def __repr__(self) -> str:
        return f"AllocError({self.name}, {self.message!r})"


class AllocatorBug(Exception):
    """Contract violation that the kernel would BUG()/WARN() on."""
