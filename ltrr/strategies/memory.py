"""Query memory: retrieval from past and predicted (query -> entity) pairs in Meilisearch.

Index ``ltrr_queries``: one document per (source, normalised query, entity)::

    {id, query, entity_id, entity_type, title, subtitle, score, clicks, source[, last_seq]}

``id = sha1(source, query, entity_id)``, ``query`` is :func:`normalize_text` of the
text (searchable, and filterable for exact look-ups). Predicted and clicked
pairs are separate documents (``source`` ``"predicted"`` / ``"click"``) so that
re-ingesting an entity replaces its predicted queries without touching clicks:

* predicted: ``score`` = the prior from :func:`predict_queries`, ``clicks = 0``
* click:     ``score = 0``, ``clicks`` = the sum of recorded weights

**Cold start.** :meth:`MemoryStrategy.upsert` writes each entity's predicted
queries (old predicted documents of those entities are deleted first).

**Search.** The normalised query text is searched in the index (typo tolerant,
so "best sad songs" finds the remembered "best sad song"), taking
:math:`H = \\max(50, 5k)` hits; each hit :math:`h` has Meilisearch's ranking
score :math:`r_h \\in [0, 1]`. Hits are aggregated per entity (:func:`aggregate`):

.. math::

    S(e) = \\sum_{h \\in H(e)} r_h^{\\gamma} \\, \\bigl(s_h + \\ln(1 + c_h)\\bigr)

with prior :math:`s_h`, click weight :math:`c_h` and :math:`\\gamma` =
``score_exponent`` (2 by default: squaring damps the many weak partial matches
a loose text match brings, so one near-exact remembered query beats several
half-matching ones). :math:`\\ln(1+c)` makes clicks count with diminishing
returns. Ties keep Meilisearch's order. The top ``k`` entities are returned.

**Feedback.** :meth:`MemoryStrategy.record` adds a click to a (query, entity)
pair; the increment is atomic on the server (a Meilisearch document-edit task,
experimental feature ``editDocumentsByFunction``, which this strategy enables)
and durable when ``record`` returns (it waits for the task).

**Exactly once.** The learner teaches the memory the positive feedback of the event log in
log order, behind a cursor it saves after each batch; a crash between the write and the save
replays the batch. So a click may carry its feedback's log ``seq``
(:meth:`MemoryStrategy.record_many`), and each click document keeps ``last_seq``, the highest
``seq`` applied to it. The edit adds a logged click only if its ``seq`` is above the document's
``last_seq``, and raises ``last_seq`` in the same document write (:class:`ClickEdit`):

.. math::

    c \\leftarrow c + a + \\sum_{(s, w) \\in L,\\ s > \\ell} w, \\qquad
    \\ell \\leftarrow \\max(\\ell, \\max_{(s, w) \\in L} s)

(:math:`c` clicks, :math:`\\ell` ``last_seq``, :math:`a` the weight of clicks without a ``seq``,
:math:`L` the batch's logged clicks of that document). Since a document's clicks are taught in
``seq`` order, every ``seq <= last_seq`` is already counted: replaying a batch, whole or in part,
or a bisected batch's halves (:func:`ltrr.poison.apply_or_skip`), changes nothing it already
counted. This follows the bandit's settlements, whose cursor is saved in the checkpoint with the
parameters it guards: the high-water mark lives with the counts, in the one write Meilisearch
makes atomic (a document; it has no transaction across documents or tasks, so the event log's
cursor could not be moved in the same write). A document written before ``last_seq`` existed
reads it as 0. Clicks without a ``seq`` (:meth:`MemoryStrategy.record`) are added every time.
"""

from __future__ import annotations

import math
import sys
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Iterable, Literal, Mapping, NamedTuple, Sequence

from pydantic import Field
from tqdm import tqdm

from ltrr.errors import InvalidRequest, NotFound
from ltrr.query_understanding import normalize_text
from ltrr.strategies._meili import (
    MAX_TOTAL_HITS,
    MeiliConfig,
    MeiliIndexStrategy,
    and_filters,
    doc_id,
    filter_in,
    quote,
    validate_search,
)
from ltrr.types import Candidate, Entity, Query

