"""Bearer-token authentication and scope checks for ``ltrr.v1.SearchService``.

Every RPC of the service needs ``authorization: Bearer <token>`` metadata; the
standard health service is exempt (load balancers and ``ltrr health`` probe it
without a secret). Ray 2.60's gRPC proxy takes no interceptors, so the ingress
calls :meth:`Authenticator.check` first in each method, with
``RayServegRPCContext.invocation_metadata()``.

**Scopes.** ``search`` allows Search and Feedback; ``admin`` allows every RPC,
including UpsertEntities and UpsertUsers (an operator's token can also search).

=====================  ==================  =====================
token                  search scope RPC    admin scope RPC
=====================  ==================  =====================
missing or malformed   UNAUTHENTICATED     UNAUTHENTICATED
unknown                UNAUTHENTICATED     UNAUTHENTICATED
``search``             OK                  PERMISSION_DENIED
``admin``              OK                  OK
=====================  ==================  =====================

**Where tokens come from.** Token files (``auth.token_files``) and one
environment variable (``auth.token_env``, ``LTRR_AUTH_TOKENS`` by default):

- a token file holds one token per line, optionally followed by its scopes
  (``<token> search,admin``); a line without scopes gets the file's ``scopes``.
  Blank lines and ``#`` comments are skipped;
- the variable holds ``scope:token`` pairs separated by commas or whitespace,
  e.g. ``admin:3q2-...,search:Zx9...``.

Several tokens are valid at once, so a key is rotated without downtime: add the
new token (a line), move the clients over, delete the old line. Files are
re-read when their modification time changes, at most every
``auth.reload_interval_s``; a token removed from its file stops working then.

**Comparison.** The presented token's SHA-256 is compared with
:func:`hmac.compare_digest` against the digest of *every* configured token,
without stopping at a match, so the time taken does not depend on how much of
a token was right, nor on which token matched. Only digests are kept in memory.

`make up` writes a local admin token to ``var/secrets/ltrr-token`` (mode 0600)
with :func:`ensure_token_file`; ``python -m ltrr.auth ensure PATH`` does the same.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ltrr import constants as C
from ltrr.errors import ConfigError, PermissionDenied, Unauthenticated

log = logging.getLogger("ltrr")

Scope = Literal["search", "admin"]
SCOPES: tuple[str, ...] = ("search", "admin")
#: Scope each RPC of ``ltrr.v1.SearchService`` needs.
RPC_SCOPES: dict[str, Scope] = {
    "Search": "search",
    "Feedback": "search",
    "UpsertEntities": "admin",
    "UpsertUsers": "admin",
}
#: A token shorter than this is refused at load: a guessable secret is a configuration error.
MIN_TOKEN_CHARS = 16
MAX_TOKEN_CHARS = 512
DEFAULT_TOKEN_FILE = "var/secrets/ltrr-token"


class TokenFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    path: str = Field(description="A file of tokens, one per line (`<token> [scope,scope]`); relative to LTRR_HOME.")
    scopes: list[Scope] = Field(
        default_factory=lambda: list[Scope](["admin"]),
        min_length=1,
        description="Scopes of the file's lines that name none.",
    )
    required: bool = Field(
        False, description="Fail at start-up if the file is missing (otherwise it is skipped until it appears)."
    )


class AuthConfig(BaseModel):
    """Who may call the service (:mod:`ltrr.auth`)."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(
        True, description="Require a bearer token on every SearchService RPC. Off only for local experiments."
    )
    token_files: list[TokenFile] = Field(
        default_factory=lambda: [TokenFile(path=DEFAULT_TOKEN_FILE)],
        description="Token files; `make up` writes an admin token to var/secrets/ltrr-token.",
    )
    token_env: str = Field(
        "LTRR_AUTH_TOKENS", description="Environment variable of `scope:token` pairs (k8s: from a Secret)."
    )
    reload_interval_s: float = Field(
        5.0, ge=0.0, le=3600.0, description="How often token files are checked for changes (rotation)."
    )

    @field_validator("token_env")
    @classmethod
    def _env_name(cls, v: str) -> str:
        if v and not v.replace("_", "").isalnum():
            raise ValueError(f"`token_env` must be an environment variable name, got {v!r}")
        return v


