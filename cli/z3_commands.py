"""``pddgpu-verify prove SPEC`` and ``pddgpu-verify bmc SPEC``: the z3 back end.

Exit codes: 0 PROVED / no violation, 1 VIOLATED or NOT INDUCTIVE, 2 bad input
(one line ``pddgpu-verify: error: <file>: <field>: <message>``), 3 UNKNOWN.
Registered into the main group with ``main.add_command(prove)`` /
``main.add_command(bmc)``.
"""
from __future__ import annotations

import sys
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from ..checker.spec import SpecError, load_spec

PROVE_FIELDS = ("lemmas", "k", "any_workers", "bmc_depth", "timeout")


class _BadInput(Exception):
    def __init__(self, path, field, message):
        super().__init__(f"{path}: {field}: {message}")


def _fail(msg: str):
    click.echo(f"pddgpu-verify: error: {msg}", err=True)
    sys.exit(2)


def _prove_options(spec):
    from ..model.lemmas import DEFAULT, LEMMAS
    p = spec.prove or {}
    for k in p:
        if k not in PROVE_FIELDS:
            raise _BadInput(spec.path, f"prove.{k}", f"unknown field (expected one of: {', '.join(PROVE_FIELDS)})")
    lemmas = p.get("lemmas", DEFAULT)
    if not isinstance(lemmas, list) or not all(isinstance(x, str) for x in lemmas):
        raise _BadInput(spec.path, "prove.lemmas", "must be a list of lemma names")
    for x in lemmas:
        if x != "auto" and x not in LEMMAS:
            raise _BadInput(spec.path, "prove.lemmas", f"unknown lemma '{x}' (known: auto, {', '.join(sorted(LEMMAS))})")
    out = {"lemmas": lemmas}
    for k, typ in (("k", int), ("bmc_depth", int), ("timeout", (int, float)), ("any_workers", bool)):
        if k in p:
            v = p[k]
            if (typ is int and (isinstance(v, bool) or not isinstance(v, int))) or not isinstance(v, typ):
                raise _BadInput(spec.path, f"prove.{k}", f"must be {'a boolean' if typ is bool else 'a number'}, not {v!r}")
            if typ is not bool and v < (0 if k == "bmc_depth" else 1):
                raise _BadInput(spec.path, f"prove.{k}", f"must be positive, not {v}")
            out[k] = v
    return out


def _load(spec_path):
    try:
        spec = load_spec(spec_path)
        model = spec.build()
    except SpecError as e:
        _fail(str(e))
    except ValueError as e:          # an option error surfacing from the model builder
        _fail(f"{spec_path}: {getattr(e, 'field', 'spec')}: {e}")
    return spec, model


def _trace_path(traces_dir, spec, prop, what):
    return Path(traces_dir) / f"{spec.name}.{prop}.{what}.itf.json"


@click.command()
@click.argument("spec_path", metavar="SPEC", type=click.Path(dir_okay=False))
@click.option("--k", "k", type=click.IntRange(min=1), default=None, help="k-induction depth for properties not 1-inductive")
@click.option("--timeout", type=click.FloatRange(min=0.1), default=None, help="solver time budget in seconds")
@click.option("--any-workers/--fixed-workers", "any_workers", default=None,
              help="prove for every number of workers (cutoff argument) or for the spec's workers")
@click.option("--bmc-depth", type=click.IntRange(min=0), default=None,
              help="depth of the BMC search for a real violation of a non-inductive property")
