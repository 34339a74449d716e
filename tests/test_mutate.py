"""Mutation testing (``checker/mutate.py``, ``pddgpu-verify mutate``): the operators' catalogue on the fixed
specs, named mutants caught by named properties, equivalent mutants recognised as such, a weakened property set
that lets a named mutant through, and the command's exit codes.  Everything that searches runs on two workers
and nothing else (a few hundred states)."""
from pathlib import Path

import pytest
from click.testing import CliRunner

import toy_models
from pddgpu_verify.checker import mutate as M
from pddgpu_verify.checker.spec import load_spec
from pddgpu_verify.cli.main import main
from pddgpu_verify.model.builder import ProgramBuilder
from pddgpu_verify.model.compile import symmetry_groups
from pddgpu_verify.model.expr import Local, Var, eq
from pddgpu_verify.model.program import Model, Property, ThreadDef, VarDecl

ROOT = Path(__file__).resolve().parent.parent
FIXED = [ROOT / "specs" / "40_vram_fixed.toml", ROOT / "specs" / "41_gtt_fixed.toml"]
DROP_ALLOC_LOCK = "drop_lock:worker:op0.alloc.lock"

SMALL = """
[spec]
name = "small"
model = "{model}"

[readings]
fini_concurrent = true

[fixes]
fix_free_always_releases = true
fix_fini_evicts = true
fix_is_ready = true
fix_recover_reinit = true
fix_recover_state = true
fix_retry_unlock = true
fix_stats_snapshot = true

[allocator]
size = 4

[threads]
workers = [{{count = 2, ops = ["alloc 1", "free"]}}]
shutdown = {shutdown}

[check]
properties = {properties}

[expect]
verdict = "{verdict}"
"""


def small(tmp_path, model="vram", properties='"all"', verdict="OK", name="small.toml", shutdown=False) -> Path:
    """Two workers, each alloc 1 then free, on the fixed protocol: nothing else runs (but fini, if asked)."""
    p = tmp_path / name
    p.write_text(SMALL.format(model=model, properties=properties, verdict=verdict, shutdown=str(shutdown).lower()))
    return p


def without(path: Path, prop: str) -> str:
    """The spec's checked properties but ``prop``, as a TOML list."""
    spec = load_spec(path)
    names = [p for p in spec.checked_properties(spec.build()) if p != prop]
    assert len(names) >= 10 and prop not in names
    return "[" + ", ".join(f'"{n}"' for n in names) + "]"


def outcome(report, mid) -> M.Outcome:
    return next(o for o in report.outcomes if o.id == mid)


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


# ---------------------------------------------------------------------------------------------- the catalogue

@pytest.mark.parametrize("path", FIXED, ids=[p.stem for p in FIXED])
def test_fixed_specs_have_at_least_40_mutants_of_8_operator_kinds_and_every_one_builds(path):
    spec = load_spec(path)
    mutants, _ = M.catalogue(spec.build())
    kinds = {m.operator for m in mutants}
    assert len(kinds) >= 8, sorted(kinds)
    assert len(mutants) >= 40
    assert len({m.id for m in mutants}) == len(mutants)
    for m in mutants:
        assert m.id.startswith(f"{m.operator}:{m.role}:{m.label}") and m.description and m.changed
        model = M.build_mutant(spec, m)          # well formed: Model.check_wellformed ran
        assert any(t.program == m.program for t in model.threads)


def test_a_mutant_rewrites_the_program_of_every_worker_of_the_group_and_keeps_their_symmetry(tmp_path):
    spec = load_spec(small(tmp_path))
    model = spec.build()
    m = next(x for x in M.catalogue(model)[0] if x.id == DROP_ALLOC_LOCK)
    mutant = M.build_mutant(spec, m)
    workers = [t for t in mutant.threads if t.program.role == "worker"]
    assert len(workers) == 2 and all(t.program == m.program for t in workers)
    assert symmetry_groups(mutant) == symmetry_groups(model) == [[0, 1]]
    lock = next(s for s in m.program.steps if s.label == "op0.alloc.lock")
    assert lock.kind == "plain" and not any(t.name == "lock" for b in lock.branches for t, _ in b.updates)


