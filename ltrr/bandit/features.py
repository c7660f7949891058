"""Context features of one search, named and as a vector.

All features are in [-1, 1] (most in [0, 1]); the vector order is :attr:`ContextFeaturizer.names`,
the first being the bias. The event log stores the named dict, so adding a feature
later leaves old events usable (a missing name reads as 0).

* **query**: length in characters and tokens, tokens left after query
  understanding (``residual``), which slots it found (type, genre, tag, seed,
  personal) and their confidences, whether the query (or what is left of it) is
  exactly a catalog artist name, whether any 1-4-gram of it is one, whether it is one
  edit from an artist name (``name_near``: a misspelt name), exactly the title of a
  track, playlist or podcast (``title_exact``), or exactly a catalog tag or genre of any
  count (``tag_exact``, also those query understanding does not use), and whether
  the caller restricted entity types;
* **memory**: how often this normalised query was searched and settled before,
  and its smoothed positive rate :math:`(p + 1) / (n + 2)` (the query memory
  learns from the same joined events);
* **user**: whether the user has a listening profile, how many top tags and
  artists it holds, and the share of the query's genres/tags among the user's top tags;
* **time**: :math:`\\sin, \\cos` of the hour and a weekend flag, from the request
  context (``hour``, ``weekend``) or a unix ``timestamp``; ``time_known`` says whether any was given;
* **query class** one-hot (:data:`QUERY_CLASSES`) and, per strategy, its
  smoothed historical hit rate in this class, ``hist.<strategy>``.
"""

from __future__ import annotations

import hashlib
import math
from datetime import UTC, datetime
from typing import Container, Mapping, Sequence

import numpy as np

from ltrr.errors import InvalidRequest
from ltrr.query_understanding import Vocabulary, fold_accents, normalize_text
from ltrr.types import Query, UserProfile

QUERY_CLASSES = ("text", "name", "facet", "seed", "personal")
_MAX_NGRAM = 4
_MAX_NGRAM_TOKENS = 16
BASE_FEATURES = (
    "bias",
    "q_chars",
    "q_tokens",
    "residual_tokens",
    "has_type",
    "has_genre",
    "has_tag",
    "has_seed",
    "personal",
    "conf_type",
    "conf_genre",
    "conf_tag",
    "conf_seed",
    "name_exact",
    "name_in_query",
    "name_near",
    "title_exact",
    "tag_exact",
    "type_filter",
    "mem_seen",
    "mem_searches",
    "mem_positive_rate",
    "user_known",
    "user_tags",
    "user_artists",
    "user_tag_overlap",
    "time_known",
    "hour_sin",
    "hour_cos",
    "weekend",
)
_TRUE, _FALSE = {"1", "true", "yes"}, {"0", "false", "no"}
#: Names and queries shorter than this are not matched one edit away: most short words are one
#: edit from some artist's name.
NEAR_MIN_CHARS = 5


def _deletes(text: str) -> set[str]:
    return {text[:i] + text[i + 1 :] for i in range(len(text))}


def _key(text: str) -> int:
    """A 64-bit digest of ``text``, the same in every process (``hash`` is salted per process)."""
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little", signed=True)


class NearNames:
    """Whether a text is one edit from a name, by symmetric deletion (Garbe's SymSpell, distance 1):
    a text matches a name when they are equal or one deletion from each side makes them so, which
    covers an inserted, dropped or substituted character and two swapped neighbours. Names and
    texts shorter than :data:`NEAR_MIN_CHARS` never match.

    The index is the sorted 64-bit digests of every name and its deletions: 325k keys, 2.6 MB,
    for the 27k artist names of the music catalog (a set of the strings took 53 MB); a lookup
    probes ``len(text) + 1`` digests."""

    def __init__(self, names: frozenset[str]) -> None:
        keys: set[str] = set()
        for name in names:
            if len(name) >= NEAR_MIN_CHARS:
                keys.add(name)
                keys |= _deletes(name)
        self._keys = np.unique(np.fromiter(map(_key, keys), dtype=np.int64, count=len(keys)))

    def __len__(self) -> int:
        return len(self._keys)

    def __contains__(self, text: object) -> bool:
        if not isinstance(text, str) or len(text) < NEAR_MIN_CHARS or not len(self._keys):
            return False
        probes = np.fromiter(map(_key, {text} | _deletes(text)), dtype=np.int64)
        at = np.searchsorted(self._keys, probes).clip(max=len(self._keys) - 1)
        return bool(np.any(self._keys[at] == probes))


