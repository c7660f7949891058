"""The Meilisearch client shared by the lexical and memory strategies. Thread-safe.

Two transports, chosen per call:

* **Administration and writes** go through the official SDK (``meilisearch.Client``):
  create/get/delete index, settings, add/update/delete documents, edit documents by
  function, fetch/get documents, task polling, stats, experimental features, health.
  The SDK keeps one header dict per client and sets or pops ``Content-Type`` in it
  on every call, so one SDK client shared by threads can send a POST without its
  ``Content-Type`` (HTTP 415): every thread gets its own SDK client
  (:class:`threading.local`, :meth:`MeiliClient.sdk`). The SDK opens a new
  connection per call.
* **Search** (:meth:`MeiliClient.search`, :meth:`MeiliClient.multi_search`) and the
  raw :meth:`MeiliClient.request` use one keep-alive :class:`requests.Session` per
  thread that asks for uncompressed responses: Meilisearch gzips with chunked
  writes, and on a keep-alive connection that meets delayed ACKs (Nagle) that
  costs up to +40 ms per search (the p90 column below).

Search latency, p50 (p90) in ms of 200 calls per method (methods interleaved in
rounds of 50) against a real local server holding 4000 random catalog entities;
queries are 200 entity titles, some with a swapped letter, " songs" or
"<genre> playlists"; shared 2-core box at load average ~3; two runs (``run 1 / run 2``):

===================================  =========================  =========================
method                               lexical multi-search       memory search
===================================  =========================  =========================
keep-alive session, identity (used)  5.06 (11.2) / 4.43 (6.9)   4.42 (9.0) / 3.45 (4.7)
keep-alive session, gzip             8.29 (51.9) / 5.45 (48.1)  9.67 (51.9) / 4.34 (47.0)
SDK, default headers (gzip)          7.03 (11.9) / 5.52 (7.9)   6.48 (11.2) / 4.91 (10.0)
SDK + ``Accept-Encoding: identity``  6.39 (11.1) / 5.29 (7.9)   5.95 (11.6) / 4.44 (6.7)
===================================  =========================  =========================

At p50 the session beats the SDK in every run and search shape (0.9 to 2.1 ms,
16-32 % lower), at p90 it is about equal or lower, and it spares a TCP handshake
and a TIME_WAIT socket per search: search stays on it. The SDK clients also ask
for ``identity`` (a little faster than gzip).

Every failure is translated at the boundary, whichever transport raised it
(SDK ``MeilisearchApiError`` / ``MeilisearchCommunicationError`` /
``MeilisearchTimeoutError`` and :mod:`requests` errors alike):

* connection refused / reset, HTTP 5xx, 401/403 -> :class:`~ltrr.errors.BackendUnavailable`
* request or task deadline exceeded             -> :class:`~ltrr.errors.BackendTimeout`
* other HTTP 4xx (bad filter, missing index)    -> :class:`~ltrr.errors.BackendUnavailable`
  with Meilisearch's ``code`` and message (the backend refused the call)
* a task that ends ``failed``                   -> :class:`~ltrr.errors.BackendUnavailable`

Pure helpers (:func:`doc_id`, :func:`filter_in`, :func:`and_filters`, :func:`or_filters`)
build ids and filter expressions without a server. :class:`MeiliIndexStrategy` is the
index bookkeeping (create, settings, count, close) of a strategy owning one index.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import threading
import time
from typing import Any, Callable, ClassVar, Iterable, Mapping, Sequence, TypeVar

import meilisearch
import requests
from meilisearch.errors import MeilisearchApiError, MeilisearchCommunicationError, MeilisearchTimeoutError
from meilisearch.models.task import Task, TaskInfo
from pydantic import BaseModel, ConfigDict, Field

from ltrr import constants
from ltrr.errors import BackendTimeout, BackendUnavailable, InvalidRequest
from ltrr.strategies.base import check_k
from ltrr.types import ENTITY_TYPES, Query

#: Task states after which a task will not change any more.
_FINAL_TASK_STATES = frozenset({"succeeded", "failed", "canceled"})
log = logging.getLogger("ltrr")
_T = TypeVar("_T")
#: The SDK appends this guess to some API errors (a bad filter, say); Meilisearch's message is enough.
_SDK_HINT = re.compile(r"\. Hint: It might not be working because you're not up to date with the Meilisearch .*$")


class MeiliConfig(BaseModel):
    """Connection settings shared by the Meilisearch-backed strategies."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str = Field(default=constants.MEILI_URL, description="Meilisearch base URL, e.g. http://127.0.0.1:7700.")
    api_key: str = Field(
        default=constants.MEILI_KEY,
        description="Meilisearch master or admin API key: indexing and settings (Bearer token).",
    )
    search_api_key: str = Field(
        default="",
        description="Key for searches only. Empty: the server's default search key (actions [search], "
        "every index), read once through the keys API with `api_key`; `api_key` itself if the server has "
        "no master key. A search never carries the master key.",
    )
    timeout_s: float = Field(default=2.0, gt=0, le=120, description="Deadline of one search/HTTP call, seconds.")
    task_timeout_s: float = Field(
        default=600.0,
        gt=0,
        le=86_400,
        description="Deadline for an indexing task (writes wait for their task), seconds.",
    )

    def client(self) -> MeiliClient:
        return MeiliClient(
            self.url,
            self.api_key,
            timeout_s=self.timeout_s,
            task_timeout_s=self.task_timeout_s,
            search_key=self.search_api_key or None,
        )


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