# ---------------------------------------------------------------------------------------------- verdicts

def test_dropping_the_lock_around_the_allocator_call_is_caught_by_allocator_lock_held(tmp_path):
    spec = load_spec(small(tmp_path))
    r = M.run(spec, M.check_config(spec), jobs=1, select=[DROP_ALLOC_LOCK])
    o = outcome(r, DROP_ALLOC_LOCK)
    assert (o.verdict, o.property) == ("caught", "allocator_lock_held")
    assert o.trace == 4          # dev_check, mgr_check, the lock that is no longer one, recheck: at the call
    assert r.full and r.score == "1/1"


def test_without_allocator_lock_held_the_same_mutant_survives(tmp_path):
    """The allocator call is one atomic step of the model: only lockdep's assertion sees it run unlocked."""
    path = small(tmp_path)
    spec = load_spec(small(tmp_path, properties=without(path, "allocator_lock_held"), name="weak.toml"))
    r = M.run(spec, M.check_config(spec), jobs=1, select=[DROP_ALLOC_LOCK])
    o = outcome(r, DROP_ALLOC_LOCK)
    assert o.verdict == "survived", o
    assert not r.full and r.score == "0/1"
    # the lock word differs, but only while a worker is inside alloc: between calls the states are the original's
    assert o.observable is False and "only inside the call" in o.detail


def test_splitting_an_atomic_increment_is_caught_by_the_lost_update(tmp_path):
    class Toy:
        name = "lost_update"

        def build(self):
            return toy_models.lost_update(2, atomic=True)
    r = M.run(Toy(), M.CheckConfig(), jobs=1, select=["split_rmw"])
    o = outcome(r, "split_rmw:inc:inc:counter")
    assert (o.verdict, o.property) == ("caught", "no_lost_update")


class Independent:
    """Thread a, in one call, sets x then y; thread b sets z, or (``observer``) reads x - y into a local that a
    property reads."""
    name = "independent"

    def __init__(self, observer=False):
        self.observer = observer

    def build(self):
        a = ProgramBuilder("setter")
        a.go("set_x", "set_y", [(Var("x"), 1)], call="op")
        a.go("set_y", "done", [(Var("y"), 1)], call="op")
        b = ProgramBuilder("other")
        b.local("d", bits=8)
        if self.observer:
            b.go("look", "done", [(Local("d"), Var("x") - Var("y"))])
        else:
            b.go("look", "done", [(Var("z"), 1)])
        props = {"both_set": Property("both_set", "final", "x and y end up set", eq(Var("x") + Var("y"), 2)),
                 # a property that reads d makes it observed (a variable nothing reads is not compared)
                 "d_small": Property("d_small", "final", "b saw at most one of them", Local("d", 1) <= 1)}
        return Model("independent", (VarDecl("x", 8), VarDecl("y", 8), VarDecl("z", 8)),
                     (ThreadDef("a", a.build()), ThreadDef("b", b.build())), props)


def test_swapping_two_independent_steps_is_equivalent_and_an_observer_makes_it_survive():
    swap = "swap_steps:setter:set_x"
    r = M.run(Independent(), M.CheckConfig(), jobs=1, select=[swap])
    o = outcome(r, swap)
    assert o.verdict == "equivalent", o
    assert "reaches the original" in o.detail
    assert r.denominator == 0 and r.full
    # b now sees x - y mid-call and keeps it: 1 in the original, -1 in the mutant
    r = M.run(Independent(observer=True), M.CheckConfig(), jobs=1, select=[swap])
    o = outcome(r, swap)
    assert o.verdict == "survived" and o.observable is True


def test_a_mutant_of_code_the_original_never_reaches_is_equivalent_without_a_search(tmp_path):
    """Two single-block allocations in four blocks never fail: the failure path is dead code."""
    spec = load_spec(small(tmp_path))
    mid = "drop_update:worker:op0.alloc.fail:ret"
    r = M.run(spec, M.check_config(spec), jobs=1, select=[mid])
    o = outcome(r, mid)
    assert o.verdict == "equivalent" and "never reaches" in o.detail
    assert o.states is None                       # decided from the original's search alone


