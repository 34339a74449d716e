"""Check configurations (``specs/*.toml``): which model, which readings of the
document and which fixes, which threads, which properties, what verdict is
expected.  The split follows TLA+'s specification / TLC configuration: the
model lives in ``model/``, a spec only configures a run of it.

Every error names the file and the field, so the CLI can print one line.
"""
from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from ..model.geometry import GeometryError
from ..model.manager import Workload
from ..model.options import OPTIONS, OptionError
from ..model.registry import MODELS, parse_op
from ..model.run_config import MAX_UNITS, SPEC_FIELDS, RunConfig, RunConfigError, check_fields, size_problem  # noqa: F401

VERDICTS = ("OK", "VIOLATION", "DEADLOCK", "LIVENESS", "INCOMPLETE")
# spec.kind: what a spec's defect is a defect of. "defect": of the document as written (under the spec's
# readings); "fix_hazard": of this project's own fixes, reachable only with the fixes the spec turns on
KINDS = ("defect", "fix_hazard")
MAX_WORKERS = 8          # threads.workers: at most this many workers in all (counts checked before any is built)
MAX_OPS = 64             # operations of one worker (each compiles to ~20 steps of generated code)
MAX_TOTAL_OPS = 256      # operations of all workers together (the compiled model grows with their sum)
MAX_ROLE = 4             # error injectors, recoverers, stats readers: at most this many of each
# a spec's name names its trace file (``<traces-dir>/<name>.itf.json``): letters, digits, '_', '-', '.', not
# starting with '.' or '-', so it can never leave the traces directory nor break a line
NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
ALWAYS = ("deadlock", "calls_return")      # checked by the explorer itself, not by a property predicate
PROVE_FIELDS = ("lemmas", "k", "any_workers", "bmc_depth", "rlimit")
# what the z3 back end is expected to say (expect.prove): "PROVED" = every checked property proved; for a
# VIOLATION spec, the verdict of its expect.property; "none" = z3 not run (liveness, deadlock)
PROVE_VERDICTS = ("PROVED", "VIOLATED", "NOT INDUCTIVE", "UNKNOWN", "none")


class SpecError(ValueError):
    def __init__(self, path, field, message):
        super().__init__(f"{path}: {field}: {message}")
        self.path, self.field = path, field


@dataclass
class Spec:
    path: Path
    name: str
    model: str
    description: str
    defect: str
    readings: dict
    fixes: dict
    size: int
    workload: Workload
    properties: list | None          # None: every property of the model
    symmetry: bool
    strategy: str
    max_states: int | None
    max_depth: int | None
    liveness: bool
    expect_verdict: str
    expect_property: str | None
    prove: dict = field(default_factory=dict)
    fixed_by: list = field(default_factory=list)
    window: int | None = None        # allocator.window: model only the lowest units (None: the default)
    retry_count: int | None = None   # allocator.retry_count: PDDGPU_*_ALLOC_RETRY_COUNT (None: the document's 3)
    expect_prove: str | None = None  # expect.prove (PROVE_VERDICTS; None: not stated)
    expect_proved: int | list | None = None   # expect.proved: how many / which properties z3 proves
    # expect.vacuous: the properties an OK run is expected to leave unexercised (None: no demand, as for a
    # defect spec's +fix run, which must only exercise ``must_exercise``)
    expect_vacuous: list | None = None
    must_exercise: list = field(default_factory=list)
    kind: str = "defect"             # spec.kind (KINDS)
    # mutate.companions: file names of specs of the same model whose workloads reach what this one cannot (a
    # third worker, a second recoverer); a mutant caught in any of them is caught (companion_specs loads them)
    companions: list = field(default_factory=list)
    # mutate.redundant: mutant id -> why no property can tell it apart (another check makes the same decision)
    redundant: dict = field(default_factory=dict)

    def with_fixes(self) -> "Spec":
        """The same check with the spec's named fixes on: it must verify."""
        from dataclasses import replace
        return replace(self, name=f"{self.name}+fix", fixes={**self.fixes, **{f: True for f in self.fixed_by}},
                       expect_verdict="OK", expect_property=None, fixed_by=[], expect_prove=None,
                       expect_proved=None, expect_vacuous=None,
                       # a fix is verified only if the run reached the step where the defect did harm
                       must_exercise=[self.expect_property] if self.expect_property else [])

    @property
    def options(self) -> dict:
        return {**self.readings, **self.fixes}

    @property
    def run_config(self) -> RunConfig:
        """What this spec runs: every back end and harness takes it from here."""
        return RunConfig(self.model, self.size, self.workload, self.options, self.window, self.retry_count)

    def build(self):
        m = self.run_config.build(self.name)
        if self.properties is not None:
            unknown = [p for p in self.properties if p not in m.properties and p not in ALWAYS]
            if unknown:
                raise SpecError(self.path, "check.properties",
                                f"unknown property '{unknown[0]}' (known: {', '.join(sorted(m.properties))})")
        return m

    def checked_properties(self, model) -> list:
        """The spec's properties, and always the model's bounds (an allocator
        window): whatever else is checked is exact only while they hold."""
        chosen = list(model.properties) if self.properties is None else self.properties
        out = [p for p in chosen if p not in ALWAYS]
        return out + [p for p in model.bounds if p not in out]


