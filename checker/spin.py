"""Run SPIN on a model's Promela (``checker/promela.py``): spin -a, the C
compiler, pan; parse pan's verdict and figures.

Each program runs as a child of its own, waited for with ``os.wait4``, so
the peak memory reported is that child's and nothing else's.
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from .promela import property_of, to_promela

DEFAULT_CFLAGS = ("-O2", "-DSAFETY", "-DNOREDUCE")
# -o2: keep variables no property reads.  SPIN drops write-only variables from the state vector by default, a sound
# reduction the explorer does not make: with it the state counts differ (spec 19: 37 against 43)
DEFAULT_SPIN_FLAGS = ("-o2",)


def missing_tools() -> list[str]:
    """The programs a SPIN run needs and this machine lacks."""
    return [t for t in ("spin", "gcc") if shutil.which(t) is None]


@dataclass
class SpinResult:
    verdict: str                     # OK | VIOLATION | DEADLOCK | INCOMPLETE | ERROR
    property: str | None = None
    states: int | None = None
    transitions: int | None = None
    depth: int | None = None
    vector_bytes: int | None = None
    spin_seconds: float = 0.0        # spin -a: Promela to pan.c
    compile_seconds: float = 0.0     # gcc: pan.c to pan
    seconds: float = 0.0             # pan: time to verdict
    cpu_seconds: float = 0.0         # pan's CPU time (on a shared machine, what the wall time hides)
    peak_mb: float = 0.0             # pan's peak resident memory
    compile_peak_mb: float = 0.0
    detail: str = ""
    output: str = field(default="", repr=False)


# defined outside the class: its field 'property' shadows the builtin in the class body (as explorer.Result's)
SpinResult.label = property(lambda r: f"{r.verdict}({r.property})" if r.property and r.verdict != "OK"
                            else r.verdict)


def _run(argv, cwd, time_limit=None) -> tuple[int, str, float, float, bool, float]:
    """(exit status, stdout+stderr, wall seconds, peak MB, timed out, CPU seconds) of one child."""
    with tempfile.TemporaryFile(mode="w+") as log:
        t0 = time.perf_counter()
        p = subprocess.Popen(argv, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = None if time_limit is None else t0 + time_limit
        timed_out = False
        while True:
            pid, status, ru = os.wait4(p.pid, os.WNOHANG)
            if pid:
                break
            if deadline is not None and time.perf_counter() > deadline:
                timed_out = True
                # pan prints its statistics (states so far) on SIGINT; a compiler gets killed after a grace period
                os.killpg(p.pid, signal.SIGINT)
                for _ in range(250):
                    pid, status, ru = os.wait4(p.pid, os.WNOHANG)
                    if pid:
                        break
                    time.sleep(0.02)
                else:
                    os.killpg(p.pid, signal.SIGKILL)
                    pid, status, ru = os.wait4(p.pid, 0)
                break
            time.sleep(0.02)
        p.returncode = os.waitstatus_to_exitcode(status)    # reaped here, not by Popen
        wall = time.perf_counter() - t0
        log.seek(0)
        return p.returncode, log.read(), wall, ru.ru_maxrss / 1024.0, timed_out, ru.ru_utime + ru.ru_stime


def _int(pattern, text):
    m = re.search(pattern, text)
    return int(m.group(1)) if m else None


def run_pml(text: str, model=None, *, workdir: str | Path | None = None, cflags=DEFAULT_CFLAGS,
            spin_flags=DEFAULT_SPIN_FLAGS,
            depth: int = 1_000_000, hash_bits: int | None = None, memlim_mb: int | None = None,
            time_limit: float | None = None, bounds=()) -> SpinResult:
    """Verify Promela ``text`` with SPIN; ``model`` names the violated property, ``bounds`` the properties whose
    violation means INCOMPLETE (a bound of the model, as the explorer reports it)."""
    own = workdir is None
    wd = Path(tempfile.mkdtemp(prefix="pddgpu-spin-") if own else workdir)
    wd.mkdir(parents=True, exist_ok=True)
    try:
        (wd / "model.pml").write_text(text)
        rc, out, t_spin, *_ = _run(["spin", *spin_flags, "-a", "model.pml"], wd)
        if rc != 0:
            return SpinResult("ERROR", detail=f"spin -a failed: {' '.join(out.split())[:300]}", output=out,
                              spin_seconds=t_spin)
        flags = list(cflags) + ([f"-DMEMLIM={memlim_mb}"] if memlim_mb else [])
        # pan's default state vector is 1024 bytes: a model of many workers needs more (at most 4 bytes a
        # variable, a few a process)
        need = 4 * len(re.findall(r"^(?:byte|short|int) ", text, re.M)) + 16 * text.count("active proctype") + 64
        if need > 1024 and not any(f.startswith("-DVECTORSZ") for f in flags):
            flags.append(f"-DVECTORSZ={need}")
        rc, cout, t_cc, cc_mb, *_ = _run(["gcc", *flags, "-o", "pan", "pan.c"], wd)
        if rc != 0:
            return SpinResult("ERROR", detail=f"gcc failed: {' '.join(cout.split())[:300]}", output=cout,
                              spin_seconds=t_spin, compile_seconds=t_cc)
        argv = ["./pan", f"-m{depth}"] + ([f"-w{hash_bits}"] if hash_bits else [])
        rc, out, wall, peak, timed_out, cpu = _run(argv, wd, time_limit)
        res = SpinResult("OK", spin_seconds=round(t_spin, 3), compile_seconds=round(t_cc, 3), seconds=round(wall, 3),
                         cpu_seconds=round(cpu, 3), peak_mb=round(peak, 1), compile_peak_mb=round(cc_mb, 1), output=out)
        res.states = _int(r"(\d+) states, stored", out)
        res.transitions = _int(r"(\d+) transitions", out)
        res.depth = _int(r"depth reached (\d+)", out)
        res.vector_bytes = _int(r"State-vector (\d+) byte", out)
        errors = _int(r"errors: (\d+)", out)
        if timed_out:
            res.verdict, res.detail = "INCOMPLETE", f"time limit {time_limit:.0f} s reached"
        elif re.search(r"pan:\d+: assertion violated", out):
            line = next(l for l in out.splitlines() if "assertion violated" in l)
            res.verdict = "VIOLATION"
            res.property = property_of(line, model) if model is not None else None
            if res.property in bounds:
                res.verdict, res.detail = "INCOMPLETE", f"bound {res.property} of the model reached"
        elif re.search(r"pan:\d+: invalid end state", out):
            res.verdict, res.property = "DEADLOCK", "deadlock"
        elif "-DMEMLIM bound" in out or "out of memory" in out:
            res.verdict, res.detail = "INCOMPLETE", f"memory limit {memlim_mb} MB reached"
        elif "max search depth too small" in out:
            res.verdict, res.detail = "INCOMPLETE", f"search depth {depth} too small"
        elif rc != 0 or errors is None:
            res.verdict, res.detail = "ERROR", f"pan exited {rc}: {' '.join(out.split())[-300:]}"
        elif errors:
            res.verdict, res.detail = "ERROR", f"pan reports {errors} error(s) this parser does not know"
        return res
    finally:
        if own:
            shutil.rmtree(wd, ignore_errors=True)


def run_model(model, properties=None, **kw) -> SpinResult:
    """SPIN on ``model`` (a ``model.program.Model``) with ``properties`` (default: all)."""
    return run_pml(to_promela(model, properties), model, bounds=tuple(model.bounds), **kw)
