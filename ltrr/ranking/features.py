"""The ranker's feature schema: one row per candidate of the union, computed in the request path.

The service computes these features for every search, whichever ranker serves, and logs them with
the search (:func:`pack` / :func:`unpack`); training reads the logged rows, so what a model learns
from is exactly what it is served. :data:`SCHEMA_VERSION` names the schema: a log or a model of
another version is refused, never read with the wrong meaning.

Missing is kept apart from low: a strategy that did not retrieve a candidate leaves its
``<strategy>.rank`` and ``<strategy>.score`` NaN (CatBoost treats NaN as its own value), and a query
without a genre slot leaves ``slot.genre_match`` NaN rather than 0.

Schema 1 (:data:`NAMES`), by group:

* **retrieval**, for each strategy of the registry (lexical, vector, graph, memory, in that fixed
  order, so a model does not depend on which ones an app enables): ``<s>.rank`` (1-based),
  ``<s>.score`` (the strategy's own score; ``memory.score`` is the query memory's score for the
  (query, entity) pair), ``<s>.budget`` (the policy's k for ``s`` in this search, 0 if not called);
  ``rrf`` (the reciprocal-rank-fusion score) and ``n_strategies`` (how many retrieved it);
* **entity**: ``type.<artist|track|playlist|podcast>`` one-hot, ``popularity`` (0-100);
* **query-title match**, on rapidfuzz's default processing (lower case, alphanumerics): against the
  title ``title.exact``, ``title.prefix`` (the query is the start of the title, as typed so far),
  ``title.token_overlap`` (share of query tokens in the title), ``title.ratio``,
  ``title.token_set_ratio``, ``title.partial_ratio``; against the subtitle (a track's artist) the
  same three ratios and ``subtitle.token_overlap``; against the query-understanding residual
  (the query without its slot words) ``residual.ratio``, ``residual.token_set_ratio``; against the
  seed of an "artists like X" query ``seed.ratio`` and ``seed.is_title`` (the candidate *is* X,
  which that user did not ask for);
* **query-understanding slots**: ``slot.type_match`` / ``slot.genre_match`` / ``slot.tag_match``
  (1 if the candidate has a type / genre / tag the query named, 0 if not, NaN if the query named
  none), ``q.personal``, ``q.n_tokens``;
* **user-entity affinity**: ``user.known``, ``user.artist_weight`` (the weight of the entity, or a
  track's artist, among the user's top artists), ``user.tag_overlap`` (the summed weights of the
  user's top tags the entity carries); 0 for anonymous users;
* **query class**: the policy's ``class.*`` one-hot (:data:`ltrr.bandit.features.QUERY_CLASSES`).

Entity facts (popularity, tags, genres, a track's artist) come from the catalog through
:class:`FactsCache`, a bounded cache in each replica; an entity changed by ``UpsertEntities`` is
seen with its new facts once evicted or after the replica restarts.
"""

from __future__ import annotations

import base64
import zlib
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import numpy as np
from rapidfuzz import fuzz, process, utils

from ltrr.bandit.features import QUERY_CLASSES
from ltrr.catalog.normalize import normalize_tag
from ltrr.fusion import FusedCandidate
from ltrr.profiles import entity_artist
from ltrr.ranking.base import RankContext
from ltrr.strategies.registry import STRATEGY_NAMES
from ltrr.types import ENTITY_TYPES, Entity

SCHEMA_VERSION = 1
_MATCH = ("ratio", "token_set_ratio", "partial_ratio")
_SCORERS = {"ratio": fuzz.ratio, "token_set_ratio": fuzz.token_set_ratio, "partial_ratio": fuzz.partial_ratio}

