"""Generated messages over real gRPC against the running app (issue 11, "Fuzzing").

At least 2,000 messages in all: Search, Feedback, and UpsertEntities streams. The only outcomes
allowed are OK and INVALID_ARGUMENT (and NOT_FOUND for feedback on an unknown search): no INTERNAL,
no UNKNOWN, no hang past the deadline, and the ingress replica is the same actor afterwards (no
restart). Every upload stream ends with an entity that is invalid by construction, so nothing of it
is committed and the shared catalog is unchanged; that is checked too.

Runs last (``run_last``): its thousands of junk searches would otherwise be in the log that the
learning tests read.
"""

from __future__ import annotations

import collections
import string

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ltrr.catalog.store import CatalogStore
from ltrr.v1 import search_pb2 as pb
from ltrr.v1 import search_pb2_grpc

pytestmark = [pytest.mark.integration, pytest.mark.run_last]
S = grpc.StatusCode
SEARCHES, FEEDBACKS, UPLOADS = 1000, 700, 300
#: Request ids of the fuzzed searches that succeeded (test_search runs before test_feedback).
SEARCHED: list[str] = []


def fuzz(n: int) -> settings:
    return settings(
        max_examples=n,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
    )


WORDS = ["radiohead", "rock", "artists like", "coldplay", "jazz", "podcast", "female vocalists", "beatles"]
#: Any unicode a protobuf string can hold (no surrogates), weighted towards the awkward: control
#: characters, NUL, combining marks, right-to-left, emoji.
TEXT = st.one_of(
    st.text(st.characters(codec="utf-8"), max_size=40),
    st.text(
        st.sampled_from(["\x00", "\x01", "\x1f", "\x7f", "\u200b", "\u202e", "\u0301", "🎸", " ", "!"]), max_size=20
    ),
    st.lists(st.sampled_from(WORDS), min_size=1, max_size=4).map(" ".join),
    st.text(st.sampled_from(string.printable), min_size=200, max_size=3000),
)
INT32 = st.integers(-(2**31), 2**31 - 1)
SMALL = st.one_of(st.integers(0, 100), st.integers(-5, 120), INT32)
STRATEGIES = st.sampled_from(["lexical", "vector", "graph", "memory"])
TYPES = st.sampled_from(["artist", "track", "playlist", "podcast"])
NAMES = st.one_of(STRATEGIES, TYPES, TEXT)


def mostly(valid: st.SearchStrategy, wild: st.SearchStrategy) -> st.SearchStrategy:  # type: ignore[type-arg]
    """Four draws in five from the valid side, so that many requests pass validation and go deep."""
    return st.one_of(valid, valid, valid, valid, wild)


def outcome(fn) -> grpc.StatusCode:  # type: ignore[no-untyped-def]
    try:
        fn()
    except grpc.RpcError as exc:
        return exc.code()
    return S.OK


@pytest.fixture(scope="module")
def app(ltrr_app):  # type: ignore[no-untyped-def]
    import ray

    def ingress_actors() -> set[str]:
        """Names of the live ingress replica actors: Serve names each replica by a new id, so a
        replica that crashed and was replaced shows as a changed set (no dashboard needed)."""
        return {a["name"] for a in ray.util.list_named_actors(all_namespaces=True) if "#ingress#" in a["name"]}

    assert ray.is_initialized()
    before = ingress_actors()
    assert before, "no ingress replica found"
    store = CatalogStore(ltrr_app.catalog_path)
    catalog_seq = store.max_seq()
    ch = grpc.insecure_channel(ltrr_app.target)
    md = [("authorization", f"Bearer {ltrr_app.tokens['admin']}")]
    counts: dict[str, collections.Counter[grpc.StatusCode]] = collections.defaultdict(collections.Counter)
    yield search_pb2_grpc.SearchServiceStub(ch), md, counts
    ch.close()
    print("\ngRPC fuzz outcomes:", {rpc: {c.name: n for c, n in cs.items()} for rpc, cs in counts.items()})
    assert ingress_actors() == before, "the ingress replica restarted during the fuzz"
    assert store.max_seq() == catalog_seq, "a fuzzed upload committed entities"
    store.close()