def _folded_in(text: str, pool: Container[str]) -> bool:
    """``text`` or its accent-folded form is in ``pool``."""
    return text in pool or fold_accents(text) in pool


def _max_conf(conf: Mapping[str, float], prefix: str) -> float:
    return max((float(v) for k, v in conf.items() if k == prefix or k.startswith(prefix + ":")), default=0.0)


def matching(names: Sequence[str], patterns: Sequence[str]) -> list[str]:
    """The ``names`` some pattern selects: a pattern is a feature name, or a prefix ending in ``*``
    (``"hist.*"``, ``"mem_*"``). A pattern that selects nothing is a typo: ValueError naming it."""
    out: list[str] = []
    for pat in patterns:
        hit = [n for n in names if (n.startswith(pat[:-1]) if pat.endswith("*") else n == pat)]
        if not hit:
            raise ValueError(f"feature pattern {pat!r} matches no feature; features: {', '.join(names)}")
        out.extend(h for h in hit if h not in out)
    return out


class ContextFeaturizer:
    """Builds features for the strategies ``strategies`` against artist ``names`` (normalised), the
    other entities' ``titles`` and the catalog's tag and genre ``labels`` (normalised; see
    :meth:`for_vocabulary`).

    ``ignore`` (patterns, see :func:`matching`) names features the policy does not see: they are
    still computed and logged (:meth:`features`), and read as 0 in :meth:`vector`, so an arm's
    weight on them never moves and the vector keeps its width (checkpoints stay compatible)."""

    def __init__(
        self,
        strategies: Sequence[str],
        names: frozenset[str] = frozenset(),
        ignore: Sequence[str] = (),
        *,
        titles: frozenset[str] = frozenset(),
        labels: frozenset[str] = frozenset(),
    ) -> None:
        self.strategies = tuple(strategies)
        self.artist_names = names
        self.near_names = NearNames(names)
        self.titles = titles
        self.labels = labels
        self.names: tuple[str, ...] = (
            BASE_FEATURES + tuple(f"class.{c}" for c in QUERY_CLASSES) + tuple(f"hist.{s}" for s in self.strategies)
        )
        self.dim = len(self.names)
        self.ignored = tuple(matching(self.names, ignore))
        self._keep = np.array([n not in self.ignored for n in self.names], dtype=float)

    @classmethod
    def for_vocabulary(
        cls, strategies: Sequence[str], vocab: Vocabulary, ignore: Sequence[str] = ()
    ) -> ContextFeaturizer:
        """The featurizer of the serving path: names, titles and labels from the catalog's ``vocab``."""
        return cls(strategies, vocab.names, ignore, titles=vocab.titles, labels=vocab.labels())

    # -- pieces -------------------------------------------------------------------------------
    def _is_name(self, text: str) -> bool:
        return bool(text) and _folded_in(text, self.artist_names)

    def name_match(self, query: Query) -> tuple[bool, bool]:
        """(the query or its residual is exactly an artist name, some 1-4-gram of it is)."""
        norm = query.parsed.text or normalize_text(query.text)
        exact = self._is_name(norm) or self._is_name(query.parsed.residual)
        toks = norm.split()[:_MAX_NGRAM_TOKENS]
        any_gram = exact or any(
            self._is_name(" ".join(toks[i : i + n]))
            for n in range(1, _MAX_NGRAM + 1)
            for i in range(0, len(toks) - n + 1)
        )
        return exact, any_gram

    def query_class(self, query: Query, name_exact: bool | None = None) -> int:
        """Index into :data:`QUERY_CLASSES`: personal > seed > name > facet > text."""
        p = query.parsed
        if name_exact is None:
            name_exact = self.name_match(query)[0]
        if p.personal:
            return QUERY_CLASSES.index("personal")
        if p.seed:
            return QUERY_CLASSES.index("seed")
        if name_exact:
            return QUERY_CLASSES.index("name")
        if (p.types or p.genres or p.tags) and not p.residual:
            return QUERY_CLASSES.index("facet")
        return QUERY_CLASSES.index("text")

    @staticmethod
    def time_features(context: Mapping[str, str]) -> tuple[float, float, float, float]:
        """(known, sin hour, cos hour, weekend) from ``hour``/``weekend`` or ``timestamp`` (UTC)."""
        hour: float | None = None
        weekend: float | None = None
        if "timestamp" in context:
            try:
                dt = datetime.fromtimestamp(float(context["timestamp"]), tz=UTC)
            except (ValueError, OverflowError, OSError):
                raise InvalidRequest(
                    "context.timestamp", f"must be unix seconds, got {context['timestamp']!r}"
                ) from None
            hour, weekend = dt.hour + dt.minute / 60.0, float(dt.weekday() >= 5)
        if "hour" in context:
            try:
                hour = float(context["hour"])
            except ValueError:
                hour = -1.0
            if not 0.0 <= hour < 24.0:
                raise InvalidRequest("context.hour", f"must be a number in [0, 24), got {context['hour']!r}")
        if "weekend" in context:
            v = context["weekend"].strip().lower()
            if v not in _TRUE | _FALSE:
                raise InvalidRequest("context.weekend", f"must be true or false, got {context['weekend']!r}")
            weekend = float(v in _TRUE)
        if hour is None and weekend is None:
            return 0.0, 0.0, 0.0, 0.0
        angle = 2.0 * math.pi * (hour or 0.0) / 24.0
        return (
            1.0,
            (math.sin(angle) if hour is not None else 0.0),
            (math.cos(angle) if hour is not None else 0.0),
            weekend or 0.0,
        )

    # -- the whole context ----------------------------------------------------------------------
    def features(
        self,
        query: Query,
        *,
        user: UserProfile | None = None,
        stats: tuple[int, int] = (0, 0),
        class_rates: np.ndarray | None = None,
    ) -> dict[str, float]:
        """Named features. ``stats``: (settled searches, positives) of this query;
        ``class_rates (n_classes, n_strategies)``: historical hit rate per class and strategy."""
        p = query.parsed
        norm = p.text or normalize_text(query.text)
        tokens = norm.split()
        exact, any_gram = self.name_match(query)
        n, pos = stats
        facets = {normalize_text(t) for t in (*p.genres, *p.tags)}
        user_tags = {normalize_text(t) for t, _ in user.top_tags} if user else set()
        known, hsin, hcos, weekend = self.time_features(query.context)
        out = {
            "bias": 1.0,
            "q_chars": min(len(norm) / 64.0, 1.0),
            "q_tokens": min(len(tokens) / 8.0, 1.0),
            "residual_tokens": min(len(p.residual.split()) / 8.0, 1.0),
            "has_type": float(bool(p.types)),
            "has_genre": float(bool(p.genres)),
            "has_tag": float(bool(p.tags)),
            "has_seed": float(bool(p.seed)),
            "personal": float(p.personal),
            "conf_type": _max_conf(p.confidence, "type"),
            "conf_genre": _max_conf(p.confidence, "genre"),
            "conf_tag": _max_conf(p.confidence, "tag"),
            "conf_seed": _max_conf(p.confidence, "seed"),
            "name_exact": float(exact),
            "name_in_query": float(any_gram),
            "name_near": float(not exact and _folded_in(norm, self.near_names)),
            "title_exact": float(_folded_in(norm, self.titles)),
            "tag_exact": float(norm in self.labels or bool(p.residual) and p.residual in self.labels),
            "type_filter": float(bool(query.entity_types)),
            "mem_seen": float(n > 0),
            "mem_searches": min(math.log1p(n) / 7.0, 1.0),
            "mem_positive_rate": (pos + 1.0) / (n + 2.0),
            "user_known": float(user is not None),
            "user_tags": min(len(user.top_tags) / 20.0, 1.0) if user else 0.0,
            "user_artists": min(len(user.top_artists) / 50.0, 1.0) if user else 0.0,
            "user_tag_overlap": len(facets & user_tags) / len(facets) if facets and user_tags else 0.0,
            "time_known": known,
            "hour_sin": hsin,
            "hour_cos": hcos,
            "weekend": weekend,
        }
        cls = self.query_class(query, exact)
        for i, c in enumerate(QUERY_CLASSES):
            out[f"class.{c}"] = float(i == cls)
        for j, s in enumerate(self.strategies):
            out[f"hist.{s}"] = float(class_rates[cls, j]) if class_rates is not None else 0.5
        return out

    def class_of(self, features: Mapping[str, float]) -> int:
        """The query class recorded in named ``features`` (``text`` when absent)."""
        scores = [features.get(f"class.{c}", 0.0) for c in QUERY_CLASSES]
        return int(np.argmax(scores)) if max(scores) > 0 else 0

    def vector(self, features: Mapping[str, float]) -> np.ndarray:
        """The features in :attr:`names` order (missing and ignored names are 0)."""
        x = np.fromiter((float(features.get(n, 0.0)) for n in self.names), dtype=float, count=self.dim)
        return x * self._keep if self.ignored else x
