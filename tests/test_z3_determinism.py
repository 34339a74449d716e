"""z3 verdicts never depend on wall time (issue 8, item 5).

No code path of the z3 back end sets a wall-clock ``timeout``; every query
gets a budget of z3 resource units (``rlimit``) instead, per query; a query
out of budget makes UNKNOWN exactly the property it was about; each spec's
expected z3 verdict (``[expect] prove``) is compared by ``check --prove``;
bad ``[prove]`` / ``[expect]`` fields are one line, exit 2."""
import json
import re

import pytest
import z3
from click.testing import CliRunner

from pddgpu_verify.checker.bmc import NO_VIOLATION, UNKNOWN as BMC_UNKNOWN, VIOLATION, bmc
from pddgpu_verify.checker.parametric import prove_any_workers
from pddgpu_verify.checker.prove import NOT_INDUCTIVE, PROVED, UNKNOWN, prove
from pddgpu_verify.checker.z3_budget import DEFAULT_RLIMIT, MAX_RLIMIT, Budget, own_context, rlimit_count
from pddgpu_verify.cli.main import main
from pddgpu_verify.model import expr as E
from pddgpu_verify.model import gtt, vram
from pddgpu_verify.model.builder import ProgramBuilder
from pddgpu_verify.model.manager import Workload
from pddgpu_verify.model.options import ALL_FIXES
from pddgpu_verify.model.program import Model, Property, ThreadDef, VarDecl
from helpers import reinit_defect, write_spec

PRIME = 1048573          # 2^20 - 3: no factors, but z3 has to work to see it


def _factoring_toy():
    """One thread increments ``a`` forever.  ``no_factor`` (a * b is never PRIME with both factors > 1)
    is inductive, but its induction query makes z3 refute a 12-bit factorisation of PRIME (about 550,000
    resource units); ``z_zero`` and ``y_small`` are inductive at a cost of about a thousand."""
    b = ProgramBuilder("t")
    a, c = E.Var("a"), E.Var("b")
    b.branch("go", [(E.TRUE, [(a, a + 1)], "go")])
    props = {"no_factor": Property("no_factor", "invariant", "a * b is not a factorisation of PRIME",
                                   E.not_(E.and_(E.eq(a * c, PRIME), a > 1, c > 1))),
             "z_zero": Property("z_zero", "invariant", "z stays 0", E.eq(E.Var("z"), 0)),
             "y_small": Property("y_small", "invariant", "y <= 3", E.Var("y") <= 3)}
    return Model("factoring", (VarDecl("a", 12), VarDecl("b", 12), VarDecl("y", 8), VarDecl("z", 8)),
                 (ThreadDef("t", b.build()),), props)


def test_rlimit_bounds_each_check_not_the_solvers_life():
    """What the budgets rely on (z3-solver 5.4.1.0): ``solver.set("rlimit", N)`` gives every check() of
    the solver N units afresh, and in a fresh context the same query costs the same units every time."""
    def query(i):
        x, y = z3.BitVecs("x y", 32)
        return [x * y == 0x12345677 + i, x > 1, y > 1, z3.ULT(x, y)]
    def run(limit):
        with own_context():
            s = z3.Solver()
            if limit is not None:
                s.set("rlimit", limit)
            out = []
            for i in range(6):
                s.push()
                s.add(*query(i))
                before = rlimit_count(s)
                out.append((str(s.check()), rlimit_count(s) - before))
                s.pop()
            return out
    free = run(None)
    assert all(r == "sat" for r, _ in free) and run(None) == free      # the same units, query for query
    biggest = max(u for _, u in free)
    assert run(biggest) == free                   # each check gets the whole limit afresh ...
    assert sum(u for _, u in free) > 2 * biggest  # ... though the solver uses far more than it in all
    for tiny in (10, (1 << 32) + 10):             # the limit is 32 bits: 2^32 + 10 is 10 (hence MAX_RLIMIT)
        with own_context():
            s = z3.Solver()
            s.set("rlimit", tiny)
            s.add(*query(0))
            assert s.check() == z3.unknown and "resource" in s.reason_unknown()
    assert MAX_RLIMIT == (1 << 32) - 1