def _get(d, key, typ, path, where, default=None, required=False):
    if key not in d:
        if required:
            raise SpecError(path, f"{where}.{key}" if where else key, "missing")
        return default
    v = d[key]
    if typ is int and (isinstance(v, bool) or not isinstance(v, int)):
        raise SpecError(path, f"{where}.{key}" if where else key, f"must be an integer, not {_short(v)}")
    if typ is not int and (not isinstance(v, typ) or (typ is not bool and isinstance(v, bool))):
        names = " or ".join(_TYPE_NAMES.get(t, t.__name__) for t in (typ if isinstance(typ, tuple) else (typ,)))
        raise SpecError(path, f"{where}.{key}" if where else key, f"must be {names}, not {_short(v)}")
    return v


_TYPE_NAMES = {dict: "a table", list: "a list", str: "a string", bool: "a boolean (true or false)",
               int: "an integer"}


def _short(v) -> str:
    """A value for a one-line message: its repr, cut short (a 10 MB string is named, not printed)."""
    r = repr(v)
    return r if len(r) <= 60 else r[:57] + "..."


def check_name(name: str, path, field: str = "spec.name") -> str:
    """A spec (or trace) name: an identifier usable as a file name, nothing else."""
    if not NAME_RE.fullmatch(name):
        raise SpecError(path, field, f"{_short(name)} is not a name: use letters, digits, '_', '-' and '.' "
                                     "(not first), at most 128 characters (it names the trace file)")
    return name


def _key(k: str) -> str:
    """A TOML key as a field name: as written when it is a plain word, else quoted (no newline, no markup)."""
    return k if re.fullmatch(r"[A-Za-z0-9_-]{1,64}", k) else _short(k)


def _known(d, keys, path, where):
    for k in d:
        if k not in keys:
            raise SpecError(path, f"{where}.{_key(k)}" if where else _key(k),
                            f"unknown field (expected one of: {', '.join(keys)})")


