"""The CLI as a user meets it: shipped specs, traces, replay, show, and bad
input answered with one line naming the file and field, exit code 2."""
import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from pddgpu_verify.checker.replay import replay
from pddgpu_verify.checker.run import run_spec
from pddgpu_verify.checker.spec import load_spec
from pddgpu_verify.checker.trace import load_trace
from pddgpu_verify.cli.main import main

ROOT = Path(__file__).resolve().parent.parent
SPECS = sorted((ROOT / "specs").glob("*.toml"))
DEFECT_SPECS = [p for p in SPECS if load_spec(p).defect]
TRACES = sorted((ROOT / "traces").glob("*.itf.json"))


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def test_every_spec_loads_and_names_its_expectation():
    assert len(SPECS) >= 20
    for p in SPECS:
        s = load_spec(p)
        assert s.expect_verdict in ("OK", "VIOLATION", "LIVENESS", "DEADLOCK")


@pytest.mark.parametrize("path", DEFECT_SPECS, ids=[p.stem for p in DEFECT_SPECS])
def test_defect_spec_breaks_its_property_and_its_fix_verifies(path, tmp_path):
    spec = load_spec(path)
    o = run_spec(spec, traces_dir=tmp_path)
    assert (o.result.verdict, o.result.property) == (spec.expect_verdict, spec.expect_property or o.result.property)
    assert o.matches
    # the trace it wrote replays on the model and shows the same violation
    res = replay(o.trace_path, load_trace(o.trace_path))
    assert res.confirmed, res.message
    if spec.fixed_by:
        f = run_spec(spec.with_fixes(), traces_dir=None)
        assert f.result.verdict == "OK", f.result.label


@pytest.mark.parametrize("model", ["vram", "gtt"])
def test_fixed_protocol_verifies_with_two_workers_and_every_role(model, tmp_path):
    # the shipped fixed specs (3 workers, millions of states) run in `make check`; the same configuration at
    # 2 workers keeps the suite fast and must verify too
    text = (ROOT / "specs" / f"4{0 if model == 'vram' else 1}_{model}_fixed.toml").read_text()
    p = tmp_path / "fixed2.toml"
    p.write_text(text.replace("count = 3", "count = 2"))
    o = run_spec(load_spec(p), traces_dir=tmp_path)
    assert o.result.verdict == "OK"
    assert o.result.stats["states"] > 10_000


def test_free_during_shutdown_check_exits_nonzero_and_writes_a_shortest_trace(tmp_path):
    r = run("check", ROOT / "specs/01_vram_free_during_shutdown.toml", "--traces-dir", tmp_path)
    assert r.exit_code == 1
    assert "VIOLATION(no_leak_at_fini)" in r.output
    trace = tmp_path / "vram_free_during_shutdown.itf.json"
    data = json.loads(trace.read_text())
    assert data["#meta"]["format"] == "ITF" and data["#meta"]["property"] == "no_leak_at_fini"
    steps = [(t["thread"], t["step"]) for t in data["#meta"]["transitions"]]
    assert ("w0", "op1.free.skipped") in steps and ("fini", "dev_shutdown") in steps
    # shortest: the DFS trace is no shorter
    r2 = run("check", ROOT / "specs/01_vram_free_during_shutdown.toml", "--strategy", "dfs", "--traces-dir",
             tmp_path / "dfs")
    dfs = json.loads((tmp_path / "dfs/vram_free_during_shutdown.itf.json").read_text())
    assert r2.exit_code == 1 and len(dfs["states"]) >= len(data["states"])


@pytest.mark.parametrize("trace", TRACES, ids=[p.name for p in TRACES])
def test_every_shipped_trace_replays_on_the_model(trace):
    r = run("replay", trace, "--quiet")
    assert r.exit_code == 0, r.output
    assert "confirmed" in r.output


def test_tampered_trace_does_not_replay(tmp_path):
    src = ROOT / "traces/vram_free_during_shutdown.itf.json"
    data = json.loads(src.read_text())
    data["states"][7]["mask"] = 2           # the allocator handed out another block than the model does
    p = tmp_path / "t.itf.json"
    p.write_text(json.dumps(data))
    r = run("replay", p)
    assert r.exit_code == 1
    assert "cannot go from step" in r.output