def test_no_solver_gets_a_wall_clock_timeout(monkeypatch):
    """Every z3 query of prove (base case, Houdini, BMC for a violation, k-induction), bmc and the
    any-workers proof gets an rlimit and never a timeout."""
    seen = []
    real_set, real_param = z3.Solver.set, z3.set_param

    def spy_set(self, *args, **kw):
        seen.extend(a for a in args[::2] if isinstance(a, str))
        seen.extend(kw)
        return real_set(self, *args, **kw)

    def spy_param(*args, **kw):
        seen.extend(a for a in args[::2] if isinstance(a, str))
        seen.extend(kw)
        return real_param(*args, **kw)
    monkeypatch.setattr(z3.Solver, "set", spy_set)
    monkeypatch.setattr(z3, "set_param", spy_param)
    monkeypatch.setattr(z3.z3, "set_param", spy_param)

    small = Workload(workers=[[("alloc", 1), ("free",)]], recoverers=1)
    broken = vram.make(dict(ALL_FIXES, fix_recover_reinit=False), small, size=2)
    res = {r.name: r.verdict for r in prove(broken, ["no_buddy_metadata_leak"], bmc_depth=3)}
    assert res == {"no_buddy_metadata_leak": "VIOLATED"}
    b = ProgramBuilder("p")                                  # k-induction: its step and its BMC base case
    b.branch("a", [(E.TRUE, [(E.Var("x"), E.min_(E.Var("x") + 1, 3))], "b")])
    b.branch("b", [(E.TRUE, [(E.Var("y"), E.Var("x"))], "a")])
    trail = Model("trail", (VarDecl("x", 8), VarDecl("y", 8)), (ThreadDef("t", b.build()),),
                  {"y_small": Property("y_small", "invariant", "y <= 3", E.Var("y") <= 3)})
    assert prove(trail, ["y_small"], k=2, bmc_depth=0)[0].verdict == PROVED
    assert bmc(broken, 3).verdict == VIOLATION
    fixed = dict(ALL_FIXES)
    base = Workload(workers=[[("alloc", 1), ("free",)]], shutdown=True)
    pr = prove_any_workers(lambda wl: gtt.make(fixed, wl), base, ["no_overlap", "used_matches_allocations"],
                           lemmas=["mask_conflict_free", "held_blocks_distinct", "held_blocks_in_mask"])
    verdicts = {r.name: r.verdict for r in pr.results}     # (without mined lemmas neither is inductive)
    assert set(verdicts) == {"no_overlap", "used_matches_allocations"} and UNKNOWN not in verdicts.values()
    assert "timeout" not in seen and "rlimit" in seen


def test_a_starved_property_is_unknown_and_the_others_stay_proved():
    m = _factoring_toy()
    ample = Budget(DEFAULT_RLIMIT)
    assert {r.name: r.verdict for r in prove(m, None, (), bmc_depth=0, budget=ample)} == \
        {"no_factor": PROVED, "z_zero": PROVED, "y_small": PROVED}
    assert ample.exhausted == 0
    tiny = Budget(20_000)
    res = {r.name: r for r in prove(m, None, (), bmc_depth=0, budget=tiny)}
    assert {n: r.verdict for n, r in res.items()} == {"no_factor": UNKNOWN, "z_zero": PROVED, "y_small": PROVED}
    assert "out of budget (rlimit 20,000 per query" in res["no_factor"].detail
    assert tiny.exhausted == 2 and tiny.peak == 20_000      # the 3-goal query, then no_factor's own
    # the same budget, the same answer, query for query
    again = Budget(20_000)
    prove(m, None, (), bmc_depth=0, budget=again)
    assert [(q.what, q.used, q.result) for q in again.queries] == [(q.what, q.used, q.result) for q in tiny.queries]


def test_bmc_out_of_budget_names_the_depth():
    small = Workload(workers=[[("alloc", 1), ("free",)]], recoverers=1)
    broken = vram.make(dict(ALL_FIXES, fix_recover_reinit=False), small, size=2)
    r = bmc(broken, 3, rlimit=1)
    assert r.verdict == BMC_UNKNOWN and r.depth == 0 and "out of budget at depth 0" in r.detail
    assert bmc(broken, 2).verdict == NO_VIOLATION and bmc(broken, 3).verdict == VIOLATION

SPEC = reinit_defect('[prove]\nlemmas = ["mask_conflict_free"]\nbmc_depth = 3\n')


def _err_lines(r):
    text = r.stderr if getattr(r, "stderr_bytes", None) else r.output
    return [x for x in text.strip().splitlines() if x.strip()]


def test_check_prove_compares_the_z3_verdict(tmp_path):
    ok = write_spec(tmp_path, SPEC.replace('property = "no_buddy_metadata_leak"',
                                       'property = "no_buddy_metadata_leak"\nprove = "VIOLATED"'))
    out = tmp_path / "out.json"
    r = CliRunner().invoke(main, ["check", "--prove", "--expected", "--no-fixes", str(ok), "--json", str(out),
                                  "--traces-dir", str(tmp_path / "tr")])
    assert r.exit_code == 0, r.output
    assert "all 1 verdicts as expected" in r.output
    (row,) = json.loads(out.read_text())
    assert row["proof"]["expected"] == {"prove": "VIOLATED", "proved": None}
    assert row["proof"]["result"] == "VIOLATED" and row["proof"]["as_expected"] is True
    assert row["proof"]["properties"]["no_buddy_metadata_leak"] == "VIOLATED"
    assert row["proof"]["budget"]["rlimit_per_query"] == DEFAULT_RLIMIT
    # the explorer still agrees, the proof does not reach the stated z3 verdict: exit 4, named
    differs = write_spec(tmp_path, SPEC.replace('property = "no_buddy_metadata_leak"',
                                            'property = "no_buddy_metadata_leak"\nprove = "NOT INDUCTIVE"'), "d.toml")
    r = CliRunner().invoke(main, ["check", "--prove", "--expected", "--no-fixes", str(differs), "--json", str(out),
                                  "--traces-dir", str(tmp_path / "tr")])
    assert r.exit_code == 4, r.output
    assert "t_reinit (z3: expected NOT INDUCTIVE, z3 says VIOLATED)" in " ".join(r.output.split())
    assert json.loads(out.read_text())[0]["proof"]["as_expected"] is False
    # a spec that states no z3 expectation does not pass check --prove
    r = CliRunner().invoke(main, ["check", "--prove", "--expected", "--no-fixes", str(write_spec(tmp_path, SPEC, "n.toml")),
                                  "--traces-dir", str(tmp_path / "tr")])
    assert r.exit_code == 4 and "states no expect.prove" in " ".join(r.output.split())


