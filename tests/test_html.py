"""Traces and findings as HTML pages: every step on the page, nothing fetched from outside, every text
escaped; and, with Debian's chromium, the page loaded in a real headless browser, its DOM holding every step
and its screenshot a PNG of the window's size.  The words the terminal and the page share (flags, sizes,
sections) are checked here too."""
import json
import re
import shutil
import struct
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
from click.testing import CliRunner
from rich.console import Console

from pddgpu_verify.checker.findings import write_findings
from pddgpu_verify.checker.replay import replay
from pddgpu_verify.checker.trace import load_trace
from pddgpu_verify.cli.html_report import findings_page, markdown_blocks, trace_page
from pddgpu_verify.cli.main import main
from pddgpu_verify.cli.sections import titles
from pddgpu_verify.cli.words import Words, flags, human_bytes

ROOT = Path(__file__).resolve().parent.parent
TRACES = sorted((ROOT / "traces").glob("*.itf.json"))
# a few traces for the browser, to keep it to seconds: a violation with a recoverer, a deadlock, a 1M-block
# allocator
BROWSER_TRACES = [ROOT / "traces" / n for n in ("vram_recover_overlap.itf.json", "vram_retry_relock_deadlock.itf.json",
                                               "vram_free_during_shutdown_1m.itf.json")]
WIDTH, HEIGHT = 1280, 1600


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


class Page(HTMLParser):
    """What a test reads of a page: element ids, the visible text, and anything that would fetch or run."""

    def __init__(self, text):
        super().__init__()
        self.ids, self.text, self.external, self.scripts = set(), [], [], 0
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if a.get("id"):
            self.ids.add(a["id"])
        if tag == "script":
            self.scripts += 1
        for k in ("src", "href"):
            if a.get(k) and not a[k].startswith("#"):
                self.external.append(a[k])

    def handle_data(self, data):
        self.text.append(data)

    @property
    def visible(self) -> str:
        return " ".join(" ".join(self.text).split())


def _page_of(path):
    data = load_trace(path)
    res = replay(path, data)
    return data, res, trace_page(res.model, data, source=str(path))


def _row_text(page_html: str, anchor: str, index: int) -> str:
    m = re.search(rf'<tr id="{anchor}-step-{index}"[^>]*>(.*?)</tr>', page_html, re.S)
    assert m, f"no row for step {index}"
    return " ".join(Page(m.group(1)).visible.split())


@pytest.mark.parametrize("path", TRACES, ids=[p.name.split(".")[0] for p in TRACES])
def test_every_shipped_trace_renders_every_step(path):
    data, res, html = _page_of(path)
    page = Page(html)
    assert page.scripts == 0 and page.external == [] and "url(" not in html and "@import" not in html
    transitions = data["#meta"]["transitions"]
    assert transitions
    for tr in transitions:
        row = _row_text(html, "t", tr["index"])
        assert tr["step"] in row, row
        assert row.lstrip("↻ ").startswith(str(tr["index"]))
    # nothing past the last step, and the last one marked as where the verdict shows
    assert f't-step-{len(transitions) + 1}"' not in html
    assert f'<tr id="t-step-{len(transitions)}" class="violation' in html
    prop = data["#meta"].get("property")
    if prop:
        assert f'<span class="prop">{prop}</span>' in html
    # no state word in decimal: a step that changes mgr->state shows it by flag name
    for st in res.steps:
        if "state" in st.changed:
            after = flags(st.changed["state"][1])
            assert after in _row_text(html, "t", st.index)


def test_a_lasso_shades_its_cycle(tmp_path):
    from pddgpu_verify.checker.run import run_spec
    from pddgpu_verify.checker.spec import load_spec
    o = run_spec(load_spec(ROOT / "specs/19_vram_state_retry_livelock.toml"), traces_dir=tmp_path)
    assert o.result.verdict == "LIVENESS"
    data, _, html = _page_of(o.trace_path)
    loop, n = data["#meta"]["loop"], len(data["#meta"]["transitions"])
    cycle = {int(i) for i in re.findall(r'<tr id="t-step-(\d+)" class="[^"]*cycle', html)}
    assert cycle == set(range(loop + 1, n + 1)) and f"to {n} repeat forever" in html
    assert f'<td class="n">↻ {loop + 1}</td>' in html


