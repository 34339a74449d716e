"""Proof certificates: the mined invariants a proof kept, shipped beside its spec
(``specs/certificates/<spec>.json``) so that ``check --prove`` re-checks a proof
instead of searching for it again.

Searching is what makes a proof slow: sampling reachable states, mining
thousands of candidate invariants from them, and Houdini rounds that remove the
wrong ones a few at a time.  What the search ends with is small: the templates
(``model/lemmas.py``) of the candidates that survived.  A certificate is that
list and nothing else.

Checking one is an ordinary proof in which the certificate's templates are the
only mined candidates: z3 checks the base case and the induction step of their
conjunction with the spec's properties and named lemmas, from scratch, with the
same resource budget per query.  Nothing in the file is trusted.  A wrong or
stale template is dropped by Houdini like any wrong guess, and a property the
certificate no longer carries makes ``check --prove`` search in full
(``run_proof``), so a certificate makes a proof faster, never its verdict
different from one z3 can check.  A violation never needs one: BMC finds the
trace whatever the candidates are, so a certificate of a defect spec is empty.

Written by ``pddgpu-verify prove SPEC --write-certificate`` (``make
certificates`` for every shipped spec).
"""
from __future__ import annotations

import json
from pathlib import Path

from .spec import SpecError

FORMAT = "pddgpu-verify proof certificate 1"


def path_for(spec) -> Path:
    return Path(spec.path).parent / "certificates" / (Path(spec.path).stem + ".json")


def _tuples(x):
    """JSON has lists only; templates are tuples (hashable: Houdini groups candidates by them)."""
    return tuple(_tuples(v) for v in x) if isinstance(x, list) else x


def load(spec) -> list | None:
    """The certificate's templates, or None when the spec has none.  A malformed file is bad input
    (``SpecError``, one line naming the file and the field)."""
    p = path_for(spec)
    if not p.is_file():
        return None
    try:
        data = json.loads(p.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise SpecError(p, "certificate", f"not readable JSON ({e})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise SpecError(p, "format", f"not a proof certificate (expected format {FORMAT!r})")
    tps = data.get("templates")
    if not isinstance(tps, list) or not all(isinstance(t, list) and t and isinstance(t[0], str) for t in tps):
        raise SpecError(p, "templates", "must be a list of templates, each a list starting with its kind")
    return [_tuples(t) for t in tps]


def write(spec, kept, results, *, any_workers: bool) -> tuple[Path, int]:
    """Write what a proof kept (``kept``: the templates of its surviving mined candidates, from ``kept_out``):
    all of them when some property was PROVED, none when none was or when the spec expects a violation (a
    violation needs no invariant).
    ``results`` (the proof's ProofResults) are recorded for a reader only.  Returns the file and how many
    invariants it holds."""
    from .prove import PROVED
    p = path_for(spec)
    p.parent.mkdir(parents=True, exist_ok=True)
    props = [r for r in results if r.kind == "property"]
    proved = sorted(r.name for r in props if r.verdict == PROVED)
    # check --prove asks z3 only for a defect spec's violation, which BMC finds without any invariant
    templates = list(dict.fromkeys(kept)) if proved and spec.expect_verdict != "VIOLATION" else []
    head = {"format": FORMAT, "spec": spec.name,
            "scope": "any number of workers" if any_workers else "the spec's threads",
            "proved": proved, "not_proved": {r.name: r.verdict for r in props if r.verdict != PROVED}}
    # one template a line: a re-written certificate diffs by the invariants that changed
    body = json.dumps(head, indent=1)[:-2] + ',\n "templates": [\n' + ",\n".join(
        "  " + json.dumps(list(tp)) for tp in templates) + "\n ]\n}\n"
    tmp = p.with_suffix(".tmp")
    tmp.write_text(body)
    tmp.replace(p)
    return p, len(templates)