NAMES: tuple[str, ...] = (
    *(f"{s}.{f}" for s in STRATEGY_NAMES for f in ("rank", "score", "budget")),
    "rrf",
    "n_strategies",
    *(f"type.{t}" for t in ENTITY_TYPES),
    "popularity",
    "title.exact",
    "title.prefix",
    "title.token_overlap",
    *(f"title.{m}" for m in _MATCH),
    *(f"subtitle.{m}" for m in _MATCH),
    "subtitle.token_overlap",
    "residual.ratio",
    "residual.token_set_ratio",
    "seed.ratio",
    "seed.is_title",
    "slot.type_match",
    "slot.genre_match",
    "slot.tag_match",
    "q.personal",
    "q.n_tokens",
    "user.known",
    "user.artist_weight",
    "user.tag_overlap",
    *(f"class.{c}" for c in QUERY_CLASSES),
)
INDEX: dict[str, int] = {n: i for i, n in enumerate(NAMES)}
DIM = len(NAMES)
_TYPE_COLS = [INDEX[f"type.{t}"] for t in ENTITY_TYPES]
_CLASS_COLS = [INDEX[f"class.{c}"] for c in QUERY_CLASSES]
_PASS_COLS = [INDEX[n] for n in ("rrf", "n_strategies", "popularity", "title.exact", "title.prefix",
                                 "title.token_overlap", "subtitle.token_overlap")]  # fmt: skip


@dataclass(frozen=True)
class EntityFacts:
    """What ranking needs of an entity beyond what a strategy returns, prepared once per entity
    (processed title and subtitle with their token sets: half the cost of a search's features)."""

    popularity: float
    genres: frozenset[str]
    tags: frozenset[str]
    artist: str  # the entity itself for an artist, a track's artist id, else ""
    title: str
    subtitle: str
    title_tokens: frozenset[str]
    subtitle_tokens: frozenset[str]

    @classmethod
    def of(cls, e: Entity) -> EntityFacts:
        return cls.make(
            e.title,
            e.subtitle,
            float(e.popularity),
            frozenset(normalize_tag(g) for g in e.genres),
            frozenset(normalize_tag(t) for t in e.tags),
            entity_artist(e),
        )

    @classmethod
    def make(cls, title: str, subtitle: str, popularity: float = 0.0, genres: frozenset[str] = frozenset(),
             tags: frozenset[str] = frozenset(), artist: str = "") -> EntityFacts:  # fmt: skip
        t, st = utils.default_process(title), utils.default_process(subtitle)
        return cls(popularity, genres, tags, artist, t, st, frozenset(t.split()), frozenset(st.split()))


class FactsCache:
    """Entity facts by id, read from ``get_many`` (the catalog) on a miss and kept, newest ``size``."""

    def __init__(self, get_many: Callable[[Sequence[str]], Mapping[str, Entity]], size: int = 200_000) -> None:
        self.get_many = get_many
        self.size = int(size)
        self._facts: OrderedDict[str, EntityFacts] = OrderedDict()

    def __call__(self, ids: Sequence[str]) -> dict[str, EntityFacts]:
        cached = self._facts
        out = {i: cached[i] for i in ids if i in cached}
        if len(out) < len(ids):
            missing = [i for i in ids if i not in out]
            found = self.get_many(missing)
            for i in missing:
                e = found.get(i)
                if e is not None:
                    out[i] = cached[i] = EntityFacts.of(e)
            while len(cached) > self.size:
                cached.popitem(last=False)
        return out

    def forget(self, ids: Sequence[str]) -> None:
        """Drop ``ids`` (their entities changed), so the next search reads them again."""
        for i in ids:
            self._facts.pop(i, None)


_TYPE_ROWS = np.eye(len(ENTITY_TYPES) + 1, len(ENTITY_TYPES), dtype=np.float32)  # last row: unknown type
_TYPE_INDEX = {t: i for i, t in enumerate(ENTITY_TYPES)}


class _Texts:
    """A search's candidate texts, each distinct one scored once: a name query's tracks mostly share
    one subtitle (their artist), and title matches are computed against up to three query forms."""

    def __init__(self, texts: list[str]) -> None:
        distinct = {t: i for i, t in enumerate(dict.fromkeys(texts))}
        self.choices = list(distinct)
        self.back = np.fromiter((distinct[t] for t in texts), dtype=np.intp, count=len(texts))
        self.empty = [i for i, t in enumerate(texts) if not t]