@click.option("--traces-dir", type=click.Path(file_okay=False), default="traces", show_default=True)
def prove(spec_path, k, timeout, any_workers, bmc_depth, traces_dir):
    """Prove the spec's safety properties by induction (with its lemmas)."""
    from ..checker.prove import NOT_INDUCTIVE, PROVED, UNKNOWN, VIOLATED, cti_trace, prove as run_prove, violation_trace
    from ..checker.trace import write_trace
    from ..checker.z3_encode import EncodeError
    from ..model.lemmas import LemmaError
    spec, model = _load(spec_path)
    try:
        opts = _prove_options(spec)
    except _BadInput as e:
        _fail(str(e))
    k = k or opts.get("k", 1)
    timeout = timeout or opts.get("timeout", 120.0)
    bmc_depth = opts.get("bmc_depth", 8) if bmc_depth is None else bmc_depth
    any_workers = opts.get("any_workers", False) if any_workers is None else any_workers
    props = spec.checked_properties(model)
    console = Console()
    try:
        if any_workers:
            from ..checker.parametric import MAX_TRACKED, CutoffError, prove_spec_any_workers
            try:
                pr = prove_spec_any_workers(spec, props, opts["lemmas"], timeout)
            except CutoffError as e:
                _fail(f"{spec.path}: {e}")
            if pr.refused:
                for p in pr.refused:
                    console.print(f"[red]cutoff refused[/red]: {p}")
            results = pr.results
            title = (f"prove {spec.name} (any number of workers: {pr.systems} systems of 1-{MAX_TRACKED} workers, "
                     f"{pr.seconds:.1f}s)")
        else:
            results = run_prove(model, props, opts["lemmas"], k=k, timeout=timeout, bmc_depth=bmc_depth)
            title = f"prove {spec.name} ({len(model.threads)} threads)"
    except (LemmaError, EncodeError) as e:
        _fail(f"{spec.path}: prove: {e}")
    table = Table(title=title)
    for col in ("property", "verdict", "time (s)", "detail"):
        table.add_column(col)
    colour = {PROVED: "green", NOT_INDUCTIVE: "yellow", VIOLATED: "red", UNKNOWN: "magenta"}
    for r in results:
        detail = r.detail
        if r.verdict == NOT_INDUCTIVE and r.breaking:
            detail = f"{r.breaking} breaks it" + (f"; {r.detail}" if r.detail else "")
            if not any_workers and r.cti:
                p = write_trace(_trace_path(traces_dir, spec, r.name, "cti"),
                                cti_trace(model, r, spec=str(spec.path), source="pddgpu-verify prove"))
                detail += f"; CTI: {p}"
            elif any_workers and r.cti and getattr(r, "model", None) is not None:
                p = write_trace(_trace_path(traces_dir, spec, r.name, "cti-any"),
                                cti_trace(r.model, r, spec=str(spec.path), source="pddgpu-verify prove --any-workers"))
                detail += f"; CTI: {p}"
        if r.verdict == VIOLATED and r.trace:
            p = write_trace(_trace_path(traces_dir, spec, r.name, "bmc"),
                            violation_trace(model, r, spec=str(spec.path), source="pddgpu-verify prove"))
            detail += f"; trace: {p}"
        table.add_row(r.name if r.kind == "property" else f"{r.name} ({r.kind})",
                      f"[{colour.get(r.verdict, 'white')}]{r.verdict}[/]", f"{r.seconds:.2f}", detail)
    console.print(table)
    verdicts = {r.verdict for r in results if r.kind == "property"}
    if verdicts & {VIOLATED, NOT_INDUCTIVE}:
        sys.exit(1)
    if UNKNOWN in verdicts:
        sys.exit(3)
    sys.exit(0)


@click.command()
@click.argument("spec_path", metavar="SPEC", type=click.Path(dir_okay=False))
@click.option("--depth", type=click.IntRange(min=0), default=10, show_default=True, help="longest path searched")
@click.option("--timeout", type=click.FloatRange(min=0.1), default=None, help="solver time budget in seconds")
@click.option("--deadlock/--no-deadlock", default=True, show_default=True,
              help="also look for deadlocks (as the explorer does; the costliest predicate)")
@click.option("--reduce/--no-reduce", default=True, show_default=True,
              help="partial-order reduction: consecutive independent moves in thread order (same answer)")
@click.option("--traces-dir", type=click.Path(file_okay=False), default="traces", show_default=True)
def bmc(spec_path, depth, timeout, deadlock, reduce, traces_dir):
    """Bounded model checking: a violation on some path of length <= DEPTH."""
    from ..checker.bmc import NO_VIOLATION, VIOLATION, bmc as run_bmc, bmc_trace
    from ..checker.trace import write_trace
    from ..checker.z3_encode import EncodeError
    spec, model = _load(spec_path)
    props = spec.checked_properties(model)
    try:
        res = run_bmc(model, depth, properties=props + (["deadlock"] if deadlock else []), deadlock=deadlock,
                      timeout=timeout, reduce=reduce)
    except EncodeError as e:
        _fail(f"{spec.path}: model: {e}")
    console = Console()
    table = Table(title=f"bmc {spec.name} (depth {depth})")
    for col in ("verdict", "property", "depth", "time (s)", "detail"):
        table.add_column(col)
    detail = res.detail
    if res.verdict == VIOLATION:
        p = write_trace(_trace_path(traces_dir, spec, res.property, "bmc"),
                        bmc_trace(model, res, spec=str(spec.path), source="pddgpu-verify bmc"))
        who = f" by {model.threads[res.thread].name}" if res.thread is not None else ""
        detail = f"trace{who}: {p}"
    table.add_row(res.verdict, res.property or "-", str(res.depth), f"{res.seconds:.2f}", detail)
    console.print(table)
    sys.exit(1 if res.verdict == VIOLATION else 0 if res.verdict == NO_VIOLATION else 3)