MAX_QUERY_CHARS = 200
_RETRIEVED = ["entity_id", "entity_type", "title", "subtitle", "score", "clicks", "source"]
SETTINGS: dict[str, Any] = {
    "searchableAttributes": ["query"],
    "filterableAttributes": ["id", "query", "entity_id", "entity_type", "source"],
    "facetSearch": False,  # unused; rebuilding its FSTs cost seconds per write on a 150k-document index
}
#: The document edit of :meth:`MemoryStrategy.record_many`: :meth:`ClickEdit.apply`, in Rhai, on the server.
_ADD_CLICKS = (
    "let e = context.c[doc.id]; let last = doc.last_seq ?? 0; let top = last; let add = e.add;"
    " for x in e.log { if x[0] > last { add += x[1]; if x[0] > top { top = x[0]; } } }"
    " doc.clicks = (doc.clicks ?? 0.0) + add; if top > 0 { doc.last_seq = top; }"
)


class MemoryConfig(MeiliConfig):
    """Config of :class:`MemoryStrategy`."""

    index: str = Field(
        default="ltrr_queries",
        pattern=r"^[A-Za-z0-9_-]{1,400}$",
        description="Meilisearch index uid of the query memory.",
    )
    min_hits: int = Field(default=50, ge=1, le=1000, description="Query documents fetched per search, at least.")
    hits_per_k: int = Field(default=5, ge=1, le=100, description="Query documents fetched per requested candidate.")
    score_exponent: float = Field(
        default=2.0, ge=0.0, le=10.0, description="gamma in S(e) = sum r^gamma (s + ln(1+c))."
    )
    matching_strategy: Literal["last", "all", "frequency"] = Field(
        default="frequency",
        description="Meilisearch matchingStrategy for the query text.",
    )
    batch_size: int = Field(default=10_000, ge=1, le=100_000, description="Query documents per add-documents request.")


# -- pure logic -------------------------------------------------------------------
def _popularity_factor(entity: Entity) -> float:
    """:math:`0.5 + 0.5 \\cdot \\mathrm{clip}(p, 0, 100) / 100`: popular entities get larger priors."""
    return 0.5 + 0.5 * min(max(float(entity.popularity), 0.0), 100.0) / 100.0


def predict_queries(entity: Entity) -> list[tuple[str, float]]:
    """The queries a user would type to find ``entity``, with prior weights.

    At most three, normalised, deduplicated (first kept), each weighted by
    :func:`_popularity_factor` ``f``:

    1. the title: ``f * 1.0``
    2. tracks: title + subtitle (the artist); podcasts: title + publisher
       (subtitle, else ``attrs["publisher"]``): ``f * 0.8``. Artist and playlist
       subtitles are descriptive labels ("Artist · pop, dance"), not names: skipped.
    3. title + its first tag (else first genre): ``f * 0.5``
    """
    f = _popularity_factor(entity)
    if entity.entity_type == "track":
        sub = entity.subtitle
    elif entity.entity_type == "podcast":
        sub = entity.subtitle or entity.attrs.get("publisher", "")
    else:
        sub = ""
    facet = entity.tags[0] if entity.tags else (entity.genres[0] if entity.genres else "")
    raw = [(entity.title, 1.0)]
    if sub:
        raw.append((f"{entity.title} {sub}", 0.8))
    if facet:
        raw.append((f"{entity.title} {facet}", 0.5))
    out: OrderedDict[str, float] = OrderedDict()
    for text, w in raw:
        q = normalize_text(text)[:MAX_QUERY_CHARS].strip()
        if q and q not in out:
            out[q] = round(f * w, 6)
    return list(out.items())