@fuzz(SEARCHES)
@given(
    query=mostly(st.lists(st.sampled_from(WORDS), min_size=1, max_size=4).map(" ".join), TEXT),
    user_id=st.one_of(st.just(""), st.just("lfm:1"), TEXT),
    k=mostly(st.integers(0, 100), SMALL),
    entity_types=mostly(st.lists(TYPES, max_size=2, unique=True), st.lists(NAMES, max_size=4)),
    context=mostly(
        st.fixed_dictionaries(
            {}, optional={"hour": st.integers(0, 23).map(str), "weekend": st.sampled_from(["1", "0"])}
        ),
        st.dictionaries(TEXT, TEXT, max_size=4),
    ),
    strategies=mostly(st.lists(STRATEGIES, max_size=4, unique=True), st.lists(NAMES, max_size=5)),
    explain=st.booleans(),
    budgets=mostly(
        st.dictionaries(STRATEGIES, st.sampled_from([0, 10, 25, 50, 100]), max_size=4),
        st.dictionaries(NAMES, SMALL, max_size=4),
    ),
)
def test_search(app, query, user_id, k, entity_types, context, strategies, explain, budgets):  # type: ignore[no-untyped-def]
    stub, md, counts = app
    req = pb.SearchRequest(
        query=query,
        user_id=user_id,
        k=k,
        entity_types=entity_types,
        context=context,
        strategies=strategies,
        explain=explain,
        budgets=budgets,
    )
    out: list[pb.SearchResponse] = []
    code = outcome(lambda: out.append(stub.Search(req, metadata=md, timeout=30)))
    counts["Search"][code] += 1
    if out:
        SEARCHED.append(out[0].request_id)  # what the feedback fuzz may point at
    assert code in (S.OK, S.INVALID_ARGUMENT), (code, req)


@fuzz(FEEDBACKS)
@given(
    request_id=st.one_of(TEXT, st.uuids().map(str), st.integers(0, 10**6)),
    event_id=mostly(st.uuids().map(str), TEXT),
    entity_id=mostly(st.just("artist:ef13eca66417"), TEXT),
    action=mostly(st.sampled_from(["click", "play", "favorite", "skip"]), TEXT),
    position=mostly(st.integers(1, 100), SMALL),
)
def test_feedback(app, request_id, event_id, entity_id, action, position):  # type: ignore[no-untyped-def]
    stub, md, counts = app
    if isinstance(request_id, int):  # one of the searches the search fuzz made, if any
        request_id = SEARCHED[request_id % len(SEARCHED)] if SEARCHED else ""
    req = pb.FeedbackRequest(
        request_id=request_id, event_id=event_id, entity_id=entity_id, action=action, position=position
    )
    code = outcome(lambda: stub.Feedback(req, metadata=md, timeout=30))
    counts["Feedback"][code] += 1
    assert code in (S.OK, S.INVALID_ARGUMENT, S.NOT_FOUND), (code, req)


ENTITY = st.builds(
    pb.Entity,
    entity_id=mostly(st.uuids().map(lambda u: f"artist:fuzz-{u.hex[:12]}"), TEXT),
    entity_type=mostly(TYPES, NAMES),
    title=TEXT,
    subtitle=TEXT,
    genres=st.lists(TEXT, max_size=5),
    tags=st.lists(TEXT, max_size=5),
    description=TEXT,
    popularity=mostly(st.floats(0, 100), st.floats(allow_nan=True, allow_infinity=True)),
    attrs=st.dictionaries(TEXT, TEXT, max_size=4),
)


@fuzz(UPLOADS)
@given(entities=st.lists(ENTITY, max_size=4))
def test_upsert_entities(app, entities):  # type: ignore[no-untyped-def]
    stub, md, counts = app
    # Invalid by construction (an empty id), so the stream is rejected and nothing of it committed.
    msgs = [*entities, pb.Entity(entity_id="", entity_type="artist", title="x")]
    code = outcome(lambda: stub.UpsertEntities(iter(msgs), metadata=md, timeout=30))
    counts["UpsertEntities"][code] += 1
    assert code == S.INVALID_ARGUMENT


RAW_BYTES = 300


@fuzz(RAW_BYTES)
@given(rpc=st.sampled_from(["Search", "Feedback"]), data=st.binary(max_size=200))
def test_raw_bytes(app, ltrr_app, rpc, data):  # type: ignore[no-untyped-def]
    """Bytes that may not decode at all: INVALID_ARGUMENT naming `request`, never UNKNOWN or INTERNAL."""
    stub, md, counts = app
    ch = RAW_CHANNELS.setdefault("ch", grpc.insecure_channel(ltrr_app.target))
    call = ch.unary_unary(f"/ltrr.v1.SearchService/{rpc}")  # bytes in, bytes out
    code = outcome(lambda: call(data, metadata=md, timeout=30))
    counts[f"{rpc} (raw bytes)"][code] += 1
    assert code in (S.OK, S.INVALID_ARGUMENT, S.NOT_FOUND), (code, data)


RAW_CHANNELS: dict[str, grpc.Channel] = {}


def test_the_app_still_answers(app):  # type: ignore[no-untyped-def]
    stub, md, counts = app
    resp = stub.Search(pb.SearchRequest(query="radiohead", k=5), metadata=md, timeout=30)
    assert resp.results
    assert sum(sum(c.values()) for c in counts.values()) >= 2000 + RAW_BYTES
    for ch in RAW_CHANNELS.values():
        ch.close()
