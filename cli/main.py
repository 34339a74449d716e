"""pddgpu-verify command line.

Exit codes (``EXIT_CODES``, the README's table): 0 verified (or every
verdict as expected), 1 a violation, deadlock or liveness failure (or a
replay that does not confirm), 2 bad input (one line ``pddgpu-verify: error:
FILE: FIELD: message``, click's usage errors too), 3 incomplete (a bound was
hit), 4 some verdict differs from the spec's expectation, 5 a resource limit
of the machine (out of memory, disk full), 6 an internal error (a bug: one
line, the traceback saved to a file), 130 interrupted (Ctrl-C).
"""
from __future__ import annotations

import errno
import functools
import os
import sys
import tempfile
import traceback
from pathlib import Path

import click
from rich.console import Console

from ..checker.spec import SpecError, load_spec
from ..checker.trace import TraceError, load_trace
from ..model.options import OPTIONS, OptionError
from . import render

EXIT = {"OK": 0, "VIOLATION": 1, "DEADLOCK": 1, "LIVENESS": 1, "INCOMPLETE": 3}
EXIT_INPUT, EXIT_RESOURCE, EXIT_INTERNAL, EXIT_INTERRUPTED = 2, 5, 6, 130
EXIT_CODES = {0: "ok", 1: "violation", 2: "bad input", 3: "incomplete", 4: "differs from expected",
              5: "resource limit", 6: "internal error", 130: "interrupted"}
out = Console(highlight=False, width=None if sys.stdout.isatty() else 230)


def _one_line(message: str) -> str:
    return " ".join(str(message).split()) if "\n" in str(message) or "\r" in str(message) else str(message)


def fail_input(message: str):
    click.echo(f"pddgpu-verify: error: {_one_line(message)}", err=True)
    sys.exit(EXIT_INPUT)


def check_output_dir(option: str, d: Path):
    """``d`` can be a folder to write into (made when missing): checked before a run, not after it."""
    p = Path(d)
    if p.exists() and not p.is_dir():
        fail_input(f"{option}: {p}: exists and is not a folder")
    q = p
    while not q.exists():
        if q.parent == q:
            break
        q = q.parent
    if q.exists() and not q.is_dir():
        fail_input(f"{option}: {p}: {q} is a file, so no folder can be made under it")
    if q.exists() and not os.access(q, os.W_OK | os.X_OK):
        fail_input(f"{option}: {p}: {q} is not writable")


def check_output_file(option: str, f: Path):
    """``f`` can be written: its folder exists (it is not made for a file), ``f`` is no folder."""
    p = Path(f)
    if p.is_dir():
        fail_input(f"{option}: {p}: is a folder, not a file")
    parent = p.parent
    if not parent.is_dir():
        fail_input(f"{option}: {p}: no folder {parent}" + (" (it is a file)" if parent.exists() else ""))
    if not os.access(parent, os.W_OK | os.X_OK) or (p.exists() and not os.access(p, os.W_OK)):
        fail_input(f"{option}: {p}: not writable")


