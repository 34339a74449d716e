"""Counterexample traces in the Informal Trace Format (ITF, Apalache ADR-015):
``{"#meta": ..., "vars": [...], "states": [...]}``.

The meta block is enough to rebuild the model (model name, options, workload,
allocator size and, for a large allocator, the window the model tracks), so a
trace replays without its spec, and it names, per transition, the thread and
the step taken.
"""
from __future__ import annotations

import json
from pathlib import Path

from ..model.geometry import GeometryError
from ..model.manager import MAX_RETRIES
from ..model.registry import build_model, workload_from_dict, workload_to_dict

FORMAT_URL = "https://apalache-mc.org/docs/adr/015adr-trace.html"
SAFE = (1 << 53) - 1


class TraceError(ValueError):
    def __init__(self, path, field, message):
        super().__init__(f"{path}: {field}: {message}")
        self.path, self.field = path, field


def _itf_value(v):
    if isinstance(v, int) and not isinstance(v, bool) and abs(v) > SAFE:
        return {"#bigint": str(v)}
    return v


def _from_itf(v):
    if isinstance(v, dict) and "#bigint" in v:
        return int(v["#bigint"])
    return v


def to_itf(model, path_states, *, spec: str, source: str, verdict: str, prop: str | None, thread: int | None,
           loop_start: int | None = None, detail: str = "", backend: str = "explorer", extra: dict | None = None) -> dict:
    """``path_states``: [(Move | None, state tuple)] from the initial state."""
    lay = model.layout
    names = lay.var_names()
    transitions = []
    for i, (mv, _) in enumerate(path_states[1:], start=1):
        th = model.threads[mv.thread]
        st = th.program.steps[mv.pc]
        br = st.branches[mv.branch]
        transitions.append({"index": i, "thread": th.name, "step": st.label, "branch": mv.branch,
                            "section": st.section, "code": st.code, "note": br.note})
    states = []
    for i, (_, s) in enumerate(path_states):
        d = lay.as_dict(s)
        states.append({"#meta": {"index": i}, **{k: _itf_value(d[k]) for k in names}})
    prop_obj = model.properties.get(prop) if prop else None
    meta = {
        "format": "ITF", "format-description": FORMAT_URL,
        "source": source, "spec": spec, "backend": backend,
        "model": model.name, "model_kind": getattr(model, "profile", None).name if hasattr(model, "profile") else model.name,
        "options": model.options, "workload": workload_to_dict(model.workload) if hasattr(model, "workload") else None,
        "size": model.geometry.units if hasattr(model, "geometry") else None,
        "verdict": verdict, "property": prop,
        "property_description": prop_obj.description if prop_obj else detail,
        "thread": model.threads[thread].name if thread is not None else None,
        "loop": loop_start, "detail": detail, "transitions": transitions,
    }
    geo = getattr(model, "geometry", None)
    if geo is not None and geo.window is not None:
        meta["window"] = geo.window       # the model tracks only the lowest `window` units of `size`
    prof = getattr(model, "profile", None)
    if prof is not None and prof.retry_count != _document_retry_count(prof.name):
        meta["retry_count"] = prof.retry_count
    if extra:
        meta.update(extra)
    return {"#meta": meta, "vars": names, "states": states}


def write_trace(path: Path, itf: dict) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(itf, indent=1) + "\n")
    return path


