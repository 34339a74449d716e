"""VRAM requests that are not a power of two (issue 8, item 7).

The buddy places ``alloc 3`` in one block of 4 minimum blocks (the request
rounded up to a power of two, the manager's ``min_block_size``); the model
says so (model/geometry.py ``block_units``) and counts the block in both
statistics, used and vis_usage.  The implementation once counted the
request in ``used`` and the block in ``vis_usage`` (used_size 12288,
visible_used 16384 for three 4 KiB pages): the conformance tests must catch
that code, and pass on the fixed one.  GTT (drm_mm) takes exactly N pages.
"""
from __future__ import annotations

import itertools
import sys
from pathlib import Path

import pytest

from pddgpu_verify.checker.spec import SpecError, load_spec
from pddgpu_verify.model import gtt, interpret, vram
from pddgpu_verify.model.geometry import block_units, geometry_for
from pddgpu_verify.model.manager import Workload
from pddgpu_verify.pddgpu.device import PAGE_SIZE, Device, Resource
from pddgpu_verify.pddgpu.vram import VramManager

sys.path.insert(0, str(Path(__file__).parent))
import test_conformance as seq  # noqa: E402
from test_conformance_concurrent import Nonconformance, run_schedule  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
A = lambda n: ("alloc", n)  # noqa: E731


def _request_counting_stats(monkeypatch):
    """The code as it was: ``used`` counts the request, ``vis_usage`` the block."""
    def add(self, res, at):
        self.used.add(res.size, at=at)
        self.vis_usage.add(self._visible(res), at=at + "2")

    def sub(self, res, at):
        self.used.sub(res.size, at=at)
        self.vis_usage.sub(self._visible(res), at=at + "2")
    monkeypatch.setattr(VramManager, "_stats_add", add)
    monkeypatch.setattr(VramManager, "_stats_sub", sub)


def _run_to_end(model):
    """Every thread in turn (lowest first) to the end; the states passed."""
    s = model.initial_state()
    states = [s]
    for _ in range(1000):
        succ = interpret.successors(model, s)
        if not succ:
            break
        s = succ[0][3]
        states.append(s)
    return states


# -- the model ------------------------------------------------------------------------------------------------

def test_block_units_rounds_vram_requests_up_and_keeps_gtt_exact():
    assert [block_units("buddy", n) for n in (1, 2, 3, 4, 5, 7, 8, 9)] == [1, 2, 4, 4, 8, 8, 8, 16]
    assert [block_units("range", n) for n in (1, 3, 5)] == [1, 3, 5]
    # a large VRAM's window tracks the blocks, not the requests
    geo = geometry_for("buddy", 1 << 20, None, (3,), 1)
    assert set(geo.sizes) == {4} and geo.window % 4 == 0


def test_model_places_alloc_3_in_one_block_of_4_and_counts_the_block():
    m = vram.make({}, Workload([[A(3), ("free",)]], stats_readers=0), 4)
    lay = m.layout
    states = _run_to_end(m)
    held = [lay.as_dict(s) for s in states if lay.as_dict(s)["w0.blk"] >= 0]
    assert held, "the alloc never got a block"
    d = held[-1]
    assert m.geometry.sizes[d["w0.blk"]] == 4 and m.geometry.describe(d["w0.blk"]) == "[0,4)"
    assert (d["used"], d["vis"]) == (4, 4)
    end = lay.as_dict(states[-1])
    assert (end["used"], end["vis"], end["mask"]) == (0, 0, 0)
    # both sizes visible in a trace: the call names the request, the allocator step and the stats the block
    steps = {st.label: st for st in m.threads[0].program.steps}
    assert steps["op0.alloc.alloc_call"].call == "op0:alloc(3)"
    assert "one block of 4" in steps["op0.alloc.alloc_call"].code
    assert "atomic64_add(4 /* the block of alloc(3) */, &mgr->used);" == steps["op0.alloc.ok_stats"].code
    assert all(interpret.check(m, s) is None for s in states)


def test_gtt_alloc_3_takes_exactly_3_pages():
    m = gtt.make({}, Workload([[A(3), ("free",)]]), 4)
    lay = m.layout
    held = [lay.as_dict(s) for s in _run_to_end(m) if lay.as_dict(s)["w0.blk"] >= 0]
    assert m.geometry.sizes[held[-1]["w0.blk"]] == 3 and held[-1]["used"] == 3


