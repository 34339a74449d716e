"""Proof certificates (checker/certificate.py): a shipped certificate re-checks its proof far faster than the
search, nothing in it is trusted (a false invariant is dropped, a broken protocol is not proved with it), a
certificate that no longer carries the proof makes check search, and a malformed one is bad input."""
import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner

from pddgpu_verify.checker import certificate, proof_check
from pddgpu_verify.checker import prove as prove_mod
from pddgpu_verify.checker.parametric import prove_any_workers, prove_spec_any_workers
from pddgpu_verify.checker.prove import NOT_INDUCTIVE, PROVED, ProofResult
from pddgpu_verify.checker.spec import load_spec
from pddgpu_verify.checker.z3_budget import Budget
from pddgpu_verify.cli.main import main
from pddgpu_verify.model import gtt
from pddgpu_verify.model.manager import Workload
from pddgpu_verify.model.options import ALL_FIXES

ROOT = Path(__file__).resolve().parent.parent
GTT_FIXED = ROOT / "specs" / "41_gtt_fixed.toml"


def _shipped(spec_file):
    spec = load_spec(spec_file)
    tps = certificate.load(spec)
    assert tps, f"{certificate.path_for(spec)} missing or empty: make certificates"
    return spec, tps


def test_the_shipped_certificate_proves_and_a_false_invariant_in_it_is_dropped():
    spec, tps = _shipped(GTT_FIXED)
    # "used is always 0" holds initially and breaks at the first allocation
    false = ("gval", "used", (0,))
    budget, kept = Budget(), []
    pr = prove_spec_any_workers(spec, budget=budget, templates=tps + [false], kept_out=kept)
    verdicts = {r.name: r.verdict for r in pr.results}
    assert len(verdicts) == 32 and set(verdicts.values()) == {PROVED}, verdicts
    assert false not in kept and len(kept) == len(tps)
    # the search takes 35 queries (Houdini removing wrong guesses round by round); with the certificate the
    # candidates are inductive as they stand: 9 queries for the three systems, one more for the false one
    assert len(budget.queries) <= 12, len(budget.queries)


def test_a_certificate_does_not_prove_a_broken_protocol():
    """The fixed GTT's certificate handed to the protocol without the free fix: the leak at fini is still
    not proved (the explorer finds it with one worker)."""
    _, tps = _shipped(GTT_FIXED)
    opts = dict(ALL_FIXES, fix_free_always_releases=False)
    base = Workload(workers=[[("alloc", 1), ("free",)]], shutdown=True)
    pr = prove_any_workers(lambda wl: gtt.make(opts, wl), base, ["no_leak_at_fini", "no_overlap"],
                           stress_builder=lambda wl: gtt.make(opts, wl, size=1), templates=tps)
    res = {r.name: r.verdict for r in pr.results}
    assert res["no_leak_at_fini"] == NOT_INDUCTIVE


def test_a_certificate_that_no_longer_carries_the_proof_makes_check_search(monkeypatch):
    spec = load_spec(GTT_FIXED)
    calls = []

    def fake(target, *, budget, templates=None, kept_out=None, **_):
        calls.append(templates is not None)
        v = NOT_INDUCTIVE if templates is not None else PROVED
        names = target.properties if isinstance(target.properties, list) else ["no_overlap", "no_leak_at_fini"]
        return v, [ProofResult(p, "property", v, 0.0) for p in names]
    monkeypatch.setattr(prove_mod, "prove_spec", fake)
    monkeypatch.setattr(certificate, "load", lambda s: [("gval", "used", (0,))])
    out = proof_check.run_proof(spec)
    assert calls == [True, False]
    assert out.result == PROVED and out.matches and "certificate stale: searched" in out.summary
    # without certificates, one search; a defect spec asks BMC without mining (no certificate needed)
    calls.clear()
    assert proof_check.run_proof(spec, certificates=False).result == PROVED and calls == [False]
    calls.clear()
    defect = load_spec(ROOT / "specs" / "16_gtt_stats_data_race.toml")
    proof_check.run_proof(defect)
    assert calls == [True, False]        # NOT INDUCTIVE from the fake with templates=[]: then the search