class RankFeaturizer:
    """Computes the :data:`NAMES` rows of a search's candidates; ``facts`` looks entities up.

    One pass over the candidates, then whole columns: about 1.4 ms for 200 candidates on one core,
    a third of it rapidfuzz (``scripts/bench_ranker.py``, section 3)."""

    def __init__(self, facts: Callable[[Sequence[str]], Mapping[str, EntityFacts]]) -> None:
        self.facts = facts

    def extract(self, ctx: RankContext, cands: Sequence[FusedCandidate]) -> np.ndarray:
        n = len(cands)
        x = np.full((n, DIM), np.nan, dtype=np.float32)
        if n == 0:
            return x
        known = self.facts([c.entity_id for c in cands])
        col = INDEX
        parsed = ctx.query.parsed
        q = utils.default_process(ctx.query.text)
        q_tok = frozenset(q.split())
        nq = len(q_tok) or 1  # no tokens: every overlap is 0
        unknown = len(ENTITY_TYPES)
        # One pass over the candidates: the retrieval columns as one (rows, ranks, scores) triple per
        # strategy, the rest as one tuple per candidate (:data:`_PASS_COLS`, then the type's index),
        # each written into ``x`` by one slice assignment.
        found: dict[str, tuple[list[int], list[float], list[float]]] = {s: ([], [], []) for s in STRATEGY_NAMES}
        facts: list[EntityFacts] = []
        rows: list[tuple[float, ...]] = []
        for i, c in enumerate(cands):
            # an entity the catalog does not know (yet) is matched on what the strategy returned
            f = known.get(c.entity_id) or EntityFacts.make(c.title, c.subtitle)
            facts.append(f)
            ranks, scores = c.ranks, c.scores
            for s, r in ranks.items():
                got = found.get(s)
                if got is not None:
                    got[0].append(i)
                    got[1].append(r)
                    got[2].append(scores[s])
            t = f.title
            rows.append((
                c.score, len(ranks), f.popularity, t == q, t.startswith(q),
                len(q_tok & f.title_tokens) / nq, len(q_tok & f.subtitle_tokens) / nq,
                _TYPE_INDEX.get(c.entity_type, unknown),
            ))  # fmt: skip
        for s, (idx, s_ranks, s_scores) in found.items():
            x[:, col[f"{s}.budget"]] = float(ctx.budgets.get(s, 0))
            if idx:
                x[idx, col[f"{s}.rank"]] = s_ranks
                x[idx, col[f"{s}.score"]] = s_scores
        per = np.array(rows, dtype=np.float32)
        x[:, _PASS_COLS] = per[:, : len(_PASS_COLS)]
        x[:, _TYPE_COLS] = _TYPE_ROWS[per[:, -1].astype(np.intp)]
        if not q:  # an empty query matches no title exactly, nor is it a prefix of one
            x[:, [col["title.exact"], col["title.prefix"]]] = 0.0
        types = [c.entity_type for c in cands]
        titles = [f.title for f in facts]
        # rapidfuzz: each distinct text once, titles and subtitles together (an artist's title is its
        # tracks' subtitle), and the residual's columns copied when it is the whole query
        both = _Texts(titles + [f.subtitle for f in facts])
        sims = {m: self._scores(q, both.choices, m) for m in _MATCH} if q else {}
        for m in sims:
            x[:, col[f"title.{m}"]] = sims[m][both.back[:n]]
            x[:, col[f"subtitle.{m}"]] = sims[m][both.back[n:]]
        if both.empty:  # an entity without a title or subtitle: missing, not a mismatch
            is_subtitle, cand = np.divmod(np.asarray(both.empty), n)
            x[cand[is_subtitle == 0, None], [col[f"title.{m}"] for m in _MATCH]] = np.nan
            x[cand[is_subtitle == 1, None], [col[f"subtitle.{m}"] for m in _MATCH]] = np.nan
        residual = utils.default_process(parsed.residual)
        seed = utils.default_process(parsed.seed)
        if (residual and residual != q) or seed:
            title_texts = _Texts(titles)  # the titles alone, for the residual and the seed
        if residual == q and q:
            for m in ("ratio", "token_set_ratio"):
                x[:, col[f"residual.{m}"]] = x[:, col[f"title.{m}"]]
        elif residual:
            self._match(x, "residual", residual, title_texts, ("ratio", "token_set_ratio"))
        if seed:
            self._match(x, "seed", seed, title_texts, ("ratio",))
            x[:, col["seed.is_title"]] = [float(t == seed) for t in titles]
        # slots
        if parsed.types:
            x[:, col["slot.type_match"]] = [float(t in parsed.types) for t in types]
        if parsed.genres:
            genres = {normalize_tag(g) for g in parsed.genres}
            x[:, col["slot.genre_match"]] = [float(bool(genres & f.genres)) for f in facts]
        if parsed.tags:
            tags = {normalize_tag(t) for t in parsed.tags}
            x[:, col["slot.tag_match"]] = [float(bool(tags & f.tags or tags & f.genres)) for f in facts]
        x[:, col["q.personal"]] = float(parsed.personal)
        x[:, col["q.n_tokens"]] = float(len(q_tok))
        # user
        user = ctx.user
        x[:, col["user.known"]] = float(user is not None)
        artists = dict(user.top_artists) if user else {}
        utags = {normalize_tag(t): w for t, w in user.top_tags} if user else {}
        if artists:
            x[:, col["user.artist_weight"]] = [
                artists.get(c.entity_id, artists.get(f.artist, 0.0)) for c, f in zip(cands, facts, strict=True)
            ]
        else:
            x[:, col["user.artist_weight"]] = 0.0
        if utags:
            x[:, col["user.tag_overlap"]] = [sum(utags.get(t, 0.0) for t in f.tags | f.genres) for f in facts]
        else:
            x[:, col["user.tag_overlap"]] = 0.0
        x[:, _CLASS_COLS] = [float(ctx.context.get(f"class.{cl}", 0.0)) for cl in QUERY_CLASSES]
        return x

    @staticmethod
    def _scores(q: str, choices: list[str], scorer: str) -> np.ndarray:
        """``scorer``'s similarity of ``q`` to each of ``choices``, in [0, 1]."""
        return process.cdist([q], choices, scorer=_SCORERS[scorer], dtype=np.float32, workers=1)[0] / 100.0

    @classmethod
    def _match(cls, x: np.ndarray, prefix: str, q: str, texts: _Texts, which: Sequence[str]) -> None:
        cols = [INDEX[f"{prefix}.{m}"] for m in which]
        for m, c in zip(which, cols, strict=True):
            x[:, c] = cls._scores(q, texts.choices, m)[texts.back]
        if texts.empty:
            x[np.ix_(texts.empty, cols)] = np.nan


