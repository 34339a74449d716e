"""Terminal output: verdict tables, replays, swimlanes (rich).

Every text that comes from a spec, a trace or the model (names, paths, step
labels, code, descriptions) goes through ``esc``: rich would read ``[x]`` in it
as markup, raise on ``[/]``, or print ``a[i]`` as ``a`` in italics.  Columns
that hold a name or a path never truncate (``overflow="fold"``)."""
from __future__ import annotations

from rich.markup import escape
from rich.table import Table

from ..model.options import OPTIONS
from .words import DEPTH_NOTE, Words, depth_line, trace_steps

def esc(x) -> str:
    """``x`` as text printed literally by rich."""
    return escape(str(x))


def name_column(t: Table, col: str, **kw):
    """A column whose cells are names or paths: folded onto another line if they must, never cut with '…'."""
    t.add_column(col, overflow="fold", **kw)


COLOR = {"OK": "green", "VIOLATION": "red", "DEADLOCK": "red", "LIVENESS": "red", "INCOMPLETE": "yellow"}


def _threads_summary(spec) -> str:
    w = spec.workload
    parts = [f"{len(w.workers)}w"]
    for n, k in (("inj", w.error_injectors), ("rec", w.recoverers), ("stats", w.stats_readers)):
        if k:
            parts.append(f"{k}{n}")
    if w.shutdown:
        parts.append("fini")
    return "+".join(parts)


def print_check_table(out, outcomes, proofs=None):
    t = Table(title="pddgpu-verify check", show_lines=False)
    for col in ("spec", "model", "threads", "expected", "verdict", "states", "trans.", "depth", "time", ""):
        # numbers keep their line (a folded count misreads); names and verdicts fold, never cut
        short = col in ("model", "states", "trans.", "depth", "time", "")
        t.add_column(col, justify="right" if col in ("states", "trans.", "depth", "time") else "left",
                     overflow="fold", no_wrap=short)
    if proofs:
        t.add_column("z3 (prove/bmc)", overflow="fold")
        t.add_column("z3 expected", overflow="fold")
        t.add_column(" ", no_wrap=True)
    for o in outcomes:
        r, s = o.result, o.spec
        exp = s.expect_verdict + (f"({s.expect_property})" if s.expect_property else "")
        st = r.stats
        depth = str(len(r.path) - 1) if r.path else str(st["diameter"])
        vac = f" [yellow]({len(o.vacuous)} vacuous)[/]" if o.vacuous else ""
        row = [esc(s.name), esc(s.model), _threads_summary(s), esc(exp), f"[{COLOR[r.verdict]}]{esc(r.label)}[/]{vac}",
               f"{st['states']:,}", f"{st['transitions']:,}", depth, f"{st['seconds']:.2f}s",
               "[green]✓[/]" if o.matches else "[bold red]✗[/]"]
        if proofs:
            z = proofs.get(s.name)
            if z is None:                    # a +fix variant: the explorer checks the fix
                row += ["—", "", ""]
            else:
                exp = (z.expected or "?") + (f" ({z.expected_proved})" if z.expected_proved is not None else "")
                row += [esc(z.summary), esc(exp), "[green]✓[/]" if z.matches else "[bold red]✗[/]"]
        t.add_row(*row)
    out.print(t)


def print_outcome(out, o):
    r = o.result
    st = r.stats
    out.print(f"[bold]{esc(o.spec.name)}[/]: [{COLOR[r.verdict]}]{esc(r.label)}[/]"
              + (f" by {esc(o.model.threads[r.thread].name)}" if r.thread is not None else ""))
    if r.property and r.property in o.model.properties:
        out.print(f"  property: {esc(o.model.properties[r.property].description)}")
    if r.detail:
        out.print(f"  {esc(r.detail)}")
    # one word for depth: the table's column, the counterexample's length when there is one, else the deepest
    # state explored (the explorer's "diameter"), all counted in steps from the initial state
    depth = len(r.path) - 1 if r.path else st["diameter"]
    out.print(f"  {st['states']:,} distinct states, {st['transitions']:,} transitions, depth {depth} "
              f"({'the counterexample' if r.path else 'deepest state'}, {DEPTH_NOTE}), "
              f"{st['seconds']:.2f}s, {st['states_per_s']:,} states/s, peak {st['peak_mb']} MB"
              + (", symmetry reduction on" if st.get("symmetry") else "")
              + (f", hash compaction (collision probability {st['collision_probability']})"
                 if st.get("hash_compact") else ""))
    if st.get("vacuous"):
        out.print("  [yellow]vacuous[/] (checked, never exercised by any reached state: this OK says nothing of "
                  "them): " + esc(", ".join(st["vacuous"])), markup=True)
    if st.get("absent"):
        out.print("  not applicable (checked at no step of this configuration): " + esc(", ".join(st["absent"])))
    if o.trace_path:
        out.print(f"  shortest counterexample ({len(r.path) - 1} steps) written to {esc(o.trace_path)}", soft_wrap=True)
    if r.path and r.verdict != "OK":
        w = Words(o.model)
        last = o.model.layout.as_dict(r.path[-1][1])
        out.print("  last state: " + esc(", ".join(f"{d.name}={w.value(d.name, last[d.name])}" for d in o.model.shared
                                                   if d.name in ("state", "dev_state", "lock", "used", "vis"))),
                  soft_wrap=True)


