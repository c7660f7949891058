"""A small Python client for the ltrr gRPC API.

>>> with LtrrClient("127.0.0.1:9000") as c:           # doctest: +SKIP
...     resp = c.search("artists like radiohead", k=5)
...     c.feedback(resp.request_id, resp.results[0].entity_id, "click")

**Authentication.** Every call carries ``authorization: Bearer <token>`` metadata. The token is the
``token`` argument, else ``$LTRR_TOKEN``, else the first token of :data:`TOKEN_FILE`
(``var/secrets/ltrr-token``, resolved against ``$LTRR_HOME`` or the current directory: what
``make up`` writes) if that file exists; with none of them the calls go without one.

**Retries.** A call that fails with a transient status is sent again, at most ``attempts`` times in all,
each attempt with its own ``timeout``; before retry ``i`` (attempt ``i + 1``) the client sleeps a
uniformly random time in ``[0, min(max_backoff_s, backoff_s * 2 ** (i - 1))]`` ("full jitter": retries
of many clients spread out), so a call takes at most ``attempts * timeout`` plus the sleeps.

* ``Feedback`` retries ``UNAVAILABLE``, ``DEADLINE_EXCEEDED`` and ``RESOURCE_EXHAUSTED`` with the same
  ``event_id``: the event log stores an ``event_id`` once, so a retry of an event that did commit
  is answered ``duplicate=True`` and counted once.
* ``Search`` retries ``UNAVAILABLE`` only. A search is not idempotent: the server logs it before it
  answers, and a resent one is logged again under a new request id (an orphan search that no
  feedback reaches, settled ``expired``). ``UNAVAILABLE`` almost always means nothing was logged
  (the server was unreachable, or the event-log write failed and rolled back); the rare exception,
  a connection lost after the server logged, costs one orphan row. ``DEADLINE_EXCEEDED`` is not
  retried: the server may still be about to log that search.
* Streams (``UpsertEntities``, ``UpsertUsers``) and health checks are sent once.

**Feedback event ids.** Without an ``event_id`` the client derives one from the event itself
(:func:`feedback_event_id`), so the same click sent twice, by these retries or by the caller
calling again, is stored once. A caller recording a repeated action on the same result of the same
search as a second event passes its own ``event_id`` (e.g. ``uuid.uuid4().hex``), used as is.

**Deadline.** Each call also carries ``ltrr-timeout-ms``, the attempt's deadline in milliseconds,
for the server to bound its own waits by (the Serve gRPC context does not expose the client's).
"""

from __future__ import annotations

import math
import os
import random
import time
import uuid
from pathlib import Path
from typing import Callable, Iterable, Mapping, TypeVar

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from ltrr import constants as C
from ltrr.types import UserProfile
from ltrr.v1 import search_pb2 as pb
from ltrr.v1 import search_pb2_grpc as pb_grpc

#: Where the token is looked for when neither ``token`` nor ``$LTRR_TOKEN`` gives one (under
#: ``$LTRR_HOME`` or the current directory); ``make up`` writes it.
TOKEN_FILE = "var/secrets/ltrr-token"
TOKEN_ENV = "LTRR_TOKEN"
#: Metadata key of the attempt's deadline in milliseconds.
TIMEOUT_METADATA = "ltrr-timeout-ms"
#: The statuses each RPC is retried on (module docstring).
FEEDBACK_RETRY = frozenset(
    {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.RESOURCE_EXHAUSTED}
)
SEARCH_RETRY = frozenset({grpc.StatusCode.UNAVAILABLE})
#: Namespace of the derived feedback event ids (:func:`feedback_event_id`); fixed, never change it.
FEEDBACK_NAMESPACE = uuid.UUID("6f1e4a53-0c8e-4f7d-9a51-2b8c7d3e9f10")
_T = TypeVar("_T")


def feedback_event_id(request_id: str, entity_id: str, action: str, position: int) -> str:
    """The event id of a feedback event that was given none: stable, so a resent event keeps it.

    ``uuid5(FEEDBACK_NAMESPACE, f"{request_id}\\x1f{entity_id}\\x1f{action}\\x1f{position}").hex``, over
    the fields as the server normalises them (ids stripped, the action stripped and lower-cased)."""
    key = "\x1f".join((request_id.strip(), entity_id.strip(), action.strip().lower(), str(int(position))))
    return uuid.uuid5(FEEDBACK_NAMESPACE, key).hex