def test_a_gtt_free_that_skips_the_allocator_deadlocks_fini_and_survives_without_it(tmp_path):
    """GTT's used_size is the allocator's own count, so a skipped free leaves used and the allocator agreeing:
    only fini sees the block that stayed, and (fix_fini_evicts) waits for it forever."""
    mid = "skip_free:worker:op1.free.free_call"
    spec = load_spec(small(tmp_path, model="gtt", shutdown=True))
    o = outcome(M.run(spec, M.check_config(spec), jobs=1, select=[mid]), mid)
    assert (o.verdict, o.property) == ("caught", "deadlock")
    spec = load_spec(small(tmp_path, model="gtt", name="nofini.toml"))
    assert outcome(M.run(spec, M.check_config(spec), jobs=1, select=[mid]), mid).verdict == "survived"


# ---------------------------------------------------------------------------------------------- the command

def test_cli_exit_0_when_every_mutant_that_is_not_equivalent_is_caught(tmp_path):
    res = run("mutate", small(tmp_path), "--operator", "drop_unlock", "--jobs", "1", "--json", tmp_path / "m.json")
    assert res.exit_code == 0, res.output
    assert "mutation score" in res.output and "returns_without_lock" in res.output
    import json
    [data] = json.loads((tmp_path / "m.json").read_text())
    assert data["full"] and data["caught"] == data["scored"] >= 2


def test_cli_exit_1_when_a_mutant_survives(tmp_path):
    path = small(tmp_path, properties=without(small(tmp_path), "allocator_lock_held"), name="weak.toml")
    res = run("mutate", path, "--operator", DROP_ALLOC_LOCK, "--jobs", "1")
    assert res.exit_code == 1, res.output
    assert "survived" in res.output and "0/1" in res.output


@pytest.mark.parametrize("case", ["missing", "defect_spec", "bad_field", "unknown_operator", "original_fails"])
def test_cli_exit_2_on_bad_input_with_one_line(tmp_path, case):
    path = small(tmp_path, shutdown=case == "original_fails")
    args = [path]
    if case == "missing":
        args = [tmp_path / "nope.toml"]
    elif case == "defect_spec":
        args = [ROOT / "specs" / "01_vram_free_during_shutdown.toml"]
    elif case == "bad_field":
        path.write_text(path.read_text().replace("size = 4", "size = 3"))
    elif case == "original_fails":       # fini tears the allocator down under live blocks: no_leak_at_fini
        path.write_text(path.read_text().replace("fix_fini_evicts = true", "fix_fini_evicts = false"))
        args += ["--operator", "drop_unlock"]
    else:
        args += ["--operator", "no_such_operator"]
    res = CliRunner().invoke(main, ["mutate", *map(str, args), "--jobs", "1"])
    assert res.exit_code == 2, res.output
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pddgpu-verify: error: ") and "Traceback" not in res.stderr
    field = {"missing": ": file: ", "defect_spec": ": expect.verdict: ", "bad_field": ": allocator.size: ",
             "unknown_operator": ": --operator: ", "original_fails": ": check: the unmutated model does not verify"}[case]
    assert field in lines[0]


def test_cli_list_counts_the_fixed_catalogue_without_searching():
    res = run("mutate", FIXED[0], "--list")
    assert res.exit_code == 0
    assert "operator kinds" in res.output and DROP_ALLOC_LOCK in res.output


def test_a_parallel_run_decides_every_mutant_as_one_process_does(tmp_path):
    spec = load_spec(small(tmp_path))
    chosen = ["drop_unlock", "split_rmw", "drop_stat_update"]
    one = M.run(spec, M.check_config(spec), jobs=1, select=chosen)
    two = M.run(spec, M.check_config(spec), jobs=2, select=chosen)
    assert [(o.id, o.verdict, o.property) for o in one.outcomes] == [(o.id, o.verdict, o.property)
                                                                      for o in two.outcomes]
    assert {o.verdict for o in one.outcomes} >= {"caught", "equivalent"}


