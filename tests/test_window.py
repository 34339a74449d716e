"""The allocator window: a model of a large VRAM or GTT that tracks only the
lowest units of the allocator is exact while its first fits stay inside, and
says so when they do not (docs/PROOFS.md, "A VRAM of 2^20 minimum blocks")."""
import json
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from pddgpu_verify.checker.bmc import INCOMPLETE as BMC_INCOMPLETE, NO_VIOLATION, VIOLATION, bmc, bmc_trace
from pddgpu_verify.checker.explorer import INCOMPLETE, explore
from pddgpu_verify.checker.replay import replay
from pddgpu_verify.checker.run import run_spec
from pddgpu_verify.checker.spec import load_spec
from pddgpu_verify.checker.trace import TraceError, load_trace, model_of_trace, write_trace
from pddgpu_verify.cli.main import main
from pddgpu_verify.cli.z3_commands import bmc as bmc_command
from pddgpu_verify.model import gtt, vram
from pddgpu_verify.model.geometry import (WINDOW_PROPERTY, GeometryError, buddy, buddy_window, default_window,
                                          geometry_for, range_allocator, range_window)
from pddgpu_verify.model.manager import Workload
from pddgpu_verify.model.options import ALL_FIXES
from pddgpu_verify.pddgpu.device import PAGE_SIZE, Device, Resource
from pddgpu_verify.conformance.impl_replay import Harness, format_report, replay_on_impl

ROOT = Path(__file__).resolve().parent.parent
SPEC_1M = ROOT / "specs/21_vram_free_during_shutdown_1m.toml"
M = 1 << 20
A = lambda n: ("alloc", n)  # noqa: E731
F = ("free",)


# ---- geometry -------------------------------------------------------------------------------------------------

def test_window_geometry_keeps_the_real_size_and_only_the_workload_sizes_inside_the_window():
    g = buddy_window(M, 6, [1, 2])
    assert g.units == M and g.window == 6 and g.windowed
    assert list(zip(g.starts, g.sizes)) == [(0, 1), (1, 1), (2, 1), (3, 1), (4, 1), (5, 1), (0, 2), (2, 2), (4, 2)]
    # conflicts are interval overlap, as in the explicit geometry
    full = buddy(8)
    idx = {(st, sz): i for i, (st, sz) in enumerate(zip(full.starts, full.sizes))}
    for a in range(g.count):
        for b in range(g.count):
            fa, fb = idx[(g.starts[a], g.sizes[a])], idx[(g.starts[b], g.sizes[b])]
            assert (g.conflicts[a] >> b & 1) == (full.conflicts[fa] >> fb & 1)
    r = range_window(M, 5, [2])
    assert list(zip(r.starts, r.sizes)) == [(0, 2), (1, 2), (2, 2), (3, 2)]


def test_small_allocators_keep_their_explicit_geometry():
    assert geometry_for("buddy", 4, None, (1,), 1) == buddy(4)
    assert geometry_for("buddy", 32, None, (1,), 3) == buddy(32)       # 63 candidates: the mask's 63 value bits
    assert geometry_for("range", 10, None, (1,), 3) == range_allocator(10)
    assert not buddy(4).windowed and buddy(4).window is None
    # a window as large as the allocator tracks every block: nothing to check
    assert not buddy_window(8, 8, [1]).windowed


def test_default_window_holds_a_first_fit_for_every_placement_of_the_live_blocks():
    # buddy: live blocks touch at most `live` of the live + 1 aligned blocks of the largest size
    assert default_window("buddy", M, (1,), 1) == 2
    assert default_window("buddy", M, (1, 2), 3) == 8
    # range: live nodes leave live + 1 gaps, one of them as long as the largest size
    assert default_window("range", M, (3,), 2) == 13
    assert default_window("range", 12, (3,), 2) == 12          # does not leave a whole node outside: everything
    for live in range(1, 4):
        for top in (1, 2, 3):
            w = default_window("range", M, (top,), live)
            # the worst placement: every node after a gap of top - 1 pages; one page less and nothing fits
            ends = [(k + 1) * (2 * top - 1) for k in range(live)]
            assert ends[-1] <= w and w - ends[-1] == top
            assert top == 1 or (w - 1) - ends[-1] < top


