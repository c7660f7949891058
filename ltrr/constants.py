"""Defaults operators may tune. Each can be overridden from the environment
(``LTRR_<NAME>``); config files override these again."""

from __future__ import annotations

import os


def _env(name: str, default: str) -> str:
    return os.environ.get(f"LTRR_{name}", default)


VAR_DIR = _env("VAR_DIR", "var")
CATALOG_PATH = _env("CATALOG_PATH", f"{VAR_DIR}/catalog.sqlite")
FEEDBACK_PATH = _env("FEEDBACK_PATH", f"{VAR_DIR}/feedback.sqlite")
MEILI_URL = _env("MEILI_URL", "http://127.0.0.1:7700")
MEILI_KEY = _env("MEILI_MASTER_KEY", "ltrr-dev-master-key-change-me")
MILVUS_URI = _env("MILVUS_URI", "http://127.0.0.1:19530")
MILVUS_TOKEN = _env("MILVUS_TOKEN", "")
GRPC_PORT = int(_env("GRPC_PORT", "9000"))
#: The Python client's deadline per call attempt, in seconds (:class:`ltrr.client.LtrrClient`).
CLIENT_TIMEOUT_S = float(_env("CLIENT_TIMEOUT_S", "10"))
#: How long an event-log write waits for another connection's SQLite write lock (the busy timeout), in
#: seconds. Below ``CLIENT_TIMEOUT_S``: a write whose client has given up fails instead of committing later.
SQLITE_BUSY_TIMEOUT_S = float(_env("SQLITE_BUSY_TIMEOUT_S", "5"))

MAX_QUERY_CHARS = 256
#: Largest ``k`` of one *response* (``SearchRequest.k``; also the largest feedback ``position``).
MAX_K = 100
#: Largest ``k`` of one *strategy call*: the most candidates one strategy may be asked for
#: (every policy ladder budget and every ``default_k``). Checked once, in
#: :func:`ltrr.strategies.base.check_k`. 1000 is Meilisearch's default ``maxTotalHits`` (lexical,
#: memory); Milvus allows 16384 and the graph's top-k has no limit.
MAX_STRATEGY_K = 1000
DEFAULT_K = 10
MAX_CONTEXT_ENTRIES = 32
MAX_CONTEXT_KEY_CHARS = 64
MAX_CONTEXT_VALUE_CHARS = 256
MAX_USER_ID_CHARS = 128
#: Bounds of one ``UpsertEntities`` entity (:func:`ltrr.validation.validate_entity`). The built catalog
#: stays well inside them (titles up to 268 characters, descriptions up to 6086, at most 13 genres and
#: 10 tags of up to 124 characters, 5 attrs with values up to 225).
MAX_ENTITY_TITLE_CHARS = 512
MAX_ENTITY_SUBTITLE_CHARS = 512
MAX_ENTITY_DESCRIPTION_CHARS = 8192
#: The most genres, and separately tags, of one entity; each label at most ``MAX_ENTITY_LABEL_CHARS``.
MAX_ENTITY_LABELS = 64
MAX_ENTITY_LABEL_CHARS = 128
MAX_ENTITY_ATTRS = 64
MAX_ENTITY_ATTR_KEY_CHARS = 64
MAX_ENTITY_ATTR_VALUE_CHARS = 1024
EMBEDDING_DIM = 384


def resolve_path(path: str) -> str:
    """Resolve a relative path against ``$LTRR_HOME`` (set by the scripts to the
    repo root), so Ray workers, whose working directory is their own, find the
    same files as the CLI."""
    if not path or os.path.isabs(path):
        return path
    return os.path.join(os.environ.get("LTRR_HOME", os.getcwd()), path)
