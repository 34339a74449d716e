"""pddgpu-verify command line.

Exit codes: 0 verified (or every verdict as expected), 1 a violation,
deadlock or liveness failure (or a replay that does not confirm), 2 bad
input, 3 incomplete (a bound was hit), 4 some verdict differs from the
spec's expectation.
"""
from __future__ import annotations

import functools
import sys
from pathlib import Path

import click
from rich.console import Console

from ..checker.spec import SpecError, load_spec
from ..checker.trace import TraceError, load_trace
from ..model.options import OPTIONS, OptionError
from . import render

EXIT = {"OK": 0, "VIOLATION": 1, "DEADLOCK": 1, "LIVENESS": 1, "INCOMPLETE": 3}
out = Console(highlight=False, width=None if sys.stdout.isatty() else 230)


def fail_input(message: str):
    click.echo(f"pddgpu-verify: error: {message}", err=True)
    sys.exit(2)


def input_errors(fn):
    """Bad input is one line naming file and field, exit 2, never a traceback."""
    @functools.wraps(fn)
    def wrapper(*a, **kw):
        try:
            return fn(*a, **kw)
        except (SpecError, TraceError) as e:
            fail_input(str(e))
        except OptionError as e:
            fail_input(f"option {e.field}: {e}")
    return wrapper


def default_specs() -> list[Path]:
    d = Path("specs")
    if not d.is_dir():
        fail_input("specs: no specs/ directory here; run from the project root or name spec files")
    files = sorted(d.glob("*.toml"))
    if not files:
        fail_input("specs: no *.toml files")
    return files


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="pddgpu-verify")
def main():
    """Model checker for the PDDGPU VRAM/GTT manager concurrency protocol."""


