"""The Meilisearch hybrid peer: Meilisearch's own hybrid search over the catalog, with ltrr's MiniLM vectors.

What a user could set up instead of ltrr with one Meilisearch and the same model. One index
(``peer_meili_hybrid``) holds every entity as the lexical strategy's document
(:func:`ltrr.strategies.lexical.entity_to_doc`: primary key ``sha1(entity_id)`` since entity ids
contain ``:``; searchable ``title, subtitle, tags, genres, description`` in that priority; ranking
rules ``words, typo, proximity, attribute, sort, exactness, popularity:desc``), plus:

* a user-provided embedder ``minilm`` (``{"source": "userProvided", "dimensions": 384}``; the
  vector store is stable since Meilisearch 1.13, so 1.21 needs no experimental feature), and in
  every document ``_vectors: {"minilm": embed(entity.text())}`` from the vector strategy's embedder
  (``minilm-onnx`` by default) through its :class:`~ltrr.embedder.EmbeddingCache`
  (``var/embeddings.sqlite``), so the vectors ltrr already computed are reused, not re-encoded;
* search: ``{"q": text, "vector": embed(text), "hybrid": {"embedder": "minilm", "semanticRatio": r}}``
  with the query embedded by the same (uncached) embedder, as the vector strategy does.

How Meilisearch 1.21 uses the ratio (its route's ``search_kind`` and ``milli/src/search/hybrid.rs``):
``r = 0.0`` is a keyword-only search (Meilisearch ignores ``vector`` then, so it is not computed) and
``r = 1.0`` a vector-only one; an empty ``q`` with a vector is vector-only too. In between it runs the
keyword search first and returns it alone when it has ``k`` hits that all score ``s * (1 - r) >= 0.45``;
otherwise it also runs the vector search and merges both lists by weighted score, ``s_kw * (1 - r)``
against ``s_sem * r`` (ties to the semantic hit), duplicates dropped.

One index, several ratios: :class:`MeiliHybridIndex` owns and writes the index, and
:meth:`MeiliHybridIndex.peers` gives one light :class:`MeiliHybridPeer` per ratio
(``"meili hybrid 0.5"``). Indexing is a sync: each document carries ``fingerprint``, a hash of the
document and the embedder's name; :meth:`MeiliHybridIndex.index` reads the fingerprints in the index,
embeds and uploads only new or changed entities (batches, every task waited for) and deletes the
documents of entities no longer given. The second and third peers' ``index`` of the same catalog
therefore write nothing (``skipped["unchanged"]``), and neither does a re-run of the bench.
"""

from __future__ import annotations

import hashlib
import json
import sys
import threading
import time
from typing import Any, Iterable, Sequence

from pydantic import Field, field_validator
from tqdm import tqdm

from ltrr import constants
from ltrr.embedder import DocumentEncoder, Embedder, make_embedder
from ltrr.errors import ConfigError, InvalidRequest
from ltrr.peers import IndexReport
from ltrr.strategies._meili import MeiliConfig, MeiliIndexStrategy
from ltrr.strategies.base import check_k
from ltrr.strategies.lexical import RANKING_RULES, SEARCHABLE, entity_to_doc
from ltrr.types import Entity

#: Documents per page when reading the index's fingerprints.
_PAGE = 10_000