def as_dict(row: np.ndarray) -> dict[str, float]:
    """The named features of one row, without the missing ones (what ``explain`` returns)."""
    return {n: float(v) for n, v in zip(NAMES, row.tolist(), strict=True) if v == v}


def pack(ids: Sequence[str], x: np.ndarray) -> dict[str, Any]:
    """The logged form of a search's feature rows: JSON-able, float32 exact, compressed (NaN-heavy rows
    shrink about 4x), with the schema version and width, so a reader can refuse what it cannot read."""
    if x.shape != (len(ids), DIM):
        raise ValueError(f"x must be ({len(ids)}, {DIM}), got {x.shape}")
    blob = zlib.compress(np.ascontiguousarray(x, dtype="<f4").tobytes(), 1)
    return {"schema": SCHEMA_VERSION, "dim": DIM, "ids": list(ids), "x": base64.b64encode(blob).decode("ascii")}


class SchemaMismatch(ValueError):
    """A logged feature block or a model was made for another feature schema."""


def unpack(doc: Mapping[str, Any]) -> tuple[list[str], np.ndarray]:
    """``(ids, x)`` from :func:`pack`'s output; :class:`SchemaMismatch` if it is another schema."""
    schema, dim = doc.get("schema"), doc.get("dim")
    if schema != SCHEMA_VERSION or dim != DIM:
        raise SchemaMismatch(
            f"logged ranking features are schema {schema} with {dim} columns; "
            f"this ltrr reads schema {SCHEMA_VERSION} with {DIM}"
        )
    ids = list(doc["ids"])
    x = np.frombuffer(zlib.decompress(base64.b64decode(doc["x"])), dtype="<f4").reshape(len(ids), DIM)
    return ids, x.astype(np.float32)
