"""Peer: Milvus hybrid search, dense MiniLM vectors plus Milvus's own BM25, fused by the server.

What a user would set up instead of ltrr from the Milvus documentation ("Full Text Search",
"Hybrid Search"): one collection, two ANN requests per query, one server-side reranker. Two
peers share the collection and differ only in the reranker: ``"milvus hybrid rrf"``
(``RRFRanker``) and ``"milvus hybrid weighted"`` (``WeightedRanker``); :func:`milvus_hybrid_peers`
builds both over one :class:`MilvusHybridIndex` (:func:`bench_peers`: on a database in a directory).

Collection (default ``ltrr_peer_hybrid``, one row per entity):

=============  ==========================  ====================================================
field          type                        notes
=============  ==========================  ====================================================
``entity_id``  VARCHAR(512), primary       the entity id
``text``       VARCHAR(8192), analyzer on  title, subtitle, tags, genres, description: the
                                           attributes the lexical strategy makes searchable
                                           (same tag and description limits), UTF-8-cut
``dense``      FLOAT_VECTOR(384)           ``embed(entity.text())``, the vector strategy's text
                                           and embedder, so ``var/embeddings.sqlite`` is reused
``sparse``     SPARSE_FLOAT_VECTOR         output of the BM25 function on ``text``
=============  ==========================  ====================================================

The schema holds ``Function(function_type=BM25, input_field_names=["text"],
output_field_names=["sparse"])``: the server tokenizes ``text`` on insert and the raw query text
on search; nothing sparse is computed here. Indexes: ``dense`` HNSW (``M=16,
efConstruction=100``, ``ef=512`` raised to the request's limit, as the vector strategy), COSINE;
``sparse`` ``SPARSE_INVERTED_INDEX`` with metric ``BM25`` and ``bm25_k1=1.2, bm25_b=0.75``
(the values of the Milvus documentation's example; Milvus Lite's own default k1 is 1.5).

Query (:meth:`MilvusHybridIndex.search`): one ``hybrid_search`` with
``AnnSearchRequest(dense = embed(text), COSINE)`` and ``AnnSearchRequest(sparse = text, BM25)``,
each asking for ``max(k, route_limit)`` hits, fused into ``k`` by the server:

* RRF: ``score(d) = sum_r 1 / (rrf_k + rank_r(d))`` over the routes ``r`` that returned ``d``
  (1-based ranks; ``rrf_k = 60``).
* Weighted (``norm_score=True``, pymilvus' default): ``score(d) = w_dense * (1 + cos(q, d)) / 2
  + w_sparse * (2 / pi) * arctan(bm25(q, d))``, a route that did not return ``d`` adding 0
  (weights default 0.5 / 0.5).

Backend: this needs BM25 functions, which Milvus has from 2.5. The ``milvus`` package's
standalone server (2.3.5, the vector strategy's local default) predates them and is refused
with :class:`~ltrr.errors.BackendUnavailable` (:func:`bm25_capable` reads the server version).
The default ``uri`` is therefore a Milvus Lite database (``milvus-lite`` 3.2, whose engine has
the BM25 function, sparse inverted indexes and ``hybrid_search`` with both rankers): a
``*.db`` path opens it in this process, as a user's ``MilvusClient("x.db")`` does; an
``http://`` uri reaches a :class:`~ltrr.backends.milvus_lite_server.MilvusLiteServer` or a
Milvus >= 2.5 server the same way. Where Milvus Lite 3.2 differs from a Milvus server:

* BM25 statistics (document count, average length, document frequencies) are those of each
  segment, not of the collection (a TODO in its ``Collection._search_sparse``), so scores from
  two segments have different baselines; a segment is cut when the memtable reaches 128 MB.
* Its "standard" analyzer is ``\\w+`` plus lowercasing (Milvus: the standard tokenizer and the
  lowercase filter); no stemming on either.
* Every search runs in Python: BM25 walks the posting lists of the query's terms, and both
  routes check every row's version and tombstones, so a search costs time in proportion to the
  collection's rows, whatever it finds; the dense route's faiss HNSW search is the small part.
* A ``*.db`` database is a directory that only one process may open; its server runs in threads
  of the opening process (latency measured there includes sharing that interpreter).

Indexing (:meth:`MilvusHybridIndex.index`) is a rebuild: drop, create, release, insert in batches
(dense vectors through an :class:`~ltrr.embedder.EmbeddingCache`), flush, load (which returns
once every segment has its indexes), one probe search. The collection then records a
digest of its rows and settings (property ``ltrr.digest``); indexing the same entities again
with the same settings finds it and only loads the collection, so the two peers of a run, or
a second run, do not build it twice.
"""

