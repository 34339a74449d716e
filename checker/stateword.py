"""The design document's claims about the manager state word, checked as z3
theorems over an 8-bit word (the flags are 0x01..0x08; ``atomic_t`` is wider,
but no operation touches the upper bits, so 8 bits decide every claim).

Operations, exactly as the document writes them:

* ``set_error``   (2.1): ``atomic_or(ERROR, &state)``
* ``clear_error`` (2.2): ``atomic_and(~ERROR, &state)``
* ``set_ready``   (5.1, recover): ``atomic_set(&state, READY)`` -- a plain store
* ``shutdown``    (implied by READY -> SHUTDOWN): ``atomic_or(SHUTDOWN, &state)``
* ``is_ready``    (1.2): ``(state & READY) && !(state & SHUTDOWN)``

Documented transitions (并发保护机制 2.2): INITIALIZING -> READY, READY -> ERROR,
ERROR -> READY, READY -> SHUTDOWN.  A transition ``A -> B`` is *implemented*
by an operation when, applied to the word whose only flag is A, it yields the
word whose only flag is B; it is *implemented as a flag* when the result has B
set and A cleared (other bits kept).  Each claim is decided by z3 with a
witness word when it fails or when the question is existential.

``check_all()`` returns the structured results; ``stateword_report()`` renders
them as a markdown section for docs/FINDINGS.md.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import z3

INITIALIZING, READY, SHUTDOWN, ERROR = 0x01, 0x02, 0x04, 0x08
FLAGS = {"INITIALIZING": INITIALIZING, "READY": READY, "SHUTDOWN": SHUTDOWN, "ERROR": ERROR}
W = 8


def _v(x):
    return z3.BitVecVal(x, W)


OPS = {
    "atomic_or(ERROR)": lambda s: s | _v(ERROR),
    "atomic_and(~ERROR)": lambda s: s & ~_v(ERROR),
    "atomic_set(READY)": lambda s: _v(READY),
    "atomic_or(SHUTDOWN)": lambda s: s | _v(SHUTDOWN),
}
OP_SOURCE = {
    "atomic_or(ERROR)": "2.1 pddgpu_*_mgr_set_error",
    "atomic_and(~ERROR)": "2.2 pddgpu_*_mgr_clear_error",
    "atomic_set(READY)": "5.1 recover: atomic_set(&mgr->state, STATE_READY)",
    "atomic_or(SHUTDOWN)": "READY -> SHUTDOWN (the shutdown path is not shown)",
}
TRANSITIONS = [("INITIALIZING", "READY"), ("READY", "ERROR"), ("ERROR", "READY"), ("READY", "SHUTDOWN")]


def is_ready(s):
    return z3.And((s & _v(READY)) != 0, (s & _v(SHUTDOWN)) == 0)


def flags_of(x: int) -> str:
    names = [n for n, b in FLAGS.items() if x & b]
    other = x & ~0x0F
    if other:
        names.append(hex(other))
    return "|".join(names) if names else "0"


@dataclass
class Claim:
    name: str
    section: str
    statement: str
    holds: bool
    witness: dict = field(default_factory=dict)    # flag words (as names) that decide it
    note: str = ""


def _prove(formula):
    """(True, None) if valid, else (False, counterexample model)."""
    s = z3.Solver()
    s.add(z3.Not(formula))
    r = s.check()
    if r == z3.unsat:
        return True, None
    return False, s.model()


def _find(formula):
    s = z3.Solver()
    s.add(formula)
    if s.check() == z3.sat:
        return s.model()
    return None


def transition_table() -> list[Claim]:
    """Which operation implements which documented transition."""
    out = []
    for a, b in TRANSITIONS:
        exact = [op for op, f in OPS.items() if z3.simplify(f(_v(FLAGS[a]))).as_long() == FLAGS[b]]
        s = z3.BitVec("s", W)
        as_flag = []
        for op, f in OPS.items():
            ok, _ = _prove(z3.Implies((s & _v(FLAGS[a])) != 0,
                                      z3.And((f(s) & _v(FLAGS[b])) != 0, (f(s) & _v(FLAGS[a])) == 0)))
            if ok:
                as_flag.append(op)
        results = {op: flags_of(z3.simplify(f(_v(FLAGS[a]))).as_long()) for op, f in OPS.items()}
        holds = bool(exact)
        note = (f"implemented exactly by {', '.join(exact)}" if exact else
                "no documented operation turns the word " + a + " into " + b + "; from " + a + " the operations give "
                + ", ".join(f"{op} -> {r}" for op, r in results.items()))
        if as_flag:
            note += f"; for every word with {a} set, {', '.join(as_flag)} sets {b} and clears {a}"
        else:
            note += f"; no operation both sets {b} and clears {a} for every word with {a} set"
        out.append(Claim(f"transition {a} -> {b}", "并发保护机制 2.2", f"{a} -> {b} is implemented by an operation",
                         holds, {"from": a, **results}, note))
    return out


def check_all() -> list[Claim]:
    s = z3.BitVec("s", W)
    out = transition_table()

    # is_ready while ERROR is set
    m = _find(z3.And(is_ready(s), (s & _v(ERROR)) != 0))
    wit = m.eval(s).as_long() if m is not None else None
    reach = z3.simplify(OPS["atomic_or(ERROR)"](_v(READY))).as_long()
    out.append(Claim("is_ready excludes ERROR", "1.2 / 2.1", "is_ready(state) implies !(state & ERROR)",
                     m is None, {"word": flags_of(wit)} if wit is not None else {},
                     f"is_ready({flags_of(wit)}) is true; set_error on READY gives {flags_of(reach)}, on which "
                     f"is_ready is {'true' if z3.is_true(z3.simplify(is_ready(_v(reach)))) else 'false'}: "
                     "allocations keep being served in the error state" if m is not None else ""))

    # is_ready excludes INITIALIZING
    m = _find(z3.And(is_ready(s), (s & _v(INITIALIZING)) != 0))
    out.append(Claim("is_ready excludes INITIALIZING", "1.2", "is_ready(state) implies !(state & INITIALIZING)",
                     m is None, {"word": flags_of(m.eval(s).as_long())} if m is not None else {},
                     "is_ready tests READY and SHUTDOWN only" if m is not None else ""))

    # the plain store in recover erases SHUTDOWN
    after = OPS["atomic_set(READY)"](s)
    ok, cm = _prove(z3.Implies((s & _v(SHUTDOWN)) != 0, (after & _v(SHUTDOWN)) != 0))
    w = cm.eval(s, model_completion=True).as_long() if cm is not None else None
    out.append(Claim("recover keeps SHUTDOWN", "5.1", "atomic_set(READY) never clears SHUTDOWN", ok,
                     {"before": flags_of(w), "after": flags_of(READY)} if w is not None else {},
                     f"recover's plain store turns {flags_of(w)} into READY: SHUTDOWN is erased and is_ready "
                     "becomes true again (recover's device check does not look at the manager word)" if not ok else ""))

    # SHUTDOWN sticky under every other operation
    sticky = [op for op, f in OPS.items() if _prove(z3.Implies((s & _v(SHUTDOWN)) != 0, (f(s) & _v(SHUTDOWN)) != 0))[0]]
    out.append(Claim("SHUTDOWN sticky", "2.2", "every operation keeps SHUTDOWN once set",
                     len(sticky) == len(OPS), {"keeps": ", ".join(sticky)},
                     "all but atomic_set(READY) keep it" if len(sticky) == len(OPS) - 1 else ""))

    # INITIALIZING is ever cleared?
    clears = [op for op, f in OPS.items() if _find(z3.And((s & _v(INITIALIZING)) != 0,
                                                          (f(s) & _v(INITIALIZING)) == 0)) is not None]
    out.append(Claim("INITIALIZING is cleared", "1.1 / 2.2", "some operation clears INITIALIZING", bool(clears),
                     {"clears": ", ".join(clears) or "-"},
                     ("only the plain store atomic_set(READY) of recover clears it; the document shows no init path "
                      "that does, so a manager that starts INITIALIZING|... keeps the flag through every bit "
                      "operation") if clears == ["atomic_set(READY)"] else ""))

    # ERROR is cleared without READY being restored
    m = _find(z3.And((s & _v(ERROR)) != 0, (s & _v(READY)) == 0,
                     (OPS["atomic_and(~ERROR)"](s) & _v(READY)) == 0))
    out.append(Claim("clear_error restores READY", "2.2 / 5.1", "atomic_and(~ERROR) on an ERROR word yields READY",
                     m is None, {"before": flags_of(m.eval(s).as_long()),
                                 "after": flags_of(m.eval(OPS['atomic_and(~ERROR)'](s)).as_long())} if m is not None else {},
                     "clear_error only removes ERROR; ERROR -> READY needs recover's later atomic_set(READY), and "
                     "between the two the word is neither ERROR nor READY" if m is not None else ""))

    # two separate reads in is_ready: linearizable under the documented operations?
    s1, s2 = z3.BitVec("s1", W), z3.BitVec("s2", W)
    k = 3
    mids = [z3.BitVec(f"m{i}", W) for i in range(k + 1)]
    choice = [z3.Int(f"op{i}") for i in range(k)]
    ops = list(OPS.values())
    chain = [mids[0] == s1]
    for i in range(k):
        chain.append(z3.And(choice[i] >= 0, choice[i] <= len(ops)))
        step = mids[i]
        for j, f in enumerate(ops):
            step = z3.If(choice[i] == j, f(mids[i]), step)     # choice == len(ops): no operation
        chain.append(mids[i + 1] == step)
    chain.append(s2 == mids[k])
    never_ready = z3.And([z3.Not(is_ready(x)) for x in mids])
    m = _find(z3.And(chain + [(s1 & _v(READY)) != 0, (s2 & _v(SHUTDOWN)) == 0, never_ready]))
    out.append(Claim("two-read is_ready is linearizable", "1.2",
                     f"if the first read sees READY and the second sees no SHUTDOWN, with up to {k} documented "
                     "operations between them, the word was ready at some instant", m is None,
                     {"first": flags_of(m.eval(s1).as_long()), "second": flags_of(m.eval(s2).as_long())} if m else {},
                     "" if m is None else "a true answer at no instant"))
    return out


def stateword_report() -> str:
    """Markdown section for docs/FINDINGS.md."""
    lines = ["## The state word (z3 theorems)", "",
             "Checked by `checker/stateword.py` over an 8-bit word with the operations exactly as the document "
             "writes them: set_error = `atomic_or(ERROR)`, clear_error = `atomic_and(~ERROR)`, recover's "
             "`atomic_set(READY)`, shutdown = `atomic_or(SHUTDOWN)`; is_ready = `(s & READY) && !(s & SHUTDOWN)`.",
             "", "| claim | section | result | witness | detail |", "|---|---|---|---|---|"]
    for c in check_all():
        wit = ", ".join(f"{k}: {v}" for k, v in c.witness.items()) if c.witness else "-"
        cell = lambda x: str(x).replace("|", "\\|")  # noqa: E731
        lines.append(f"| {cell(c.statement)} | {c.section} | {'holds' if c.holds else '**fails**'} | {cell(wit)} | "
                     f"{cell(c.note or '-')} |")
    lines += ["", "What the operations really implement of the documented transitions:", ""]
    for c in transition_table():
        lines.append(f"- **{c.name}**: {c.note}.")
    return "\n".join(lines) + "\n"