def query_doc(query: str, entity_id: str, entity_type: str, title: str, subtitle: str, *, source: str,
              score: float = 0.0, clicks: float = 0.0) -> dict[str, Any]:  # fmt: skip
    """One memory document; ``query`` must already be normalised."""
    return {
        "id": doc_id(source, query, entity_id),
        "query": query,
        "entity_id": entity_id,
        "entity_type": entity_type,
        "title": title,
        "subtitle": subtitle,
        "score": float(score),
        "clicks": float(clicks),
        "source": source,
    }


def predicted_docs(entity: Entity) -> list[dict[str, Any]]:
    return [
        query_doc(q, entity.entity_id, entity.entity_type, entity.title, entity.subtitle, source="predicted", score=s)
        for q, s in predict_queries(entity)
    ]


def hit_value(hit: Mapping[str, Any], exponent: float = 2.0) -> float:
    """:math:`r^{\\gamma} (s + \\ln(1 + c))` of one hit."""
    r = float(hit.get("_rankingScore", 0.0))
    s = float(hit.get("score", 0.0) or 0.0)
    c = max(float(hit.get("clicks", 0.0) or 0.0), 0.0)
    return (r**exponent) * (s + math.log1p(c))


def aggregate(hits: Iterable[Mapping[str, Any]], k: int, exponent: float = 2.0) -> list[Candidate]:
    """Sum :func:`hit_value` per entity; the top ``k`` as candidates (ties: first seen first)."""
    totals: OrderedDict[str, float] = OrderedDict()
    meta: dict[str, Mapping[str, Any]] = {}
    for h in hits:
        eid = h["entity_id"]
        totals[eid] = totals.get(eid, 0.0) + hit_value(h, exponent)
        meta.setdefault(eid, h)
    ranked = sorted(totals.items(), key=lambda kv: -kv[1])[:k]  # stable: ties keep Meilisearch's order
    return [
        Candidate(eid, meta[eid]["entity_type"], meta[eid].get("title", ""), meta[eid].get("subtitle", ""), s, i + 1)
        for i, (eid, s) in enumerate(ranked)
    ]


class Click(NamedTuple):
    """One click to record: ``seq`` is its feedback's position in the event log, or None (not logged)."""

    query_text: str
    entity_id: str
    weight: float = 1.0
    seq: int | None = None


@dataclass(frozen=True)
class ClickEdit:
    """What one :meth:`MemoryStrategy.record_many` does to one click document (module docstring,
    "Exactly once"): add ``add`` (the clicks without a ``seq``), and each ``(seq, weight)`` of
    ``log`` (ascending ``seq``) whose ``seq`` is above the document's ``last_seq``."""

    add: float = 0.0
    log: tuple[tuple[int, float], ...] = ()

    def apply(self, clicks: float, last_seq: int) -> tuple[float, int]:
        """The new ``(clicks, last_seq)`` of a document that had these; the rule :data:`_ADD_CLICKS`
        runs on the server, with the same operations in the same order."""
        add, top = self.add, last_seq
        for seq, w in self.log:
            if seq > last_seq:
                add += w
                top = max(top, seq)
        return clicks + add, top

    def to_context(self) -> dict[str, Any]:
        """The edit as the Rhai function reads it (``context.c[doc.id]``)."""
        return {"add": self.add, "log": [[seq, w] for seq, w in self.log]}

    @classmethod
    def from_context(cls, ctx: Mapping[str, Any]) -> ClickEdit:
        return cls(float(ctx["add"]), tuple((int(s), float(w)) for s, w in ctx["log"]))


