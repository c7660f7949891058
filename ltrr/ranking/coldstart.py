r"""Predicted queries: the training set of the first ranker, before any click exists.

The learned ranker (:mod:`ltrr.ranking.catboost`) is trained on logged clicks; at ingest time there
are none. Instead, :func:`predicted_queries` draws from the catalog the queries users would type,
each with the entities it is meant to find, graded as a learning-to-rank label. Running them
through the real retrieval strategies and labelling the intended entities is the caller's job;
this module only writes the queries.

The query memory (:func:`ltrr.strategies.memory.predict_queries`) already holds each entity's
exact title, title + artist and title + first tag, and retrieves exactly those. A cold-start set
made only of them would teach the ranker that memory is always right; so most of the mix is
queries memory does not hold verbatim (prefixes, misspellings, "artists like X", a tag alone).

Kinds, with the query text (always :func:`~ltrr.query_understanding.normalize_text`) and the graded
entities it should find (entity id -> grade):

* ``name``: the title (tracks: :func:`~ltrr.sim.users.short_title`, "Song - Remastered" -> "song").
  The entity 3; up to :data:`MAX_SAME_TEXT` other entities with the same text 2, most popular first
  (the text cannot tell them apart).
* ``prefix``: the first ``m`` characters of that text, a user still typing (:func:`prefix_lengths`:
  at least 4 characters and half the text, never all of it). The entity 3.
* ``typo``: the text with one realistic misspelling (:func:`ltrr.sim.typos.misspell`). As ``name``.
* ``similar``: ``"artists like X"``. X's ``similar`` neighbours by co-listening weight, ranks 1-3
  -> 2 and 4-6 -> 1 (:data:`SIMILAR_GRADES`); X itself is not relevant (the user asked for others).
* ``tag``: a genre or tag alone, carried by at least :data:`MIN_TAG_CARRIERS` entities and at most
  :data:`MAX_TAG_WORDS` words. Its carriers by popularity, ranks 1-3 -> 2 and 4-10 -> 1
  (:data:`TAG_GRADES`).
* ``track_by``: ``"<short track title> <artist>"`` (the track's subtitle). As ``name``.

**Sampling.** Each kind gets :math:`n_k \approx n\,w_k / \sum_j w_j` queries (largest remainder, so
the shares add up to ``n``) of :data:`DEFAULT_MIX` or ``mix``. Within a kind, items are drawn without
replacement with probability proportional to a weight (Efraimidis & Spirakis, IPL 2006: the
:math:`n_k` largest keys :math:`\ln(u_i)/w_i`, :math:`u_i \sim U(0, 1]`): entities by
:math:`1 + \text{popularity}` (popularity in [0, 100], so the most popular artist is about 100 times as
likely as an unknown one, yet the sample is not only the top), tags by :math:`\sqrt{\text{carriers}}`
(users do not type only "pop" and "rock"). A drawn item that gives no usable query (see below), or a
text already used by an earlier query, is passed over for the next one. A kind whose pool runs out
gives fewer queries, so the result holds *at most* ``n``. Each kind draws from its own random stream
(seeded by ``seed`` and the kind), so changing one kind's weight leaves the other kinds' draws
alone except for cross-kind text collisions. The final list is shuffled by the same seed.

**What a user types.** Titles are normalised with :func:`~ltrr.query_understanding.normalize_text`
(what the ingress does to the query); an entity whose normalised title is empty (only emoji or
punctuation) or longer than :data:`MAX_TITLE_CHARS` characters is skipped. A misspelling that is
another entity's exact text is skipped (it would not be a typo to the ranker). ``"artists like X"``
is kept only if :class:`~ltrr.query_understanding.QueryUnderstanding` parses X as the seed, and a
tag only if it parses as a genre or tag with nothing left over, so the strategies see what the query
was meant to say.

**Similar neighbours.** ``similar`` relations are read as undirected, an edge's weight being the
larger of its two directions, as :mod:`graph.build` reads them; only artist entities of the catalog
count, and an artist needs :data:`MIN_NEIGHBOURS` of them to seed a query.

Everything is one pass over the store's entities and one over its relations, then pure functions
of that and the seed: the same store, ``n``, ``mix`` and ``seed`` give the same list.
"""

from __future__ import annotations

import math
import random
from collections import defaultdict
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Any, Callable, Iterable, Mapping, Sequence

from ltrr.catalog.store import CatalogBase
from ltrr.query_understanding import QueryUnderstanding, Vocabulary, normalize_text
from ltrr.sim.typos import can_misspell, misspell
from ltrr.sim.users import short_title