from __future__ import annotations

import hashlib
import re
import sys
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Literal, Sequence, TypeVar

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pymilvus import AnnSearchRequest, DataType, Function, FunctionType, MilvusClient, RRFRanker, WeightedRanker
from pymilvus.exceptions import MilvusException
from tqdm import tqdm

from ltrr import constants
from ltrr.backends.milvus_errors import NOT_LOADED, milvus_client, milvus_errors
from ltrr.embedder import DocumentEncoder, Embedder, make_embedder
from ltrr.errors import BackendUnavailable, InvalidRequest
from ltrr.peers import IndexReport
from ltrr.strategies.base import check_k
from ltrr.strategies.vector import truncate_utf8
from ltrr.types import Entity

T = TypeVar("T")

ID_MAX_BYTES = 512
TEXT_MAX_BYTES = 8192
#: Bump when the schema or the row text changes: it is part of the collection's digest.
SCHEMA_VERSION = 1
DIGEST_PROPERTY = "ltrr.digest"
#: The first Milvus (server or Lite) with BM25 functions.
BM25_SINCE = (2, 5)

RankerKind = Literal["rrf", "weighted"]
PEER_NAMES: dict[str, str] = {"rrf": "milvus hybrid rrf", "weighted": "milvus hybrid weighted"}


def _params(**kw: int | float | str) -> dict[str, int | float | str]:
    return dict(kw)


class MilvusHybridConfig(BaseModel):
    """Config of :class:`MilvusHybridIndex` and its peers."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    uri: str = Field(
        default=f"{constants.VAR_DIR}/milvus-hybrid-peer.db",
        description="Milvus Lite database (a *.db path, opened in this process) or a server URI (Milvus >= 2.5).",
    )
    token: str = Field(default="", description="Milvus token ('user:password' or API key); unused by Milvus Lite.")
    collection: str = Field(
        default="ltrr_peer_hybrid", pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,254}$", description="Milvus collection name."
    )
    embedder: str = Field(
        default="minilm-onnx", description="Embedder name in ltrr.embedder.EMBEDDERS (the vector strategy's)."
    )
    embedder_options: dict[str, Any] = Field(
        default_factory=dict, description="Keyword arguments of the embedder, e.g. {'batch_size': 32}."
    )
    embedding_cache: str = Field(
        default=f"{constants.VAR_DIR}/embeddings.sqlite",
        description="SQLite file of entity embeddings shared with the vector strategy; '' disables the cache.",
    )
    index_type: Literal["HNSW", "FLAT", "IVF_FLAT", "AUTOINDEX"] = Field(
        default="HNSW", description="Index of the dense field."
    )
    index_params: dict[str, int | float | str] = Field(
        default_factory=lambda: _params(M=16, efConstruction=100),
        description="Dense index build parameters (HNSW: M, efConstruction; IVF_FLAT: nlist).",
    )
    search_params: dict[str, int | float | str] = Field(
        default_factory=lambda: _params(ef=512),
        description="Dense search parameters (HNSW: ef, raised to the route's limit if smaller; IVF_FLAT: nprobe).",
    )
    bm25_k1: float = Field(default=1.2, gt=0, le=3, description="BM25 term-frequency saturation (index parameter).")
    bm25_b: float = Field(default=0.75, ge=0, le=1, description="BM25 length normalisation (index parameter).")
    rrf_k: int = Field(default=60, ge=1, le=16_384, description="RRFRanker's k: score = sum 1 / (k + rank).")
    dense_weight: float = Field(default=0.5, ge=0, le=1, description="WeightedRanker weight of the dense route.")
    sparse_weight: float = Field(default=0.5, ge=0, le=1, description="WeightedRanker weight of the BM25 route.")
    route_limit: int = Field(
        default=100, ge=1, le=16_384, description="Hits each route returns before fusion (at least the call's k)."
    )
    max_tags: int = Field(default=20, ge=0, le=1000, description="Tags in the BM25 text (the lexical strategy's).")
    max_description_chars: int = Field(
        default=1000, ge=0, le=100_000, description="Description characters in the BM25 text (the lexical strategy's)."
    )
    batch_size: int = Field(default=1000, ge=1, le=100_000, description="Entities embedded and inserted per batch.")
    timeout_s: float = Field(default=10.0, gt=0, le=600, description="Deadline of one search call, seconds.")
    connect_timeout_s: float = Field(default=5.0, gt=0, le=120, description="Deadline of opening the connection, s.")
    write_timeout_s: float = Field(default=120.0, gt=0, le=3600, description="Deadline of one insert batch, seconds.")
    load_timeout_s: float = Field(
        default=1800.0, gt=0, le=86_400, description="Deadline of create/flush/load calls (builds indexes), seconds."
    )
    progress: bool = Field(default=True, description="Show a tqdm progress bar (stderr) while inserting.")

    @model_validator(mode="after")
    def _some_weight(self) -> MilvusHybridConfig:
        if self.dense_weight + self.sparse_weight <= 0:
            raise ValueError("`dense_weight` and `sparse_weight` must not both be 0")
        return self


# -- pure helpers ------------------------------------------------------------------
@dataclass(frozen=True)
class Row:
    """One entity as the collection stores it (before embedding)."""

    entity_id: str
    text: str  #: the BM25 function's input
    embed_text: str  #: what the dense vector embeds: ``entity.text()``


def bm25_text(entity: Entity, max_tags: int = 20, max_description_chars: int = 1000) -> str:
    """The analysed text of one entity: the lexical strategy's searchable attributes, in its order."""
    parts = [
        entity.title,
        entity.subtitle,
        ", ".join(entity.tags[:max_tags]),
        ", ".join(entity.genres),
        entity.description[:max_description_chars],
    ]
    return truncate_utf8("\n".join(p for p in parts if p), TEXT_MAX_BYTES)