def test_a_cache_reuses_outcomes_until_the_model_or_the_check_changes(tmp_path, monkeypatch):
    spec = load_spec(small(tmp_path))
    chosen = ["drop_unlock", "skip_free"]
    first = M.run(spec, M.check_config(spec), jobs=1, select=chosen, cache=tmp_path / "cache")

    def no_search(args):
        raise AssertionError(f"searched {args[0]} {args[4][:1]}")
    monkeypatch.setattr(M, "_job", no_search)
    again = M.run(spec, M.check_config(spec), jobs=1, select=chosen, cache=tmp_path / "cache")
    assert [(o.id, o.verdict, o.property) for o in again.outcomes] == [(o.id, o.verdict, o.property)
                                                                        for o in first.outcomes]
    weaker = M.check_config(spec, properties=[p for p in spec.checked_properties(spec.build())
                                              if p != "returns_without_lock"])
    with pytest.raises(AssertionError, match="searched original"):
        M.run(spec, weaker, jobs=1, select=chosen, cache=tmp_path / "cache")


def test_a_run_of_other_mutants_keeps_the_cache_of_the_first(tmp_path, monkeypatch):
    """A spec asked as a companion about another spec's survivors must not replace the outcomes of its own run
    (make check mutates spec 40 and asks it again as spec 47's companion)."""
    spec = load_spec(small(tmp_path))
    cfg = M.check_config(spec)
    M.run(spec, cfg, jobs=1, select=["drop_unlock"], cache=tmp_path / "cache")
    M.run(spec, cfg, jobs=1, select=["skip_free"], cache=tmp_path / "cache")

    def no_search(args):
        raise AssertionError(f"searched {args[0]} {args[4][:1]}")
    monkeypatch.setattr(M, "_job", no_search)
    for chosen in (["drop_unlock"], ["skip_free"]):
        assert M.run(spec, cfg, jobs=1, select=chosen, cache=tmp_path / "cache").outcomes


def test_bench_mutate_writes_its_section_and_the_main_table_keeps_it(tmp_path):
    from rich.console import Console

    from pddgpu_verify.checker.bench import MUTATE_SECTION, run_mutate_bench, write_markdown
    out = tmp_path / "BENCH.md"
    # without lockdep the unlocked allocator call survives: the section lists what was not caught
    weak = small(tmp_path, properties=without(small(tmp_path, name="full.toml"), "allocator_lock_held"))
    [(sp, r)] = run_mutate_bench(Console(file=open(tmp_path / "log", "w")), out, specs=[str(weak)])
    text = out.read_text()
    assert MUTATE_SECTION in text and f"| {r.score} |" in text and r.count("survived") > 0
    assert "Mutants not caught:" in text
    write_markdown(out, [], 1, 0.0)
    assert out.read_text().count(MUTATE_SECTION) == 1


def test_equivalence_ignores_the_ghosts_and_what_nothing_reads_but_nothing_else():
    model = load_spec(FIXED[0]).build()
    hidden = M.unobserved(model)
    assert {"lost", "shutdown_seen", "finied", "err_sets", "err_clears"} <= hidden
    assert not {"state", "dev_state", "lock", "mask", "alive", "gen", "used", "vis", "w0.pc", "w0.ret", "w0.blk",
                "w0.vres", "rec0.r", "stats0.s_used"} & hidden


# ---------------------------------------------------------------------------------------------- companions

def one_recoverer(tmp_path, companions=('"' + str(ROOT / "specs" / "51_vram_fixed_two_recoverers.toml") + '"',)):
    """Spec 51 with one recoverer: a recover's set_error outside the lock does no harm here (nobody clears
    ERROR after the failed init), only beside a second recoverer (spec 51 itself)."""
    text = (ROOT / "specs" / "51_vram_fixed_two_recoverers.toml").read_text()
    text = text.replace("recoverers = 2", "recoverers = 1").replace('name = "vram_fixed_two_recoverers"',
                                                                   'name = "one_recoverer"')
    text = text.replace('"recover_refused_only_at_shutdown", ', '')
    if companions:
        text += "\n[mutate]\ncompanions = [" + ", ".join(companions) + "]\n"
    p = tmp_path / "one_recoverer.toml"
    p.write_text(text)
    return p


RECOVER_UNLOCKED = "drop_lock:recoverer:set_error"


