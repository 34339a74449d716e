"""The prove/bmc commands (exit codes, one-line errors, traces that replay),
the state-word theorems and the cutoff side conditions."""
import json

import click
import pytest
from click.testing import CliRunner

from pddgpu_verify.checker.bmc import replay
from pddgpu_verify.checker.explorer import Move
from pddgpu_verify.checker.parametric import classify, side_conditions
from pddgpu_verify.checker.stateword import check_all, stateword_report
from pddgpu_verify.checker.trace import load_trace, model_of_trace
from pddgpu_verify.cli.z3_commands import bmc, prove
from pddgpu_verify.model import vram
from pddgpu_verify.model.manager import Workload
from pddgpu_verify.model.options import ALL_FIXES
from helpers import reinit_defect, write_spec


@click.group()
def cli():
    pass

cli.add_command(prove)
cli.add_command(bmc)

DEFECT = reinit_defect()


def test_bmc_command_writes_a_trace_that_replays(tmp_path):
    spec = write_spec(tmp_path, DEFECT)
    r = CliRunner().invoke(cli, ["bmc", str(spec), "--depth", "6", "--traces-dir", str(tmp_path / "tr")])
    assert r.exit_code == 1, r.output
    files = list((tmp_path / "tr").glob("*.bmc.itf.json"))
    assert len(files) == 1
    data = load_trace(files[0])
    assert data["#meta"]["backend"] == "bmc" and data["#meta"]["property"] == "no_buddy_metadata_leak"
    model = model_of_trace(files[0], data)
    names = model.layout.var_names()
    path = []
    for i, st in enumerate(data["states"]):
        state = tuple(st[n] if not n.endswith(".pc") else model.layout.pc_of_label(
            model.thread_index(n[:-3]), st[n]) for n in names)
        mv = None
        if i:
            t = data["#meta"]["transitions"][i - 1]
            tid = model.thread_index(t["thread"])
            mv = Move(tid, model.layout.pc_of_label(tid, t["step"]), t["branch"])
        path.append((mv, state))
    replay(model, path)


def test_prove_command_verdicts_and_exit_codes(tmp_path):
    spec = write_spec(tmp_path, DEFECT.replace('[expect]', '[prove]\nlemmas = ["mask_conflict_free"]\nbmc_depth = 6\n[expect]'))
    r = CliRunner().invoke(cli, ["prove", str(spec), "--traces-dir", str(tmp_path / "tr")])
    assert r.exit_code == 1, r.output
    assert "VIOLATED" in r.output
    fixed = DEFECT.replace("fix_fini_evicts = true", "fix_fini_evicts = true\nfix_recover_reinit = true")
    spec2 = write_spec(tmp_path, fixed.replace('[expect]', '[prove]\nlemmas = ["auto", "mask_conflict_free", '
                                                      '"held_blocks_in_mask", "mask_is_held_blocks"]\n[expect]'), "f.toml")
    r = CliRunner().invoke(cli, ["prove", str(spec2), "--traces-dir", str(tmp_path / "tr")])
    assert r.exit_code == 0, r.output
    assert "NOT INDUCTIVE" not in r.output and "PROVED" in r.output
    # without lemmas the fixed model's properties are not all inductive: CTIs are written
    spec3 = write_spec(tmp_path, fixed.replace('[expect]', '[prove]\nlemmas = []\nbmc_depth = 3\n[expect]'), "g.toml")
    r = CliRunner().invoke(cli, ["prove", str(spec3), "--traces-dir", str(tmp_path / "tr3")])
    assert r.exit_code == 1 and "NOT INDUCTIVE" in r.output
    ctis = list((tmp_path / "tr3").glob("*.cti.itf.json"))
    assert ctis
    meta = json.loads(ctis[0].read_text())["#meta"]
    assert meta["backend"] == "z3-cti" and len(meta["transitions"]) == 1 and meta["breaking"].startswith("thread ")


@pytest.mark.parametrize("text,field", [
    ('[prove]\nlemmas = ["nope"]\n', "prove.lemmas"),
    ('[prove]\nk = "two"\n', "prove.k"),
    ('[prove]\nwhat = 1\n', "prove.what"),
])
def test_bad_prove_table_is_one_line(tmp_path, text, field):
    spec = write_spec(tmp_path, DEFECT.replace("[expect]", text + "[expect]"))
    r = CliRunner(mix_stderr=False).invoke(cli, ["prove", str(spec)]) if "mix_stderr" in \
        CliRunner.__init__.__code__.co_varnames else CliRunner().invoke(cli, ["prove", str(spec)])
    assert r.exit_code == 2
    err = (r.stderr if hasattr(r, "stderr") and r.stderr else r.output).strip().splitlines()
    assert len(err) == 1 and err[0].startswith("pddgpu-verify: error: ") and f": {field}: " in err[0]
    assert "Traceback" not in r.output


def test_bad_spec_is_one_line(tmp_path):
    spec = write_spec(tmp_path, DEFECT.replace('model = "vram"', 'model = "dram"'))
    for cmd in (["prove", str(spec)], ["bmc", str(spec)], ["prove", str(tmp_path / "missing.toml")]):
        r = CliRunner().invoke(cli, cmd)
        assert r.exit_code == 2
        lines = r.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("pddgpu-verify: error: ")


def test_unknown_verdict_exit_3(tmp_path):
    spec = write_spec(tmp_path, DEFECT)
    r = CliRunner().invoke(cli, ["bmc", str(spec), "--depth", "40", "--rlimit", "1",
                                 "--traces-dir", str(tmp_path)])
    assert r.exit_code == 3 and "UNKNOWN" in r.output    # resource units, not seconds: the same on any machine


def test_stateword_theorems():
    res = {c.name: c for c in check_all()}
    assert res["is_ready excludes ERROR"].holds is False
    assert res["is_ready excludes ERROR"].witness["word"] == "READY|ERROR"
    assert res["recover keeps SHUTDOWN"].holds is False
    assert res["transition READY -> ERROR"].holds is False        # atomic_or keeps READY
    assert res["transition INITIALIZING -> READY"].holds is True   # only by the plain store
    assert res["INITIALIZING is cleared"].witness["clears"] == "atomic_set(READY)"
    assert res["two-read is_ready is linearizable"].holds is True
    md = stateword_report()
    assert md.startswith("## The state word") and "READY\\|ERROR" in md


def test_cutoff_side_conditions():
    wl = Workload(workers=[[("alloc", 1), ("free",)]] * 3, recoverers=1, stats_readers=1, shutdown=True)
    m = vram.make(ALL_FIXES, wl)
    assert side_conditions(m) == []
    assert classify(m, "no_overlap") == "universal"
    assert classify(m, "used_matches_allocations") == "implied"
    assert classify(m, "no_lost_resource") == "implied"
    # a worker reading another worker's local breaks (S1)
    from pddgpu_verify.model import expr as E
    from pddgpu_verify.model.program import Branch, Model, Program, Step, ThreadDef
    th = m.threads[0]
    st = th.program.steps[0]
    bad_br = Branch(E.eq(E.Local("blk", 1), 0), st.branches[0].updates, st.branches[0].goto)
    steps = (Step(st.label, (bad_br,) + st.branches[1:], st.section, st.code, st.kind, st.call, st.asserts),) + \
        th.program.steps[1:]
    m2 = Model(m.name, m.shared, (ThreadDef(th.name, Program("worker", steps, th.program.locals), th.group),)
               + m.threads[1:], dict(m.properties), dict(m.locks), m.options)
    assert any("(S1)" in p for p in side_conditions(m2))
