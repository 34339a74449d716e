"""Bad input, big input and odd runs (issue 9): every case of the bad-input campaign as a named regression
test, and a fuzz test feeding mutated specs and traces to the CLI.

What every run must show: no traceback; an exit code of the documented set (``EXIT_CODES``, the README's
table); bad input is exit 2 with one line ``pddgpu-verify: error: FILE: FIELD: message``; no hang (each case
here is bounded, the whole file runs in well under a minute)."""
from __future__ import annotations

import copy
import json
import os
import re
import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pddgpu_verify.checker.trace import load_trace
from pddgpu_verify.cli import main as cli_main
from pddgpu_verify.cli.main import EXIT_CODES, main
from pddgpu_verify.model import expr as E

ROOT = Path(__file__).resolve().parent.parent
TRACES = sorted((ROOT / "traces").glob("*.itf.json"))
SHUTDOWN_TRACE = ROOT / "traces/vram_free_during_shutdown.itf.json"
LIVELOCK_TRACE = ROOT / "traces/vram_state_retry_livelock.itf.json"

TINY = '''[spec]
name = "tiny"
model = "vram"
fixed_by = ["fix_free_always_releases"]

[readings]
fini_concurrent = true

[fixes]
fix_is_ready = true

[allocator]
size = 2

[threads]
workers = [{count = 1, ops = ["alloc 1", "free"]}]
shutdown = true

[check]
properties = "all"
symmetry = true

[expect]
verdict = "VIOLATION"
property = "no_leak_at_fini"
'''


def run(*args, input=None):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False, input=input)