KINDS: tuple[str, ...] = ("name", "prefix", "typo", "similar", "tag", "track_by")
#: Share of each kind when ``mix`` is not given. ``name`` and ``track_by`` (35%) are mostly what the
#: query memory holds verbatim; the other 65% are not.
DEFAULT_MIX: Mapping[str, float] = {
    "name": 0.25, "prefix": 0.2, "typo": 0.15, "similar": 0.15, "tag": 0.15, "track_by": 0.1,
}  # fmt: skip
MAX_QUERIES = 1_000_000
#: Longer normalised titles are not something a user types.
MAX_TITLE_CHARS = 60
#: A prefix keeps at least this many characters and at least this share of the title.
MIN_PREFIX_CHARS = 4
MIN_PREFIX_SHARE = 0.5
#: An artist needs this many catalog neighbours to seed an "artists like X" query.
MIN_NEIGHBOURS = 3
#: A tag query needs this many carrying entities (and parses as a tag, see the module docstring).
MIN_TAG_CARRIERS = 10
MAX_TAG_WORDS = 3
INTENDED_GRADE = 3.0
SAME_TEXT_GRADE = 2.0
#: At most this many other entities with the intended entity's text are graded :data:`SAME_TEXT_GRADE`.
MAX_SAME_TEXT = 5
#: Grade by rank (1-based position in the tuple) of X's neighbours / a tag's carriers; later ranks are 0.
SIMILAR_GRADES: tuple[float, ...] = (2.0, 2.0, 2.0, 1.0, 1.0, 1.0)
TAG_GRADES: tuple[float, ...] = (2.0, 2.0, 2.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0)


@dataclass(frozen=True)
class PredictedQuery:
    """One predicted query: its text, its kind (:data:`KINDS`) and the graded entities it should find."""

    text: str
    kind: str
    relevant: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"text": self.text, "kind": self.kind, "relevant": dict(self.relevant)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> PredictedQuery:
        return cls(str(d["text"]), str(d["kind"]), {str(k): float(v) for k, v in d.get("relevant", {}).items()})


def prefix_lengths(text: str) -> tuple[int, ...]:
    """The prefix lengths ``m`` a ``prefix`` query of ``text`` may have, shortest first.

    :math:`\\max(4, \\lceil 0.5\\,L \\rceil) \\le m \\le L - 1` for a text of ``L`` characters (shorter
    than that says too little, the whole text is a ``name`` query), and the prefix does not end in a
    space (a user who typed "dance " is still typing "dance"). A cut inside a word is kept: that is
    what search-as-you-type sees. ``"radiohead"`` -> 5..8; texts under 5 characters have none.
    """
    lo = max(MIN_PREFIX_CHARS, math.ceil(MIN_PREFIX_SHARE * len(text)))
    return tuple(m for m in range(lo, len(text)) if text[m - 1] != " ")


# -- the catalog, read once ---------------------------------------------------------------
@dataclass(frozen=True)
class _Item:
    """One typeable entity: its id, type, popularity, the text a user types for it, and its artist."""

    entity_id: str
    entity_type: str
    popularity: float
    text: str
    artist: str


