"""Traces and the findings document as one self-contained HTML page: ``show TRACE --html FILE`` and
``findings --html FILE``.

The page needs nothing but itself: inline CSS, no script, no font or image fetched, so it reads the same
from a CI artifact, a mail attachment or a file:// URL.  Every text from a spec, a trace or the model is
escaped (``html.escape``) before it reaches the page.

A trace is drawn as swimlanes: one column per thread, one row per step; the moving thread's cell holds the
step and its code line, then come the variables the step changed (in the words of ``words.py``: flags by
name, sizes with units) and the document's section with its title (``sections.py``).  The violated
property is the banner above, and the last row, where it fails, is marked.
"""
from __future__ import annotations

import re
from html import escape

from .words import Words, depth_line, trace_steps

LANE_COLOURS = ("#e8f1fb", "#fdf0e2", "#e9f6ec", "#f6e9f6", "#fbf7dc", "#e6f4f4", "#f3ece6", "#eeeefb")

CSS = """
body { font: 14px/1.45 "DejaVu Sans", "Noto Sans", "Noto Sans CJK SC", "WenQuanYi Micro Hei", sans-serif;
       color: #1d1d1f; margin: 24px; background: #fff; }
h1 { font-size: 22px; margin: 0 0 8px; }
h2 { font-size: 19px; margin: 28px 0 8px; border-bottom: 1px solid #ccc; padding-bottom: 4px; }
h3 { font-size: 16px; margin: 20px 0 6px; }
code, .code { font-family: "DejaVu Sans Mono", "Noto Sans Mono", monospace; font-size: 12px; }
p, ul, ol { max-width: 72em; }
.verdict { border-left: 6px solid #c62828; background: #fdecea; padding: 8px 12px; margin: 10px 0;
           max-width: 72em; }
.verdict.ok { border-color: #2e7d32; background: #e8f5e9; }
.verdict .prop { font-weight: bold; color: #b71c1c; font-family: "DejaVu Sans Mono", monospace; }
.facts { color: #444; margin: 4px 0 12px; }
.facts span { margin-right: 1.5em; display: inline-block; }
table { border-collapse: collapse; margin: 8px 0 16px; }
th, td { border: 1px solid #c8c8c8; padding: 3px 6px; vertical-align: top; text-align: left;
         overflow-wrap: anywhere; }
thead th { background: #f0f0f0; position: sticky; top: 0; }
table.lanes td.n { text-align: right; color: #555; white-space: nowrap; }
table.lanes td.lane { min-width: 8em; width: 16em; }
table.lanes td.lane.idle { background: #fafafa; }
table.lanes td.active .label { font-weight: bold; font-family: "DejaVu Sans Mono", monospace; font-size: 12px; }
table.lanes td.active .code { display: block; color: #333; margin-top: 2px; white-space: pre-wrap; }
table.lanes td.active .note { display: block; color: #666; font-style: italic; }
table.lanes td.changes { min-width: 12em; font-size: 12px; }
table.lanes td.changes div { padding-left: 1em; text-indent: -1em; }
table.lanes td.doc { min-width: 9em; width: 19em; font-size: 12px; color: #333; }
table.lanes .var { font-family: "DejaVu Sans Mono", monospace; color: #0d47a1; }
table.lanes .ghost { color: #777; }
table.lanes tr.cycle td.n { background: #fff3cd; }
table.lanes tr.violation td { border-top: 2px solid #c62828; border-bottom: 2px solid #c62828; }
table.lanes tr.violation td.n { background: #c62828; color: #fff; font-weight: bold; }
table.lanes tr.initial td { background: #f7f7f7; font-size: 12px; }
dl.legend { display: grid; grid-template-columns: max-content auto; gap: 2px 14px; max-width: 72em;
            font-size: 13px; }
dl.legend dt { font-family: "DejaVu Sans Mono", monospace; color: #0d47a1; }
dl.legend dd { margin: 0; }
table.md td, table.md th { font-size: 13px; max-width: 30em; }
table.md th { white-space: nowrap; }
.small { font-size: 12px; color: #555; }
"""

_GHOST_PREFIX = ("ghost:",)