def test_trace_text_is_escaped(tmp_path):
    data = json.loads((ROOT / "traces/vram_recover_overlap.itf.json").read_text())
    data["#meta"]["spec"] = "<script>alert(1)</script>"
    data["#meta"]["defect"] = '<img src="http://example.com/x.png"> & "quotes"'
    data["#meta"]["transitions"][0]["note"] = "</td><b>note</b>"
    p = tmp_path / "t.itf.json"
    p.write_text(json.dumps(data))
    _, _, html = _page_of(p)
    page = Page(html)
    assert page.scripts == 0 and page.external == []
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "<b>note</b>" not in html
    assert '&lt;img src=&quot;http://example.com/x.png&quot;&gt; &amp; &quot;quotes&quot;' in html


def test_show_html_writes_the_page_and_refuses_a_bad_path_before_reading(tmp_path):
    trace = ROOT / "traces/vram_free_during_shutdown.itf.json"
    out = tmp_path / "t.html"
    r = run("show", trace, "--html", out)
    assert r.exit_code == 0, r.output
    assert f"HTML written to {out}" in r.stdout
    assert "op1.free.dev_check" in Page(out.read_text(encoding="utf-8")).visible
    r = run("show", trace, "--html", tmp_path / "no" / "t.html")
    lines = r.stderr.strip().splitlines()
    assert r.exit_code == 2 and len(lines) == 1 and lines[0].startswith("pddgpu-verify: error: --html: "), r.stderr
    assert r.stdout == ""                      # refused before the trace was read or drawn
    r = run("show", tmp_path / "missing.itf.json", "--html", out)
    assert r.exit_code == 2 and len(r.stderr.strip().splitlines()) == 1
    assert r.stderr.startswith(f"pddgpu-verify: error: {tmp_path / 'missing.itf.json'}: ")


def test_findings_html_path_is_checked_before_the_hour_long_run(tmp_path):
    r = run("findings", "--output", tmp_path / "F.md", "--traces-dir", tmp_path / "tr",
            "--html", tmp_path / "no" / "F.html")
    lines = r.stderr.strip().splitlines()
    assert r.exit_code == 2 and len(lines) == 1 and lines[0].startswith("pddgpu-verify: error: --html: "), r.stderr
    assert r.stdout == "" and not (tmp_path / "F.md").exists()


def test_findings_html_on_a_subset(tmp_path):
    """The findings page is built from the same run as the markdown (a subset: the whole run takes an hour)."""
    specs = [ROOT / "specs/01_vram_free_during_shutdown.toml", ROOT / "specs/13_gtt_retry_sleep_under_spinlock.toml"]
    md, html = tmp_path / "F.md", tmp_path / "F.html"
    write_findings(Console(file=open(tmp_path / "log", "w")), specs, md, tmp_path / "traces", proofs=False, html=html)
    text, page_html = md.read_text(), html.read_text(encoding="utf-8")
    assert "TraceBlock" not in text and "<section" not in text
    page = Page(page_html)
    assert page.scripts == 0 and page.external == []
    for number, name in ((1, "vram_free_during_shutdown"), (2, "gtt_retry_sleep_under_spinlock")):
        data = load_trace(tmp_path / "traces" / f"{name}.itf.json")
        for tr in data["#meta"]["transitions"]:
            assert tr["step"] in _row_text(page_html, f"finding-{number}", tr["index"])
    # the markdown's headings and tables are on the page too
    assert "<h2>1. free skipped during shutdown leaks its block</h2>" in page_html
    assert "<table class=\"md\">" in page_html and "The state word" in page.visible


def test_markdown_blocks_escape_and_keep_structure():
    html = markdown_blocks(["# T <x>", "", "| a | b \\| c |", "|---|---|", "| `<i>` | **y** |", "",
                            "- one", "- two", "", "text & more"])
    assert "<h1>T &lt;x&gt;</h1>" in html and "<th>b | c</th>" in html
    assert "<td><code>&lt;i&gt;</code></td><td><b>y</b></td>" in html
    assert "<ul><li>one</li><li>two</li></ul>" in html and "<p>text &amp; more</p>" in html
    assert findings_page(["# x"]).startswith("<!DOCTYPE html>")