def test_a_defect_is_asked_of_z3_at_the_explorers_depth_and_a_depth_without_one_falls_back():
    """Spec 05's shortest violation is 3 steps: z3 finds it at depth 3 alone, with a path the interpreter
    replays; asked at depth 2, where there is none, the proof searches from depth 0 and still finds 3."""
    from pddgpu_verify.checker.explorer import explore
    from pddgpu_verify.checker.prove import VIOLATED, prove_violation
    from pddgpu_verify.model import interpret
    spec = load_spec(ROOT / "specs" / "05_vram_recover_metadata_leak.toml")
    r = explore(spec.build(), properties=spec.checked_properties(spec.build()), symmetry=spec.symmetry)
    assert (r.verdict, r.property, len(r.path) - 1) == ("VIOLATION", "no_buddy_metadata_leak", 3)
    out = proof_check.run_proof(spec, explorer=r)
    assert (out.result, out.matches) == (VIOLATED, True) and "3-step trace" in out.summary
    overall, res = prove_violation(spec, at_depth=3)
    (p,) = [x for x in res if x.kind == "property"]
    assert (overall, p.verdict, len(p.trace) - 1) == (VIOLATED, VIOLATED, 3) and "explorer's depth" in p.detail
    assert interpret.check(spec.build(), p.trace[-1][1], ["no_buddy_metadata_leak"])
    overall, res = prove_violation(spec, at_depth=2)
    (p,) = [x for x in res if x.kind == "property" and x.name == "no_buddy_metadata_leak"]
    assert (p.verdict, len(p.trace) - 1) == (VIOLATED, 3) and "explorer's depth" not in p.detail


def test_check_writes_certificates_only_for_what_a_proof_kept(tmp_path):
    """--write-certificates on a defect spec writes nothing (a violation needs no invariant); a fixed spec
    gets its file, whose templates load back as tuples."""
    shutil.copy(ROOT / "specs" / "16_gtt_stats_data_race.toml", tmp_path / "16.toml")
    r = CliRunner().invoke(main, ["check", "--prove", "--expected", "--write-certificates", str(tmp_path / "16.toml"),
                                  "--traces-dir", str(tmp_path / "tr")])
    assert r.exit_code == 0, r.output
    assert not (tmp_path / "certificates").exists()
    spec = load_spec(GTT_FIXED)
    local = replace(spec, path=tmp_path / "41.toml")
    kept = [("gval", "used", (0, 1)), ("pcnever", "w0", "op0.alloc.lock")]
    res = [ProofResult("no_overlap", "property", PROVED, 0.0)]
    p, n = certificate.write(local, kept + kept[:1], res, any_workers=True)
    assert p == tmp_path / "certificates" / "41.json" and n == 2
    data = json.loads(p.read_text())
    assert data["proved"] == ["no_overlap"] and data["scope"] == "any number of workers"
    assert certificate.load(local) == kept


@pytest.mark.parametrize("text, field", [
    ("{", "certificate"),
    ('{"format": "something else", "templates": []}', "format"),
    (json.dumps({"format": certificate.FORMAT, "templates": [1, 2]}), "templates"),
    (json.dumps({"format": certificate.FORMAT}), "templates"),
])
def test_a_malformed_certificate_is_one_line_naming_file_and_field(tmp_path, text, field):
    shutil.copy(GTT_FIXED, tmp_path / "41.toml")
    (tmp_path / "certificates").mkdir()
    bad = tmp_path / "certificates" / "41.json"
    bad.write_text(text)
    for args in (["check", "--prove"], ["prove", "--certificate"]):
        r = CliRunner().invoke(main, [*args, str(tmp_path / "41.toml")])
        assert r.exit_code == 2, r.output
        lines = [l for l in r.output.splitlines() if l.strip()]
        assert len(lines) == 1 and str(bad) in lines[0] and f": {field}:" in lines[0], r.output
        assert "Traceback" not in r.output


def test_write_certificates_needs_prove(tmp_path):
    r = CliRunner().invoke(main, ["check", "--write-certificates", str(GTT_FIXED)])
    assert r.exit_code == 2 and "--write-certificates: needs --prove" in r.output
    r = CliRunner().invoke(main, ["prove", "--minimise", str(GTT_FIXED)])
    assert r.exit_code == 2 and "--minimise: needs --write-certificate" in r.output


def test_prove_certificate_without_a_file_is_one_line(tmp_path):
    shutil.copy(GTT_FIXED, tmp_path / "41.toml")
    r = CliRunner().invoke(main, ["prove", "--certificate", str(tmp_path / "41.toml")])
    assert r.exit_code == 2 and "certificates/41.json: certificate: no such file" in r.output


def test_a_minimised_certificate_is_smaller_and_still_proves_and_a_broken_protocol_has_none():
    """The closure over unsat cores (checker/certificate_min.py) keeps a part of spec 53's certificate, in
    its order, that proves every property on its own; handed the protocol without the fix that puts
    set_error under the lock, some query of the closure is satisfiable and nothing is minimised."""
    from pddgpu_verify.checker.certificate_min import closure, minimise
    spec, tps = _shipped(ROOT / "specs" / "53_gtt_fixed_two_recoverers.toml")
    # the shipped certificate is minimised (make certificates), so closed: every query of its closure is
    # unsat (z3's cores are not minimal, so the closure may keep less still, never more)
    small = minimise(spec, tps, passes=1)
    assert small is not None and small == [t for t in tps if t in set(small)]
    overall, res = prove_mod.prove_spec(spec, templates=small)
    assert overall == PROVED and len([r for r in res if r.kind == "property"]) == 32
    broken = replace(spec, fixes=dict(spec.fixes, fix_error_under_lock=False))
    assert closure(broken, tps) is None
