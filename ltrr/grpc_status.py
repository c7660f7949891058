"""The one place where ltrr errors become gRPC status codes.

No traceback, pid, actor id or path ever reaches a client: unexpected errors
become ``INTERNAL`` with a short reference id that is also logged server-side.
"""

from __future__ import annotations

import logging
import uuid

import grpc

from ltrr.errors import (
    Aborted,
    BackendTimeout,
    BackendUnavailable,
    ConfigError,
    InvalidRequest,
    LtrrError,
    NotFound,
    PermissionDenied,
    Unauthenticated,
)

log = logging.getLogger("ltrr")

#: Each error class and its status code, in the order they are tried: the first the error is an instance of
#: wins. The order matters where a class has two of these bases: ``ltrr.upsert.UploadInvalid`` is an
#: InvalidRequest and an Aborted, and is the caller's fault, so InvalidRequest comes first.
CODES: tuple[tuple[type[LtrrError], grpc.StatusCode], ...] = (
    (InvalidRequest, grpc.StatusCode.INVALID_ARGUMENT),
    (Unauthenticated, grpc.StatusCode.UNAUTHENTICATED),
    (PermissionDenied, grpc.StatusCode.PERMISSION_DENIED),
    (Aborted, grpc.StatusCode.ABORTED),
    (NotFound, grpc.StatusCode.NOT_FOUND),
    (BackendTimeout, grpc.StatusCode.DEADLINE_EXCEEDED),
    (BackendUnavailable, grpc.StatusCode.UNAVAILABLE),
    (ConfigError, grpc.StatusCode.FAILED_PRECONDITION),
)


def status_for(exc: BaseException) -> tuple[grpc.StatusCode, str]:
    """Map an exception to ``(status code, client-safe message)``: the code of the first class of
    :data:`CODES` it is an instance of, with its own message; anything else is ``INTERNAL`` with a
    reference id (the traceback is logged under it, never sent)."""
    for cls, code in CODES:
        if isinstance(exc, cls):
            return code, str(exc)
    ref = uuid.uuid4().hex[:12]
    log.error("internal error ref=%s", ref, exc_info=exc)
    return grpc.StatusCode.INTERNAL, f"internal error (ref {ref})"