@dataclass(frozen=True)
class Principal:
    """Who called: the scopes of the matched token, and where it was configured (never the token)."""

    scopes: frozenset[str]
    source: str


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()


def _check_token(token: str, where: str) -> str:
    if not MIN_TOKEN_CHARS <= len(token) <= MAX_TOKEN_CHARS:
        raise ConfigError(
            f"{where}: a token must have {MIN_TOKEN_CHARS}-{MAX_TOKEN_CHARS} characters, got {len(token)}"
        )
    if not token.isascii() or not token.isprintable() or " " in token:
        raise ConfigError(f"{where}: a token must be printable ASCII without spaces")
    return token


def _scopes(text: str, where: str) -> frozenset[str]:
    names = frozenset(s.strip() for s in text.split(",") if s.strip())
    unknown = sorted(names - set(SCOPES))
    if unknown or not names:
        raise ConfigError(f"{where}: unknown scope {', '.join(unknown) or repr(text)}; valid: {', '.join(SCOPES)}")
    return names


def parse_token_lines(text: str, default_scopes: Iterable[str], where: str) -> list[tuple[str, frozenset[str]]]:
    """``(token, scopes)`` of each line of a token file (see the module docstring)."""
    out = []
    for i, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        token, _, rest = line.partition(" ")
        scopes = _scopes(rest, f"{where}:{i}") if rest.strip() else frozenset(default_scopes)
        out.append((_check_token(token, f"{where}:{i}"), scopes))
    return out


def parse_token_env(text: str, where: str) -> list[tuple[str, frozenset[str]]]:
    """``(token, scopes)`` of each ``scope:token`` pair of the environment variable."""
    out = []
    for j, pair in enumerate(text.replace(",", " ").split()):
        scope, sep, token = pair.partition(":")
        if not sep:
            raise ConfigError(f"{where}: entry {j} must be `scope:token`")
        out.append((_check_token(token, f"{where}[{j}]"), _scopes(scope, f"{where}[{j}]")))
    return out


def bearer_token(metadata: Iterable[tuple[str, str | bytes]]) -> str | None:
    """The token of the ``authorization: Bearer <token>`` metadata entry, or ``None``."""
    for key, value in metadata:
        if key.lower() != "authorization":
            continue
        text = value.decode("latin-1") if isinstance(value, bytes) else value
        scheme, _, token = text.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        return token.strip()
    return None


