"""What mutation testing compares of two models' state spaces, in Python and in C.

``mutate`` calls a surviving mutant *equivalent* when it reaches the original's
set of states (outside the rewritten region).  The sets are compared by an
order-independent fingerprint: every state reached is *observed* (mapped onto
the original's layout, the variables no behaviour depends on reset, put in a
canonical form under the original's thread symmetry), the observed vector is
hashed, and the distinct hashes are counted and summed, once per set of hidden
program counters.

The same observer runs in two places that must agree bit for bit, since a
mutant searched natively is compared with an original searched in Python when
the C compiler refuses one of them: ``Observer.vector`` in Python, and
``Observer.c_source`` compiled into the native search (``model/compile_c.py``,
``OBSERVER_C``), with the same hash (``obs_hash``).  The native search then
computes a mutant's fingerprints at C speed, where the Python search paid some
20 microseconds a state; a test holds the two to the same numbers.
"""
from __future__ import annotations

from ..model.compile import symmetry_groups
from ..model.program import Model

MOD64 = (1 << 64) - 1
_H0, _K = 0x9E3779B97F4A7C15, 0x632BE59BD9B4E019
MAX_WATCHED = 8          # threads whose pcs the C observer packs into one 64-bit combination, 8 bits each
MAX_PC = 255


def _mix(x: int) -> int:
    x ^= x >> 33
    x = (x * 0xFF51AFD7ED558CCD) & MOD64
    x ^= x >> 33
    x = (x * 0xC4CEB9FE1A85EC53) & MOD64
    return x ^ (x >> 33)


def obs_hash(v) -> int:
    """The 64-bit hash of an observed vector (OBSERVER_C's obs_hash, value for value)."""
    h = _H0
    for i, x in enumerate(v):
        h = _mix(h ^ (((x & MOD64) + _K * (i + 1)) & MOD64))
    return h


def projection(mutant_model: Model, original: Model):
    """None when both have one layout; else, per slot of the original's layout, the mutant's slot it comes from
    and, for a pc, the original's pc of each of the mutant's (None: a step the original lacks)."""
    ml, ol = mutant_model.layout, original.layout
    names = ml.var_names()
    if names == ol.var_names() and ml.labels == ol.labels:
        return None
    pcs = {ml.pc_slot(t): [ol.labels[t].index(l) if l in ol.labels[t] else None for l in ml.labels[t]]
           for t in range(len(ml.labels))}
    return [(names.index(n), pcs.get(names.index(n))) for n in ol.var_names()]


