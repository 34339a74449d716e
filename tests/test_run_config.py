"""One run configuration (model/run_config.py): a spec's TOML and a trace's #meta read by one loader into the
same RunConfig, which builds the model the checker explores and drives the Python and the C harness."""
from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from pddgpu_verify.checker.spec import SpecError, load_spec
from pddgpu_verify.checker.trace import TraceError, load_trace, model_of_trace
from pddgpu_verify.cli.main import main
from pddgpu_verify.conformance.impl_replay import Harness, replay_on_impl
from pddgpu_verify.model.run_config import (META_FIELDS, RunConfig, RunConfigError, config_of_model,
                                            load_run_config)

ROOT = Path(__file__).resolve().parent.parent


def test_spec_and_its_trace_give_one_configuration():
    """Spec 23 sets allocator.retry_count = 1; its trace's #meta carries it; both read back to one RunConfig,
    and the model each builds has the same variables and the same retry limit."""
    spec = load_spec(ROOT / "specs" / "23_vram_enomem_returns_locked.toml")
    data = load_trace(ROOT / "traces" / "vram_enomem_returns_locked.itf.json")
    from_meta = load_run_config(data["#meta"])
    assert (from_meta.kind, from_meta.size, from_meta.retry_count, from_meta.window) == ("vram", 4, 1, None)
    assert from_meta.workload == spec.run_config.workload
    assert from_meta.resolved_options == spec.run_config.resolved_options
    m_spec, m_trace = spec.build(), model_of_trace("t", data)
    assert m_spec.layout.var_names() == m_trace.layout.var_names()
    assert m_spec.profile.retry_count == m_trace.profile.retry_count == 1
    # what a trace of the spec's model records is the configuration again
    back = load_run_config(config_of_model(m_spec).to_meta())
    assert back.retry_count == 1 and back.workload == spec.workload and back.size == spec.size


def test_harness_takes_the_configuration():
    cfg = load_spec(ROOT / "specs" / "23_vram_enomem_returns_locked.toml").run_config
    h = Harness.from_config(cfg)
    assert h.mgr.RETRY_COUNT == 1 and h.model.profile.retry_count == 1 and h.config == cfg


def test_windowed_spec_configuration_reaches_the_trace():
    spec = load_spec(ROOT / "specs" / "21_vram_free_during_shutdown_1m.toml")
    meta = config_of_model(spec.build()).to_meta()
    assert meta["window"] == spec.build().geometry.window and meta["size"] == spec.size


@pytest.mark.parametrize("field,value,where", [
    ("model_kind", "toy", "#meta.model_kind"), ("size", 3, "#meta.size"), ("window", 9, "#meta.window"),
    ("retry_count", 0, "#meta.retry_count"), ("retry_count", True, "#meta.retry_count"),
    ("options", {"fix_everything": True}, "#meta.options.fix_everything"), ("workload", {}, "#meta.workload"),
])
def test_bad_field_is_named(field, value, where):
    meta = dict(load_trace(ROOT / "traces" / "vram_free_during_shutdown.itf.json")["#meta"], **{field: value})
    with pytest.raises(RunConfigError) as e:
        load_run_config(meta, META_FIELDS)
    assert e.value.field == where
    with pytest.raises(ValueError, match=where.replace(".", r"\.")):
        replay_on_impl({"#meta": dict(meta), "states": []})


def test_spec_errors_name_file_and_field(tmp_path):
    text = (ROOT / "specs" / "23_vram_enomem_returns_locked.toml").read_text()
    p = tmp_path / "bad.toml"
    p.write_text(text.replace("retry_count = 1 ", "retry_count = 0 "))
    with pytest.raises(SpecError, match=r"bad\.toml: allocator\.retry_count: must be an integer from 1 to"):
        load_spec(p)
    r = CliRunner().invoke(main, ["check", str(p)], catch_exceptions=False)
    assert r.exit_code == 2 and "allocator.retry_count" in r.output and len(r.output.strip().splitlines()) == 1


def test_trace_errors_name_file_and_field(tmp_path):
    import json
    data = json.loads((ROOT / "traces" / "vram_enomem_returns_locked.itf.json").read_text())
    data["#meta"]["retry_count"] = 0
    p = tmp_path / "t.itf.json"
    p.write_text(json.dumps(data))
    with pytest.raises(TraceError, match=r"t\.itf\.json: #meta\.retry_count: must be an integer from 1 to"):
        load_trace(p)
    r = CliRunner().invoke(main, ["replay", str(p)], catch_exceptions=False)
    assert r.exit_code == 2 and "#meta.retry_count" in r.output and len(r.output.strip().splitlines()) == 1


def test_a_configuration_builds_what_build_model_builds():
    from pddgpu_verify.model.registry import build_model
    cfg = load_spec(ROOT / "specs" / "01_vram_free_during_shutdown.toml").run_config
    a, b = cfg.build("x"), build_model(cfg.kind, cfg.options, cfg.workload, cfg.size, "x")
    assert a.layout.var_names() == b.layout.var_names() and a.run_config == b.run_config == cfg
    assert isinstance(a.run_config, RunConfig)
