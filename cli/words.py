"""Model values as a driver engineer reads them: the state word by flag name, sizes with units, the lock by
its owner, blocks as ranges, return codes by errno name, and a legend for what exists only in the model.

One place, so that ``show``, ``replay``, ``check`` and the HTML report print the same words for the same
value.  Plain text out: callers escape it for rich (``render.esc``) or HTML (``html.escape``).

Sizes: the model counts in allocator units, minimum blocks for VRAM and pages for GTT.  The bytes beside
them take a unit of 4 KiB: the page size, and the VRAM minimum block the shipped specs describe ("2^20
minimum blocks (4 GiB of 4 KiB blocks)"); the document itself gives no block size.
"""
from __future__ import annotations

from ..model.manager import DEV_SHUTDOWN, ENODEV, ENOMEM, ENOSPC, ERROR, INITIALIZING, READY, SHUTDOWN

UNIT_BYTES = 4096
STATE_FLAGS = (("INITIALIZING", INITIALIZING), ("READY", READY), ("SHUTDOWN", SHUTDOWN), ("ERROR", ERROR))
DEVICE_FLAGS = (("SHUTDOWN", DEV_SHUTDOWN),)
ERRNO = {-ENODEV: "-ENODEV", -ENOMEM: "-ENOMEM", -ENOSPC: "-ENOSPC"}

# variables holding a manager state word: mgr->state and the stats reader's copies of it
STATE_WORDS = {"state", "s_state", "s_state0"}
DEVICE_WORDS = {"dev_state"}
# variables holding a size in allocator units (used, vis_usage, the size a free subtracts, the reader's copies)
SIZES = {"used", "vis", "fsz", "s_used", "s_vis", "s_units", "s_vis0"}
BLOCKS = {"blk"}
CODES = {"ret", "r"}

# what exists only in the model (ghosts and the allocator's abstraction), said once under a trace
LEGEND = {
    "mask": "the allocator's contents as the model keeps them: the blocks allocated, each [first,end) in "
            "allocator units",
    "alive": "the allocator is initialised (1) or torn down / failed to init (0)",
    "gen": "which allocator instance (every re-init by recover makes a new one)",
    "bgen": "the allocator instance the worker's block came from (a free into another one is foreign)",
    "blk": "the block the worker holds, [first,end) in allocator units, none when it holds nothing",
    "vres": "the worker holds a struct pddgpu_vram_resource (kzalloc'd before the allocator call)",
    "fsz": "the size of the block being freed, kept for the statistics update after the unlock",
    "lost": "ghost: frees skipped, each leaking its block and resource",
    "shutdown_seen": "ghost: SHUTDOWN has been set once (shutdown_sticky checks it stays set)",
    "finied": "ghost: fini has torn the allocator down",
    "err_sets": "ghost: writes that set ERROR so far (saturating at 3)",
    "err_clears": "ghost: writes that cleared ERROR so far (saturating at 3)",
    "calls": "ghost: allocator calls made by the current alloc (alloc_retries_* count them)",
    "umark": "ghost: err_sets at the call's entry, 3 when the manager was not serving then",
    "dmark": "ghost: the device was shutting down at the call's entry",
    "emark": "ghost: err_clears when the alloc failed for good (did a recover run since?)",
    "rmark": "ghost: err_sets at recover's entry",
    "imark": "ghost: err_clears when recover's init failed",
    "xmark": "ghost: err_clears at set_error's write",
    "sretry": "state-check retries of the bounded-retry fix",
    "s_units": "ghost: units the allocator held at the stats reader's first read",
    "s_vis0": "ghost: vis_usage at the stats reader's first read",
    "s_state0": "ghost: the state word at the stats reader's first read",
}


def base(name: str) -> str:
    """``w0.blk`` -> ``blk``: a thread's local by its name in the model."""
    return name.rsplit(".", 1)[-1]


def flags(value: int, table=STATE_FLAGS) -> str:
    """``6`` -> ``READY|SHUTDOWN``, ``0`` -> ``none``; bits no flag names stay visible in hex."""
    if not isinstance(value, int):
        return str(value)
    names = [n for n, b in table if value & b]
    rest = value & ~sum(b for _, b in table)
    if rest:
        names.append(hex(rest))
    return "|".join(names) if names else "none"


def human_bytes(n: int) -> str:
    """Bytes in the largest binary unit that keeps the number at least 1: 4096 -> ``4 KiB``."""
    sign, n = ("-", -n) if n < 0 else ("", n)
    for unit, k in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= k:
            q = n / k
            return f"{sign}{q:.0f} {unit}" if n % k == 0 else f"{sign}{q:.2f}".rstrip("0").rstrip(".") + f" {unit}"
    return f"{sign}{n} B"


