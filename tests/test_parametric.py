"""Safety for any number of workers (checker/parametric.py): the fixed
protocols are proved, a broken one is not, the side conditions refuse what
the argument does not cover, and every CTI harvested explicitly is genuine."""
import dataclasses

import pytest
from click.testing import CliRunner

from pddgpu_verify.checker.cti_harvest import ConcreteView, harvest
from pddgpu_verify.checker.parametric import prove_any_workers, prove_spec_any_workers, side_conditions
from pddgpu_verify.checker.prove import NOT_INDUCTIVE, PROVED, Candidate, candidates
from pddgpu_verify.checker.spec import load_spec
from pddgpu_verify.cli.main import main
from pddgpu_verify.model import expr as E
from pddgpu_verify.model import gtt, vram
from pddgpu_verify.model.compile import compile_model
from pddgpu_verify.model.manager import Workload
from pddgpu_verify.model.options import ALL_FIXES
from pddgpu_verify.model.program import Branch, Model, Program, ThreadDef

SAFETY = {"invariant", "assertion", "final"}


# the GTT proof is searched in full (mining, Houdini); the VRAM one from its shipped certificate, which z3
# checks from scratch (nothing in it is trusted), in a fifth of the time: the suite stays under ten minutes
@pytest.mark.parametrize("spec_path, certified", [("specs/41_gtt_fixed.toml", False),
                                                  ("specs/40_vram_fixed.toml", True)])
def test_fixed_spec_is_safe_for_any_number_of_workers(spec_path, certified):
    from pddgpu_verify.checker import certificate
    spec = load_spec(spec_path)
    templates = certificate.load(spec) if certified else None
    assert not certified or templates
    # budgets are z3 resource units: the verdict is the same under load
    pr = prove_spec_any_workers(spec, templates=templates)
    assert not pr.refused
    verdicts = {r.name: r.verdict for r in pr.results}
    model = spec.build()
    assert set(verdicts) == {p for p, x in model.properties.items() if x.kind in SAFETY}
    assert all(v == PROVED for v in verdicts.values()), {p: v for p, v in verdicts.items() if v != PROVED}


def test_broken_protocol_is_not_proved_for_any_number_of_workers():
    """Without the free fix a free during shutdown is skipped and its block leaks at fini: the cutoff
    proof must not claim no_leak_at_fini (the explorer finds the leak with one worker)."""
    opts = dict(ALL_FIXES, fix_free_always_releases=False)
    base = Workload(workers=[[("alloc", 1), ("free",)]], shutdown=True)
    pr = prove_any_workers(lambda wl: gtt.make(opts, wl), base, ["no_leak_at_fini", "no_overlap"],
                           stress_builder=lambda wl: gtt.make(opts, wl, size=1))
    res = {r.name: r for r in pr.results}
    assert res["no_leak_at_fini"].verdict == NOT_INDUCTIVE
    assert res["no_leak_at_fini"].cti
    assert res["no_overlap"].verdict == PROVED


def _with_first_branch(m: Model, t: int, branch: Branch) -> Model:
    th = m.threads[t]
    st = th.program.steps[0]
    steps = (dataclasses.replace(st, branches=(branch,) + st.branches[1:]),) + th.program.steps[1:]
    threads = list(m.threads)
    threads[t] = ThreadDef(th.name, Program(th.program.role, steps, th.program.locals), th.group)
    return Model(m.name, m.shared, tuple(threads), dict(m.properties), dict(m.locks), m.options)


def test_identities_must_only_be_compared():
    wl = Workload(workers=[[("alloc", 1), ("free",)]] * 3, recoverers=1, shutdown=True)
    m = vram.make(ALL_FIXES, wl)
    assert side_conditions(m) == []
    br = m.threads[0].program.steps[0].branches[0]
    # a worker recording its identity in a shared variable makes identities observable: (S5)
    leaky = _with_first_branch(m, 0, Branch(br.guard, br.updates + ((E.Var("gen"), E.SelfId()),), br.goto))
    assert any("(S5)" in p for p in side_conditions(leaky))
    # ordering lock words (lock < SelfId + 1) is not an equality test either
    ordered = _with_first_branch(m, 0, Branch(E.and_(br.guard, E.Var("lock") < E.SelfId() + 1), br.updates,
                                              br.goto))
    assert any("(S5)" in p for p in side_conditions(ordered))


def test_harvested_ctis_are_genuine():
    """Every (x, y) harvest returns is a step of the model, x breaks nothing still kept when it was
    expanded, and y breaks the candidate the CTI is filed under; true candidates are never filed."""
    wl = Workload(workers=[[("alloc", 1), ("free",)]] * 2, recoverers=1, shutdown=True)
    m = vram.make(ALL_FIXES, wl)
    cands = candidates(m, ["no_overlap"], ["held_blocks_in_mask"])
    wrong = {"gen_stays_0": E.eq(E.Var("gen"), 0), "w0_never_holds": E.eq(E.Local("blk", 0), -1),
             "mask_empty": E.eq(E.Var("mask"), 0)}
    cands += [Candidate(name, "lemma", None, e) for name, e in wrong.items()]
    view = ConcreteView(m, cands)
    start = m.initial_state()
    assert view.failing(start) == []
    succ = compile_model(m).successors
    move_list = [(t, pc, b) for t, th in enumerate(m.threads) for pc, st in enumerate(th.program.steps)
                 for b in range(len(st.branches))]
    key_of = [c.name for c in cands]
    found = harvest(view, start, set(range(len(cands))), key_of, {mv: i for i, mv in enumerate(move_list)},
                    budget=5000)
    assert set(found) == set(wrong)
    for name, (x, y, mi) in found.items():
        assert (*move_list[mi], y) in succ(x)
        assert key_of.index(name) in view.failing(y)
        assert all(key_of[j] in found for j in view.failing(x))


def test_windowed_spec_is_refused_with_file_and_field():
    r = CliRunner().invoke(main, ["prove", "specs/45_vram_fixed_1m.toml", "--any-workers"])
    assert r.exit_code == 2
    assert "specs/45_vram_fixed_1m.toml" in r.output and "allocator.size" in r.output
    assert "Traceback" not in r.output


def test_a_lemma_about_every_worker_at_once_is_refused():
    base = Workload(workers=[[("alloc", 1), ("free",)]], shutdown=True)
    pr = prove_any_workers(lambda wl: gtt.make(ALL_FIXES, wl), base, ["no_overlap"],
                           lemmas=["auto", "held_blocks_in_mask", "mask_is_held_blocks"])
    assert any("mask_is_held_blocks" in p and "(S4)" in p for p in pr.refused)
    assert all(r.verdict != PROVED for r in pr.results)
