"""Find the seed nodes of a graph query.

Four ways, tried in this order (:func:`find_seeds`):

1. **Seed phrase** (``query.parsed.seed``, filled by query understanding for
   "artists like radiohead"): the phrase is normalised with
   :func:`ltrr.catalog.normalize.normalize_name` (the catalog's join key) and
   looked up in an exact title index; among several nodes with that title,
   artists come first, then tracks, playlists, podcasts, tags, then higher
   popularity. If nothing matches exactly, a fuzzy fallback: character-trigram
   candidates (Dice coefficient over posting lists, numpy), re-scored with
   :class:`difflib.SequenceMatcher`; the best ratio >= ``fuzzy_cutoff`` wins.
   If that fails too, artist names contained in the phrase (step 2) are tried.
2. **Contained names** (no seed phrase): every n-gram (n <= 6) of the
   normalised query text is looked up among *artist* titles; the longest match
   wins, then the more popular; further non-overlapping matches are kept too
   ("radiohead and muse"). n-grams made only of common query words
   (:data:`STOPWORDS`: "love", "live", "music", ... are also artist names) are
   skipped, and so are n-grams lying inside a genre/tag phrase that query
   understanding recognised ("death" in "death metal"; a longer name around
   one, "iron jesus" around the tag "jesus", is still a name).
3. **Facets** (method ``"tag"``): every genre and tag of ``query.parsed`` whose
   tag node exists (:func:`ltrr.catalog.normalize.tag_node_id`; the catalog
   keeps genres and tags as the same ``tag:<label>`` nodes, so a genre and a
   tag with one normalised label are one seed). Weights are proportional to
   the facet confidences (``confidence["genre:<g>"]``, ``confidence["tag:<t>"]``,
   the larger of the two for a shared node, :data:`DEFAULT_FACET_CONFIDENCE` when
   missing); ``matched`` is the confidence key.
4. **Profile** (``query.parsed.personal``, or neither names nor facets found
   but the user has a profile): the user's top artists, with their profile
   weights.

Mixing. Each kind is normalised to sum 1 on its own, then:

* names and facets together ("radiohead female vocalists"): the names keep
  ``1 - facet_mix`` of the restart mass and the facets ``facet_mix``. The
  strategy walks the two parts apart and ranks by the weighted geometric mean
  of their masses (:func:`graph.ppr.geometric_mix`), so the entities tied to
  both (female vocalists that Radiohead's listeners play) come first;
* profile with names or facets (a personal query): the query's seeds keep
  ``1 - profile_mix`` and the profile ``profile_mix``.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Callable, Iterable, Mapping

import networkx as nx
import numpy as np
import numpy.typing as npt

from ltrr.catalog.normalize import normalize_name, tag_node_id
from ltrr.types import ParsedQuery, Query, UserProfile

TYPE_PREFERENCE: Mapping[str, int] = {"artist": 0, "track": 1, "playlist": 2, "podcast": 3, "tag": 4}
MAX_NGRAM = 6
STOPWORDS = frozenset(
    """a an and or the of in on at to for from by with without about into over under up down out off
    i me my mine we our you your he she it its they them their this that these those is are was were be been
    am do does did have has had can could would should will shall may might must not no yes so very just
    like similar sounds sound sounding such as same kind sort type more less some any all other others
    artist artists band bands singer singers musician musicians group groups song songs track tracks tune
    tunes music playlist playlists podcast podcasts show shows episode episodes album albums record records
    mix mixes radio station play playing listen listening hear new old best top hits hit greatest classic
    classics popular favourite favorite favourites favorites good great love live life time day night
    morning evening summer winter spring autumn fall christmas party dance dancing workout gym running run
    sleep sleeping study studying focus work chill relax relaxing happy sad mood vibes vibe feel feeling
    today tonight now something stuff things thing recommend recommendations want need give find get make
    please some someone anything everything remix remixes cover covers version acoustic instrumental
    rock pop jazz rap metal soul funk blues folk country punk indie house techno trance edm latin""".split()
)
#: Weight of a facet whose confidence query understanding did not give.
DEFAULT_FACET_CONFIDENCE = 0.5


@dataclass(frozen=True)
class Seed:
    """One seed node: ``weight`` is its restart probability share, ``method`` how it was found."""

    node_id: str
    weight: float
    method: str
    matched: str = ""


@dataclass(frozen=True)
class SeedResult:
    """The seeds of one query (empty: no seed; ``method`` is then ``"none"``)."""

    seeds: tuple[Seed, ...] = ()

    @property
    def method(self) -> str:
        return "+".join(dict.fromkeys(s.method for s in self.seeds)) or "none"

    def weights(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for s in self.seeds:
            out[s.node_id] = out.get(s.node_id, 0.0) + s.weight
        return out


def _grams(key: str) -> list[str]:
    padded = f" {key} "
    return list(dict.fromkeys(padded[i : i + 3] for i in range(len(padded) - 2)))


@dataclass
class _Meta:
    key: str
    rank: int
    popularity: float


@dataclass
class SeedIndex:
    """Exact and fuzzy title lookup over graph nodes; updated in place by :meth:`add`.

    Not thread-safe for writes: the graph strategy publishes an index to searches and then never
    changes it; a change goes into a :meth:`copy` (copy-on-write, see :mod:`graph.snapshot`).
    """

    _nodes: dict[str, list[str]] = field(default_factory=dict)  # key -> node ids
    _meta: dict[str, _Meta] = field(default_factory=dict)  # node id -> meta
    _keys: list[str] = field(default_factory=list)  # fuzzy key id -> key
    _key_id: dict[str, int] = field(default_factory=dict)
    _postings: dict[str, npt.NDArray[np.int32]] = field(default_factory=dict)
    _gram_count: npt.NDArray[np.float64] = field(default_factory=lambda: np.zeros(0))
    _pending: list[int] = field(default_factory=list)  # key ids not yet in _postings

    @classmethod
    def from_graph(cls, G: nx.Graph) -> SeedIndex:
        """Index every node of ``G`` with a title."""
        idx = cls()
        for node, data in G.nodes(data=True):
            idx.add(node, data.get("title", ""), data.get("entity_type", ""), data.get("popularity", 0.0))
        idx.compact()
        return idx

    def __len__(self) -> int:
        return len(self._meta)

    def copy(self) -> SeedIndex:
        """An index that :meth:`add` and :meth:`compact` can change without touching this one.

        Shallow: the containers are copied (pointer copies, :math:`O(\\text{titles})`), their values
        shared. That is safe because neither method mutates a value in place: a title bucket, a
        :class:`_Meta`, a posting array and ``_gram_count`` are replaced, never changed.
        """
        return SeedIndex(
            dict(self._nodes),
            dict(self._meta),
            list(self._keys),
            dict(self._key_id),
            dict(self._postings),
            self._gram_count,
            list(self._pending),
        )

    def __contains__(self, node_id: object) -> bool:
        return node_id in self._meta

    @property
    def pending(self) -> int:
        """How many new titles are not yet in the posting lists (see :meth:`compact`)."""
        return len(self._pending)

    def add(self, node_id: str, title: str, entity_type: str, popularity: float = 0.0) -> None:
        """Add or update one node (a changed title moves it to its new key)."""
        key = normalize_name(title) if title.strip() else ""
        old = self._meta.get(node_id)
        if old is not None:
            if old.key != key and node_id in self._nodes.get(old.key, ()):
                self._nodes[old.key] = [n for n in self._nodes[old.key] if n != node_id]  # a new list: see copy()
        if not key:
            self._meta.pop(node_id, None)
            return
        self._meta[node_id] = _Meta(key, TYPE_PREFERENCE.get(entity_type, len(TYPE_PREFERENCE)), float(popularity))
        bucket = self._nodes.get(key, [])
        self._nodes[key] = sorted(bucket if node_id in bucket else [*bucket, node_id], key=self._preference)
        if key not in self._key_id:
            self._key_id[key] = len(self._keys)
            self._keys.append(key)
            self._pending.append(self._key_id[key])

    def _preference(self, node_id: str) -> tuple[int, float, str]:
        m = self._meta[node_id]
        return (m.rank, -m.popularity, node_id)

    def compact(self) -> None:
        """Fold pending keys into the numpy posting lists (cost: their grams plus the postings they touch)."""
        if not self._pending:
            return
        added: dict[str, list[int]] = {}
        counts: list[float] = []
        for kid in self._pending:
            grams = _grams(self._keys[kid])
            counts.append(len(grams))
            for g in grams:
                added.setdefault(g, []).append(kid)
        for g, ids in added.items():
            new = np.asarray(ids, dtype=np.int32)
            old = self._postings.get(g)
            self._postings[g] = new if old is None else np.concatenate((old, new))
        self._gram_count = np.concatenate((self._gram_count, np.asarray(counts, dtype=np.float64)))
        self._pending = []

    # -- lookups --------------------------------------------------------------
    def exact(self, phrase: str, types: Iterable[str] | None = None) -> list[str]:
        """Nodes whose normalised title equals the normalised ``phrase``, best first."""
        nodes = self._nodes.get(normalize_name(phrase), [])
        if types is None:
            return list(nodes)
        allowed = {TYPE_PREFERENCE.get(t, -1) for t in types}
        return [n for n in nodes if self._meta[n].rank in allowed]

    def fuzzy(self, phrase: str, cutoff: float = 0.85, n_candidates: int = 12) -> tuple[str, float] | None:
        """The best node whose title is within ``cutoff`` (SequenceMatcher ratio) of ``phrase``."""
        q = normalize_name(phrase)
        if not q or not self._keys:
            return None
        qgrams = _grams(q)
        cands: list[int] = []
        gram_count = self._gram_count
        arrays = [self._postings[g] for g in qgrams if g in self._postings]
        if arrays and gram_count.size:
            counts = np.bincount(np.concatenate(arrays), minlength=gram_count.size)[: gram_count.size]
            dice = 2.0 * counts / (len(qgrams) + gram_count)
            top = np.argpartition(-dice, min(n_candidates, dice.size - 1))[:n_candidates]
            cands = [int(i) for i in top if dice[i] > 0]
        qset = set(qgrams)
        cands += [kid for kid in self._pending if qset.intersection(_grams(self._keys[kid]))]
        best: tuple[float, tuple[int, float, str], str] | None = None
        for kid in cands:
            key = self._keys[kid]
            nodes = self._nodes.get(key)
            if not nodes:
                continue
            ratio = difflib.SequenceMatcher(None, q, key, autojunk=False).ratio()
            if ratio < cutoff:
                continue
            cand = (ratio, self._preference(nodes[0]), nodes[0])
            if best is None or (-cand[0], cand[1]) < (-best[0], best[1]):
                best = cand
        return (best[2], best[0]) if best else None

    def contained(self, text: str, blocked: Iterable[str] = (), limit: int = 5) -> list[tuple[str, str]]:
        """Artist names inside ``text``: ``[(node_id, matched key)]``, longest first, non-overlapping.

        An n-gram lying inside an occurrence of a ``blocked`` phrase (a recognised genre or tag) is skipped.
        """
        tokens = normalize_name(text).split()
        inside = _blocked_spans(tokens, blocked)
        found: list[tuple[int, float, int, int, str, str]] = []
        for n in range(min(MAX_NGRAM, len(tokens)), 0, -1):
            for i in range(len(tokens) - n + 1):
                words = tokens[i : i + n]
                if all(w in STOPWORDS for w in words):
                    continue
                if any(a <= i and i + n <= b for a, b in inside):
                    continue
                key = " ".join(words)
                while key.startswith("the ") and len(key) > 4:
                    key = key[4:]
                if n == 1 and len(key) < 3:
                    continue
                artists = [x for x in self._nodes.get(key, ()) if self._meta[x].rank == 0]
                if artists:
                    found.append((-n, -self._meta[artists[0]].popularity, i, i + n, artists[0], key))
        found.sort()
        taken: set[int] = set()
        out: list[tuple[str, str]] = []
        for _, _, start, end, node, key in found:
            span = set(range(start, end))
            if span & taken or any(node == o for o, _ in out):
                continue
            taken |= span
            out.append((node, key))
            if len(out) >= limit:
                break
        return out


def _blocked_spans(tokens: list[str], blocked: Iterable[str]) -> list[tuple[int, int]]:
    """``[start, end)`` token spans of every occurrence of a ``blocked`` phrase in ``tokens``."""
    spans: list[tuple[int, int]] = []
    for phrase in blocked:
        words = normalize_name(phrase).split() if phrase.strip() else []
        n = len(words)
        if n == 0:
            continue
        spans += [(i, i + n) for i in range(len(tokens) - n + 1) if tokens[i : i + n] == words]
    return spans


def facet_seeds(parsed: ParsedQuery, has_node: Callable[[str], bool]) -> list[Seed]:
    """Step 3: the tag nodes of the query's genres and tags, weighted by confidence (summing to 1)."""
    conf: dict[str, tuple[float, str]] = {}  # node -> (confidence, matched key)
    for kind, labels in (("genre", parsed.genres), ("tag", parsed.tags)):
        for label in labels:
            if not label.strip():
                continue
            node = tag_node_id(label)
            if not has_node(node):
                continue
            key = f"{kind}:{label}"
            c = float(parsed.confidence.get(key, DEFAULT_FACET_CONFIDENCE))
            if c > 0 and (node not in conf or c > conf[node][0]):
                conf[node] = (c, key)
    total = sum(c for c, _ in conf.values())
    return [Seed(node, c / total, "tag", key) for node, (c, key) in conf.items()] if total > 0 else []