def prepare_rows(
    entities: Iterable[Entity], max_tags: int = 20, max_description_chars: int = 1000
) -> tuple[list[Row], dict[str, int]]:
    """The rows to insert (the last entity of a repeated id wins) and the count of each reason to skip one."""
    latest: dict[str, Entity] = {}
    skipped: dict[str, int] = {}

    def skip(reason: str) -> None:
        skipped[reason] = skipped.get(reason, 0) + 1

    for i, e in enumerate(entities):
        if not isinstance(e, Entity):
            raise InvalidRequest(f"entities[{i}]", f"must be an Entity, got {type(e).__name__}")
        if not e.entity_id:
            skip("empty entity_id")
        elif len(e.entity_id.encode("utf-8")) > ID_MAX_BYTES:
            skip(f"entity_id over {ID_MAX_BYTES} UTF-8 bytes")
        else:
            if e.entity_id in latest:
                skip("duplicate entity_id (the last one is indexed)")
            latest[e.entity_id] = e
    rows = [Row(e.entity_id, bm25_text(e, max_tags, max_description_chars), e.text()) for e in latest.values()]
    return rows, skipped


def rows_digest(rows: Sequence[Row], settings: Sequence[object]) -> str:
    """sha1 of the settings that shape the collection and of every row, in id order."""
    h = hashlib.sha1(repr(tuple(settings)).encode("utf-8"))
    for r in sorted(rows, key=lambda r: r.entity_id):
        h.update(b"\x1e")
        h.update("\x1f".join((r.entity_id, r.text, r.embed_text)).encode("utf-8"))
    return h.hexdigest()


_VERSION = re.compile(r"(\d+)\.(\d+)")


def bm25_capable(server_version: str) -> bool | None:
    """Whether a server of this version has BM25 functions; ``None`` if the version cannot be read.

    ``"v2.3.5"`` (Milvus) -> False; ``"v2.5.4"`` -> True; ``"milvus_lite-3.2.2"`` -> True.
    """
    m = _VERSION.search(server_version or "")
    if m is None:
        return None
    return (int(m.group(1)), int(m.group(2))) >= BM25_SINCE


