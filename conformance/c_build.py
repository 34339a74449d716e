"""Build the C managers (``csrc/``) into a shared object per define set.

The readings and fixes of ``model/options.py`` become preprocessor options
(``csrc/pddgpu_options.h``); a build is cached under ``.cache/csrc/`` of the
repository by the hash of its defines, the compiler and every source file, so
each -D set is compiled once and an edit to the C rebuilds.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from ..model.options import OPTIONS, resolve

ROOT = Path(__file__).resolve().parent.parent
CSRC = ROOT / "csrc"
SOURCES = ["harness.c", "pddgpu_vram_mgr.c", "pddgpu_gtt_mgr.c", "shim/shim.c", "shim/drm_alloc.c", "shim/selftest.c"]
HEADERS = ["pddgpu.h", "pddgpu_options.h", "shim/kshim.h", "shim/shim_rt.h"]
CFLAGS = ["-std=gnu11", "-O1", "-g", "-fPIC", "-shared", "-pthread", "-Wall", "-Wextra", "-Werror"]

__all__ = ["CBackendUnavailable", "compiler", "defines_for", "build", "mutated_tree", "CACHE"]

CACHE = ROOT / ".cache" / "csrc"


class CBackendUnavailable(RuntimeError):
    """No C compiler, or the C does not build: the C back end cannot run."""


def compiler() -> str | None:
    cc = os.environ.get("CC") or "gcc"
    return shutil.which(cc) or shutil.which("cc")


def defines_for(options: dict, retry_count: int | None = None) -> list[str]:
    """The -D set of a configuration: an option at its default adds nothing; a boolean
    on is its upper-case name; a string reading is NAME_VALUE; an integer NAME=value."""
    opts = resolve(dict(options))
    out = []
    for name, opt in OPTIONS.items():
        v = opts[name]
        if v == opt.default:
            continue
        if isinstance(v, bool):
            out.append(name.upper())
        elif isinstance(v, int):
            out.append(f"{name.upper()}={v}")
        else:
            out.append(f"{name.upper()}_{str(v).upper()}")
    if retry_count is not None and retry_count != 3:
        out += [f"PDDGPU_VRAM_ALLOC_RETRY_COUNT={int(retry_count)}", f"PDDGPU_GTT_ALLOC_RETRY_COUNT={int(retry_count)}"]
    return sorted(out)


def _key(cc: str, defines: list[str], src: Path) -> str:
    h = hashlib.sha256()
    h.update(cc.encode())
    h.update("\0".join(CFLAGS + defines).encode())
    for rel in SOURCES + HEADERS:
        h.update(rel.encode())
        h.update((src / rel).read_bytes())
    return h.hexdigest()[:20]


def mutated_tree(patches) -> Path:
    """A copy of ``csrc/`` with ``patches`` applied, for mutation testing of the C code: each patch is
    (file, function, old, new) -- every ``old`` inside the definition of ``function`` (from the first
    occurrence of its name to the next closing brace in column 0) becomes ``new``; it must occur there."""
    h = hashlib.sha256(repr(list(patches)).encode()).hexdigest()[:16]
    dst = CACHE / f"src-{h}"
    if dst.exists():
        return dst
    CACHE.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=CACHE))
    shutil.copytree(CSRC, tmp / "csrc")
    for rel, fn, old, new in patches:
        f = tmp / "csrc" / rel
        text = f.read_text()
        at = text.find(" " + fn + "(")
        end = text.find("\n}\n", at)
        if at < 0 or end < 0 or old not in text[at:end]:
            raise ValueError(f"patch does not apply: {old!r} not in {fn} of {rel}")
        text = text[:at] + text[at:end].replace(old, new) + text[end:]
        f.write_text(text)
    try:
        os.replace(tmp / "csrc", dst)
    except OSError:          # a concurrent run made the same tree
        shutil.rmtree(tmp / "csrc", ignore_errors=True)
    shutil.rmtree(tmp, ignore_errors=True)
    return dst


def build(defines: list[str], src: Path | None = None) -> Path:
    """The shared object for ``defines`` (built if not cached), from ``csrc/`` or the tree ``src``."""
    src = CSRC if src is None else Path(src)
    cc = compiler()
    if cc is None:
        raise CBackendUnavailable("no C compiler (gcc or cc) on PATH: the C back end is unavailable")
    out = CACHE / f"pddgpu_{_key(cc, defines, src)}.so"
    if out.exists():
        return out
    CACHE.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=CACHE)
    os.close(fd)
    cmd = [cc, *CFLAGS, *(f"-D{d}" for d in defines), "-I", str(src), "-o", tmp,
           *(str(src / s) for s in SOURCES)]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        os.unlink(tmp)
        first = (p.stderr.strip().splitlines() or ["(no output)"])[0]
        raise CBackendUnavailable(f"the C managers do not build with {' '.join('-D' + d for d in defines) or 'no defines'}: "
                                  f"{first}")
    os.replace(tmp, out)        # atomic: a concurrent build of the same key loses nothing
    return out
