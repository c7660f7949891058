"""Bearer tokens and scopes (ltrr.auth): the pure checks the ingress runs first in every RPC."""

from __future__ import annotations

import os
import stat

import pytest

from ltrr.auth import (
    RPC_SCOPES,
    AuthConfig,
    Authenticator,
    TokenFile,
    bearer_token,
    ensure_token_file,
    parse_token_env,
    parse_token_lines,
)
from ltrr.client import read_token_file
from ltrr.errors import ConfigError, PermissionDenied, Unauthenticated

ADMIN = "admin-token-0123456789abcdef"
SEARCH = "search-token-0123456789abcdef"


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def auth_with(tmp_path, text: str, **kw) -> Authenticator:
    path = tmp_path / "tokens"
    path.write_text(text)
    cfg = AuthConfig(token_files=[TokenFile(path=str(path), scopes=["search"])], **kw)
    return Authenticator(cfg, environ={})


def md(token: str | None, scheme: str = "Bearer") -> list[tuple[str, str]]:
    return [("user-agent", "x")] + ([("authorization", f"{scheme} {token}")] if token is not None else [])


@pytest.mark.parametrize(
    ("token", "rpc", "outcome"),
    [
        (None, "Search", Unauthenticated),
        (None, "UpsertEntities", Unauthenticated),
        ("wrong-token-0123456789abcdef", "Search", Unauthenticated),
        ("wrong-token-0123456789abcdef", "Feedback", Unauthenticated),
        (SEARCH, "Search", None),
        (SEARCH, "Feedback", None),
        (SEARCH, "UpsertEntities", PermissionDenied),
        (SEARCH, "UpsertUsers", PermissionDenied),
        (ADMIN, "Search", None),
        (ADMIN, "Feedback", None),
        (ADMIN, "UpsertEntities", None),
        (ADMIN, "UpsertUsers", None),
    ],
)
def test_matrix(tmp_path, token, rpc, outcome):
    auth = auth_with(tmp_path, f"{SEARCH}\n{ADMIN} admin\n")
    if outcome is None:
        principal = auth.check(md(token), rpc)
        assert principal is not None and (RPC_SCOPES[rpc] in principal.scopes or "admin" in principal.scopes)
    else:
        with pytest.raises(outcome):
            auth.check(md(token), rpc)


@pytest.mark.parametrize(
    ("metadata", "message"),
    [
        ([], "authorization: missing `authorization: Bearer <token>` metadata"),
        ([("authorization", ADMIN)], "authorization: missing `authorization: Bearer <token>` metadata"),
        ([("authorization", f"Basic {ADMIN}")], "authorization: missing `authorization: Bearer <token>` metadata"),
        ([("authorization", "Bearer ")], "authorization: missing `authorization: Bearer <token>` metadata"),
        ([("authorization", f"Bearer {ADMIN}x")], "authorization: unknown token"),
        ([("authorization", f"Bearer {ADMIN[:-1]}")], "authorization: unknown token"),
    ],
)
def test_rejections_name_the_rule(tmp_path, metadata, message):
    auth = auth_with(tmp_path, f"{ADMIN} admin\n")
    with pytest.raises(Unauthenticated) as ei:
        auth.check(metadata, "Search")
    assert str(ei.value) == message


def test_scheme_is_case_insensitive_and_bytes_metadata_is_read(tmp_path):
    auth = auth_with(tmp_path, f"{ADMIN} admin\n")
    assert auth.check([("authorization", f"bearer {ADMIN}")], "Search") is not None
    assert bearer_token([("Authorization", f"Bearer {ADMIN}".encode())]) == ADMIN


def test_permission_denied_names_the_scope(tmp_path):
    auth = auth_with(tmp_path, f"{SEARCH}\n")
    with pytest.raises(PermissionDenied) as ei:
        auth.check(md(SEARCH), "UpsertEntities")
    assert str(ei.value) == "authorization: UpsertEntities needs a token with the `admin` scope"


