"""Register ``ltrr.v1.SearchService`` so that an undecodable message is the caller's error, not ours.

grpcio decodes each request with the servicer's ``request_deserializer`` before any handler runs.
When the bytes are not a valid message, the ``grpc.aio`` server that Ray Serve's proxy extends
answers ``UNKNOWN`` with the text of a ``DecodeError`` (and a stream's handler sees the error raised
inside its ``async for``, which would become ``INTERNAL``). Neither tells the caller it sent bad
input.

:func:`add_SearchServiceServicer_to_server` is the generated function of the same name, with each
request deserializer wrapped: bytes that do not decode become an :class:`Undecodable` value, which
the proxy forwards to the ingress like any request, and the ingress answers ``INVALID_ARGUMENT``
naming the field (:func:`check_decoded`). ``deployments/serve_config.yaml`` lists this function in
``grpc_servicer_functions`` instead of the generated one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import grpc
from google.protobuf.message import DecodeError

from ltrr.errors import InvalidRequest
from ltrr.v1 import search_pb2_grpc

#: Longest decoder message quoted back to the caller.
_MAX_DETAIL = 160


@dataclass(frozen=True)
class Undecodable:
    """A request whose bytes did not decode as ``message_type`` (what the ingress receives instead)."""

    message_type: str
    error: str


def lenient(deserialize: Callable[[bytes], Any], message_type: str) -> Callable[[bytes], Any]:
    """``deserialize``, but bytes that do not decode give an :class:`Undecodable` instead of raising."""

    def parse(data: bytes) -> Any:
        try:
            return deserialize(data)
        except DecodeError as exc:
            return Undecodable(message_type, str(exc)[:_MAX_DETAIL])

    return parse


def check_decoded(request: Any, field: str = "request") -> None:
    """Raise ``InvalidRequest`` naming ``field`` when ``request`` did not decode."""
    if isinstance(request, Undecodable):
        raise InvalidRequest(field, f"is not a valid {request.message_type} message ({request.error})")


def _message_type(handler: grpc.RpcMethodHandler) -> str:
    fn = handler.request_deserializer
    owner = getattr(fn, "__self__", None)  # the generated code passes `SearchRequest.FromString`
    descriptor = getattr(owner, "DESCRIPTOR", None)
    return str(descriptor.full_name) if descriptor is not None else "protobuf"


def _wrapped(handlers: Mapping[str, grpc.RpcMethodHandler]) -> dict[str, grpc.RpcMethodHandler]:
    return {
        name: h._replace(request_deserializer=lenient(h.request_deserializer, _message_type(h)))
        if h.request_deserializer is not None
        else h
        for name, h in handlers.items()
    }


class _LenientServer:
    """Passes registrations through to ``server`` with every request deserializer made lenient."""

    def __init__(self, server: Any) -> None:
        self._server = server

    def add_generic_rpc_handlers(self, generic_rpc_handlers: Sequence[grpc.GenericRpcHandler]) -> None:
        for h in generic_rpc_handlers:
            h._method_handlers = _wrapped(h._method_handlers)  # type: ignore[attr-defined]
        self._server.add_generic_rpc_handlers(generic_rpc_handlers)

    def add_registered_method_handlers(self, service_name: str, method_handlers: dict[str, Any]) -> None:
        add = getattr(self._server, "add_registered_method_handlers", None)
        if add is not None:
            add(service_name, _wrapped(method_handlers))


def add_SearchServiceServicer_to_server(servicer: Any, server: Any) -> None:  # noqa: N802 - grpc's name
    """The generated registration with lenient request decoding (module docstring)."""
    search_pb2_grpc.add_SearchServiceServicer_to_server(servicer, _LenientServer(server))
