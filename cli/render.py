"""Terminal output: verdict tables, replays, swimlanes (rich).

Every text that comes from a spec, a trace or the model (names, paths, step
labels, code, descriptions) goes through ``esc``: rich would read ``[x]`` in it
as markup, raise on ``[/]``, or print ``a[i]`` as ``a`` in italics.  Columns
that hold a name or a path never truncate (``overflow="fold"``)."""
from __future__ import annotations

from rich.markup import escape
from rich.table import Table

from ..model.options import OPTIONS

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
        t.add_column(col, justify="right" if col in ("states", "trans.", "depth", "time") else "left", overflow="fold")
    if proofs:
        t.add_column("z3 (prove/bmc)")
        t.add_column("z3 expected")
        t.add_column(" ")
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
    out.print(f"  {st['states']:,} distinct states, {st['transitions']:,} transitions, diameter {st['diameter']}, "
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


def print_replay(out, path, data, res):
    meta = data["#meta"]
    out.print(f"[bold]replay[/] {esc(path)}: model {esc(meta.get('model'))} ({esc(meta.get('model_kind'))}), "
              f"{esc(meta.get('verdict'))} {esc(meta.get('property') or '')}", soft_wrap=True)
    t = Table(show_header=True)
    for col in ("#", "thread", "step", "§", "code", "changed"):
        t.add_column(col, overflow="fold")
    for s in res.steps:
        ch = ", ".join(f"{k}: {a}→{b}" for k, a, b in ((k, *v) for k, v in s.changed.items()) if not k.endswith(".pc"))
        t.add_row(str(s.index), esc(s.thread), esc(s.step), esc(s.section), esc(s.code), esc(ch))
    out.print(t)


def print_swimlanes(out, model, data):
    meta = data["#meta"]
    names = [t.name for t in model.threads]
    t = Table(title=esc(f"{meta.get('spec')}: {meta.get('verdict')} {meta.get('property') or ''}"), show_lines=False)
    t.add_column("#", justify="right")
    for n in names:
        t.add_column(esc(n), overflow="fold")
    t.add_column("shared state after", overflow="fold")
    shared = [d.name for d in model.shared]
    prev = data["states"][0]
    loop = meta.get("loop")
    for i, tr in enumerate(meta["transitions"]):
        cur = data["states"][i + 1]
        cells = [""] * len(names)
        cells[names.index(tr["thread"])] = esc(tr["step"]) + (f" [dim]§{esc(tr['section'])}[/]" if tr.get("section")
                                                              else "")
        ch = esc(", ".join(f"{k}={cur[k]}" for k in shared if cur[k] != prev[k]))
        mark = "↻ " if loop is not None and i == loop else ""
        t.add_row(f"{mark}{i + 1}", *cells, ch)
        prev = cur
    out.print(t)
    if meta.get("property_description"):
        out.print(f"violated: {esc(meta['property'])}: {esc(meta['property_description'])}")


def print_options(out):
    t = Table(title="model options")
    for col in ("option", "kind", "default", "values", "§", "meaning"):
        t.add_column(col)
    for o in OPTIONS.values():
        t.add_row(*map(esc, (o.name, o.kind, o.default, ", ".join(map(str, o.choices)), o.section, o.text)))
    out.print(t)


def print_properties(out, model):
    t = Table(title=f"properties of {esc(model.name)}")
    for col in ("property", "kind", "meaning"):
        t.add_column(col)
    for p in model.properties.values():
        t.add_row(esc(p.name), esc(p.kind), esc(p.description))
    t.add_row("deadlock", "always", "no state where threads are blocked, none can move, not all finished")
    t.add_row("calls_return", "liveness", "under weak fairness every alloc, free and recover call returns "
                                          "(with check.liveness = true)")
    out.print(t)
