"""Progress of the long z3 runs (``prove``, ``bmc``, ``findings``) on stderr, in the style of the explorer's
``Progress``: a live line on a terminal, one line per 10 s in a log.

A z3 query can run for minutes inside one ``check()`` with no Python code running, so the line is written by
a daemon thread from what the run last reported (its phase, the solver calls made, the properties settled):
the run only sets attributes.  Nothing here reads or touches a solver, and nothing goes to stdout, so a
verdict, a resource count and the printed result are the same with progress on or off.

The run reaches its ``Progress`` through the ``Budget`` every query already goes through
(``Budget.progress``; ``note_phase`` and ``note_settled`` for what is not a query).
"""
from __future__ import annotations

import shutil
import sys
import threading
import time


TTY_INTERVAL, LOG_INTERVAL = 1.0, 10.0     # seconds between lines: a live line on a terminal, a log's pace


class Progress:
    def __init__(self, enabled: bool, name: str, stream=None, interval: float | None = None):
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.enabled = enabled
        self.name = name
        # a live line on a terminal; in logs (CI) one line per 10 s is enough
        self.interval = interval if interval is not None else (TTY_INTERVAL if self.tty else LOG_INTERVAL)
        self.t0 = time.perf_counter()
        self.phase = "starting"
        self.context = ""            # what the phase belongs to (findings: the spec, and how many are done)
        self.calls = 0
        self.settled: tuple[int, int, str] | None = None     # (done, total, what)
        self.shown = False
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = None

    # what the run reports --------------------------------------------------------------------------------
    def query(self, what: str):
        self.calls += 1
        self.phase = what

    def set_phase(self, text: str):
        self.phase = text

    def settle(self, done: int, total: int, what: str = "properties settled"):
        self.settled = (done, total, what)

    def within(self, context: str):
        """A new part of the run: its name, and none of the last part's counts of settled properties."""
        self.context, self.settled, self.phase = context, None, "starting"

    # the line --------------------------------------------------------------------------------------------
    def line(self) -> str:
        parts = [f"{self.name}: " + (f"{self.context}: " if self.context else "") + self.phase]
        if self.settled is not None:
            done, total, what = self.settled
            parts.append(f"{done}/{total} {what}")
        parts.append(f"{self.calls:,} solver calls")
        parts.append(f"{time.perf_counter() - self.t0:.0f}s")
        return "  " + ", ".join(parts)

    def _write(self):
        text = self.line()
        with self._lock:
            if self.tty:
                width = shutil.get_terminal_size((100, 20)).columns
                # cut to the terminal (a wrapped line cannot be overwritten), erase what a longer line left
                self.stream.write("\r" + text[:max(width - 1, 10)] + "\x1b[K")
            else:
                self.stream.write(text + "\n")
            self.stream.flush()
            self.shown = True

    def _run(self):
        while not self._stop.wait(self.interval):
            self._write()

    def clear(self):
        """Erase the live line before the run prints a line of its own on the same terminal."""
        if self.enabled and self.tty and self.shown:
            with self._lock:
                self.stream.write("\r\x1b[K")
                self.stream.flush()

    def start(self) -> "Progress":
        if self.enabled and self._thread is None:
            self._thread = threading.Thread(target=self._run, name="pddgpu-verify progress", daemon=True)
            self._thread.start()
        return self

    def close(self):
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self.clear()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()


def note_phase(budget, text: str):
    p = getattr(budget, "progress", None)
    if p is not None:
        p.set_phase(text)


def note_settled(budget, done: int, total: int, what: str = "properties settled"):
    p = getattr(budget, "progress", None)
    if p is not None:
        p.settle(done, total, what)
