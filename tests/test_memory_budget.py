"""The explorer's memory budget: a run that outgrows it ends INCOMPLETE, says what it explored and how to go
further, and exits 3, never a MemoryError (issue 9: eight workers without bounds)."""
import subprocess
import sys
from pathlib import Path

import pytest

from pddgpu_verify.checker.explorer import INCOMPLETE, OK, default_memory_limit_mb, explore, parse_memory, rss_mb
from pddgpu_verify.checker.spec import load_spec

from helpers import eight_workers_spec as _eight_workers

ROOT = Path(__file__).resolve().parent.parent


def test_eight_unbounded_workers_end_incomplete_within_the_budget(tmp_path):
    p = _eight_workers(tmp_path)
    proc = subprocess.run([sys.executable, "-m", "pddgpu_verify.cli.main", "check", str(p), "--memory-limit", "160M",
                           "--traces-dir", str(tmp_path / "t")], capture_output=True, text=True, cwd=tmp_path,
                          timeout=300)
    assert proc.returncode == 3, (proc.returncode, proc.stdout[-1500:], proc.stderr[-1500:])
    assert "Traceback" not in proc.stderr and "MemoryError" not in proc.stderr
    out = " ".join(proc.stdout.split())
    assert "INCOMPLETE" in out
    assert "memory budget of 160 MB reached" in out and "--memory-limit" in out and "--hash-compact" in out


def test_the_budget_stops_the_search_in_process(tmp_path):
    spec = load_spec(_eight_workers(tmp_path))
    model = spec.build()
    budget = int(rss_mb()) + 40          # forty megabytes more than the process holds now
    r = explore(model, properties=spec.checked_properties(model), symmetry=False, memory_limit_mb=budget,
                backend="python")     # the native back end's budget has its own tests (test_native.py)
    assert r.verdict == INCOMPLETE and r.stats["memory_limit_mb"] == budget
    assert "memory budget" in r.detail
    spec = load_spec(ROOT / "specs/40_vram_fixed.toml")
    model = spec.build()
    # a budget the run fits in changes nothing: spec 40 with symmetry is 200,530 states, OK
    r2 = explore(model, properties=spec.checked_properties(model), symmetry=True, memory_limit_mb=int(rss_mb()) + 4096,
                 backend="python")
    assert r2.verdict == OK and r2.stats["states"] == 200_530


@pytest.mark.parametrize("text,mb", [("512M", 512), ("4G", 4096), ("2048", 2048), ("1.5GiB", 1536), ("64mb", 64)])
def test_memory_sizes_parse(text, mb):
    assert parse_memory(text) == mb


@pytest.mark.parametrize("text", ["3X", "", "-1G", "1K", "G"])
def test_bad_memory_sizes_are_one_line_errors(text, tmp_path):
    with pytest.raises(ValueError):
        parse_memory(text)
    proc = subprocess.run([sys.executable, "-m", "pddgpu_verify.cli.main", "check",
                           str(ROOT / "specs/01_vram_free_during_shutdown.toml"), "--memory-limit", text,
                           "--traces-dir", str(tmp_path / "t")], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 2 and proc.stderr.startswith("pddgpu-verify: error: --memory-limit:")
    assert len(proc.stderr.strip().splitlines()) == 1 and not (tmp_path / "t").exists()


def test_default_budget_is_a_share_of_the_machine():
    total = next(int(l.split()[1]) for l in open("/proc/meminfo") if l.startswith("MemTotal:")) / 1024
    assert 16 <= default_memory_limit_mb() < total