def load_spec(path) -> Spec:
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise SpecError(path, "file", "no such file") from None
    except IsADirectoryError:
        raise SpecError(path, "file", "is a directory, not a spec file") from None
    except OSError as e:
        raise SpecError(path, "file", f"cannot be read ({e.strerror or e})") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise SpecError(path, "toml", f"not valid TOML ({' '.join(str(e).split())})") from None
    except RecursionError:
        raise SpecError(path, "toml", "nested too deeply to be a spec") from None
    _known(raw, ("spec", "readings", "fixes", "allocator", "threads", "check", "expect", "prove", "mutate"), path, "")
    s = _get(raw, "spec", dict, path, "", required=True)
    _known(s, ("name", "model", "description", "defect", "fixed_by", "kind"), path, "spec")
    model = _get(s, "model", str, path, "spec", required=True)
    if model not in MODELS:
        raise SpecError(path, "spec.model", f"unknown model {_short(model)} (known: {', '.join(MODELS)})")
    name = check_name(_get(s, "name", str, path, "spec", default=path.stem), path,
                      "spec.name" if "name" in s else "spec.name (none given: the file name)")

    opts = {}
    for section, kind in (("readings", "reading"), ("fixes", "fix")):
        d = _get(raw, section, dict, path, "", default={})
        for k, v in d.items():
            o = OPTIONS.get(k)
            if o is None or o.kind != kind:
                known = sorted(n for n, x in OPTIONS.items() if x.kind == kind)
                raise SpecError(path, f"{section}.{_key(k)}", f"unknown {kind} (known: {', '.join(known)})")
            if type(v) is not type(o.default) or v not in o.choices:
                raise SpecError(path, f"{section}.{k}", f"must be one of {list(o.choices)}, not {_short(v)}")
        opts[section] = d

    a = _get(raw, "allocator", dict, path, "", default={})
    _known(a, ("size", "window", "retry_count"), path, "allocator")
    size = _get(a, "size", int, path, "allocator", default=4)
    # above 32 minimum blocks / 10 pages the model tracks a window of the lowest units (model/geometry.py)
    window = _get(a, "window", int, path, "allocator")
    retry_count = _get(a, "retry_count", int, path, "allocator")
    try:
        check_fields(model, size, window, retry_count, fields=SPEC_FIELDS)
    except RunConfigError as e:
        raise SpecError(path, e.field, str(e)) from None

    t = _get(raw, "threads", dict, path, "", required=True)
    _known(t, ("workers", "error_injectors", "recoverers", "stats_readers", "shutdown", "worker_loop"), path, "threads")
    groups = _get(t, "workers", list, path, "threads", required=True)
    workers = []
    for gi, g in enumerate(groups):
        where = f"threads.workers[{gi}]"
        if not isinstance(g, dict):
            raise SpecError(path, where, "must be a table {count = N, ops = [...]}")
        _known(g, ("count", "ops"), path, where)
        count = _get(g, "count", int, path, where, default=1)
        if count < 1:
            raise SpecError(path, f"{where}.count", f"must be at least 1, not {count}")
        if len(workers) + count > MAX_WORKERS:       # before a single worker is built: count = 10^9 is refused
            raise SpecError(path, f"{where}.count", f"at most {MAX_WORKERS} workers in all, not "
                                                    f"{len(workers) + count}")
        ops = _get(g, "ops", list, path, where, required=True)
        for j, o in enumerate(ops):
            if not isinstance(o, str):
                raise SpecError(path, f"{where}.ops[{j}]", f"must be a string 'alloc N' or 'free', not {_short(o)}")
        try:
            parsed = [parse_op(o) for o in ops]
        except ValueError as e:
            raise SpecError(path, f"{where}.ops", str(e)) from None
        if not parsed:
            raise SpecError(path, f"{where}.ops", "must name at least one operation")
        if len(parsed) > MAX_OPS:
            raise SpecError(path, f"{where}.ops", f"at most {MAX_OPS} operations per worker, not {len(parsed)} "
                                                  "(threads.worker_loop = true repeats them)")
        if sum(map(len, workers)) + count * len(parsed) > MAX_TOTAL_OPS:
            raise SpecError(path, f"{where}.ops", f"at most {MAX_TOTAL_OPS} operations over all workers, not "
                                                  f"{sum(map(len, workers)) + count * len(parsed)}")
        for op in parsed:
            if op[0] == "alloc" and op[1] > size:
                raise SpecError(path, f"{where}.ops", f"alloc {op[1]} is larger than the allocator ({size})")
            # any VRAM request from 1 to the size: the buddy places it in one block of it rounded up to a power of
            # two (model/geometry.py block_units), which a power-of-two VRAM of at least N always has room for
        workers += [parsed for _ in range(count)]
    counts = {}
    for k in ("error_injectors", "recoverers", "stats_readers"):
        counts[k] = _get(t, k, int, path, "threads", default=0)
        if not 0 <= counts[k] <= MAX_ROLE:
            raise SpecError(path, f"threads.{k}", f"must be 0 to {MAX_ROLE}, not {counts[k]}")
    if not 1 <= len(workers) <= MAX_WORKERS:
        raise SpecError(path, "threads.workers", f"between 1 and {MAX_WORKERS} workers, not {len(workers)}")
    wl = Workload(workers, counts["error_injectors"], counts["recoverers"], counts["stats_readers"],
                  _get(t, "shutdown", bool, path, "threads", default=False),
                  _get(t, "worker_loop", bool, path, "threads", default=False))

    c = _get(raw, "check", dict, path, "", default={})
    _known(c, ("properties", "symmetry", "strategy", "max_states", "max_depth", "liveness"), path, "check")
    props = _get(c, "properties", (list, str), path, "check", default="all")
    if props == "all":
        props = None
    elif isinstance(props, str):
        raise SpecError(path, "check.properties", "must be \"all\" or a list of property names")
    else:
        for i, p in enumerate(props):
            if not isinstance(p, str):
                raise SpecError(path, f"check.properties[{i}]", f"must be a property name, not {_short(p)}")
    strategy = _get(c, "strategy", str, path, "check", default="bfs")
    if strategy not in ("bfs", "dfs"):
        raise SpecError(path, "check.strategy", f"must be 'bfs' or 'dfs', not {strategy!r}")
    max_states = _get(c, "max_states", int, path, "check")
    max_depth = _get(c, "max_depth", int, path, "check")
    for k, v in (("max_states", max_states), ("max_depth", max_depth)):
        if v is not None and v < 1:
            raise SpecError(path, f"check.{k}", f"must be positive, not {v}")

    e = _get(raw, "expect", dict, path, "", required=True)
    _known(e, ("verdict", "property", "prove", "proved", "vacuous"), path, "expect")
    verdict = _get(e, "verdict", str, path, "expect", required=True)
    if verdict not in VERDICTS:
        raise SpecError(path, "expect.verdict", f"must be one of {', '.join(VERDICTS)}, not {verdict!r}")
    eprop = _get(e, "property", str, path, "expect")
    if props == []:
        # an empty list checks only what the explorer always checks (deadlock): an OK would say nothing
        raise SpecError(path, "check.properties", "names no property, so nothing but deadlock would be checked: use "
                                                  "\"all\", name the properties, or [\"deadlock\"] for a deadlock "
                                                  "search")
    if verdict == "VIOLATION" and not eprop:
        raise SpecError(path, "expect.property", "a VIOLATION expectation names the property it breaks")

    spec = Spec(path, name, model, _get(s, "description", str, path, "spec", default=""),
                _get(s, "defect", str, path, "spec", default=""), opts["readings"], opts["fixes"], size, wl,
                props, _get(c, "symmetry", bool, path, "check", default=True), strategy, max_states, max_depth,
                _get(c, "liveness", bool, path, "check", default=False), verdict, eprop,
                _prove_table(_get(raw, "prove", dict, path, "", default={}), path),
                _get(s, "fixed_by", list, path, "spec", default=[]), window, retry_count,
                _get(e, "prove", str, path, "expect"), _get(e, "proved", (int, list), path, "expect"))
    for i, f in enumerate(spec.fixed_by):
        if not isinstance(f, str):
            raise SpecError(path, f"spec.fixed_by[{i}]", f"must be the name of a fix, not {_short(f)}")
        if f not in OPTIONS or OPTIONS[f].kind != "fix":
            raise SpecError(path, f"spec.fixed_by[{i}]", f"unknown fix {_short(f)}")
    spec.kind = _get(s, "kind", str, path, "spec", default="defect")
    if spec.kind not in KINDS:
        raise SpecError(path, "spec.kind", f"must be one of {', '.join(KINDS)}, not {spec.kind!r}")
    if spec.kind == "fix_hazard" and not (spec.defect and any(spec.fixes.values())):
        raise SpecError(path, "spec.kind", "a fix_hazard names its hazard (spec.defect) and turns on, in [fixes], "
                                           "the fixes of this project it is a hazard of")
    try:
        m = spec.build()
    except OptionError as err:
        raise SpecError(path, err.field, str(err)) from None
    except GeometryError as err:
        raise SpecError(path, f"allocator.{err.field}", str(err)) from None
    if eprop and eprop not in m.properties and eprop not in ALWAYS:
        raise SpecError(path, "expect.property", f"unknown property '{eprop}'")
    _check_z3_expectation(spec, m)
    vac = _get(e, "vacuous", list, path, "expect")
    if vac is not None:
        if verdict != "OK":
            raise SpecError(path, "expect.vacuous", "only an OK expectation can name vacuous properties")
        for i, p in enumerate(vac):
            if not isinstance(p, str) or p not in m.properties:
                raise SpecError(path, f"expect.vacuous[{i}]", f"unknown property {p!r}")
    # an OK spec exercises every property it checks unless it says which it cannot reach
    spec.expect_vacuous = vac if vac is not None else ([] if verdict == "OK" else None)
    mt = _get(raw, "mutate", dict, path, "", default={})
    spec.companions = _companions(mt, spec)
    spec.redundant = _redundant(mt, spec, m)
    return spec