# -- the shared collection ---------------------------------------------------------
class MilvusHybridIndex:
    """The collection both hybrid peers search (see the module docstring). Safe to share between threads."""

    def __init__(self, config: MilvusHybridConfig | None = None, embedder: Embedder | None = None) -> None:
        self.config = config if config is not None else MilvusHybridConfig()
        self.embedder: Embedder = (
            embedder if embedder is not None else make_embedder(self.config.embedder, **self.config.embedder_options)
        )
        self._lock = threading.RLock()
        self._client: MilvusClient | None = None
        path = self.config.embedding_cache
        self._documents = DocumentEncoder(self.embedder, constants.resolve_path(path) if path else "")
        self._users = 0

    # -- connection and error translation ------------------------------------------
    def _uri(self) -> str:
        uri = self.config.uri
        if "://" in uri:
            return uri
        path = Path(constants.resolve_path(uri))
        path.parent.mkdir(parents=True, exist_ok=True)
        return str(path)

    def client(self) -> MilvusClient:
        """The Milvus client, connected (and the server's BM25 support checked) on first use."""
        with self._lock:
            if self._client is None:
                with self._translate("connect"):
                    client = milvus_client(self._uri(), self.config.token, self.config.connect_timeout_s)
                    try:
                        version = str(client.get_server_version(timeout=self.config.connect_timeout_s))
                    except BaseException:
                        client.close()
                        raise
                if bm25_capable(version) is False:
                    client.close()
                    raise BackendUnavailable(
                        f"milvus at {self.config.uri} is {version}: BM25 functions need Milvus >= "
                        f"{BM25_SINCE[0]}.{BM25_SINCE[1]} (or Milvus Lite, a *.db uri)"
                    )
                self._client = client
            return self._client

    def _drop_client(self) -> None:
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            try:
                client.close()
            except Exception:  # noqa: BLE001 - best effort on a broken connection
                pass

    def _translate(self, op: str) -> AbstractContextManager[None]:
        return milvus_errors(
            f"milvus hybrid {op} ({self.config.uri}, collection {self.config.collection!r})", self._drop_client
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
            return fn(client)

    # -- the collection ----------------------------------------------------------------
    def _schema(self, client: MilvusClient) -> Any:
        schema = client.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("entity_id", DataType.VARCHAR, is_primary=True, max_length=ID_MAX_BYTES)
        schema.add_field("text", DataType.VARCHAR, max_length=TEXT_MAX_BYTES, enable_analyzer=True)
        schema.add_field("dense", DataType.FLOAT_VECTOR, dim=self.embedder.dim)
        schema.add_field("sparse", DataType.SPARSE_FLOAT_VECTOR)
        schema.add_function(
            Function(name="text_bm25", function_type=FunctionType.BM25, input_field_names=["text"],
                     output_field_names=["sparse"])
        )  # fmt: skip
        return schema

    def _index_params(self, client: MilvusClient) -> Any:
        cfg = self.config
        params = client.prepare_index_params()
        params.add_index("dense", index_type=cfg.index_type, metric_type="COSINE", params=dict(cfg.index_params))
        params.add_index(
            "sparse", index_type="SPARSE_INVERTED_INDEX", metric_type="BM25",
            params={"bm25_k1": cfg.bm25_k1, "bm25_b": cfg.bm25_b},
        )  # fmt: skip
        return params

    def _settings(self) -> tuple[object, ...]:
        """What, besides the rows, shapes the collection: a change of any rebuilds it."""
        cfg = self.config
        return (
            SCHEMA_VERSION, self.embedder.name, self.embedder.dim, cfg.index_type, sorted(cfg.index_params.items()),
            cfg.bm25_k1, cfg.bm25_b, cfg.max_tags, cfg.max_description_chars,
        )  # fmt: skip

    def _stored_digest(self, client: MilvusClient) -> str | None:
        cfg = self.config
        if not client.has_collection(cfg.collection, timeout=cfg.load_timeout_s):
            return None
        props = client.describe_collection(cfg.collection, timeout=cfg.load_timeout_s).get("properties") or {}
        return str(props[DIGEST_PROPERTY]) if DIGEST_PROPERTY in props else None

    def count(self) -> int:
        """Rows in the collection (0 if it does not exist)."""
        cfg = self.config
        with self._translate("count"):
            if not self.client().has_collection(cfg.collection, timeout=cfg.timeout_s):
                return 0
        res = self._call(
            "count", lambda c: c.query(cfg.collection, filter="", output_fields=["count(*)"], timeout=cfg.timeout_s)
        )
        return int(res[0]["count(*)"]) if res else 0

    def drop(self) -> None:
        """Drop the collection (tests and rebuilds)."""
        with self._translate("drop"):
            self.client().drop_collection(self.config.collection, timeout=self.config.load_timeout_s)

    def index(self, entities: Iterable[Entity]) -> IndexReport:
        """Rebuild the collection from ``entities`` unless it already holds exactly them; returns once searchable."""
        start = time.perf_counter()
        cfg = self.config
        rows, skipped = prepare_rows(entities, cfg.max_tags, cfg.max_description_chars)
        digest = rows_digest(rows, self._settings())
        with self._lock:
            with self._translate("index"):
                client = self.client()
                if self._stored_digest(client) == digest:
                    client.load_collection(cfg.collection, timeout=cfg.load_timeout_s)
                    return IndexReport(len(rows), time.perf_counter() - start, skipped)
                if client.has_collection(cfg.collection, timeout=cfg.load_timeout_s):
                    client.drop_collection(cfg.collection, timeout=cfg.load_timeout_s)
                client.create_collection(
                    cfg.collection, schema=self._schema(client), index_params=self._index_params(client),
                    timeout=cfg.load_timeout_s,
                )  # fmt: skip
                # Released while writing: Milvus Lite then builds no index in the background after a
                # flush, so the load below builds them all itself and returns once they are there. (A
                # release + load right after a flush raced that background build, which writes the
                # index file while the load reads it: "read error ... .hnsw.idx".)
                client.release_collection(cfg.collection, timeout=cfg.load_timeout_s)
            self._insert(rows)
            with self._translate("load"):
                client = self.client()
                client.flush(cfg.collection, timeout=cfg.load_timeout_s)
                client.load_collection(cfg.collection, timeout=cfg.load_timeout_s)
            stored = self.count()
            if stored != len(rows):
                raise BackendUnavailable(
                    f"milvus hybrid index ({cfg.uri}, collection {cfg.collection!r}): "
                    f"{stored} rows stored after inserting {len(rows)}"
                )
            if rows:
                self._search_ids("probe", rows[0].embed_text, 1, RRFRanker(cfg.rrf_k), timeout=cfg.load_timeout_s)
            with self._translate("index"):
                self.client().alter_collection_properties(
                    cfg.collection, properties={DIGEST_PROPERTY: digest}, timeout=cfg.load_timeout_s
                )
        return IndexReport(len(rows), time.perf_counter() - start, skipped)

    def _insert(self, rows: Sequence[Row]) -> None:
        cfg = self.config
        encoder = self._documents.get()
        bar = tqdm(total=len(rows), desc=f"milvus hybrid insert {cfg.collection}", unit="ent", file=sys.stderr,
                   disable=not cfg.progress)  # fmt: skip
        try:
            for s in range(0, len(rows), cfg.batch_size):
                batch = rows[s : s + cfg.batch_size]
                vectors = encoder.encode([r.embed_text for r in batch])
                data = [
                    {"entity_id": r.entity_id, "text": r.text, "dense": v.tolist()}
                    for r, v in zip(batch, vectors, strict=True)
                ]
                with self._translate("insert"):
                    self.client().insert(cfg.collection, data, timeout=cfg.write_timeout_s)
                bar.update(len(batch))
        finally:
            bar.close()

    # -- reads ---------------------------------------------------------------------
    def ranker(self, kind: RankerKind) -> RRFRanker | WeightedRanker:
        """The pymilvus reranker of ``kind`` with this config's parameters (dense route first)."""
        if kind == "rrf":
            return RRFRanker(self.config.rrf_k)
        if kind == "weighted":
            return WeightedRanker(self.config.dense_weight, self.config.sparse_weight, norm_score=True)
        raise InvalidRequest("ranker", f"must be one of {', '.join(PEER_NAMES)}, got {kind!r}")

    def _dense_request(self, text: str, limit: int) -> AnnSearchRequest:
        params = dict(self.config.search_params)
        if "ef" in params:
            params["ef"] = max(int(params["ef"]), limit)
        vector = self.embedder.encode([text])[0].tolist()
        return AnnSearchRequest(data=[vector], anns_field="dense", param={"metric_type": "COSINE", "params": params},
                                limit=limit)  # fmt: skip

    @staticmethod
    def _sparse_request(text: str, limit: int) -> AnnSearchRequest:
        return AnnSearchRequest(data=[text], anns_field="sparse", param={"metric_type": "BM25"}, limit=limit)

    def _search_ids(
        self, op: str, text: str, k: int, ranker: RRFRanker | WeightedRanker, timeout: float | None = None
    ) -> list[str]:
        cfg = self.config
        limit = max(k, cfg.route_limit)
        reqs = [self._dense_request(text, limit), self._sparse_request(text, limit)]
        res = self._call(
            op,
            lambda c: c.hybrid_search(cfg.collection, reqs, ranker=ranker, limit=k, output_fields=["entity_id"],
                                      timeout=timeout or cfg.timeout_s),
        )  # fmt: skip
        return [str(hit["entity_id"]) for hit in res[0]] if res else []

    def search(self, text: str, k: int, ranker: RankerKind = "rrf") -> list[str]:
        """The ``k`` entity ids ``hybrid_search`` ranks best for ``text`` under ``ranker``."""
        check_k(k)
        if not isinstance(text, str):
            raise InvalidRequest("text", f"must be a str, got {type(text).__name__}")
        return self._search_ids("hybrid_search", text, k, self.ranker(ranker))

    def search_route(self, text: str, k: int, route: Literal["dense", "sparse"]) -> list[str]:
        """One route alone (a plain ``search``): what the fusion starts from; for tests and diagnosis."""
        check_k(k)
        if route not in ("dense", "sparse"):
            raise InvalidRequest("route", f"must be 'dense' or 'sparse', got {route!r}")
        cfg = self.config
        req = self._dense_request(text, k) if route == "dense" else self._sparse_request(text, k)
        res = self._call(
            "search",
            lambda c: c.search(cfg.collection, data=req.data, anns_field=req.anns_field, search_params=req.param,
                               limit=k, output_fields=["entity_id"], timeout=cfg.timeout_s),
        )  # fmt: skip
        return [str(hit["entity_id"]) for hit in res[0]] if res else []

    # -- lifetime ------------------------------------------------------------------
    def acquire(self) -> MilvusHybridIndex:
        """Count one more user (a peer); :meth:`release` by the last one closes the index."""
        with self._lock:
            self._users += 1
        return self

    def release(self) -> None:
        with self._lock:
            self._users -= 1
            last = self._users <= 0
        if last:
            self.close()

    def close(self) -> None:
        """Close the connection and the embedding cache. A ``*.db`` database stays open in this process
        until it exits (pymilvus and Milvus Lite keep one server per path; a new client reuses it)."""
        self._drop_client()
        self._documents.close()


# -- the peers -----------------------------------------------------------------------
class MilvusHybridPeer:
    """One reranker over a shared :class:`MilvusHybridIndex`: a :class:`ltrr.peers.Peer`."""

    def __init__(self, index: MilvusHybridIndex, ranker: RankerKind, name: str | None = None) -> None:
        index.ranker(ranker)  # validates the kind
        self.shared = index.acquire()
        self.ranker: RankerKind = ranker
        self.name = name if name is not None else PEER_NAMES[ranker]
        self._closed = False

    def index(self, entities: Iterable[Entity]) -> IndexReport:
        """(Re)build the shared collection; a sibling peer's call with the same entities only loads it."""
        return self.shared.index(entities)

    def search(self, text: str, k: int) -> list[str]:
        return self.shared.search(text, k, self.ranker)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self.shared.release()


def milvus_hybrid_peers(
    config: MilvusHybridConfig | None = None, embedder: Embedder | None = None
) -> tuple[MilvusHybridPeer, MilvusHybridPeer]:
    """The ``"milvus hybrid rrf"`` and ``"milvus hybrid weighted"`` peers over one collection."""
    shared = MilvusHybridIndex(config, embedder)
    return MilvusHybridPeer(shared, "rrf"), MilvusHybridPeer(shared, "weighted")


def bench_peers(data_dir: str | Path, **config: Any) -> tuple[MilvusHybridPeer, MilvusHybridPeer]:
    """:func:`milvus_hybrid_peers` on the Milvus Lite database ``<data_dir>/milvus-hybrid.db`` (``make bench``);
    ``config``: other :class:`MilvusHybridConfig` fields (the bench passes the vector strategy's embedder and cache)."""
    return milvus_hybrid_peers(MilvusHybridConfig(uri=str(Path(data_dir) / "milvus-hybrid.db"), **config))
