"""Ample-set partial-order reduction for the breadth-first explorer (the
argument, conditions C0-C3, is docs/POR.md; the relation is
model/independence.py).

At a state, the explorer's successors are filtered to those of one thread t
when t's step at its pc is independent of everything every other thread can
still do (C1), cannot hide a property violation or a trigger (C2), and every
one of those successors is new or was discovered deeper than the state (C3,
the cycle proviso, in a form any search order satisfies).  Otherwise every successor is kept.
"""
from __future__ import annotations

from operator import itemgetter

from ..model.independence import Independence, Visibility


class Reduction:
    """``filter(s, nexts, index, key_of)`` -> the successors to expand.  ``ind``: an ``Independence`` (or a
    subclass: a test passes a wrong one to see that the comparison catches it)."""

    def __init__(self, comp, ind: Independence | None = None):
        m = comp.model
        self.ind = ind if ind is not None else Independence(m)
        self.vis = Visibility(m, comp.properties, comp.watched, self.ind)
        self.n = len(m.threads)
        self.pc_slots = [m.layout.pc_slot(t) for t in range(self.n)]
        self.done = list(m.layout.done_pc)
        self.reduced = 0       # states expanded through an ample set smaller than all successors
        self.full = 0          # states with successors of more than one thread, expanded fully
        self.proviso = 0       # of those, states where an ample set existed but C3 refused it
        self._masks = {}
        # eligibility depends only on the pcs and the protected lock words: cached per such control state
        slots = self.pc_slots + [self.ind.lock_slot[L] for L in self.ind.protected]
        self._control = itemgetter(*slots) if len(slots) > 1 else (lambda s, k=slots[0]: (s[k],))
        self._eligible = {}

    def masks(self, t, p, held):
        key = (t, p, held)
        r = self._masks.get(key)
        if r is None:
            rd, wr = self.ind.dependent_masks(t, p)
            self._masks[key] = r = (rd | wr | self.vis.extra_reads(t, p, held), wr)
        return r

    def eligible(self, t, s) -> bool:
        ind = self.ind
        held = ind.held_by(t, s)
        x, wr = self.masks(t, s[self.pc_slots[t]], held)
        for u in range(self.n):
            if u == t:
                continue
            pu = s[self.pc_slots[u]]
            if pu == self.done[u]:
                continue
            w2, r2 = ind.reach(u, pu, held)
            if w2 & x or r2 & wr:
                return False
        return True

    def filter(self, s, nexts, index, key_of, depth_of, d):
        first = nexts[0][0]
        if all(n[0] == first for n in nexts):
            return nexts                        # one thread moves: that is every successor anyway
        by_thread = {}
        for n in nexts:
            by_thread.setdefault(n[0], []).append(n)
        refused = False
        ctl = self._control(s)
        for t in sorted(by_thread, key=lambda t: len(by_thread[t])):
            ok = self._eligible.get((t, ctl))
            if ok is None:
                self._eligible[(t, ctl)] = ok = self.eligible(t, s)
            if not ok:
                continue
            amp = by_thread[t]
            # C3: every successor new or discovered deeper than s, so no cycle of reduced expansions can close
            # (along one, discovery depths would strictly increase)
            if all(depth_of[j] > d for j in (index.get(key_of(n[3])) for n in amp) if j is not None):
                self.reduced += 1
                return amp
            refused = True
        self.full += 1
        self.proviso += refused
        return nexts

    def stats(self) -> dict:
        return {"por": True, "por_reduced_states": self.reduced, "por_full_states": self.full,
                "por_proviso_full": self.proviso}
