"""Progress of prove, bmc and findings on stderr: the line says the phase, the properties settled and the
solver calls; on a terminal it is one live line, in a log one line per interval; and it changes no verdict,
no resource count and no byte of stdout."""
import io
import re
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from rich.console import Console

from pddgpu_verify.checker import z3_progress
from pddgpu_verify.checker.bmc import bmc
from pddgpu_verify.checker.findings import write_findings
from pddgpu_verify.checker.prove import prove
from pddgpu_verify.checker.spec import load_spec
from pddgpu_verify.checker.z3_budget import Budget
from pddgpu_verify.checker.z3_progress import Progress
from pddgpu_verify.cli.main import main
from helpers import reinit_defect

ROOT = Path(__file__).resolve().parent.parent
SPEC = reinit_defect('[check]\nproperties = ["no_buddy_metadata_leak", "no_overlap", "returns_without_lock"]\n[prove]\nlemmas = ["mask_conflict_free"]\nbmc_depth = 6\n')


class Tty(io.StringIO):
    def isatty(self):
        return True


def _wait_for(stream, n=1, timeout=5.0):
    t = time.monotonic()
    while stream.getvalue().count("solver calls") < n and time.monotonic() - t < timeout:
        time.sleep(0.01)


def test_log_lines_name_phase_settled_and_calls():
    out = io.StringIO()
    p = Progress(True, "prove x", stream=out, interval=0.02).start()
    p.query("houdini: 3 goal(s), 3 hypotheses")
    p.settle(1, 4)
    _wait_for(out, 2)
    p.close()
    lines = out.getvalue().splitlines()
    assert len(lines) >= 2 and "\r" not in out.getvalue()
    assert re.fullmatch(r"  prove x: houdini: 3 goal\(s\), 3 hypotheses, 1/4 properties settled, 1 solver calls, "
                        r"\d+s", lines[0]), lines[0]


def test_terminal_line_is_overwritten_and_erased_at_the_end():
    out = Tty()
    p = Progress(True, "bmc x", stream=out, interval=0.02).start()
    p.within("spec 1/2 s")
    p.query("bmc depth 3")
    _wait_for(out, 2)
    p.close()
    text = out.getvalue()
    assert "\n" not in text and text.count("\r") >= 2 and text.endswith("\r\x1b[K")
    assert "bmc x: spec 1/2 s: bmc depth 3, 1 solver calls" in text


def test_disabled_progress_writes_nothing():
    out = Tty()
    with Progress(False, "x", stream=out, interval=0.01) as p:
        p.query("q")
        time.sleep(0.05)
    assert out.getvalue() == ""


def test_progress_changes_no_verdict_and_no_resource_count(tmp_path):
    (tmp_path / "s.toml").write_text(SPEC)
    model = load_spec(tmp_path / "s.toml").build()

    def run(with_progress):
        b = Budget()
        if with_progress:
            b.progress = Progress(True, "t", stream=io.StringIO(), interval=0.001).start()
        props = ["no_buddy_metadata_leak", "no_overlap", "returns_without_lock"]
        res = prove(model, props, ["mask_conflict_free"], budget=b, bmc_depth=6)
        bm = bmc(model, 6, properties=props, budget=b)
        if with_progress:
            b.progress.close()
            assert "solver calls" in b.progress.stream.getvalue()
        return ([(r.name, r.verdict, r.detail, r.breaking) for r in res], (bm.verdict, bm.property, bm.depth),
                [(q.what, q.used, q.result) for q in b.queries])

    assert run(True) == run(False)


def _no_times(text):
    """The text of a table without its times (seconds differ run to run) or the widths they give the columns."""
    return re.sub(r"[\s─━│┃┏┓┗┛┡┩└┘┳┻╇┴┬┼╋]+", " ", re.sub(r"\d+\.\d\d", "T", text))


@pytest.mark.parametrize("cmd", ["bmc", "prove"])
def test_cli_progress_is_on_stderr_only(cmd, tmp_path, monkeypatch):
    spec = tmp_path / "s.toml"
    spec.write_text(SPEC.replace('lemmas = ["mask_conflict_free"]', "lemmas = []"))    # quicker: CTIs
    args = [cmd, str(spec), "--traces-dir", str(tmp_path / "tr")] + (["--depth", "6"] if cmd == "bmc" else [])
    monkeypatch.setattr(z3_progress, "LOG_INTERVAL", 1e9)
    quiet = CliRunner().invoke(main, args, catch_exceptions=False)
    monkeypatch.setattr(z3_progress, "LOG_INTERVAL", 0.001)
    loud = CliRunner().invoke(main, args, catch_exceptions=False)
    assert quiet.exit_code == loud.exit_code == 1
    assert quiet.stderr == "" and f"  {cmd} t_reinit" in loud.stderr and "solver calls" in loud.stderr
    assert _no_times(quiet.stdout) == _no_times(loud.stdout)


def test_findings_progress_names_the_spec_and_keeps_stdout(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(z3_progress, "LOG_INTERVAL", 0.001)
    log = io.StringIO()
    write_findings(Console(file=log, width=1000), [ROOT / "specs/01_vram_free_during_shutdown.toml"], tmp_path / "F.md",
                   tmp_path / "traces", proofs=False, progress=True)
    err = capsys.readouterr().err
    assert "  findings: spec 1/1 vram_free_during_shutdown: " in err
    assert log.getvalue() == f"  vram_free_during_shutdown ...\nwritten to {tmp_path / 'F.md'}\n"
