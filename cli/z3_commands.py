"""``pddgpu-verify prove SPEC`` and ``pddgpu-verify bmc SPEC``: the z3 back end.

Exit codes: 0 PROVED / no violation, 1 VIOLATED or NOT INDUCTIVE, 2 bad input
(one line ``pddgpu-verify: error: <file>: <field>: <message>``), 3 UNKNOWN (a
query ran out of its resource budget, ``--rlimit``; never wall time).
Registered into the main group with ``main.add_command(prove)`` /
``main.add_command(bmc)``.
"""
from __future__ import annotations

import sys
from pathlib import Path

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ..checker.spec import SpecError, load_spec
from ..checker.z3_budget import DEFAULT_RLIMIT, MAX_RLIMIT, Budget


def _fail(msg: str):
    click.echo(f"pddgpu-verify: error: {' '.join(str(msg).split())}", err=True)
    sys.exit(2)


def _console() -> Console:
    """As the main CLI's: a CI log (no terminal) gets 230 columns, and no cell holding a name or a path is cut."""
    return Console(highlight=False, width=None if sys.stdout.isatty() else 230)


def _table(title: str, cols) -> Table:
    t = Table(title=escape(title))
    for col in cols:
        t.add_column(col, overflow="fold")     # never '…': a CI log keeps every trace path and property name
    return t


def _written(console, paths):
    """The traces written, one whole path a line (a folded table cell cannot be copied)."""
    for p in paths:
        console.print(f"trace written: {escape(str(p))}", soft_wrap=True)


def _progress(budget, name):
    """A progress line on stderr for the run (never on stdout, never read by it), told through the budget."""
    from ..checker.z3_progress import Progress
    budget.progress = Progress(True, name).start()
    return budget.progress


def _prove_options(spec):
    """The spec's ``[prove]`` table (``load_spec`` has validated it) with the lemma default."""
    from ..model.lemmas import DEFAULT
    p = spec.prove or {}
    return {"lemmas": p.get("lemmas", DEFAULT), **{k: v for k, v in p.items() if k != "lemmas"}}


def _no_timeout(timeout):
    if timeout is not None:
        _fail("--timeout: wall-clock budgets are gone (a verdict must not depend on the machine's load); "
              "use --rlimit N (z3 resource units per query)")


def _load(spec_path):
    try:
        spec = load_spec(spec_path)
        model = spec.build()
    except SpecError as e:
        _fail(str(e))
    except ValueError as e:          # an option error surfacing from the model builder
        _fail(f"{spec_path}: {getattr(e, 'field', 'spec')}: {e}")
    return spec, model


def _check_traces_dir(traces_dir):
    from .main import check_output_dir
    check_output_dir("--traces-dir", Path(traces_dir))


def _trace_path(traces_dir, spec, prop, what):
    return Path(traces_dir) / f"{spec.name}.{prop}.{what}.itf.json"


@click.command()
@click.argument("spec_path", metavar="SPEC", type=click.Path(dir_okay=False))
@click.option("--k", "k", type=click.IntRange(min=1), default=None, help="k-induction depth for properties not 1-inductive")
@click.option("--rlimit", type=click.IntRange(min=1, max=MAX_RLIMIT), default=None,
              help=f"z3 resource units per solver query (default: the spec's [prove] rlimit, else {DEFAULT_RLIMIT:,})")
@click.option("--timeout", hidden=True, default=None, help="gone: use --rlimit")
@click.option("--any-workers/--fixed-workers", "any_workers", default=None,
              help="prove for every number of workers (cutoff argument) or for the spec's workers")
@click.option("--bmc-depth", type=click.IntRange(min=0), default=None,
              help="depth of the BMC search for a real violation of a non-inductive property")
@click.option("--traces-dir", type=click.Path(file_okay=False), default="traces", show_default=True)
@click.option("--certificate", "use_certificate", is_flag=True,
              help="check the spec's proof certificate (specs/certificates/) instead of mining candidates; "
                   "nothing in it is trusted")
@click.option("--write-certificate", is_flag=True,
              help="write the invariants this proof kept as the spec's certificate (what check --prove checks)")
