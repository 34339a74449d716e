"""Non-progress cycles under weak fairness, on the explored state graph.

A call is pending while its thread's pc lies inside it.  Thread t starves in
call C if some reachable strongly connected set of states keeps t inside C
and is weakly fair: every thread either moves inside the set or is disabled
somewhere in it.  For weak fairness that test on whole components is exact:
a thread enabled everywhere in a component that never moves there is enabled
everywhere in each sub-component too.
"""
from __future__ import annotations

from collections import deque

import networkx as nx


def _mover(mv: int) -> int:
    return mv >> 24


def find_non_progress(comp, states, edges):
    """Return (stem end index, [(move, state index)...] cycle, thread, call) or None."""
    m = comp.model
    lay = m.layout
    steps = [t.program.steps for t in m.threads]

    def call_at(t, s):
        pc = s[lay.pc_slot(t)]
        return steps[t][pc].call if pc < len(steps[t]) else None

    enabled_cache: dict[int, set] = {}

    def enabled(i):
        e = enabled_cache.get(i)
        if e is None:
            e = enabled_cache[i] = {t for t, *_ in comp.successors(states[i])}
        return e

    for t in range(len(m.threads)):
        g = nx.DiGraph()
        for i, j, mv in edges:
            c = call_at(t, states[i])
            if c is None or call_at(t, states[j]) != c:
                continue
            g.add_edge(i, j, mv=mv)
        for comp_nodes in nx.strongly_connected_components(g):
            if len(comp_nodes) == 1:
                (n,) = comp_nodes
                if not g.has_edge(n, n):
                    continue
            sub = g.subgraph(comp_nodes)
            movers = {_mover(d["mv"]) for _, _, d in sub.edges(data=True)}
            targets = []     # per thread: an edge it takes, or a state where it is disabled
            fair = True
            for u in range(len(m.threads)):
                if u in movers:
                    targets.append(next((a, b) for a, b, d in sub.edges(data=True) if _mover(d["mv"]) == u))
                    continue
                off = next((k for k in comp_nodes if u not in enabled(k)), None)
                if off is None:
                    fair = False
                    break
                targets.append((off, None))
            if not fair:
                continue
            start = min(comp_nodes)
            cycle = _witness_cycle(sub, start, targets)
            return start, cycle, t, call_at(t, states[start])
    return None


def _witness_cycle(sub, start, targets):
    """A closed walk from start through every target (edge or state)."""
    def walk(a, b):
        if a == b:
            return []
        prev = {a: None}
        q = deque([a])
        while q:
            x = q.popleft()
            if x == b:
                break
            for y in sub.successors(x):
                if y not in prev:
                    prev[y] = x
                    q.append(y)
        out = []
        y = b
        while prev[y] is not None:
            x = prev[y]
            out.append((sub[x][y]["mv"], y))
            y = x
        return out[::-1]

    cycle, here = [], start
    for a, b in targets:
        cycle += walk(here, a)
        here = a
        if b is not None:
            cycle.append((sub[a][b]["mv"], b))
            here = b
    cycle += walk(here, start)
    if not cycle:
        y = next(iter(sub.successors(start)))
        cycle = [(sub[start][y]["mv"], y)] + walk(y, start)
    return cycle
