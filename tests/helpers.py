"""Building blocks for tests: models, hand-made states."""
from pddgpu_verify.model.manager import Workload
from pddgpu_verify.model.options import ALL_FIXES as AF


def pair(n=1, size=1):
    return [[("alloc", size), ("free",)] for _ in range(n)]


def everything(mod, opts=None, n=1, **kw):
    wl = Workload(workers=pair(n), error_injectors=1, recoverers=1, stats_readers=1, shutdown=True, **kw)
    return mod.make(opts or {}, wl)


def state_with(model, **values):
    """The initial state with some variables set; pcs may be given as labels.
    Names use '__' for '.', e.g. w0__pc='op0.alloc.lock'."""
    lay = model.layout
    s = list(model.initial_state())
    for k, v in values.items():
        name = k.replace("__", ".")
        i = lay.var_names().index(name)
        if lay.decls[i].kind == "pc":
            t = lay.pc_index.index(i)
            v = lay.pc_of_label(t, v)
        s[i] = v
    return tuple(s)