def _redundant(t: dict, spec: Spec, model) -> dict:
    """``[mutate] redundant = [{id = "...", why = "..."}]``: survivors the spec declares redundant."""
    from .mutate import catalogue
    items = _get(t, "redundant", list, spec.path, "mutate", default=[])
    if not items:
        return {}
    known = {m.id for m in catalogue(model)[0]}
    out = {}
    for i, r in enumerate(items):
        where = f"mutate.redundant[{i}]"
        if not isinstance(r, dict) or set(r) != {"id", "why"} or not all(isinstance(v, str) and v for v in r.values()):
            raise SpecError(spec.path, where, "must be a table {id = \"<mutant id>\", why = \"<reason>\"}")
        if r["id"] not in known:
            raise SpecError(spec.path, f"{where}.id", f"no mutant {_short(r['id'])} in this spec's catalogue")
        out[r["id"]] = r["why"]
    return out


def _companions(t: dict, spec: Spec) -> list:
    """``[mutate] companions``: file names beside this spec (or paths from it), each an OK spec of the same
    model.  Only the names are checked here; ``companion_specs`` loads them when mutate runs (so a copy of a
    spec elsewhere still loads)."""
    path = spec.path
    _known(t, ("companions", "redundant"), path, "mutate")
    names = _get(t, "companions", list, path, "mutate", default=[])
    if names and spec.expect_verdict != "OK":
        raise SpecError(path, "mutate.companions", "only a spec expected to verify (OK) is mutation-tested")
    for i, n in enumerate(names):
        if not isinstance(n, str):
            raise SpecError(path, f"mutate.companions[{i}]", f"must be a spec file name, not {_short(n)}")
        if (path.parent / n).resolve() == path.resolve():
            raise SpecError(path, f"mutate.companions[{i}]", "names this spec itself")
    return list(names)


