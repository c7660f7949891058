"""Vector retrieval: dense embeddings of the catalog in a Milvus collection.

Collection ``ltrr_entities`` (one row per entity):

=============  ====================  ==========================================
field          type                  notes
=============  ====================  ==========================================
``id``         VARCHAR(512), primary the entity id (``"<type>:<key>"``)
``vector``     FLOAT_VECTOR(dim)     ``embed(entity.text())``, unit norm
``entity_type`` VARCHAR(32)          filterable; also the partition name
``title``      VARCHAR(1024)         returned with hits
``subtitle``   VARCHAR(1024)         returned with hits
``popularity`` FLOAT                 in [0, 100]
=============  ====================  ==========================================

Scoring: with unit vectors ``q`` (query) and ``e`` (entity), the score is the
cosine similarity ``s(q, e) = q . e`` in [-1, 1] (Milvus ``COSINE`` returns the
similarity itself, larger is better); candidates are ordered by ``s``
descending and ranked from 1.

Index: ``HNSW`` (``M=16, efConstruction=100``; ``ef=512`` at search time,
raised to ``k`` when ``k`` is larger). The local default server is a real
Milvus standalone (:mod:`ltrr.backends.milvus_server`), whose knowhere HNSW
answers in milliseconds; Milvus Lite (:mod:`ltrr.backends.milvus_lite_server`)
works by ``uri`` too, but scans every row in Python on each search. Measured
latency and recall are in the README ("Latency") and ``make bench``, dated.

* ``partition_by_type`` (default): each entity type is its own partition
  (``artist``, ``track``, ``playlist``, ``podcast``), and a type-restricted
  query searches only those partitions (``partition_names``). Entity ids embed
  their type, so an id never moves partition. With ``partition_by_type=False``
  the restriction is a filter expression ``entity_type in [...]`` instead, which
  Milvus standalone applies inside the HNSW search (every hit matches, and ``k``
  hits come back when that many match). Milvus Lite 3.2 with HNSW applies it
  after the graph search and can return far fewer than ``k``: use partitions there.
* :meth:`VectorStrategy.search_many`: one embedding batch and one Milvus
  search per group of queries with the same type restriction.

Consistency: searches use the collection's ``Bounded`` level (the client's
default), which does not wait for the newest writes: a row upserted less than
``gracefulTime`` (5 s) ago may not be found yet. Strong consistency costs about
200 ms per search on this server, so it is not used on the request path;
:meth:`VectorStrategy.upsert` flushes, which makes the rows of a finished sync
(``UpsertEntities``, ``ltrr ingest``) visible to every later search.

Writes: :meth:`VectorStrategy.upsert` embeds ``entity.text()`` in batches
through an :class:`~ltrr.embedder.EmbeddingCache` (unchanged texts are not
re-encoded), upserts rows in batches and flushes once at the end, so the rows
leave the growing segment for a sealed one whose index the server builds.
:meth:`VectorStrategy.refresh` flushes and, after a bulk write
(``reload_after_rows``), releases and loads the collection, which returns once
every segment has its index; :func:`ltrr.ingest.sync` calls it after a sync.

After a server restart the collection is released; the next call loads it and
then waits (up to ``load_timeout_s``) until a search answers: Milvus 2.3 serves
a reloaded collection only once the old server's sessions have expired
(``common.session.ttl``, 15 s as ltrr configures it). :meth:`VectorStrategy.warm_up`
does the same before a replica takes traffic.

Failures are translated at the boundary: deadline exceeded ->
:class:`~ltrr.errors.BackendTimeout`; connection refused, server errors,
missing collection -> :class:`~ltrr.errors.BackendUnavailable`. A refused
connection fails in milliseconds (pymilvus retries only within the call's
``timeout``), and the client is rebuilt on the next call so a restarted server
is picked up without waiting out gRPC's reconnect back-off. A collection left
released by a server restart is loaded again, once, transparently.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any, Literal, Sequence, TypeVar

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from pymilvus import DataType, MilvusClient
from pymilvus.exceptions import MilvusException
from tqdm import tqdm

from ltrr import constants
from ltrr.backends.milvus_errors import NOT_LOADED, milvus_client, milvus_errors
from ltrr.embedder import DocumentEncoder, Embedder, make_embedder
from ltrr.errors import ConfigError, InvalidRequest
from ltrr.strategies.base import check_k
from ltrr.types import ENTITY_TYPES, Candidate, Entity, ParsedQuery, Query

T = TypeVar("T")

ID_MAX_BYTES = 512
TEXT_MAX_BYTES = 1024
TYPE_MAX_BYTES = 32
OUTPUT_FIELDS = ["entity_type", "title", "subtitle"]


def _params(**kw: int | float | str) -> dict[str, int | float | str]:
    return dict(kw)


class VectorConfig(BaseModel):
    """Config of :class:`VectorStrategy`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    uri: str = Field(default=constants.MILVUS_URI, description="Milvus URI, e.g. http://127.0.0.1:19530.")
    token: str = Field(default=constants.MILVUS_TOKEN, description="Milvus token ('user:password' or API key).")
    collection: str = Field(
        default="ltrr_entities", pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,254}$", description="Milvus collection name."
    )
    embedder: str = Field(
        default="minilm-onnx", description="Embedder name in ltrr.embedder.EMBEDDERS (minilm: the torch reference)."
    )
    embedder_options: dict[str, Any] = Field(
        default_factory=dict, description="Keyword arguments of the embedder, e.g. {'batch_size': 32}."
    )
    embedding_cache: str = Field(
        default=f"{constants.VAR_DIR}/embeddings.sqlite",
        description="SQLite file caching entity embeddings across re-indexing; '' disables the cache.",
    )
    metric: Literal["COSINE", "IP"] = Field(
        default="COSINE", description="Milvus metric; vectors are unit-norm, so both give cosine similarity."
    )
    index_type: Literal["HNSW", "IVF_FLAT", "FLAT", "AUTOINDEX"] = Field(
        default="HNSW", description="Milvus vector index type."
    )
    index_params: dict[str, int | float | str] = Field(
        default_factory=lambda: _params(M=16, efConstruction=100),
        description="Index build parameters (HNSW: M, efConstruction; IVF_FLAT: nlist).",
    )
    search_params: dict[str, int | float | str] = Field(
        default_factory=lambda: _params(ef=512),
        description="Search parameters (HNSW: ef, raised to k if smaller; IVF_FLAT: nprobe).",
    )
    partition_by_type: bool = Field(
        default=True, description="One partition per entity type; type-restricted searches scan only those."
    )
    timeout_s: float = Field(default=2.0, gt=0, le=120, description="Deadline of one search call, seconds.")
    connect_timeout_s: float = Field(
        default=5.0, gt=0, le=120, description="Deadline of opening the connection, seconds (refused: immediate)."
    )
    write_timeout_s: float = Field(default=120.0, gt=0, le=3600, description="Deadline of one upsert batch, seconds.")
    load_timeout_s: float = Field(
        default=600.0, gt=0, le=86_400, description="Deadline of create/flush/load calls (may build indexes), seconds."
    )
    batch_size: int = Field(default=1000, ge=1, le=100_000, description="Entities embedded and upserted per batch.")
    reload_after_rows: int = Field(
        default=5000, ge=1, description="refresh() also releases+loads (builds every index now) after this many rows."
    )
    progress: bool = Field(default=True, description="Show a tqdm progress bar (stderr) while upserting.")


