"""Counterexample traces in the Informal Trace Format (ITF, Apalache ADR-015):
``{"#meta": ..., "vars": [...], "states": [...]}``.

The meta block is enough to rebuild the model (model name, options, workload,
allocator size and, for a large allocator, the window the model tracks), so a
trace replays without its spec, and it names, per transition, the thread and
the step taken.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

from ..model.geometry import GeometryError
from ..model.options import OptionError
from ..model.registry import parse_op
from ..model.run_config import RunConfigError, config_of_model, load_run_config

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


_BIGINT = re.compile(r"-?[0-9]{1,40}")
VERDICTS = ("VIOLATION", "DEADLOCK", "LIVENESS", "NOT INDUCTIVE", "OK")   # what a written trace shows (OK: a
# schedule, such as the conformance tests write, with no violation to confirm)


def _from_itf(v, path=None, field="value"):
    """An ITF value of this project's traces: an integer (``{"#bigint": "digits"}`` beyond 2^53) or a step label."""
    if isinstance(v, dict):
        b = v.get("#bigint")
        if len(v) != 1 or not isinstance(b, str) or not _BIGINT.fullmatch(b):
            raise TraceError(path, field, f"an ITF big integer is {{\"#bigint\": \"<decimal digits>\"}}, not {_short(v)}")
        return int(b)
    return v


def _short(v) -> str:
    r = repr(v)
    return r if len(r) <= 60 else r[:57] + "..."


def _int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


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
    # the run configuration (model_kind, size, options, workload; window and retry_count where they matter)
    config = config_of_model(model).to_meta() if hasattr(model, "profile") else {
        "model_kind": model.name, "options": model.options, "workload": None, "size": None}
    meta = {
        "format": "ITF", "format-description": FORMAT_URL,
        "source": source, "spec": spec, "backend": backend,
        "model": model.name, "model_kind": config.pop("model_kind"), "options": config.pop("options"),
        "workload": config.pop("workload"), "size": config.pop("size"),
        "verdict": verdict, "property": prop,
        "property_description": prop_obj.description if prop_obj else detail,
        "thread": model.threads[thread].name if thread is not None else None,
        "loop": loop_start, "detail": detail, "transitions": transitions,
    }
    meta.update(config)
    if extra:
        meta.update(extra)
    itf = {"#meta": meta, "vars": names, "states": states}
    if loop_start is not None:
        # the ITF specification's place for a lasso: the index of the state the last one returns to (#meta.loop
        # keeps it too, for this tool's older readers)
        itf["loop"] = loop_start
    return itf


def write_trace(path: Path, itf: dict) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(itf, indent=1) + "\n")
    return path


MAX_STATES = 100_000         # states of one trace (each replayed step by step; the shipped ones have < 100)


