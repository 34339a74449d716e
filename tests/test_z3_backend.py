"""The z3 back end against the explorer on the same models: successors,
violations and their depths, replay of BMC traces, CTIs and lemmas, big
parameters, the state word."""
import dataclasses
import random

import pytest
import z3

from pddgpu_verify.checker.bmc import NO_VIOLATION, VIOLATION, bmc, bmc_trace, replay
from pddgpu_verify.checker.explorer import explore
from pddgpu_verify.checker.prove import NOT_INDUCTIVE, PROVED, check_cti, cti_trace, prove
from pddgpu_verify.checker.z3_encode import EncodeError, Encoder, successors
from pddgpu_verify.model import expr as E
from pddgpu_verify.model import gtt, interpret, vram
from pddgpu_verify.model.compile import compile_model
from pddgpu_verify.model.manager import Workload, build
from pddgpu_verify.model.lemmas import DEFAULT
from pddgpu_verify.model.options import ALL_FIXES
from pddgpu_verify.model.program import Model, Property, ThreadDef, VarDecl
from pddgpu_verify.model.builder import ProgramBuilder
from pddgpu_verify.model.geometry import buddy

FULL = Workload(workers=[[("alloc", 1), ("free",)], [("alloc", 2), ("free",)]], error_injectors=1, recoverers=1,
                stats_readers=1, shutdown=True)
SMALL = Workload(workers=[[("alloc", 1), ("free",)], [("alloc", 1), ("free",)]], error_injectors=1, recoverers=1,
                 shutdown=True)


def _without(fix):
    o = dict(ALL_FIXES)
    o[fix] = False
    return o


MODELS = [
    ("vram-fixed", lambda: vram.make(ALL_FIXES, FULL)),
    ("gtt-fixed", lambda: gtt.make(ALL_FIXES, FULL)),
    ("vram-as-written", lambda: vram.make({}, FULL)),
    ("gtt-as-written", lambda: gtt.make({}, FULL)),
    ("vram-readings", lambda: vram.make({"retry_holds_lock": True, "stats_update_point": "under_lock",
                                         "init_can_fail": True, "is_ready_reads": 1}, FULL, size=2)),
    ("gtt-state-retry", lambda: gtt.make({"state_check_failure": "retry", "fix_alloc_failure_sets_error": True},
                                         SMALL, size=3)),
]


@pytest.mark.parametrize("name,make", MODELS, ids=[m[0] for m in MODELS])
def test_successors_match_explorer_on_random_reachable_states(name, make):
    m = make()
    comp = compile_model(m)
    enc = Encoder(m)
    rnd = random.Random(7)
    s = m.initial_state()
    checked = 0
    while checked < 12:
        expected = sorted(comp.successors(s))
        assert successors(m, s, enc) == expected
        if checked % 4 == 0:     # the form of T: one disjunct per (thread, step, branch) with frames
            assert successors(m, s, enc, disjunctive=True) == expected
        checked += 1
        s = rnd.choice(expected)[3] if expected else m.initial_state()
        for _ in range(rnd.randrange(0, 6)):      # walk further between checks: deeper states
            nx = comp.successors(s)
            if not nx:
                break
            s = rnd.choice(nx)[3]


def test_successors_catch_a_wrong_encoding():
    """The comparison can fail: a translator with '-' read as '+' disagrees."""
    m = vram.make(ALL_FIXES, Workload(workers=[[("alloc", 1), ("free",)], [("alloc", 2), ("free",)]]))
    enc = Encoder(m)
    real = enc.expr

    def broken(e, s, tid, where="expression"):
        if isinstance(e, E.Op) and e.op == "-":
            return real(E.Op("+", e.args), s, tid, where)
        return real(e, s, tid, where)
    enc.expr = broken
    comp = compile_model(m)
    s = m.initial_state()
    rnd = random.Random(3)
    differs = False
    for _ in range(2000):
        nx = sorted(comp.successors(s))
        if not nx:
            s = m.initial_state()
            continue
        if any(m.threads[t].program.steps[pc].label.endswith("stats") for t, pc, _, _ in nx):
            if successors(m, s, enc) != nx:
                differs = True
                break
        s = rnd.choice(nx)[3]
    assert differs