def spec_file(tmp_path, text=TINY, name="s.toml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def trace_file(tmp_path, mutate, src=SHUTDOWN_TRACE) -> Path:
    data = json.loads(src.read_text())
    mutate(data)
    p = tmp_path / "t.itf.json"
    p.write_text(json.dumps(data))
    return p


def assert_input_error(r, path, field):
    """Exit 2, one line on stderr in the tool's format, naming the file and the field."""
    assert r.exit_code == 2, (r.exit_code, r.output)
    lines = [x for x in r.stderr.splitlines() if x.strip()]
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith(f"pddgpu-verify: error: {path}: "), lines[0]
    assert field in lines[0], (field, lines[0])
    assert "Traceback" not in r.output


def ops(n):
    return ", ".join('"alloc 1"' if i % 2 == 0 else '"free"' for i in range(n))


# ---- crashes and tracebacks ------------------------------------------------------------------------------------

@pytest.mark.parametrize("n", [7, 24, 40])
def test_worker_with_many_operations_compiles_and_gives_a_verdict(n, tmp_path):
    text = TINY.replace('ops = ["alloc 1", "free"]', f"ops = [{ops(n)}]").replace("shutdown = true", "")
    text = text.replace('verdict = "VIOLATION"\nproperty = "no_leak_at_fini"', 'verdict = "OK"')
    r = run("check", spec_file(tmp_path, text), "--traces-dir", tmp_path / "t")
    # an odd count ends holding a block (no_lost_resource): a VIOLATION, an even one verifies
    assert r.exit_code == (1 if n % 2 else 0), r.output
    assert "Traceback" not in r.output and ("OK" in r.output or "VIOLATION" in r.output)


def test_worker_with_40_operations_in_a_loop_beside_other_threads(tmp_path):
    text = TINY.replace('ops = ["alloc 1", "free"]', f"ops = [{ops(40)}]")
    text = text.replace("shutdown = true", "worker_loop = true\nerror_injectors = 1")
    text = text.replace('verdict = "VIOLATION"\nproperty = "no_leak_at_fini"', 'verdict = "OK"')
    r = run("check", spec_file(tmp_path, text), "--traces-dir", tmp_path / "t", "--max-states", 5000)
    assert r.exit_code in (0, 1, 3), r.output
    assert "Traceback" not in r.output


def test_long_conjunctions_neither_recurse_nor_nest_in_generated_code():
    # a conjunction over every busy step of a long worker: 5,000 deep as and_ builds it
    x = E.Var("x")
    deep = E.and_(*(E.ne(x, i) for i in range(1, 5001)), E.Var("y") >= 0)
    wide = E.or_(*(E.eq(x, i) for i in range(5000)))
    total = E.sum_(E.Var("y") for _ in range(5000))
    slot = {"x": 0, "y": 1}.__getitem__
    for e in (deep, wide, total):
        src = E.to_python(e, slot, None, None, None)
        assert src.count("(") - src.count(")") == 0 and _max_nesting(src) < 20
        fn = eval(f"lambda s: {src}", dict(E.RUNTIME))
        for s in ((0, 1), (7, 1), (6000, -1)):
            assert fn(s) == E.evaluate(e, s, _Layout())
    assert sum(1 for _ in E.walk(deep)) > 10_000


class _Layout:
    def shared_slot(self, name):
        return {"x": 0, "y": 1}[name]


def _max_nesting(src: str) -> int:
    depth = best = 0
    for c in src:
        depth += c == "("
        depth -= c == ")"
        best = max(best, depth)
    return best


BAD_SPECS = [
    ("fixed_by of a table", ('fixed_by = ["fix_free_always_releases"]', "fixed_by = [{a = 1}]"), "spec.fixed_by[0]"),
    ("properties of a list", ('properties = "all"', 'properties = [["no_overlap"]]'), "check.properties[0]"),
    ("properties empty", ('properties = "all"', "properties = []"), "check.properties"),
    ("op not a string", ('ops = ["alloc 1", "free"]', 'ops = [1, "free"]'), "threads.workers[0].ops[0]"),
    ("op a table", ('ops = ["alloc 1", "free"]', 'ops = [{alloc = 1}]'), "threads.workers[0].ops[0]"),
    ("name with markup", ('name = "tiny"', 'name = "[/]x"'), "spec.name"),
    ("name with style markup", ('name = "tiny"', 'name = "[bold red]x[/]"'), "spec.name"),
    ("name a relative path", ('name = "tiny"', 'name = "../../x"'), "spec.name"),
    ("name an absolute path", ('name = "tiny"', 'name = "/tmp/x"'), "spec.name"),
    ("name with a newline", ('name = "tiny"', 'name = "a\\nb"'), "spec.name"),
    ("name empty", ('name = "tiny"', 'name = ""'), "spec.name"),
    ("count of a billion", ("count = 1", "count = 1000000000"), "threads.workers[0].count"),
    ("size and window 2^30", ("size = 2", "size = 1073741824\nwindow = 1073741824"), "allocator.window"),
    ("size a string", ("size = 2", 'size = "2"'), "allocator.size"),
    ("size a boolean", ("size = 2", "size = true"), "allocator.size"),
    ("reading a list", ("fini_concurrent = true", "fini_concurrent = [true]"), "readings.fini_concurrent"),
    ("spec a list", ("[spec]", "spec = 1\n[x]"), "spec"),
    ("error injectors a list", ("shutdown = true", "shutdown = true\nerror_injectors = [1]"),
     "threads.error_injectors"),
    ("too many operations", ('ops = ["alloc 1", "free"]', f"ops = [{ops(65)}]"), "threads.workers[0].ops"),
    ("key with a newline", ("[check]", '[check]\n"a\\nb" = 1'), "check."),
]


@pytest.mark.parametrize("name, edit, field", BAD_SPECS, ids=[b[0] for b in BAD_SPECS])
def test_bad_spec_is_one_line_error(name, edit, field, tmp_path):
    old, new = edit
    assert old in TINY
    p = spec_file(tmp_path, TINY.replace(old, new, 1))
    r = run("check", p, "--traces-dir", tmp_path / "t")
    assert_input_error(r, p, field)
    assert not (tmp_path / "t").exists()               # refused before any work
    if "name" in name:
        assert not (tmp_path.parent / "x.itf.json").exists()


def test_toml_nested_5000_deep_is_one_line_error(tmp_path):
    p = spec_file(tmp_path, TINY + "deep = " + "[" * 5000 + "]" * 5000 + "\n")
    assert_input_error(run("check", p), p, "toml")


def test_json_nested_100000_deep_is_one_line_error(tmp_path):
    p = tmp_path / "deep.itf.json"
    p.write_text("[" * 100_000 + "]" * 100_000)
    for cmd in (("replay",), ("show",), ("replay", "--impl")):
        assert_input_error(run(*cmd, p), p, "json")


def _set(path, value):
    def mutate(d):
        node = d
        for k in path[:-1]:
            node = node[k]
        node[path[-1]] = value
    return mutate


def _many_injectors(n):
    return _set(("#meta", "workload", "error_injectors"), n)


BAD_TRACES = [
    ("model_kind a list", _set(("#meta", "model_kind"), ["vram"]), "#meta.model_kind"),
    ("options not an object", _set(("#meta", "options"), [1, 2]), "#meta.options"),
    ("size a string", _set(("#meta", "size"), "4"), "#meta.size"),
    ("size null", _set(("#meta", "size"), None), "#meta.size"),
    ("size a float", _set(("#meta", "size"), 4.0), "#meta.size"),
    ("size 2^62", _set(("#meta", "size"), 1 << 62), "#meta.size"),
    ("ops not strings", _set(("#meta", "workload", "workers"), [[1, 2]]), "#meta.workload.workers[0][0]"),
    ("workers not lists", _set(("#meta", "workload", "workers"), ["alloc 1"]), "#meta.workload.workers[0]"),
    ("count a list", _set(("#meta", "workload", "recoverers"), [1]), "#meta.workload.recoverers"),
    ("error_injectors -1", _many_injectors(-1), "#meta.workload.error_injectors"),
    ("a million injectors", _many_injectors(10 ** 6), "#meta.workload.error_injectors"),
    ("a thousand workers", _set(("#meta", "workload", "workers"), [["alloc 1", "free"]] * 1000),
     "#meta.workload.workers"),
    ("transition thread a list", lambda d: d["#meta"]["transitions"][0].__setitem__("thread", ["w0"]),
     "#meta.transitions[0].thread"),
    ("transition not an object", lambda d: d["#meta"]["transitions"].__setitem__(0, "w0"), "#meta.transitions[0]"),
    ("property unknown", _set(("#meta", "property"), "no_such_property"), "#meta.property"),
    ("property null", _set(("#meta", "property"), None), "#meta.property"),
    ("bigint not digits", lambda d: d["states"][1].__setitem__("mask", {"#bigint": "abc"}), "states[1].mask"),
    ("bigint a number", lambda d: d["states"][1].__setitem__("mask", {"#bigint": 5}), "states[1].mask"),
    ("verdict unknown", _set(("#meta", "verdict"), "BROKEN"), "#meta.verdict"),
    ("window a string", _set(("#meta", "window"), "2"), "#meta.window"),
    ("vars not names", _set(("vars",), [1]), "vars"),
    ("loop out of range", _set(("loop",), 99), "loop"),
    ("loop disagrees with #meta.loop", lambda d: (d.__setitem__("loop", 1), d["#meta"].__setitem__("loop", 2)), "loop"),
    ("too many states", _set(("states",), [{}] * 100_001), "states"),
]


@pytest.mark.parametrize("name, mutate, field", BAD_TRACES, ids=[b[0] for b in BAD_TRACES])
def test_bad_trace_is_one_line_error(name, mutate, field, tmp_path):
    p = trace_file(tmp_path, mutate)
    for cmd in (("replay",), ("show",), ("replay", "--impl")):
        assert_input_error(run(*cmd, p), p, field)


def test_user_text_is_printed_literally(tmp_path):
    # a folder and a file whose names are rich markup, a trace whose texts are: printed as written, no MarkupError
    d = tmp_path / "[bold red]d"               # ('/' cannot be in a file name: '[/]' is tried in a trace below)
    d.mkdir()
    p = spec_file(d, name="[i]s.toml")
    r = run("check", p, "--traces-dir", d / "[red]t")
    assert r.exit_code == 1, r.output
    written = d / "[red]t" / "tiny.itf.json"
    assert written.exists() and str(written) in r.output.replace("\n", "")
    # (a step's section is no longer the trace's text: show prints the model's own, from its step)
    marked = trace_file(tmp_path, lambda t: (t["#meta"].__setitem__("spec", "[/]x [bold]y[/]"),
                                             t["#meta"].__setitem__("model", "[/]m[b]")))
    r = run("show", marked)
    assert r.exit_code == 0, r.output
    assert "[/]x [bold]y[/]" in r.output
    r = run("replay", marked)
    assert r.exit_code == 0 and "[/]m[b]" in r.output


def test_traces_dir_under_a_file_is_refused_before_the_run(tmp_path):
    f = tmp_path / "file"
    f.write_text("")
    r = run("check", spec_file(tmp_path), "--traces-dir", f / "sub")
    assert r.exit_code == 2 and "--traces-dir" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert "Traceback" not in r.output and "tiny" not in r.stdout     # no table: nothing ran


def test_json_into_a_missing_folder_is_refused_before_the_run(tmp_path):
    r = run("check", spec_file(tmp_path), "--traces-dir", tmp_path / "t", "--json", tmp_path / "no" / "o.json")
    assert r.exit_code == 2 and "--json" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "t").exists()


