"""A controlled scheduler for real threads, and the kernel synchronisation
primitives built on it (mutex, spinlock, msleep, wait_event).

Ideas from Loom and Shuttle: the code under test runs on real
``threading.Thread``s, but every point where the model has a step boundary
(each atomic operation, each lock operation, each allocator call, each
sleep, each purely local step the model names) calls :func:`point` with the
model's step label.  Under a :class:`Scheduler` the calling thread parks
there; exactly one thread runs at a time, from one point to its next one,
and the scheduler (a test, a replayed trace, a random or hypothesis-drawn
schedule) chooses which thread runs next among the *enabled* ones (a thread
parked at a lock acquisition is enabled only while the lock is free; one
parked at a wait is enabled only when its condition holds).

Without a scheduler (a thread not spawned by one) :func:`point` returns at
once and the same code runs free at full speed with real blocking locks.

Bugs the kernel's debugging options would report are reported, not hidden:
recursive locking (lockdep: raises :class:`LockError` instead of hanging),
unlock by a non-owner, sleeping while holding a spinlock ("BUG: scheduling
while atomic").  They go to the ``on_bug(property, message)`` callback of
the primitive, named by the model property they break.
"""
from __future__ import annotations

import random
import threading
import time
import traceback
import weakref

__all__ = ["Scheduler", "SchedThread", "SchedulerError", "Deadlock", "LockError", "Aborted", "point",
           "set_prefix", "managed", "current_name", "Mutex", "SpinLock", "msleep", "wait_event",
           "RandomStrategy", "PCTStrategy"]

_tls = threading.local()


class SchedulerError(RuntimeError):
    pass


class Deadlock(SchedulerError):
    pass


class LockError(RuntimeError):
    """A locking bug the kernel would report (lockdep) or hang on."""


class Aborted(BaseException):
    """Raised inside parked threads when a scheduler is closed, to unwind them."""


def point(label: str, ready=None) -> None:
    """A scheduling point before the step named ``label``.  ``ready``: a
    predicate (evaluated while every managed thread is parked) telling
    whether the step can be taken now; None means always."""
    rec = getattr(_tls, "rec", None)
    if rec is not None:
        rec.sched._park(rec, label, ready)


def set_prefix(prefix: str) -> None:
    """Labels of the calling thread's next points are ``prefix + label``
    (a worker's ``op3.alloc.`` in the model)."""
    rec = getattr(_tls, "rec", None)
    if rec is not None:
        rec.prefix = prefix


def managed() -> bool:
    return getattr(_tls, "rec", None) is not None


def current_name() -> str:
    rec = getattr(_tls, "rec", None)
    return rec.name if rec is not None else threading.current_thread().name


class SchedThread:
    """One managed thread.  ``state``: new | parked | running | done."""

    def __init__(self, sched, index, name, fn, args):
        self.sched, self.index, self.name, self.fn, self.args = sched, index, name, fn, args
        self.prefix = ""
        self.label: str | None = None
        self.ready = None
        self.state = "new"
        self.go = False
        self.result = None
        self.error: BaseException | None = None
        self.error_tb = ""
        self.ident: int | None = None
        self.thread: threading.Thread | None = None
        self.steps = 0

    @property
    def done(self) -> bool:
        return self.state == "done"

    def enabled(self) -> bool:
        if self.state != "parked":
            return False
        if self.ready is None:
            return True
        return bool(self.ready())

    def __repr__(self):
        return f"<{self.name} {self.state} at {self.label}>"