DEFECTS = [
    ("vram-recover-reinit", lambda: vram.make(_without("fix_recover_reinit"), SMALL)),
    ("vram-is-ready", lambda: vram.make(_without("fix_is_ready"), SMALL)),
    ("gtt-stats", lambda: gtt.make(_without("fix_stats_snapshot"), Workload(workers=[[("alloc", 1), ("free",)]],
                                                                            stats_readers=1))),
    ("vram-as-written", lambda: vram.make({}, SMALL)),
    ("gtt-recover-state", lambda: gtt.make(_without("fix_recover_state"),
                                           Workload(workers=[[("alloc", 1), ("free",)]], recoverers=1, shutdown=True))),
]


@pytest.mark.parametrize("name,make", DEFECTS, ids=[d[0] for d in DEFECTS])
def test_bmc_finds_the_explorers_violation_at_the_same_depth(name, make):
    m = make()
    r = explore(m, deadlock=False)
    assert r.verdict == "VIOLATION"
    depth = len(r.path) - 1
    b = bmc(m, depth, deadlock=False)
    assert b.verdict == VIOLATION and b.depth == depth           # same shortest depth
    replay(m, b.path)                                             # real moves of the interpreter
    assert interpret.check(m, b.path[-1][1]) is not None or interpret.check_final(m, b.path[-1][1])
    # the explorer's own property is reachable at that depth too, and not before
    only = bmc(m, depth, properties=[r.property], deadlock=False)
    assert only.verdict == VIOLATION and only.depth == depth and only.property == r.property
    if depth > 0:
        assert bmc(m, depth - 1, deadlock=False).verdict == NO_VIOLATION
    itf = bmc_trace(m, b, spec="test", source="test")
    assert itf["#meta"]["backend"] == "bmc" and len(itf["states"]) == depth + 1
    assert [t["thread"] for t in itf["#meta"]["transitions"]] == [m.threads[mv.thread].name for mv, _ in b.path[1:]]


def test_bmc_handles_big_parameters_symbolically():
    """Retry limit 100 and 64-bit counters: the same defect at the same depth."""
    prof = dataclasses.replace(vram.PROFILE, retry_count=100)
    m = build(prof, buddy(4), _without("fix_recover_reinit"), SMALL, "vram-retry100")
    small = vram.make(_without("fix_recover_reinit"), SMALL)
    d = len(explore(small, deadlock=False).path) - 1
    b = bmc(m, d, deadlock=False)
    assert b.verdict == VIOLATION and b.depth == d
    replay(m, b.path)
    # widen every counter to 64 bits and start 'gen' next to the top: still wraps like the interpreter
    shared = tuple(dataclasses.replace(v, bits=64, init=(2 ** 63 - 1 if v.name == "gen" else v.init))
                   if v.kind == "int" else v for v in m.shared)
    wide = Model(m.name, shared, m.threads, dict(m.properties), dict(m.locks), m.options)
    b2 = bmc(wide, d, deadlock=False)
    assert b2.verdict == VIOLATION and b2.depth == d
    replay(wide, b2.path)
    gens = [s[wide.layout.shared_slot("gen")] for _, s in b2.path]
    assert gens[0] == 2 ** 63 - 1


def _toy(strengthen: bool):
    """x counts up by 2 from 0 (8-bit): 'x != 7' is true but not inductive
    (x = 5 steps to 7); the lemma 'x is even' makes it inductive."""
    b = ProgramBuilder("counter")
    b.branch("inc", [(E.Var("x") < 100, [(E.Var("x"), E.Var("x") + 2)], "inc"),
                     (E.Var("x") >= 100, [], "done")])
    props = {"not_seven": Property("not_seven", "invariant", "x is never 7", E.ne(E.Var("x"), 7))}
    return Model("toy", (VarDecl("x", 8),), (ThreadDef("t", b.build()),), props)


