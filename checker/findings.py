"""``pddgpu-verify findings``: regenerate docs/FINDINGS.md from real runs.

For every spec that names a defect: run it (its verdict and shortest trace),
run it again with the fixes it names (which must verify), ask z3 about both
(BMC on the defect, induction on the fixed spec, as ``check --prove`` does),
and describe the interleaving in words from the trace itself.  Three kinds of
finding are kept apart:

* defects of the document as written (``[spec] kind = "defect"``, the
  default), under the readings each spec names;
* hazards of this project's own fixes (``kind = "fix_hazard"``): reachable
  only with fixes the spec turns on, so the generator also runs the spec
  without them and shows that the document as written passes the same check;
* facts about the document's code that are not concurrency defects at all:
  readings that stand in for code that cannot work as printed
  (``Option.finding``, e.g. the GTT fields drm_mm does not have).

Nothing in the document is written by hand except the headings.
"""
from __future__ import annotations

import datetime
import time
from dataclasses import dataclass, replace
from pathlib import Path

from ..model.options import OPTIONS
from .run import run_spec
from .spec import load_spec
from .trace import to_itf


def interleaving_in_words(model, path) -> list[str]:
    """Consecutive steps of one thread inside one call become one line; values in the words ``show`` prints
    (flags by name, sizes with units)."""
    from ..cli.words import Words
    words = Words(model)
    lay = model.layout
    lines: list[str] = []
    group = None
    steps: list[str] = []

    def flush():
        if group:
            t, call = group
            lines.append(f"**{model.threads[t].name}** {call or ''}: " + " → ".join(steps))

    prev = None
    for mv, s in path:
        if mv is None:
            prev = s
            continue
        st = model.threads[mv.thread].program.steps[mv.pc]
        key = (mv.thread, st.call)
        if key != group:
            flush()
            group, steps = key, []
        changed = [f"{lay.decls[k].name.split('.')[-1]}={words.value(lay.decls[k].name, s[k])}" for k in range(len(s))
                   if s[k] != prev[k] and lay.decls[k].kind != "pc" and lay.decls[k].name not in ("seen",)]
        label = st.label.split(".")[-1]
        steps.append(label + (f" ({', '.join(changed)})" if changed else ""))
        prev = s
    flush()
    return lines


@dataclass
class TraceBlock:
    """Where the HTML findings draw a finding's trace as swimlanes; the markdown leaves it out."""
    model: object
    data: dict
    anchor: str


def _trace_block(o, anchor: str) -> TraceBlock:
    """The run's counterexample as the ITF trace ``run_spec`` writes (the same function, the same fields)."""
    r, spec = o.result, o.spec
    data = to_itf(o.model, r.path, spec=spec.name, source=str(spec.path), verdict=r.verdict, prop=r.property,
                  thread=r.thread, loop_start=r.loop_start, detail=r.detail, extra={"defect": spec.defect})
    return TraceBlock(o.model, data, anchor)


NO_Z3 = ("LIVENESS", "DEADLOCK")      # verdicts z3 states no property for: the explorer's run is the proof


def defect_proof(spec, progress=None) -> str:
    """What z3 says of the property a defect spec breaks (bounded model
    checking to ``[prove] bmc_depth``), as ``check --prove`` shows it."""
    if spec.expect_verdict in NO_Z3:
        return f"n/a ({spec.expect_verdict.lower()}: the explorer only)"
    from .prove import prove_violation
    t0 = time.perf_counter()
    _, results = prove_violation(spec, progress=progress)      # as check --prove asks it
    took = time.perf_counter() - t0
    r = next((r for r in results if r.kind == "property" and r.name == spec.expect_property), None)
    if r is None:
        return "n/a (no safety property to check)"
    how = f" by BMC, {len(r.trace) - 1}-step trace" if r.trace else (" (CTI)" if r.cti else "")
    return f"{r.verdict}{how} ({took:.0f}s)"


def fix_proof(spec, progress=None) -> str:
    """What z3 says of the spec with its fixes on: every checked safety
    property proved by induction (for the spec's threads), or not."""
    if spec.expect_verdict in NO_Z3 or not spec.fixed_by:
        what = spec.expect_verdict.lower() if spec.expect_verdict in NO_Z3 else "no fix"
        return f"n/a ({what}: the explorer's run is the proof)"
    from .prove import PROVED, prove_spec
    fixed = spec.with_fixes()
    t0 = time.perf_counter()
    overall, results = prove_spec(fixed, progress=progress)
    took = time.perf_counter() - t0
    props = [r for r in results if r.kind == "property"]
    if not props:
        return "n/a (no safety property to prove)"
    proved = sum(r.verdict == PROVED for r in props)
    scope = "for any number of workers" if (fixed.prove or {}).get("any_workers") else "for the spec's threads"
    out = f"{overall} {proved}/{len(props)} by induction, {scope} ({took:.0f}s)"
    failed = [f"`{r.name}` {r.verdict}" for r in props if r.verdict != PROVED]
    return out + (f": {', '.join(failed)}" if failed else "")


