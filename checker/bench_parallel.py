"""The native back end's parallel search at 1 and 2 threads on the bench workloads (checker/bench.py's
N-worker fixed VRAM and GTT models), each configuration run alternately so the machine's load falls on both;
the figures of docs/PARALLEL.md.  ``python -m pddgpu_verify.checker.bench_parallel [--repeat N] [--big]``."""
from __future__ import annotations

import argparse
import json
import os

from .bench import bench_model
from .native import explore_native

CASES = [("vram", 3, True), ("vram", 3, False), ("gtt", 3, True), ("gtt", 3, False),
         ("vram", 4, True), ("gtt", 4, True)]
BIG = [("vram", 4, False), ("gtt", 4, False)]


def run(cases, threads=(1, 2), repeat=2):
    rows = []
    for model_name, n, sym in cases:
        m = bench_model(model_name, n)
        explore_native(m, symmetry=sym, max_states=10)         # the C build, outside the measurement
        for _ in range(repeat):
            for t in threads:
                load = os.getloadavg()[0]
                r = explore_native(m, symmetry=sym, workers=t)
                row = {"model": model_name, "workers": n, "symmetry": sym, "threads": t, "verdict": r.verdict,
                       "states": r.stats["states"], "transitions": r.stats["transitions"],
                       "wall": r.stats["search_seconds"], "cpu": r.stats["search_cpu_seconds"],
                       "load": round(load, 2), "expanded": r.stats.get("expanded_per_thread")}
                rows.append(row)
                print(json.dumps(row), flush=True)
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--big", action="store_true", help="also 4 workers without symmetry (about 11 M states)")
    a = ap.parse_args()
    run(CASES + (BIG if a.big else []), repeat=a.repeat)


if __name__ == "__main__":
    main()
