"""A small Python client for the ltrr gRPC API.

>>> with LtrrClient("127.0.0.1:9000") as c:           # doctest: +SKIP
...     resp = c.search("artists like radiohead", k=5)
...     c.feedback(resp.request_id, resp.results[0].entity_id, "click")
"""

from __future__ import annotations

import uuid
from typing import Iterable, Mapping

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from ltrr.types import UserProfile
from ltrr.v1 import search_pb2 as pb
from ltrr.v1 import search_pb2_grpc as pb_grpc


class LtrrClient:
    """Blocking client. ``timeout`` is the per-call deadline in seconds."""

    def __init__(self, target: str = "127.0.0.1:9000", *, timeout: float = 10.0) -> None:
        self.target = target
        self.timeout = timeout
        self.channel = grpc.insecure_channel(target)
        self.stub = pb_grpc.SearchServiceStub(self.channel)
        self.health_stub = health_pb2_grpc.HealthStub(self.channel)

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
        resp: pb.SearchResponse = self.stub.Search(req, timeout=self.timeout)
        return resp

    def feedback(
        self, request_id: str, entity_id: str, action: str = "click", *, position: int = 0, event_id: str = ""
    ) -> pb.FeedbackResponse:
        req = pb.FeedbackRequest(
            request_id=request_id,
            event_id=event_id or uuid.uuid4().hex,
            entity_id=entity_id,
            action=action,
            position=position,
        )
        resp: pb.FeedbackResponse = self.stub.Feedback(req, timeout=self.timeout)
        return resp

    def upsert(self, entities: Iterable[pb.Entity]) -> pb.UpsertSummary:
        resp: pb.UpsertSummary = self.stub.UpsertEntities(iter(list(entities)), timeout=max(self.timeout, 120.0))
        return resp

    def upsert_users(self, users: Iterable[pb.UserProfile | UserProfile]) -> pb.UpsertUsersSummary:
        """Stream profiles to ``UpsertUsers`` (:class:`~ltrr.types.UserProfile` records are converted).

        All or nothing: a bad profile fails the call with INVALID_ARGUMENT naming its field."""
        msgs = [u if isinstance(u, pb.UserProfile) else user_message(u) for u in users]
        resp: pb.UpsertUsersSummary = self.stub.UpsertUsers(iter(msgs), timeout=max(self.timeout, 120.0))
        return resp

    def health(self, service: str = "") -> str:
        """The standard health check's status name, e.g. ``"SERVING"``."""
        resp = self.health_stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=self.timeout)
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