def _toml(v) -> str:
    return ("true" if v else "false") if isinstance(v, bool) else f'"{v}"' if isinstance(v, str) else str(v)


def _readings_txt(spec) -> str:
    return ", ".join(f"`{k} = {_toml(v)}`" for k, v in spec.readings.items()) or "as written"


def _hazard_lines(spec, model) -> list[str]:
    """What a fix hazard needs, found by running it without each of its fixes
    and readings in turn, and without all of this project's fixes (the
    document as written, under the same readings): the same check of the
    hazard's property only."""
    only = [p for p in [spec.expect_property] if p in model.properties]

    def without(tag, **changes):
        res = run_spec(replace(spec, name=f"{spec.name}-without-{tag}", properties=only, **changes),
                       traces_dir=None).result
        return res, res.verdict == "OK"

    fixes_on = _fixes_on(spec)
    need_fix, other_fix, need_reading = [], [], []
    for f in fixes_on:
        res, gone = without(f, fixes={**spec.fixes, f: False})
        (need_fix if gone else other_fix).append((f, res))
    for k in spec.readings:
        res, gone = without(k, readings={x: v for x, v in spec.readings.items() if x != k})
        if gone:
            need_reading.append((k, res))
    bare, bare_gone = without("fixes", fixes={})
    prop = f"`{spec.expect_property}`"
    lines = []
    if need_fix:
        lines.append("- **A hazard of:** this project's " + ", ".join(f"`{f}`" for f, _ in need_fix)
                     + (" together with the reading(s) " + ", ".join(f"`{k} = {_toml(spec.readings[k])}`"
                                                                   for k, _ in need_reading) if need_reading else "")
                     + ": " + " ".join(f"`{f}`: {OPTIONS[f].text}" for f, _ in need_fix))
    lines += [f"- **Without `{f}`** (the same check of {prop} only): {res.label}, {res.stats['states']:,} states"
              for f, res in need_fix]
    lines += [f"- **With `{k}` at its default `{_toml(OPTIONS[k].default)}`** (the same check of {prop} only): "
              f"{res.label}, {res.stats['states']:,} states" for k, res in need_reading]
    if other_fix:
        lines.append("- **Not needed:** " + ", ".join(f"`{f}` (without it: {res.label})" for f, res in other_fix)
                     + ": on in the spec, not needed for the hazard")
    lines.append(f"- **The document as written** (every fix of this project off, the same readings, {prop} only): "
                 f"{bare.label}, {bare.stats['states']:,} states"
                 + ("; the document as written does not have this hazard" if bare_gone else
                    "; **the hazard is in the document as written too**: this spec should not be a fix_hazard"))
    return lines


def _as_written_line(spec, model) -> str:
    """A defect found with some of this project's fixes already on (to get other defects out of the way) must
    be in the document as written too, else it is a hazard of those fixes: run it without them to say which."""
    only = [p for p in [spec.expect_property] if p in model.properties]
    res = run_spec(replace(spec, name=f"{spec.name}-as-written", fixes={}, properties=only), traces_dir=None).result
    return (f"- **The document as written** (the fixes already on turned off, `{spec.expect_property}` only): "
            f"{res.label}, {res.stats['states']:,} states"
            + (f"; the document as written breaks `{spec.expect_property}` too" if res.verdict != "OK" else
               "; **the document as written does not have it**: a hazard of the fixes on, which should be "
               "`kind = \"fix_hazard\"`"))


def _fixes_on(spec) -> list:
    return [k for k, v in spec.fixes.items() if v]


