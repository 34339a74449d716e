"""Model names a spec or a trace may use, and how to build each."""
from __future__ import annotations

from . import gtt, vram
from .manager import Workload

MODELS = {"vram": vram.make, "gtt": gtt.make}


def build_model(model: str, options: dict, workload: Workload, size: int, name: str | None = None,
                window: int | None = None, retry_count: int | None = None):
    from .run_config import RunConfig
    return RunConfig(model, size, workload, dict(options), window, retry_count).build(name)


def workload_to_dict(w: Workload) -> dict:
    return {"workers": [[" ".join(str(x) for x in op) for op in ops] for ops in w.workers],
            "error_injectors": w.error_injectors, "recoverers": w.recoverers,
            "stats_readers": w.stats_readers, "shutdown": w.shutdown, "worker_loop": w.worker_loop}


def parse_op(text: str):
    parts = text.split()
    if len(parts) == 2 and parts[0] == "alloc" and parts[1].isdigit() and int(parts[1]) > 0:
        return ("alloc", int(parts[1]))
    if parts == ["free"]:
        return ("free",)
    raise ValueError(f"operation {text!r} is not 'alloc N' (N > 0) or 'free'")


def workload_from_dict(d: dict) -> Workload:
    return Workload(workers=[[parse_op(o) for o in ops] for ops in d["workers"]],
                    error_injectors=d.get("error_injectors", 0), recoverers=d.get("recoverers", 0),
                    stats_readers=d.get("stats_readers", 0), shutdown=d.get("shutdown", False),
                    worker_loop=d.get("worker_loop", False))