def load_trace(path) -> dict:
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise TraceError(path, "file", "no such file") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise TraceError(path, "json", f"not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise TraceError(path, "top level", "an ITF trace is a JSON object")
    for f in ("#meta", "vars", "states"):
        if f not in data:
            raise TraceError(path, f, "missing")
    meta = data["#meta"]
    if not isinstance(meta, dict):
        raise TraceError(path, "#meta", "must be an object")
    for f in ("model_kind", "options", "workload", "size", "verdict", "transitions"):
        if f not in meta:
            raise TraceError(path, f"#meta.{f}", "missing")
    if not isinstance(data["states"], list) or not data["states"]:
        raise TraceError(path, "states", "must be a non-empty list")
    if not isinstance(meta["transitions"], list) or len(meta["transitions"]) != len(data["states"]) - 1:
        raise TraceError(path, "#meta.transitions", "must hold one entry per state after the first")
    for i, st in enumerate(data["states"]):
        if not isinstance(st, dict):
            raise TraceError(path, f"states[{i}]", "must be an object")
        for k, v in list(st.items()):
            st[k] = _from_itf(v)
    return data


def _document_retry_count(kind):
    """PDDGPU_*_ALLOC_RETRY_COUNT as the document sets it (a trace records only another value)."""
    from ..model import gtt, vram
    prof = {"vram": vram.PROFILE, "gtt": gtt.PROFILE}.get(kind)
    return prof.retry_count if prof is not None else None


def model_of_trace(path, data):
    meta = data["#meta"]
    try:
        wl = workload_from_dict(meta["workload"])
    except (KeyError, TypeError, ValueError) as e:
        raise TraceError(path, "#meta.workload", f"invalid ({e})") from None
    window = meta.get("window")
    if window is not None and (not isinstance(window, int) or isinstance(window, bool)):
        raise TraceError(path, "#meta.window", f"must be an integer, not {window!r}")
    retry_count = meta.get("retry_count")
    if retry_count is not None and (not isinstance(retry_count, int) or isinstance(retry_count, bool)
                                    or not 1 <= retry_count <= MAX_RETRIES):
        raise TraceError(path, "#meta.retry_count", f"must be an integer from 1 to {MAX_RETRIES}, not {retry_count!r}")
    try:
        model = build_model(meta["model_kind"], meta["options"], wl, meta["size"], meta.get("model"), window=window,
                            retry_count=retry_count)
    except KeyError as e:
        raise TraceError(path, "#meta.model_kind", f"unknown model {e}") from None
    except GeometryError as e:
        raise TraceError(path, "#meta.size" if e.field == "size" else "#meta.window", str(e)) from None
    except ValueError as e:
        field = getattr(e, "field", None)
        raise TraceError(path, f"#meta.options.{field}" if field else "#meta", str(e)) from None
    if model.layout.var_names() != data["vars"]:
        raise TraceError(path, "vars", f"this trace is not of model '{model.name}' as configured in its #meta "
                                       "(the variables differ)")
    return model


def state_from_dict(model, path, i, d: dict) -> tuple:
    lay = model.layout
    out = []
    for k, decl in enumerate(lay.decls):
        if decl.name not in d:
            raise TraceError(path, f"states[{i}].{decl.name}", "missing")
        v = d[decl.name]
        if decl.kind == "pc":
            t = lay.pc_index.index(k)
            if v not in lay.labels[t]:
                raise TraceError(path, f"states[{i}].{decl.name}", f"unknown step label {v!r}")
            v = lay.labels[t].index(v)
        elif not isinstance(v, int) or isinstance(v, bool):
            raise TraceError(path, f"states[{i}].{decl.name}", f"must be an integer, not {v!r}")
        out.append(v)
    return tuple(out)


def validated_states(path, data, model) -> list[tuple]:
    """Every state as a model tuple and every transition's thread checked."""
    names = {th.name for th in model.threads}
    for i, tr in enumerate(data["#meta"]["transitions"]):
        if not isinstance(tr, dict) or tr.get("thread") not in names:
            raise TraceError(path, f"#meta.transitions[{i}].thread",
                             f"no thread {tr.get('thread') if isinstance(tr, dict) else tr!r} in the model")
        if not isinstance(tr.get("step"), str):
            raise TraceError(path, f"#meta.transitions[{i}].step", "must be a step label")
    return [state_from_dict(model, path, i, d) for i, d in enumerate(data["states"])]