def test_show_prints_swimlanes_per_thread():
    r = run("show", ROOT / "traces/vram_free_during_shutdown.itf.json")
    assert r.exit_code == 0
    header = next(line for line in r.output.splitlines() if "w0" in line and "fini" in line)
    assert header.index("w0") < header.index("fini")
    assert "op1.free.skipped" in r.output and "dev_shutdown" in r.output


def test_options_and_properties_listings():
    assert "fix_free_always_releases" in run("options").output
    # the reading that stands in for the GTT fields drm_mm does not have is listed like every other
    assert "gtt_mm_fields" in run("options").output
    out = run("properties", ROOT / "specs/01_vram_free_during_shutdown.toml").output
    assert "no_leak_at_fini" in out and "deadlock" in out


# ---- bad input: one line, file and field named, exit 2, no traceback --------------------------------------

GOOD = (ROOT / "specs/01_vram_free_during_shutdown.toml").read_text()

BAD_SPECS = [
    ("not toml", "[spec\nname=", "toml"),
    ("unknown reading", GOOD.replace("[readings]", "[readings]\nretry_unlocks = true"), "readings.retry_unlocks"),
    ("bad reading value", GOOD.replace("[readings]", "[readings]\nfini_concurrent = 3"), "readings.fini_concurrent"),
    ("unknown fix", GOOD.replace("[fixes]", "[fixes]\nfix_everything = true"), "fixes.fix_everything"),
    ("unknown property", GOOD.replace('properties = "all"', 'properties = ["no_such_thing"]'), "check.properties"),
    ("unknown model", GOOD.replace('model = "vram"', 'model = "sram"'), "spec.model"),
    ("impossible size", GOOD.replace("size = 4", "size = 3"), "allocator.size"),
    ("alloc larger than vram", GOOD.replace('"alloc 1"', '"alloc 8"'), "threads.workers[0].ops"),
    ("bad op", GOOD.replace('"alloc 1"', '"allocate 1"'), "threads.workers[0].ops"),
    ("zero workers", GOOD.replace("count = 1", "count = 0"), "threads.workers[0].count"),
    ("missing expect", GOOD.split("[expect]")[0], "expect"),
    ("bad verdict", GOOD.replace('verdict = "VIOLATION"', 'verdict = "BROKEN"'), "expect.verdict"),
    ("unknown section", GOOD + "\n[extra]\nx = 1\n", "extra"),
    ("wrong type", GOOD.replace("symmetry = true", 'symmetry = "yes"'), "check.symmetry"),
    ("negative bound", GOOD.replace("symmetry = true", "symmetry = true\nmax_states = -5"), "check.max_states"),
    ("unknown fixed_by", GOOD.replace('fixed_by = ["fix_free_always_releases"]', 'fixed_by = ["fix_it"]'),
     "spec.fixed_by[0]"),
    ("unknown kind", GOOD.replace('model = "vram"', 'model = "vram"\nkind = "bug"'), "spec.kind"),
    ("fix_hazard without a fix on", GOOD.replace('model = "vram"', 'model = "vram"\nkind = "fix_hazard"'), "spec.kind"),
]


def _assert_one_line_error(r, path, field):
    assert r.exit_code == 2, r.output
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, r.stderr
    assert str(path) in lines[0] and field in lines[0], lines[0]
    assert "Traceback" not in r.output


@pytest.mark.parametrize("name, text, field", BAD_SPECS, ids=[b[0] for b in BAD_SPECS])
def test_malformed_spec_is_one_line_error_exit_2(name, text, field, tmp_path):
    p = tmp_path / "bad.toml"
    p.write_text(text)
    before = p.read_text()
    r = run("check", p, "--traces-dir", tmp_path)
    _assert_one_line_error(r, p, field)
    assert p.read_text() == before                  # nothing lost


def test_missing_spec_file(tmp_path):
    _assert_one_line_error(run("check", tmp_path / "nope.toml"), tmp_path / "nope.toml", "file")