class MeiliHybridConfig(MeiliConfig):
    """Config of :class:`MeiliHybridIndex` (``timeout_s`` bounds a search; writes have ``write_timeout_s``)."""

    index: str = Field(
        default="peer_meili_hybrid", pattern=r"^[A-Za-z0-9_-]{1,400}$", description="Meilisearch index uid."
    )
    meili_embedder: str = Field(
        default="minilm", pattern=r"^[A-Za-z0-9_-]{1,64}$", description="Name of the userProvided embedder in Meili."
    )
    embedder: str = Field(
        default="minilm-onnx", description="Embedder name in ltrr.embedder.EMBEDDERS (as the vector strategy's)."
    )
    embedder_options: dict[str, Any] = Field(
        default_factory=dict, description="Keyword arguments of the embedder, e.g. {'batch_size': 32}."
    )
    embedding_cache: str = Field(
        default=f"{constants.VAR_DIR}/embeddings.sqlite",
        description="SQLite file of entity embeddings shared with the vector strategy; '' disables the cache.",
    )
    ratios: tuple[float, ...] = Field(
        default=(0.0, 0.5, 0.9), min_length=1, description="semanticRatio of each peer, distinct, in [0, 1]."
    )
    batch_size: int = Field(
        default=1000, ge=1, le=20_000, description="Entities per add-documents request (~8 MB of JSON per 1000)."
    )
    write_timeout_s: float = Field(
        default=60.0, gt=0, le=3600, description="Deadline of one write or administration call, seconds."
    )
    max_tags: int = Field(default=20, ge=0, le=1000, description="Tags indexed per entity (the first ones).")
    max_description_chars: int = Field(default=1000, ge=0, le=100_000, description="Description characters indexed.")
    progress: bool = Field(default=True, description="Show a tqdm progress bar (stderr) while indexing.")

    @field_validator("ratios")
    @classmethod
    def _check_ratios(cls, ratios: tuple[float, ...]) -> tuple[float, ...]:
        for r in ratios:
            if not 0.0 <= r <= 1.0:
                raise ValueError(f"every ratio must be in [0, 1], got {r!r}")
        if len(set(ratios)) != len(ratios):
            raise ValueError(f"ratios must be distinct, got {list(ratios)}")
        return ratios


def fingerprint(doc: dict[str, Any], embedder_name: str) -> str:
    """``sha1`` of the document (keys sorted, without ``_vectors``) and the embedder that made its vector."""
    blob = json.dumps(doc, sort_keys=True, ensure_ascii=False) + "\x1f" + embedder_name
    return hashlib.sha1(blob.encode("utf-8")).hexdigest()