def _scaled(seeds: list[Seed], factor: float) -> list[Seed]:
    return [Seed(s.node_id, s.weight * factor, s.method, s.matched) for s in seeds]


def find_seeds(
    query: Query,
    index: SeedIndex,
    profile_lookup: Callable[[str], UserProfile | None] | None = None,
    has_node: Callable[[str], bool] | None = None,
    fuzzy_cutoff: float = 0.85,
    max_profile_seeds: int = 10,
    profile_mix: float = 0.3,
    facet_mix: float = 0.5,
) -> SeedResult:
    """Seeds of ``query`` (see the module docstring).

    ``has_node`` tells which nodes the graph holds: facet tag nodes and profile
    artists are kept only if it does. Without it, facets need a node ``index``
    knows and profile artists are all kept.
    """
    in_graph: Callable[[str], bool] = has_node if has_node is not None else index.__contains__
    parsed = query.parsed
    blocked = tuple(parsed.genres) + tuple(parsed.tags)
    named: list[Seed] = []
    phrase = parsed.seed.strip()
    if phrase:
        hits = index.exact(phrase)
        if hits:
            named = [Seed(hits[0], 1.0, "exact", phrase)]
        else:
            fz = index.fuzzy(phrase, cutoff=fuzzy_cutoff)
            if fz is not None:
                named = [Seed(fz[0], 1.0, "fuzzy", phrase)]
            else:
                found = index.contained(phrase, blocked)
                named = [Seed(node, 1.0 / len(found), "contained", key) for node, key in found]
    else:
        found = index.contained(query.text or parsed.text, blocked)
        named = [Seed(node, 1.0 / len(found), "contained", key) for node, key in found]

    facets = [s for s in facet_seeds(parsed, in_graph) if all(s.node_id != n.node_id for n in named)]
    if named and facets:
        named, facets = _scaled(named, 1.0 - facet_mix), _scaled(facets, facet_mix)
    asked = named + facets

    profile: list[Seed] = []
    if (parsed.personal or not asked) and query.user_id and profile_lookup is not None:
        prof = profile_lookup(query.user_id)
        if prof is not None:
            top = [(a, w) for a, w in prof.top_artists if w > 0 and (has_node is None or has_node(a))]
            top = top[:max_profile_seeds]
            total = sum(w for _, w in top)
            profile = [Seed(a, w / total, "profile", query.user_id) for a, w in top] if total > 0 else []
    if asked and profile:
        asked, profile = _scaled(asked, 1.0 - profile_mix), _scaled(profile, profile_mix)
    return SeedResult(tuple(asked + profile))