class Words:
    """The words for the values of one model's states."""

    def __init__(self, model):
        self.model = model
        self.geo = getattr(model, "geometry", None)
        self.unit = "page" if self.geo is not None and self.geo.kind == "range" else "block"
        self.decls = {d.name: d for d in model.layout.decls}
        self.threads = [t.name for t in model.threads]

    def size(self, units: int) -> str:
        """``2`` -> ``8 KiB (2 blocks)``."""
        if units == 0:
            return "0"
        plural = "" if abs(units) == 1 else "s"
        return f"{human_bytes(units * UNIT_BYTES)} ({units} {self.unit}{plural})"

    def block(self, i: int) -> str:
        if i < 0:
            return "none"
        if self.geo is None or i >= self.geo.count:
            return str(i)
        return self.geo.describe(i)

    def value(self, name: str, v) -> str:
        if not isinstance(v, int) or isinstance(v, bool):
            return str(v)                  # a pc is its step label already
        b = base(name)
        if b in STATE_WORDS:
            return flags(v)
        if b in DEVICE_WORDS:
            return flags(v, DEVICE_FLAGS)
        if b in SIZES and self.geo is not None:
            return self.size(v)
        if b == "mask" and name == b and self.geo is not None:
            blocks = [self.geo.describe(i) for i in range(self.geo.count) if v >> i & 1]
            return " ".join(blocks) if blocks else "none"
        if b in BLOCKS:
            return self.block(v)
        if b in CODES and v in ERRNO:
            return ERRNO[v]
        if name == "lock" and self.decls.get(name) is not None and self.decls[name].kind == "owner":
            return "free" if v == 0 else (self.threads[v - 1] if 0 < v <= len(self.threads) else str(v))
        return str(v)

    def changes(self, before: dict, after: dict, *, pcs: bool = False) -> list[tuple[str, str, str]]:
        """[(variable, before, after)] of the variables a step changed, in layout order (pcs left out:
        the step itself says where the thread went)."""
        out = []
        for d in self.model.layout.decls:
            n = d.name
            if n in after and before.get(n) != after[n] and (pcs or not n.endswith(".pc")):
                out.append((n, self.value(n, before.get(n)), self.value(n, after[n])))
        return out

    def legend(self, names) -> list[tuple[str, str]]:
        """[(name, meaning)] for the model-only variables among ``names``, once each, in the legend's order."""
        seen = {base(n) for n in names}
        out = [(k, text) for k, text in LEGEND.items() if k in seen]
        if seen & SIZES:
            out.append(("sizes", f"allocator units ({'pages' if self.unit == 'page' else 'minimum blocks'}) of "
                                 f"{human_bytes(UNIT_BYTES)} each; the bytes assume that unit"))
        return out


DEPTH_NOTE = "counted in steps from the initial state"


def depth_line(meta: dict, steps: int) -> str:
    """How long a trace is, in the one word for it; a counterexample to induction has no depth, since its first
    state is any state the invariants allow, not the initial one."""
    if meta.get("backend") == "z3-cti":
        return (f"{steps} step{'s' if steps != 1 else ''} from a state the invariants allow, not the initial "
                "state (a counterexample to induction: no depth)")
    return f"{steps} steps (depth {steps}, {DEPTH_NOTE})"


class TraceStep:
    """One transition of a trace, in words: who moved, from which step, what the document and the code say
    there, and what it changed."""

    def __init__(self, index, thread, step, section, code, note, changes, titles):
        self.index, self.thread, self.step, self.section, self.code = index, thread, step, section, code
        self.note, self.changes, self.titles = note, changes, titles


def trace_steps(model, data, states=None) -> list[TraceStep]:
    """The transitions of a trace whose states the model has read (``validated_states``): the section and
    code come from the model's step where the thread's pc names one, else from the trace's own
    ``#meta.transitions``."""
    from ..checker.trace import validated_states
    from .sections import titles
    lay = model.layout
    words = Words(model)
    kind = (data["#meta"].get("model_kind") if isinstance(data["#meta"].get("model_kind"), str) else "") or ""
    states = states if states is not None else validated_states(None, data, model)
    dicts = [lay.as_dict(s) for s in states]
    out = []
    for i, tr in enumerate(data["#meta"]["transitions"]):
        if i + 1 >= len(dicts):
            break
        section, code = tr.get("section") or "", tr.get("code") or ""
        try:
            st = model.threads[model.thread_index(tr["thread"])].program.step(tr["step"])
            section, code = st.section or section, st.code or code
        except KeyError:
            pass
        out.append(TraceStep(i + 1, tr["thread"], tr["step"], str(section), str(code), str(tr.get("note") or ""),
                             words.changes(dicts[i], dicts[i + 1]),
                             titles(section, kind, str(tr["step"]), str(code))))
    return out