class _Catalog:
    """What the draws need from the store, read once; lists are sorted only for the items drawn."""

    def __init__(self, store: CatalogBase, understanding: QueryUnderstanding | None, *, similar: bool) -> None:
        """One pass over the entities; one over the relations only when ``similar`` queries are wanted."""
        entities = [e for _, batch in store.entities_since(0, batch_size=5000) for e in batch]
        entities.sort(key=attrgetter("entity_id"))  # independent of the store's write order
        self._entities = entities
        self._understanding = understanding
        self.popularity = {e.entity_id: float(e.popularity) for e in entities}
        self.items: list[_Item] = []
        #: query text -> entity ids whose text (or "title artist") it is
        self.by_text: dict[str, list[str]] = defaultdict(list)
        #: normalised genre/tag -> the entities carrying it
        self.carried: dict[str, set[str]] = defaultdict(set)
        labels: dict[str, str] = {}  # normalize_text memo: a few thousand labels on 60k entities
        for e in entities:
            for label in (*e.genres, *e.tags):
                key = labels.get(label)
                if key is None:
                    key = labels[label] = normalize_text(label)
                if key:
                    self.carried[key].add(e.entity_id)
            text = normalize_text(short_title(e.title) if e.entity_type == "track" else e.title)
            if not text or len(text) > MAX_TITLE_CHARS:
                continue
            artist = normalize_text(e.subtitle) if e.entity_type == "track" else ""
            if len(artist) > MAX_TITLE_CHARS:
                artist = ""
            self.items.append(_Item(e.entity_id, e.entity_type, float(e.popularity), text, artist))
            self.by_text[text].append(e.entity_id)
            if artist:
                self.by_text[f"{text} {artist}"].append(e.entity_id)
        #: artist id -> {neighbour id: weight}, ``similar`` read as undirected (max of both directions)
        self.similar: dict[str, dict[str, float]] = defaultdict(dict)
        if similar:
            artists = {e.entity_id for e in entities if e.entity_type == "artist"}
            for r in store.relations_since(0):
                if r.kind != "similar" or r.src == r.dst or r.src not in artists or r.dst not in artists:
                    continue
                w = float(r.weight)
                for a, b in ((r.src, r.dst), (r.dst, r.src)):
                    if w > self.similar[a].get(b, -math.inf):
                        self.similar[a][b] = w

    @property
    def understanding(self) -> QueryUnderstanding:
        """The given parser, else one built from this catalog's genres and tags (on first use)."""
        if self._understanding is None:
            self._understanding = QueryUnderstanding(Vocabulary.from_entities(self._entities))
        return self._understanding

    def by_popularity(self, ids: Iterable[str]) -> list[str]:
        """``ids``, most popular first (ties: id)."""
        return sorted(ids, key=lambda e: (-self.popularity[e], e))

    def neighbours(self, artist: str) -> list[str]:
        """The artist's neighbours, heaviest first (ties: id)."""
        return [b for b, _ in sorted(self.similar.get(artist, {}).items(), key=lambda x: (-x[1], x[0]))]


# -- one query per drawn item ----------------------------------------------------------------
def _known_item(cat: _Catalog, text: str, key: str, entity_id: str, kind: str) -> PredictedQuery:
    """``entity_id`` at 3, the other entities whose text is ``key`` at 2 (the text cannot tell them apart)."""
    relevant = {entity_id: INTENDED_GRADE}
    others = cat.by_popularity(e for e in cat.by_text.get(key, ()) if e != entity_id)[:MAX_SAME_TEXT]
    relevant.update((e, SAME_TEXT_GRADE) for e in others)
    return PredictedQuery(text, kind, relevant)


def _ranked(ids: Sequence[str], grades: Sequence[float]) -> dict[str, float]:
    return {e: g for e, g in zip(ids, grades, strict=False)}


def _name(cat: _Catalog, it: _Item, rng: random.Random) -> PredictedQuery | None:
    return _known_item(cat, it.text, it.text, it.entity_id, "name")


def _prefix(cat: _Catalog, it: _Item, rng: random.Random) -> PredictedQuery | None:
    lengths = prefix_lengths(it.text)
    if not lengths:
        return None
    return PredictedQuery(it.text[: rng.choice(lengths)], "prefix", {it.entity_id: INTENDED_GRADE})


def _typo(cat: _Catalog, it: _Item, rng: random.Random) -> PredictedQuery | None:
    if not can_misspell(it.text):
        return None
    text = misspell(it.text, rng)
    if text in cat.by_text:  # another entity's real name: not a typo of this one
        return None
    return _known_item(cat, text, it.text, it.entity_id, "typo")


def _similar(cat: _Catalog, it: _Item, rng: random.Random) -> PredictedQuery | None:
    text = f"artists like {it.text}"
    if cat.understanding.parse(text).seed != it.text:  # e.g. "artists like dance music" -> seed "dance"
        return None
    return PredictedQuery(text, "similar", _ranked(cat.neighbours(it.entity_id), SIMILAR_GRADES))


def _tag(cat: _Catalog, tag: str, rng: random.Random) -> PredictedQuery | None:
    parsed = cat.understanding.parse(tag)
    if parsed.residual or not (parsed.tags or parsed.genres):
        return None
    return PredictedQuery(tag, "tag", _ranked(cat.by_popularity(cat.carried[tag]), TAG_GRADES))


def _track_by(cat: _Catalog, it: _Item, rng: random.Random) -> PredictedQuery | None:
    text = f"{it.text} {it.artist}"
    return _known_item(cat, text, text, it.entity_id, "track_by")


_Draw = Callable[[_Catalog, Any, random.Random], PredictedQuery | None]


