"""The auth matrix over real gRPC: {Search, Feedback, UpsertEntities, UpsertUsers, Health, reflection}
× {no token, wrong token, wrong scope, right token}, each with its exact status, against the running app.

Rejected calls write nothing: the rejected upload's entity is not in the catalog, and the rejected
feedback's event id is not in the event log.
"""

from __future__ import annotations

import sqlite3
import uuid

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from ltrr.catalog.store import CatalogStore
from ltrr.v1 import search_pb2 as pb
from ltrr.v1 import search_pb2_grpc

pytestmark = pytest.mark.integration
WRONG = "not-a-configured-token-0123456789"
S = grpc.StatusCode
#: (who calls, the status) of an RPC any valid token may call: Search and Feedback.
SEARCH_SCOPE = [("none", S.UNAUTHENTICATED), ("wrong", S.UNAUTHENTICATED), ("search", S.OK), ("admin", S.OK)]
#: (who calls, the status) of an RPC that needs the `admin` scope: the two uploads.
ADMIN_SCOPE = [
    ("none", S.UNAUTHENTICATED),
    ("wrong", S.UNAUTHENTICATED),
    ("search", S.PERMISSION_DENIED),
    ("admin", S.OK),
]


def metadata(tokens: dict[str, str], who: str) -> list[tuple[str, str]]:
    token = {"none": None, "wrong": WRONG, "search": tokens["search"], "admin": tokens["admin"]}[who]
    return [] if token is None else [("authorization", f"Bearer {token}")]


@pytest.fixture(scope="module")
def stub(ltrr_app):
    ch = grpc.insecure_channel(ltrr_app.target)
    yield search_pb2_grpc.SearchServiceStub(ch), ch
    ch.close()


def code_of(call) -> grpc.StatusCode:
    try:
        call()
    except grpc.RpcError as exc:
        return exc.code()
    return S.OK


def a_search(stub_, tokens) -> str:
    resp = stub_.Search(pb.SearchRequest(query="radiohead", k=5), metadata=metadata(tokens, "admin"), timeout=20)
    return resp.request_id


@pytest.mark.parametrize(("who", "expected"), SEARCH_SCOPE)
def test_search(stub, ltrr_app, who, expected):
    s, _ = stub
    req = pb.SearchRequest(query="radiohead", k=5)
    assert code_of(lambda: s.Search(req, metadata=metadata(ltrr_app.tokens, who), timeout=20)) == expected


@pytest.mark.parametrize(("who", "expected"), SEARCH_SCOPE)
def test_feedback_and_a_rejected_one_writes_nothing(stub, ltrr_app, who, expected):
    s, _ = stub
    rid = a_search(s, ltrr_app.tokens)
    event_id = f"auth-{who}-{uuid.uuid4().hex}"
    req = pb.FeedbackRequest(request_id=rid, event_id=event_id, entity_id="x", action="click", position=1)
    assert code_of(lambda: s.Feedback(req, metadata=metadata(ltrr_app.tokens, who), timeout=20)) == expected
    with sqlite3.connect(f"file:{ltrr_app.args['events_path']}?mode=ro", uri=True) as db:
        stored = db.execute("SELECT COUNT(*) FROM feedback WHERE event_id = ?", (event_id,)).fetchone()[0]
    assert stored == (1 if expected == S.OK else 0)


@pytest.mark.parametrize(("who", "expected"), ADMIN_SCOPE)
def test_upsert_entities_and_a_rejected_upload_writes_nothing(stub, ltrr_app, who, expected):
    s, _ = stub
    eid = f"artist:auth-{who}-{uuid.uuid4().hex[:8]}"
    msgs = [pb.Entity(entity_id=eid, entity_type="artist", title=f"Auth Probe {who}", popularity=0.1)]
    code = code_of(lambda: s.UpsertEntities(iter(msgs), metadata=metadata(ltrr_app.tokens, who), timeout=60))
    assert code == expected
    store = CatalogStore(ltrr_app.catalog_path)
    try:
        assert (eid in store.get_many([eid])) == (expected == S.OK)
    finally:
        store.close()


@pytest.mark.parametrize(("who", "expected"), ADMIN_SCOPE)
def test_upsert_users(stub, ltrr_app, who, expected):
    s, _ = stub
    msgs = [pb.UserProfile(user_id=f"auth-{who}", top_tags=[pb.WeightedName(name="rock", weight=1.0)])]
    code = code_of(lambda: s.UpsertUsers(iter(msgs), metadata=metadata(ltrr_app.tokens, who), timeout=20))
    assert code == expected


@pytest.mark.parametrize("who", ["none", "wrong", "search", "admin"])
def test_health_and_reflection_need_no_token(stub, ltrr_app, who):
    _, ch = stub
    md = metadata(ltrr_app.tokens, who)
    health = health_pb2_grpc.HealthStub(ch)
    resp = health.Check(health_pb2.HealthCheckRequest(service="ltrr.v1.SearchService"), metadata=md, timeout=10)
    assert resp.status == health_pb2.HealthCheckResponse.SERVING
    refl = reflection_pb2_grpc.ServerReflectionStub(ch)
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    (answer,) = list(refl.ServerReflectionInfo(iter([request]), metadata=md, timeout=10))
    assert "ltrr.v1.SearchService" in {x.name for x in answer.list_services_response.service}


def test_rejections_say_why(stub, ltrr_app):
    s, _ = stub
    req = pb.SearchRequest(query="radiohead", k=5)
    with pytest.raises(grpc.RpcError) as ei:
        s.Search(req, timeout=20)
    assert ei.value.details() == "authorization: missing `authorization: Bearer <token>` metadata"
    with pytest.raises(grpc.RpcError) as ei:
        s.UpsertEntities(iter([]), metadata=metadata(ltrr_app.tokens, "search"), timeout=20)
    assert ei.value.details() == "authorization: UpsertEntities needs a token with the `admin` scope"
