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
    NotFound,
    PermissionDenied,
    Unauthenticated,
)

log = logging.getLogger("ltrr")


def status_for(exc: BaseException) -> tuple[grpc.StatusCode, str]:
    """Map an exception to ``(status code, client-safe message)``."""
    if isinstance(exc, InvalidRequest):
        return grpc.StatusCode.INVALID_ARGUMENT, str(exc)
    if isinstance(exc, Unauthenticated):
        return grpc.StatusCode.UNAUTHENTICATED, str(exc)
    if isinstance(exc, PermissionDenied):
        return grpc.StatusCode.PERMISSION_DENIED, str(exc)
    if isinstance(exc, Aborted):
        return grpc.StatusCode.ABORTED, str(exc)
    if isinstance(exc, NotFound):
        return grpc.StatusCode.NOT_FOUND, str(exc)
    if isinstance(exc, BackendTimeout):
        return grpc.StatusCode.DEADLINE_EXCEEDED, str(exc)
    if isinstance(exc, BackendUnavailable):
        return grpc.StatusCode.UNAVAILABLE, str(exc)
    if isinstance(exc, ConfigError):
        return grpc.StatusCode.FAILED_PRECONDITION, str(exc)
    ref = uuid.uuid4().hex[:12]
    log.error("internal error ref=%s", ref, exc_info=exc)
    return grpc.StatusCode.INTERNAL, f"internal error (ref {ref})"