class Authenticator:
    """Checks bearer tokens against the configured ones; see the module docstring."""

    def __init__(
        self,
        config: AuthConfig,
        *,
        environ: dict[str, str] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self._environ = os.environ if environ is None else environ
        self._clock = clock
        self._paths = [(Path(C.resolve_path(f.path)), f) for f in config.token_files]
        self._mtimes: tuple[float | None, ...] = ()
        self._entries: tuple[tuple[bytes, Principal], ...] = ()
        self._checked_at = -float("inf")
        if not config.enabled:
            return
        for path, f in self._paths:
            if f.required and not path.is_file():
                raise ConfigError(f"auth.token_files: required token file {path} is missing")
        self._reload(force=True)
        if not self._entries:
            raise ConfigError(
                "auth: no tokens configured: write one to "
                + ", ".join(str(p) for p, _ in self._paths)
                + f" (`python -m ltrr.auth ensure {DEFAULT_TOKEN_FILE}`) or set ${config.token_env}"
                + "; or set auth.enabled: false for a local experiment"
            )

    @property
    def token_count(self) -> int:
        return len(self._entries)

    def _stat(self) -> tuple[float | None, ...]:
        out: list[float | None] = []
        for path, _ in self._paths:
            try:
                out.append(path.stat().st_mtime)
            except OSError:
                out.append(None)
        return tuple(out)

    def _reload(self, *, force: bool = False) -> None:
        now = self._clock()
        if not force and now - self._checked_at < self.config.reload_interval_s:
            return
        self._checked_at = now
        mtimes = self._stat()
        if not force and mtimes == self._mtimes:
            return
        entries: list[tuple[bytes, Principal]] = []
        for (path, f), mtime in zip(self._paths, mtimes, strict=True):
            if mtime is None:
                continue
            try:
                text = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                log.error("auth: cannot read token file %s (%s); its tokens are not accepted", path, exc)
                continue
            for token, scopes in parse_token_lines(text, f.scopes, str(path)):
                entries.append((_digest(token), Principal(scopes, str(path))))
        env = self._environ.get(self.config.token_env, "") if self.config.token_env else ""
        for token, scopes in parse_token_env(env, f"${self.config.token_env}"):
            entries.append((_digest(token), Principal(scopes, f"${self.config.token_env}")))
        if not entries and self._entries:
            log.error("auth: token sources now hold no tokens; every call is refused until one is added")
        self._entries, self._mtimes = tuple(entries), mtimes

    def reload(self) -> None:
        """Re-read the token sources now (rotation without waiting for the interval)."""
        try:
            self._reload(force=True)
        except ConfigError as exc:  # a bad edit keeps the previous tokens instead of locking everyone out
            log.error("auth: %s; keeping the previous %d tokens", exc, len(self._entries))

    def check(self, metadata: Iterable[tuple[str, str | bytes]], rpc: str) -> Principal | None:
        """The caller of ``rpc`` if its token is valid and has the RPC's scope.

        Raises :class:`~ltrr.errors.Unauthenticated` (no, malformed or unknown token) or
        :class:`~ltrr.errors.PermissionDenied` (a valid token without the scope). Returns ``None``
        when auth is disabled.
        """
        if not self.config.enabled:
            return None
        if rpc not in RPC_SCOPES:
            raise ValueError(f"`rpc` must be one of {', '.join(RPC_SCOPES)}, got {rpc!r}")
        try:
            self._reload()
        except ConfigError as exc:
            log.error("auth: %s; keeping the previous %d tokens", exc, len(self._entries))
        token = bearer_token(metadata)
        if token is None:
            raise Unauthenticated("authorization: missing `authorization: Bearer <token>` metadata")
        presented = _digest(token)
        match: Principal | None = None
        for digest, principal in self._entries:  # every entry, no early exit
            if hmac.compare_digest(presented, digest):
                match = principal
        if match is None:
            raise Unauthenticated("authorization: unknown token")
        needed = RPC_SCOPES[rpc]
        if needed not in match.scopes and "admin" not in match.scopes:
            raise PermissionDenied(f"authorization: {rpc} needs a token with the `{needed}` scope")
        return match


def ensure_token_file(path: str | os.PathLike[str], scopes: str = "admin") -> tuple[Path, bool]:
    """Write a new random token to ``path`` (mode 0600, its directory 0700) unless it exists.

    Returns ``(path, created)``. An existing file is left alone, so re-running `make up` keeps the token
    that clients already use; its mode is tightened to 0600 if it was looser.
    """
    p = Path(C.resolve_path(os.fspath(path)))
    p.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    if p.exists():
        if p.stat().st_mode & 0o077:
            p.chmod(0o600)
        return p, False
    token = secrets.token_urlsafe(32)
    fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(f"{token} {scopes}\n" if scopes != "admin" else f"{token}\n")
    return p, True


def main(argv: list[str] | None = None) -> int:
    """``python -m ltrr.auth ensure PATH [SCOPES]``: create a token file if it is missing."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) not in (2, 3) or args[0] != "ensure":
        print("usage: python -m ltrr.auth ensure PATH [search|admin]", file=sys.stderr)
        return 2
    path, created = ensure_token_file(args[1], args[2] if len(args) == 3 else "admin")
    print(f"{'created' if created else 'kept'} {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