@click.option("--minimise", is_flag=True,
              help="with --write-certificate: write only the invariants the proof's queries use (a closure over "
                   "z3's unsat cores, under the spec's own [prove] settings), checked again before it is written")
def prove(spec_path, k, rlimit, timeout, any_workers, bmc_depth, traces_dir, use_certificate, write_certificate,
          minimise):
    """Prove the spec's safety properties by induction (with its lemmas).

    Every solver query gets --rlimit z3 resource units: the verdict does not
    depend on the machine's load (wall time is reported, never a budget)."""
    from ..checker.prove import NOT_INDUCTIVE, PROVED, UNKNOWN, VIOLATED, cti_trace, prove as run_prove, violation_trace
    from ..checker.trace import write_trace
    from ..checker.z3_encode import EncodeError
    from ..model.lemmas import LemmaError
    _no_timeout(timeout)
    if minimise and not write_certificate:
        _fail("--minimise: needs --write-certificate (it makes the certificate written smaller)")
    spec, model = _load(spec_path)
    _check_traces_dir(traces_dir)
    opts = _prove_options(spec)
    k = k or opts.get("k", 1)
    budget = Budget(rlimit or opts.get("rlimit", DEFAULT_RLIMIT))
    bmc_depth = opts.get("bmc_depth", 8) if bmc_depth is None else bmc_depth
    any_workers = opts.get("any_workers", False) if any_workers is None else any_workers
    props = spec.checked_properties(model)
    from ..checker import certificate
    templates = None
    if use_certificate:
        try:
            templates = certificate.load(spec)
        except SpecError as e:
            _fail(str(e))
        if templates is None:
            _fail(f"{certificate.path_for(spec)}: certificate: no such file (write it with prove --write-certificate)")
    kept = []
    console = _console()
    written = []
    progress = _progress(budget, f"prove {spec.name}")
    try:
        if any_workers:
            from ..checker.parametric import MAX_TRACKED, CutoffError, prove_spec_any_workers
            try:
                pr = prove_spec_any_workers(spec, props, opts["lemmas"], budget=budget, templates=templates,
                                            kept_out=kept)
            except CutoffError as e:
                progress.close()
                _fail(f"{spec.path}: {e}")
            if pr.refused:
                for p in pr.refused:
                    console.print(f"[red]cutoff refused[/red]: {escape(str(p))}")
            results = pr.results
            title = (f"prove {spec.name} (any number of workers: {pr.systems} systems of 1-{MAX_TRACKED} workers, "
                     f"{pr.seconds:.1f}s)")
        else:
            results = run_prove(model, props, opts["lemmas"], k=k, budget=budget, bmc_depth=bmc_depth,
                                templates=templates, kept_out=kept)
            title = f"prove {spec.name} ({len(model.threads)} threads)"
    except (LemmaError, EncodeError) as e:
        progress.close()
        _fail(f"{spec.path}: prove: {e}")
    finally:
        progress.close()
    table = _table(title, ("property", "verdict", "time (s)", "detail"))
    colour = {PROVED: "green", NOT_INDUCTIVE: "yellow", VIOLATED: "red", UNKNOWN: "magenta"}
    for r in results:
        detail = r.detail
        if r.verdict == NOT_INDUCTIVE and r.breaking:
            detail = f"{r.breaking} breaks it" + (f"; {r.detail}" if r.detail else "")
            if not any_workers and r.cti:
                p = write_trace(_trace_path(traces_dir, spec, r.name, "cti"),
                                cti_trace(model, r, spec=str(spec.path), source="pddgpu-verify prove"))
                detail += f"; CTI: {p}"
                written.append(p)
            elif any_workers and r.cti and getattr(r, "model", None) is not None:
                p = write_trace(_trace_path(traces_dir, spec, r.name, "cti-any"),
                                cti_trace(r.model, r, spec=str(spec.path), source="pddgpu-verify prove --any-workers"))
                detail += f"; CTI: {p}"
                written.append(p)
        if r.verdict == VIOLATED and r.trace:
            p = write_trace(_trace_path(traces_dir, spec, r.name, "bmc"),
                            violation_trace(model, r, spec=str(spec.path), source="pddgpu-verify prove"))
            detail += f"; trace: {p}"
            written.append(p)
        table.add_row(escape(r.name if r.kind == "property" else f"{r.name} ({r.kind})"),
                      f"[{colour.get(r.verdict, 'white')}]{r.verdict}[/]", f"{r.seconds:.2f}", escape(detail or ""))
    console.print(table)
    _written(console, written)
    if write_certificate:
        if minimise and kept:
            from ..checker.certificate_min import minimise as smaller
            small = smaller(spec, kept)
            console.print(f"minimised: {len(small)} of {len(kept)} invariants kept" if small is not None else
                          "not minimised: the closure or its check did not prove every property; written as kept")
            kept = small if small is not None else kept
        cp, n = certificate.write(spec, kept, results, any_workers=any_workers)
        console.print(f"certificate written: {escape(str(cp))} ({n} invariants)",
                      soft_wrap=True)
    n_props = [r for r in results if r.kind == "property"]
    console.print(f"{sum(r.verdict == PROVED for r in n_props)}/{len(n_props)} properties PROVED; "
                  f"{budget.summary()}")
    verdicts = {r.verdict for r in results if r.kind == "property"}
    if verdicts & {VIOLATED, NOT_INDUCTIVE}:
        sys.exit(1)
    if UNKNOWN in verdicts:
        sys.exit(3)
    sys.exit(0)