# ---- limits before anything is built ---------------------------------------------------------------------------

def test_limits_are_checked_before_building(tmp_path):
    import time
    t = time.monotonic()
    big = TINY.replace("size = 2", "size = 1073741824\nwindow = 1073741824")
    assert run("check", spec_file(tmp_path, big)).exit_code == 2
    assert run("check", spec_file(tmp_path, TINY.replace("count = 1", "count = 1000000000"))).exit_code == 2
    assert run("replay", trace_file(tmp_path, _many_injectors(10 ** 6))).exit_code == 2
    wide = _set(("#meta", "workload", "workers"), [["alloc 1", "free"]] * 1000)
    assert run("replay", trace_file(tmp_path, wide)).exit_code == 2
    assert time.monotonic() - t < 10


# ---- security and wrong answers --------------------------------------------------------------------------------

def test_spec_name_never_writes_outside_the_traces_dir(tmp_path):
    for bad in ("../../x", "/tmp/x", "a/b", "a\\\\b", ".hidden", "a\\nb"):
        p = spec_file(tmp_path, TINY.replace('name = "tiny"', f'name = "{bad}"'))
        assert_input_error(run("check", p, "--traces-dir", tmp_path / "t"), p, "spec.name")
    assert not (tmp_path / "t").exists()


def _truncated(d):
    d["states"] = d["states"][:4]
    d["#meta"]["transitions"] = d["#meta"]["transitions"][:3]


