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
    assert "fix_free_always_releases" in text and "OK, 73 states" in text
    assert (tmp_path / "traces/vram_free_during_shutdown.itf.json").exists()


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