# -- pure helpers ------------------------------------------------------------------
def truncate_utf8(text: str, max_bytes: int) -> str:
    """``text`` cut to at most ``max_bytes`` UTF-8 bytes, never inside a character."""
    raw = text.encode("utf-8")
    if len(raw) <= max_bytes:
        return text
    return raw[:max_bytes].decode("utf-8", errors="ignore")


def type_filter(types: Sequence[str]) -> str:
    """``entity_type in ["a", "b"]`` for the given types (``""`` if none)."""
    vals = list(dict.fromkeys(types))
    if not vals:
        return ""
    quoted = ", ".join('"' + t.replace("\\", "\\\\").replace('"', '\\"') + '"' for t in vals)
    return f"entity_type in [{quoted}]"


def entity_row(entity: Entity, vector: np.ndarray) -> dict[str, Any]:
    """The Milvus row of one entity."""
    return {
        "id": entity.entity_id,
        "vector": vector.tolist(),
        "entity_type": entity.entity_type,
        "title": truncate_utf8(entity.title, TEXT_MAX_BYTES),
        "subtitle": truncate_utf8(entity.subtitle, TEXT_MAX_BYTES),
        "popularity": float(entity.popularity),
    }


def hits_to_candidates(hits: Sequence[Any], k: int) -> list[Candidate]:
    """Milvus hits (best first) -> at most ``k`` candidates with 1-based ranks."""
    out: list[Candidate] = []
    for hit in hits[:k]:
        ent = hit.get("entity", {}) or {}
        out.append(
            Candidate(
                entity_id=str(hit["id"]),
                entity_type=str(ent.get("entity_type", "")),
                title=str(ent.get("title", "")),
                subtitle=str(ent.get("subtitle", "")),
                score=float(hit["distance"]),
                rank=len(out) + 1,
            )
        )
    return out