class Observer:
    """A state of ``model`` as equivalence sees it: projected onto ``original``'s layout, the slots named in
    ``blank`` (layout names of the original) reset to their initial values, and, with ``symmetry``, the slices
    of each group of interchangeable threads (each tagged with whether that thread owns each lock) sorted, an
    owner word naming a group member replaced by the group's marker: the orbit's canonical form, as
    ``compile._emit_canon`` builds it, but as a vector of values rather than packed bytes."""

    def __init__(self, model: Model, original: Model, symmetry: bool, blank=()):
        self.model = model
        self.order = projection(model, original)
        ol = original.layout
        self.size = ol.size
        self.blank = [(i, d.init) for i, d in enumerate(ol.decls) if d.name in set(blank)]
        self.groups = symmetry_groups(original) if symmetry else []
        self.n_shared = len(original.shared)
        self.owners = [i for i, d in enumerate(ol.decls) if d.kind == "owner"]
        self.member_of = {t: gi for gi, g in enumerate(self.groups) for t in g}
        self.slices = ol.thread_slices
        self.rest = [t for t in range(len(original.threads)) if t not in self.member_of]

    # ---------------------------------------------------------------- Python
    def vector(self, s):
        """The observed vector of state ``s``, or None for a state with a thread at a step the original lacks."""
        if self.order is not None:
            out = []
            for j, table in self.order:
                v = s[j] if table is None else table[s[j]]
                if v is None:
                    return None
                out.append(v)
            s = out
        if self.blank:
            s = list(s)
            for i, v in self.blank:
                s[i] = v
        if not self.groups:
            return tuple(s)
        own = [s[k] for k in self.owners]
        out = []
        for i in range(self.n_shared):
            v = s[i]
            if i in self.owners and v - 1 in self.member_of:
                v = -(self.member_of[v - 1] + 2)
            out.append(v)
        for g in self.groups:
            rows = sorted(tuple(s[a:b]) + tuple(int(o == t + 1) for o in own)
                          for t in g for a, b in [self.slices[t]])
            for r in rows:
                out.extend(r)
        for t in self.rest:
            a, b = self.slices[t]
            out.extend(s[a:b])
        return tuple(out)

    @property
    def length(self) -> int:
        return self.size + sum(len(g) for g in self.groups) * len(self.owners)

    # ---------------------------------------------------------------- C
    def c_source(self, watch_slots) -> str:
        """``obs_vec`` and ``obs_combo`` in C for ``model/compile_c.py``: the same vector as ``vector``, and
        the pcs of the mutant's slots ``watch_slots`` packed 8 bits each (recorded in ``pdd_obs_reached``).
        Raises ValueError where the packing does not fit (more than 8 watched threads, a pc above 255)."""
        lay = self.model.layout
        if len(watch_slots) > MAX_WATCHED:
            raise ValueError(f"{len(watch_slots)} watched threads (the C observer packs at most {MAX_WATCHED})")
        for slot in watch_slots:
            t = lay.pc_index.index(slot)
            if len(lay.labels[t]) - 1 > MAX_PC:
                raise ValueError(f"thread {t} has {len(lay.labels[t])} steps (the C observer packs pcs up to "
                                 f"{MAX_PC})")
        L = self.length
        out = [f"#define OBS_LEN {L}", f"#define OBS_NW {len(watch_slots)}",
               "uint8_t pdd_obs_reached[OBS_NW > 0 ? OBS_NW : 1][256];"]
        tables = []
        out.append("static inline u64 obs_combo(const sv_t *s) {")
        out.append("    u64 c = 0;")
        for i, slot in enumerate(watch_slots):
            out.append(f"    c |= (u64)(uint8_t)s[{slot}] << {8 * i}; pdd_obs_reached[{i}][(uint8_t)s[{slot}]] = 1;")
        out.append("    return c;")
        out.append("}")
        body = [f"    i64 o[{max(1, self.size)}];"]
        blank = dict(self.blank)
        for j in range(self.size):
            if j in blank:
                body.append(f"    o[{j}] = INT64_C({blank[j]});")
                continue
            src, table = (j, None) if self.order is None else self.order[j]
            if table is None:
                body.append(f"    o[{j}] = s[{src}];")
            else:
                name = f"OBSPC{j}"
                tables.append(f"static const int16_t {name}[] = {{{', '.join(str(-1 if x is None else x) for x in table)}}};")
                body.append(f"    if ((u64)s[{src}] >= {len(table)} || (o[{j}] = {name}[s[{src}]]) < 0) return 0;")
        if not self.groups:
            body.append(f"    memcpy(v, o, sizeof(i64) * {self.size});")
        else:
            for k in self.owners:
                body.append(f"    i64 own{k} = o[{k}];")
            pos = 0
            for i in range(self.n_shared):
                if i in self.owners and self.member_of:
                    conds = " ".join(f"own{i} == {t + 1} ? INT64_C({-(gi + 2)}) :" for t, gi in self.member_of.items())
                    body.append(f"    v[{pos}] = {conds} own{i};")
                else:
                    body.append(f"    v[{pos}] = o[{i}];")
                pos += 1
            for gi, g in enumerate(self.groups):
                a0, b0 = self.slices[g[0]]
                w = (b0 - a0) + len(self.owners)
                body.append(f"    {{ i64 r[{len(g)}][{w}]; int ix[{len(g)}];")
                for m, t in enumerate(g):
                    a, b = self.slices[t]
                    for q in range(b - a):
                        body.append(f"      r[{m}][{q}] = o[{a + q}];")
                    for q, k in enumerate(self.owners):
                        body.append(f"      r[{m}][{b - a + q}] = own{k} == {t + 1};")
                    body.append(f"      ix[{m}] = {m};")
                # insertion sort of the rows' indices, lexicographic over signed values (Python's tuple order)
                body.append(f"      for (int i = 1; i < {len(g)}; i++) {{ int x = ix[i], j = i - 1;")
                body.append(f"        while (j >= 0 && obs_less(r[x], r[ix[j]], {w})) {{ ix[j + 1] = ix[j]; j--; }}")
                body.append("        ix[j + 1] = x; }")
                body.append(f"      for (int m = 0; m < {len(g)}; m++) memcpy(v + {pos} + m * {w}, r[ix[m]], "
                            f"sizeof(i64) * {w});")
                body.append("    }")
                pos += len(g) * w
            for t in self.rest:
                a, b = self.slices[t]
                if b > a:
                    body.append(f"    memcpy(v + {pos}, o + {a}, sizeof(i64) * {b - a});")
                    pos += b - a
            assert pos == L, (pos, L)
        out += tables
        out.append("static inline int obs_less(const i64 *a, const i64 *b, int n) {")
        out.append("    for (int i = 0; i < n; i++) if (a[i] != b[i]) return a[i] < b[i];")
        out.append("    return 0;")
        out.append("}")
        out.append("static int obs_vec(const sv_t *s, i64 *v) {")
        out += body
        out.append("    return 1;")
        out.append("}")
        return "\n".join(out)


