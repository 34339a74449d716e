"""bench and findings produce their documents from real runs."""
from pathlib import Path

from click.testing import CliRunner
from rich.console import Console

from pddgpu_verify.checker.findings import interleaving_in_words, write_findings
from pddgpu_verify.cli.main import main

ROOT = Path(__file__).resolve().parent.parent


def test_bench_measures_rows_with_and_without_symmetry(tmp_path):
    out = tmp_path / "BENCH.md"
    r = CliRunner().invoke(main, ["bench", "--workers", "1,2", "--output", str(out)], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    rows = [line for line in out.read_text().splitlines() if line.startswith("| vram") or line.startswith("| gtt")]
    # 1 worker: one row per model; 2 workers: symmetry off and on
    assert len(rows) == 6
    two = {line.split("|")[3].strip(): int(line.split("|")[5].replace(",", "")) for line in rows
           if line.startswith("| vram") and line.split("|")[2].strip() == "2"}
    assert two["on"] < two["off"]
    assert all("OK" in line for line in rows)


def test_findings_are_written_from_runs(tmp_path):
    out = tmp_path / "FINDINGS.md"
    specs = [ROOT / "specs/01_vram_free_during_shutdown.toml", ROOT / "specs/16_gtt_stats_data_race.toml"]
    write_findings(Console(file=open(tmp_path / "log", "w")), specs, out, tmp_path / "traces")
    text = out.read_text()
    assert "free skipped during shutdown leaks its block" in text
    assert "VIOLATION(no_leak_at_fini)" in text and "VIOLATION(no_data_race)" in text
    assert "**fini** fini: dev_shutdown" in text
    from pddgpu_verify.checker.run import run_spec
    from pddgpu_verify.checker.spec import load_spec
    fixed = run_spec(load_spec(specs[0]).with_fixes(), traces_dir=None).result
    assert "fix_free_always_releases" in text and f"OK, {fixed.stats['states']:,} states" in text
    # each fix's proof is shown: the explorer's run and z3's induction on the fixed spec
    assert "- z3 (`prove` on the fixed spec): PROVED" in text
    assert (tmp_path / "traces/vram_free_during_shutdown.itf.json").exists()


def test_findings_keep_fix_hazards_and_code_findings_apart(tmp_path):
    """A fix_hazard spec (19) is shown under its own heading with what it needs, computed by runs without each of
    its fixes and readings; a reading that stands in for code that does not compile is a finding of its own."""
    out = tmp_path / "FINDINGS.md"
    specs = [ROOT / "specs/19_vram_state_retry_livelock.toml", ROOT / "specs/23_vram_enomem_returns_locked.toml",
             ROOT / "specs/22_vram_free_recheck_leak.toml"]
    write_findings(Console(file=open(tmp_path / "log", "w")), specs, out, tmp_path / "traces", proofs=False)
    text = out.read_text()
    hazards = text.index("## Hazards of this project's fixes")
    assert text.index("## 1. -ENOMEM returns holding the mutex") < hazards        # spec 23: a defect
    # spec 22 turns a (partial) fix on, and the generator shows the document as written has its defect too
    assert text.index("## 2. free's in-lock re-check returns without releasing the block") < hazards
    assert "the document as written breaks `no_leak_at_fini` too" in text
    assert text.index("### H1. state retry never returns") > hazards              # spec 19: a hazard of ours
    assert "this project's `fix_is_ready` together with the reading(s) `state_check_failure = \"retry\"`" in text
    assert "the document as written does not have this hazard" in text
    assert "## The document's code does not compile against drm_mm" in text
    assert "`gtt_mm_fields`" not in text.split("## Where the document is ambiguous")[1]   # not an ambiguity
    assert (tmp_path / "traces/vram_enomem_returns_locked.itf.json").exists()


def test_interleaving_in_words_groups_steps_of_one_call():
    from pddgpu_verify.checker.explorer import explore
    from pddgpu_verify.model import vram
    from pddgpu_verify.model.manager import Workload
    m = vram.make({}, Workload(workers=[[("alloc", 1), ("free",)]], shutdown=True))
    lines = interleaving_in_words(m, explore(m).path)
    assert lines[0].startswith("**w0** op0:alloc(1): dev_check")
    assert any("skipped" in line for line in lines)


def test_bench_keeps_the_bmc_at_depth_section(tmp_path):
    from pddgpu_verify.checker.bench import BMC_SECTION, write_markdown
    out = tmp_path / "BENCH.md"
    write_markdown(out, [], 10, 1.0)
    out.write_text(out.read_text() + "\n" + BMC_SECTION + "\n\n| spec | depth |\n")
    write_markdown(out, [], 20, 2.0)
    text = out.read_text()
    assert "state bound 20" in text and text.count(BMC_SECTION) == 1 and text.endswith("| spec | depth |\n")


def test_bench_proof_section_is_replaced_not_repeated(tmp_path):
    from pddgpu_verify.checker.bench import BMC_SECTION, PROOF_SECTION, write_markdown, write_section
    out = tmp_path / "BENCH.md"
    write_markdown(out, [], 10, 1.0)
    out.write_text(out.read_text() + "\n" + BMC_SECTION + "\n\n| bmc row |\n")
    write_section(out, PROOF_SECTION, [PROOF_SECTION, "", "| old proof row |"])
    write_section(out, PROOF_SECTION, [PROOF_SECTION, "", "| new proof row |"])
    write_markdown(out, [], 20, 2.0)
    text = out.read_text()
    assert text.count(PROOF_SECTION) == 1 and text.count(BMC_SECTION) == 1
    assert "| new proof row |" in text and "| old proof row |" not in text and "| bmc row |" in text
    assert "state bound 20" in text