def test_spec_accepts_any_vram_request_up_to_the_allocator(tmp_path):
    text = (ROOT / "specs/47_vram_fixed_stats.toml").read_text().replace("size = 2", "size = 4")
    for n in (1, 3, 4):
        p = tmp_path / f"ok{n}.toml"
        p.write_text(text.replace('"alloc 1"', f'"alloc {n}"'))
        assert load_spec(p).workload.workers[0][0] == ("alloc", n)
    p = tmp_path / "too_big.toml"
    p.write_text(text.replace('"alloc 1"', '"alloc 5"'))
    with pytest.raises(SpecError, match="alloc 5 is larger than the allocator"):
        load_spec(p)


# -- the conformance tests catch the request-counting code, and pass on the fixed one -------------------------

ODD = Workload([[A(3), ("free",)], [A(1), ("free",)]], 0, 1, 1, True)


def _schedule(k):
    """Rotate through the lowest ``k`` enabled threads: 1 runs w0's calls to their end first, 2 interleaves
    the workers (both hold a block at once); both reach w0's statistics update."""
    counter = itertools.count()
    return lambda n, what: next(counter) % min(n, k)


@pytest.mark.parametrize("k", [1, 2])
def test_concurrent_conformance_catches_request_counting_stats(monkeypatch, k):
    with monkeypatch.context() as mp:
        _request_counting_stats(mp)
        with pytest.raises(Nonconformance, match=r"used = 3 in the code, 4 in the model"):
            run_schedule("vram", {}, ODD, _schedule(k))
    # the code as it is now counts the block in both
    assert run_schedule("vram", {}, ODD, _schedule(k)) > 0


def _sequential(*calls):
    m = seq.Conformance()
    m.setup(kind="vram", fixes=set(), stats_point="after_unlock", set_error=False, reads=2, init_can_fail=False,
            fini=(False, False), state_retry=False)
    for name, kw in calls:
        getattr(m, name)(**kw)
    return m


ODD_CALLS = [("alloc", dict(w=0, size=3, gsize=1)), ("get_stats", {}), ("alloc", dict(w=1, size=5, gsize=1)),
             ("get_stats", {}), ("free", dict(w=0)), ("free", dict(w=1)), ("get_stats", {})]


def test_sequential_conformance_catches_request_counting_stats(monkeypatch):
    with monkeypatch.context() as mp:
        _request_counting_stats(mp)
        with pytest.raises(AssertionError, match=r"w0 alloc\(3\): model violates \[\], code shows "
                                                 r"\['used_matches_allocations'\]"):
            _sequential(*ODD_CALLS)
    m = _sequential(*ODD_CALLS)
    assert m.mgr.used.peek() == 0 and m.mgr.vis_usage.peek() == 0


# -- the code --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("nbytes, block", [(1, PAGE_SIZE), (PAGE_SIZE + 1, 2 * PAGE_SIZE),
                                           (3 * PAGE_SIZE, 4 * PAGE_SIZE), (5 * PAGE_SIZE, 8 * PAGE_SIZE),
                                           (8 * PAGE_SIZE, 8 * PAGE_SIZE)])
def test_vram_counts_the_block_it_hands_out(nbytes, block):
    d = Device(vram_size=8 * PAGE_SIZE, gtt_pages=8, options={}, sleep_scale=0)
    m = d.vram_mgr
    res = Resource(nbytes)
    assert m.alloc(res) == 0
    assert [b.size for b in res.blocks] == [block]
    st = m.get_stats()
    assert (st.used_size, st.visible_used) == (block, block)
    assert m.used.peek() == sum(b.size for b in m.mm.allocated_blocks())
    m.free(res)
    st = m.get_stats()
    assert (st.used_size, st.visible_used) == (0, 0)
    assert d.fini([m])["vram"] == []


def test_vram_visible_usage_counts_the_visible_part_of_the_block():
    d = Device(vram_size=8 * PAGE_SIZE, gtt_pages=8, options={}, sleep_scale=0, visible_size=2 * PAGE_SIZE)
    m = d.vram_mgr
    res = Resource(3 * PAGE_SIZE)
    assert m.alloc(res) == 0
    st = m.get_stats()
    assert (st.used_size, st.visible_used) == (4 * PAGE_SIZE, 2 * PAGE_SIZE)
    m.free(res)
    assert (m.used.peek(), m.vis_usage.peek()) == (0, 0)
