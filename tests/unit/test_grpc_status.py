"""The error → gRPC status mapping (ltrr.grpc_status): every class of the tree, and the order where a class
has two mapped bases."""

from __future__ import annotations

import logging
import re

import grpc
import pytest

from ltrr.errors import (
    Aborted,
    BackendError,
    BackendTimeout,
    BackendUnavailable,
    ConfigError,
    InvalidRequest,
    LtrrError,
    NotFound,
    PermissionDenied,
    Unauthenticated,
)
from ltrr.grpc_status import status_for
from ltrr.upsert import UploadInvalid, UploadStopped, UpsertProgress

S = grpc.StatusCode


@pytest.mark.parametrize(
    ("exc", "code", "message"),
    [
        (InvalidRequest("k", "must be in [1, 100], got 0"), S.INVALID_ARGUMENT, "k: must be in [1, 100], got 0"),
        (Unauthenticated("authorization: no token"), S.UNAUTHENTICATED, "authorization: no token"),
        (PermissionDenied("authorization: needs admin"), S.PERMISSION_DENIED, "authorization: needs admin"),
        (Aborted("stopped"), S.ABORTED, "stopped"),
        (NotFound("request r1 is unknown"), S.NOT_FOUND, "request r1 is unknown"),
        (BackendTimeout("lexical: 0.2 s"), S.DEADLINE_EXCEEDED, "lexical: 0.2 s"),
        (BackendUnavailable("milvus: refused"), S.UNAVAILABLE, "milvus: refused"),
        (ConfigError("auth: no tokens"), S.FAILED_PRECONDITION, "auth: no tokens"),
        # an Aborted and an InvalidRequest: the caller's fault, so INVALID_ARGUMENT (the order of the table)
        (
            UploadInvalid(InvalidRequest("entities[3].title", "is required"), UpsertProgress(committed=2)),
            S.INVALID_ARGUMENT,
            "entities[3].title: is required; 2 entities before it were committed",
        ),
        (
            UploadStopped("the client cancelled the upload", UpsertProgress(committed=500)),
            S.ABORTED,
            "the client cancelled the upload; 500 entities before it were committed",
        ),
    ],
)
def test_each_error_has_its_code_and_keeps_its_message(exc, code, message):
    assert status_for(exc) == (code, message)


@pytest.mark.parametrize("exc", [RuntimeError("/secret/path pid 4242"), LtrrError("x"), BackendError("x")])
def test_anything_else_is_internal_with_a_reference_and_no_detail(exc, caplog):
    with caplog.at_level(logging.ERROR, logger="ltrr"):
        code, message = status_for(exc)
    assert code == S.INTERNAL
    ref = re.fullmatch(r"internal error \(ref ([0-9a-f]{12})\)", message)
    assert ref is not None, message
    assert [r.getMessage() for r in caplog.records] == [f"internal error ref={ref.group(1)}"]
    assert caplog.records[0].exc_info is not None and caplog.records[0].exc_info[1] is exc