def _pools(cat: _Catalog) -> dict[str, tuple[list[Any], list[float], _Draw]]:
    """kind -> (items, sampling weights, item -> query or None)."""
    pop = [1.0 + max(it.popularity, 0.0) for it in cat.items]
    artists = [
        (it, w) for it, w in zip(cat.items, pop, strict=True)
        if it.entity_type == "artist" and len(cat.similar.get(it.entity_id, ())) >= MIN_NEIGHBOURS
    ]  # fmt: skip
    tracks = [(it, w) for it, w in zip(cat.items, pop, strict=True) if it.entity_type == "track" and it.artist]
    tags = sorted(
        t for t, ids in cat.carried.items() if len(ids) >= MIN_TAG_CARRIERS and len(t.split()) <= MAX_TAG_WORDS
    )
    return {
        "name": (cat.items, pop, _name),
        "prefix": (cat.items, pop, _prefix),
        "typo": (cat.items, pop, _typo),
        "similar": ([a for a, _ in artists], [w for _, w in artists], _similar),
        "tag": (tags, [math.sqrt(len(cat.carried[t])) for t in tags], _tag),
        "track_by": ([t for t, _ in tracks], [w for _, w in tracks], _track_by),
    }


def _weighted_order(n_items: int, weights: Sequence[float], rng: random.Random) -> list[int]:
    """Indices in the order of a weighted draw without replacement (Efraimidis-Spirakis keys)."""
    keys = [math.log(1.0 - rng.random()) / w for w in weights]
    return sorted(range(n_items), key=lambda i: -keys[i])


def _quotas(n: int, mix: Mapping[str, float]) -> dict[str, int]:
    """``n`` split over the kinds in proportion to ``mix`` (largest remainder; ties: :data:`KINDS` order)."""
    total = sum(mix.values())
    exact = {k: n * mix.get(k, 0.0) / total for k in KINDS}
    quotas = {k: math.floor(v) for k, v in exact.items()}
    by_remainder = sorted(KINDS, key=lambda k: (-(exact[k] - quotas[k]), KINDS.index(k)))
    for k in by_remainder[: n - sum(quotas.values())]:
        quotas[k] += 1
    return quotas


def _validate(n: int, seed: int, mix: Mapping[str, float]) -> None:
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_QUERIES:
        raise ValueError(f"`n` must be an int in [1, {MAX_QUERIES}], got {n!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"`seed` must be an int, got {seed!r}")
    for kind, w in mix.items():
        if kind not in KINDS:
            raise ValueError(f"`mix` has unknown kind {kind!r}; valid: {', '.join(KINDS)}")
        if isinstance(w, bool) or not isinstance(w, int | float) or not math.isfinite(w) or w < 0:
            raise ValueError(f"`mix[{kind!r}]` must be a finite number >= 0, got {w!r}")
    if sum(mix.values()) <= 0:
        raise ValueError("`mix` must give at least one kind a weight > 0")


def predicted_queries(
    store: CatalogBase,
    n: int,
    *,
    seed: int = 0,
    mix: Mapping[str, float] | None = None,
    understanding: QueryUnderstanding | None = None,
) -> list[PredictedQuery]:
    """About ``n`` (at most ``n``) predicted queries of the catalog in ``store`` (see the module docstring).

    ``mix`` maps kinds (:data:`KINDS`) to weights >= 0, normalised here; a kind it leaves out gets
    weight 0. Default :data:`DEFAULT_MIX`: name 0.25, prefix 0.2, typo 0.15, similar 0.15, tag 0.15,
    track_by 0.1. ``understanding`` is the query parser the service uses (default: one built from
    this catalog's genres and tags with its default thresholds); it decides which "artists like X"
    and tag queries are kept. The store is only read. Raises :class:`ValueError` naming the
    argument for an invalid ``n``, ``seed`` or ``mix``.
    """
    mix = dict(DEFAULT_MIX if mix is None else mix)
    _validate(n, seed, mix)
    cat = _Catalog(store, understanding, similar=mix.get("similar", 0.0) > 0)
    quotas = _quotas(n, mix)
    out: list[PredictedQuery] = []
    seen: set[str] = set()
    for kind, (items, weights, draw) in _pools(cat).items():
        want = quotas[kind]
        if want == 0:
            continue
        rng = random.Random(f"ltrr.coldstart:{seed}:{kind}")
        got = 0
        for i in _weighted_order(len(items), weights, rng):
            q = draw(cat, items[i], rng)
            if q is None or q.text in seen:
                continue
            seen.add(q.text)
            out.append(q)
            got += 1
            if got == want:
                break
    random.Random(f"ltrr.coldstart:{seed}:order").shuffle(out)
    return out
