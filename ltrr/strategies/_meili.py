"""A small, thread-safe Meilisearch HTTP client shared by the lexical and memory strategies.

Why not the ``meilisearch`` SDK: it opens a new TCP connection for every call
(no ``requests.Session``) and mutates one shared header dict per request, so a
client shared between threads can send a POST without its ``Content-Type``.
This client keeps one keep-alive :class:`requests.Session` per thread (asking
for uncompressed responses, see ``MeiliClient.__init__``), covers
only the endpoints ltrr uses, and translates every failure at the boundary:

* connection refused / reset, HTTP 5xx, 401/403 -> :class:`~ltrr.errors.BackendUnavailable`
* request or task deadline exceeded             -> :class:`~ltrr.errors.BackendTimeout`
* other HTTP 4xx (bad filter, missing index)    -> :class:`~ltrr.errors.BackendUnavailable`
  with Meilisearch's ``code`` and message (the backend refused the call)
* a task that ends ``failed``                   -> :class:`~ltrr.errors.BackendUnavailable`

Pure helpers (:func:`doc_id`, :func:`filter_in`, :func:`and_filters`, :func:`or_filters`)
build ids and filter expressions without a server.
"""

from __future__ import annotations

import hashlib
import re
import threading
import time
from typing import Any, Iterable, Mapping, Sequence

import requests
from pydantic import BaseModel, ConfigDict, Field

from ltrr import constants
from ltrr.errors import BackendTimeout, BackendUnavailable, InvalidRequest
from ltrr.types import ENTITY_TYPES, Query

#: Task states after which a task will not change any more.
_FINAL_TASK_STATES = frozenset({"succeeded", "failed", "canceled"})


class MeiliConfig(BaseModel):
    """Connection settings shared by the Meilisearch-backed strategies."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str = Field(default=constants.MEILI_URL, description="Meilisearch base URL, e.g. http://127.0.0.1:7700.")
    api_key: str = Field(default=constants.MEILI_KEY, description="Meilisearch master or API key (Bearer token).")
    timeout_s: float = Field(default=2.0, gt=0, le=120, description="Deadline of one search/HTTP call, seconds.")
    task_timeout_s: float = Field(
        default=600.0,
        gt=0,
        le=86_400,
        description="Deadline for an indexing task (writes wait for their task), seconds.",
    )

    def client(self) -> MeiliClient:
        return MeiliClient(self.url, self.api_key, timeout_s=self.timeout_s, task_timeout_s=self.task_timeout_s)


# -- pure helpers -------------------------------------------------------------
def doc_id(*parts: str) -> str:
    """A Meilisearch-safe primary key for ``parts``: ``sha1("\\x1f".join(parts))`` in hex.

    Entity ids contain ``:`` which Meilisearch rejects in primary keys (only
    ``[A-Za-z0-9_-]``, at most 511 bytes); a hash is safe for any input and
    never collides in practice (unlike replacing ``:`` by ``__``).
    """
    return hashlib.sha1("\x1f".join(parts).encode("utf-8")).hexdigest()


def quote(value: str) -> str:
    """A Meilisearch filter string literal: double quotes, with ``\\`` and ``"`` escaped."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def filter_in(attribute: str, values: Iterable[str]) -> str:
    """``attribute IN ["v1", "v2"]``, or ``""`` when ``values`` is empty."""
    vals = list(dict.fromkeys(values))
    if not vals:
        return ""
    return f"{attribute} IN [{', '.join(quote(v) for v in vals)}]"


def and_filters(*clauses: str) -> str:
    """Join non-empty clauses with ``AND`` (each parenthesised); ``""`` if none."""
    parts = [c for c in clauses if c]
    if len(parts) <= 1:
        return parts[0] if parts else ""
    return " AND ".join(f"({c})" for c in parts)


def or_filters(*clauses: str) -> str:
    """Join non-empty clauses with ``OR`` (each parenthesised); ``""`` if none."""
    parts = [c for c in clauses if c]
    if len(parts) <= 1:
        return parts[0] if parts else ""
    return " OR ".join(f"({c})" for c in parts)


#: Largest ``k`` a Meilisearch strategy serves (Meilisearch's default ``maxTotalHits``).
MAX_K = 1000