def _section(out, spec, number, traces_dir, proofs, hazard=False, progress=None):
    """Run one defect (or hazard) spec and its fix; its summary row and body."""
    progress = progress or _quiet()
    progress.clear()
    out.print(f"  {spec.name} ...")
    progress.set_phase("explorer")
    o = run_spec(spec, traces_dir=traces_dir)
    r = o.result
    fix_txt, fix_run = "—", "—"
    if spec.fixed_by:
        progress.set_phase(f"explorer with {', '.join(spec.fixed_by)}")
        f = run_spec(spec.with_fixes(), traces_dir=None)
        fr = f.result
        fix_run = f"{fr.label}, {fr.stats['states']:,} states"
        fix_txt = ", ".join(f"`{x}`" for x in spec.fixed_by)
    progress.set_phase("z3 on the defect")
    z3_defect = defect_proof(spec, progress) if proofs else "not run"
    progress.set_phase("z3 on the fixed spec")
    z3_fix = fix_proof(spec, progress) if proofs and spec.fixed_by else ("not run" if spec.fixed_by else "—")
    prop = r.property or "-"
    steps = len(r.path) - 1 if r.path else 0
    trace = f"`{o.trace_path}`" if o.trace_path else "—"
    row = (f"| {number} | {spec.defect} | `{spec.path.name}` | {r.label} | {steps} | {trace} | {fix_txt} | {fix_run} "
           f"| {z3_fix} |")
    fixes_on = _fixes_on(spec)
    alloc = "".join(f", `allocator.{k} = {v}`" for k, v in (("window", spec.window), ("retry_count", spec.retry_count))
                    if v is not None)
    body = [f"### {number}. {spec.defect}" if hazard else f"## {number}. {spec.defect}", "",
            spec.description, "",
            f"- **Spec:** `specs/{spec.path.name}` (model `{spec.model}`, allocator size {spec.size:,}{alloc}, "
            f"readings {_readings_txt(spec)}, fixes already on {', '.join(f'`{x}`' for x in fixes_on) or 'none'})"]
    progress.set_phase("explorer without the fixes on")
    if hazard:
        body += _hazard_lines(spec, o.model)
    elif fixes_on:
        body.append(_as_written_line(spec, o.model))
    body += [f"- **Verdict:** {r.label} (expected {spec.expect_verdict}"
             f"{'(' + spec.expect_property + ')' if spec.expect_property else ''})"
             f" after {r.stats['states']:,} states",
             f"- **Property:** `{prop}`: {o.model.properties[prop].description if prop in o.model.properties else r.detail}",
             f"- **Trace:** `{o.trace_path}` ({steps} steps; `pddgpu-verify replay {o.trace_path}`, "
             f"`pddgpu-verify show {o.trace_path}`)" if o.trace_path else "- **Trace:** none",
             f"- **z3:** {z3_defect}", ""]
    if r.path:
        body += ["Shortest interleaving:", ""]
        body += [f"{k}. {line}" for k, line in enumerate(interleaving_in_words(o.model, r.path), 1)]
        if r.loop_start is not None:
            body.append(f"\n(the steps from transition {r.loop_start + 1} on repeat forever)")
        body.append("")
        body.append(_trace_block(o, f"finding-{number}"))
    if spec.fixed_by:
        body += ["**Fix:** " + " ".join(f"`{x}`: {OPTIONS[x].text}" for x in spec.fixed_by), "",
                 f"**Proof of the fix:** the same spec with {fix_txt} on (`pddgpu-verify check` runs it as "
                 f"`{spec.name}+fix`):", "",
                 f"- explorer, every interleaving of the spec's threads: {fix_run}",
                 f"- z3 (`prove` on the fixed spec): {z3_fix}", ""]
    return row, body


def _code_findings(specs) -> list[str]:
    """Readings that stand in for document code that cannot work as printed
    (``Option.finding``): findings of their own, not concurrency defects."""
    md = []
    for o in OPTIONS.values():
        finding = getattr(o, "finding", "")
        if not finding:
            continue
        concerned = [s for s in specs if s.model in _models_of(o)]
        md += [f"## {finding[0].upper()}{finding[1:]}", "",
               f"Not a concurrency defect: no interleaving is involved and no spec can break it, since the model cannot "
               f"run code that does not compile. It runs a reading instead, named so that no verdict rests on it "
               f"silently (document {o.section}).", "",
               o.text, "",
               f"- **Reading:** `{o.name}` = `{o.default}` "
               + ("(the only value: the model has no other meaning for it)" if len(o.choices) == 1 else
                  f"(values: {', '.join(f'`{c}`' for c in o.choices)})")
               + "; every trace records it in `#meta.options`",
               f"- **Verdicts that rest on it:** {len(concerned)} spec(s) of that manager: "
               + (", ".join(f"`{s.path.name}`" for s in concerned) or "none"), ""]
    return md


def _models_of(option) -> tuple:
    sec = option.section.upper()
    return tuple(m for m in ("vram", "gtt") if m.upper() in sec) or ("vram", "gtt")


def _quiet():
    from .z3_progress import Progress
    return Progress(False, "findings")