def test_replay_impl_on_a_truncated_trace_is_not_reproduced(tmp_path):
    p = trace_file(tmp_path, _truncated)
    model = run("replay", "-q", p)
    assert model.exit_code == 1 and "not confirmed" in model.output
    impl = run("replay", "--impl", p)
    assert impl.exit_code == 1, impl.output
    assert "REPRODUCED" not in impl.output.replace("NOT REPRODUCED", "") and "NOT CONFIRMED" in impl.output


def test_show_exits_nonzero_on_a_trace_the_model_cannot_take(tmp_path):
    def swap(d):
        d["states"][3], d["states"][4] = d["states"][4], d["states"][3]
    r = run("show", trace_file(tmp_path, swap))
    assert r.exit_code == 1 and "cannot go" in r.output
    assert run("show", SHUTDOWN_TRACE).exit_code == 0


def test_replay_fix_without_impl_is_an_error():
    r = run("replay", SHUTDOWN_TRACE, "--fix", "fix_free_always_releases")
    assert r.exit_code == 2 and "--fix" in r.stderr and "--impl" in r.stderr
    r = run("replay", SHUTDOWN_TRACE, "--fix", "fix_nothing")
    assert r.exit_code == 2 and "unknown fix" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_empty_properties_are_an_error_and_a_deadlock_search_names_deadlock(tmp_path):
    p = spec_file(tmp_path, TINY.replace('properties = "all"', "properties = []"))
    assert_input_error(run("check", p), p, "check.properties")
    dl = (ROOT / "specs/20_vram_retry_relock_deadlock.toml").read_text()
    assert 'properties = ["deadlock"]' in dl
    q = tmp_path / "dl.toml"
    q.write_text(dl.replace('properties = ["deadlock"]', "properties = []"))
    assert_input_error(run("check", q), q, "check.properties")     # even for a deadlock search
    assert run("properties", ROOT / "specs/20_vram_retry_relock_deadlock.toml").exit_code == 0