@pytest.mark.parametrize("kind, units, window, sizes, field", [
    ("buddy", M, 0, (1,), "window"),
    ("buddy", M, M + 1, (1,), "window"),
    ("buddy", M, 3, (2,), "window"),            # not a multiple of the largest allocation
    ("buddy", M, 1, (2,), "window"),            # cannot hold it
    ("buddy", M, 64, (1,), "window"),           # 64 candidates
    ("range", 12, 10, (3,), "window"),          # leaves 2 pages outside for a node of 3
    ("buddy", 3, 2, (1,), "size"),
])
def test_bad_windows_are_refused_naming_the_setting(kind, units, window, sizes, field):
    with pytest.raises(GeometryError) as e:
        geometry_for(kind, units, window, sizes, 1)
    assert e.value.field == field


# ---- the windowed model is the full model ---------------------------------------------------------------------

def _remap(src, dst):
    """Candidate index of src -> the candidate of dst with the same block."""
    idx = {(st, sz): i for i, (st, sz) in enumerate(zip(dst.starts, dst.sizes))}
    return [idx[(st, sz)] for st, sz in zip(src.starts, src.sizes)]


def _as_full(m_win, m_full, s):
    """A state of the windowed model written in the full model's candidate indices."""
    to = _remap(m_win.geometry, m_full.geometry)
    out = list(s)
    for k, d in enumerate(m_win.layout.decls):
        if d.name == "mask":
            out[k] = sum(1 << to[i] for i in range(m_win.geometry.count) if s[k] >> i & 1)
        elif d.name.endswith(".blk") and s[k] >= 0:
            out[k] = to[s[k]]
    return tuple(out)


VRAM_WL = Workload([[A(1), F], [A(2), F]], recoverers=1, shutdown=True)
GTT_WL = Workload([[A(1), F], [A(3), F]], recoverers=1, shutdown=True)


@pytest.mark.parametrize("mod, full_size, window, wl, opts", [
    (vram, 8, 6, VRAM_WL, dict(ALL_FIXES)),
    (vram, 8, 6, Workload([[A(1), F], [A(2), F]], recoverers=1), {}),   # as written: re-init under live blocks
    (gtt, 10, 7, GTT_WL, dict(ALL_FIXES)),
], ids=["vram-fixed", "vram-as-written", "gtt-fixed"])
def test_windowed_model_reaches_exactly_the_full_models_states(mod, full_size, window, wl, opts):
    full = mod.make(opts, wl, full_size)
    win = mod.make(opts, wl, full_size, window=window)
    assert WINDOW_PROPERTY in win.properties and WINDOW_PROPERTY not in full.properties
    rf = explore(full, keep_graph=True, deadlock=False, properties=[])
    rw = explore(win, keep_graph=True, deadlock=False, properties=[])
    assert rw.verdict == rf.verdict == "OK"
    assert {_as_full(win, full, s) for s in rw.graph[0]} == set(rf.graph[0])


@pytest.mark.parametrize("opts, verdict", [(dict(ALL_FIXES), "OK"), ({}, "VIOLATION")], ids=["fixed", "as-written"])
def test_same_verdict_and_state_count_full_window_and_a_million_blocks(opts, verdict):
    wl = Workload([[A(1), F]] * 3, recoverers=1, shutdown=True)
    runs = [explore(vram.make(opts, wl, size, window=window), symmetry=True)
            for size, window in ((32, None), (32, 8), (M, None))]
    labels = {r.label for r in runs}
    assert len(labels) == 1 and runs[0].verdict == verdict, labels
    assert len({r.stats["states"] for r in runs}) == 1
    assert len({len(r.path) for r in runs}) == 1


# ---- a window too small is reported, never a verdict ----------------------------------------------------------

