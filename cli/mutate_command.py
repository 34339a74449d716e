"""``pddgpu-verify mutate SPEC...``: mutation testing of a spec's properties (``checker/mutate.py``).

Exit codes: 0 every mutant that is not equivalent is caught, in every spec; 1 some mutant survived (or its
search was incomplete); 2 bad input (one line ``pddgpu-verify: error: FILE: FIELD: message``).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ..checker.spec import SpecError, companion_specs, load_spec

out = Console(highlight=False, width=None if sys.stdout.isatty() else 200)
COLOR = {"caught": "green", "survived": "bold red", "equivalent": "cyan", "unbuildable": "yellow",
         "incomplete": "yellow", "redundant": "cyan", "stale": "bold red"}


def _fail(msg: str):
    click.echo(f"pddgpu-verify: error: {msg}", err=True)
    sys.exit(2)


def _load(path: Path, select):
    """The spec, its check configuration and the mutants asked for; every input error before any search."""
    from ..checker import mutate as M
    try:
        spec = load_spec(path)
        model = spec.build()
        companion_specs(spec)          # a bad companion is bad input, found before any search
    except SpecError as e:
        _fail(str(e))
    except ValueError as e:          # an option error surfacing from the model builder
        _fail(f"{path}: {getattr(e, 'field', 'spec')}: {e}")
    if spec.expect_verdict != "OK":
        _fail(f"{path}: expect.verdict: mutation testing needs a spec expected to verify (OK), not "
              f"{spec.expect_verdict}")
    mutants, _ = M.catalogue(model)
    known = set(M.OPERATORS) | {m.id for m in mutants}
    for s in select:
        if s not in known:
            _fail(f"{path}: --operator: no operator or mutant '{s}' (operators: {', '.join(M.OPERATORS)})")
    return spec, mutants


def _progress(name, total):
    """A live line on a terminal; in a log (make check) one line a minute."""
    import time
    seen, last, t0 = [0], [time.perf_counter()], time.perf_counter()
    tty = sys.stderr.isatty()

    def tick(o):
        seen[0] += 1
        now = time.perf_counter()
        if tty:
            print(f"\r  {name}: {seen[0]}/{total} mutants decided", end="", file=sys.stderr, flush=True)
            if seen[0] == total:
                print(file=sys.stderr)
        elif now - last[0] >= 60 and seen[0] < total:
            last[0] = now
            print(f"  {name}: {seen[0]}/{total} mutants decided ({now - t0:.0f}s)", file=sys.stderr, flush=True)
    return tick


def _with_companions(M, spec, report, jobs, with_proof, budget, cache):
    """Ask each of the spec's ``[mutate] companions`` about the mutants the spec did not catch."""
    try:
        companions = companion_specs(spec)
    except SpecError as e:
        _fail(str(e))
    done = []
    model = spec.build() if companions else None       # once: every companion is compared with the same model
    for c in companions:
        ids = M.undecided(report)
        if not ids:
            break
        ids = M.shared_mutants(model, c.build(), ids)
        if not ids:
            continue
        try:
            r = M.run(c, M.check_config(c), jobs=jobs, with_proof=with_proof, select=ids,
                      progress=_progress(f"{spec.name} in {c.name}", len(ids)), budget=budget, cache=cache)
        except M.BadSubject as e:
            _fail(f"{spec.path}: mutate.companions: {c.path}: {e}")
        done.append(c.name)
        report = M.merge(report, [(c.name, r)])
    if done:
        from dataclasses import replace
        report = replace(report, subject=f"{report.subject} (with {', '.join(done)})")
    return report


def _table(report, with_proof) -> Table:
    t = Table(title=f"pddgpu-verify mutate: {report.subject}", show_lines=False)
    for col in ("mutant", "operator", "description", "verdict", "caught by", "time"):
        t.add_column(col, justify="right" if col == "time" else "left", overflow="fold")
    if with_proof:
        t.add_column("z3 (prove)", overflow="fold")
    for o in report.outcomes:
        by = f"{o.property} ({o.trace} steps)" if o.property else ""
        row = [escape(o.id), o.operator, escape(o.description), f"[{COLOR[o.verdict]}]{o.verdict}[/]", by,
               f"{o.seconds:.1f}s"]
        if with_proof:
            row.append(escape(o.proof or ""))
        t.add_row(*row)
    return t