# ---- exit codes ------------------------------------------------------------------------------------------------

def _raising(exc):
    def boom(*a, **kw):
        raise exc
    return boom


@pytest.mark.parametrize("exc, code, word", [
    (RuntimeError("something\nbroke"), 6, "internal error"),
    (MemoryError(), 5, "resource limit"),
    (OSError(28, "No space left on device"), 5, "resource limit"),
    (KeyboardInterrupt(), 130, "interrupted"),
])
def test_exit_codes_tell_internal_error_resource_limit_and_interrupt_apart(exc, code, word, tmp_path, monkeypatch):
    import pddgpu_verify.checker.run as run_mod
    monkeypatch.setattr(run_mod, "run_spec", _raising(exc))
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    r = run("check", spec_file(tmp_path), "--traces-dir", tmp_path / "t")
    assert r.exit_code == code, (r.exit_code, r.output)
    lines = [x for x in r.stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and word in lines[0] and "Traceback" not in r.output, r.stderr
    if code == 6:
        saved = re.search(r"traceback in (\S+)\)", lines[0]).group(1)
        assert "RuntimeError" in Path(saved).read_text()


@pytest.mark.parametrize("args, field", [
    (["check", "--bogus"], "--bogus"),
    (["check", "--max-states", "0"], "--max-states"),
    (["check", "--strategy", "sideways"], "--strategy"),
    (["replay"], "TRACE"),
    (["nosuchcommand"], "nosuchcommand"),
])
def test_usage_errors_are_one_line_in_the_tools_format(args, field):
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 2
    lines = [x for x in r.stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("pddgpu-verify: error: ") and field in lines[0], r.stderr


def test_readme_documents_every_exit_code():
    text = (ROOT / "README.md").read_text()
    table = text.split("### Exit codes", 1)[1].split("\n## ", 1)[0]
    for code in EXIT_CODES:
        assert re.search(rf"^\| {code} \|", table, re.M), code
    assert cli_main.EXIT_INTERNAL == 6 and cli_main.EXIT_RESOURCE == 5 and cli_main.EXIT_INTERRUPTED == 130


# ---- output for people -----------------------------------------------------------------------------------------

def test_bmc_table_never_truncates_a_trace_path(tmp_path):
    deep = tmp_path / ("a_rather_long_folder_name_" * 4) / "traces"
    r = run("bmc", spec_file(tmp_path), "--depth", 12, "--no-deadlock", "--traces-dir", deep)
    assert r.exit_code == 1, r.output
    written = list(deep.glob("*.itf.json"))
    assert len(written) == 1
    assert f"trace written: {written[0]}" in r.output and "…" not in r.output


def test_prove_table_never_truncates_a_cti_path_or_a_property_name(tmp_path):
    text = TINY.replace('properties = "all"', 'properties = ["no_overlap", "used_matches_allocations"]')
    p = spec_file(tmp_path, text + "\n[prove]\nlemmas = []\n")      # no lemmas: a CTI, quickly
    deep = tmp_path / ("a_rather_long_folder_name_" * 4) / "traces"
    r = run("prove", p, "--traces-dir", deep)
    assert r.exit_code == 1, r.output
    (cti,) = deep.glob("*.cti.itf.json")
    assert f"trace written: {cti}" in r.output and "used_matches_allocations" in r.output and "…" not in r.output


def test_a_lemma_cti_written_by_prove_replays_and_shows(tmp_path):
    # prove writes a CTI of a lemma with no #meta.property: replay checks the lemma itself (it was a KeyError)
    text = TINY.replace('properties = "all"', 'properties = ["shutdown_sticky"]')
    p = spec_file(tmp_path, text + '\n[prove]\nlemmas = ["held_blocks_in_mask"]\n')
    run("prove", p, "--traces-dir", tmp_path / "t")
    (cti,) = (tmp_path / "t").glob("*held_blocks_in_mask.cti.itf.json")
    r = run("replay", "-q", cti)
    assert r.exit_code == 0 and "lemma held_blocks_in_mask" in r.output, r.output
    assert run("show", cti).exit_code == 0


# ---- ITF -------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("path", TRACES, ids=[p.name for p in TRACES])
def test_shipped_trace_reads_with_an_independent_itf_reader(path):
    itf_py = pytest.importorskip("itf_py")
    raw = json.loads(path.read_text())
    t = itf_py.trace_from_json(copy.deepcopy(raw))
    ours = load_trace(path)
    assert t.vars == ours["vars"] and len(t.states) == len(ours["states"])
    for a, b in zip(t.states, ours["states"]):
        assert {k: a.values[k] for k in t.vars} == {k: b[k] for k in t.vars}
    assert t.loop == ours["loop"]
    if ours["#meta"]["verdict"] == "LIVENESS":
        assert t.loop is not None and t.states[t.loop].values == t.states[-1].values
    else:
        assert t.loop is None


def test_livelock_loop_is_at_the_itf_top_level_and_old_meta_loop_still_reads(tmp_path):
    raw = json.loads(LIVELOCK_TRACE.read_text())
    assert isinstance(raw.get("loop"), int)
    old = copy.deepcopy(raw)
    del old["loop"]                                       # a trace written before: the loop only in #meta
    p = tmp_path / "old.itf.json"
    p.write_text(json.dumps(old))
    assert load_trace(p)["loop"] == raw["loop"]
    assert run("replay", "-q", p).exit_code == 0


# ---- fuzz ------------------------------------------------------------------------------------------------------

ALLOWED = {0, 1, 2, 3, 4}      # of EXIT_CODES, what bad input may give: never 5 (resource), 6 (bug) or 130

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 70) | st.sampled_from([1 << 30, 1 << 62, 10 ** 9, -1])
    | st.floats(allow_nan=False, allow_infinity=False, width=32)
    | st.sampled_from(["", "all", "vram", "gtt", "alloc 1", "alloc 3", "free", "[/]", "../x", "w0", "a\nb",
                       "fix_is_ready", "no_overlap", "OK", "VIOLATION", "LIVENESS", "DEADLOCK"]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.sampled_from(["count", "ops", "a", "#bigint", "size", "fix_is_ready", "workers"]), inner, max_size=3),
    max_leaves=8)


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v if x is not None) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {_toml_value(x)}" for k, x in v.items() if x is not None) + "}"
    return '""'