@pytest.mark.parametrize("mod, opts", [(vram, {"is_ready_reads": 1}), (gtt, {"fix_is_ready": True})])
def test_window_too_small_is_incomplete_in_explorer_and_bmc_at_the_same_depth(mod, opts):
    m = mod.make(opts, Workload([[A(1)], [A(1)]]), M, window=1)
    r = explore(m, symmetry=True, properties=["no_overlap"])      # asked for or not, the window is checked
    assert (r.verdict, r.property) == (INCOMPLETE, WINDOW_PROPERTY)
    assert "raise allocator.window" in r.detail
    last = r.path[-1][1]
    assert m.layout.label(r.thread, last[m.layout.pc_slot(r.thread)]).endswith("alloc.alloc_call")
    depth = len(r.path) - 1
    b = bmc(m, depth, properties=["no_overlap"])
    assert (b.verdict, b.property, b.depth) == (BMC_INCOMPLETE, WINDOW_PROPERTY, depth)
    assert "raise allocator.window" in b.detail
    # with the window it needs, the same system is exact again: two blocks, no overlap
    ok = explore(mod.make(opts, Workload([[A(1)], [A(1)]]), M, window=2), symmetry=True, properties=["no_overlap"])
    assert ok.verdict == "OK"


def _spec(tmp_path, text, name="w.toml"):
    p = tmp_path / name
    p.write_text(text)
    return p


TWO_WORKERS_W1 = """
[spec]
name = "two_blocks_window_1"
model = "vram"
[readings]
is_ready_reads = 1
[allocator]
size = 1048576
window = 1
[threads]
workers = [{count = 2, ops = ["alloc 1"]}]
[check]
properties = ["no_overlap"]
[expect]
verdict = "OK"
"""


def test_check_and_bmc_commands_say_raise_the_window(tmp_path):
    p = _spec(tmp_path, TWO_WORKERS_W1)
    assert load_spec(p).window == 1
    r = CliRunner().invoke(main, ["check", str(p), "--traces-dir", str(tmp_path)])
    assert r.exit_code == 3, r.output
    assert "INCOMPLETE(window_large_enough)" in r.output and "raise allocator.window" in r.output

    @click.group()
    def cli():
        pass
    cli.add_command(bmc_command)
    r = CliRunner().invoke(cli, ["bmc", str(p), "--depth", "12", "--traces-dir", str(tmp_path)],
                           terminal_width=400)
    assert r.exit_code == 3, r.output
    assert "INCOMPLETE" in r.output and "window_large_enough" in r.output and "allocator.window" in r.output


def test_the_window_property_is_checked_whatever_the_spec_lists(tmp_path):
    p = _spec(tmp_path, TWO_WORKERS_W1)
    spec = load_spec(p)
    assert spec.checked_properties(spec.build()) == ["no_overlap", WINDOW_PROPERTY]
    o = run_spec(spec, traces_dir=tmp_path)
    assert o.result.label == "INCOMPLETE(window_large_enough)" and not o.matches and o.trace_path is None
    # an unwindowed model has no such property
    s01 = load_spec(ROOT / "specs/01_vram_free_during_shutdown.toml")
    m01 = s01.build()
    assert WINDOW_PROPERTY not in m01.properties and not m01.bounds
    assert WINDOW_PROPERTY not in s01.checked_properties(m01)


# ---- the 2^20 spec: explorer, bmc, replay on the model and on the code ----------------------------------------

def test_bmc_on_a_million_blocks_finds_the_explorers_violation_at_its_depth(tmp_path):
    spec = load_spec(SPEC_1M)
    o = run_spec(spec, traces_dir=tmp_path)
    assert o.matches and o.model.geometry.units == M and o.model.geometry.windowed
    depth = len(o.result.path) - 1
    s01 = run_spec(load_spec(ROOT / "specs/01_vram_free_during_shutdown.toml"), traces_dir=None)
    assert depth == len(s01.result.path) - 1 and o.result.stats["states"] == s01.result.stats["states"]
    m = spec.build()
    props = spec.checked_properties(m) + ["deadlock"]
    assert bmc(m, depth - 1, properties=props).verdict == NO_VIOLATION
    b = bmc(m, depth, properties=props)
    assert (b.verdict, b.property, b.depth) == (VIOLATION, spec.expect_property, depth)
    p = write_trace(tmp_path / "bmc.itf.json", bmc_trace(m, b, spec=str(SPEC_1M), source="test"))
    data = load_trace(p)
    assert data["#meta"]["size"] == M and data["#meta"]["window"] == m.geometry.window
    res = replay(p, data)
    assert res.confirmed, res.message
    rep = replay_on_impl(data, root=ROOT)
    assert rep.conforms and rep.reproduced, format_report(rep)
    assert "1048576 minimum blocks" in format_report(rep)
    fixed = replay_on_impl(data, {"fix_free_always_releases": True}, root=ROOT)
    assert fixed.clean, format_report(fixed)


