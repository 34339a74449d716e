"""Run one spec through the explorer, write its trace, compare with the
expected verdict.  Shared by ``check``, ``bench`` and ``findings``."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .explorer import OK, Result, explore
from .spec import Spec
from .trace import to_itf, write_trace


@dataclass
class CheckOutcome:
    spec: Spec
    model: object
    result: Result
    trace_path: Path | None

    @property
    def vacuous(self) -> list:
        return self.result.stats.get("vacuous") or []

    @property
    def vacuity_as_expected(self) -> bool:
        """An OK is only as good as what the run exercised: the spec names the properties it may leave
        unexercised; a +fix run must exercise the property its defect broke."""
        s = self.spec
        if self.result.verdict != OK:
            return True
        if s.expect_vacuous is not None and sorted(self.vacuous) != sorted(s.expect_vacuous):
            return False
        return not any(p in self.vacuous for p in s.must_exercise)

    @property
    def matches(self) -> bool:
        r, s = self.result, self.spec
        if r.verdict != s.expect_verdict:
            return False
        if not self.vacuity_as_expected:
            return False
        return s.expect_property is None or r.property == s.expect_property or s.expect_verdict == OK


def run_spec(spec: Spec, *, symmetry: bool | None = None, strategy: str | None = None,
             max_states: int | None = None, max_depth: int | None = None,
             traces_dir: str | Path | None = "traces", progress: bool = False,
             hash_compact: bool = False, memory_limit_mb: int | None = None, workers: int = 1,
             backend: str = "auto", por: bool = False, por_compare: bool = False) -> CheckOutcome:
    """``por``: partial-order reduction (docs/POR.md); ``por_compare``: also the search without it, whose
    states, verdict and counterexample length go into the stats as ``*_without_por``."""
    model = spec.build()
    kw = dict(properties=spec.checked_properties(model), strategy=strategy or spec.strategy,
              symmetry=spec.symmetry if symmetry is None else symmetry,
              max_states=max_states or spec.max_states, max_depth=max_depth or spec.max_depth,
              liveness=spec.liveness, progress=progress, hash_compact=hash_compact,
              memory_limit_mb=memory_limit_mb, backend=backend, workers=workers)
    result = explore(model, por=por or por_compare, **kw)
    if por_compare:
        base = explore(model, **kw)
        result.stats.update({"states_without_por": base.stats["states"], "verdict_without_por": base.label,
                             "path_without_por": max(len(base.path) - 1, 0)})
    path = None
    if traces_dir is not None and result.path and result.verdict not in (OK, "INCOMPLETE"):
        itf = to_itf(model, result.path, spec=spec.name, source=str(spec.path), verdict=result.verdict,
                     prop=result.property, thread=result.thread, loop_start=result.loop_start, detail=result.detail,
                     extra={"defect": spec.defect,
                            "stats": {k: result.stats[k] for k in ("states", "transitions", "symmetry", "strategy")}})
        path = write_trace(Path(traces_dir) / f"{spec.name}.itf.json", itf)
    return CheckOutcome(spec, model, result, path)
