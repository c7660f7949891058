"""Undecodable requests reach the servicer as `Undecodable` values (ltrr.grpc_servicer), over a real
grpc.aio server on loopback (the server class Ray Serve's proxy extends)."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from ltrr.errors import InvalidRequest
from ltrr.grpc_servicer import Undecodable, add_SearchServiceServicer_to_server, check_decoded
from ltrr.v1 import search_pb2 as pb
from ltrr.v1 import search_pb2_grpc

GARBAGE = b"\xff\xff\xff\xff\x0f"  # a field number past the range: "Wire format was corrupt"


class Recorder(search_pb2_grpc.SearchServiceServicer):
    def __init__(self) -> None:
        self.seen: list[object] = []

    async def Search(self, request, context):  # noqa: N802
        self.seen.append(request)
        try:
            check_decoded(request)
        except InvalidRequest as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        return pb.SearchResponse(request_id=request.query)

    async def UpsertEntities(self, request_iterator, context):  # noqa: N802
        n = 0
        async for msg in request_iterator:
            self.seen.append(msg)
            try:
                check_decoded(msg, f"entities[{n}]")
            except InvalidRequest as exc:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
            n += 1
        return pb.UpsertSummary(received=n)


async def exchange(register) -> tuple[list[tuple[grpc.StatusCode, str]], list[object]]:
    server = grpc.aio.server()
    rec = Recorder()
    register(rec, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    out = []
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
            raw = ch.unary_unary("/ltrr.v1.SearchService/Search")  # bytes in, bytes out
            stream = ch.stream_unary("/ltrr.v1.SearchService/UpsertEntities")
            calls = [
                raw(pb.SearchRequest(query="ok").SerializeToString(), timeout=10),
                raw(GARBAGE, timeout=10),
                stream(iter([pb.Entity(entity_id="a").SerializeToString(), GARBAGE]), timeout=10),
            ]
            for call in calls:
                try:
                    await call
                    out.append((grpc.StatusCode.OK, ""))
                except grpc.aio.AioRpcError as exc:
                    out.append((exc.code(), exc.details()))
    finally:
        await server.stop(None)
    return out, rec.seen


def test_undecodable_bytes_are_invalid_argument_naming_the_field():
    out, seen = asyncio.run(exchange(add_SearchServiceServicer_to_server))
    assert out[0] == (grpc.StatusCode.OK, "")
    assert out[1][0] == grpc.StatusCode.INVALID_ARGUMENT
    assert out[1][1].startswith("request: is not a valid ltrr.v1.SearchRequest message (")
    assert out[2][0] == grpc.StatusCode.INVALID_ARGUMENT
    assert out[2][1].startswith("entities[1]: is not a valid ltrr.v1.Entity message (")
    assert sorted(type(x).__name__ for x in seen) == ["Entity", "SearchRequest", "Undecodable", "Undecodable"]


def test_the_generated_registration_answers_unknown_instead():
    """What this module fixes: grpcio's own decoding fails the call before the servicer runs."""
    out, seen = asyncio.run(exchange(search_pb2_grpc.add_SearchServiceServicer_to_server))
    assert out[1][0] == grpc.StatusCode.UNKNOWN
    assert all(not isinstance(x, Undecodable) for x in seen)


def test_check_decoded_passes_real_messages():
    check_decoded(pb.SearchRequest())
    with pytest.raises(InvalidRequest, match=r"^request: is not a valid x message \(bad\)$"):
        check_decoded(Undecodable("x", "bad"))