def validate_search(query: Query, k: int) -> None:
    """Public-entry checks shared by the Meilisearch strategies."""
    if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= MAX_K:
        raise InvalidRequest("k", f"must be an integer in [1, {MAX_K}], got {k!r}")
    bad = [t for t in query.entity_types if t not in ENTITY_TYPES]
    if bad:
        raise InvalidRequest("entity_types", f"unknown entity type {bad[0]!r}; valid: {', '.join(ENTITY_TYPES)}")


def _reason(exc: BaseException) -> str:
    """A short cause such as ``[Errno 111] Connection refused`` instead of urllib3's nested repr."""
    m = re.search(r"\[Errno -?\d+\][^'\")]*", str(exc))
    return m.group(0).strip() if m else type(exc).__name__


# -- client ---------------------------------------------------------------------
class MeiliClient:
    """Minimal Meilisearch client. Safe to share between threads.

    ``timeout_s`` bounds each HTTP call; ``task_timeout_s`` bounds waiting for
    an asynchronous task (index creation, document writes, settings).
    """

    def __init__(self, url: str, api_key: str, *, timeout_s: float = 2.0, task_timeout_s: float = 600.0) -> None:
        self.url = url.rstrip("/")
        self.timeout_s = float(timeout_s)
        self.task_timeout_s = float(task_timeout_s)
        # identity: Meilisearch gzips with chunked writes, and on a keep-alive connection that
        # meets delayed ACKs (Nagle): ~40 ms per search instead of ~3 ms.
        self._headers = {"Accept-Encoding": "identity"}
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"
        self._local = threading.local()
        self._sessions: list[requests.Session] = []
        self._lock = threading.Lock()

    def _session(self) -> requests.Session:
        s: requests.Session | None = getattr(self._local, "session", None)
        if s is None:
            s = requests.Session()
            s.headers.update(self._headers)
            self._local.session = s
            with self._lock:
                self._sessions.append(s)
        return s

    def close(self) -> None:
        """Close every session this client opened (any thread)."""
        with self._lock:
            sessions, self._sessions = self._sessions, []
        for s in sessions:
            s.close()
        self._local = threading.local()

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        timeout_s: float | None = None,
        allow_404: bool = False,
    ) -> Any:
        """One HTTP call; returns the decoded JSON (``None`` for 404 when ``allow_404``)."""
        url = f"{self.url}/{path.lstrip('/')}"
        timeout = self.timeout_s if timeout_s is None else timeout_s
        try:
            resp = self._session().request(method, url, json=body, timeout=timeout)
        except requests.Timeout as exc:
            raise BackendTimeout(f"meilisearch {method} /{path} did not answer within {timeout:g} s") from exc
        except requests.RequestException as exc:
            raise BackendUnavailable(f"meilisearch at {self.url} is unreachable ({_reason(exc)})") from exc
        if resp.status_code == 404 and allow_404:
            return None
        if resp.status_code >= 400:
            try:
                err = resp.json()
                detail = f"{err.get('code', 'error')}: {err.get('message', resp.text)}"
            except ValueError:
                detail = resp.text[:300]
            raise BackendUnavailable(f"meilisearch {method} /{path} failed with HTTP {resp.status_code} ({detail})")
        if not resp.content:
            return None
        try:
            return resp.json()
        except ValueError as exc:
            raise BackendUnavailable(f"meilisearch {method} /{path} returned invalid JSON") from exc

    # -- tasks -----------------------------------------------------------
    def wait_task(self, task: Mapping[str, Any], timeout_s: float | None = None) -> dict[str, Any]:
        """Poll a task until it is final; raise if it failed or the deadline passed."""
        uid = task.get("taskUid", task.get("uid"))
        deadline = time.monotonic() + (self.task_timeout_s if timeout_s is None else timeout_s)
        delay = 0.002
        while True:
            info: dict[str, Any] = self.request("GET", f"tasks/{uid}")
            status = info.get("status")
            if status in _FINAL_TASK_STATES:
                if status != "succeeded":
                    err = info.get("error") or {}
                    raise BackendUnavailable(
                        f"meilisearch task {uid} ({info.get('type')}) {status}: "
                        f"{err.get('code', '')} {err.get('message', '')}".rstrip()
                    )
                return info
            if time.monotonic() > deadline:
                raise BackendTimeout(f"meilisearch task {uid} ({info.get('type')}) is still {status}")
            time.sleep(delay)
            delay = min(delay * 2, 0.1)

    def wait_tasks(self, tasks: Sequence[Mapping[str, Any]], timeout_s: float | None = None) -> None:
        """Wait for every task (Meilisearch runs an index's tasks in order)."""
        for t in tasks:
            self.wait_task(t, timeout_s)

    # -- endpoints ---------------------------------------------------------
    def health(self) -> bool:
        try:
            return bool((self.request("GET", "health") or {}).get("status") == "available")
        except (BackendUnavailable, BackendTimeout):
            return False

    def ensure_index(self, uid: str, primary_key: str = "id") -> None:
        """Create the index if it does not exist (idempotent)."""
        if self.request("GET", f"indexes/{uid}", allow_404=True) is not None:
            return
        task = self.request("POST", "indexes", {"uid": uid, "primaryKey": primary_key})
        try:
            self.wait_task(task)
        except BackendUnavailable as exc:  # a concurrent creator won the race
            if "index_already_exists" not in str(exc):
                raise

    def delete_index(self, uid: str) -> None:
        task = self.request("DELETE", f"indexes/{uid}", allow_404=True)
        if task is not None:
            self.wait_task(task)

    def get_settings(self, uid: str) -> dict[str, Any]:
        return dict(self.request("GET", f"indexes/{uid}/settings"))

    def update_settings(self, uid: str, settings: Mapping[str, Any]) -> None:
        """Apply ``settings`` unless the index already has them (attribute sets unordered, dicts by given keys)."""
        current = self.get_settings(uid)

        def same(key: str, want: Any) -> bool:
            have = current.get(key)
            if key in ("filterableAttributes", "sortableAttributes") and isinstance(have, list):
                return sorted(map(str, have)) == sorted(map(str, want))
            if isinstance(want, dict) and isinstance(have, dict):  # e.g. typoTolerance: only the keys we set
                return all(have.get(k) == v for k, v in want.items())
            return bool(have == want)

        if all(same(k, v) for k, v in settings.items()):
            return
        self.wait_task(self.request("PATCH", f"indexes/{uid}/settings", dict(settings)))

    def enable_experimental(self, feature: str) -> None:
        feats = self.request("GET", "experimental-features") or {}
        if not feats.get(feature):
            self.request("PATCH", "experimental-features", {feature: True})

    def add_documents(self, uid: str, docs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        """Add or replace whole documents; returns the enqueued task."""
        return dict(self.request("POST", f"indexes/{uid}/documents?primaryKey=id", list(docs)))

    def update_documents(self, uid: str, docs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        """Add documents or merge fields into existing ones; returns the enqueued task."""
        return dict(self.request("PUT", f"indexes/{uid}/documents?primaryKey=id", list(docs)))

    def edit_documents(self, uid: str, filter_: str, function: str, context: Mapping[str, Any]) -> dict[str, Any]:
        """Edit matching documents with a Rhai function (experimental ``editDocumentsByFunction``)."""
        body = {"filter": filter_, "function": function, "context": dict(context)}
        return dict(self.request("POST", f"indexes/{uid}/documents/edit", body))

    def delete_documents(self, uid: str, filter_: str) -> dict[str, Any]:
        """Delete the documents matching a filter; returns the enqueued task."""
        return dict(self.request("POST", f"indexes/{uid}/documents/delete", {"filter": filter_}))

    def fetch_documents(self, uid: str, filter_: str, fields: Sequence[str], limit: int = 1000) -> list[dict[str, Any]]:
        """Documents matching a filter (no ranking), at most ``limit``."""
        body = {"filter": filter_, "fields": list(fields), "limit": int(limit)}
        return [dict(d) for d in self.request("POST", f"indexes/{uid}/documents/fetch", body)["results"]]

    def get_document(self, uid: str, id_: str) -> dict[str, Any] | None:
        doc = self.request("GET", f"indexes/{uid}/documents/{id_}", allow_404=True)
        return dict(doc) if doc is not None else None

    def search(self, uid: str, params: Mapping[str, Any]) -> dict[str, Any]:
        return dict(self.request("POST", f"indexes/{uid}/search", dict(params)))

    def multi_search(self, queries: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Run several searches in one round trip; each query names its ``indexUid``."""
        out = self.request("POST", "multi-search", {"queries": [dict(q) for q in queries]})
        return [dict(r) for r in out["results"]]

    def count(self, uid: str) -> int:
        """Documents in the index; 0 if the index does not exist."""
        stats = self.request("GET", f"indexes/{uid}/stats", allow_404=True)
        return int(stats.get("numberOfDocuments", 0)) if stats else 0