def test_rotation_adds_and_revokes_tokens_when_the_file_changes(tmp_path):
    path = tmp_path / "tokens"
    path.write_text(f"{ADMIN}\n")
    clock = Clock()
    auth = Authenticator(
        AuthConfig(token_files=[TokenFile(path=str(path))], reload_interval_s=5.0), environ={}, clock=clock
    )
    new = "rotated-token-0123456789abcdef"
    path.write_text(f"{ADMIN}\n{new}\n")  # both valid while clients move over
    os.utime(path, (1, 1))
    clock.t = 1.0  # within the interval: not re-read yet
    with pytest.raises(Unauthenticated):
        auth.check(md(new), "Search")
    clock.t = 6.0
    assert auth.check(md(new), "Search") is not None
    assert auth.check(md(ADMIN), "Search") is not None
    path.write_text(f"{new}\n")  # the old one is withdrawn
    os.utime(path, (2, 2))
    clock.t = 12.0
    with pytest.raises(Unauthenticated):
        auth.check(md(ADMIN), "Search")
    assert auth.check(md(new), "UpsertEntities") is not None


def test_a_bad_edit_keeps_the_previous_tokens(tmp_path):
    path = tmp_path / "tokens"
    path.write_text(f"{ADMIN}\n")
    clock = Clock()
    auth = Authenticator(AuthConfig(token_files=[TokenFile(path=str(path))]), environ={}, clock=clock)
    path.write_text("short\n")
    os.utime(path, (3, 3))
    clock.t = 10.0
    assert auth.check(md(ADMIN), "Search") is not None


def test_env_tokens(tmp_path):
    env = {"LTRR_AUTH_TOKENS": f"search:{SEARCH}, admin:{ADMIN}"}
    auth = Authenticator(AuthConfig(token_files=[]), environ=env)
    assert auth.token_count == 2
    with pytest.raises(PermissionDenied):
        auth.check(md(SEARCH), "UpsertUsers")
    assert auth.check(md(ADMIN), "UpsertUsers") is not None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("short", "f:1: a token must have 16-512 characters, got 5"),
        (f"{ADMIN} root", "f:1: unknown scope root; valid: search, admin"),
        ("\n# comment\n" + "tok\x01en-0123456789abcdef", "f:3: a token must be printable ASCII without spaces"),
    ],
)
def test_token_file_errors(text, message):
    with pytest.raises(ConfigError) as ei:
        parse_token_lines(text, ("admin",), "f")
    assert str(ei.value) == message


def test_token_lines_and_env_parse():
    assert parse_token_lines(f"# c\n\n{ADMIN}  # the operator\n{SEARCH} search\n", ("admin",), "f") == [
        (ADMIN, frozenset({"admin"})),
        (SEARCH, frozenset({"search"})),
    ]
    with pytest.raises(ConfigError, match=r"\$X: entry 0 must be `scope:token`"):
        parse_token_env(ADMIN, "$X")


def test_no_tokens_is_a_start_up_error_naming_the_sources(tmp_path):
    with pytest.raises(ConfigError, match="auth: no tokens configured: write one to .*missing-file"):
        Authenticator(AuthConfig(token_files=[TokenFile(path=str(tmp_path / "missing-file"))]), environ={})
    with pytest.raises(ConfigError, match="required token file .* is missing"):
        Authenticator(AuthConfig(token_files=[TokenFile(path=str(tmp_path / "m"), required=True)]), environ={})


def test_disabled_lets_everything_through(tmp_path):
    auth = Authenticator(AuthConfig(enabled=False, token_files=[]), environ={})
    assert auth.check([], "UpsertEntities") is None


def test_unknown_rpc_is_a_programming_error(tmp_path):
    auth = auth_with(tmp_path, f"{ADMIN}\n")
    with pytest.raises(ValueError, match="`rpc` must be one of"):
        auth.check(md(ADMIN), "Check")


def test_ensure_token_file_creates_once_with_mode_0600(tmp_path):
    path, created = ensure_token_file(tmp_path / "secrets" / "ltrr-token")
    assert created
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    token = read_token_file(path)
    assert len(token) >= 40 and path.read_text() == token + "\n"
    path.chmod(0o644)
    again, created = ensure_token_file(path)
    assert not created and read_token_file(again) == token
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    auth = Authenticator(AuthConfig(token_files=[TokenFile(path=str(path))]), environ={})
    assert auth.check(md(token), "UpsertEntities") is not None
