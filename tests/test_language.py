"""The modelling language: evaluation, wrapping, and compiled successors that
agree with the reference interpreter on every reachable state."""
import random

import pytest

from pddgpu_verify.checker.explorer import explore
from pddgpu_verify.model import expr as E
from pddgpu_verify.model import gtt, interpret, vram
from pddgpu_verify.model.compile import compile_model
from pddgpu_verify.model.expr import Const, Var, eq, ite, table
from pddgpu_verify.model.geometry import buddy, range_allocator
from pddgpu_verify.model.manager import Workload

from helpers import AF, everything, pair
from toy_models import lock_order, lost_update, peterson


def test_wrap_is_twos_complement_of_the_declared_width():
    assert E.wrap(255, 8) == -1
    assert E.wrap(128, 8) == -128
    assert E.wrap(127, 8) == 127
    assert E.wrap(-1, 64) == -1
    assert E.wrap(1 << 63, 64) == -(1 << 63)


class _Lay:
    def __init__(self, names):
        self.names = names

    def shared_slot(self, n):
        return self.names.index(n)


@pytest.mark.parametrize("e, want", [
    (Const(3) + 4, 7), (Const(3) - 5, -2), (Const(6) & 3, 2), (Const(6) | 1, 7), (~Const(8) & 15, 7),
    (Const(1) << 4, 16), (Const(-16) >> 2, -4), (eq(Const(2), 2), 1), (Const(2) < 1, 0),
    (E.and_(1, 0), 0), (E.or_(0, 2), 1), (E.not_(0), 1), (ite(1, 5, 6), 5), (table((4, 5, 6), Const(2)), 6),
    (table((4, 5), Const(7), default=-9), -9), (E.min_(3, -2), -2), (E.max_(3, -2), 3),
    (Var("x") + Var("y"), 30), (Const((1 << 63) - 1) + 1, -(1 << 63)),
])
def test_evaluate_and_compiled_python_agree_on_expressions(e, want):
    lay = _Lay(["x", "y"])
    s = (10, 20)
    assert E.evaluate(e, s, lay) == want
    src = E.to_python(e, lay.shared_slot, None, None, None)
    assert eval(src, dict(E.RUNTIME), {"s": s}) == want


def test_first_fit_takes_the_lowest_free_aligned_block():
    g = buddy(4)
    # candidates: sizes 1 at 0..3 (ids 0-3), size 2 at 0 and 2 (ids 4, 5), size 4 (id 6)
    assert g.sizes == (1, 1, 1, 1, 2, 2, 4)
    lay = _Lay(["mask"])
    ev = lambda e, m: E.evaluate(e, (m,), lay)  # noqa: E731
    assert ev(g.first_fit(Var("mask"), 1), 0) == 0
    assert ev(g.first_fit(Var("mask"), 1), 1 << 0) == 1
    assert ev(g.first_fit(Var("mask"), 2), 1 << 0) == 5        # [0,2) is blocked by block 0
    assert ev(g.first_fit(Var("mask"), 4), 1 << 3) == -1
    assert ev(g.first_fit(Var("mask"), 1), 1 << 6) == -1        # everything taken by the root
    r = range_allocator(4)
    first3 = ev(r.first_fit(Var("mask"), 3), 0)
    assert (r.starts[first3], r.sizes[first3]) == (0, 3)
    assert ev(r.first_fit(Var("mask"), 3), 1 << r.starts.index(0)) == first3 + 1   # page 0 taken: start at 1


def _random_reachable(model, n=300, seed=1):
    comp = compile_model(model)
    rnd = random.Random(seed)
    seen = []
    s = model.initial_state()
    for _ in range(n):
        seen.append(s)
        nxt = comp.successors(s)
        s = rnd.choice(nxt)[3] if nxt else model.initial_state()
    return seen


MODELS = [
    ("vram as written", lambda: everything(vram)),
    ("gtt as written", lambda: everything(gtt)),
    ("vram fixed", lambda: everything(vram, {**AF, "fini_concurrent": True}, n=2)),
    ("gtt fixed", lambda: everything(gtt, {**AF, "fini_concurrent": True}, n=2)),
    ("vram retry holds lock", lambda: vram.make({"retry_holds_lock": True, "init_can_fail": True,
                                                 "fix_alloc_failure_sets_error": True, "is_ready_reads": 1},
                                                Workload(workers=pair(2, 4), recoverers=1))),
    ("gtt state retry", lambda: gtt.make({"state_check_failure": "retry", "stats_update_point": "under_lock",
                                          "fini_takes_lock": True},
                                         Workload(workers=pair(2, 3), error_injectors=1, shutdown=True))),
    ("peterson", peterson), ("lost update", lost_update), ("lock order", lock_order),
]


@pytest.mark.parametrize("name, make", MODELS, ids=[m[0] for m in MODELS])
def test_compiled_successors_and_checks_agree_with_the_interpreter(name, make):
    model = make()
    comp = compile_model(model)
    for s in _random_reachable(model):
        assert sorted(comp.successors(s)) == sorted(interpret.successors(model, s)), s
        assert comp.check(s) == interpret.check(model, s)
        if comp.is_done(s):
            assert comp.check_final(s) == interpret.check_final(model, s)


def test_compiled_and_interpreted_exploration_reach_the_same_states():
    model = everything(vram)
    comp = compile_model(model)
    # an independent breadth-first search on the interpreter, no properties
    init = model.initial_state()
    seen, frontier = {init}, [init]
    while frontier:
        nxt = []
        for s in frontier:
            for *_, n in interpret.successors(model, s):
                if n not in seen:
                    seen.add(n)
                    nxt.append(n)
        frontier = nxt
    from dataclasses import replace
    r = explore(replace(comp, check=lambda s: None, check_final=lambda s: None, properties=(), watched=()),
                deadlock=False)
    assert r.verdict == "OK"
    assert r.stats["states"] == len(seen)


def test_model_rejects_jumps_to_unknown_labels():
    from pddgpu_verify.model.builder import ProgramBuilder
    from pddgpu_verify.model.program import Model, ThreadDef, VarDecl
    b = ProgramBuilder("x")
    b.go("a", "nowhere")
    with pytest.raises(ValueError, match="unknown label nowhere"):
        Model("bad", (VarDecl("v"),), (ThreadDef("t", b.build()),))


def test_writes_to_a_narrow_variable_wrap():
    from pddgpu_verify.model.builder import ProgramBuilder
    from pddgpu_verify.model.program import Model, ThreadDef, VarDecl
    b = ProgramBuilder("x")
    b.go("a", "done", [(Var("v"), Var("v") + 1)])
    m = Model("wrap", (VarDecl("v", bits=8, init=127),), (ThreadDef("t", b.build()),))
    (t, pc, br, n), = compile_model(m).successors(m.initial_state())
    assert n[0] == -128
    assert interpret.successors(m, m.initial_state())[0][3][0] == -128
