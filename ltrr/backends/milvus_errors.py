"""What every Milvus client of ltrr shares (the vector strategy, the Milvus hybrid peer): how it
connects (:func:`milvus_client`), and pymilvus and gRPC failures as ltrr's backend errors
(:func:`milvus_errors`): a missed deadline is :class:`~ltrr.errors.BackendTimeout`, anything else
:class:`~ltrr.errors.BackendUnavailable`, each naming the operation, the URI and the collection."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import grpc
from pymilvus import MilvusClient
from pymilvus.exceptions import MilvusException

from ltrr.errors import BackendTimeout, BackendUnavailable

#: Milvus error code for "collection not loaded" (Milvus merr and Milvus Lite agree).
NOT_LOADED = 101
#: pymilvus' code for "cannot connect" (Status.CONNECT_FAILED).
CONNECT_FAILED = 2


@contextmanager
def milvus_errors(where: str, drop_client: Callable[[], None]) -> Iterator[None]:
    """Translate what the block raises; ``drop_client()`` forgets a connection that is broken (not
    one that only missed a deadline), so the next call reconnects. ``where`` names the call."""
    try:
        yield
    except grpc.RpcError as exc:
        code = exc.code() if callable(getattr(exc, "code", None)) else None
        if code == grpc.StatusCode.DEADLINE_EXCEEDED:
            raise BackendTimeout(f"{where} did not answer within its deadline") from exc
        drop_client()
        raise BackendUnavailable(f"{where} failed: {code}: {exc}") from exc
    except MilvusException as exc:
        msg = exc.message or str(exc)
        if "timeout" in msg.lower() and "retry" in msg.lower():
            raise BackendTimeout(f"{where} did not answer within its deadline: {msg}") from exc
        if exc.code in (CONNECT_FAILED, grpc.StatusCode.UNAVAILABLE):
            drop_client()
        raise BackendUnavailable(f"{where} failed (code {exc.code}): {msg}") from exc
    except (ConnectionError, OSError) as exc:
        drop_client()
        raise BackendUnavailable(f"{where} failed: {exc}") from exc


def milvus_client(uri: str, token: str, timeout_s: float) -> MilvusClient:
    """A dedicated connection to ``uri`` (a server, or a Milvus Lite ``*.db`` file)."""
    return MilvusClient(
        uri=uri,
        token=token,
        timeout=timeout_s,
        dedicated=True,
        # Milvus Lite's gRPC server answers pings more often than every 5 min with
        # GOAWAY "too_many_pings"; idle connections need no keepalive here.
        grpc_options={"grpc.keepalive_time_ms": 300_000, "grpc.keepalive_permit_without_calls": 0},
    )
