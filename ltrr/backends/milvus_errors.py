"""pymilvus and gRPC failures as ltrr's backend errors, for every Milvus client (the vector strategy,
the Milvus hybrid peer): a missed deadline is :class:`~ltrr.errors.BackendTimeout`, anything else
:class:`~ltrr.errors.BackendUnavailable`, each naming the operation, the URI and the collection."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import grpc
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