@click.command()
@click.argument("spec_path", metavar="SPEC", type=click.Path(dir_okay=False))
@click.option("--depth", type=click.IntRange(min=0), default=10, show_default=True, help="longest path searched")
@click.option("--rlimit", type=click.IntRange(min=1, max=MAX_RLIMIT), default=None,
              help=f"z3 resource units per depth's query (default {DEFAULT_RLIMIT:,})")
@click.option("--timeout", hidden=True, default=None, help="gone: use --rlimit")
@click.option("--deadlock/--no-deadlock", default=True, show_default=True,
              help="also look for deadlocks (as the explorer does; the costliest predicate)")
@click.option("--reduce/--no-reduce", default=True, show_default=True,
              help="partial-order reduction: consecutive independent moves in thread order (same answer)")
@click.option("--traces-dir", type=click.Path(file_okay=False), default="traces", show_default=True)
def bmc(spec_path, depth, rlimit, timeout, deadlock, reduce, traces_dir):
    """Bounded model checking: a violation on some path of length <= DEPTH.

    Each depth's query gets --rlimit z3 resource units (never wall time)."""
    from ..checker.bmc import NO_VIOLATION, VIOLATION, bmc as run_bmc, bmc_trace
    from ..checker.trace import write_trace
    from ..checker.z3_encode import EncodeError
    _no_timeout(timeout)
    spec, model = _load(spec_path)
    _check_traces_dir(traces_dir)
    props = spec.checked_properties(model)
    budget = Budget(rlimit or DEFAULT_RLIMIT)
    progress = _progress(budget, f"bmc {spec.name} (depth {depth})")
    try:
        res = run_bmc(model, depth, properties=props + (["deadlock"] if deadlock else []), deadlock=deadlock,
                      budget=budget, reduce=reduce)
    except EncodeError as e:
        progress.close()
        _fail(f"{spec.path}: model: {e}")
    finally:
        progress.close()
    console = _console()
    table = _table(f"bmc {spec.name} (depth {depth})", ("verdict", "property", "depth", "time (s)", "detail"))
    detail = res.detail
    written = []
    if res.verdict == VIOLATION:
        p = write_trace(_trace_path(traces_dir, spec, res.property, "bmc"),
                        bmc_trace(model, res, spec=str(spec.path), source="pddgpu-verify bmc"))
        who = f" by {model.threads[res.thread].name}" if res.thread is not None else ""
        detail = f"trace{who}: {p}"
        written.append(p)
    table.add_row(res.verdict, escape(res.property or "-"), str(res.depth), f"{res.seconds:.2f}", escape(detail or ""))
    console.print(table)
    _written(console, written)
    console.print(budget.summary())
    sys.exit(1 if res.verdict == VIOLATION else 0 if res.verdict == NO_VIOLATION else 3)