def companion_specs(spec: Spec) -> list:
    """The specs ``[mutate] companions`` names, loaded: each an OK spec of the same model.  A companion is asked
    only about mutants of programs it runs unchanged (checker/mutate.py); its own companions are not asked."""
    out = []
    for i, n in enumerate(spec.companions):
        where = f"mutate.companions[{i}]"
        try:
            c = load_spec((spec.path.parent / n).resolve())
        except SpecError as e:
            raise SpecError(spec.path, where, f"{n}: {e}") from None
        if c.model != spec.model:
            raise SpecError(spec.path, where, f"{n} is a spec of the {c.model} model, not of {spec.model}")
        if c.expect_verdict != "OK":
            raise SpecError(spec.path, where, f"{n} is not expected to verify (OK)")
        out.append(c)
    return out


def _prove_table(p: dict, path) -> dict:
    """``[prove]``: lemmas, k, any_workers, bmc_depth, rlimit (z3 resource units per query)."""
    if "timeout" in p:
        raise SpecError(path, "prove.timeout", "wall-clock budgets are gone (a verdict must not depend on the "
                                               "machine's load): use prove.rlimit, z3 resource units per query")
    _known(p, PROVE_FIELDS, path, "prove")
    if "lemmas" in p:
        from ..model.lemmas import LEMMAS
        lemmas = p["lemmas"]
        if not isinstance(lemmas, list) or not all(isinstance(x, str) for x in lemmas):
            raise SpecError(path, "prove.lemmas", "must be a list of lemma names")
        for x in lemmas:
            if x != "auto" and x not in LEMMAS:
                raise SpecError(path, "prove.lemmas", f"unknown lemma '{x}' (known: auto, {', '.join(sorted(LEMMAS))})")
    if "any_workers" in p:
        _get(p, "any_workers", bool, path, "prove")
    for k, low in (("k", 1), ("bmc_depth", 0), ("rlimit", 1)):
        v = _get(p, k, int, path, "prove")
        if v is not None and v < low:
            raise SpecError(path, f"prove.{k}", f"must be at least {low}, not {v}")
    if p.get("rlimit", 0) > (1 << 32) - 1:      # z3 keeps only the low 32 bits of a larger limit
        raise SpecError(path, "prove.rlimit", f"must be at most 4294967295 (2^32 - 1), not {p['rlimit']}")
    return p