def test_non_inductive_invariant_gives_cti_and_lemma_proves_it(monkeypatch):
    from pddgpu_verify.model import lemmas as L
    m = _toy(False)
    res = prove(m, ["not_seven"], bmc_depth=3)
    (r,) = res
    assert r.verdict == NOT_INDUCTIVE
    (_, s), (mv, t) = r.cti
    assert s[0] != 7 and t[0] == 7 and check_cti(m, r)
    assert r.breaking == "thread t step inc branch 0"
    itf = cti_trace(m, r, spec="toy", source="test")
    assert itf["#meta"]["backend"] == "z3-cti" and len(itf["states"]) == 2
    assert itf["#meta"]["transitions"][0]["step"] == "inc"
    monkeypatch.setitem(L.LEMMAS, "x_even", L.Lemma("x_even", "x is even", lambda model: E.eq(E.Var("x") & 1, 0)))
    res = prove(m, ["not_seven"], ["x_even"])
    assert {r.name: r.verdict for r in res} == {"not_seven": PROVED, "x_even": PROVED}
    # 2-induction does not help here (5 -> 7 has a 2-step predecessor 3 -> 5 -> 7), 4-induction neither;
    # a bounded search finds no violation, so the verdict stays NOT INDUCTIVE
    assert prove(m, ["not_seven"], k=2)[0].verdict == NOT_INDUCTIVE


def test_k_induction_proves_what_1_induction_cannot():
    """y trails x by one step; 'x == y or x == y + 1' with x <= 3 ... : 'y <= 4' needs 2 steps."""
    b = ProgramBuilder("p")
    b.branch("a", [(E.TRUE, [(E.Var("x"), E.min_(E.Var("x") + 1, 3))], "b")])
    b.branch("b", [(E.TRUE, [(E.Var("y"), E.Var("x"))], "a")])
    props = {"y_small": Property("y_small", "invariant", "y <= 3", E.Var("y") <= 3)}
    m = Model("trail", (VarDecl("x", 8), VarDecl("y", 8)), (ThreadDef("t", b.build()),), props)
    assert prove(m, ["y_small"], bmc_depth=4)[0].verdict == NOT_INDUCTIVE
    r = prove(m, ["y_small"], k=2, bmc_depth=0)[0]
    assert r.verdict == PROVED and r.k == 2


def test_violated_property_reports_a_real_trace():
    m = vram.make(_without("fix_recover_reinit"), SMALL)
    res = {r.name: r for r in prove(m, ["no_buddy_metadata_leak"], bmc_depth=6)}
    r = res["no_buddy_metadata_leak"]
    assert r.verdict == "VIOLATED"
    replay(m, r.trace)


def test_fixed_models_prove_every_safety_property():
    # VRAM for the spec's own threads; GTT (and VRAM) for any number of workers: tests/test_parametric.py
    for mk in (vram,):
        m = mk.make(ALL_FIXES, FULL)
        # the default lemmas (the ghost marks of issue 8's properties among them), and the dead allocator's
        # window between teardown_old and init of the split re-initialisation
        res = prove(m, None, DEFAULT + ["dead_allocator_flagged"])
        bad = {r.name: r.verdict for r in res if r.verdict != PROVED}
        assert not bad, (m.name, bad)
        props = {r.name for r in res if r.kind == "property"}
        assert props == {p for p, x in m.properties.items() if x.kind in ("invariant", "assertion", "final")}


def test_unsupported_construct_names_the_element():
    class Weird(E.Expr):
        __slots__ = ()
    b = ProgramBuilder("w")
    b.go("s0", "done", [(E.Var("x"), Weird())])
    m = Model("weird", (VarDecl("x", 8),), (ThreadDef("t0", b.build()),), {})
    with pytest.raises(EncodeError, match="thread t0 step s0 branch 0 update of x"):
        Encoder(m).trans(Encoder(m).state("a"), Encoder(m).state("b"))
    b = ProgramBuilder("w")
    b.go("s0", "done", [(E.Var("x"), E.Op("pow", (E.Const(1), E.Const(2))))])
    m = Model("weird", (VarDecl("x", 8),), (ThreadDef("t0", b.build()),), {})
    enc = Encoder(m)
    with pytest.raises(EncodeError, match="unsupported operator 'pow'"):
        enc.trans(enc.state("a"), enc.state("b"))


def test_wrapping_matches_interpreter():
    """Narrow stores, shifts out of range, signed comparisons: z3 equals evaluate/wrap."""
    enc_vals = [0, 1, -1, 5, 127, -128, 2 ** 63 - 1, -2 ** 63, 64, 70, -3]
    ops = ["+", "-", "*", "&", "|", "^", "<<", ">>", "<", ">=", "min", "max", "==", "!="]
    m = Model("t", (VarDecl("a", 64), VarDecl("b", 64)), (), {})
    enc = Encoder(m)
    s = enc.state("s")
    for a in enc_vals:
        for b in enc_vals:
            for o in ops:
                e = E.Op(o, (E.Var("a"), E.Var("b")))
                want = E.evaluate(e, (a, b), m.layout)
                got = z3.simplify(z3.substitute(enc.expr(e, s, None), (s[0], z3.BitVecVal(a % 2 ** 64, 64)),
                                                (s[1], z3.BitVecVal(b % 2 ** 64, 64))))
                assert got.as_signed_long() == want, (a, o, b)