class Scheduler:
    """Runs managed threads one step at a time.

    ``spawn`` starts a thread and lets it run to its first point; ``step``
    runs one enabled thread to its next point; ``run`` repeats with a
    strategy until every thread is done.  ``history`` lists the steps taken
    as (thread name, label); ``after_step`` callbacks run after each one
    (checkers look at the shared state there, while everything is parked).
    """

    def __init__(self, step_timeout: float = 10.0):
        self._cv = threading.Condition()
        self.threads: list[SchedThread] = []
        self.history: list[tuple[str, str]] = []
        self.after_step: list = []
        self.step_timeout = step_timeout
        self._aborted = False

    # -- threads --------------------------------------------------------------
    def spawn(self, name: str, fn, *args, prefix: str = "") -> SchedThread:
        t = SchedThread(self, len(self.threads), name, fn, args)
        t.prefix = prefix
        self.threads.append(t)
        real = threading.Thread(target=self._bootstrap, args=(t,), name=name, daemon=True)
        t.thread = real
        with self._cv:
            t.state = "running"
            real.start()
            self._wait_parked(t)
        return t

    def _bootstrap(self, t: SchedThread):
        _tls.rec = t
        t.ident = threading.get_ident()
        try:
            t.result = t.fn(*t.args)
        except Aborted:
            pass
        except BaseException as e:  # noqa: BLE001 - a crashed thread is an observation
            t.error = e
            t.error_tb = traceback.format_exc()
        finally:
            _tls.rec = None
            with self._cv:
                t.state = "done"
                t.label = None
                t.ready = None
                self._cv.notify_all()

    def _park(self, t: SchedThread, label: str, ready):
        with self._cv:
            if self._aborted:
                raise Aborted()
            t.label = t.prefix + label
            t.ready = ready
            t.state = "parked"
            self._cv.notify_all()
            while not t.go:
                self._cv.wait()
                if self._aborted:
                    raise Aborted()
            t.go = False

    def _wait_parked(self, t: SchedThread):
        deadline = time.monotonic() + self.step_timeout
        while t.state == "running":
            left = deadline - time.monotonic()
            if left <= 0:
                raise SchedulerError(f"{t.name} did not reach a scheduling point within {self.step_timeout}s "
                                     "(blocked outside the scheduler?)")
            self._cv.wait(left)

    def by_name(self, name: str) -> SchedThread:
        for t in self.threads:
            if t.name == name:
                return t
        raise KeyError(name)

    def enabled(self) -> list[SchedThread]:
        return [t for t in self.threads if t.enabled()]

    def all_done(self) -> bool:
        return all(t.done for t in self.threads)

    def blocked(self) -> list[SchedThread]:
        return [t for t in self.threads if t.state == "parked" and not t.enabled()]

    # -- running ----------------------------------------------------------------
    def step(self, t) -> str:
        """Run thread ``t`` (object or name) from its point to the next one.
        Returns the label of the step taken."""
        if isinstance(t, str):
            t = self.by_name(t)
        if not t.enabled():
            raise SchedulerError(f"{t.name} is not enabled ({t.state} at {t.label})")
        label = t.label
        with self._cv:
            t.state = "running"
            t.go = True
            self._cv.notify_all()
            self._wait_parked(t)
        t.steps += 1
        self.history.append((t.name, label))
        for cb in self.after_step:
            cb(t, label)
        return label

    def run(self, strategy=None, max_steps: int | None = None) -> str:
        """Step until every thread is done.  Returns "done", "deadlock" or
        "budget".  ``strategy(enabled, scheduler) -> SchedThread``."""
        strategy = strategy or (lambda en, s: en[0])
        n = 0
        while True:
            en = self.enabled()
            if not en:
                return "done" if self.all_done() else "deadlock"
            if max_steps is not None and n >= max_steps:
                return "budget"
            self.step(strategy(en, self))
            n += 1

    def close(self):
        """Unwind every parked thread (they raise Aborted) and join them."""
        with self._cv:
            self._aborted = True
            self._cv.notify_all()
        for t in self.threads:
            if t.thread is not None:
                t.thread.join(timeout=5)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class RandomStrategy:
    """Uniformly random choice among the enabled threads (seeded)."""

    def __init__(self, seed=0):
        self.rng = random.Random(seed)

    def __call__(self, enabled, sched):
        return self.rng.choice(enabled)