class Cli(click.Group):
    """The group, run so that every way out is an exit code of ``EXIT_CODES`` and at most one line on stderr:
    click's usage errors in the tool's own format, Ctrl-C, out of memory, and a bug (its traceback goes to a
    file, or to stderr with PDDGPU_VERIFY_TRACEBACK=1)."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        try:
            rv = super().main(args, prog_name or "pddgpu-verify", complete_var, False, **extra)
        except SystemExit:
            raise
        except click.UsageError as e:
            hint = e.param.get_error_hint(e.ctx) if getattr(e, "param", None) is not None and e.ctx else None
            msg = e.message if hint and e.message else e.format_message()
            cmd = e.ctx.command_path if e.ctx else "pddgpu-verify"
            fail_input(f"{hint.replace(chr(39), '')}: {msg} (see {cmd} --help)" if hint and e.message
                       else f"{msg} (see {cmd} --help)")
        except click.ClickException as e:            # (click's FileError and the like exit 1, a VIOLATION here)
            fail_input(e.format_message())
        except (click.Abort, KeyboardInterrupt, EOFError):
            click.echo("\npddgpu-verify: interrupted", err=True)
            sys.exit(EXIT_INTERRUPTED)
        except MemoryError:
            click.echo("pddgpu-verify: resource limit: out of memory (bound the run: --max-states, --max-depth, "
                       "--hash-compact, fewer workers)", err=True)
            sys.exit(EXIT_RESOURCE)
        except OSError as e:
            if e.errno == errno.EPIPE:            # the reader of our output went away (| head): nothing to say
                sys.exit(0)
            if e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EMFILE, errno.ENFILE, errno.ENOMEM):
                click.echo(f"pddgpu-verify: resource limit: {_one_line(e)}", err=True)
                sys.exit(EXIT_RESOURCE)
            fail_input(f"{e.filename or 'file'}: {e.strerror or e}")
        except Exception as e:                    # noqa: BLE001 - a bug: one line, the traceback kept
            _internal_error(e)
        sys.exit(rv if isinstance(rv, int) and not isinstance(rv, bool) else 0)


def _internal_error(e: BaseException):
    text = "".join(traceback.format_exception(e))
    where = ""
    if os.environ.get("PDDGPU_VERIFY_TRACEBACK"):
        sys.stderr.write(text)
    else:
        try:
            fd, name = tempfile.mkstemp(prefix="pddgpu-verify-", suffix=".traceback.txt")
            with os.fdopen(fd, "w") as f:
                f.write(text)
            where = f"; traceback in {name}"
        except OSError:
            where = "; set PDDGPU_VERIFY_TRACEBACK=1 to see the traceback"
    msg = _one_line(str(e))
    if len(msg) > 300:
        msg = msg[:297] + "..."
    click.echo(f"pddgpu-verify: internal error: {type(e).__name__}: {msg} (a bug in pddgpu-verify, please report "
               f"it{where})", err=True)
    sys.exit(EXIT_INTERNAL)


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


@click.group(cls=Cli, context_settings={"help_option_names": ["-h", "--help"]})
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
@click.option("--certificates/--search", "certificates", default=True, show_default=True,
              help="with --prove: check each spec's shipped proof certificate (specs/certificates/) instead of "
                   "mining candidates again; a certificate that no longer carries a proof falls back to the search")
@click.option("--write-certificates", is_flag=True,
              help="with --prove: search every proof in full and write what it kept as the spec's certificate")
@click.option("--prove/--no-prove", "with_proofs", default=False,
              help="Also run the z3 back end on each spec and show its result beside the verdict.")
@click.option("--json", "json_out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write every outcome (verdict, expectation, statistics, trace path) as JSON.")
@click.option("--hash-compact", is_flag=True,
              help="Store 64-bit state hashes instead of states (much less memory; OK then holds up to the "
                   "reported collision probability).")
@click.option("--fixes/--no-fixes", "with_fixes", default=True,
              help="Also check each defect spec with the fix it names (fixed_by); it must verify.")
@click.option("--memory-limit", "memory_limit", default=None, metavar="SIZE",
              help="Resident memory budget of the search (512M, 4G; default: 3/4 of the memory available). "
                   "Past it the run ends INCOMPLETE with what it explored.")
@click.option("--backend", type=click.Choice(["auto", "native", "python"]), default="auto", show_default=True,
              help="native: the search compiled to C (needs gcc); python: the reference explorer; auto: native "
                   "wherever it can serve the run (not liveness, not dfs).")
@click.option("--por", is_flag=True, help="Partial-order reduction (docs/POR.md; runs on the Python back end).")
@click.option("--por-compare", is_flag=True,
              help="With the reduction, also run without it and show both state counts and verdicts.")
@click.option("--jobs", "-j", type=click.IntRange(min=1), default=None,
              help="Specs run at once, each in its own process (default: one per core).")
@click.option("--threads", type=click.IntRange(min=1, max=64), default=1, show_default=True,
              help="Threads of each native breadth-first search (the same verdicts and counterexamples as one).")
@input_errors
def check(specs, symmetry, strategy, max_states, max_depth, traces_dir, against_expected, with_proofs, with_fixes,
          threads,
          hash_compact, json_out, memory_limit, backend, jobs, por, por_compare, certificates, write_certificates):
    """Explore every interleaving of SPECS (default: every spec in specs/)."""
    from ..checker.run import run_spec
    named = bool(specs)
    files = list(specs) or default_specs()
    check_output_dir("--traces-dir", traces_dir)        # every output checked before any work
    memory_limit_mb = None
    if memory_limit is not None:
        from ..checker.explorer import parse_memory
        try:
            memory_limit_mb = parse_memory(memory_limit)
        except ValueError as e:
            fail_input(f"--memory-limit: {e}")
    if json_out:
        check_output_file("--json", json_out)
    if write_certificates and not with_proofs:
        fail_input("--write-certificates: needs --prove (a certificate is what a proof kept)")
    loaded = []
    for f in files:                             # all input errors before any work
        s = load_spec(f)
        if with_proofs and certificates and not write_certificates:
            from ..checker.certificate import load as load_certificate
            load_certificate(s)             # a malformed certificate is bad input, found before any work
        loaded.append(s)
        if with_fixes and not named and s.fixed_by:
            loaded.append(s.with_fixes())
    outcomes = []
    proofs = {}
    from ..checker.explorer import default_memory_limit_mb
    from ..checker.parallel import default_jobs, run_specs
    from ..checker.run import CheckOutcome
    jobs = min(jobs or default_jobs(), len(loaded))
    if memory_limit_mb is None and jobs > 1:
        memory_limit_mb = max(16, default_memory_limit_mb() // jobs)     # the machine's share, split
    kwargs = dict(symmetry=symmetry, strategy=strategy, max_states=max_states, max_depth=max_depth,
                  traces_dir=traces_dir, progress=jobs == 1, hash_compact=hash_compact,
                  memory_limit_mb=memory_limit_mb, backend=backend, por=por, por_compare=por_compare)
    kwargs["workers"] = threads
    built = {}        # run index -> outcome: each spec's model is rebuilt once, when its run completes

    def row_done(d):
        # each row as its run completes; the table below, in spec order, is the record
        o = built[d.index] = CheckOutcome(d.spec, d.spec.build(), d.result, d.trace_path)
        if len(loaded) > 1:
            render.print_progress_row(out, o, d.proof, len(built), len(loaded), d.seconds)

    for d in run_specs(loaded, jobs=jobs, with_proofs=with_proofs, run_kwargs=kwargs, on_done=row_done,
                       proof_kwargs={"certificates": certificates, "write_certificate": write_certificates}):
        o = built[d.index]
        outcomes.append(o)
        if named and len(loaded) == 1:
            render.print_outcome(out, o)
        if with_proofs:
            proofs[d.spec.name] = d.proof
    render.print_check_table(out, outcomes, proofs)
    for o in outcomes if por or por_compare else ():
        st = o.result.stats
        base = (f"; without: {st['states_without_por']:,} states, {st['verdict_without_por']}"
                f" ({st['path_without_por']} steps)" if "states_without_por" in st else "")
        out.print(render.esc(f"por {o.spec.name}: {st['states']:,} states, {o.result.label} "
                             f"({max(len(o.result.path) - 1, 0)} steps), {st.get('por_reduced_states', 0):,} "
                             f"expanded through an ample set{base}"), soft_wrap=True)
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
            out.print(f"[bold red]{len(bad)} verdict(s) differ from the expected ones:[/] " + render.esc(", ".join(bad)))
            sys.exit(4)
        out.print(f"[bold green]all {len(outcomes)} verdicts as expected[/]"
                  + (f" (and {sum(1 for p in proofs.values() if p)} z3 results)" if proofs else ""))
        sys.exit(0)
    sys.exit(max(EXIT[o.result.verdict] for o in outcomes))


@main.command()
@click.argument("trace", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--impl", is_flag=True, help="Drive the real implementation (pddgpu/) through the trace.")
@click.option("--lang", type=click.Choice(["python", "c"]), default="python", show_default=True,
              help="With --impl: the Python implementation (pddgpu/) or the document's C managers (csrc/, gcc).")
@click.option("--fix", "fixes", multiple=True, help="With --impl: turn on this fix option (repeatable).")
@click.option("--quiet", "-q", is_flag=True, help="Only the verdict line.")
@input_errors
def replay(trace, impl, lang, fixes, quiet):
    """Re-run TRACE on the model step by step and confirm its violation."""
    for f in fixes:
        if f not in OPTIONS or OPTIONS[f].kind != "fix":
            fail_input(f"--fix: unknown fix {f!r} (known: {', '.join(n for n, o in OPTIONS.items() if o.kind == 'fix')})")
    if fixes and not impl:
        fail_input("--fix: only with --impl (the model replay follows the trace's own options)")
    if lang != "python" and not impl:
        fail_input("--lang: only with --impl (the model replay runs no code)")
    data = load_trace(trace)
    from ..checker.replay import replay as do_replay
    res = do_replay(trace, data)          # the same checks, and the same verdict, before the implementation
    if impl:
        if not res.confirmed:
            # a trace the model does not confirm (truncated, tampered) shows no violation to reproduce: the code's
            # run past its end would find the defect on its own, and say REPRODUCED of a trace that shows nothing
            out.print(f"[bold red]model replay: {render.esc(res.message)}[/]")
            out.print("result: NOT CONFIRMED - the trace is not a confirmed run of the model; not replayed on the "
                      "implementation", markup=False)
            sys.exit(1)
        from ..conformance.impl_replay import format_report, replay_on_impl
        from ..conformance.c_build import CBackendUnavailable
        if lang == "c":
            from ..conformance.c_harness import format_c_report as format_report, replay_on_c as replay_on_impl
        try:
            report = replay_on_impl(data, {f: True for f in fixes} or None)
        except ValueError as e:
            fail_input(f"{trace}: {e}")
        except CBackendUnavailable as e:
            fail_input(f"--lang: {e}")
        out.print(format_report(report), markup=False)
        sys.exit(0 if report.as_expected else 1)
    if not quiet:
        render.print_replay(out, trace, data, res)
    out.print(("[bold green]" if res.confirmed else "[bold red]") + render.esc(res.message) + "[/]")
    sys.exit(0 if res.confirmed else 1)


@main.command()
@click.argument("trace", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--html", "html_out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the trace as one self-contained HTML page (swimlanes, changes, document sections).")
@input_errors
def show(trace, html_out):
    """Print TRACE as per-thread swimlanes (exit 1 when the model cannot take its steps or its verdict does not
    hold at its end: ``replay`` says where)."""
    from ..checker.replay import replay as do_replay
    if html_out:
        check_output_file("--html", html_out)
    data = load_trace(trace)
    res = do_replay(trace, data)
    render.print_swimlanes(out, res.model, data)
    if html_out:
        from .html_report import trace_page
        html_out.write_text(trace_page(res.model, data, source=str(trace),
                                       warning=None if res.confirmed else res.message), encoding="utf-8")
        out.print(f"HTML written to {render.esc(html_out)}", soft_wrap=True)
    if not res.confirmed:
        out.print(f"[bold red]not a confirmed run of the model: {render.esc(res.message)}[/]")
        sys.exit(1)


@main.command()
@click.option("--workers", "worker_counts", default="1,2,3,4,5", show_default=True,
              help="Comma-separated worker counts.")
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the table as markdown (e.g. docs/BENCH.md).")
@click.option("--max-states", type=click.IntRange(min=1), default=20_000_000, show_default=True)
@click.option("--proofs", is_flag=True, help="Time prove --any-workers on the fixed specs instead.")
@click.option("--mutate", "mutation", is_flag=True, help="Time mutate (mutation testing) on the fixed specs instead.")
@click.option("--vs-spin", "vs_spin", is_flag=True,
              help="Run SPIN (needs spin and gcc) and the explorer on the same models instead (checker/bench.py).")
@click.option("--time-limit", type=click.FloatRange(min=1), default=600, show_default=True,
              help="With --vs-spin: seconds each run may take.")
@input_errors
def bench(worker_counts, output, max_states, proofs, mutation, vs_spin, time_limit):
    """Explore the fixed VRAM and GTT specs at 1..5 workers; time, rate, memory."""
    from ..checker.bench import run_bench, run_mutate_bench, run_proof_bench
    if output:
        check_output_file("--output", output)
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
    if vs_spin:
        from ..checker.bench import run_vs_spin
        run_vs_spin(out, counts, output, time_limit)
        return
    run_bench(out, counts, output, max_states)


@main.command()
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path), default=Path("docs/FINDINGS.md"),
              show_default=True)
@click.option("--traces-dir", type=click.Path(file_okay=False, path_type=Path), default=Path("traces"),
              show_default=True)
@click.option("--html", "html_out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the findings as one self-contained HTML page, each trace as swimlanes.")
@input_errors
def findings(output, traces_dir, html_out):
    """Re-run every defect spec and its fix, and regenerate docs/FINDINGS.md."""
    from ..checker.findings import write_findings
    check_output_file("--output", output)
    check_output_dir("--traces-dir", traces_dir)
    if html_out:
        check_output_file("--html", html_out)
    write_findings(out, default_specs(), output, traces_dir, html=html_out, progress=True)


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
from .spin_commands import export  # noqa: E402 - the Promela export (SPIN) lives in its own module too
main.add_command(export)

if __name__ == "__main__":
    main()