def _trace_variant(tmp_path, mutate):
    data = json.loads((ROOT / "traces/vram_free_during_shutdown.itf.json").read_text())
    mutate(data)
    p = tmp_path / "bad.itf.json"
    p.write_text(json.dumps(data))
    return p


BAD_TRACES = [
    ("missing meta", lambda d: d.pop("#meta"), "#meta"),
    ("missing states", lambda d: d.pop("states"), "states"),
    ("unknown model", lambda d: d["#meta"].__setitem__("model_kind", "sram"), "#meta.model_kind"),
    ("another model", lambda d: d["#meta"].__setitem__("model_kind", "gtt"), "vars"),
    ("bad option", lambda d: d["#meta"]["options"].__setitem__("fix_is_ready", "yes"), "#meta.options.fix_is_ready"),
    ("unknown thread", lambda d: d["#meta"]["transitions"][0].__setitem__("thread", "w9"),
     "#meta.transitions[0].thread"),
    ("transition count", lambda d: d["#meta"]["transitions"].pop(), "#meta.transitions"),
    ("bad label", lambda d: d["states"][3].__setitem__("w0.pc", "op9.nowhere"), "states[3].w0.pc"),
    ("non-int value", lambda d: d["states"][2].__setitem__("mask", "one"), "states[2].mask"),
]


@pytest.mark.parametrize("name, mutate, field", BAD_TRACES, ids=[b[0] for b in BAD_TRACES])
def test_malformed_trace_is_one_line_error_exit_2(name, mutate, field, tmp_path):
    p = _trace_variant(tmp_path, mutate)
    for cmd in ("replay", "show"):
        _assert_one_line_error(run(cmd, p), p, field)


def test_trace_that_is_not_json(tmp_path):
    p = tmp_path / "x.itf.json"
    p.write_text("{not json")
    _assert_one_line_error(run("replay", p), p, "json")


def test_impossible_cli_parameter():
    r = CliRunner().invoke(main, ["bench", "--workers", "0"])
    assert r.exit_code == 2 and "--workers" in r.stderr


def test_check_without_arguments_compares_with_expected(tmp_path, monkeypatch):
    # a private specs/ with one defect spec and a wrong expectation: exit 4
    d = tmp_path / "specs"
    d.mkdir()
    shutil.copy(ROOT / "specs/03_vram_error_serves_alloc.toml", d)
    wrong = (ROOT / "specs/16_gtt_stats_data_race.toml").read_text().replace('verdict = "VIOLATION"',
                                                                             'verdict = "OK"')
    (d / "99_wrong.toml").write_text(wrong.replace('property = "no_data_race"', "").replace('prove = "VIOLATED"',
                                                                                           'prove = "PROVED"'))
    monkeypatch.chdir(tmp_path)
    r = run("check", "--traces-dir", tmp_path / "traces")
    assert r.exit_code == 4
    assert "gtt_stats_data_race" in r.output and "differ" in r.output


@pytest.mark.parametrize("name, mutate, field", BAD_TRACES, ids=[b[0] for b in BAD_TRACES])
def test_malformed_trace_on_the_implementation_is_one_line_error(name, mutate, field, tmp_path):
    p = _trace_variant(tmp_path, mutate)
    _assert_one_line_error(run("replay", p, "--impl"), p, field)


def test_replay_impl_unknown_fix_is_one_line_error():
    p = ROOT / "traces/vram_free_during_shutdown.itf.json"
    r = CliRunner().invoke(main, ["replay", str(p), "--impl", "--fix", "fix_nothing"])
    assert r.exit_code == 2 and "--fix" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_check_json_output(tmp_path):
    out = tmp_path / "o.json"
    r = run("check", ROOT / "specs/16_gtt_stats_data_race.toml", "--traces-dir", tmp_path, "--json", out)
    assert r.exit_code == 1
    (row,) = json.loads(out.read_text())
    assert (row["verdict"], row["property"], row["as_expected"]) == ("VIOLATION", "no_data_race", True)
    assert row["stats"]["states"] > 0 and row["trace"].endswith("gtt_stats_data_race.itf.json")
