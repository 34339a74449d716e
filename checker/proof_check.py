"""The z3 column of ``check --prove`` (``make check``): run the spec's proof as
its ``[prove]`` table says and compare the result with its ``[expect] prove``.

What is compared (``expect.prove``, ``checker/spec.py``):

* a spec expecting a VIOLATION: prove runs on its ``expect.property`` (and
  the model's bounds) and that property's verdict must be ``expect.prove``
  (VIOLATED when BMC reaches the explorer's counterexample);
* any other spec: the overall verdict (``prove.overall_verdict``) must be
  ``expect.prove``; PROVED means every checked property PROVED, whatever
  their number; ``expect.proved`` (a count or a list of names) pins a partial
  result;
* ``"none"``: z3 is not run (liveness and deadlock specs).

A spec without ``expect.prove`` never matches: every shipped spec states it.
Budgets are z3 resource units (``rlimit``), so the comparison gives the same
answer on a loaded machine as on an idle one.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

from .spec import Spec


@dataclass
class ProofOutcome:
    spec: str
    expected: str | None                 # expect.prove
    expected_proved: int | list | None   # expect.proved
    result: str | None                   # the verdict compared (None: z3 not run)
    summary: str                         # the table cell
    matches: bool
    reason: str = ""                     # why it does not match
    properties: dict = field(default_factory=dict)    # property -> verdict
    proved: int = 0
    rlimit: int | None = None
    rlimit_peak: int = 0
    queries: int = 0
    out_of_budget: int = 0
    seconds: float = 0.0

    def as_json(self) -> dict:
        return {"expected": {"prove": self.expected, "proved": self.expected_proved}, "result": self.result,
                "as_expected": self.matches, "reason": self.reason or None, "summary": self.summary,
                "properties": self.properties, "proved": self.proved,
                "budget": {"rlimit_per_query": self.rlimit, "largest_query": self.rlimit_peak,
                           "queries": self.queries, "out_of_budget": self.out_of_budget},
                "seconds": round(self.seconds, 3)}


def _compare(spec: Spec, result: str, proved: list) -> tuple[bool, str]:
    ep, n = spec.expect_prove, spec.expect_proved
    if ep is None:
        return False, "the spec states no expect.prove"
    if result != ep:
        return False, f"expected {ep}, z3 says {result}"
    if n is None:
        return True, ""
    if isinstance(n, int):
        return (len(proved) == n, "" if len(proved) == n else f"expected {n} properties PROVED, z3 proves "
                                                              f"{len(proved)}")
    if set(n) != set(proved):
        return False, f"expected PROVED: {', '.join(sorted(n))}; z3 proves: {', '.join(sorted(proved)) or 'none'}"
    return True, ""


def run_proof(spec: Spec, *, certificates: bool = True, write_certificate: bool = False,
              explorer=None) -> ProofOutcome | None:
    """The z3 back end's word on ``spec`` and whether it is the expected one
    (None for a ``+fix`` variant: its fix is checked by the explorer only).

    With ``certificates`` a spec's shipped certificate (``checker/certificate.py``) replaces mining.  What
    it yields is kept when every property is PROVED or VIOLATED (a checked proof, a real trace: facts
    whatever the candidates were); anything less and the proof searches in full, so a stale certificate
    costs time, never a verdict.  ``write_certificate``: search in full and write what the proof kept as
    the spec's certificate.  ``explorer``: the explorer's Result on the spec; its shortest counterexample of
    the expected property is the depth z3 is asked about first (``prove_violation``'s ``at_depth``)."""
    if spec.name.endswith("+fix"):
        return None
    if spec.expect_prove == "none" or (spec.expect_prove is None and spec.expect_verdict in ("LIVENESS", "DEADLOCK")):
        what = spec.expect_verdict.lower() if spec.expect_verdict in ("LIVENESS", "DEADLOCK") else "not run"
        ok = spec.expect_prove == "none"
        return ProofOutcome(spec.name, spec.expect_prove, spec.expect_proved, None, f"n/a ({what})", ok,
                            "" if ok else "the spec states no expect.prove")
    from .prove import PROVED, prove_spec
    from .z3_budget import DEFAULT_RLIMIT, Budget
    budget = Budget((spec.prove or {}).get("rlimit", DEFAULT_RLIMIT))
    violation = spec.expect_verdict == "VIOLATION"
    from . import certificate
    from .prove import VIOLATED, prove_violation
    t0 = time.perf_counter()
    given = certificate.load(spec) if certificates and not write_certificate and not violation else None
    how_found = ""
    if violation:
        depth = (len(explorer.path) - 1 if explorer is not None and explorer.verdict == "VIOLATION"
                 and explorer.property == spec.expect_property and explorer.path else None)
        overall, results = prove_violation(spec, budget=budget, mine=not certificates, at_depth=depth)
    elif given is not None:
        overall, results = prove_spec(spec, budget=budget, templates=given)
        if all(r.verdict in (PROVED, VIOLATED) for r in results if r.kind == "property"):
            how_found = ", certificate"
        else:
            given = None
            budget = Budget(budget.rlimit)
            how_found = ", certificate stale: searched"
    if not violation and given is None:
        kept = []
        overall, results = prove_spec(spec, budget=budget, kept_out=kept)
        if write_certificate:
            small = None
            if kept and overall == PROVED:
                from .certificate_min import minimise
                small = minimise(spec, kept)
            certificate.write(spec, small if small is not None else kept, results,
                              any_workers=bool((spec.prove or {}).get("any_workers")))
            how_found = ", certificate written" + (f" ({len(small)} of {len(kept)} invariants)" if small is not None
                                                   else "")
    took = time.perf_counter() - t0
    props = [r for r in results if r.kind == "property"]
    proved = [r.name for r in props if r.verdict == PROVED]
    if violation:
        r = next(r for r in props if r.name == spec.expect_property)
        how = f", {len(r.trace) - 1}-step trace" if r.trace else (", CTI" if r.cti else "")
        result, summary = r.verdict, f"{r.verdict}{how} ({took:.0f}s{how_found})"
    else:
        scope = " any N" if (spec.prove or {}).get("any_workers") else ""
        result, summary = overall, f"{overall} {len(proved)}/{len(props)}{scope} ({took:.0f}s{how_found})"
    ok, reason = _compare(spec, result, proved)
    return ProofOutcome(spec.name, spec.expect_prove, spec.expect_proved, result, summary, ok, reason,
                        {r.name: r.verdict for r in props}, len(proved), budget.rlimit, budget.peak,
                        len(budget.queries), budget.exhausted, took)