def print_legend(out, model, names):
    """The model-only variables among ``names``, said once under a trace."""
    lines = Words(model).legend(names)
    if lines:
        out.print("legend (model-only variables):")
        for k, text in lines:
            out.print(f"  {esc(k)}: {esc(text)}", soft_wrap=False)


def print_replay(out, path, data, res):
    meta = data["#meta"]
    out.print(f"[bold]replay[/] {esc(path)}: model {esc(meta.get('model'))} ({esc(meta.get('model_kind'))}), "
              f"{esc(meta.get('verdict'))} {esc(meta.get('property') or '')}", soft_wrap=True)
    words = Words(res.model)
    t = Table(show_header=True)
    t.add_column("#", justify="right", no_wrap=True)
    for col in ("thread", "step", "§", "code", "changed"):
        t.add_column(col, overflow="fold")
    names = []
    for s in res.steps:
        ch = [(k, words.value(k, a), words.value(k, b)) for k, (a, b) in s.changed.items() if not k.endswith(".pc")]
        names += [k for k, _, _ in ch]
        t.add_row(str(s.index), esc(s.thread), esc(s.step), esc(s.section), esc(s.code),
                  esc(", ".join(f"{k}: {a}→{b}" for k, a, b in ch)))
    out.print(t)
    if res.steps:
        out.print(f"replayed: {depth_line(meta, len(res.steps))}")
    print_legend(out, res.model, names)


def print_swimlanes(out, model, data, steps=None):
    """One column per thread, one row per step; the shared variables a step changed, by name and in units."""
    meta = data["#meta"]
    names = [t.name for t in model.threads]
    t = Table(title=esc(f"{meta.get('spec')}: {meta.get('verdict')} {meta.get('property') or ''}"), show_lines=False)
    t.add_column("#", justify="right", no_wrap=True)
    for n in names:
        t.add_column(esc(n), overflow="fold")
    t.add_column("shared state after", overflow="fold")
    shared = {d.name for d in model.shared}
    loop = meta.get("loop")
    steps = trace_steps(model, data) if steps is None else steps
    shown = []
    for i, st in enumerate(steps):
        cells = [""] * len(names)
        cells[names.index(st.thread)] = esc(st.step) + (f" [dim]§{esc(st.section)}[/]" if st.section else "")
        ch = [(k, after) for k, _, after in st.changes if k in shared]
        shown += [k for k, _ in ch]
        mark = "↻ " if loop is not None and i == loop else ""
        t.add_row(f"{mark}{st.index}", *cells, esc(", ".join(f"{k}={v}" for k, v in ch)))
    out.print(t)
    out.print(depth_line(meta, len(steps))
              + (f"; ↻ marks step {loop + 1}, where the cycle starts" if isinstance(loop, int) else ""))
    if meta.get("property_description"):
        what = "not inductive" if meta.get("verdict") == "NOT INDUCTIVE" else "violated"
        out.print(f"{what}: {esc(meta['property'])}: {esc(meta['property_description'])}")
    print_legend(out, model, shown)


def print_options(out):
    t = Table(title="model options")
    for col in ("option", "kind", "default", "values", "§", "meaning"):
        t.add_column(col, overflow="fold")
    for o in OPTIONS.values():
        t.add_row(*map(esc, (o.name, o.kind, o.default, ", ".join(map(str, o.choices)), o.section, o.text)))
    out.print(t)


def print_properties(out, model):
    t = Table(title=f"properties of {esc(model.name)}")
    for col in ("property", "kind", "meaning"):
        t.add_column(col, overflow="fold")
    for p in model.properties.values():
        t.add_row(esc(p.name), esc(p.kind), esc(p.description))
    t.add_row("deadlock", "always", "no state where threads are blocked, none can move, not all finished")
    t.add_row("calls_return", "liveness", "under weak fairness every alloc, free and recover call returns "
                                          "(with check.liveness = true)")
    out.print(t)


def print_progress_row(out, o, proof, settled, total, seconds):
    """One line as each spec of a many-spec ``check`` completes (in completion order): the run is
    visibly alive, and a slow spec holds back no other row."""
    r = o.result
    mark = "[green]✓[/]" if o.matches and (proof is None or proof.matches) else "[bold red]✗[/]"
    z3 = f", z3 {esc(proof.summary)}" if proof is not None else ""
    out.print(f"  [{settled}/{total}] {mark} {esc(o.spec.name)}: [{COLOR[r.verdict]}]{esc(r.label)}[/] "
              f"({r.stats['states']:,} states{z3}; {seconds:.1f}s)", soft_wrap=True)