def click_edits(events: Sequence[Click | tuple[str, str, float]]) -> OrderedDict[tuple[str, str], ClickEdit]:
    """Check ``events`` ((query text, entity id, weight[, seq]) each) and group them by (normalised
    query, entity id), in first-seen order: one :class:`ClickEdit` per click document. Weights of
    one ``seq`` are summed; raises :class:`~ltrr.errors.InvalidRequest` naming the first bad field."""
    free: OrderedDict[tuple[str, str], float] = OrderedDict()
    logged: dict[tuple[str, str], dict[int, float]] = {}
    for i, event in enumerate(events):
        if not isinstance(event, tuple) or len(event) not in (3, 4):
            raise InvalidRequest(f"events[{i}]", f"must be (query_text, entity_id, weight[, seq]), got {event!r}")
        text, eid, w = event[0], event[1], event[2]
        seq = event[3] if len(event) == 4 else None
        q = normalize_text(text)[:MAX_QUERY_CHARS] if isinstance(text, str) else ""
        if not q:
            raise InvalidRequest(f"events[{i}].query_text", f"must contain a word, got {text!r}")
        if not isinstance(eid, str) or not eid:
            raise InvalidRequest(f"events[{i}].entity_id", f"must be a non-empty string, got {eid!r}")
        if not isinstance(w, (int, float)) or isinstance(w, bool) or not math.isfinite(w) or w <= 0:
            raise InvalidRequest(f"events[{i}].weight", f"must be a finite number > 0, got {w!r}")
        if seq is not None and (not isinstance(seq, int) or isinstance(seq, bool) or seq < 1):
            raise InvalidRequest(f"events[{i}].seq", f"must be an integer >= 1 or None, got {seq!r}")
        key = (q, eid)
        if seq is None:
            free[key] = free.get(key, 0.0) + float(w)
        else:
            free.setdefault(key, 0.0)
            by_seq = logged.setdefault(key, {})
            by_seq[seq] = by_seq.get(seq, 0.0) + float(w)
    return OrderedDict((key, ClickEdit(add, tuple(sorted(logged.get(key, {}).items())))) for key, add in free.items())


def search_params(query: Query, k: int, cfg: MemoryConfig) -> dict[str, Any]:
    """The Meilisearch search body of one memory search."""
    params: dict[str, Any] = {
        "q": normalize_text(query.text)[:MAX_QUERY_CHARS],
        "limit": min(MAX_TOTAL_HITS, max(cfg.min_hits, cfg.hits_per_k * k)),
        "showRankingScore": True,
        "attributesToRetrieve": _RETRIEVED,
        "matchingStrategy": cfg.matching_strategy,
    }
    if query.entity_types:
        params["filter"] = filter_in("entity_type", query.entity_types)
    return params