class PCTStrategy:
    """Probabilistic concurrency testing (Burckhardt et al.): random thread
    priorities, the highest enabled runs, ``depth - 1`` priority change
    points at random steps."""

    def __init__(self, seed=0, depth=3, expected_steps=200):
        self.rng = random.Random(seed)
        self.prio: dict[str, float] = {}
        self.changes = set(self.rng.randrange(expected_steps) for _ in range(max(depth - 1, 0)))
        self.n = 0

    def __call__(self, enabled, sched):
        for t in enabled:
            self.prio.setdefault(t.name, self.rng.random() + 1)
        best = max(enabled, key=lambda t: self.prio[t.name])
        if self.n in self.changes:
            self.prio[best.name] = self.rng.random() / 10
        self.n += 1
        return best


# -- kernel primitives ------------------------------------------------------------

def _held():
    """The locks the calling thread holds (weakly: a lock of a device that
    is gone no longer counts)."""
    h = getattr(_tls, "held", None)
    if h is None:
        h = _tls.held = weakref.WeakSet()
    return h


def holding_spinlock() -> bool:
    return any(l.kind == "spinlock" for l in _held())


class _KLock:
    kind = "mutex"

    def __init__(self, name: str = "lock", on_bug=None):
        self.name = name
        self._lock = threading.Lock()
        self.owner: int | None = None          # thread ident
        self.owner_name: str | None = None
        self.on_bug = on_bug or (lambda prop, msg: None)

    def held_by_me(self) -> bool:
        return self.owner == threading.get_ident()

    def acquire(self, at: str = "lock") -> None:
        me = threading.get_ident()
        # enabled when free; also when held by the caller, so that the
        # recursive acquisition happens (and is reported) when it is run
        point(at, ready=lambda: self.owner is None or self.owner == me)
        if self.kind == "mutex" and holding_spinlock():
            self.on_bug("no_sleep_under_spinlock",
                        f"BUG: sleeping function called from invalid context: mutex_lock({self.name}) "
                        f"by {current_name()} while holding a spinlock")
        if self.owner == me:
            msg = (f"lockdep: possible recursive locking detected: {current_name()} acquires {self.name} "
                   f"({self.kind}) which it already holds - the thread would deadlock")
            self.on_bug("lock_no_self_reacquire", msg)
            raise LockError(msg)
        self._lock.acquire()
        self.owner = me
        self.owner_name = current_name()
        _held().add(self)

    def release(self, at: str = "unlock") -> None:
        point(at)
        if self.owner != threading.get_ident():
            msg = (f"{self.kind}_unlock({self.name}) by {current_name()}, which does not hold it "
                   f"(owner: {self.owner_name})")
            self.on_bug("lock_released_by_owner", msg)
            raise LockError(msg)
        _held().discard(self)
        self.owner = None
        self.owner_name = None
        self._lock.release()


class Mutex(_KLock):
    kind = "mutex"


class SpinLock(_KLock):
    kind = "spinlock"


def msleep(ms: float, at: str = "msleep", scale: float = 1.0, on_bug=None) -> None:
    """msleep(ms): a scheduling point; really sleeps ``ms * scale`` ms when
    running free (tests use scale 0).  Sleeping with a spinlock held is the
    kernel's "scheduling while atomic" bug."""
    point(at)
    if holding_spinlock() and on_bug is not None:
        on_bug("no_sleep_under_spinlock",
               f"BUG: scheduling while atomic: msleep({ms}) by {current_name()} with a spinlock held")
    if scale > 0 and not managed():
        time.sleep(ms * scale / 1000.0)


def wait_event(cond, at: str, waitq: threading.Condition, poll: float = 0.005) -> None:
    """wait_event(wq, cond): under a scheduler the thread is enabled only
    when ``cond()`` holds; running free it waits on ``waitq`` (woken by
    ``wake_up``, polled as a safety net against lost wake-ups)."""
    point(at, ready=cond)
    if cond():
        return
    with waitq:
        while not cond():
            waitq.wait(poll)


def wake_up(waitq: threading.Condition) -> None:
    with waitq:
        waitq.notify_all()
