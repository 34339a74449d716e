"""A drift check between the C managers (``csrc/``) and the model.

For one manager and one set of options, each C function (preprocessed with the options' defines, the kernel's
names kept: ``-DPDDGPU_DRIFT_VIEW``) is read as the sequence of its scheduling points in source order, each
with the step label the shim gives it (``STEP``/``STEP_SUB``/``SCHED_POINT``, the second point under one label
being ``label2``) and the kernel-API call it makes; calls of the file's own helpers (is_ready, set_error,
reinit) are read in place.  The model's thread program for the same call lists its steps in program order,
each naming the C statement it stands for (``Step.code``).  They must agree:

* the same labels on both sides (a step added or dropped on either side is reported);
* at each label, the kernel-API call the model's statement names is the one the C makes there (a renamed or
  swapped call);
* labels that occur once on both sides come in the same order (a reordered call).  ``return`` and
  ``skipped`` end several paths in the C and are left out of the order.

The C is parsed (pycparser, after the preprocessor with the shim's headers and the options' defines) and each
function's body walked in source order: a condition before its branches, a callee before its arguments, the
file's helpers read in place where they are called.  A function that is not defined is reported.
"""
from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass, field

from pycparser import c_ast, c_parser

from ..model.manager import Workload
from ..model.options import resolve
from .c_build import CSRC, compiler, defines_for

API = {"atomic_read", "atomic_set", "atomic_or", "atomic_and", "atomic_inc", "atomic_dec", "atomic_try_cmpxchg",
       "atomic64_read", "atomic64_set", "atomic64_add", "atomic64_sub", "mutex_lock", "mutex_unlock", "spin_lock",
       "spin_unlock", "msleep", "wait_event", "data_race_read", "drm_buddy_init", "drm_buddy_fini",
       "drm_buddy_alloc_blocks", "drm_buddy_free_list", "drm_mm_init", "drm_mm_takedown",
       "drm_mm_insert_node_in_range", "drm_mm_remove_node"}
ALIASES = {"atomic_cmpxchg": "atomic_try_cmpxchg"}     # the model's statement for the try_cmpxchg loop
MULTI_EXIT = {"return", "skipped"}
# points the C has past the model's last step of a call, with the reason
C_ONLY = {"fini": {"leak_check": "fini's WARN on used/vis_usage, after the teardown the model ends with",
                   "leak_check2": "the same WARN's second read"}}
# the model's steps the harness takes, not the manager
HARNESS_ONLY = {"entry"}

# GNU C the shim's and libc's headers use, which pycparser's C99 grammar does not have: attributes and
# alignments say nothing of the calls, typeof and offsetof appear only inside container_of's casts
PARSER_DEFINES = ("__attribute__(x)=", "__alignof__(x)=8", "__builtin_offsetof(t,m)=0", "__typeof__(x)=int")


@dataclass
class Point:
    label: str
    api: str | None
    inside: tuple = ()          # calls made inside the same indivisible step (SCHED_ATOMIC)


@dataclass
class Drift:
    function: str
    problems: list = field(default_factory=list)
    model: list = field(default_factory=list)     # [(label, api)]
    c: list = field(default_factory=list)         # [(label, api)]

    def __str__(self):
        show = lambda xs: " ".join(f"{lab}[{api or '-'}]" for lab, api in xs)  # noqa: E731
        return f"{self.function}: " + "; ".join(self.problems) + f"\n  model: {show(self.model)}\n  C:     {show(self.c)}"


def preprocess(path, defines) -> str:
    cc = compiler()
    if cc is None:
        raise RuntimeError("no C compiler for the preprocessor")
    p = subprocess.run([cc, "-E", "-P", "-DPDDGPU_DRIFT_VIEW", *(f"-D{d}" for d in (*PARSER_DEFINES, *defines)),
                        "-I", str(path.parent), str(path)], capture_output=True, text=True, check=True)
    return p.stdout


def functions(text: str) -> dict:
    """Function name -> its definition (a pycparser ``FuncDef``) in preprocessed C."""
    try:
        ast = c_parser.CParser().parse(text, "<preprocessed>")
    except c_parser.ParseError as e:
        raise ValueError(f"drift check: the preprocessed C does not parse ({e})") from None
    return {e.decl.name: e for e in ast.ext if isinstance(e, c_ast.FuncDef)}


def _callee(call) -> str | None:
    return call.name.name if isinstance(call.name, c_ast.ID) else None


def c_points(funcs: dict, name: str, pre=()) -> list[Point]:
    """The scheduling points of C function ``name`` in source order, labelled as the shim labels them."""
    events = list(pre)
    nosched = 0

    def walk(node, fn, stack):
        nonlocal nosched
        if not isinstance(node, c_ast.FuncCall):
            for _, child in node.children():
                walk(child, fn, stack)
            return
        n = _callee(node)
        args = node.args.exprs if node.args is not None else []
        if n in ("shim_step", "shim_step_sub"):
            events.append(("step" if n == "shim_step" else "sub", args[0].value.strip('"')))
            return
        if n == "shim_point":
            events.append(("point", None))
        elif n == "shim_nosched_enter":
            nosched += 1
        elif n == "shim_nosched_exit":
            nosched -= 1
        elif n in API:
            events.append(("inside" if nosched else "api", n))
            if n in ("wait_event", "data_race_read"):      # their arguments run inside their own step
                return
        elif n in funcs and n not in stack and n != fn:
            walk(funcs[n].body, n, stack + (n,))
        for a in args:
            walk(a, fn, stack)

    walk(funcs[name].body, name, (name,))
    pts: list[Point] = []
    outer = base = ""
    seq = 0
    for kind, v in events:
        if kind == "step":
            outer = base = v
            seq = 0
        elif kind == "sub":
            base, seq = outer + v, 0
        elif kind == "inside":
            if pts:
                pts[-1].inside += (v,)
        else:
            pts.append(Point(base if seq == 0 else f"{base}{seq + 1}", v))
            seq += 1
    return pts