def _check_z3_expectation(spec: Spec, model) -> None:
    """``expect.prove`` and ``expect.proved`` against the explorer's expectation."""
    path, ep, n = spec.path, spec.expect_prove, spec.expect_proved
    if ep is None:
        if n is not None:
            raise SpecError(path, "expect.proved", "needs expect.prove")
        return
    if ep not in PROVE_VERDICTS:
        raise SpecError(path, "expect.prove", f"must be one of {', '.join(PROVE_VERDICTS)}, not {ep!r}")
    v = spec.expect_verdict
    if v in ("LIVENESS", "DEADLOCK") and ep != "none":
        raise SpecError(path, "expect.prove", f"must be \"none\" for a {v} spec (z3 states no {v.lower()} "
                                              f"property), not {ep!r}")
    if v == "VIOLATION" and ep == "PROVED":
        raise SpecError(path, "expect.prove", f"cannot be PROVED: the spec expects {spec.expect_property} "
                                              "to be violated")
    if v == "OK" and ep == "VIOLATED":
        raise SpecError(path, "expect.prove", "cannot be VIOLATED: the spec expects every property to hold")
    if n is None:
        return
    if ep in ("PROVED", "none") or v == "VIOLATION":
        raise SpecError(path, "expect.proved", f"only for a partial result (expect.prove NOT INDUCTIVE or "
                                               f"UNKNOWN on a spec not expecting a VIOLATION); {ep!r} says it all")
    if isinstance(n, int) and not isinstance(n, bool):
        if n < 0:
            raise SpecError(path, "expect.proved", f"must be a count >= 0 or a list of property names, not {n}")
        return
    if isinstance(n, bool) or not all(isinstance(x, str) for x in n):
        raise SpecError(path, "expect.proved", f"must be a count >= 0 or a list of property names, not {n!r}")
    for x in n:
        if x not in model.properties:
            raise SpecError(path, "expect.proved", f"unknown property '{x}'")