#: Meilisearch's default ``maxTotalHits``: no search returns more hits (``MAX_STRATEGY_K`` must not exceed it).
MAX_TOTAL_HITS = 1000


def validate_search(query: Query, k: int) -> None:
    """Public-entry checks shared by the Meilisearch strategies (``k``: :func:`~ltrr.strategies.base.check_k`)."""
    check_k(k)
    bad = [t for t in query.entity_types if t not in ENTITY_TYPES]
    if bad:
        raise InvalidRequest("entity_types", f"unknown entity type {bad[0]!r}; valid: {', '.join(ENTITY_TYPES)}")


def _reason(exc: BaseException) -> str:
    """A short cause such as ``[Errno 111] Connection refused`` instead of urllib3's nested repr."""
    m = re.search(r"\[Errno -?\d+\][^'\")]*", str(exc))
    return m.group(0).strip() if m else type(exc).__name__


# -- client ---------------------------------------------------------------------
class MeiliClient:
    """Meilisearch client: the SDK for administration and writes, a keep-alive session for search.

    Safe to share between threads: every thread gets its own SDK client and its
    own session. ``timeout_s`` bounds each HTTP call; ``task_timeout_s`` bounds
    waiting for an asynchronous task (index creation, document writes, settings).
    """

    def __init__(
        self,
        url: str,
        api_key: str,
        *,
        timeout_s: float = 2.0,
        task_timeout_s: float = 600.0,
        search_key: str | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.api_key = api_key
        self._search_key = search_key
        self._search_headers: dict[str, str] | None = None
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
            # The environment's proxy and CA settings, read once here instead of on every request
            # (requests re-scans os.environ per call when trust_env is on: ~0.5 ms a search).
            s.proxies = requests.utils.get_environ_proxies(self.url)
            s.verify = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
            s.trust_env = False
            s.headers.update(self._headers)
            self._local.session = s
            with self._lock:
                self._sessions.append(s)
        return s

    def sdk(self) -> meilisearch.Client:
        """This thread's SDK client (an SDK client mutates its headers per call: never share one)."""
        c: meilisearch.Client | None = getattr(self._local, "sdk", None)
        if c is None:
            c = meilisearch.Client(
                self.url,
                self.api_key,
                timeout=self.timeout_s,  # type: ignore[arg-type]  # passed to requests as is: float seconds work
                custom_headers={"Accept-Encoding": "identity"},  # a little faster, see the module docstring
            )
            self._local.sdk = c
        return c

    def close(self) -> None:
        """Close every session this client opened (any thread) and drop the SDK clients."""
        with self._lock:
            sessions, self._sessions = self._sessions, []
        for s in sessions:
            s.close()
        self._local = threading.local()

    # -- error translation -------------------------------------------------
    def _call(self, op: str, fn: Callable[[], _T]) -> _T:
        """Run one SDK call ``fn`` (``op`` names it, e.g. ``GET /indexes/x``), translating its errors."""
        try:
            return fn()
        except MeilisearchApiError as exc:
            detail = f"{exc.code or 'error'}: {_SDK_HINT.sub('', str(exc.message))}"
            raise BackendUnavailable(f"meilisearch {op} failed with HTTP {exc.status_code} ({detail})") from exc
        except (MeilisearchTimeoutError, requests.Timeout) as exc:
            raise BackendTimeout(f"meilisearch {op} did not answer within {self.timeout_s:g} s") from exc
        except ValueError as exc:  # undecodable JSON, or a body the SDK's models reject (pydantic)
            raise BackendUnavailable(f"meilisearch {op} returned an invalid response ({type(exc).__name__})") from exc
        except (MeilisearchCommunicationError, requests.RequestException) as exc:
            raise BackendUnavailable(f"meilisearch at {self.url} is unreachable ({_reason(exc)})") from exc

    def _call_or_none(self, op: str, fn: Callable[[], _T]) -> _T | None:
        """:meth:`_call`, but ``None`` when Meilisearch answers 404 (missing index or document)."""

        def guarded() -> _T | None:
            try:
                return fn()
            except MeilisearchApiError as exc:
                if exc.status_code == 404:
                    return None
                raise

        return self._call(op, guarded)

    # -- raw HTTP on the keep-alive session (search path) -----------------
    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        timeout_s: float | None = None,
        allow_404: bool = False,
        headers: Mapping[str, str] | None = None,
    ) -> Any:
        """One HTTP call; returns the decoded JSON (``None`` for 404 when ``allow_404``).

        ``headers`` override the session's for this call (a search sends the search key)."""
        url = f"{self.url}/{path.lstrip('/')}"
        timeout = self.timeout_s if timeout_s is None else timeout_s
        try:
            resp = self._session().request(method, url, json=body, timeout=timeout, headers=headers)
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

    # -- searches carry the search key ------------------------------------
    def search_key(self) -> str:
        """The key searches send: the configured one, else the server's default search key.

        The default search key is the one with ``actions == ["search"]`` on every index (``"*"``), read
        once with ``GET /keys`` (which needs the master key). A server without a master key answers
        ``missing_master_key`` and needs no key: then searches send ``api_key`` as every call does.
        """
        if self._search_key is None:
            key = self.api_key
            try:
                listing = self.request("GET", "keys?limit=100")
                for k in (listing or {}).get("results", []):
                    if k.get("actions") == ["search"] and k.get("indexes") == ["*"] and k.get("expiresAt") is None:
                        key = str(k["key"])
                        break
                else:
                    log.warning("meilisearch at %s has no default search key; searching with api_key", self.url)
            except BackendUnavailable as exc:
                if "missing_master_key" not in str(exc):
                    raise
            self._search_key = key
        return self._search_key

    def _search_request(self, path: str, body: Any) -> Any:
        if self._search_headers is None:
            key = self.search_key()
            self._search_headers = {"Authorization": f"Bearer {key}"} if key else {}
        return self.request("POST", path, body, headers=self._search_headers)

    def search(self, uid: str, params: Mapping[str, Any]) -> dict[str, Any]:
        return dict(self._search_request(f"indexes/{uid}/search", dict(params)))

    def multi_search(self, queries: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Run several searches in one round trip; each query names its ``indexUid``."""
        out = self._search_request("multi-search", {"queries": [dict(q) for q in queries]})
        return [dict(r) for r in out["results"]]

    # -- tasks (SDK) --------------------------------------------------------
    def wait_task(self, task: TaskInfo | int, timeout_s: float | None = None) -> Task:
        """Poll a task until it is final; raise if it failed or the deadline passed.

        Polls with ``get_task`` every 2, 4, 8, ... ms (at most 100 ms) rather than the
        SDK's ``wait_for_task``, whose fixed interval either adds its 50 ms default to
        every small write (a click is indexed in a few ms) or polls a long build with
        a new connection every few ms; and it returns failed tasks without raising.
        """
        uid = task if isinstance(task, int) else task.task_uid
        deadline = time.monotonic() + (self.task_timeout_s if timeout_s is None else timeout_s)
        sdk = self.sdk()
        delay = 0.002
        while True:
            info = self._call(f"GET /tasks/{uid}", lambda: sdk.get_task(uid))
            if info.status in _FINAL_TASK_STATES:
                if info.status != "succeeded":
                    err = info.error or {}
                    raise BackendUnavailable(
                        f"meilisearch task {uid} ({info.type}) {info.status}: "
                        f"{err.get('code', '')} {err.get('message', '')}".rstrip()
                    )
                return info
            if time.monotonic() > deadline:
                raise BackendTimeout(f"meilisearch task {uid} ({info.type}) is still {info.status}")
            time.sleep(delay)
            delay = min(delay * 2, 0.1)

    def wait_tasks(self, tasks: Sequence[TaskInfo | int], timeout_s: float | None = None) -> None:
        """Wait for every task (Meilisearch runs an index's tasks in order)."""
        for t in tasks:
            self.wait_task(t, timeout_s)

    # -- administration and writes (SDK) ------------------------------------
    def health(self) -> bool:
        sdk = self.sdk()
        try:
            return bool(self._call("GET /health", sdk.health).get("status") == "available")
        except (BackendUnavailable, BackendTimeout):
            return False

    def ensure_index(self, uid: str, primary_key: str = "id") -> None:
        """Create the index if it does not exist (idempotent)."""
        sdk = self.sdk()
        if self._call_or_none(f"GET /indexes/{uid}", lambda: sdk.get_raw_index(uid)) is not None:
            return
        task = self._call("POST /indexes", lambda: sdk.create_index(uid, {"primaryKey": primary_key}))
        try:
            self.wait_task(task)
        except BackendUnavailable as exc:  # a concurrent creator won the race
            if "index_already_exists" not in str(exc):
                raise

    def delete_index(self, uid: str) -> None:
        """Delete the index if it exists (idempotent: Meilisearch fails the task of a missing index)."""
        sdk = self.sdk()
        try:
            self.wait_task(self._call(f"DELETE /indexes/{uid}", lambda: sdk.delete_index(uid)))
        except BackendUnavailable as exc:
            if "index_not_found" not in str(exc):
                raise

    def get_settings(self, uid: str) -> dict[str, Any]:
        sdk = self.sdk()
        return dict(self._call(f"GET /indexes/{uid}/settings", lambda: sdk.index(uid).get_settings()))

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
        sdk = self.sdk()
        self.wait_task(
            self._call(f"PATCH /indexes/{uid}/settings", lambda: sdk.index(uid).update_settings(dict(settings)))
        )

    def enable_experimental(self, feature: str) -> None:
        sdk = self.sdk()
        feats = self._call("GET /experimental-features", sdk.get_experimental_features) or {}
        if not feats.get(feature):
            self._call("PATCH /experimental-features", lambda: sdk.update_experimental_features({feature: True}))

    def add_documents(self, uid: str, docs: Sequence[Mapping[str, Any]]) -> TaskInfo:
        """Add or replace whole documents; returns the enqueued task."""
        sdk = self.sdk()
        return self._call(
            f"POST /indexes/{uid}/documents", lambda: sdk.index(uid).add_documents(list(docs), primary_key="id")
        )

    def update_documents(self, uid: str, docs: Sequence[Mapping[str, Any]]) -> TaskInfo:
        """Add documents or merge fields into existing ones; returns the enqueued task."""
        sdk = self.sdk()
        return self._call(
            f"PUT /indexes/{uid}/documents", lambda: sdk.index(uid).update_documents(list(docs), primary_key="id")
        )

    def edit_documents(self, uid: str, filter_: str, function: str, context: Mapping[str, Any]) -> TaskInfo:
        """Edit matching documents with a Rhai function (experimental ``editDocumentsByFunction``)."""
        sdk = self.sdk()
        body = {"filter": filter_, "function": function, "context": dict(context)}
        # the SDK annotates the body as dict[str, list[dict]] but posts any dict unchanged
        return self._call(
            f"POST /indexes/{uid}/documents/edit",
            lambda: TaskInfo(**sdk.update_documents_by_function(uid, body)),  # type: ignore[arg-type]
        )

    def delete_documents(self, uid: str, filter_: str) -> TaskInfo:
        """Delete the documents matching a filter; returns the enqueued task."""
        sdk = self.sdk()
        return self._call(
            f"POST /indexes/{uid}/documents/delete", lambda: sdk.index(uid).delete_documents(filter=filter_)
        )

    def delete_document_ids(self, uid: str, ids: Sequence[str]) -> TaskInfo:
        """Delete the documents with these primary keys (no filterable attribute needed); returns the enqueued task."""
        sdk = self.sdk()
        return self._call(
            f"POST /indexes/{uid}/documents/delete-batch", lambda: sdk.index(uid).delete_documents(list(ids))
        )

    def fetch_documents(self, uid: str, filter_: str, fields: Sequence[str], limit: int = 1000) -> list[dict[str, Any]]:
        """Documents matching a filter (no ranking), at most ``limit``."""
        sdk = self.sdk()
        params = {"filter": filter_, "fields": list(fields), "limit": int(limit)}
        res = self._call(f"POST /indexes/{uid}/documents/fetch", lambda: sdk.index(uid).get_documents(params))
        return [dict(d) for d in res.results]

    def get_document(self, uid: str, id_: str) -> dict[str, Any] | None:
        sdk = self.sdk()
        doc = self._call_or_none(f"GET /indexes/{uid}/documents/{id_}", lambda: sdk.index(uid).get_document(id_))
        return dict(doc) if doc is not None else None

    def count(self, uid: str) -> int:
        """Documents in the index; 0 if the index does not exist."""
        sdk = self.sdk()
        stats = self._call_or_none(f"GET /indexes/{uid}/stats", lambda: sdk.index(uid).get_stats())
        return int(stats.number_of_documents) if stats is not None else 0


# -- strategy base ----------------------------------------------------------------
class MeiliIndexStrategy:
    """Index bookkeeping of a strategy that owns the Meilisearch index ``index``. Thread-safe.

    Writes call :meth:`_ensure_ready` first: the first write of a process creates the
    index and applies :attr:`settings` (:meth:`ensure_index`). :meth:`count` forgets
    that when the index is empty or missing, so a write after the index was dropped
    re-creates it with its settings.
    """

    #: Experimental features :meth:`ensure_index` enables (after the settings).
    experimental_features: ClassVar[tuple[str, ...]] = ()

    def __init__(self, config: MeiliConfig, index: str) -> None:
        self._index = index
        self._client = config.client()
        self._ready = False

    @property
    def settings(self) -> Mapping[str, Any]:
        """The index settings (applied by :meth:`ensure_index`)."""
        raise NotImplementedError

    def ensure_index(self) -> None:
        """Create the index, apply its settings and experimental features (idempotent; waits for the tasks)."""
        self._client.ensure_index(self._index)
        self._client.update_settings(self._index, self.settings)
        for feature in self.experimental_features:
            self._client.enable_experimental(feature)
        self._ready = True

    def _ensure_ready(self) -> None:
        if not self._ready:
            self.ensure_index()

    def count(self) -> int:
        """Documents in the index (0 if it does not exist: the next write re-applies the settings)."""
        n = self._client.count(self._index)
        if n == 0:
            self._ready = False
        return n

    def close(self) -> None:
        self._client.close()
