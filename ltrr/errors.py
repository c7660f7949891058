"""The one error tree of ltrr.

::

    LtrrError
    ├── ConfigError            a config value is wrong; raised at start-up
    ├── InvalidRequest         a caller sent bad input; names the field
    ├── NotFound               a referenced object (request, entity) does not exist
    ├── Unauthenticated        no valid bearer token came with the call
    ├── PermissionDenied       the token is valid but lacks the RPC's scope
    ├── Aborted                an operation stopped before its end (a cancelled upload)
    └── BackendError           a backend (Meilisearch, Milvus, ...) failed
        ├── BackendUnavailable the backend could not be reached or refused
        └── BackendTimeout     the backend did not answer within its deadline

Third-party errors (meilisearch, pymilvus, sqlite3) are translated at the
boundary with ``raise X(...) from exc``. The mapping of these errors to gRPC
status codes lives in exactly one place: :func:`ltrr.grpc_status.status_for`.
"""

from __future__ import annotations


class LtrrError(Exception):
    """Base class of every error ltrr raises on purpose."""


class ConfigError(LtrrError):
    """A configuration value is invalid."""


class InvalidRequest(LtrrError):
    """The caller's request is invalid.

    ``field`` names the offending request field; the message states the rule.
    """

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class NotFound(LtrrError):
    """A referenced object does not exist (or has expired)."""


class Unauthenticated(LtrrError):
    """No valid bearer token came with the call (``UNAUTHENTICATED``)."""


class PermissionDenied(LtrrError):
    """The caller's token is valid but lacks the scope the RPC needs (``PERMISSION_DENIED``)."""


class Aborted(LtrrError):
    """An operation stopped before its end; the message says what of it was committed (``ABORTED``)."""


class BackendError(LtrrError):
    """A retrieval backend failed."""


class BackendUnavailable(BackendError):
    """The backend could not be reached or refused the call."""


class BackendTimeout(BackendError):
    """The backend did not answer within its deadline."""