def test_a_mutant_no_workload_of_the_spec_reaches_is_caught_by_its_companion(tmp_path):
    alone = run("mutate", one_recoverer(tmp_path, companions=()), "--operator", RECOVER_UNLOCKED, "--jobs", "1")
    assert alone.exit_code == 1 and "survived" in alone.output and "0/1" in alone.output
    res = run("mutate", one_recoverer(tmp_path), "--operator", RECOVER_UNLOCKED, "--jobs", "1")
    assert res.exit_code == 0, res.output
    assert "1/1" in res.output and "(with vram_fixed_two_recoverers)" in res.output
    assert "error_serves_no_alloc" in res.output


def _o(verdict, **kw):
    return M.Outcome("m", "op", "worker", "d", verdict, **kw)


def _r(*outcomes):
    return M.Report("s", list(outcomes), [], {"states": 1, "seconds": 0.0}, 0.0)


@pytest.mark.parametrize("mine, theirs, merged", [
    ("survived", "caught", "caught"),
    ("equivalent", "caught", "caught"),
    ("equivalent", "survived", "survived"),       # behaviour the subject cannot reach is still behaviour
    ("equivalent", "equivalent", "equivalent"),
    ("survived", "equivalent", "survived"),
    ("survived", "incomplete", "incomplete"),
    ("caught", "survived", "caught"),
])
def test_merge_catches_in_any_spec_and_calls_equivalent_only_what_is_equivalent_in_all(mine, theirs, merged):
    extra = {"property": "p", "trace": 3} if theirs == "caught" else {}
    got = M.merge(_r(_o(mine)), [("c", _r(_o(theirs, **extra)))]).outcomes[0]
    assert got.verdict == merged
    if merged == "caught" and mine != "caught":
        assert got.property == "p" and "caught in c" in got.detail


def test_a_companion_is_asked_only_about_programs_it_runs_unchanged():
    s40 = load_spec(FIXED[0])
    ids = [m.id for m in M.catalogue(s40.build())[0]]
    three = load_spec(ROOT / "specs" / "50_vram_fixed_three_workers.toml").build()
    shared = M.shared_mutants(s40.build(), three, ids)
    assert "drop_lock:worker:op0.alloc.fail_lock" in shared
    assert not any(i.split(":")[1] in ("recoverer", "injector", "fini") for i in shared)    # it has none
    stats = load_spec(ROOT / "specs" / "47_vram_fixed_stats.toml").build()     # two blocks: other worker programs
    assert not any(":worker:" in i for i in M.shared_mutants(s40.build(), stats, ids))


@pytest.mark.parametrize("case, field", [
    ("other_model", "mutate.companions[0]: 52_gtt_fixed_three_workers.toml is a spec of the gtt model"),
    ("itself", "mutate.companions[0]: names this spec itself"),
    ("not_a_name", "mutate.companions[0]: must be a spec file name"),
    ("unknown_key", "mutate: "),
])
def test_bad_companions_are_one_line_errors(tmp_path, case, field):
    text = FIXED[0].read_text()
    head = text[:text.index("[mutate]")]
    tail = {"other_model": 'companions = ["' + str(ROOT / "specs" / "52_gtt_fixed_three_workers.toml") + '"]',
            "itself": 'companions = ["' + str(tmp_path / "s.toml") + '"]',
            "not_a_name": "companions = [1]", "unknown_key": "partners = []"}[case]
    p = tmp_path / "s.toml"
    p.write_text(head + "[mutate]\n" + tail + "\n")
    res = CliRunner().invoke(main, ["mutate", str(p), "--list"])
    assert res.exit_code == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and field.split(":")[0] in lines[0] and "Traceback" not in res.stderr
    if case == "other_model":
        assert "52_gtt_fixed_three_workers.toml is a spec of the gtt model" in lines[0].replace(str(ROOT / "specs") + "/", "")