def _check_types(types: Sequence[str], name: str = "entity_types") -> None:
    bad = [t for t in types if t not in ENTITY_TYPES]
    if bad:
        raise InvalidRequest(name, f"unknown entity type {bad[0]!r}; valid: {', '.join(ENTITY_TYPES)}")


# -- strategy -------------------------------------------------------------------------
class VectorStrategy:
    """Dense retrieval over Milvus (see the module docstring). Safe to share between threads."""

    name = "vector"

    def __init__(self, config: VectorConfig | None = None, embedder: Embedder | None = None) -> None:
        self.config = config if config is not None else VectorConfig()
        self.embedder: Embedder = (
            embedder if embedder is not None else make_embedder(self.config.embedder, **self.config.embedder_options)
        )
        self._documents = DocumentEncoder(self.embedder, self.config.embedding_cache)
        self._lock = threading.RLock()
        self._client: MilvusClient | None = None
        self._ready = False
        self._unreloaded_rows = 0

    # -- connection and error translation ------------------------------------------
    def client(self) -> MilvusClient:
        """The Milvus client, connected on first use (and again after a connection failure)."""
        with self._lock:
            if self._client is None:
                with self._translate("connect"):
                    self._client = milvus_client(self.config.uri, self.config.token, self.config.connect_timeout_s)
            return self._client

    def _drop_client(self) -> None:
        with self._lock:
            client, self._client = self._client, None
            self._ready = False
        if client is not None:
            try:
                client.close()
            except Exception:  # noqa: BLE001 - best effort on a broken connection
                pass

    def _translate(self, op: str) -> AbstractContextManager[None]:
        return milvus_errors(
            f"milvus {op} ({self.config.uri}, collection {self.config.collection!r})", self._drop_client
        )

    def _call(self, op: str, fn: Callable[[MilvusClient], T]) -> T:
        """Run ``fn(client)``; if the collection was released (server restart), load it and retry once."""
        with self._translate(op):
            try:
                return fn(self.client())
            except MilvusException as exc:
                if exc.code != NOT_LOADED:
                    raise
            client = self.client()
            client.load_collection(self.config.collection, timeout=self.config.load_timeout_s)
            self._wait_searchable(client)
            return fn(client)

    def _wait_searchable(self, client: MilvusClient) -> None:
        """One search with the load deadline: returns once the loaded collection answers searches."""
        probe = [1.0] + [0.0] * (self.embedder.dim - 1)
        client.search(
            self.config.collection, data=[probe], limit=1,
            search_params={"metric_type": self.config.metric, "params": {}}, timeout=self.config.load_timeout_s,
        )  # fmt: skip

    def warm_up(self) -> None:
        """Connect, load the collection and wait until it answers (see the module docstring),
        then embed one query so the model is loaded: what a replica does before taking traffic."""
        self._ensure_ready()
        with self._translate("warm_up"):
            self._wait_searchable(self.client())
        self.search(Query("warm up", ParsedQuery("warm up", "warm up")), 10)

    # -- collection ----------------------------------------------------------------
    def ensure_collection(self) -> None:
        """Create the collection (schema, index, partitions) if missing, check it, and load it."""
        cfg = self.config
        with self._lock, self._translate("ensure_collection"):
            client = self.client()
            if not client.has_collection(cfg.collection, timeout=cfg.load_timeout_s):
                try:
                    client.create_collection(
                        cfg.collection, schema=self._schema(client), index_params=self._index_params(client),
                        timeout=cfg.load_timeout_s,
                    )  # fmt: skip
                except MilvusException:
                    # Another process (a background ingest, another replica) created it meanwhile: use theirs.
                    if not client.has_collection(cfg.collection, timeout=cfg.load_timeout_s):
                        raise
                    self._check_existing(client)
            else:
                self._check_existing(client)
            if cfg.partition_by_type:
                have = set(client.list_partitions(cfg.collection, timeout=cfg.load_timeout_s))
                for t in ENTITY_TYPES:
                    if t not in have:
                        client.create_partition(cfg.collection, t, timeout=cfg.load_timeout_s)
            client.load_collection(cfg.collection, timeout=cfg.load_timeout_s)
            self._ready = True

    def _schema(self, client: MilvusClient) -> Any:
        schema = client.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("id", DataType.VARCHAR, is_primary=True, max_length=ID_MAX_BYTES)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=self.embedder.dim)
        schema.add_field("entity_type", DataType.VARCHAR, max_length=TYPE_MAX_BYTES)
        schema.add_field("title", DataType.VARCHAR, max_length=TEXT_MAX_BYTES)
        schema.add_field("subtitle", DataType.VARCHAR, max_length=TEXT_MAX_BYTES)
        schema.add_field("popularity", DataType.FLOAT)
        return schema

    def _index_params(self, client: MilvusClient) -> Any:
        params = client.prepare_index_params()
        params.add_index(
            "vector", index_type=self.config.index_type, metric_type=self.config.metric,
            params=dict(self.config.index_params),
        )  # fmt: skip
        return params

    def _check_existing(self, client: MilvusClient) -> None:
        info = client.describe_collection(self.config.collection, timeout=self.config.load_timeout_s)
        fields = {f["name"]: f for f in info.get("fields", [])}
        vec = fields.get("vector")
        if vec is None or "id" not in fields or "entity_type" not in fields:
            raise ConfigError(
                f"collection {self.config.collection!r} exists without the ltrr schema (fields: {sorted(fields)}); "
                "drop it or set another `collection`"
            )
        dim = int(vec.get("params", {}).get("dim", -1))
        if dim != self.embedder.dim:
            raise ConfigError(
                f"collection {self.config.collection!r} has vectors of dim {dim} but embedder "
                f"{self.embedder.name!r} makes dim {self.embedder.dim}; drop it or set another `collection`"
            )

    def _ensure_ready(self) -> None:
        if not self._ready:
            self.ensure_collection()

    def refresh(self, *, force: bool = False) -> None:
        """Flush; after a bulk write (or with ``force``) also release and load, which returns once
        every segment has its index (Milvus Lite otherwise builds them in the background and
        brute-forces unindexed segments meanwhile). Other clients see "not loaded" for a moment
        and load the collection again themselves.
        """
        cfg = self.config
        self._ensure_ready()
        with self._translate("refresh"):
            client = self.client()
            client.flush(cfg.collection, timeout=cfg.load_timeout_s)
            if force or self._unreloaded_rows >= cfg.reload_after_rows:
                client.release_collection(cfg.collection, timeout=cfg.load_timeout_s)
                client.load_collection(cfg.collection, timeout=cfg.load_timeout_s)
                self._unreloaded_rows = 0

    def count(self) -> int:
        """Rows in the collection (0 if it does not exist). An ingest call, so it has the load deadline: a
        server just restarted took over 2 s (the search deadline) to answer the first count on 2 cores."""
        cfg = self.config
        with self._translate("count"):
            if not self.client().has_collection(cfg.collection, timeout=cfg.load_timeout_s):
                return 0
        res = self._call(
            "count",
            lambda c: c.query(cfg.collection, filter="", output_fields=["count(*)"], timeout=cfg.load_timeout_s),
        )
        return int(res[0]["count(*)"]) if res else 0

    def drop(self) -> None:
        """Drop the collection (tests and rebuilds)."""
        with self._translate("drop"):
            self.client().drop_collection(self.config.collection, timeout=self.config.load_timeout_s)
        self._ready = False

    # -- writes ----------------------------------------------------------------------
    def _encoder(self) -> Embedder:
        return self._documents.get()

    def upsert(self, entities: Sequence[Entity]) -> int:
        """Embed and upsert ``entities`` (last one wins for a repeated id); returns how many rows were written."""
        latest: dict[str, Entity] = {}
        for i, e in enumerate(entities):
            if not isinstance(e, Entity):
                raise InvalidRequest(f"entities[{i}]", f"must be an Entity, got {type(e).__name__}")
            _check_types([e.entity_type], f"entities[{i}].entity_type")
            if not e.entity_id or len(e.entity_id.encode("utf-8")) > ID_MAX_BYTES:
                raise InvalidRequest(f"entities[{i}].entity_id", f"must be 1 to {ID_MAX_BYTES} UTF-8 bytes")
            latest[e.entity_id] = e
        items = list(latest.values())
        if not items:
            return 0
        cfg = self.config
        self._ensure_ready()
        encoder = self._encoder()
        bar = tqdm(total=len(items), desc=f"vector upsert {cfg.collection}", unit="ent", file=sys.stderr,
                   disable=not cfg.progress)  # fmt: skip
        written = 0
        try:
            for s in range(0, len(items), cfg.batch_size):
                batch = items[s : s + cfg.batch_size]
                vectors = encoder.encode([e.text() for e in batch])
                rows = [entity_row(e, v) for e, v in zip(batch, vectors, strict=True)]
                groups: dict[str, list[dict[str, Any]]] = {}
                for row in rows:
                    groups.setdefault(row["entity_type"] if cfg.partition_by_type else "", []).append(row)
                for part, part_rows in groups.items():
                    self._upsert_rows(part_rows, part)
                written += len(rows)
                self._unreloaded_rows += len(rows)
                bar.update(len(rows))
        finally:
            bar.close()
        with self._translate("flush"):
            self.client().flush(cfg.collection, timeout=cfg.load_timeout_s)
        return written

    def _upsert_rows(self, rows: list[dict[str, Any]], partition: str) -> None:
        cfg = self.config

        def run(c: MilvusClient) -> Any:
            return c.upsert(cfg.collection, rows, partition_name=partition, timeout=cfg.write_timeout_s)

        self._call("upsert", run)

    # -- reads ---------------------------------------------------------------------
    def search(self, query: Query, k: int) -> list[Candidate]:
        """The ``k`` entities nearest to ``embed(query.text)``, restricted to ``query.entity_types`` if set."""
        check_k(k)
        return self.search_many([query], [k])[0]

    def search_many(self, queries: Sequence[Query], ks: Sequence[int]) -> list[list[Candidate]]:
        """:meth:`search` for many queries: one embedding batch, one Milvus search per type restriction."""
        if len(queries) != len(ks):
            raise InvalidRequest("ks", f"must have one k per query: {len(ks)} ks for {len(queries)} queries")
        for i, (q, k) in enumerate(zip(queries, ks, strict=True)):
            if not isinstance(q, Query):
                raise InvalidRequest(f"queries[{i}]", f"must be a Query, got {type(q).__name__}")
            check_k(k, f"ks[{i}]")
            _check_types(q.entity_types, f"queries[{i}].entity_types")
        if not queries:
            return []
        vectors = self.embedder.encode([q.text for q in queries])
        groups: dict[tuple[str, ...], list[int]] = {}
        for i, q in enumerate(queries):
            types = tuple(sorted(set(q.entity_types)))
            groups.setdefault(types if set(types) != set(ENTITY_TYPES) else (), []).append(i)
        out: list[list[Candidate]] = [[] for _ in queries]
        for types, idx in groups.items():
            limit = max(ks[i] for i in idx)
            results = self._search_vectors(vectors[idx], limit, types)
            for i, hits in zip(idx, results, strict=True):
                out[i] = hits_to_candidates(hits, ks[i])
        return out

    def _search_vectors(self, vectors: np.ndarray, limit: int, types: tuple[str, ...]) -> list[Any]:
        cfg = self.config
        params = dict(cfg.search_params)
        if "ef" in params:
            params["ef"] = max(int(params["ef"]), limit)
        kwargs: dict[str, Any] = {
            "data": vectors.tolist(),
            "limit": limit,
            "output_fields": OUTPUT_FIELDS,
            "search_params": {"metric_type": cfg.metric, "params": params},
            "timeout": cfg.timeout_s,
        }
        if types and cfg.partition_by_type:
            kwargs["partition_names"] = list(types)
        elif types:
            kwargs["filter"] = type_filter(types)
        res = self._call("search", lambda c: c.search(cfg.collection, **kwargs))
        return list(res)

    def close(self) -> None:
        """Close the Milvus connection and the embedding cache."""
        self._drop_client()
        self._documents.close()