class Fingerprints:
    """Order-independent fingerprints of sets of states, one per hidden set ({thread: pcs}): the number of
    distinct observed vectors, and their 64-bit hashes summed mod 2^64, over the states in which no thread is
    at one of the set's hidden pcs.  With ``reached``, also the pcs each thread reached."""

    def __init__(self, layout, hidden_sets, reached=False, watch_all=False):
        self.n = len(hidden_sets)
        slots = [layout.pc_slot(t) for t in range(len(layout.labels))]
        excl = [[0] * len(layout.labels[t]) for t in range(len(slots))]
        for k, hidden in enumerate(hidden_sets):
            for t, pcs in hidden.items():
                for pc in pcs:
                    excl[t][pc] |= 1 << k
        # only the threads that hide something (or all of them, to record what they reach) are looked at
        # (``watch_all``: every thread, so that mutants of different programs share one compiled observer)
        self.watch = [(slot, excl[t]) for t, slot in enumerate(slots) if reached or watch_all or any(excl[t])]
        self.reached = [set() for _ in slots] if reached else None
        self.seen: set = set()
        self.sums: dict = {}          # bit mask of the hidden sets a state is hidden from -> (count, sum)

    def _mask(self, pcs) -> int:
        m = 0
        for (_, excl), pc in zip(self.watch, pcs):
            m |= excl[pc]
        return m

    def _count(self, m, n, h):
        c = self.sums.get(m)
        self.sums[m] = (c[0] + n, (c[1] + h) & MOD64) if c else (n, h & MOD64)

    def add(self, s, vector):
        """One state reached, ``vector`` its observed vector (None: hidden from every set, not counted)."""
        pcs = [s[slot] for slot, _ in self.watch]
        if self.reached is not None:
            for t, pc in enumerate(pcs):
                self.reached[t].add(pc)
        if vector is None:
            return
        h = obs_hash(vector)
        if h in self.seen:            # another state with the same observable part
            return
        self.seen.add(h)
        self._count(self._mask(pcs), 1, h)

    def add_native(self, lib):
        """What the native search's observer collected (``OBSERVER_C``), as ``add`` would have counted it."""
        import ctypes
        n = lib.pdd_obs_combos()
        combo, count, total = ((ctypes.c_uint64 * max(1, n))() for _ in range(3))
        got = lib.pdd_obs_result(combo, count, total, n)
        # only the threads that hide something decide a combination's mask (``watch_all`` watches the rest too)
        live = [(8 * w, excl) for w, (_, excl) in enumerate(self.watch) if any(excl)]
        for i in range(got):
            c = combo[i]
            m = 0
            for sh, excl in live:
                m |= excl[(c >> sh) & 0xFF]
            self._count(m, count[i], total[i])
        if self.reached is not None:
            table = (ctypes.c_uint8 * 256 * max(1, len(self.watch))).in_dll(lib, "pdd_obs_reached")
            for t in range(len(self.watch)):
                self.reached[t] |= {pc for pc in range(256) if table[t][pc]}

    def result(self) -> list:
        out = []
        for k in range(self.n):
            n = h = 0
            for m, (c, s) in self.sums.items():
                if not m >> k & 1:
                    n, h = n + c, (h + s) & MOD64
            out.append((n, h))
        return out