@pytest.mark.parametrize("table,text,field", [
    ("prove", "timeout = 60", "prove.timeout"),
    ("prove", "rlimit = 0", "prove.rlimit"),
    ("prove", "rlimit = 4294967296", "prove.rlimit"),
    ("prove", 'rlimit = "lots"', "prove.rlimit"),
    ("prove", "k = 0", "prove.k"),
    ("prove", 'any_workers = "yes"', "prove.any_workers"),
    ("expect", 'prove = "MAYBE"', "expect.prove"),
    ("expect", 'prove = "PROVED"', "expect.prove"),            # the spec expects a violation
    ("expect", 'prove = "VIOLATED"\nproved = 3', "expect.proved"),
    ("expect", "proved = 3", "expect.proved"),                 # without expect.prove
    ("expect", 'prove = 1', "expect.prove"),
])
@pytest.mark.parametrize("command", [["prove"], ["check", "--prove"]])
def test_bad_prove_and_expect_fields_are_one_line(tmp_path, table, text, field, command):
    body = SPEC.replace("[prove]\n", f"[prove]\n{text}\n") if table == "prove" else SPEC + text + "\n"
    spec = write_spec(tmp_path, body)
    r = CliRunner().invoke(main, [*command, str(spec)])
    assert r.exit_code == 2, r.output
    lines = _err_lines(r)
    assert len(lines) == 1 and lines[0].startswith(f"pddgpu-verify: error: {spec}: {field}: "), lines
    if field == "prove.timeout":
        assert "use prove.rlimit" in lines[0]


def test_timeout_option_is_gone(tmp_path):
    spec = write_spec(tmp_path, SPEC)
    for cmd in (["prove", str(spec), "--timeout", "5"], ["bmc", str(spec), "--timeout", "5"]):
        r = CliRunner().invoke(main, cmd)
        assert r.exit_code == 2
        lines = _err_lines(r)
        assert len(lines) == 1 and lines[0].startswith("pddgpu-verify: error: --timeout: ") and "--rlimit" in lines[0]


def test_rlimit_option_decides_unknown_deterministically(tmp_path):
    spec = write_spec(tmp_path, SPEC)
    r = CliRunner().invoke(main, ["bmc", str(spec), "--depth", "6", "--rlimit", "1", "--traces-dir", str(tmp_path)])
    assert r.exit_code == 3 and "UNKNOWN" in r.output and "out of budget at depth 0" in " ".join(r.output.split())
    r = CliRunner().invoke(main, ["bmc", str(spec), "--depth", "6", "--traces-dir", str(tmp_path)])
    assert r.exit_code == 1 and "VIOLATION" in r.output
    r = CliRunner().invoke(main, ["prove", str(spec), "--rlimit", "1", "--traces-dir", str(tmp_path)])
    assert r.exit_code == 3 and "UNKNOWN" in r.output and re.search(r"\b0/\d+ properties PROVED; rlimit 1 per", r.output)


def test_the_same_certificate_check_costs_the_same_under_any_hash_seed():
    """A query's resource count depends on the order its terms were built in; Python's string hashing is
    seeded per process, so an iteration over a set while candidates are built would make the same proof
    cost differently in two runs (and a query near its budget flip).  Two seeds, query for query the same."""
    import os
    import subprocess
    import sys
    from pathlib import Path
    code = ("import json; from pddgpu_verify.checker import certificate; "
            "from pddgpu_verify.checker.spec import load_spec; from pddgpu_verify.checker.prove import prove_spec; "
            "from pddgpu_verify.checker.z3_budget import Budget; "
            "s = load_spec('specs/53_gtt_fixed_two_recoverers.toml'); b = Budget(); "
            "prove_spec(s, budget=b, templates=certificate.load(s)); "
            "print(json.dumps([(q.what, q.used, q.result) for q in b.queries]))")
    root = Path(__file__).resolve().parent.parent
    logs = []
    for seed in ("1", "2"):
        out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True,
                             env=dict(os.environ, PYTHONHASHSEED=seed))
        logs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    assert logs[0] == logs[1] and len(logs[0]) >= 2 and all(q[2] == "unsat" for q in logs[0])