def load_trace(path) -> dict:
    """The trace at ``path``, its structure and every field's type checked (each error one line naming the
    field); ``#bigint`` values decoded; the lasso's start (top-level ``loop``, or ``#meta.loop`` of older
    traces) in both places."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise TraceError(path, "file", "no such file") from None
    except IsADirectoryError:
        raise TraceError(path, "file", "is a directory, not a trace file") from None
    except OSError as e:
        raise TraceError(path, "file", f"cannot be read ({e.strerror or e})") from None
    except RecursionError:
        raise TraceError(path, "json", "nested too deeply to be a trace") from None
    except (ValueError, UnicodeDecodeError) as e:       # JSONDecodeError, and integers of over 4300 digits
        raise TraceError(path, "json", f"not valid JSON ({' '.join(str(e).split())})") from None
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
    if not isinstance(data["vars"], list) or not all(isinstance(v, str) for v in data["vars"]):
        raise TraceError(path, "vars", "must be a list of variable names")
    if not isinstance(data["states"], list) or not data["states"]:
        raise TraceError(path, "states", "must be a non-empty list")
    if len(data["states"]) > MAX_STATES:
        raise TraceError(path, "states", f"at most {MAX_STATES:,} states, not {len(data['states']):,}")
    _check_meta(path, meta)
    if not isinstance(meta["transitions"], list) or len(meta["transitions"]) != len(data["states"]) - 1:
        raise TraceError(path, "#meta.transitions", "must hold one entry per state after the first")
    for i, tr in enumerate(meta["transitions"]):
        where = f"#meta.transitions[{i}]"
        if not isinstance(tr, dict):
            raise TraceError(path, where, f"must be an object {{\"thread\": ..., \"step\": ...}}, not {_short(tr)}")
        for k in ("thread", "step"):
            if not isinstance(tr.get(k), str):
                raise TraceError(path, f"{where}.{k}", f"must be a string, not {_short(tr.get(k))}")
        for k in ("section", "code", "note"):
            if tr.get(k) is not None and not isinstance(tr[k], str):
                raise TraceError(path, f"{where}.{k}", f"must be a string, not {_short(tr[k])}")
    for i, st in enumerate(data["states"]):
        if not isinstance(st, dict):
            raise TraceError(path, f"states[{i}]", "must be an object")
        for k, v in list(st.items()):
            if k != "#meta":
                st[k] = _from_itf(v, path, f"states[{i}].{k}")
    loop = data.get("loop", meta.get("loop"))
    if "loop" in data and meta.get("loop") is not None and meta["loop"] != data["loop"]:
        raise TraceError(path, "loop", f"{_short(data['loop'])} differs from #meta.loop {_short(meta['loop'])}")
    if loop is not None and (not _int(loop) or not 0 <= loop < len(data["states"])):
        raise TraceError(path, "loop", f"must be the index of a state (0 to {len(data['states']) - 1}), "
                                       f"not {_short(loop)}")
    data["loop"] = meta["loop"] = loop
    return data


def _check_meta(path, meta: dict) -> None:
    """The types of the #meta fields a replay reads, and their bounds, before any model is built."""
    from .spec import MAX_OPS, MAX_ROLE, MAX_TOTAL_OPS, MAX_WORKERS
    from ..model.run_config import META_FIELDS, RunConfigError, check_fields

    def bad(field, message):
        raise TraceError(path, f"#meta.{field}", message)
    kind = meta["model_kind"]
    size = meta["size"] = _from_itf(meta["size"], path, "#meta.size")
    if not isinstance(meta["options"], dict):
        bad("options", f"must be an object of option names and values, not {_short(meta['options'])}")
    try:
        check_fields(kind, size, meta.get("window"), meta.get("retry_count"), fields=META_FIELDS)
    except RunConfigError as e:
        raise TraceError(path, e.field, str(e)) from None
    if meta.get("loop") is not None and not _int(meta["loop"]):
        bad("loop", f"must be an integer, not {_short(meta['loop'])}")
    if not isinstance(meta["verdict"], str) or meta["verdict"] not in VERDICTS:
        bad("verdict", f"must be one of {', '.join(VERDICTS)}, not {_short(meta['verdict'])}")
    for f in ("property", "thread", "spec", "source", "backend", "model", "property_description", "detail"):
        if meta.get(f) is not None and not isinstance(meta[f], str):
            bad(f, f"must be a string, not {_short(meta[f])}")
    w = meta["workload"]
    if not isinstance(w, dict):
        bad("workload", f"must be an object, not {_short(w)}")
    for k in w:
        if k not in ("workers", "error_injectors", "recoverers", "stats_readers", "shutdown", "worker_loop"):
            bad(f"workload.{_short(k)}", "unknown field")
    workers = w.get("workers")
    if not isinstance(workers, list) or not 1 <= len(workers) <= MAX_WORKERS:
        bad("workload.workers", f"must be a list of 1 to {MAX_WORKERS} workers' operation lists, not "
                                f"{_short(workers) if not isinstance(workers, list) else f'{len(workers)} workers'}")
    total = 0
    for i, ops in enumerate(workers):
        if not isinstance(ops, list) or not 1 <= len(ops) <= MAX_OPS:
            bad(f"workload.workers[{i}]", f"must be a list of 1 to {MAX_OPS} operations, not "
                                          f"{_short(ops) if not isinstance(ops, list) else len(ops)}")
        total += len(ops)
        for j, op in enumerate(ops):
            if not isinstance(op, str):
                bad(f"workload.workers[{i}][{j}]", f"must be a string 'alloc N' or 'free', not {_short(op)}")
            try:
                parsed = parse_op(op)
            except ValueError as e:
                bad(f"workload.workers[{i}][{j}]", str(e))
            if parsed[0] == "alloc" and parsed[1] > size:
                bad(f"workload.workers[{i}][{j}]", f"alloc {parsed[1]} is larger than the allocator ({size})")
    if total > MAX_TOTAL_OPS:
        bad("workload.workers", f"at most {MAX_TOTAL_OPS} operations over all workers, not {total}")
    for k in ("error_injectors", "recoverers", "stats_readers"):
        v = w.get(k, 0)
        if not _int(v) or not 0 <= v <= MAX_ROLE:
            bad(f"workload.{k}", f"must be an integer from 0 to {MAX_ROLE}, not {_short(v)}")
    for k in ("shutdown", "worker_loop"):
        if not isinstance(w.get(k, False), bool):
            bad(f"workload.{k}", f"must be true or false, not {_short(w[k])}")