# partial-order reduction of bmc -------------------------------------------------------------------------------

def _independent_pairs_commute(m, enc, steps=300, seed=5):
    """On states of random walks: every enabled pair of moves the encoder calls
    independent runs in either order to the same state."""
    succ = lambda s: {(t, pc, b): n for t, pc, b, n in interpret.successors(m, s)}  # noqa: E731
    by_key = {(mv.thread, mv.pc, mv.branch): mv for mv in enc.moves}
    rnd = random.Random(seed)
    s = m.initial_state()
    checked = 0
    for _ in range(steps):
        nx = succ(s)
        if not nx:
            s = m.initial_state()
            continue
        for ka, sa in nx.items():
            after_a = succ(sa)
            for kb, sab in after_a.items():
                if not enc.independent(by_key[ka], by_key[kb]):
                    continue
                checked += 1
                sb = nx.get(kb)
                if sb is None or succ(sb).get(ka) != sab:
                    return False, checked
        s = rnd.choice(list(nx.values()))
    return True, checked


@pytest.mark.parametrize("name,make", MODELS[:4], ids=[m[0] for m in MODELS[:4]])
def test_independent_moves_commute(name, make):
    m = make()
    ok, checked = _independent_pairs_commute(m, Encoder(m))
    assert ok and checked > 100


def _unsound_footprint(self, mv):
    """Deliberately wrong: forgets every slot but the thread's own pc, so all
    moves of different threads look independent."""
    pk = self.lay.pc_slot(mv.thread)
    return frozenset({pk}), frozenset({pk})


REDUCED = [
    ("vram-recover-reinit", lambda: vram.make(_without("fix_recover_reinit"), SMALL), False),
    ("vram-as-written", lambda: vram.make({}, SMALL), False),
    ("vram-free-during-error", lambda: vram.make(_without("fix_free_always_releases"),
                                                 Workload(workers=[[("alloc", 1), ("free",)]], error_injectors=1)),
     False),
    ("vram-retry-relock-deadlock", lambda: vram.make({"retry_holds_lock": True},
                                                     Workload(workers=[[("alloc", 4), ("free",)]] * 2)), True),
]


@pytest.mark.parametrize("name,make,deadlock", REDUCED, ids=[r[0] for r in REDUCED])
def test_bmc_with_reduction_finds_the_explorers_depth(name, make, deadlock):
    m = make()
    r = explore(m, deadlock=deadlock)
    assert r.verdict in ("VIOLATION", "DEADLOCK")
    depth = len(r.path) - 1
    b = bmc(m, depth, deadlock=deadlock, reduce=True)
    assert b.verdict == VIOLATION and b.depth == depth
    replay(m, b.path)
    assert bmc(m, depth - 1, deadlock=deadlock, reduce=True).verdict == NO_VIOLATION
    # the steps of the trace obey the reduction: consecutive independent moves in thread order
    enc = Encoder(m)
    mvs = [next(x for x in enc.moves if (x.thread, x.pc, x.branch) == (mv.thread, mv.pc, mv.branch))
           for mv, _ in b.path[1:]]
    assert all(not (b2.thread < a.thread and enc.independent(a, b2)) for a, b2 in zip(mvs, mvs[1:]))


def test_an_unsound_reduction_is_caught(monkeypatch):
    """Calling every pair of moves of different threads independent forces
    thread-index order on the path: the commutation check fails, and BMC
    misses the explorer's violation at its depth."""
    m = vram.make(_without("fix_free_always_releases"),
                  Workload(workers=[[("alloc", 1), ("free",)]], error_injectors=1))
    depth = len(explore(m, deadlock=False).path) - 1
    monkeypatch.setattr(Encoder, "footprint", _unsound_footprint)
    assert not _independent_pairs_commute(m, Encoder(m))[0]
    b = bmc(m, depth, deadlock=False, reduce=True)
    assert not (b.verdict == VIOLATION and b.depth == depth)
