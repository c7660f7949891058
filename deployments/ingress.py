"""The gRPC ingress: ``ltrr.v1.SearchService`` plus ``grpc.health.v1.Health``.

Every SearchService RPC first checks the caller's bearer token and its scope
(:mod:`ltrr.auth`; the proxy takes no interceptors, so the check is the first
line of each method); health is exempt. It maps protobuf messages to the pure :class:`ltrr.service.SearchService`
(requests through :mod:`ltrr.grpc_mapping`, the functions the fuzz test exercises) and maps every error to a
gRPC status through :func:`ltrr.grpc_status.status_for`, so no traceback ever reaches a client. It receives its
strategy handles and the policy learner's handle as arguments and looks nothing up globally.

**Deciding in the ingress.** Each ingress replica holds a copy of the policy's
RLModule and decides with its ``forward_exploration`` in-process (a fraction of
a millisecond) instead of a Serve hop to a policy deployment (several ms on two
cores). A background task fetches the learner's parameters every
``policy.sync_interval_s``; ``policy_version`` in each response names them.
Health is SERVING only after the first fetch, so a restarted app decides with
the restored parameters from its first request.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, AsyncIterator

import grpc
from grpc_health.v1 import health_pb2
from ray.serve.grpc_util import RayServegRPCContext
from ray.serve.handle import DeploymentHandle

from deployments.rlmodule import BanditRLModule, ModulePlanner
from deployments.strategy import InProcessHandle, server_class
from ltrr import metrics
from ltrr.auth import Authenticator
from ltrr.bandit import ContextFeaturizer
from ltrr.builder import build_service
from ltrr.catalog.store import open_catalog
from ltrr.client import TIMEOUT_METADATA
from ltrr.config import AppConfig
from ltrr.event_store import open_event_log
from ltrr.fanout import Caller
from ltrr.grpc_mapping import artist_ids, entity, feedback_params, search_params, user
from ltrr.grpc_status import status_for
from ltrr.index_status import INDEX_SERVICE_PREFIX, IndexBacklog
from ltrr.ingest import index_targets
from ltrr.types import Candidate, Entity
from ltrr.upsert import UploadStopped, UpsertProgress, write_in_batches
from ltrr.v1 import search_pb2 as pb

log = logging.getLogger("ray.serve")
SERVICE_NAME = "ltrr.v1.SearchService"
_STATUS = {
    "ok": pb.StrategyCall.OK,
    "timeout": pb.StrategyCall.TIMEOUT,
    "error": pb.StrategyCall.ERROR,
    "skipped": pb.StrategyCall.SKIPPED,
}
UPSERT_BATCH = 500


def _caller(handle: DeploymentHandle) -> Caller:
    async def call(query: dict[str, Any], k: int) -> list[Candidate]:
        result: list[Candidate] = await handle.search.remote(query, k)
        return result

    return call


def _deadline(ctx: RayServegRPCContext) -> float | None:
    """Seconds the caller still waits: its ``ltrr-timeout-ms`` metadata (``LtrrClient`` sends the
    attempt's deadline; Ray's gRPC context does not expose the client's own), else None."""
    for key, value in ctx.invocation_metadata():
        if key == TIMEOUT_METADATA:
            text = value.decode() if isinstance(value, bytes) else value
            return int(text) / 1000.0 if text.isdigit() and 0 < int(text) <= 3_600_000 else None
    return None


def _fail(ctx: RayServegRPCContext, exc: BaseException) -> None:
    code, message = status_for(exc)
    ctx.set_code(code)
    ctx.set_details(message)


class Ingress:
    def __init__(
        self,
        strategies: dict[str, DeploymentHandle],
        learner: DeploymentHandle,
        app_config: dict[str, Any],
        trainer: DeploymentHandle | None = None,
    ) -> None:
        """``strategies`` holds the handles of the strategies with their own deployment; those with
        ``placement: ingress`` are built here, in this replica. ``trainer`` (the ranker trainer) is
        bound here so Serve deploys it; the ingress only reads the models it publishes."""
        app = AppConfig.model_validate(app_config)
        enabled = app.enabled()
        local = {
            n: InProcessHandle(server_class(n)(n, app_config)) for n, s in enabled.items() if s.placement == "ingress"
        }
        strategies = {**strategies, **local}  # type: ignore[dict-item]
        self.handles = strategies
        self.auth = Authenticator(app.auth)  # before anything else: no tokens is a start-up error
        self.learner = learner
        self.trainer = trainer
        self.sync_interval_s = app.policy.sync_interval_s
        self.ladder = app.policy.ladder
        self.store = open_catalog(app)
        self.backlog = IndexBacklog(self.store, index_targets(app))
        self.events = open_event_log(
            app,
            feedback_window_s=app.feedback_window_s,
            reward_window_s=app.policy.reward_window_s,
            positive_actions=app.policy.positive_actions,
        )

        def planner(featurizer: ContextFeaturizer) -> ModulePlanner:
            return ModulePlanner(BanditRLModule.build(list(enabled), featurizer.dim, app.policy), featurizer)

        built = build_service(
            app,
            {name: _caller(strategies[name]) for name in enabled},
            metrics.timed_writes(self.events),  # ltrr_eventlog_write_ms{op=search|feedback}
            self.store,
            planner,
            on_feedback=self._wake_learner,
            backlog=self.backlog,
        )
        self.service, self.ranker = built.service, built.ranker
        self.planner: ModulePlanner = self.service.planner  # type: ignore[assignment]
        self.reload_interval_s = app.ranking.reload_interval_s
        self._ranker_task: asyncio.Task[None] | None = None
        self.ready = False
        self.synced = False
        self._sync_task: asyncio.Task[None] | None = None

    # -- the policy ---------------------------------------------------------------------------------
    def _wake_learner(self) -> None:
        self.learner.notify.remote()  # fire and forget; the learner also polls the durable log

    async def _sync_once(self) -> None:
        """Fetch the learner's parameters if they changed."""
        snap = await self.learner.snapshot.remote(self.planner.version if self.synced else -1)
        if snap is not None:
            self.planner.load(snap["state"])
        self.synced = True
        # Info gauges, re-set every sync: Ray drops a gauge not set again within two report intervals.
        metrics.record_policy_version(self.planner.module.policy_config.algorithm, self.planner.version)
        metrics.record_ranker_version(self.ranker.version)

    async def _sync_loop(self) -> None:
        while True:
            try:
                await self._sync_once()
            except Exception as exc:  # noqa: BLE001 - keep deciding with the parameters we have
                log.warning("ingress: policy sync failed (%s); keeping version %d", exc, self.planner.version)
            await asyncio.sleep(self.sync_interval_s)

    async def _ranker_loop(self) -> None:
        """Pick up a newly published ranker: loaded in a thread, then swapped in one assignment."""
        while True:
            await asyncio.sleep(self.reload_interval_s)
            try:
                await asyncio.to_thread(self.ranker.refresh)
            except Exception as exc:  # noqa: BLE001 - keep serving with the ranker we have
                log.warning("ingress: ranker refresh failed (%s); keeping %s", exc, self.ranker.version)

    def _ensure_sync(self) -> None:
        if self._sync_task is None or self._sync_task.done():
            self._sync_task = asyncio.get_running_loop().create_task(self._sync_loop())
        if self._ranker_task is None or self._ranker_task.done():
            self._ranker_task = asyncio.get_running_loop().create_task(self._ranker_loop())

    # -- ltrr.v1.SearchService ------------------------------------------------
    async def Search(self, request: pb.SearchRequest, grpc_context: RayServegRPCContext) -> pb.SearchResponse:
        self._ensure_sync()
        try:
            self.auth.check(grpc_context.invocation_metadata(), "Search")
            params = search_params(request, known_strategies=self.service.strategies, ladder=self.ladder)
            out = await self.service.search(params, deadline=_deadline(grpc_context))
            metrics.record_search(out.calls, out.decision, self.planner.module.policy)
        except Exception as exc:  # noqa: BLE001 - mapped to a status, never a traceback
            _fail(grpc_context, exc)
            return pb.SearchResponse()
        return pb.SearchResponse(
            request_id=out.request_id,
            results=[
                pb.Result(
                    entity_id=f.entity_id,
                    entity_type=f.entity_type,
                    title=f.title,
                    subtitle=f.subtitle,
                    score=f.score,
                    retrieved_by=f.retrieved_by,
                    features=out.features.get(f.entity_id, {}),
                )
                for f in out.results
            ],
            strategies=[
                pb.StrategyCall(
                    strategy=c.strategy,
                    candidates_requested=c.requested,
                    candidates_returned=c.returned,
                    latency_ms=c.latency_ms,
                    status=_STATUS[c.status],
                    propensity=c.propensity,
                    detail=c.detail,
                    candidate_ids=out.candidates.get(c.strategy, ()),
                )
                for c in out.calls
            ],
            context_features=out.context,
            policy_version=out.policy_version,
            ranker_version=out.ranker_version,
            degraded=out.degraded,
            propensity=out.decision.propensity if out.decision is not None else 1.0,
        )

    async def Feedback(self, request: pb.FeedbackRequest, grpc_context: RayServegRPCContext) -> pb.FeedbackResponse:
        try:
            self.auth.check(grpc_context.invocation_metadata(), "Feedback")
            params = feedback_params(request)
            duplicate = await self.service.feedback(params, deadline=_deadline(grpc_context))
            metrics.record_feedback("duplicate" if duplicate else "accepted")
        except Exception as exc:  # noqa: BLE001
            metrics.record_feedback("rejected")
            _fail(grpc_context, exc)
            return pb.FeedbackResponse()
        return pb.FeedbackResponse(duplicate=duplicate)

    async def UpsertEntities(
        self, request_stream: AsyncIterator[pb.Entity], grpc_context: RayServegRPCContext
    ) -> pb.UpsertSummary:
        """Validate the streamed entities and write them in batches as they arrive, then sync every strategy.

        Memory holds one batch (``UPSERT_BATCH``); a cancelled or broken stream commits nothing of its
        last partial batch (:mod:`ltrr.upsert`), and the strategies still index what was committed.
        """
        progress = UpsertProgress()

        async def commit(batch: list[Entity]) -> int:
            changed = await asyncio.to_thread(self.store.upsert_entities, batch)
            await self.service.forget_facts([e.entity_id for e in batch])  # ranked with the new facts here
            return int(changed)

        try:
            self.auth.check(grpc_context.invocation_metadata(), "UpsertEntities")  # before reading the stream
            progress = await write_in_batches(
                request_stream,
                entity,
                commit,
                batch_size=UPSERT_BATCH,
                cancelled=getattr(request_stream, "is_cancelled", lambda: False),
            )
        except Exception as exc:  # noqa: BLE001
            if isinstance(exc, UploadStopped):
                progress = exc.progress
                log.warning("upsert stopped: %s (dropped %d of its last batch)", exc, progress.dropped)
            if progress.committed:
                await self._sync_strategies()
            _fail(grpc_context, exc)
            return pb.UpsertSummary()
        indexed, failed = await self._sync_strategies()
        return pb.UpsertSummary(received=progress.received, changed=progress.changed, indexed=indexed, failed=failed)

    async def _sync_strategies(self) -> tuple[dict[str, int], list[str]]:
        names = list(self.handles)
        results = await asyncio.gather(*(self.handles[n].sync.remote() for n in names), return_exceptions=True)
        indexed, failed = {}, []
        for n, r in zip(names, results, strict=True):
            if isinstance(r, BaseException):
                failed.append(n)
                log.warning("upsert: %s failed to sync: %s", n, r)
            else:
                indexed[n] = int(r)
        return indexed, failed

    async def UpsertUsers(
        self, request_stream: AsyncIterator[pb.UserProfile], grpc_context: RayServegRPCContext
    ) -> pb.UpsertUsersSummary:
        """Validate every streamed profile, then write them all (:func:`ltrr.grpc_mapping.user`).

        Artist ids must be catalog artists (upsert the entities first): an unknown id is rejected with
        INVALID_ARGUMENT naming it (``users[i].top_artists[j].name``), since a name sent in place of an id
        ("radiohead") would otherwise be stored and never match. Nothing is written unless all are valid.
        """
        try:
            self.auth.check(grpc_context.invocation_metadata(), "UpsertUsers")  # before reading the stream
            msgs = [msg async for msg in request_stream]
            wanted = artist_ids(msgs)  # first refuses a message that did not decode
            found = await asyncio.to_thread(self.store.get_many, wanted)
            known = {eid for eid, e in found.items() if e.entity_type == "artist"}
            users = [user(i, msg, known) for i, msg in enumerate(msgs)]
            changed = await asyncio.to_thread(self.store.upsert_users, users)
        except Exception as exc:  # noqa: BLE001
            _fail(grpc_context, exc)
            return pb.UpsertUsersSummary()
        return pb.UpsertUsersSummary(received=len(users), changed=changed)

    # -- grpc.health.v1.Health ---------------------------------------------------
    async def _strategies_ready(self) -> bool:
        """SERVING only once every strategy replica has warmed up and the policy parameters are loaded."""
        if not self.ready:
            try:
                await asyncio.wait_for(
                    asyncio.gather(*(h.ready.remote() for h in self.handles.values()), self._sync_once()),
                    timeout=2.0,
                )
                self._ensure_sync()
                self.ready = True
            except Exception:  # noqa: BLE001 - still starting: NOT_SERVING, ask again later
                return False
        return True

    async def _health(self, service: str) -> health_pb2.HealthCheckResponse | None:
        if service.startswith(INDEX_SERVICE_PREFIX):  # ltrr.index.<strategy>: SERVING once it has no backlog
            name = service[len(INDEX_SERVICE_PREFIX) :]
            if name not in self.handles:
                return None
            behind = (await asyncio.to_thread(self.backlog.pending)).get(name, 0) > 0
            status = health_pb2.HealthCheckResponse.NOT_SERVING if behind else health_pb2.HealthCheckResponse.SERVING
            return health_pb2.HealthCheckResponse(status=status)
        if service not in ("", SERVICE_NAME):
            return None
        serving = await self._strategies_ready()
        status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        return health_pb2.HealthCheckResponse(status=status)

    async def Check(
        self, request: health_pb2.HealthCheckRequest, grpc_context: RayServegRPCContext
    ) -> health_pb2.HealthCheckResponse:
        resp = await self._health(request.service)
        if resp is None:
            grpc_context.set_code(grpc.StatusCode.NOT_FOUND)
            grpc_context.set_details(f"service: unknown service {request.service!r}")
            return health_pb2.HealthCheckResponse()
        return resp

    async def Watch(
        self, request: health_pb2.HealthCheckRequest, grpc_context: RayServegRPCContext
    ) -> AsyncIterator[health_pb2.HealthCheckResponse]:
        resp = await self._health(request.service)
        yield (
            resp
            if resp is not None
            else health_pb2.HealthCheckResponse(status=health_pb2.HealthCheckResponse.SERVICE_UNKNOWN)
        )

    async def check_health(self) -> None:
        """Serve's replica health check: the replica itself is healthy once constructed."""