def model_of_trace(path, data):
    meta = data["#meta"]
    try:
        model = load_run_config(meta).build(meta.get("model"))
    except RunConfigError as e:
        raise TraceError(path, e.field, str(e)) from None
    except KeyError as e:
        raise TraceError(path, "#meta.model_kind", f"unknown model {e}") from None
    except GeometryError as e:
        raise TraceError(path, "#meta.size" if e.field == "size" else "#meta.window", str(e)) from None
    except OptionError as e:
        raise TraceError(path, f"#meta.options.{_short(e.field) if not isinstance(e.field, str) else e.field}",
                         str(e)) from None
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
    """Every state as a model tuple, every transition's thread and the verdict's property and thread checked."""
    meta = data["#meta"]
    names = {th.name for th in model.threads}
    for i, tr in enumerate(meta["transitions"]):
        if not isinstance(tr, dict) or tr.get("thread") not in names:
            raise TraceError(path, f"#meta.transitions[{i}].thread",
                             f"no thread {_short(tr.get('thread') if isinstance(tr, dict) else tr)} in the model")
        if not isinstance(tr.get("step"), str):
            raise TraceError(path, f"#meta.transitions[{i}].step", "must be a step label")
    verdict, prop = meta["verdict"], meta.get("property")
    lemma_cti = verdict == "NOT INDUCTIVE" and prop is None and isinstance(meta.get("lemma"), str)
    if verdict in ("VIOLATION", "NOT INDUCTIVE") and prop not in model.properties and not lemma_cti:
        raise TraceError(path, "#meta.property", f"a {verdict} trace names a property of the model, not "
                                                 f"{_short(prop)}")
    if verdict == "DEADLOCK" and prop not in (None, "deadlock"):
        raise TraceError(path, "#meta.property", f"a DEADLOCK trace's property is deadlock, not {_short(prop)}")
    if verdict == "LIVENESS":
        if prop not in (None, "calls_return"):
            raise TraceError(path, "#meta.property", f"a LIVENESS trace's property is calls_return, not {_short(prop)}")
        if meta.get("thread") not in names:
            raise TraceError(path, "#meta.thread", f"a LIVENESS trace names the thread that never returns, not "
                                                   f"{_short(meta.get('thread'))}")
    return [state_from_dict(model, path, i, d) for i, d in enumerate(data["states"])]
