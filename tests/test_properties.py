"""Each property on a state built to break it, and on the same state with the
culprit removed (so the test fails if a property is vacuous or over-eager).
Both the compiled check and the reference interpreter must agree."""
import pytest

from pddgpu_verify.model import gtt, interpret, vram
from pddgpu_verify.model.compile import compile_model
from pddgpu_verify.model.manager import ERROR, INITIALIZING, READY, SHUTDOWN, Workload

from helpers import pair, state_with

V2 = lambda **kw: vram.make(kw, Workload(workers=pair(2), recoverers=1, stats_readers=1, shutdown=True))  # noqa: E731
VI = lambda **kw: vram.make({"fix_error_under_lock": True, **kw}, Workload(workers=pair(1), error_injectors=1))  # noqa: E731
G2 = lambda **kw: gtt.make(kw, Workload(workers=pair(2), recoverers=1, stats_readers=1, shutdown=True))  # noqa: E731

# (property, model factory, breaking assignment, repaired assignment)
CASES = [
    ("no_overlap", V2, dict(w0__blk=0, w1__blk=4), dict(w0__blk=0, w1__blk=5)),      # [0,1) vs [0,2) / [2,4)
    ("used_matches_allocations", V2, dict(used=-1), dict(used=0)),
    ("used_matches_allocations", V2, dict(mask=1, used=0, vis=0), dict(mask=1, used=1, vis=1)),
    ("shutdown_sticky", V2, dict(shutdown_seen=1, state=READY), dict(shutdown_seen=1, state=READY | SHUTDOWN)),
    ("lock_no_self_reacquire", V2, dict(w0__pc="op0.alloc.lock", lock=1), dict(w0__pc="op0.alloc.lock", lock=2)),
    ("lock_released_by_owner", V2, dict(w0__pc="op0.alloc.ok_unlock", lock=2),
     dict(w0__pc="op0.alloc.ok_unlock", lock=1)),
    ("no_double_free", V2, dict(w0__pc="op1.free.free_call", w0__blk=0, mask=0),
     dict(w0__pc="op1.free.free_call", w0__blk=0, mask=1)),
    ("no_foreign_free", V2, dict(w0__pc="op1.free.free_call", w0__blk=0, mask=1, gen=1),
     dict(w0__pc="op1.free.free_call", w0__blk=0, mask=1, gen=0)),
    ("no_allocator_use_after_fini", V2, dict(w0__pc="op0.alloc.alloc_call", alive=0, finied=1),
     dict(w0__pc="op0.alloc.alloc_call")),
    # at the allocator call, whatever the check before it saw
    ("error_serves_no_alloc", V2, dict(w0__pc="op0.alloc.alloc_call", lock=1, state=READY | ERROR),
     dict(w0__pc="op0.alloc.alloc_call", lock=1, state=READY)),
    ("allocator_lock_held", V2, dict(w0__pc="op0.alloc.alloc_call", lock=0), dict(w0__pc="op0.alloc.alloc_call", lock=1)),
    ("allocator_lock_held", V2, dict(w0__pc="op1.free.free_call", w0__blk=0, mask=1, lock=2),
     dict(w0__pc="op1.free.free_call", w0__blk=0, mask=1, lock=1)),
    ("alloc_failure_sets_error", V2, dict(w0__pc="op0.alloc.return", w0__ret=-12, w0__calls=3, state=READY),
     dict(w0__pc="op0.alloc.return", w0__ret=-12, w0__calls=3, state=READY | ERROR)),
    # ... unless a recover cleared ERROR since the failure
    ("alloc_failure_sets_error", V2, dict(w0__pc="op0.alloc.return", w0__ret=-12, w0__emark=1, err_clears=1),
     dict(w0__pc="op0.alloc.return", w0__ret=-12, w0__emark=1, err_clears=2)),
    # counted at the allocator (the ghost calls), whatever the code's own retry counter says
    ("alloc_retries_before_failure", V2, dict(w0__pc="op0.alloc.return", w0__ret=-12, w0__retry=3, w0__calls=1),
     dict(w0__pc="op0.alloc.return", w0__ret=-12, w0__retry=1, w0__calls=3)),
    ("alloc_retries_bounded", V2, dict(w0__pc="op0.alloc.alloc_call", lock=1, w0__calls=3),
     dict(w0__pc="op0.alloc.alloc_call", lock=1, w0__calls=2)),
    ("alloc_success_hands_a_block", V2, dict(w0__pc="op0.alloc.return", w0__ret=0),
     dict(w0__pc="op0.alloc.return", w0__ret=0, w0__blk=0, w0__vres=1, mask=1, used=1, vis=1)),
    # -ENODEV from a manager that served from the call's entry to its return, with no ERROR set in between
    ("alloc_enodev_only_when_unready", V2, dict(w0__pc="op0.alloc.return", w0__ret=-19, w0__umark=0),
     dict(w0__pc="op0.alloc.return", w0__ret=-19, w0__umark=0, err_sets=1)),
    ("alloc_enodev_only_when_unready", V2, dict(w0__pc="op0.alloc.return", w0__ret=-19, err_sets=1, w0__umark=1),
     dict(w0__pc="op0.alloc.return", w0__ret=-19, err_sets=1, w0__umark=3)),
    ("alloc_enodev_only_when_unready", V2, dict(w0__pc="op0.alloc.return", w0__ret=-19, w0__umark=0, state=READY),
     dict(w0__pc="op0.alloc.return", w0__ret=-19, w0__umark=0, state=READY | SHUTDOWN)),
    ("device_shutdown_refuses_calls", V2, dict(w0__pc="op0.alloc.return", w0__ret=0, w0__blk=0, w0__dmark=1),
     dict(w0__pc="op0.alloc.return", w0__ret=-19, w0__dmark=1)),
    ("device_shutdown_refuses_calls", V2, dict(rec0__pc="return", rec0__ret=0, rec0__dmark=1),
     dict(rec0__pc="return", rec0__ret=-19, rec0__dmark=1)),
    ("recover_refused_only_at_shutdown", V2, dict(rec0__pc="return", rec0__ret=-19),
     dict(rec0__pc="return", rec0__ret=-19, dev_state=1)),
    ("recover_refused_only_at_shutdown", V2, dict(rec0__pc="return", rec0__ret=-19),
     dict(rec0__pc="return", rec0__ret=-19, state=READY | SHUTDOWN, shutdown_seen=1)),
    # set_error's write must still be there when it returns, unless a recover cleared ERROR after it
    ("set_error_sets_error", VI, dict(inj0__pc="set_error_unlock", lock=2, state=READY),
     dict(inj0__pc="set_error_unlock", lock=2, state=READY, err_clears=1)),
    ("state_transitions_documented", V2, dict(state=READY | INITIALIZING), dict(state=READY)),
    ("state_transitions_documented", V2, dict(state=READY | SHUTDOWN), dict(state=READY | SHUTDOWN, shutdown_seen=1)),
    ("fini_shuts_down", V2, dict(fini__pc="teardown", state=READY | SHUTDOWN, shutdown_seen=1),
     dict(fini__pc="teardown", state=READY | SHUTDOWN, shutdown_seen=1, dev_state=1)),
    ("recover_leaves_ready", V2, dict(rec0__pc="return", rec0__ret=0, state=READY | ERROR),
     dict(rec0__pc="return", rec0__ret=0, state=READY)),
    ("recover_leaves_ready", V2, dict(rec0__pc="return", rec0__ret=0, state=ERROR, err_sets=1, rec0__rmark=1),
     dict(rec0__pc="return", rec0__ret=0, state=ERROR, err_sets=2, rec0__rmark=1)),
    ("init_failure_sets_error", V2, dict(rec0__pc="return", rec0__ret=-12, state=READY),
     dict(rec0__pc="return", rec0__ret=-12, state=READY | ERROR)),
    ("stats_snapshot", V2, dict(stats0__pc="report", stats0__s_used=1, stats0__s_vis=1, stats0__s_vis0=1),
     dict(stats0__pc="report", stats0__s_used=1, stats0__s_vis=1, stats0__s_vis0=1, stats0__s_units=1)),
    ("documented_return_code", V2, dict(w0__pc="op0.alloc.return", w0__ret=-28),
     dict(w0__pc="op0.alloc.return", w0__ret=-12)),
    ("returns_without_lock", V2, dict(w0__pc="op0.alloc.return", lock=1), dict(w0__pc="op0.alloc.return", lock=0)),
    ("no_lost_resource", V2, dict(w0__pc="op0.alloc.return", w0__ret=-12, w0__vres=1),
     dict(w0__pc="op0.alloc.return", w0__ret=-12, w0__vres=0)),
    ("stats_consistent", V2, dict(stats0__pc="report", stats0__s_used=1, stats0__s_vis=2),
     dict(stats0__pc="report", stats0__s_used=2, stats0__s_vis=2)),
    ("stats_consistent", V2, dict(stats0__pc="report", stats0__s_used=-1, stats0__s_vis=-1),
     dict(stats0__pc="report")),
    ("no_leak_at_fini", V2, dict(fini__pc="teardown", mask=1, used=1, vis=1), dict(fini__pc="teardown")),
    ("no_leak_at_fini", V2, dict(fini__pc="teardown", lost=1), dict(fini__pc="teardown")),
    ("no_reinit_of_live_allocator", V2, dict(rec0__pc="init", mask=1, used=1, vis=1, w0__blk=0),
     dict(rec0__pc="init", alive=0)),
    ("no_buddy_metadata_leak", V2, dict(rec0__pc="init"), dict(rec0__pc="init", alive=0)),
    ("no_data_race", G2, dict(stats0__pc="read_used", lock=1), dict(stats0__pc="read_used", lock=0)),
    ("no_sleep_under_spinlock", lambda: gtt.make({"retry_holds_lock": True}, Workload(workers=pair(1, 4))),
     dict(w0__pc="op0.alloc.retry_sleep", lock=1), dict(w0__pc="op0.alloc.retry_sleep", lock=0)),
]


@pytest.mark.parametrize("prop, make, bad, good", CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_property_breaks_on_a_built_state_and_holds_once_repaired(prop, make, bad, good):
    model = make()
    comp = compile_model(model, [prop])
    sb = state_with(model, **bad)
    sg = state_with(model, **good)
    got = comp.check(sb)
    assert got is not None and got[0] == prop
    assert interpret.check(model, sb, [prop]) == got
    assert comp.check(sg) is None
    assert interpret.check(model, sg, [prop]) is None


def test_final_property_no_lost_resource_only_in_finished_states():
    model = vram.make({}, Workload(workers=pair(1)))
    comp = compile_model(model, ["no_lost_resource"])
    done = state_with(model, w0__pc="done", lost=1)
    assert comp.is_done(done) and comp.check_final(done) == "no_lost_resource"
    assert comp.check_final(state_with(model, w0__pc="done")) is None
    assert interpret.check_final(model, done, ["no_lost_resource"]) == "no_lost_resource"


def test_every_declared_property_is_exercised_here():
    covered = {c[0] for c in CASES} | {"no_lost_resource"}
    declared = set(V2().properties) | set(G2().properties)
    assert declared <= covered, declared - covered