def _paths(node, here=()):
    yield here
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _paths(v, here + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _paths(v, here + (i,))


TINY_TOML = [line for line in TINY.splitlines()]


@st.composite
def mutated_specs(draw):
    lines = list(TINY_TOML)
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["value", "value", "drop", "dup", "bytes"]))
        i = draw(st.integers(0, len(lines) - 1))
        if kind == "value" and " = " in lines[i]:
            key = lines[i].split(" = ", 1)[0]
            v = draw(json_values)
            lines[i] = f"{key} = {_toml_value(v)}" if v is not None else key + " = " + '"x"'
        elif kind == "drop":
            del lines[i]
        elif kind == "dup":
            lines.insert(i, lines[i])
        elif kind == "bytes":
            pos = draw(st.integers(0, len(lines[i])))
            lines[i] = lines[i][:pos] + draw(st.sampled_from(["[", "]", '"', "=", "{", "\\", "\u00e9", "0"])) \
                + lines[i][pos:]
        if not lines:
            lines = ["x"]
    return "\n".join(lines) + "\n"


SEEN_CODES: dict = {}


TINY_DICT = tomllib.loads(TINY)
SPEC_PATHS = [p for p in _paths(TINY_DICT) if p]


def _toml(d: dict) -> str:
    """A spec dict as TOML: top-level scalars, then one table a section (values inline)."""
    lines = [f"{json.dumps(k)} = {_toml_value(v)}" for k, v in d.items() if not isinstance(v, dict) and v is not None]
    for k, v in d.items():
        if isinstance(v, dict):
            lines.append(f"[{json.dumps(k)}]")
            lines += [f"{json.dumps(kk)} = {_toml_value(vv)}" for kk, vv in v.items() if vv is not None]
    return "\n".join(lines) + "\n"


