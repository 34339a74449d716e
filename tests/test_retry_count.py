"""The allocation retry limit as a parameter (allocator.retry_count): the
model's retry counters widen to hold it, a trace records it, and the code
replays a trace with the same limit."""
import json
from pathlib import Path

from click.testing import CliRunner

from pddgpu_verify.checker.explorer import explore
from pddgpu_verify.checker.spec import load_spec
from pddgpu_verify.checker.trace import load_trace, model_of_trace, to_itf, write_trace
from pddgpu_verify.cli.main import main
from pddgpu_verify.model import vram
from pddgpu_verify.model.manager import Workload
from pddgpu_verify.conformance.impl_replay import format_report, replay_on_impl

# spec 14's defect: two workers want the whole VRAM, the loser runs out of retries and leaks its vres
ENOMEM = Workload(workers=[[("alloc", 4), ("free",)]] * 2)


def _enomem(retry_count):
    m = vram.make({}, ENOMEM, retry_count=retry_count)
    r = explore(m, properties=["no_lost_resource"], deadlock=False)
    assert r.verdict == "VIOLATION" and r.property == "no_lost_resource"
    return m, r


def test_the_leak_needs_every_retry_and_counters_widen_past_8_bits():
    m3, r3 = _enomem(3)
    m130, r130 = _enomem(130)
    # each extra retry is 7 more steps (lock, recheck, alloc, unlock, fail_check, sleep, and the winner's wait)
    assert len(r130.path) - len(r3.path) == 7 * (130 - 3)
    last = r130.path[-1][1]
    retries = [last[m130.layout.local_slot(t, "retry")] for t in range(2)]
    assert sorted(retries) == [0, 130]      # an 8-bit signed counter would have wrapped at 127


def test_trace_records_the_limit_and_the_code_honours_it(tmp_path: Path):
    m, r = _enomem(5)
    itf = to_itf(m, r.path, spec="enomem5", source="tests/enomem5", verdict=r.verdict, prop=r.property,
                 thread=r.thread)
    path = write_trace(tmp_path / "enomem5.itf.json", itf)
    data = load_trace(path)
    assert data["#meta"]["retry_count"] == 5
    assert model_of_trace(path, data).profile.retry_count == 5
    rep = replay_on_impl(data)
    assert rep.strict and rep.conforms and rep.reproduced, format_report(rep)
    # the same trace with the document's limit of 3 does not fit the code: it gives up two retries early
    data["#meta"].pop("retry_count")
    assert not replay_on_impl(data).conforms


def test_spec_21_sets_a_limit_of_100():
    spec = load_spec("specs/21_vram_free_during_shutdown_1m.toml")
    assert spec.retry_count == 100 and spec.build().profile.retry_count == 100


def test_bad_limits_are_one_line_errors(tmp_path: Path):
    src = Path("specs/21_vram_free_during_shutdown_1m.toml").read_text()
    bad = tmp_path / "bad.toml"
    bad.write_text(src.replace("retry_count = 100", "retry_count = 0"))
    r = CliRunner().invoke(main, ["check", str(bad)])
    assert r.exit_code == 2 and "allocator.retry_count" in r.output and str(bad) in r.output
    m, res = _enomem(4)
    itf = to_itf(m, res.path, spec="x", source="tests/x", verdict=res.verdict, prop=res.property, thread=res.thread)
    itf["#meta"]["retry_count"] = "many"
    t = tmp_path / "bad.itf.json"
    t.write_text(json.dumps(itf))
    r = CliRunner().invoke(main, ["replay", str(t)])
    assert r.exit_code == 2 and "#meta.retry_count" in r.output and "Traceback" not in r.output
