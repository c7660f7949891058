"""Lexical retrieval: typo-tolerant full-text search over the catalog in Meilisearch.

Index (one document per entity, primary key ``id = sha1(entity_id)`` because
entity ids contain ``:``):

* searchable, in priority order: ``title``, ``subtitle``, ``tags``, ``genres``, ``description``
* filterable: ``entity_type``, ``genres``, ``tags``, ``top_labels`` (the first genre
  and first tag: the catalog ranks them by support); sortable: ``popularity``
* ranking rules: Meilisearch's defaults ``words, typo, proximity, attribute,
  sort, exactness`` followed by the custom rule ``popularity:desc``. Placing it
  last makes popularity a pure tie-breaker: text relevance always wins, and among
  equally good matches ("Yesterday" by the Beatles vs. a cover) the popular one
  comes first. A placeholder search (empty text) is ordered by popularity alone.
  Custom rules do not change ``_rankingScore``; they only order ties.
* typo tolerance: one typo from 3 letters, two from 8 (Meilisearch's defaults are
  5 and 9). Real misspellings of short names ("Arcade Fier", "Thom Yoke", "Lad Gaga")
  put the typo in a 3- or 4-letter word, which the defaults match exactly or not at
  all. On the 6,000-query seed-2 stream of ``scripts/bench_regret.py`` this lifts
  lexical hit@10 on misspelled queries from 0.923 to 0.983 (hit@100 0.928 -> 0.994)
  and leaves names (0.997), podcasts and tracks (0.989 -> 0.988) where they were,
  for ~0.3 ms more per search (p50 2.5 -> 2.8 ms).

Search (:meth:`LexicalStrategy.search`, pure planning in :func:`plan_searches`
and :func:`merge_hits`):

1. Hard filter: ``entity_type IN query.entity_types`` on every search.
2. Soft filters from query understanding (slots with confidence >=
   ``min_filter_confidence``), strictest first (:func:`soft_filters`):
   ``types AND top_labels IN (g + t)``, then ``types AND (genres IN g OR tags IN t)``;
   with type slots only, just ``types``. Parsed types outside the hard filter are dropped.
3. Without a soft filter: one search for ``residual or seed or text``.
   With one: one multi-search (one round trip) of the filtered searches for
   ``residual or seed`` (empty -> placeholder search, i.e. the most popular
   matching entities) and the unfiltered search for the full normalised text.
4. Merge: unfiltered hits scoring >= ``known_item_score`` first (an exact title
   match beats a guessed filter: "welcome to the jungle" is a song, not a
   jungle tag query), then the filtered tiers in order, then the rest of the
   unfiltered hits to fill up to ``k``; duplicates removed. ``score`` is Meilisearch's
   ``_rankingScore`` of the search that found the hit; ranks are 1-based.
"""

from __future__ import annotations

import sys
from typing import Any, Literal, Mapping, Sequence

from pydantic import Field, model_validator
from tqdm import tqdm

from ltrr.strategies._meili import (
    MeiliConfig,
    MeiliIndexStrategy,
    and_filters,
    doc_id,
    filter_in,
    or_filters,
    validate_search,
)
from ltrr.types import Candidate, Entity, Query

SEARCHABLE = ["title", "subtitle", "tags", "genres", "description"]
FILTERABLE = ["entity_type", "genres", "tags", "top_labels"]
RANKING_RULES = ["words", "typo", "proximity", "attribute", "sort", "exactness", "popularity:desc"]
RETRIEVED = ["entity_id", "entity_type", "title", "subtitle"]


class LexicalConfig(MeiliConfig):
    """Config of :class:`LexicalStrategy`."""

    index: str = Field(
        default="ltrr_entities", pattern=r"^[A-Za-z0-9_-]{1,400}$", description="Meilisearch index uid of the entities."
    )
    use_query_filters: bool = Field(
        default=True,
        description="Apply query-understanding types/genres/tags as soft filters (filtered first, then fill).",
    )
    min_filter_confidence: float = Field(
        default=0.6,
        ge=0.0,
        le=1.0,
        description="A parsed slot becomes a soft filter only with at least this confidence.",
    )
    known_item_score: float = Field(
        default=0.98,
        ge=0.0,
        le=1.0,
        description="Unfiltered hits scoring at least this are ranked before filtered hits.",
    )
    matching_strategy: Literal["last", "all", "frequency"] = Field(
        default="frequency",
        description="Meilisearch matchingStrategy: which query words may be dropped when few match.",
    )
    min_word_size_one_typo: int = Field(
        default=3,
        ge=1,
        le=255,
        description="Shortest query word matched with one typo (Meilisearch minWordSizeForTypos.oneTypo).",
    )
    min_word_size_two_typos: int = Field(
        default=8,
        ge=1,
        le=255,
        description="Shortest query word matched with two typos (minWordSizeForTypos.twoTypos; >= the one-typo size).",
    )
    batch_size: int = Field(default=5000, ge=1, le=100_000, description="Documents per add-documents request.")
    max_tags: int = Field(default=20, ge=0, le=1000, description="Tags indexed per entity (the first ones).")
    max_description_chars: int = Field(default=1000, ge=0, le=100_000, description="Description characters indexed.")

    @model_validator(mode="after")
    def _typo_sizes_ordered(self) -> LexicalConfig:
        if self.min_word_size_two_typos < self.min_word_size_one_typo:
            raise ValueError(
                f"min_word_size_two_typos ({self.min_word_size_two_typos}) must be >= "
                f"min_word_size_one_typo ({self.min_word_size_one_typo})"
            )
        return self