# -- strategy -------------------------------------------------------------------
class MemoryStrategy(MeiliIndexStrategy):
    """Query -> entity memory in Meilisearch. Thread-safe."""

    name = "memory"
    experimental_features = ("editDocumentsByFunction",)  # record(): atomic click increments

    def __init__(self, config: MemoryConfig | None = None) -> None:
        self.config = config or MemoryConfig()
        super().__init__(self.config, self.config.index)

    @property
    def settings(self) -> dict[str, Any]:
        return SETTINGS

    def upsert(self, entities: Sequence[Entity], *, progress: bool = False) -> int:
        """Replace the predicted queries of ``entities``; returns how many entities were written."""
        if not entities:
            return 0
        self._ensure_ready()
        uid, bs = self.config.index, self.config.batch_size
        tasks = []
        bar = tqdm(total=len(entities), desc="memory upsert", unit="ent", file=sys.stderr, disable=not progress)
        docs: list[dict[str, Any]] = []
        start = 0
        for i, e in enumerate(entities):
            docs.extend(predicted_docs(e))
            if len(docs) >= bs or i == len(entities) - 1:
                ids = [x.entity_id for x in entities[start : i + 1]]
                stale = and_filters(filter_in("entity_id", ids), 'source = "predicted"')
                tasks.append(self._client.delete_documents(uid, stale))
                if docs:
                    tasks.append(self._client.add_documents(uid, docs))
                bar.update(i + 1 - start)
                docs, start = [], i + 1
        bar.set_postfix_str("waiting for indexing")
        self._client.wait_tasks(tasks)
        bar.close()
        return len(entities)

    def search(self, query: Query, k: int) -> list[Candidate]:
        """Top ``k`` entities by :math:`S(e)` (see the module docstring)."""
        validate_search(query, k)
        params = search_params(query, k, self.config)
        if not params["q"]:
            return []
        res = self._client.search(self.config.index, params)
        return aggregate(res["hits"], k, self.config.score_exponent)

    def record(self, query_text: str, entity_id: str, weight: float = 1.0, entity: Entity | None = None) -> None:
        """Add ``weight`` clicks to (``query_text``, ``entity_id``); durable on return.

        The entity's type/title come from ``entity`` or from any memory document of
        that entity (its predicted queries); :class:`~ltrr.errors.NotFound` if neither.
        """
        self.record_many([(query_text, entity_id, weight)], {entity_id: entity} if entity is not None else None)

    def record_many(
        self, events: Sequence[Click | tuple[str, str, float]], entities: Mapping[str, Entity] | None = None
    ) -> None:
        """Record several clicks, (query text, entity id, weight[, seq]) each: one edit task (+1 for
        first-time pairs), durable on return. A click with a ``seq`` (its event-log position) is
        counted once however often it is recorded (module docstring, "Exactly once"), provided each
        document's logged clicks come in ``seq`` order; one without is counted every time.
        Every event is checked before anything is written (:func:`click_edits`)."""
        pairs = click_edits(events)
        if not pairs:
            return
        self._ensure_ready()
        uid = self.config.index
        ids = {doc_id("click", q, eid): (q, eid) for q, eid in pairs}
        existing = {d["id"] for d in self._client.fetch_documents(uid, filter_in("id", ids), ["id"], len(ids))}
        tasks = []
        new = [ids[i] for i in ids if i not in existing]
        if new:
            meta = self._entity_meta({eid for _, eid in new}, entities or {})
            docs = []
            for q, eid in new:
                etype, title, subtitle = meta[eid]
                d = query_doc(q, eid, etype, title, subtitle, source="click")
                del d["clicks"]  # created without clicks: the edit below adds them atomically
                docs.append(d)
            tasks.append(self._client.update_documents(uid, docs))
        edits = {doc_id("click", q, eid): edit.to_context() for (q, eid), edit in pairs.items()}
        tasks.append(self._client.edit_documents(uid, filter_in("id", edits), _ADD_CLICKS, {"c": edits}))
        self._client.wait_tasks(tasks)

    def _entity_meta(self, eids: set[str], given: Mapping[str, Entity]) -> dict[str, tuple[str, str, str]]:
        meta = {e: (x.entity_type, x.title, x.subtitle) for e, x in given.items() if e in eids}
        missing = sorted(eids - set(meta))
        if missing:
            fields = ["entity_id", "entity_type", "title", "subtitle"]
            for d in self._client.fetch_documents(self.config.index, filter_in("entity_id", missing), fields, 1000):
                meta.setdefault(d["entity_id"], (d["entity_type"], d.get("title", ""), d.get("subtitle", "")))
        unknown = [e for e in missing if e not in meta]
        if unknown:
            raise NotFound(f"entity {unknown[0]!r} has no memory documents; pass `entity` to record it")
        return meta

    def stats(self, query_text: str) -> dict[str, Any]:
        """Click history of the exact normalised query.

        Returns ``{"query", "seen", "clicks", "clicked_entities", "predicted"}``: ``seen``
        is True once any click was recorded for it, ``clicks`` the total weight,
        ``predicted`` how many entities have it as a predicted query.
        """
        q = normalize_text(query_text)[:MAX_QUERY_CHARS]
        if not q:
            return {"query": q, "seen": False, "clicks": 0.0, "clicked_entities": 0, "predicted": 0}
        docs = self._client.fetch_documents(self.config.index, f"query = {quote(q)}", ["source", "clicks"], 1000)
        clicks = [float(d.get("clicks", 0.0) or 0.0) for d in docs if d.get("source") == "click"]
        return {
            "query": q,
            "seen": bool(clicks),
            "clicks": sum(clicks),
            "clicked_entities": len(clicks),
            "predicted": sum(1 for d in docs if d.get("source") == "predicted"),
        }
