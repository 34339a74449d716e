"""Deterministic solver budgets: z3's resource limit (``rlimit``), never wall time.

A verdict of the z3 back end must not depend on how busy the machine is, so
no solver is ever given a wall-clock ``timeout``.  Every query (one
``check()``) gets a budget of z3 *resource units* instead: z3 counts them as it
works (propagations, conflicts, rewriting steps, ...) and gives up with
``unknown`` ("max. resource limit exceeded") once a query has used its budget.
The count depends only on the query and on the z3 context it runs in, so the
same query gives the same answer on an idle machine and on a loaded one.

Measured on z3-solver 5.4.1.0 (``tests/test_z3_determinism.py`` pins both):

* ``solver.set("rlimit", N)`` bounds each ``check()`` separately: z3 pushes
  the limit "count at the start of this check + N" for the duration of the
  check, so a solver used for many checks (BMC's incremental solver) gives
  every check the full N, not N over its life;
* the value is an unsigned 32-bit number: a larger one is silently cut to
  its low 32 bits, so budgets stop at ``MAX_RLIMIT`` (2^32 - 1);
* the counter behind it ("rlimit count" in a solver's statistics) belongs to
  the z3 *context* and keeps growing over the context's life; the units one
  query needs depend a little (up to about 1.5x) on what the context did
  before (caches, term ids).  So each proof and each BMC run works in a fresh
  context of its own (``own_context``): what a query costs is then a function
  of the proof's input alone, the same in ``prove SPEC`` as inside
  ``make check`` after twenty other specs.

Budgets are per query, so one hard property cannot starve the others; a
query that runs out of budget makes UNKNOWN only the property (or candidate)
it was about (see ``prove.houdini``).
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import z3
import z3.z3 as _z3core

# Resource units per query.  Measured over every shipped spec (``make check``'s proofs, including prove
# --any-workers on 40/41, and ``bmc`` at the explorer's depth on 01, 06, 12, 14, 20, 21; docs/PROOFS.md,
# "Budgets"): the largest single query used RLIMIT_PEAK_MEASURED units (spec 42's first Houdini round, 4,077
# goals), most use under 2 million; the default leaves a margin of about 10x over the largest.
RLIMIT_PEAK_MEASURED = 23_699_744
DEFAULT_RLIMIT = 250_000_000
MAX_RLIMIT = (1 << 32) - 1   # z3 5.4.1 keeps the low 32 bits of a larger value (2^32 + 10 is 10): refused


def rlimit_count(solver) -> int:
    """The context's resource counter (z3 reports it in every solver's statistics)."""
    st = solver.statistics()
    return int(st.get_key_value("rlimit count")) if "rlimit count" in st.keys() else 0


@dataclass
class Query:
    what: str
    used: int
    result: str          # sat | unsat | unknown


@dataclass
class Budget:
    """A resource limit per query (``None``: unbounded, for measuring) and a
    log of what every query used."""
    rlimit: int | None = DEFAULT_RLIMIT
    queries: list = field(default_factory=list)
    # what a progress line shows (``z3_progress.Progress``): told of each query, never part of one
    progress: object | None = field(default=None, compare=False, repr=False)

    def __post_init__(self):
        if self.rlimit is not None and not 1 <= self.rlimit <= MAX_RLIMIT:
            raise ValueError(f"rlimit must be 1 to {MAX_RLIMIT:,}, not {self.rlimit}")

    def check(self, solver, *assumptions, what: str = "query"):
        """``solver.check(*assumptions)`` within the budget; records the units used."""
        if self.rlimit is not None:
            solver.set("rlimit", self.rlimit)
        if self.progress is not None:
            self.progress.query(what)
        before = rlimit_count(solver)
        r = solver.check(*assumptions)
        self.queries.append(Query(what, rlimit_count(solver) - before, str(r)))
        return r

    @property
    def peak(self) -> int:
        return max((q.used for q in self.queries), default=0)

    @property
    def total(self) -> int:
        return sum(q.used for q in self.queries)

    @property
    def exhausted(self) -> int:
        return sum(q.result == "unknown" for q in self.queries)

    def summary(self) -> str:
        lim = "unbounded" if self.rlimit is None else f"{self.rlimit:,}"
        s = f"rlimit {lim} per query; {len(self.queries)} queries, largest used {self.peak:,}"
        if self.exhausted:
            s += f", {self.exhausted} out of budget"
        return s


def out_of_budget(budget: Budget) -> str:
    return f"out of budget (rlimit {budget.rlimit:,} per query; raise [prove] rlimit / --rlimit)" \
        if budget.rlimit is not None else "the solver gave up"


@contextlib.contextmanager
def own_context():
    """Build and solve everything in the block in a fresh z3 context (the
    module-level default context is swapped for the duration), so resource
    counts do not depend on what ran before in this process.  Nothing built
    in the block may be used after it, and nothing built before it inside it:
    the z3 back end passes only decoded Python values across."""
    old = _z3core._main_ctx
    _z3core._main_ctx = z3.Context()
    try:
        yield
    finally:
        _z3core._main_ctx = old