def score_line(report) -> str:
    o = report.original
    return (f"{report.subject}: mutation score {report.score} caught ({len(report.outcomes)} mutants of "
            f"{len(report.operators)} operator kind{'s' if len(report.operators) != 1 else ''}, "
            f"{report.count('equivalent')} equivalent, "
            + (f"{report.count('redundant')} declared redundant, " if report.count('redundant') else "") +
            f"{report.count('unbuildable')} unbuildable; original {o['states']:,} states in {o['seconds']:.1f}s) "
            f"in {report.seconds:.1f}s")


def print_report(report, *, summary=False, with_proof=False):
    if not summary:
        out.print(_table(report, with_proof))
    for verdict, what in (("survived", "survived (a property is missing)"),
                          ("stale", "declared redundant but not a survivor (the declaration is stale)"),
                          ("redundant", "redundant, as the spec declares (not scored)"), ("incomplete", "incomplete"),
                          ("unbuildable", "unbuildable (skipped)"), ("equivalent", "equivalent (not scored)")):
        items = [o for o in report.outcomes if o.verdict == verdict]
        if not items or (summary and verdict == "equivalent"):
            continue
        out.print(f"[{COLOR[verdict]}]{what}: {len(items)}[/]")
        for o in items:
            out.print(escape(f"  {o.id}: {o.description}" + (f" [{o.detail}]" if o.detail else "")))
    if report.skipped and not summary:
        out.print(f"left out: {len(report.skipped)} rewrite(s) identical to the original or to an earlier mutant")
    out.print(("[bold green]" if report.full else "[bold red]") + score_line(report) + "[/]")


def as_json(spec, report) -> dict:
    from dataclasses import asdict
    o = report.original
    return {"spec": spec.name, "file": str(spec.path), "score": report.score, "full": report.full,
            "caught": report.count("caught"), "scored": report.denominator, "mutants": len(report.outcomes),
            "operators": report.operators, "seconds": report.seconds,
            "original": {k: o[k] for k in ("verdict", "states", "seconds")},
            "outcomes": [asdict(x) for x in report.outcomes],
            "left_out": [{"id": i, "reason": r} for i, r in report.skipped]}


@click.command()
@click.argument("specs", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--prove", "with_proof", is_flag=True,
              help="Also run the z3 prove (as the spec's [prove] table asks) on each mutant.")
@click.option("--jobs", type=click.IntRange(min=1), default=None, help="Searches at a time (default: one per core).")
@click.option("--json", "json_out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write every mutant's outcome as JSON.")
@click.option("--operator", "select", multiple=True,
              help="Only this operator, or this mutant id (repeatable).")
@click.option("--list", "list_only", is_flag=True, help="Print the catalogue of mutants; search nothing.")
@click.option("--summary", is_flag=True, help="Only the mutants not caught and the score line.")
@click.option("--budget", type=click.FloatRange(min=1), default=2.0, show_default=True,
              help="A mutant's search stops after this many times the original's states (then: incomplete).")
@click.option("--cache", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Keep outcomes in this directory and reuse those whose model, code and settings are unchanged.")
def mutate(specs, with_proof, jobs, json_out, select, list_only, summary, budget, cache):
    """Mutation testing: every careless change the operators make to SPEC's model must break a property."""
    from ..checker import mutate as M
    loaded = [(_load(p, select)) for p in specs]
    if list_only:
        for spec, mutants in loaded:
            chosen = [m for m in mutants if not select or m.operator in select or m.id in select]
            t = Table(title=f"mutants of {spec.name}: {len(chosen)} of {len({m.operator for m in chosen})} "
                            "operator kinds")
            for col in ("mutant", "description"):
                t.add_column(col, overflow="fold")
            for m in chosen:
                t.add_row(escape(m.id), escape(m.description))
            out.print(t)
        sys.exit(0)
    reports = []
    for spec, mutants in loaded:
        n = sum(1 for m in mutants if not select or m.operator in select or m.id in select)
        try:
            r = M.run(spec, M.check_config(spec), jobs=jobs, with_proof=with_proof, select=list(select) or None,
                      progress=_progress(spec.name, n), budget=budget, cache=cache)
        except M.BadSubject as e:
            _fail(f"{spec.path}: check: {e}")
        r = _with_companions(M, spec, r, jobs, with_proof, budget, cache)
        if spec.redundant:
            r = M.declare_redundant(r, spec.redundant)
        print_report(r, summary=summary, with_proof=with_proof)
        reports.append((spec, r))
    if json_out:
        json_out.write_text(json.dumps([as_json(s, r) for s, r in reports], indent=1) + "\n")
    sys.exit(0 if all(r.full for _, r in reports) else 1)