@main.command()
@click.argument("specs", nargs=-1, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--symmetry/--no-symmetry", default=None, help="Reduce by worker symmetry (default: as the spec says).")
@click.option("--strategy", type=click.Choice(["bfs", "dfs"]), default=None)
@click.option("--max-states", type=click.IntRange(min=1), default=None)
@click.option("--max-depth", type=click.IntRange(min=1), default=None)
@click.option("--traces-dir", type=click.Path(file_okay=False, path_type=Path), default=Path("traces"),
              show_default=True, help="Where counterexample traces are written.")
@click.option("--expected/--no-expected", "against_expected", default=None,
              help="Exit on the comparison with expected verdicts (default when no spec is named).")
@click.option("--prove/--no-prove", "with_proofs", default=False,
              help="Also run the z3 back end on each spec and show its result beside the verdict.")
@click.option("--json", "json_out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write every outcome (verdict, expectation, statistics, trace path) as JSON.")
@click.option("--hash-compact", is_flag=True,
              help="Store 64-bit state hashes instead of states (much less memory; OK then holds up to the "
                   "reported collision probability).")
@click.option("--fixes/--no-fixes", "with_fixes", default=True,
              help="Also check each defect spec with the fix it names (fixed_by); it must verify.")
@input_errors
def check(specs, symmetry, strategy, max_states, max_depth, traces_dir, against_expected, with_proofs, with_fixes,
          hash_compact, json_out):
    """Explore every interleaving of SPECS (default: every spec in specs/)."""
    from ..checker.run import run_spec
    named = bool(specs)
    files = list(specs) or default_specs()
    loaded = []
    for f in files:                             # all input errors before any work
        s = load_spec(f)
        loaded.append(s)
        if with_fixes and not named and s.fixed_by:
            loaded.append(s.with_fixes())
    outcomes = []
    proofs = {}
    for spec in loaded:
        o = run_spec(spec, symmetry=symmetry, strategy=strategy, max_states=max_states, max_depth=max_depth,
                     traces_dir=traces_dir, progress=True, hash_compact=hash_compact)
        outcomes.append(o)
        if named and len(loaded) == 1:
            render.print_outcome(out, o)
        if with_proofs:
            proofs[spec.name] = _proof_summary(spec)
    render.print_check_table(out, outcomes, proofs)
    if json_out:
        import json
        json_out.write_text(json.dumps([{
            "spec": o.spec.name, "file": str(o.spec.path), "model": o.spec.model,
            "verdict": o.result.verdict, "property": o.result.property, "thread":
                o.model.threads[o.result.thread].name if o.result.thread is not None else None,
            "expected": {"verdict": o.spec.expect_verdict, "property": o.spec.expect_property},
            "as_expected": o.matches, "stats": o.result.stats, "vacuous": o.vacuous,
            "expected_vacuous": o.spec.expect_vacuous,
            "trace": str(o.trace_path) if o.trace_path else None,
            "proof": proofs[o.spec.name].as_json() if proofs.get(o.spec.name) else None}
            for o in outcomes], indent=1) + "\n")
    if against_expected is None:
        against_expected = not named
    if against_expected:
        bad = []
        for o in outcomes:
            z = proofs.get(o.spec.name)
            if not o.matches or (z and not z.matches):
                bad.append(o.spec.name + (f" (z3: {z.reason})" if z and not z.matches else ""))
        if bad:
            out.print(f"[bold red]{len(bad)} verdict(s) differ from the expected ones:[/] " + ", ".join(bad))
            sys.exit(4)
        out.print(f"[bold green]all {len(outcomes)} verdicts as expected[/]"
                  + (f" (and {sum(1 for p in proofs.values() if p)} z3 results)" if proofs else ""))
        sys.exit(0)
    sys.exit(max(EXIT[o.result.verdict] for o in outcomes))


def _proof_summary(spec):
    """The z3 back end's word on a spec, for the proof column, and whether it
    is the spec's ``[expect] prove`` (``checker/proof_check.py``): for a
    defect spec, what prove says of the property the explorer breaks; for a
    spec expected to verify, how many properties it proves by induction.
    None for a ``+fix`` variant."""
    from ..checker.proof_check import run_proof
    return run_proof(spec)


@main.command()
@click.argument("trace", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--impl", is_flag=True, help="Drive the real implementation (pddgpu/) through the trace.")
@click.option("--fix", "fixes", multiple=True, help="With --impl: turn on this fix option (repeatable).")
@click.option("--quiet", "-q", is_flag=True, help="Only the verdict line.")
@input_errors
def replay(trace, impl, fixes, quiet):
    """Re-run TRACE on the model step by step and confirm its violation."""
    data = load_trace(trace)
    if impl:
        from ..pddgpu.impl_replay import format_report, replay_on_impl
        for f in fixes:
            if f not in OPTIONS or OPTIONS[f].kind != "fix":
                fail_input(f"--fix: unknown fix '{f}' (known: {', '.join(n for n, o in OPTIONS.items() if o.kind == 'fix')})")
        from ..checker.trace import model_of_trace, validated_states
        validated_states(trace, data, model_of_trace(trace, data))     # the same checks as the model replay
        try:
            report = replay_on_impl(data, {f: True for f in fixes} or None)
        except ValueError as e:
            fail_input(f"{trace}: {e}")
        out.print(format_report(report))
        sys.exit(0 if report.as_expected else 1)
    from ..checker.replay import replay as do_replay
    res = do_replay(trace, data)
    if not quiet:
        render.print_replay(out, trace, data, res)
    out.print(("[bold green]" if res.confirmed else "[bold red]") + res.message + "[/]")
    sys.exit(0 if res.confirmed else 1)


@main.command()
@click.argument("trace", type=click.Path(dir_okay=False, path_type=Path))
@input_errors
def show(trace):
    """Print TRACE as per-thread swimlanes."""
    from ..checker.trace import model_of_trace, validated_states
    data = load_trace(trace)
    model = model_of_trace(trace, data)
    validated_states(trace, data, model)
    render.print_swimlanes(out, model, data)


@main.command()
@click.option("--workers", "worker_counts", default="1,2,3,4,5", show_default=True,
              help="Comma-separated worker counts.")
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the table as markdown (e.g. docs/BENCH.md).")
@click.option("--max-states", type=click.IntRange(min=1), default=20_000_000, show_default=True)
@click.option("--proofs", is_flag=True, help="Time prove --any-workers on the fixed specs instead.")
@click.option("--mutate", "mutation", is_flag=True, help="Time mutate (mutation testing) on the fixed specs instead.")
@input_errors
def bench(worker_counts, output, max_states, proofs, mutation):
    """Explore the fixed VRAM and GTT specs at 1..5 workers; time, rate, memory."""
    from ..checker.bench import run_bench, run_mutate_bench, run_proof_bench
    if proofs:
        run_proof_bench(out, output)
        return
    if mutation:
        run_mutate_bench(out, output)
        return
    try:
        counts = [int(x) for x in worker_counts.split(",")]
    except ValueError:
        fail_input(f"--workers: not a comma-separated list of integers: {worker_counts!r}")
    if any(not 1 <= c <= 8 for c in counts):
        fail_input("--workers: counts must be 1 to 8")
    run_bench(out, counts, output, max_states)


@main.command()
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path), default=Path("docs/FINDINGS.md"),
              show_default=True)
@click.option("--traces-dir", type=click.Path(file_okay=False, path_type=Path), default=Path("traces"),
              show_default=True)
@input_errors
def findings(output, traces_dir):
    """Re-run every defect spec and its fix, and regenerate docs/FINDINGS.md."""
    from ..checker.findings import write_findings
    write_findings(out, default_specs(), output, traces_dir)


@main.command()
def options():
    """List the readings (document ambiguities) and fixes the models accept."""
    render.print_options(out)


@main.command()
@click.argument("spec", type=click.Path(dir_okay=False, path_type=Path))
@input_errors
def properties(spec):
    """List the properties of SPEC's model."""
    s = load_spec(spec)
    render.print_properties(out, s.build())


def _register_optional():
    # the z3 commands live in their own module; register them when it is there, and let a broken one fail loudly
    import importlib.util
    if importlib.util.find_spec(f"{__package__}.z3_commands") is None:
        return
    from .z3_commands import bmc, prove
    main.add_command(prove)
    main.add_command(bmc)


_register_optional()
from .mutate_command import mutate  # noqa: E402 - mutation testing lives in its own module, like the z3 commands
main.add_command(mutate)

if __name__ == "__main__":
    main()