def page(title: str, body: str) -> str:
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<title>{escape(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n{body}\n</body>\n</html>\n")


def _lane_style(i: int) -> str:
    return f' style="background:{LANE_COLOURS[i % len(LANE_COLOURS)]}"'


def _changes_html(words: Words, changes) -> str:
    ghosts = {k for k, text in words.legend([n for n, _, _ in changes]) if text.startswith(_GHOST_PREFIX)}
    out = []
    for name, before, after in changes:
        cls = "var ghost" if name.rsplit(".", 1)[-1] in ghosts else "var"
        out.append(f'<div><span class="{cls}">{escape(name)}</span> {escape(before)} → <b>{escape(after)}</b></div>')
    return "".join(out)


def trace_section(model, data, *, anchor: str = "t", heading: str | None = None, level: int = 2,
                  source: str | None = None) -> str:
    """One trace as swimlanes (an HTML fragment): heading, the violated property, the facts of the run, the
    lanes, the legend of the model-only variables among what changed."""
    meta = data["#meta"]
    words = Words(model)
    steps = trace_steps(model, data)
    names = [t.name for t in model.threads]
    verdict, prop = str(meta.get("verdict") or ""), meta.get("property")
    loop = meta.get("loop") if isinstance(meta.get("loop"), int) else None
    h = f"h{level}"
    title = heading or f"{meta.get('spec')}: {verdict}" + (f" ({prop})" if prop else "")
    parts = [f'<section class="trace" id="{escape(anchor)}">', f"<{h}>{escape(title)}</{h}>"]
    ok = verdict == "OK"
    what = {"VIOLATION": "", "NOT INDUCTIVE": "not inductive (counterexample to induction)",
            "DEADLOCK": "deadlock", "LIVENESS": "never returns"}.get(verdict, verdict.lower())
    desc = meta.get("property_description") or meta.get("detail") or ""
    who = f" by {meta['thread']}" if meta.get("thread") else ""
    parts.append(f'<div class="verdict{" ok" if ok else ""}"><b>{escape(verdict)}</b>{escape(who)}'
                 + (f' ({escape(what)})' if what and what.lower() != verdict.lower() else "") + ": "
                 f'<span class="prop">{escape(str(prop or meta.get("lemma") or ""))}</span>'
                 + (f" — {escape(str(desc))}" if desc else "") + "</div>")
    facts = [f"model {meta.get('model')} ({meta.get('model_kind')})"]
    if isinstance(meta.get("size"), int):
        facts.append(f"allocator {words.size(meta['size'])}"
                     + (f", the model tracks the lowest {words.size(meta['window'])}" if isinstance(meta.get("window"), int)
                        else ""))
    facts.append(depth_line(meta, len(steps)))
    if meta.get("defect"):
        facts.append(f"defect: {meta['defect']}")
    if source or meta.get("source"):
        facts.append(f"from {source or meta.get('source')}")
    opts = meta.get("options") if isinstance(meta.get("options"), dict) else {}
    on = [k for k, v in opts.items() if k.startswith("fix_") and v is True]
    if on:
        facts.append("fixes on: " + ", ".join(on))
    parts.append('<div class="facts">' + "".join(f"<span>{escape(str(f))}</span>" for f in facts) + "</div>")

    parts.append('<table class="lanes"><thead><tr><th>#</th>'
                 + "".join(f'<th class="lane"{_lane_style(i)}>{escape(n)}</th>' for i, n in enumerate(names))
                 + "<th>changed</th><th>document §</th></tr></thead><tbody>")
    # the starting point, so every change below reads against something on the page
    from ..checker.trace import validated_states
    first = model.layout.as_dict(validated_states(None, data, model)[0])
    init = ", ".join(f"{d.name}={words.value(d.name, first[d.name])}" for d in model.shared
                     if d.name in ("state", "dev_state", "lock", "mask", "used", "vis"))
    first_is = "first state (any the invariants allow)" if meta.get("backend") == "z3-cti" else "initial state"
    parts.append(f'<tr class="initial"><td class="n">0</td><td colspan="{len(names) + 2}">{first_is}: '
                 f"{escape(init)}</td></tr>")
    for i, st in enumerate(steps):
        cls = []
        if i == len(steps) - 1 and not ok:
            cls.append("violation")
        if loop is not None and i >= loop:
            cls.append("cycle")
        cells = []
        for j, n in enumerate(names):
            if n != st.thread:
                cells.append('<td class="lane idle"></td>')
                continue
            cells.append(f'<td class="lane active"{_lane_style(j)}><span class="label">{escape(st.step)}</span>'
                         + (f'<span class="code">{escape(st.code)}</span>' if st.code else "")
                         + (f'<span class="note">{escape(st.note)}</span>' if st.note else "") + "</td>")
        doc = (f"§{escape(st.section)}" if st.section else "") + "".join(
            f"<br>{escape(t)}" for t in st.titles)
        mark = "↻ " if loop is not None and i == loop else ""
        parts.append(f'<tr id="{escape(anchor)}-step-{st.index}" class="{" ".join(cls)}">'
                     f'<td class="n">{mark}{st.index}</td>{"".join(cells)}'
                     f'<td class="changes">{_changes_html(words, st.changes)}</td><td class="doc">{doc}</td></tr>')
    parts.append("</tbody></table>")
    if steps and not ok:
        where = {"VIOLATION": f"{prop} fails in the state after step {len(steps)}",
                 "NOT INDUCTIVE": f"{prop or meta.get('lemma')} holds before and fails after step {len(steps)}",
                 "DEADLOCK": f"after step {len(steps)} no thread can move",
                 "LIVENESS": f"after it the state is again the one after step {loop or 0}, so the shaded steps "
                             f"{(loop or 0) + 1} (↻) to {len(steps)} repeat forever"}.get(verdict, "")
        if where:
            parts.append(f'<p class="small">The marked row, step {len(steps)}: {escape(where)}.</p>')
    legend = words.legend([n for st in steps for n, _, _ in st.changes])
    if legend:
        parts.append("<h4>Legend: model-only variables</h4><dl class=\"legend\">"
                     + "".join(f"<dt>{escape(k)}</dt><dd>{escape(v)}</dd>" for k, v in legend) + "</dl>")
    parts.append("</section>")
    return "\n".join(parts)


def trace_page(model, data, source: str | None = None, warning: str | None = None) -> str:
    """``warning``: what replay found wrong with the trace, shown above it (the page still draws the steps)."""
    meta = data["#meta"]
    title = f"{meta.get('spec')}: {meta.get('verdict')} {meta.get('property') or ''}".strip()
    warn = f'<div class="verdict">not a confirmed run of the model: {escape(warning)}</div>\n' if warning else ""
    return page(title, "<h1>pddgpu-verify trace</h1>\n" + warn + trace_section(model, data, heading=title,
                                                                                 source=source))


# the findings document: its markdown, block by block, with each finding's trace drawn where it belongs

def _inline(text: str) -> str:
    """Escaped text with the markdown the findings use: `code` and **bold**."""
    out = []
    for i, part in enumerate(re.split(r"(`[^`]*`)", text)):
        if i % 2:
            out.append(f"<code>{escape(part[1:-1])}</code>")
        else:
            out.append(re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", escape(part)))
    return "".join(out)


def _cells(line: str) -> list[str]:
    cells = re.split(r"(?<!\\)\|", line.strip())
    return [c.strip().replace("\\|", "|") for c in cells[1:-1]]


def markdown_blocks(lines) -> str:
    """The subset of markdown the findings document is written in (headings, tables, lists, paragraphs)."""
    html, i = [], 0
    lines = [x for chunk in lines for x in str(chunk).split("\n")]
    while i < len(lines):
        line = lines[i]
        m = re.match(r"(#{1,4}) (.*)", line)
        if m:
            n = len(m.group(1))
            html.append(f"<h{n}>{_inline(m.group(2))}</h{n}>")
            i += 1
        elif line.startswith("|"):
            rows = []
            while i < len(lines) and lines[i].startswith("|"):
                rows.append(lines[i])
                i += 1
            head = _cells(rows[0])
            body = [r for r in rows[1:] if not re.fullmatch(r"\|[\s:|-]*\|", r.strip())]
            html.append('<table class="md"><thead><tr>' + "".join(f"<th>{_inline(c)}</th>" for c in head)
                        + "</tr></thead><tbody>" + "".join(
                            "<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in _cells(r)) + "</tr>" for r in body)
                        + "</tbody></table>")
        elif re.match(r"(- |\d+\. )", line):
            tag = "ul" if line.startswith("- ") else "ol"
            items = []
            while i < len(lines) and re.match(r"(- |\d+\. )", lines[i]):
                items.append(re.sub(r"^(- |\d+\. )", "", lines[i]))
                i += 1
            html.append(f"<{tag}>" + "".join(f"<li>{_inline(x)}</li>" for x in items) + f"</{tag}>")
        elif not line.strip():
            i += 1
        else:
            para = []
            while i < len(lines) and lines[i].strip() and not re.match(r"(#{1,4} |\||- |\d+\. )", lines[i]):
                para.append(lines[i])
                i += 1
            html.append(f"<p>{_inline(' '.join(para))}</p>")
    return "\n".join(html)


def findings_page(blocks, title: str = "pddgpu-verify findings") -> str:
    """``blocks``: the findings document as written for docs/FINDINGS.md (markdown lines) with, wherever a
    finding's shortest interleaving is drawn, a block with ``model``, ``data`` (its ITF trace) and ``anchor``
    (``checker.findings.TraceBlock``)."""
    body, md = [], []
    for b in blocks:
        if not isinstance(b, str):
            body.append(markdown_blocks(md))
            md = []
            body.append(trace_section(b.model, b.data, anchor=b.anchor, level=4,
                                      heading="The interleaving as swimlanes"))
        else:
            md.append(b)
    body.append(markdown_blocks(md))
    return page(title, "\n".join(body))
