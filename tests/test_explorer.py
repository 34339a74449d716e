"""The explorer on small systems whose answers were worked out by hand."""
import pytest

from pddgpu_verify.checker.explorer import explore
from pddgpu_verify.model import vram
from pddgpu_verify.model.manager import Workload

from helpers import AF, pair
from toy_models import lock_order, lost_update, peterson, spinner


def test_lost_update_counter_full_state_space_is_13_states_14_transitions():
    # enumerated by hand in toy_models: (pc0,tmp0,pc1,tmp1,counter) — see the list in the test below
    r = explore(lost_update(), properties=[])
    assert (r.verdict, r.stats["states"], r.stats["transitions"]) == ("OK", 13, 14)


def test_lost_update_is_found_by_the_shortest_interleaving():
    m = lost_update()
    r = explore(m)
    assert r.label == "VIOLATION(no_lost_update)"
    moves = [(m.threads[mv.thread].name, m.threads[mv.thread].program.steps[mv.pc].label) for mv, _ in r.path[1:]]
    # both read 0 before either writes: 4 steps, the minimum
    assert len(moves) == 4
    assert sorted(moves[:2]) == [("t0", "read"), ("t1", "read")]
    assert r.path[-1][1][0] == 1          # the counter ends at 1, not 2


def test_atomic_increment_verifies_with_4_states():
    r = explore(lost_update(atomic=True))
    assert (r.verdict, r.stats["states"], r.stats["transitions"]) == ("OK", 4, 4)


def test_three_thread_lost_update_with_and_without_symmetry():
    plain = explore(lost_update(3), properties=[])
    sym = explore(lost_update(3), properties=[], symmetry=True)
    assert plain.verdict == sym.verdict == "OK"
    assert sym.stats["states"] < plain.stats["states"]
    # the lost update is still found under symmetry
    assert explore(lost_update(3), symmetry=True).label == "VIOLATION(no_lost_update)"


def test_peterson_guarantees_mutual_exclusion():
    r = explore(peterson())
    assert r.verdict == "OK"
    assert r.stats["states"] == 34


def test_peterson_without_the_turn_handshake_breaks_mutual_exclusion():
    m = peterson(broken=True)
    r = explore(m)
    assert r.label == "VIOLATION(mutual_exclusion)"
    last = r.path[-1][1]
    cs = m.threads[0].program.labels.index("cs")
    assert last[m.layout.pc_slot(0)] == last[m.layout.pc_slot(1)] == cs


def test_lock_order_inversion_deadlocks_after_two_steps():
    m = lock_order()
    r = explore(m)
    assert r.verdict == "DEADLOCK"
    assert len(r.path) == 3            # initial state, l0 takes A, l1 takes B
    assert {m.threads[mv.thread].name for mv, _ in r.path[1:]} == {"l0", "l1"}


def test_consistent_lock_order_has_no_deadlock():
    assert explore(lock_order(consistent=True)).verdict == "OK"


def test_liveness_under_weak_fairness():
    assert explore(spinner(fair_exit=True), liveness=True).verdict == "OK"
    r = explore(spinner(fair_exit=False), liveness=True)
    assert r.verdict == "LIVENESS"
    assert r.loop_start is not None and r.path[r.loop_start][1] == r.path[-1][1]


def test_bfs_counterexample_is_never_longer_than_dfs():
    m = vram.make({}, Workload(workers=pair(2), recoverers=1))
    bfs = explore(m, properties=["no_overlap"])
    dfs = explore(m, properties=["no_overlap"], strategy="dfs")
    assert bfs.verdict == dfs.verdict == "VIOLATION"
    assert len(bfs.path) <= len(dfs.path)


def test_bounds_give_incomplete_not_ok():
    m = vram.make({**AF, "fini_concurrent": True}, Workload(workers=pair(2), recoverers=1, shutdown=True))
    assert explore(m, max_states=100).verdict == "INCOMPLETE"
    assert explore(m, max_depth=5).verdict == "INCOMPLETE"


@pytest.mark.parametrize("model_name", ["vram", "gtt"])
def test_symmetry_reduction_preserves_the_verdict_and_reduces_states(model_name):
    from pddgpu_verify.model import gtt
    mod = vram if model_name == "vram" else gtt
    m = mod.make({**AF, "fini_concurrent": True}, Workload(workers=pair(3), recoverers=1, shutdown=True))
    a = explore(m)
    b = explore(m, symmetry=True)
    assert a.verdict == b.verdict == "OK"
    assert b.stats["states"] < a.stats["states"] / 3     # 3! orderings of interchangeable workers


def test_statistics_are_reported():
    r = explore(lost_update(atomic=True))
    for k in ("states", "transitions", "diameter", "seconds", "states_per_s", "peak_mb"):
        assert k in r.stats
    assert r.stats["diameter"] == 2


def test_hash_compaction_finds_the_same_states_and_verdicts():
    m = vram.make({**AF, "fini_concurrent": True}, Workload(workers=pair(2), recoverers=1, shutdown=True))
    exact = explore(m, symmetry=True)
    compact = explore(m, symmetry=True, hash_compact=True)
    assert exact.verdict == compact.verdict == "OK"
    assert exact.stats["states"] == compact.stats["states"]
    assert compact.stats["collision_probability"] < 1e-9
    bad = vram.make({}, Workload(workers=pair(2), recoverers=1))
    a, b = explore(bad), explore(bad, hash_compact=True)
    assert a.label == b.label and len(a.path) == len(b.path)


def test_counterexample_path_is_rebuilt_by_re_executing_moves():
    from pddgpu_verify.model import interpret
    m = vram.make({}, Workload(workers=pair(2), recoverers=1))
    r = explore(m, symmetry=True)
    assert r.path[0][1] == m.initial_state()
    for (_, s), (mv, n) in zip(r.path, r.path[1:]):
        assert (mv.thread, mv.pc, mv.branch, n) in interpret.successors(m, s)