class MeiliHybridIndex(MeiliIndexStrategy):
    """The index the hybrid peers share (see the module docstring). Thread-safe."""

    def __init__(self, config: MeiliHybridConfig | None = None, embedder: Embedder | None = None) -> None:
        self.config = config or MeiliHybridConfig()
        # administration and writes carry large bodies: the client's deadline is the write one;
        # searches pass their own (`timeout_s`)
        super().__init__(self.config.model_copy(update={"timeout_s": self.config.write_timeout_s}), self.config.index)
        self.embedder: Embedder = (
            embedder if embedder is not None else make_embedder(self.config.embedder, **self.config.embedder_options)
        )
        path = self.config.embedding_cache
        self._documents = DocumentEncoder(self.embedder, constants.resolve_path(path) if path else "")
        self._lock = threading.Lock()

    @property
    def settings(self) -> dict[str, Any]:
        return {
            "searchableAttributes": SEARCHABLE,
            "rankingRules": RANKING_RULES,
            "typoTolerance": {"enabled": True},
            "facetSearch": False,
        }

    @property
    def embedders(self) -> dict[str, dict[str, Any]]:
        return {self.config.meili_embedder: {"source": "userProvided", "dimensions": self.embedder.dim}}

    def ensure_index(self) -> None:
        """Create the index and apply its settings, then its embedder (each only if it differs; waits)."""
        super().ensure_index()
        path = f"indexes/{self._index}/settings/embedders"
        have = self._client.request("GET", path) or {}
        want = self.embedders
        if any({k: (have.get(name) or {}).get(k) for k in conf} != conf for name, conf in want.items()):
            self._client.wait_task(int(self._client.request("PATCH", path, want)["taskUid"]))

    def peers(self) -> list[MeiliHybridPeer]:
        """One peer per ``config.ratios``, all searching this index."""
        return [MeiliHybridPeer(self, r) for r in self.config.ratios]

    # -- writes ------------------------------------------------------------------------
    def _fingerprints(self) -> dict[str, str]:
        """``{document id: fingerprint}`` of every document in the index."""
        out: dict[str, str] = {}
        while True:
            body = {"fields": ["id", "fingerprint"], "offset": len(out), "limit": _PAGE}
            page = self._client.request("POST", f"indexes/{self._index}/documents/fetch", body)
            out.update((str(d["id"]), str(d.get("fingerprint", ""))) for d in page["results"])
            if not page["results"] or len(out) >= int(page["total"]):
                return out

    def index(self, entities: Iterable[Entity]) -> IndexReport:
        """Sync the index to ``entities`` (last one wins for a repeated id); returns once it is searchable."""
        t0 = time.perf_counter()
        cfg = self.config
        docs: dict[str, tuple[Entity, dict[str, Any]]] = {}
        given = 0
        for i, e in enumerate(entities):
            if not isinstance(e, Entity):
                raise InvalidRequest(f"entities[{i}]", f"must be an Entity, got {type(e).__name__}")
            doc = entity_to_doc(e, cfg.max_tags, cfg.max_description_chars)
            doc["fingerprint"] = fingerprint(doc, self.embedder.name)
            docs[doc["id"]] = (e, doc)
            given += 1
        with self._lock:
            self.ensure_index()
            have = self._fingerprints()
            todo = [(e, d) for id_, (e, d) in docs.items() if have.get(id_) != d["fingerprint"]]
            stale = [id_ for id_ in have if id_ not in docs]
            written = self._upload(todo)
            if stale:
                path = f"indexes/{self._index}/documents/delete-batch"
                self._client.wait_task(int(self._client.request("POST", path, stale)["taskUid"]))
        skipped = {
            "duplicate entity_id (last kept)": given - len(docs),
            "unchanged (already indexed)": len(docs) - len(todo),
            "not indexed by meilisearch": len(todo) - written,
        }
        return IndexReport(written, time.perf_counter() - t0, {k: n for k, n in skipped.items() if n})

    def _upload(self, todo: Sequence[tuple[Entity, dict[str, Any]]]) -> int:
        """Embed and add ``todo`` in batches, wait for every task; returns the documents Meilisearch indexed."""
        if not todo:
            return 0
        cfg = self.config
        encoder = self._documents.get()
        bar = tqdm(total=len(todo), desc=f"meili hybrid {cfg.index}", unit="ent", file=sys.stderr,
                   disable=not cfg.progress)  # fmt: skip
        try:
            tasks = []
            for s in range(0, len(todo), cfg.batch_size):
                batch = todo[s : s + cfg.batch_size]
                vectors = encoder.encode([e.text() for e, _ in batch])
                docs = [
                    d | {"_vectors": {cfg.meili_embedder: v.tolist()}} for (_, d), v in zip(batch, vectors, strict=True)
                ]
                tasks.append(self._client.add_documents(cfg.index, docs))
                bar.update(len(docs))
            indexed = 0
            for i, task in enumerate(tasks):
                bar.set_postfix_str(f"indexing batch {i + 1}/{len(tasks)}")
                details = self._client.wait_task(task).details or {}
                indexed += int(details.get("indexedDocuments") or 0)
            return indexed
        finally:
            bar.close()

    # -- reads -------------------------------------------------------------------------
    def search(self, text: str, k: int, ratio: float) -> list[str]:
        """The entity ids Meilisearch's hybrid search ranks for ``text`` at ``semanticRatio = ratio``, at most ``k``."""
        if not isinstance(text, str):
            raise InvalidRequest("text", f"must be a str, got {type(text).__name__}")
        check_k(k)
        if not 0.0 <= ratio <= 1.0:
            raise InvalidRequest("ratio", f"must be in [0, 1], got {ratio!r}")
        body: dict[str, Any] = {
            "q": text,
            "hybrid": {"embedder": self.config.meili_embedder, "semanticRatio": ratio},
            "limit": k,
            "attributesToRetrieve": ["entity_id"],
        }
        if ratio > 0.0:  # at 0.0 Meilisearch runs the keyword search alone and never reads the vector
            body["vector"] = self.embedder.encode([text])[0].tolist()
        res = self._client.request("POST", f"indexes/{self._index}/search", body, timeout_s=self.config.timeout_s)
        return [str(h["entity_id"]) for h in res["hits"]]

    def close(self) -> None:
        """Close the connections and the embedding cache (both reopen on the next call)."""
        super().close()
        self._documents.close()


class MeiliHybridPeer:
    """One :class:`~ltrr.peers.Peer`: Meilisearch hybrid search at one ``semanticRatio``, on a shared index."""

    def __init__(self, shared: MeiliHybridIndex, ratio: float) -> None:
        if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0.0 <= ratio <= 1.0:
            raise ConfigError(f"`ratio` must be a number in [0, 1], got {ratio!r}")
        self.shared = shared
        self.ratio = float(ratio)
        self.name = f"meili hybrid {self.ratio}"

    def index(self, entities: Iterable[Entity]) -> IndexReport:
        """Sync the shared index: after another peer indexed the same catalog, nothing is written."""
        return self.shared.index(entities)

    def search(self, text: str, k: int) -> list[str]:
        return self.shared.search(text, k, self.ratio)

    def close(self) -> None:
        self.shared.close()