def write_findings(out, spec_files, output: Path, traces_dir: Path, proofs: bool = True, html: Path | None = None,
                   progress: bool = False):
    """docs/FINDINGS.md from real runs of ``spec_files``; with ``html``, the same document as one page with
    each finding's trace drawn as swimlanes.  ``progress``: a progress line on stderr (the spec, the phase,
    specs done, solver calls)."""
    from .z3_progress import Progress
    with Progress(progress, "findings") as prog:
        _write_findings(out, spec_files, output, traces_dir, proofs, html, prog)


def _write_findings(out, spec_files, output, traces_dir, proofs, html, prog):
    specs = [load_spec(f) for f in spec_files]
    defects = [s for s in specs if s.defect and s.kind == "defect"]
    hazards = [s for s in specs if s.defect and s.kind == "fix_hazard"]
    fixed = [s for s in specs if not s.defect]
    total, done = len(defects) + len(hazards) + len(fixed), 0
    md = ["# Findings", "",
          "Every defect of the PDDGPU design document's concurrency protocol that pddgpu-verify found, each with "
          "the property it breaks, the shortest interleaving (breadth-first search), its trace, the fix and the "
          "runs that prove the fix (the explorer over every interleaving, z3 by induction). Kept apart: hazards of "
          "this project's own fixes (found only with a fix of ours on, not in the document as written) and "
          "findings about the document's code that are not concurrency defects.", "",
          f"Regenerated by `pddgpu-verify findings` on {datetime.date.today().isoformat()}; every verdict, count "
          "and interleaving below comes from that run.", ""]
    cols = ["| # | defect | spec | property broken | steps | trace | fix | fixed run | z3 on the fixed spec |",
            "|---|---|---|---|---:|---|---|---|---|"]
    summary, body = list(cols), []
    for i, spec in enumerate(defects, 1):
        prog.within(f"spec {done + 1}/{total} {spec.name}")
        row, b = _section(out, spec, i, traces_dir, proofs, progress=prog)
        done += 1
        summary.append(row)
        body += b
    md += summary + [""] + body
    if hazards:
        hz_rows, hz_body = list(cols), []
        for i, spec in enumerate(hazards, 1):
            prog.within(f"spec {done + 1}/{total} {spec.name}")
            row, b = _section(out, spec, f"H{i}", traces_dir, proofs, hazard=True, progress=prog)
            done += 1
            hz_rows.append(row)
            hz_body += b
        md += ["## Hazards of this project's fixes", "",
               "Not defects of the document as written: each needs a fix of this project turned on (with the "
               "readings it names), and the same check without our fixes passes. They are what a driver taking our "
               "fixes must not do.", ""] + hz_rows + [""] + hz_body
    md += _code_findings(specs)
    md += ["## The fully fixed protocol", "",
           "| spec | verdict | states | transitions | time |", "|---|---|---:|---:|---:|"]
    for spec in fixed:
        prog.within(f"spec {done + 1}/{total} {spec.name}")
        prog.clear()
        out.print(f"  {spec.name} ...")
        prog.set_phase("explorer")
        o = run_spec(spec, traces_dir=traces_dir)
        done += 1
        st = o.result.stats
        md.append(f"| `{spec.path.name}` — {spec.description} | {o.result.label} | {st['states']:,} | "
                  f"{st['transitions']:,} | {st['seconds']:.1f}s |")
    md.append("")
    md += ["## Where the document is ambiguous", "",
           "Each ambiguity is a reading of the model, never a silent choice; the specs above say which reading "
           "each verdict was found under (`pddgpu-verify options` lists them, with the readings that stand in for "
           "code that does not compile, above).", "",
           "| reading | default | values | document | meaning |", "|---|---|---|---|---|"]
    for o in OPTIONS.values():
        if o.kind == "reading" and not getattr(o, "finding", ""):
            md.append(f"| `{o.name}` | `{o.default}` | {', '.join(f'`{c}`' for c in o.choices)} | {o.section} | "
                      f"{o.text} |")
    md.append("")
    try:
        from .stateword import stateword_report
    except ImportError:
        stateword_report = None
    if stateword_report is not None:
        md += [stateword_report(), ""]
    prog.within(f"{done}/{total} specs done")
    prog.set_phase("writing")
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text("\n".join(x for x in md if isinstance(x, str)) + "\n")
    prog.clear()
    out.print(f"written to {output}")
    if html is not None:
        from ..cli.html_report import findings_page
        html.write_text(findings_page(md), encoding="utf-8")
        out.print(f"HTML written to {html}")
