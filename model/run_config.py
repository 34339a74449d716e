"""One run configuration: which manager, how large its allocator, which window of it the model tracks, the
allocation retry limit, the options (readings and fixes) and the workload.

A spec's TOML (``checker/spec.py``) and a trace's ``#meta`` (``checker/trace.py``) are both read into a
``RunConfig`` by ``load_run_config``, and everything that runs a configuration takes it from there: the
explorer and the z3 back end through ``RunConfig.build``, the harnesses on the Python and the C code
(``conformance/``) through its fields, a trace's ``#meta`` through ``RunConfig.to_meta``.  A new field is
added here, to the source it is read from, and to the harness that acts on it.

Errors are ``RunConfigError``: the field as the source names it (``allocator.window``, ``#meta.window``) and
a one-line message; the loaders of specs and traces add the file.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

from .geometry import geometry_for
from .manager import MAX_RETRIES, Workload, workload_allocs
from .options import OptionError, resolve

__all__ = ["RunConfig", "RunConfigError", "load_run_config", "check_fields", "config_of_model", "size_problem",
           "SPEC_FIELDS", "META_FIELDS", "MAX_UNITS"]

MAX_UNITS = 1 << 30     # the largest VRAM (minimum blocks) or GTT (pages) a configuration may name

# where each field lives in a spec and in a trace's #meta (for the messages)
SPEC_FIELDS = {"kind": "spec.model", "size": "allocator.size", "window": "allocator.window",
               "retry_count": "allocator.retry_count", "options": "fixes", "workload": "threads"}
META_FIELDS = {"kind": "#meta.model_kind", "size": "#meta.size", "window": "#meta.window",
               "retry_count": "#meta.retry_count", "options": "#meta.options", "workload": "#meta.workload"}


class RunConfigError(ValueError):
    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class RunConfig:
    kind: str                        # a model of model/registry.py: vram | gtt
    size: int                        # allocator units: VRAM minimum blocks, GTT pages
    workload: Workload
    options: dict = field(default_factory=dict)     # readings and fixes as given (``resolve`` fills defaults)
    window: int | None = None        # model only the lowest units of a large allocator (None: the default)
    retry_count: int | None = None   # PDDGPU_*_ALLOC_RETRY_COUNT (None: the document's)

    @property
    def resolved_options(self) -> dict:
        return resolve(dict(self.options))

    def with_options(self, override: dict | None) -> "RunConfig":
        return replace(self, options={**self.options, **(override or {})})

    def with_workload(self, workload: Workload) -> "RunConfig":
        return replace(self, workload=workload)

    def geometry(self):
        """The model's allocator geometry (its candidate blocks, and the window of a large allocator)."""
        return geometry_for("buddy" if self.kind == "vram" else "range", self.size, self.window,
                            *workload_allocs(self.workload))

    def build(self, name: str | None = None):
        from .registry import MODELS
        if self.kind not in MODELS:
            raise KeyError(self.kind)
        m = MODELS[self.kind](self.options, self.workload, self.size, name or self.kind, window=self.window,
                              retry_count=self.retry_count)
        m.run_config = self
        return m

    def to_meta(self) -> dict:
        """The fields of a trace's #meta that give this configuration back (``load_run_config(meta)``)."""
        from .registry import workload_to_dict
        out = {"model_kind": self.kind, "size": self.size, "options": dict(self.options),
               "workload": workload_to_dict(self.workload)}
        if self.window is not None:
            out["window"] = self.window
        if self.retry_count is not None:
            out["retry_count"] = self.retry_count
        return out


def _int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _short(v) -> str:
    r = repr(v)
    return r if len(r) <= 60 else r[:57] + "..."


def size_problem(kind: str, size: int) -> str | None:
    """Why ``size`` is no allocator size of ``kind`` (None: it is one)."""
    if kind == "vram" and (size < 1 or size & (size - 1) or size > MAX_UNITS):
        return f"VRAM size must be a power of two from 1 to 2^30 minimum blocks, not {size}"
    if kind == "gtt" and not 1 <= size <= MAX_UNITS:
        return f"GTT size must be 1 to 2^30 pages, not {size}"
    return None


def check_fields(kind, size, window=None, retry_count=None, options=None, fields=META_FIELDS) -> None:
    """The checks every source shares, before a model is built; ``RunConfigError`` names ``fields[...]``."""
    from .registry import MODELS
    if not isinstance(kind, str) or kind not in MODELS:
        raise RunConfigError(fields["kind"], f"unknown model {_short(kind)} (known: {', '.join(MODELS)})")
    if not _int(size):
        raise RunConfigError(fields["size"], f"must be an integer, not {_short(size)}")
    if size_problem(kind, size):
        raise RunConfigError(fields["size"], size_problem(kind, size))
    if window is not None:
        if not _int(window):
            raise RunConfigError(fields["window"], f"must be an integer, not {_short(window)}")
        if not 1 <= window <= size:
            raise RunConfigError(fields["window"], f"must be 1 to {fields['size']} ({size}), not {window}")
    if retry_count is not None and (not _int(retry_count) or not 1 <= retry_count <= MAX_RETRIES):
        raise RunConfigError(fields["retry_count"], f"must be an integer from 1 to {MAX_RETRIES}, not "
                                                    f"{_short(retry_count)}")
    if options is not None:
        if not isinstance(options, dict):
            raise RunConfigError(fields["options"], f"must be an object of option names and values, not "
                                                    f"{_short(options)}")
        try:
            resolve(dict(options))
        except OptionError as e:
            f = e.field if isinstance(e.field, str) else _short(e.field)
            raise RunConfigError(f"{fields['options']}.{f}", str(e)) from None


def load_run_config(source: dict, fields: dict = META_FIELDS) -> RunConfig:
    """A ``RunConfig`` from ``source``: a trace's #meta (``model_kind``, ``size``, ``window``,
    ``retry_count``, ``options``, ``workload`` as written by ``to_meta``), or the values a spec's tables gave
    (``kind``, ``size``, ``window``, ``retry_count``, ``options``, ``workload`` a Workload) with
    ``fields=SPEC_FIELDS``."""
    from .registry import workload_from_dict
    kind = source.get("model_kind", source.get("kind"))
    size, window, retry = source.get("size"), source.get("window"), source.get("retry_count")
    options = source.get("options") or {}
    check_fields(kind, size, window, retry, options, fields)
    wl = source.get("workload")
    if not isinstance(wl, Workload):
        try:
            wl = workload_from_dict(wl)
        except (KeyError, TypeError, ValueError) as e:
            raise RunConfigError(fields["workload"], f"invalid ({e})") from None
    return RunConfig(kind, size, wl, dict(options), window, retry)


def config_of_model(model) -> RunConfig:
    """The configuration a manager model runs, read off the model: what a trace records of it.  Its options
    are the model's, resolved; its window the one the model tracks (the default of a large allocator too);
    its retry count only when it is not the document's."""
    from . import gtt, vram
    prof, geo = model.profile, model.geometry
    document = {"vram": vram.PROFILE, "gtt": gtt.PROFILE}[prof.name].retry_count
    return RunConfig(prof.name, geo.units, model.workload, dict(model.options), geo.window,
                     prof.retry_count if prof.retry_count != document else None)