def test_a_declared_redundant_survivor_is_not_scored_and_a_stale_declaration_fails(tmp_path):
    base = one_recoverer(tmp_path, companions=())
    text = base.read_text() + '\n[mutate]\nredundant = [{id = "' + RECOVER_UNLOCKED + '", why = "test"}]\n'
    base.write_text(text)
    res = run("mutate", base, "--operator", RECOVER_UNLOCKED, "--jobs", "1")
    assert res.exit_code == 0 and "redundant, as the spec declares" in res.output and "0/0" in res.output
    # with the companion the mutant is caught: the declaration is stale and fails the run
    base.write_text(text.replace("[mutate]\n", '[mutate]\ncompanions = ["' + str(ROOT / "specs" /
                                 "51_vram_fixed_two_recoverers.toml") + '"]\n'))
    res = run("mutate", base, "--operator", RECOVER_UNLOCKED, "--jobs", "1")
    assert res.exit_code == 1 and "stale" in res.output


def test_a_redundant_declaration_of_an_unknown_mutant_is_a_one_line_error(tmp_path):
    p = one_recoverer(tmp_path, companions=())
    p.write_text(p.read_text() + '\n[mutate]\nredundant = [{id = "no_such:mutant", why = "x"}]\n')
    res = CliRunner().invoke(main, ["mutate", str(p), "--list"])
    assert res.exit_code == 2 and "mutate.redundant[0].id" in res.stderr and len(res.stderr.strip().splitlines()) == 1


# mutants of spec 40 that survived until a property of the document's promises was added (or a companion
# reached them), and the property (or companion) that catches each now; make check gates the whole score
NEEDED = {
    "flag_replace:worker:op0.alloc.mgr_check:compares:READY->ERROR": "alloc_enodev_only_when_unready",
    "drop_update:worker:op0.alloc.mgr_check:ret": "alloc_success_hands_a_block",
    "drop_update:worker:op0.alloc.mgr_check:vres": "alloc_success_hands_a_block",
    "skip_check:worker:op0.alloc.dev_check": "device_shutdown_refuses_calls",
    "off_by_one:worker:op0.alloc.fail_check:(retry+1)": "alloc_retries_bounded",
    "drop_update:injector:set_error_set:state": "set_error_sets_error",
    "flag_replace:recoverer:set_state:sets:READY->INITIALIZING": "state_transitions_documented",
    "flag_replace:recoverer:shutdown_check:tests:SHUTDOWN->READY": "recover_refused_only_at_shutdown",
    "drop_update:fini:dev_shutdown:dev_state": "fini_shuts_down",
    "drop_lock:worker:op0.alloc.fail_lock": "error_serves_no_alloc",          # in spec 50, a companion
}


def test_the_mutants_that_needed_a_new_property_or_a_companion_are_caught_by_it(tmp_path):
    out = tmp_path / "m.json"
    args = ["mutate", FIXED[0], "--jobs", "2", "--json", out] + [x for m in NEEDED for x in ("--operator", m)]
    res = run(*args)
    assert res.exit_code == 0, res.output
    import json
    got = {o["id"]: o for o in json.loads(out.read_text())[0]["outcomes"]}
    assert set(got) == set(NEEDED)
    for mid, prop in NEEDED.items():
        assert got[mid]["verdict"] == "caught" and got[mid]["property"] == prop, (mid, got[mid])
    assert "caught in vram_fixed_three_workers" in got["drop_lock:worker:op0.alloc.fail_lock"]["detail"]


@pytest.mark.parametrize("path", FIXED + [ROOT / "specs" / "47_vram_fixed_stats.toml",
                                          ROOT / "specs" / "48_gtt_fixed_stats.toml"], ids=lambda p: p.stem)
def test_each_gated_spec_declares_the_same_four_redundant_survivors_and_has_companions(path):
    spec = load_spec(path)
    assert sorted(spec.redundant) == sorted([
        "skip_check:worker:op0.alloc.mgr_check", "flag_drop:worker:op0.alloc.mgr_check:-ERROR",
        "drop_update:recoverer:set_error_set:state", "flag_replace:recoverer:set_error_set:sets:ERROR->READY"])
    from pddgpu_verify.checker.spec import companion_specs
    assert spec.companions and all(c.expect_verdict == "OK" for c in companion_specs(spec))
    assert str(path.relative_to(ROOT)) in (ROOT / "Makefile").read_text()