def test_shipped_million_block_trace_names_its_window():
    data = load_trace(ROOT / "traces/vram_free_during_shutdown_1m.itf.json")
    m = model_of_trace("t", data)
    assert m.geometry.units == M and data["#meta"]["window"] == m.geometry.window
    h = Harness("vram", M, {}, m.workload, window=data["#meta"]["window"])
    assert h.geo == m.geometry


def test_trace_with_a_bad_window_is_a_trace_error(tmp_path):
    data = json.loads((ROOT / "traces/vram_free_during_shutdown_1m.itf.json").read_text())
    for bad in (64, "two", 0):
        data["#meta"]["window"] = bad
        p = tmp_path / "bad.itf.json"
        p.write_text(json.dumps(data))
        with pytest.raises(TraceError) as e:
            model_of_trace(p, load_trace(p))
        assert "#meta.window" in str(e.value)


def test_real_allocators_hold_a_million_units_without_per_unit_structures():
    dev = Device(vram_size=M * PAGE_SIZE, gtt_pages=M, sleep_scale=0)
    for name in ("vram", "gtt"):
        mgr = dev.manager(name)
        res = [Resource(PAGE_SIZE) for _ in range(3)]
        assert [mgr.alloc(r) for r in res] == [0, 0, 0]
        assert [r.extents()[0][0] // PAGE_SIZE for r in res] == [0, 1, 2]      # first fit, the model's policy
        mgr.free(res[1])
        assert mgr.get_stats().total_size == M * PAGE_SIZE
        if name == "vram":
            assert sum(1 for _ in mgr.mm.iter_free_blocks()) <= 2 * 20     # a few blocks per tree level
        else:
            assert len(list(mgr.mm.holes())) == 2


# ---- spec errors: one line, file and field, exit 2 ------------------------------------------------------------

GOOD = SPEC_1M.read_text()
EIGHT = "workers = [{count = 8, ops = [\"alloc 1\", \"alloc 2\", \"alloc 4\"]}]"
BAD = [
    ("window zero", GOOD.replace("size = 1048576", "window = 0\nsize = 1048576"), "allocator.window"),
    ("window above size", GOOD.replace("size = 1048576", "window = 2097152\nsize = 1048576"), "allocator.window"),
    ("window not an integer", GOOD.replace("size = 1048576", "window = \"2\"\nsize = 1048576"), "allocator.window"),
    ("window too many candidates", GOOD.replace("size = 1048576", "window = 100\nsize = 1048576"),
     "allocator.window"),
    ("window not a multiple", GOOD.replace('"alloc 1"', '"alloc 2"').replace("size = 1048576",
                                                                             "window = 3\nsize = 1048576"),
     "allocator.window"),
    ("window smaller than an alloc", GOOD.replace('"alloc 1"', '"alloc 4"').replace("size = 1048576",
                                                                                    "window = 2\nsize = 1048576"),
     "allocator.window"),
    ("no default window", GOOD.replace('workers = [{count = 1, ops = ["alloc 1", "free"]}]', EIGHT),
     "allocator.window"),
    ("vram above 2^30", GOOD.replace("size = 1048576", "size = 2147483648"), "allocator.size"),
    ("gtt window leaves no node outside", GOOD.replace('model = "vram"', 'model = "gtt"').replace(
        '"alloc 1"', '"alloc 3"').replace("size = 1048576", "window = 10\nsize = 12"), "allocator.window"),
]


@pytest.mark.parametrize("name, text, field", BAD, ids=[b[0] for b in BAD])
def test_bad_window_specs_are_one_line_errors_exit_2(name, text, field, tmp_path):
    p = _spec(tmp_path, text)
    r = CliRunner().invoke(main, ["check", str(p), "--traces-dir", str(tmp_path)], catch_exceptions=False)
    assert r.exit_code == 2, r.output
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, r.stderr
    assert str(p) in lines[0] and field in lines[0], lines[0]