# -- pure logic -------------------------------------------------------------------
def entity_to_doc(entity: Entity, max_tags: int = 20, max_description_chars: int = 1000) -> dict[str, Any]:
    """The Meilisearch document of one entity."""
    return {
        "id": doc_id(entity.entity_id),
        "entity_id": entity.entity_id,
        "entity_type": entity.entity_type,
        "title": entity.title,
        "subtitle": entity.subtitle,
        "tags": list(entity.tags[:max_tags]),
        "genres": list(entity.genres),
        "top_labels": list(dict.fromkeys([*entity.genres[:1], *entity.tags[:1]])),
        "description": entity.description[:max_description_chars],
        "popularity": float(entity.popularity),
    }


def soft_filters(query: Query, min_confidence: float) -> list[str]:
    """Query-understanding filters, strictest first; ``[]`` if no slot qualifies.

    With genre/tag slots: ``[types AND top_labels IN (g + t), types AND (genres IN g OR tags IN t)]``
    (an entity's *top* label, its first genre or tag, is the strict tier: a pop hit
    that also sits in a rock playlist is a rock track only in the broad tier).
    With only type slots: ``[types]``.
    """
    p = query.parsed
    conf = p.confidence

    def ok(kind: str, v: str) -> bool:
        return conf.get(f"{kind}:{v}", 0.0) >= min_confidence

    types = filter_in(
        "entity_type", [t for t in p.types if ok("type", t) and (not query.entity_types or t in query.entity_types)]
    )
    genres = [g for g in p.genres if ok("genre", g)]
    tags = [t for t in p.tags if ok("tag", t)]
    if not genres and not tags:
        return [types] if types else []
    strict = and_filters(types, filter_in("top_labels", [*genres, *tags]))
    broad = and_filters(types, or_filters(filter_in("genres", genres), filter_in("tags", tags)))
    return [strict, broad]


def plan_searches(query: Query, k: int, cfg: LexicalConfig) -> list[dict[str, Any]]:
    """Multi-search queries: ``[single]`` or ``[*filtered tiers, unfiltered]`` (see the module docstring)."""
    p = query.parsed
    hard = filter_in("entity_type", query.entity_types)
    soft = soft_filters(query, cfg.min_filter_confidence) if cfg.use_query_filters else []
    base = {
        "indexUid": cfg.index,
        "limit": k,
        "showRankingScore": True,
        "attributesToRetrieve": RETRIEVED,
        "matchingStrategy": cfg.matching_strategy,
    }
    text = p.text or query.text
    if not soft:
        q = {**base, "q": p.residual or p.seed or text}
        return [q | {"filter": hard}] if hard else [q]
    tiers = [{**base, "q": p.residual or p.seed, "filter": and_filters(hard, f)} for f in soft]
    unfiltered = {**base, "q": text}
    if hard:
        unfiltered["filter"] = hard
    return [*tiers, unfiltered]


def merge_hits(results: Sequence[Sequence[Mapping[str, Any]]], k: int, known_item_score: float) -> list[Candidate]:
    """Merge ``[hits]`` or ``[*filtered tier hits, unfiltered hits]`` into at most ``k`` candidates."""
    if len(results) == 1:
        ordered = list(results[0])
    else:
        unfiltered = results[-1]
        known = [h for h in unfiltered if float(h.get("_rankingScore", 0.0)) >= known_item_score]
        ordered = [*known, *(h for tier in results[:-1] for h in tier), *unfiltered]
    out: list[Candidate] = []
    seen: set[str] = set()
    for h in ordered:
        eid = h["entity_id"]
        if eid in seen:
            continue
        seen.add(eid)
        out.append(Candidate(eid, h["entity_type"], h.get("title", ""), h.get("subtitle", ""),
                             float(h.get("_rankingScore", 0.0)), len(out) + 1))  # fmt: skip
        if len(out) >= k:
            break
    return out


# -- strategy -------------------------------------------------------------------
class LexicalStrategy(MeiliIndexStrategy):
    """Full-text retrieval in Meilisearch. Thread-safe."""

    name = "lexical"

    def __init__(self, config: LexicalConfig | None = None) -> None:
        self.config = config or LexicalConfig()
        super().__init__(self.config, self.config.index)

    @property
    def settings(self) -> dict[str, Any]:
        return {
            "searchableAttributes": SEARCHABLE,
            "filterableAttributes": FILTERABLE,
            "sortableAttributes": ["popularity"],
            "rankingRules": RANKING_RULES,
            "typoTolerance": {
                "enabled": True,
                "minWordSizeForTypos": {
                    "oneTypo": self.config.min_word_size_one_typo,
                    "twoTypos": self.config.min_word_size_two_typos,
                },
            },
            "facetSearch": False,  # unused; rebuilding its FSTs makes every write slower
        }

    def upsert(self, entities: Sequence[Entity], *, progress: bool = False) -> int:
        """Add or replace ``entities``; returns when Meilisearch has indexed them."""
        if not entities:
            return 0
        self._ensure_ready()
        cfg = self.config
        tasks = []
        bs = cfg.batch_size
        bar = tqdm(total=len(entities), desc="lexical upsert", unit="ent", file=sys.stderr, disable=not progress)
        for i in range(0, len(entities), bs):
            docs = [entity_to_doc(e, cfg.max_tags, cfg.max_description_chars) for e in entities[i : i + bs]]
            tasks.append(self._client.add_documents(cfg.index, docs))
            bar.update(len(docs))
        bar.set_postfix_str("waiting for indexing")
        self._client.wait_tasks(tasks)
        bar.close()
        return len(entities)

    def search(self, query: Query, k: int) -> list[Candidate]:
        """At most ``k`` candidates, best first (see the module docstring)."""
        validate_search(query, k)
        plan = plan_searches(query, k, self.config)
        results = self._client.multi_search(plan)
        return merge_hits([r["hits"] for r in results], k, self.config.known_item_score)
