"""Building blocks for tests: models, hand-made states."""
from pathlib import Path

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


ROOT = Path(__file__).resolve().parent.parent


def sigint_delivered():
    """``preexec_fn`` for a child a test interrupts: SIGINT as a terminal delivers it.  A suite started as a
    background job (``make test &``, nohup) inherits SIGINT ignored, and a Python started so installs no
    KeyboardInterrupt handler: the signal the test sends would never arrive."""
    import signal
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def eight_workers_spec(tmp_path) -> Path:
    """Spec 50's fixed VRAM manager with eight workers on four blocks and no symmetry: far more states
    than any budget below holds (hundreds of millions)."""
    text = (ROOT / "specs/50_vram_fixed_three_workers.toml").read_text()
    for a, b in (("count = 3, ops", "count = 8, ops"), ("size = 1\n", "size = 4\n"),
                 ("symmetry = true", "symmetry = false"),
                 ('name = "vram_fixed_three_workers"', 'name = "vram_eight_workers"')):
        assert text.count(a) == 1, a
        text = text.replace(a, b)
    p = tmp_path / "eight.toml"
    p.write_text(text)
    return p


# spec 18's defect in miniature (recover re-initialises a live allocator, so fini finds its blocks leaked): the
# z3 tests' shared subject; each adds its own [check] / [prove] tables before the [expect] one
REINIT_DEFECT_HEAD = """
[spec]
name = "t_reinit"
model = "vram"
[fixes]
fix_free_always_releases = true
fix_is_ready = true
fix_recover_state = true
fix_retry_unlock = true
fix_stats_snapshot = true
fix_fini_evicts = true
[allocator]
size = 2
[threads]
workers = [{count = 1, ops = ["alloc 1", "free"]}]
recoverers = 1
"""
REINIT_DEFECT_EXPECT = """[expect]
verdict = "VIOLATION"
property = "no_buddy_metadata_leak"
"""


def reinit_defect(tables: str = "") -> str:
    return REINIT_DEFECT_HEAD + tables + REINIT_DEFECT_EXPECT


def write_spec(tmp_path, text, name="s.toml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p
