"""Which event log a process opens (ltrr.event_store), DSN handling, and the test server's set-up."""

from __future__ import annotations

import pytest

from ltrr import pgserver
from ltrr.config import AppConfig
from ltrr.errors import BackendUnavailable, ConfigError
from ltrr.event_store import DSN_ENV, events_dsn, open_event_log
from ltrr.eventlog import SQLiteEventLog
from ltrr.eventlog_pg import PostgresEventLog, redact_dsn
from tests.fixtures import postgres as pg_fixtures
from tests.unit.test_eventlog import search


@pytest.fixture(autouse=True)
def no_dsn_in_the_environment(monkeypatch):
    monkeypatch.delenv(DSN_ENV, raising=False)


def app(tmp_path, **kw) -> AppConfig:
    return AppConfig.model_validate({"events_path": str(tmp_path / "events.sqlite"), **kw})


def test_without_a_dsn_the_log_is_the_sqlite_file(tmp_path):
    lg = open_event_log(app(tmp_path), feedback_window_s=5.0)
    assert isinstance(lg, SQLiteEventLog) and lg.path == tmp_path / "events.sqlite" and lg.feedback_window_s == 5.0
    lg.close()


def test_a_configured_dsn_opens_postgres_and_the_environment_wins(tmp_path, pg_server, pg_dsn, monkeypatch):
    lg = open_event_log(app(tmp_path, events_dsn=pg_dsn), reward_window_s=7.0)
    assert isinstance(lg, PostgresEventLog) and lg.reward_window_s == 7.0
    lg.close()
    other = pg_server.create_database("from_env")
    monkeypatch.setenv(DSN_ENV, other)
    cfg = app(tmp_path, events_dsn=pg_dsn)
    assert events_dsn(cfg) == other
    lg = open_event_log(cfg)
    lg.record_search(search())
    lg.close()
    for dsn, n in ((other, 1), (pg_dsn, 0)):  # written where the environment said
        lg = PostgresEventLog(dsn)
        assert lg.counts()["searches"] == n
        lg.close()
    pg_server.drop_database("from_env")
    monkeypatch.setenv(DSN_ENV, "  ")  # set but empty: the config's value stands
    assert events_dsn(cfg) == pg_dsn
    assert events_dsn(app(tmp_path)) == ""


@pytest.mark.parametrize(
    ("dsn", "shown"),
    [
        # libpq's parser returns the keys in its own order
        ("host=db.internal user=ltrr password=s3cret dbname=events",
         "user=ltrr password=*** dbname=events host=db.internal"),  # fmt: skip
        ("postgresql://ltrr:s3cret@db.internal:5433/events?sslmode=require",
         "user=ltrr password=*** dbname=events host=db.internal port=5433 sslmode=require"),  # fmt: skip
        ("host=/tmp/x dbname=events", "dbname=events host=/tmp/x"),
        ("password=s3cret =oops", "<a DSN that does not parse>"),
    ],
)
def test_the_password_is_never_shown(dsn, shown):
    assert redact_dsn(dsn) == shown


@pytest.mark.parametrize(
    ("dsn", "message"),
    [
        ("", "`dsn` must be a PostgreSQL connection string (key=value or postgresql:// URI), got ''"),
        (None, "`dsn` must be a PostgreSQL connection string (key=value or postgresql:// URI), got None"),
        (
            "password=s3cret =oops",
            "`dsn` must be a PostgreSQL connection string (key=value or postgresql:// URI), "
            "got <a DSN that does not parse>",
        ),
    ],
)
def test_dsn_validation(dsn, message):
    with pytest.raises(ValueError) as ei:
        PostgresEventLog(dsn)
    assert str(ei.value) == message


def test_a_bad_configured_dsn_is_a_config_error_naming_its_source(tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match=r"^events_dsn: `dsn` must be a PostgreSQL connection string") as ei:
        open_event_log(app(tmp_path, events_dsn="password=s3cret =oops"))
    assert "s3cret" not in str(ei.value)
    monkeypatch.setenv(DSN_ENV, "password=s3cret =oops")
    with pytest.raises(ConfigError, match=rf"^{DSN_ENV}: `dsn` must be"):
        open_event_log(app(tmp_path))


def test_an_unreachable_server_is_backend_unavailable_without_the_password(tmp_path):
    with pytest.raises(BackendUnavailable) as ei:
        PostgresEventLog(f"host={tmp_path} port=1 user=ltrr password=s3cret dbname=events")
    assert str(ei.value).startswith("event log write failed: connection")
    assert "s3cret" not in str(ei.value)


def test_a_missing_postgresql_fails_the_fixture_and_says_to_run_make_pg(tmp_path, monkeypatch):
    monkeypatch.setattr(pgserver, "PG_BIN_DIR", tmp_path / "absent")
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ConfigError) as ei:
        pgserver.find_bin_dir()
    assert str(ei.value) == (
        f"PostgreSQL is not installed: no initdb under {tmp_path / 'absent'} or on PATH; run `make pg`"
    )
    with pytest.raises(pytest.fail.Exception, match="run `make pg`"):  # a failure, not a skip
        pg_fixtures._server()


def test_the_server_runs_as_another_user_when_root(monkeypatch):
    monkeypatch.setattr(pgserver.os, "geteuid", lambda: 0)
    assert pgserver.server_user() in ("postgres", "nobody")
    monkeypatch.setattr(pgserver.os, "geteuid", lambda: 1000)
    assert pgserver.server_user() is None


def test_the_test_server_listens_on_its_socket_only(pg_server):
    import psycopg

    with psycopg.connect(pg_server.dsn()) as conn:
        assert conn.execute("SHOW listen_addresses").fetchone() == ("",)
        assert conn.execute("SHOW unix_socket_directories").fetchone() == (str(pg_server.socket_dir),)
        assert conn.execute("SHOW server_version_num").fetchone()[0].startswith("15")
