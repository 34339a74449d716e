"""The model's own properties, evaluated on an implementation's state.

A harness (Python or C) abstracts the code's state onto the model's variables: a dict from the names of
``model.layout.var_names()`` to values, pcs given as the step labels the code's threads are parked at.
``ModelMonitor`` turns that into a model state and evaluates ``model.properties[p].expr`` and each step's
``asserts`` with ``model.expr.evaluate`` where the model checks them: a step's assertions for a thread parked
at that step, invariants in every state, final properties at the end.  A return step's assertions read the
value being returned, which the code only hands over once its call is back; ``check_step`` takes it then.

The abstraction does not reach every variable (the ghost marks of a call, a stats reader's copies taken at
its first read): an expression is evaluated only when every variable it reads was supplied, so the monitor
never reports from a guessed value.  What the model cannot see at all (a crash, a BUG_ON, kmemleak's
unreferenced objects, a deadlock of the real threads) stays with the harness.
"""
from __future__ import annotations

from ..model.expr import Local, Pc, Var, evaluate, walk
from ..model.program import Model

__all__ = ["ModelMonitor"]


class ModelMonitor:
    def __init__(self, model: Model, observe):
        self.model = model
        self.lay = model.layout
        self.observe = observe          # observe(property, thread name | None, message)
        self._reads: dict = {}
        self.names = [t.name for t in model.threads]
        self.slot = {n: i for i, n in enumerate(self.lay.var_names())}

    # -- what an expression reads ------------------------------------------------------------------
    def reads(self, e, tid: int | None) -> frozenset:
        key = (id(e), tid)
        hit = self._reads.get(key)
        if hit is not None and hit[0] is e:
            return hit[1]
        out = set()
        for x in walk(e):
            if isinstance(x, Var):
                out.add(x.name)
            elif isinstance(x, Local):
                t = tid if x.thread is None else x.thread
                out.add(f"{self.names[t]}.{x.name}" if t is not None else f"?.{x.name}")
            elif isinstance(x, Pc):
                out.add(f"{self.names[x.thread]}.pc")
        r = frozenset(out)
        self._reads[key] = (e, r)
        return r

    # -- the abstract state ------------------------------------------------------------------------
    def state(self, values: dict) -> tuple[tuple, set]:
        """The model state over the model's initial values, and the names the abstraction supplied."""
        lay = self.lay
        state = list(lay.initial())
        covered = set()
        for name, v in values.items():
            if name.endswith(".pc"):
                tname = name[:-3]
                if tname not in self.names:
                    continue
                tid = self.names.index(tname)
                if v not in lay.labels[tid]:
                    continue            # a step the model does not have: whatever reads this pc is not evaluated
                v = lay.labels[tid].index(v)
            slot = self.slot.get(name)
            if slot is None or v is None:
                continue
            state[slot] = v
            covered.add(name)
        return tuple(state), covered

    def _eval(self, prop: str, e, state, covered, tid, where: str, thread: str | None):
        r = self.reads(e, tid)
        if not r <= covered:
            return True
        if evaluate(e, state, self.lay, tid):
            return True
        shown = ", ".join(f"{n}={state[self.slot[n]]}" for n in sorted(r) if not n.endswith(".pc"))
        pr = self.model.properties[prop]
        self.observe(prop, thread, f"the model's {pr.kind} {prop} is false on the code's state{where}"
                     + (f" ({shown})" if shown else "") + (f": {pr.description}" if pr.description != prop else ""))
        return False

    # -- where the model checks ----------------------------------------------------------------------
    def check_state(self, values: dict, properties=None):
        """Invariants, and the assertions of the step each thread is parked at (``model.interpret.check``)."""
        state, covered = self.state(values)
        want = None if properties is None else set(properties)
        lay = self.lay
        for tid, th in enumerate(self.model.threads):
            if f"{th.name}.pc" not in covered:
                continue
            pc = state[lay.pc_slot(tid)]
            if pc >= len(th.program.steps):
                continue
            st = th.program.steps[pc]
            for p, a in st.asserts:
                if want is None or p in want:
                    self._eval(p, a, state, covered, tid, f" with {th.name} at {st.label}", th.name)
        for p, prop in self.model.properties.items():
            if prop.kind == "invariant" and (want is None or p in want):
                self._eval(p, prop.expr, state, covered, None, "", None)

    def check_step(self, thread: str, label: str, values: dict, locals_: dict | None = None):
        """The assertions of ``thread``'s step ``label`` on ``values`` with the thread's ``locals_`` (a return
        step's ``ret``, a stats reader's copies) as the code handed them over."""
        if thread not in self.names:
            return
        tid = self.names.index(thread)
        try:
            st = self.model.threads[tid].program.step(label)
        except KeyError:
            return
        vals = dict(values)
        vals.update({f"{thread}.{k}": v for k, v in (locals_ or {}).items()})
        vals[f"{thread}.pc"] = label
        state, covered = self.state(vals)
        for p, a in st.asserts:
            self._eval(p, a, state, covered, tid, f" when {thread} returns from {label}", thread)

    def check_final(self, values: dict, properties=None) -> set:
        """The final properties at the end of a run that finished; returns those the abstraction could not
        evaluate (their harness must look for the defect itself)."""
        state, covered = self.state(values)
        unevaluated = set()
        for p, prop in self.model.properties.items():
            if prop.kind != "final" or (properties is not None and p not in properties):
                continue
            if not self.reads(prop.expr, None) <= covered:
                unevaluated.add(p)
                continue
            self._eval(p, prop.expr, state, covered, None, " at the end", None)
        return unevaluated

    def return_label(self, thread: str, call: str) -> str | None:
        """The model's return step of ``call`` (a harness's call name: ``op2:alloc(4)``, ``recover``)."""
        if call.startswith("op") and ":" in call:
            k, rest = call[2:].split(":", 1)
            return f"op{k}.{rest.split('(')[0]}.return"
        if call == "get_stats":
            return "report"
        return "return"