def _model_api(code: str) -> str | None:
    for m in re.finditer(r"([A-Za-z_]\w*)\s*\(", code):
        w = ALIASES.get(m.group(1), m.group(1))
        if w in API:
            return w
    return None


def model_steps(kind: str, options: dict) -> dict[str, list[tuple[str, str | None]]]:
    """Call -> [(label, api)] of the model's programs, labels without the worker's op prefix."""
    from ..model import gtt, vram
    mod = vram if kind == "vram" else gtt
    wl = Workload([[("alloc", 1), ("free",)]], error_injectors=1, recoverers=1, stats_readers=1, shutdown=True)
    m = mod.make(resolve(dict(options)), wl, 4, "drift")
    out: dict[str, list] = {}
    for th in m.threads:
        steps = {st.label: st for st in th.program.steps}
        reach, todo = set(), [th.program.steps[0].label]
        while todo:                 # a step no branch leads to stands for no C statement on any path
            lab = todo.pop()
            if lab in reach or lab not in steps:
                continue
            reach.add(lab)
            todo += [b.goto for b in steps[lab].branches]
        for st in th.program.steps:
            label = st.label.split(".")[-1]
            if label in HARNESS_ONLY or st.label not in reach:
                continue
            call = {"w0": "alloc" if ".alloc." in st.label else "free"}.get(th.name) or {
                "inj0": "set_error", "rec0": "recover", "stats0": "get_stats", "fini": "fini"}[th.name]
            out.setdefault(call, []).append((label, _model_api(st.code)))
    return out


def c_functions(kind: str, options: dict, src=None, retry_count=None) -> dict[str, list[Point]]:
    """Call -> the C points of the function that serves it."""
    src = CSRC if src is None else src
    from pathlib import Path
    path = Path(src) / ("pddgpu_vram_mgr.c" if kind == "vram" else "pddgpu_gtt_mgr.c")
    funcs = functions(preprocess(path, defines_for(options, retry_count)))
    pre = f"pddgpu_{kind}_mgr_"
    need = {"alloc": pre + "alloc", "free": pre + "free", "set_error": pre + "inject_error",
            "recover": pre + "recover", "get_stats": pre + "get_stats", "fini": pre + "fini"}
    missing = [f for f in need.values() if f not in funcs]
    if kind == "gtt":
        vfuncs = functions(preprocess(Path(src) / "pddgpu_vram_mgr.c", defines_for(options, retry_count)))
        if "pddgpu_device_shutdown" in vfuncs:
            funcs["pddgpu_device_shutdown"] = vfuncs["pddgpu_device_shutdown"]
    if missing:
        raise ValueError(f"drift check: no definition of {', '.join(missing)} in {path.name}")
    out = {}
    for call, fn in need.items():
        pre_events = [("step", "set_error")] if call == "set_error" else []     # the injector's STEP (harness.c)
        pts = c_points(funcs, fn, pre_events)
        if call == "fini":
            pts = (c_points(funcs, "pddgpu_device_shutdown") if "pddgpu_device_shutdown" in funcs else []) + pts
        out[call] = pts
    return out


def check(kind: str, options: dict, src=None) -> list[Drift]:
    """Every disagreement between the C and the model for ``kind`` under ``options`` (empty: none)."""
    model = model_steps(kind, options)
    c = c_functions(kind, options, src)
    drifts = []
    for call, msteps in model.items():
        pts = c.get(call, [])
        d = Drift(f"{kind} {call}", model=msteps, c=[(p.label, p.api) for p in pts])
        mlabels = [lab for lab, _ in msteps]
        clabels = [p.label for p in pts]
        extra = set(clabels) - set(mlabels) - set(C_ONLY.get(call, {}))
        dropped = set(mlabels) - set(clabels)
        if extra:
            d.problems.append(f"in the C only: {', '.join(sorted(extra))}")
        if dropped:
            d.problems.append(f"in the model only: {', '.join(sorted(dropped))}")
        first = {}
        for p in pts:
            first.setdefault(p.label, p)
        for lab, api in msteps:
            p = first.get(lab)
            if p is None or api is None:
                continue
            if api != p.api and api not in p.inside:
                d.problems.append(f"at {lab} the model calls {api}, the C {p.api or 'nothing'}")
        once_m = [lab for lab in mlabels if mlabels.count(lab) == 1 and lab not in MULTI_EXIT and lab in first]
        order_c = sorted(once_m, key=lambda lab: clabels.index(lab))
        if once_m != order_c:
            d.problems.append(f"order: the model has {' '.join(once_m)}, the C {' '.join(order_c)}")
        if d.problems:
            drifts.append(d)
    return drifts
