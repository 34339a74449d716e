"""A small builder for thread programs, with locks and sleeps as first-class
steps so that their rules (no re-acquire by the owner, release only by the
owner, no sleep while a spinlock is held) are attached once, here."""
from __future__ import annotations

from .expr import TRUE, Const, Expr, SelfId, Var, and_, eq, lift, ne, not_
from .program import Branch, Program, Step, VarDecl

# Property names owned by the lock discipline.
LOCK_NO_REACQUIRE = "lock_no_self_reacquire"
LOCK_OWNER_RELEASE = "lock_released_by_owner"
NO_SLEEP_UNDER_SPINLOCK = "no_sleep_under_spinlock"


def owner_value() -> Expr:
    """Lock words hold owner thread index + 1; 0 means free."""
    return SelfId() + 1


class ProgramBuilder:
    def __init__(self, role: str, spinlocks=()):
        self.role = role
        self.spinlocks = tuple(spinlocks)
        self.steps: list[Step] = []
        self.locals: list[VarDecl] = []
        self._local_names: set[str] = set()

    def local(self, name: str, bits: int = 64, init: int = 0, kind: str = "int", doc: str = ""):
        if name not in self._local_names:
            self._local_names.add(name)
            self.locals.append(VarDecl(name, bits, init, kind, doc))

    def branch(self, label, cases, *, section="", code="", kind="plain", call=None, asserts=(), lock=None):
        """``cases``: iterable of (guard, updates, goto[, note])."""
        brs = []
        for case in cases:
            guard, updates, goto = case[:3]
            note = case[3] if len(case) > 3 else ""
            brs.append(Branch(lift(guard), tuple((t, lift(v)) for t, v in updates), goto, note))
        self.steps.append(Step(label, tuple(brs), section, code, kind, call, tuple(asserts), lock))
        return label

    def go(self, label, goto, updates=(), **kw):
        return self.branch(label, [(TRUE, updates, goto)], **kw)

    def if_(self, label, cond, then, other, then_updates=(), other_updates=(), **kw):
        return self.branch(label, [(cond, then_updates, then), (not_(cond), other_updates, other)], **kw)

    def _no_spinlock_held(self) -> Expr:
        return and_(*(ne(Var(l), owner_value()) for l in self.spinlocks))

    def acquire(self, label, lock, goto, kind_of_lock="mutex", **kw):
        asserts = [(LOCK_NO_REACQUIRE, ne(Var(lock), owner_value()))]
        if kind_of_lock == "mutex" and self.spinlocks:
            # mutex_lock may sleep: illegal in atomic context.
            asserts.append((NO_SLEEP_UNDER_SPINLOCK, self._no_spinlock_held()))
        asserts += list(kw.pop("asserts", ()))
        fn = "mutex_lock" if kind_of_lock == "mutex" else "spin_lock"
        kw.setdefault("code", f"{fn}(&mgr->lock);")
        return self.branch(label, [(eq(Var(lock), 0), [(Var(lock), owner_value())], goto)],
                           kind="acquire", asserts=asserts, lock=lock, **kw)

    def release(self, label, lock, goto, kind_of_lock="mutex", updates=(), **kw):
        asserts = [(LOCK_OWNER_RELEASE, eq(Var(lock), owner_value()))] + list(kw.pop("asserts", ()))
        fn = "mutex_unlock" if kind_of_lock == "mutex" else "spin_unlock"
        kw.setdefault("code", f"{fn}(&mgr->lock);")
        return self.branch(label, [(TRUE, [(Var(lock), Const(0)), *updates], goto)],
                           kind="release", asserts=asserts, lock=lock, **kw)

    def sleep(self, label, goto, updates=(), **kw):
        asserts = [(NO_SLEEP_UNDER_SPINLOCK, self._no_spinlock_held())] + list(kw.pop("asserts", ()))
        return self.branch(label, [(TRUE, updates, goto)], kind="sleep", asserts=asserts, **kw)

    def build(self) -> Program:
        return Program(self.role, tuple(self.steps), tuple(self.locals))
