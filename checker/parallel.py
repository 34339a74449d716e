"""Many specs at once: ``check`` runs each spec (its search and, with
``--prove``, its proof) in its own process, one per core, and hands back each
outcome as it completes, so the slowest spec never holds back the rows of the
others.

A spec's verdict does not depend on which process ran it or when: each run is
the same sequential search as a lone ``check SPEC``; only the order in which
rows arrive changes.  Specs are handed out longest first, by the times the
last run recorded (``.cache/check-times.json``), which changes only how soon
the whole table is done, never what it says.
"""
from __future__ import annotations

import json
import multiprocessing
import os
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

from .spec import Spec

TIMES = Path(".cache") / "check-times.json"


@dataclass
class Done:
    """One spec's run, as it crosses back from its process (the model is rebuilt here: it holds code)."""
    index: int
    spec: Spec
    result: object
    trace_path: Path | None
    proof: object | None
    seconds: float


def default_jobs() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


def _run_one(index: int, spec: Spec, run_kwargs: dict, with_proof: bool, proof_kwargs: dict | None = None) -> Done:
    import time
    from .run import run_spec
    t0 = time.perf_counter()
    o = run_spec(spec, **run_kwargs)
    proof = None
    if with_proof:
        from .proof_check import run_proof
        proof = run_proof(spec, explorer=o.result, **(proof_kwargs or {}))
    return Done(index, spec, o.result, o.trace_path, proof, time.perf_counter() - t0)


def _load_times() -> dict:
    try:
        d = json.loads(TIMES.read_text())
        return d if isinstance(d, dict) else {}
    except (OSError, ValueError):
        return {}


def _save_times(times: dict):
    try:
        TIMES.parent.mkdir(parents=True, exist_ok=True)
        tmp = TIMES.with_suffix(".tmp")
        tmp.write_text(json.dumps(times, indent=1, sort_keys=True) + "\n")
        tmp.replace(TIMES)
    except OSError:
        pass            # a cache only orders the work: a read-only checkout still checks


def run_specs(specs: list[Spec], *, jobs: int, with_proofs: bool, run_kwargs: dict, on_done=None,
              proof_kwargs: dict | None = None) -> list[Done]:
    """Run every spec; ``on_done(done)`` is called in the order runs complete; the list returned is in the
    order of ``specs``."""
    times = _load_times()
    key = lambda s: f"{s.path}:{s.name}:{int(with_proofs)}"
    results: list[Done | None] = [None] * len(specs)

    def record(d: Done):
        results[d.index] = d
        times[key(d.spec)] = round(d.seconds, 2)
        if on_done:
            on_done(d)

    if jobs <= 1 or len(specs) <= 1:
        for i, s in enumerate(specs):
            record(_run_one(i, s, run_kwargs, with_proofs, proof_kwargs))
        _save_times(times)
        return results
    # the slowest first, so that no long run starts last while the other cores idle; a spec never timed (a fresh
    # clone) comes before every timed one, a proof expected to hold first among them: those are the slowest
    def unknown(s):
        return 2e9 if with_proofs and s.expect_prove == "PROVED" else 1e9
    order = sorted(range(len(specs)), key=lambda i: -times.get(key(specs[i]), unknown(specs[i])))
    # spawn, not fork: z3 and the native explorer hold threads and handles a forked child must not inherit
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx) as pool:
        pending = {pool.submit(_run_one, i, specs[i], run_kwargs, with_proofs, proof_kwargs) for i in order}
        try:
            while pending:
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                for f in sorted(finished, key=lambda f: f.result().index):
                    record(f.result())
        except BaseException:
            for f in pending:
                f.cancel()
            raise
    _save_times(times)
    return results