def test_words_name_flags_sizes_and_sections():
    assert flags(6) == "READY|SHUTDOWN" and flags(0) == "none" and flags(0x18) == "ERROR|0x10"
    assert human_bytes(4096) == "4 KiB" and human_bytes(1 << 32) == "4 GiB" and human_bytes(6144) == "6 KiB"
    assert human_bytes(1536) == "1.5 KiB" and human_bytes(100) == "100 B"
    data = load_trace(ROOT / "traces/vram_free_during_shutdown_1m.itf.json")
    w = Words(replay(None, data).model)
    assert w.value("used", 1) == "4 KiB (1 block)" and w.value("vis", 0) == "0"
    assert w.value("dev_state", 1) == "SHUTDOWN" and w.value("lock", 0) == "free" and w.value("lock", 1) == "w0"
    assert w.value("w0.blk", -1) == "none" and w.value("w0.ret", -19) == "-ENODEV" and w.value("mask", 0) == "none"
    assert w.size(1 << 20) == "4 GiB (1048576 blocks)"
    assert titles("5.1 / 2.2") == ["VRAM管理器改进 5.1 管理器恢复函数", "VRAM管理器改进 2.2 错误状态清除"]
    assert titles("2.2 (READY -> SHUTDOWN)", "gtt") == ["并发保护机制 2.2 状态转换"]
    assert titles("4.2", "vram", "op0.alloc.state_retry_sleep") == ["并发保护机制 4.2 状态重试"]
    assert titles("4.2", "gtt", "op1.free.lock") == ["GTT管理器改进 4.2 锁内状态检查"]
    assert titles("3.3 / 3.1 错误检测 (fix)") == ["VRAM管理器改进 3.3 重试机制", "并发保护机制 3.1 错误检测"]
    assert titles("2.1 / 6", code="atomic64_add(size, &mgr->used);") == ["并发保护机制 2.1 原子操作",
                                                                          "VRAM管理器改进 6 统计信息"]
    assert titles("(fini)") == []
    from pddgpu_verify.cli.words import depth_line
    assert depth_line({"backend": "explorer"}, 17) == "17 steps (depth 17, counted in steps from the initial state)"
    assert "not the initial state" in depth_line({"backend": "z3-cti"}, 1) and "depth 1" not in \
        depth_line({"backend": "z3-cti"}, 1)


def test_show_prints_flags_by_name_and_one_word_for_depth():
    r = run("show", ROOT / "traces/vram_free_during_shutdown.itf.json")
    assert "state=READY|SHUTDOWN" in r.stdout and "dev_state=SHUTDOWN" in r.stdout and "state=6" not in r.stdout
    assert "used=4 KiB (1 block)" in r.stdout
    assert "17 steps (depth 17, counted in steps from the initial state)" in r.stdout
    legend = r.stdout.split("legend (model-only variables):")[1]
    assert "mask:" in legend and "shutdown_seen:" in legend and legend.count("mask:") == 1
    r = run("replay", ROOT / "traces/vram_recover_overlap.itf.json")
    assert "mask: none→[0,1)" in r.stdout and "lock: free→w0" in r.stdout and "gen:" in r.stdout.split("legend")[1]


# the real browser -------------------------------------------------------------------------------------------

CHROMIUM = shutil.which("chromium")
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (apt-get install chromium): "
                                                             "the browser test of the HTML pages is skipped")


def _chromium(tmp_path, *args):
    # a profile of its own: parallel runs and the user's browser never share one
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-extensions",
           f"--user-data-dir={tmp_path / 'profile'}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=90)


def _png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR", head
    return struct.unpack(">II", head[16:24])


@needs_chromium
@pytest.mark.parametrize("path", BROWSER_TRACES, ids=[p.name.split(".")[0] for p in BROWSER_TRACES])
def test_page_loads_in_chromium_with_every_step(path, tmp_path):
    data, _, html = _page_of(path)
    page = tmp_path / "t.html"
    page.write_text(html, encoding="utf-8")
    dom = _chromium(tmp_path, "--dump-dom", page.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    parsed = Page(dom.stdout)
    assert "pddgpu-verify trace" in parsed.visible
    for tr in data["#meta"]["transitions"]:
        assert f"t-step-{tr['index']}" in parsed.ids
        assert tr["step"] in _row_text(dom.stdout, "t", tr["index"])
    shot = tmp_path / "t.png"
    r = _chromium(tmp_path, f"--screenshot={shot}", f"--window-size={WIDTH},{HEIGHT}", page.as_uri())
    assert r.returncode == 0 and shot.exists(), r.stderr[-2000:]
    assert shot.stat().st_size > 10_000                    # a page with content, not a blank window
    assert _png_size(shot) == (WIDTH, HEIGHT)