def read_token_file(path: str | os.PathLike[str]) -> str | None:
    """The first token of a token file: the first word of its first line that is neither blank nor a
    ``#`` comment (a server-side token file may list scopes after it); None if it holds none."""
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        words = line.split()
        if words and not words[0].startswith("#"):
            return words[0]
    return None


def resolve_token(token: str | None = None, environ: Mapping[str, str] | None = None) -> str | None:
    """``token`` if given (``""``: send none), else ``$LTRR_TOKEN`` if set and not blank, else the
    first token of :data:`TOKEN_FILE` under ``$LTRR_HOME`` (or the current directory) if it exists."""
    if token is not None:
        return token.strip() or None
    env = os.environ if environ is None else environ
    value = env.get(TOKEN_ENV, "").strip()
    if value:
        return value
    path = Path(env.get("LTRR_HOME") or os.getcwd()) / TOKEN_FILE
    return read_token_file(path) if path.is_file() else None


def _check_number(name: str, value: float, *, strict: bool) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or (value <= 0 if strict else value < 0):
        raise ValueError(f"`{name}` must be a finite number {'>' if strict else '>='} 0, got {value!r}")
    return float(value)


class LtrrClient:
    """Blocking client. ``timeout`` is each attempt's deadline in seconds; ``token`` the bearer token
    (None: look it up, ``""``: send none); ``attempts`` (at least 1), ``backoff_s`` and ``max_backoff_s``
    shape the retries, ``sleep`` waits between them (see the module docstring)."""

    def __init__(
        self,
        target: str = "127.0.0.1:9000",
        *,
        timeout: float = C.CLIENT_TIMEOUT_S,
        token: str | None = None,
        attempts: int = 3,
        backoff_s: float = 0.1,
        max_backoff_s: float = 2.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 1:
            raise ValueError(f"`attempts` must be an integer >= 1, got {attempts!r}")
        self.target = target
        self.timeout = _check_number("timeout", timeout, strict=True)
        self.attempts = attempts
        self.backoff_s = _check_number("backoff_s", backoff_s, strict=False)
        self.max_backoff_s = _check_number("max_backoff_s", max_backoff_s, strict=False)
        self._sleep = sleep
        self._rng = random.Random()
        tok = resolve_token(token)
        self._auth: tuple[tuple[str, str], ...] = (("authorization", f"Bearer {tok}"),) if tok else ()
        self.channel = grpc.insecure_channel(target)
        self.stub = pb_grpc.SearchServiceStub(self.channel)
        self.health_stub = health_pb2_grpc.HealthStub(self.channel)

    def metadata(self, timeout: float) -> tuple[tuple[str, str], ...]:
        """What every call carries: the bearer token (if any) and ``ltrr-timeout-ms`` for ``timeout`` seconds.
        Pass it to ``self.stub`` calls made directly."""
        return (*self._auth, (TIMEOUT_METADATA, str(max(1, round(timeout * 1000)))))

    def backoff(self, retry: int) -> float:
        """The sleep before retry number ``retry`` (1 for the second attempt): full jitter."""
        return self._rng.uniform(0.0, min(self.max_backoff_s, self.backoff_s * 2.0 ** min(retry - 1, 60)))

    def _call(self, rpc: Callable[..., _T], request: object, retry_on: frozenset[grpc.StatusCode]) -> _T:
        """``rpc(request)``, sent again (the same request) on a status in ``retry_on``, ``attempts`` times at most."""
        for attempt in range(1, self.attempts + 1):
            try:
                return rpc(request, timeout=self.timeout, metadata=self.metadata(self.timeout))
            except grpc.RpcError as exc:
                code = exc.code() if isinstance(exc, grpc.Call) else None
                if attempt == self.attempts or code not in retry_on:
                    raise
            self._sleep(self.backoff(attempt))
        raise AssertionError("unreachable")  # the last attempt returns or raises

    def __enter__(self) -> LtrrClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.channel.close()

    def search(
        self,
        query: str,
        *,
        k: int = 10,
        user_id: str = "",
        entity_types: Iterable[str] = (),
        context: Mapping[str, str] | None = None,
        strategies: Iterable[str] = (),
        explain: bool = False,
        budgets: Mapping[str, int] | None = None,
    ) -> pb.SearchResponse:
        req = pb.SearchRequest(
            query=query,
            k=k,
            user_id=user_id,
            entity_types=list(entity_types),
            context=dict(context or {}),
            strategies=list(strategies),
            explain=explain,
            budgets=dict(budgets or {}),
        )
        resp: pb.SearchResponse = self._call(self.stub.Search, req, SEARCH_RETRY)
        return resp

    def feedback(
        self,
        request_id: str,
        entity_id: str,
        action: str = "click",
        *,
        position: int = 0,
        event_id: str | None = None,
    ) -> pb.FeedbackResponse:
        """Send one feedback event; ``event_id`` is used as is, or derived (:func:`feedback_event_id`) when
        None or empty. Every retry sends the same id."""
        req = pb.FeedbackRequest(
            request_id=request_id,
            event_id=event_id or feedback_event_id(request_id, entity_id, action, position),
            entity_id=entity_id,
            action=action,
            position=position,
        )
        resp: pb.FeedbackResponse = self._call(self.stub.Feedback, req, FEEDBACK_RETRY)
        return resp

    def upsert(self, entities: Iterable[pb.Entity]) -> pb.UpsertSummary:
        timeout = max(self.timeout, 120.0)
        resp: pb.UpsertSummary = self.stub.UpsertEntities(
            iter(list(entities)), timeout=timeout, metadata=self.metadata(timeout)
        )
        return resp

    def upsert_users(self, users: Iterable[pb.UserProfile | UserProfile]) -> pb.UpsertUsersSummary:
        """Stream profiles to ``UpsertUsers`` (:class:`~ltrr.types.UserProfile` records are converted).

        All or nothing: a bad profile fails the call with INVALID_ARGUMENT naming its field."""
        msgs = [u if isinstance(u, pb.UserProfile) else user_message(u) for u in users]
        timeout = max(self.timeout, 120.0)
        resp: pb.UpsertUsersSummary = self.stub.UpsertUsers(
            iter(msgs), timeout=timeout, metadata=self.metadata(timeout)
        )
        return resp

    def health(self, service: str = "") -> str:
        """The standard health check's status name, e.g. ``"SERVING"``."""
        resp = self.health_stub.Check(
            health_pb2.HealthCheckRequest(service=service), timeout=self.timeout, metadata=self.metadata(self.timeout)
        )
        return str(health_pb2.HealthCheckResponse.ServingStatus.Name(resp.status))


def user_message(u: UserProfile) -> pb.UserProfile:
    """The ``UserProfile`` message of a profile record."""
    return pb.UserProfile(
        user_id=u.user_id,
        top_artists=[pb.WeightedName(name=a, weight=w) for a, w in u.top_artists],
        top_tags=[pb.WeightedName(name=t, weight=w) for t, w in u.top_tags],
    )


def format_table(resp: pb.SearchResponse) -> str:
    """A plain-text table of results and strategy calls."""
    lines = [
        f"request_id={resp.request_id} policy={resp.policy_version} ranker={resp.ranker_version}"
        + ("  DEGRADED" if resp.degraded else "")
    ]
    lines.append(f"{'#':>2}  {'type':<8} {'title':<40} {'subtitle':<30} {'score':>7}  retrieved_by")
    for i, r in enumerate(resp.results, 1):
        lines.append(
            f"{i:>2}  {r.entity_type:<8} {r.title[:40]:<40} {r.subtitle[:30]:<30} {r.score:>7.4f}  "
            + ",".join(r.retrieved_by)
        )
    lines.append("")
    lines.append(f"{'strategy':<10} {'status':<8} {'asked':>5} {'got':>5} {'ms':>8}  detail")
    for s in resp.strategies:
        status = pb.StrategyCall.Status.Name(s.status)
        lines.append(
            f"{s.strategy:<10} {status:<8} {s.candidates_requested:>5} {s.candidates_returned:>5} "
            f"{s.latency_ms:>8.1f}  {s.detail}"
        )
    return "\n".join(lines)