@st.composite
def structured_specs(draw):
    """TINY with one to three fields replaced (any JSON-like value) or removed, written back as TOML."""
    d = copy.deepcopy(TINY_DICT)
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(SPEC_PATHS))
        node = d
        try:
            for k in path[:-1]:
                node = node[k]
            if draw(st.integers(0, 4)) == 0 and isinstance(node, dict):
                node.pop(path[-1], None)
            else:
                node[path[-1]] = draw(json_values | st.sampled_from([8, 9, 64, 65, 1 << 20, "alloc 2", "alloc 9"]))
        except (KeyError, IndexError, TypeError):
            pass
    return _toml(d)


CASE_SECONDS = 10          # no fuzzed case may run longer (they take ~20 ms; a hang would take forever)


def _timed_run(*args):
    import time
    t = time.monotonic()
    r = run(*args)
    assert time.monotonic() - t < CASE_SECONDS, ("slow case", args)
    return r


def _assert_clean(r, path):
    SEEN_CODES[r.exit_code] = SEEN_CODES.get(r.exit_code, 0) + 1
    assert "Traceback" not in r.output, r.output
    assert r.exit_code in ALLOWED, (r.exit_code, r.output)
    if r.exit_code == 2:
        lines = [x for x in r.stderr.splitlines() if x.strip()]
        assert len(lines) == 1, r.stderr
        m = re.match(rf"pddgpu-verify: error: {re.escape(str(path))}: (\S[^:]*): \S", lines[0])
        assert m, lines[0]


# a few hundred cases, the same on every run; PDDGPU_FUZZ_EXAMPLES=5000 searches longer, and afresh
_FUZZ = settings(max_examples=int(os.environ.get("PDDGPU_FUZZ_EXAMPLES", 200)), deadline=None,
                 derandomize="PDDGPU_FUZZ_EXAMPLES" not in os.environ,
                 suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@_FUZZ
@given(text=st.one_of(mutated_specs(), structured_specs()), cmd=st.sampled_from(["check", "check", "properties"]))
def test_fuzzed_specs_never_crash(text, cmd, tmp_path):
    p = tmp_path / "f.toml"
    p.write_text(text)
    args = ("--traces-dir", tmp_path / "t", "--max-states", 3000) if cmd == "check" else ()
    _assert_clean(_timed_run(cmd, p, *args), p)


BASE_TRACE = json.loads(SHUTDOWN_TRACE.read_text())
TRACE_PATHS = [p for p in _paths(BASE_TRACE) if p and not (len(p) >= 2 and p[0] == "states" and p[1] > 3)
               and not (len(p) >= 3 and p[:2] == ("#meta", "transitions") and p[2] > 2)]


@st.composite
def mutated_traces(draw):
    d = copy.deepcopy(BASE_TRACE)
    for _ in range(draw(st.integers(1, 2))):
        path = draw(st.sampled_from(TRACE_PATHS))
        node = d
        try:
            for k in path[:-1]:
                node = node[k]
            if draw(st.booleans()) and isinstance(node, dict):
                node.pop(path[-1], None)
            else:
                node[path[-1]] = draw(json_values)
        except (KeyError, IndexError, TypeError):
            pass
    return d


@_FUZZ
@given(data=mutated_traces(), cmd=st.sampled_from([("replay", "-q"), ("show",), ("replay", "--impl")]))
def test_fuzzed_traces_never_crash(data, cmd, tmp_path):
    p = tmp_path / "f.itf.json"
    p.write_text(json.dumps(data))
    _assert_clean(_timed_run(*cmd, p), p)


def test_ctrl_c_on_a_real_run_exits_130_without_a_traceback(tmp_path):
    import signal
    import subprocess
    import sys
    import time
    from helpers import eight_workers_spec, sigint_delivered
    p = eight_workers_spec(tmp_path)          # hundreds of millions of states: still running after 2 s
    proc = subprocess.Popen([sys.executable, "-m", "pddgpu_verify.cli.main", "check", str(p), "--no-symmetry",
                             "--traces-dir", str(tmp_path / "t")], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=tmp_path, preexec_fn=sigint_delivered)
    time.sleep(2.0)                        # past start-up, inside the exploration
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, (proc.returncode, out[-500:], err[-2000:])
    assert "Traceback" not in err and err.strip().splitlines()[-1] == "pddgpu-verify: interrupted"
