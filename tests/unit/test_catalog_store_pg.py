"""PostgreSQL-only behaviour of the catalog store (PgCatalogStore), on a real server (tests/fixtures/postgres.py).

The shared behaviour, concurrent writers included, runs on both backends in test_catalog_store.py; this file
checks what only a server has: a writer waits for the seq advisory lock and numbers after what committed
before it, the schema (idempotent, beside the event log's tables, a newer one refused), errors and reconnects,
the copy of a SQLite catalog (``ltrr migrate-catalog``), and open_catalog choosing the backend.
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest

from ltrr.catalog.store import CatalogBase, CatalogStore, open_catalog
from ltrr.catalog.store_pg import ADVISORY_LOCKS, TABLES, PgCatalogStore, copy_sqlite_catalog
from ltrr.config import AppConfig
from ltrr.errors import BackendUnavailable, ConfigError
from ltrr.event_store import DSN_ENV
from ltrr.eventlog_pg import PostgresEventLog
from ltrr.pgserver import PgServer
from ltrr.query_understanding import Vocabulary
from ltrr.types import Entity, Relation, UserProfile


@pytest.fixture(autouse=True)
def no_dsn_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(DSN_ENV, raising=False)


def _ent(i: int, **kw: Any) -> Entity:
    return Entity(f"artist:{i}", "artist", f"Title {i}", **kw)


# -- seqs under the advisory lock ---------------------------------------------------------------------
def test_a_writer_waits_for_the_seq_lock_and_numbers_after_the_commit_before_it(pg_dsn: str) -> None:
    """Another session holds the lock with an uncommitted row at seq 1 (a writer between its insert and its
    commit). A second writer must wait, and then take seq 2: reading MAX(seq) without the lock it would see
    no row, take seq 1 as well, and a reader past its commit would never see the first writer's row. The
    database defaults to REPEATABLE READ, whose snapshot (taken before the wait) would hide that row too: the
    store's sessions set READ COMMITTED."""
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        dbname = psycopg.conninfo.conninfo_to_dict(pg_dsn)["dbname"]
        conn.execute(f"ALTER DATABASE {dbname} SET default_transaction_isolation = 'repeatable read'")
    store = PgCatalogStore(pg_dsn)
    other = psycopg.connect(pg_dsn)
    other.execute("SELECT pg_advisory_xact_lock(%s, %s)", ADVISORY_LOCKS["seq"])
    other.execute(
        "INSERT INTO catalog_entities(entity_id, entity_type, doc, hash, seq) VALUES (%s, 'artist', %s, %s, 1)",
        ("artist:0", '{"entity_id": "artist:0", "entity_type": "artist", "title": "Title 0"}', "h"),
    )
    done: list[int] = []
    writer = threading.Thread(target=lambda: done.append(store.upsert_entities([_ent(1)])))
    writer.start()
    time.sleep(0.5)
    # The writer waits; lookups, and another replica's writes of meta and users, do not wait behind the lock.
    assert writer.is_alive() and done == []
    assert (store.max_seq(), store.count(), store.get("artist:0")) == (0, 0, None)
    replica = PgCatalogStore(pg_dsn)
    replica.set_watermark("meili", 5)
    assert replica.upsert_users([UserProfile("u")]) == 1 and store.watermark("meili") == 5
    replica.close()
    other.commit()  # the first writer commits and releases the lock
    writer.join(10)
    assert done == [1]
    assert [(seq, [e.entity_id for e in b]) for seq, b in store.entities_since(0)] == [(2, ["artist:0", "artist:1"])]
    other.close()
    store.close()


def test_a_writer_behind_a_held_lock_fails_after_its_busy_timeout_having_written_nothing(pg_dsn: str) -> None:
    store = PgCatalogStore(pg_dsn, busy_timeout_s=0.1)
    other = psycopg.connect(pg_dsn)
    other.execute("SELECT pg_advisory_xact_lock(%s, %s)", ADVISORY_LOCKS["seq"])
    try:
        with pytest.raises(BackendUnavailable, match="^catalog write failed: canceling statement due to lock"):
            store.upsert_relations([Relation("artist:1", "artist:2", "similar", 1.0)])
    finally:
        other.close()
    assert store.max_seq() == 0 and list(store.relations_since(0)) == []
    assert store.upsert_relations([Relation("artist:1", "artist:2", "similar", 1.0)]) == 1
    store.close()


# -- schema, errors, reconnects ---------------------------------------------------------------------------
def test_the_schema_is_made_once_beside_the_event_log_and_a_newer_one_is_refused(pg_dsn: str) -> None:
    errors: list[BaseException] = []
    opened: list[CatalogBase] = []

    def open_one() -> None:
        try:
            opened.append(PgCatalogStore(pg_dsn))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(4)]  # processes opening an empty database at once
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and len(opened) == 4
    opened[0].upsert_entities([_ent(1)])
    events = PostgresEventLog(pg_dsn)  # the event log in the same database
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        tables = {r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
        assert conn.execute("SELECT version FROM catalog_schema_version").fetchall() == [(1,)]
    catalog = {t for t in tables if t.startswith("catalog_")}
    assert catalog == {pg for pg, _ in TABLES.values()} | {"catalog_schema_version"}
    assert {"searches", "feedback", "schema_version"} <= tables - catalog
    assert events.counts()["searches"] == 0 and opened[3].count() == 1
    events.close()
    for store in opened:
        store.close()
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("UPDATE catalog_schema_version SET version = 2")
    with pytest.raises(ValueError, match="has catalog schema v2; this code reads v1"):
        PgCatalogStore(pg_dsn)


def test_an_unreachable_server_is_backend_unavailable_without_the_password(tmp_path: Path) -> None:
    with pytest.raises(BackendUnavailable) as ei:
        PgCatalogStore(f"host={tmp_path} port=1 user=ltrr password=s3cret dbname=catalog")
    assert str(ei.value).startswith("catalog write failed: connection") and "s3cret" not in str(ei.value)
    with pytest.raises(ValueError, match="must be a PostgreSQL connection string"):
        PgCatalogStore("password=s3cret =oops")


def test_the_store_reconnects_after_a_restart(own_pg_server: PgServer) -> None:
    dsn = own_pg_server.create_database("catalog")
    store = PgCatalogStore(dsn)
    store.upsert_entities([_ent(1)])
    assert store.get("artist:1") == _ent(1)
    own_pg_server.restart()  # every session is cut while the store is idle
    assert store.get("artist:1") == _ent(1) and store.upsert_entities([_ent(2)]) == 1 and store.max_seq() == 2
    store.close()
    with pytest.raises(BackendUnavailable, match="^catalog read failed: it is closed"):
        store.count()


# -- the copy of a SQLite catalog -------------------------------------------------------------------------
def populated_sqlite(path: Path) -> CatalogStore:
    """A SQLite catalog with every kind of row: an entity moved to a later seq, relations, profiles, the
    profile learner's state and cursor, watermarks and other meta."""
    store = CatalogStore(path)
    store.upsert_entities([_ent(i, genres=("rock",), tags=("shoegaze", "noise")) for i in range(1, 40)])
    store.upsert_entities([Entity("track:é", "track", "Tïtle ♥", subtitle="Title 1", attrs={"artist": "artist:1"})])
    store.upsert_relations([Relation("artist:1", f"artist:{i}", "similar", 1.0 / i) for i in range(2, 12)])
    store.upsert_entities([dataclasses.replace(_ent(3), popularity=9.5)])  # artist:3 moves past the relations
    store.upsert_users([UserProfile("lfm:1", (("artist:1", 1.0),), (("rock", 0.5),)), UserProfile("lfm:2")])

    def update(uid: str, profile: UserProfile | None, state: dict[str, Any] | None) -> Any:
        return UserProfile(uid, (("artist:2", 1.0),)), {"events": 3, "written": "x"}

    assert store.update_users(["lfm:2"], update, cursor_key="cursor:profiles", expect=0, to=17)
    store.set_watermark("meili", store.max_seq() - 1)
    store.set_watermark("milvus", 12)
    store.set_meta("catalog:held_out", "v2")
    return store


def view(store: CatalogBase) -> dict[str, Any]:
    """Everything a reader of the catalog can see."""
    users = sorted(store.users(), key=lambda u: u.user_id)
    return {
        "batches": [(seq, batch) for seq, batch in store.entities_since(0, batch_size=7)],
        "relations": list(store.relations_since(0)),
        "relations since 45": list(store.relations_since(45)),
        "users": users,
        "states": {u.user_id: store.user_state(u.user_id) for u in users},
        "meta": {k: store.get_meta(k) for k in ("cursor:profiles", "catalog:held_out", "watermark:milvus")},
        "watermarks": (store.watermark("meili"), store.watermark("milvus"), store.watermark("none")),
        "counts": (store.max_seq(), store.count(), store.count("track"), store.count_since(12)),
    }


def test_a_sqlite_catalog_is_copied_with_its_seqs_and_watermarks(tmp_path: Path, pg_dsn: str) -> None:
    src = populated_sqlite(tmp_path / "catalog.sqlite")
    said: list[str] = []
    copied = copy_sqlite_catalog(tmp_path / "catalog.sqlite", pg_dsn, progress=said.append)
    assert copied == {"entities": 40, "relations": 10, "users": 2, "user_state": 1, "meta": 4}
    assert said[-1] == "verified: the row counts of all 5 tables and the largest seqs are equal"
    dst = PgCatalogStore(pg_dsn)
    expected = view(src)
    assert expected["counts"] == (51, 40, 1, 29) and expected["watermarks"] == (50, 12, 0)
    assert view(dst) == expected
    assert Vocabulary.from_store(dst) == Vocabulary.from_store(src)  # the ingress's vocabulary, from either
    # Writes go on from the copied seqs; the copied hashes detect unchanged entities.
    assert dst.upsert_entities([_ent(1, genres=("rock",), tags=("shoegaze", "noise")), _ent(99)]) == 1
    assert dst.max_seq() == 52 and [s for s, _ in dst.entities_since(51)] == [52]
    dst.close()
    src.close()


def test_ltrr_migrate_catalog_refuses_a_held_target_unless_forced(
    tmp_path: Path, pg_dsn: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from ltrr.cli import main as ltrr_main

    path = tmp_path / "catalog.sqlite"
    populated_sqlite(path).close()
    monkeypatch.setenv(DSN_ENV, pg_dsn)  # the DSN from the environment, the file from --sqlite
    assert ltrr_main(["migrate-catalog", "--sqlite", str(path)]) == 0
    assert "verified" in capsys.readouterr().err
    assert ltrr_main(["migrate-catalog", "--sqlite", str(path)]) == 2
    assert "already has a catalog (entities 40, relations 10, users 2, user_state 1, meta 4 rows)" in (
        capsys.readouterr().err
    )
    other = CatalogStore(tmp_path / "other.sqlite")
    other.upsert_entities([_ent(7)])
    other.close()
    monkeypatch.delenv(DSN_ENV)
    config = tmp_path / "app.yaml"  # no --sqlite, no --dsn: both from the config
    config.write_text(f"catalog_path: {tmp_path / 'other.sqlite'}\nevents_dsn: '{pg_dsn}'\n")
    assert ltrr_main(["migrate-catalog", "--config", str(config), "--force"]) == 0
    assert "emptied the target (57 rows)" in capsys.readouterr().err
    dst = PgCatalogStore(pg_dsn)
    assert (dst.count(), dst.max_seq(), dst.get("artist:7"), list(dst.users())) == (1, 1, _ent(7), [])
    dst.close()


def test_the_migration_refuses_a_missing_file_another_file_and_an_unreachable_server(
    tmp_path: Path, pg_dsn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from ltrr.cli import main as ltrr_main

    assert ltrr_main(["migrate-catalog", "--sqlite", str(tmp_path / "nope.sqlite"), "--dsn", pg_dsn]) == 2
    assert "nope.sqlite': no such file" in capsys.readouterr().err
    events = tmp_path / "events.sqlite"
    from ltrr.eventlog import SQLiteEventLog

    SQLiteEventLog(events).close()  # the event log is not a catalog
    assert ltrr_main(["migrate-catalog", "--sqlite", str(events), "--dsn", pg_dsn]) == 2
    assert "is not a catalog store (no table entities, relations, users, user_state, meta)" in capsys.readouterr().err
    CatalogStore(tmp_path / "c.sqlite").close()
    unreachable = f"host={tmp_path} port=1 user=ltrr password=s3cret dbname=catalog"
    assert ltrr_main(["migrate-catalog", "--sqlite", str(tmp_path / "c.sqlite"), "--dsn", unreachable]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: catalog write failed: connection") and "s3cret" not in err


# -- which catalog a process opens ------------------------------------------------------------------------
def test_ltrr_users_and_the_profile_learner_use_the_postgres_catalog_of_the_config(
    tmp_path: Path, pg_dsn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from ltrr.cli import main as ltrr_main
    from ltrr.profiles import ProfileLearner
    from tests.unit.test_eventlog import fb, search

    store = PgCatalogStore(pg_dsn)
    store.upsert_entities([Entity("artist:a", "artist", "A"), Entity("artist:b", "artist", "B")])
    config = tmp_path / "app.yaml"  # a DSN and a catalog_path whose file does not exist: the DSN wins
    config.write_text(f"catalog_path: {tmp_path / 'none.sqlite'}\nevents_dsn: '{pg_dsn}'\n")
    lines = tmp_path / "users.jsonl"
    lines.write_text('{"user_id": "u1", "top_artists": [["artist:b", 1]]}\n')
    assert ltrr_main(["users", "import", str(lines), "--config", str(config)]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == f"imported 1 profiles (1 new or changed) into {store.location}"
    assert store.user("u1") == UserProfile("u1", (("artist:b", 1.0),))
    assert not (tmp_path / "none.sqlite").exists()
    events = PostgresEventLog(pg_dsn)
    events.record_search(search())  # by u1
    events.record_feedback(fb())  # a click on artist:a
    learner = ProfileLearner(events, store)
    assert learner.step() == 1 and learner.cursor() == 1 and learner.step() == 0
    profile = store.user("u1")
    assert profile is not None and {a for a, _ in profile.top_artists} == {"artist:a", "artist:b"}
    assert store.user_state("u1") is not None
    assert ltrr_main(["users", "show", "u1", "--config", str(config)]) == 0
    assert '"artist:a"' in capsys.readouterr().out
    events.close()
    store.close()


def test_ltrr_catalog_summary_counts_the_catalog_of_the_config_or_of_path(
    tmp_path: Path, pg_dsn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from ltrr.cli import main as ltrr_main
    from ltrr.types import ENTITY_TYPES

    store = PgCatalogStore(pg_dsn)
    store.upsert_entities([_ent(1), _ent(2), Entity("track:t", "track", "T")])
    other = CatalogStore(tmp_path / "other.sqlite")
    other.upsert_entities([_ent(9)])
    other.close()
    config = tmp_path / "app.yaml"  # a DSN: PostgreSQL's catalog, not the catalog_path's file
    config.write_text(f"catalog_path: {tmp_path / 'none.sqlite'}\nevents_dsn: '{pg_dsn}'\n")
    none = dict.fromkeys(ENTITY_TYPES, 0)
    assert ltrr_main(["catalog", "summary", "--config", str(config)]) == 0
    assert json.loads(capsys.readouterr().out) == {**none, "artist": 2, "track": 1, "total": 3}
    assert not (tmp_path / "none.sqlite").exists()
    summary = ["catalog", "summary", "--config", str(config), "--path", str(tmp_path / "other.sqlite")]
    assert ltrr_main(summary) == 0  # --path: that file, whatever the config
    assert json.loads(capsys.readouterr().out) == {**none, "artist": 1, "total": 1}
    assert ltrr_main(["catalog", "synthetic", "--n", "8", "--config", str(config)]) == 2
    assert capsys.readouterr().err == (
        f"error: synthetic writes a SQLite file, and the catalog is PostgreSQL's ({config}'s events_dsn): "
        "pass --path FILE\n"
    )
    assert store.count() == 3 and not (tmp_path / "none.sqlite").exists()
    store.close()
    config.write_text(f"catalog_path: {tmp_path / 'other.sqlite'}\n")  # no DSN: the catalog_path's file
    assert ltrr_main(["catalog", "summary", "--config", str(config)]) == 0
    assert json.loads(capsys.readouterr().out)["total"] == 1


def app(tmp_path: Path, **kw: Any) -> AppConfig:
    return AppConfig.model_validate({"catalog_path": str(tmp_path / "var" / "catalog.sqlite"), **kw})


def test_open_catalog_is_the_file_without_a_dsn_and_postgres_with_one(
    tmp_path: Path, pg_server: PgServer, pg_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = open_catalog(app(tmp_path))
    assert isinstance(store, CatalogStore) and store.path == tmp_path / "var" / "catalog.sqlite"
    store.close()
    store = open_catalog(app(tmp_path, events_dsn=pg_dsn))
    assert isinstance(store, PgCatalogStore) and "password" not in store.location
    store.upsert_entities([_ent(1)])
    store.close()
    other = pg_server.create_database("catalog_from_env")
    monkeypatch.setenv(DSN_ENV, other)  # the environment wins over the config
    store = open_catalog(app(tmp_path, events_dsn=pg_dsn))
    assert isinstance(store, PgCatalogStore) and store.count() == 0
    store.close()
    pg_server.drop_database("catalog_from_env")
    monkeypatch.setenv(DSN_ENV, "password=s3cret =oops")
    with pytest.raises(ConfigError, match=rf"^{DSN_ENV}: `dsn` must be a PostgreSQL connection string") as ei:
        open_catalog(app(tmp_path))
    assert "s3cret" not in str(ei.value)
    monkeypatch.delenv(DSN_ENV)
    with pytest.raises(ConfigError, match="^events_dsn: `dsn` must be"):
        open_catalog(app(tmp_path, events_dsn="password=s3cret =oops"))
    again = PgCatalogStore(pg_dsn)  # what the config's DSN opened holds the write
    assert again.get("artist:1") == _ent(1)
    again.close()


def test_vocabulary_rows_read_the_same_fields_on_both_backends(tmp_path: Path, pg_dsn: str) -> None:
    """What query understanding's vocabulary counts, read in the database on either backend: every entity's
    type, title, genres and tags, as its ``Entity`` holds them (empty lists where it has none)."""
    entities = [
        _ent(1, genres=("rock", "indie"), tags=("shoegaze",)),
        Entity("track:2", "track", "Só Danço Samba"),
        _ent(3, tags=("80s", "synthpop", "80s")),
    ]
    sqlite, pg = CatalogStore(tmp_path / "catalog.sqlite"), PgCatalogStore(pg_dsn)
    try:
        for store in (sqlite, pg):
            store.upsert_entities(entities)
        expected = sorted((e.entity_type, e.title, list(e.genres), list(e.tags)) for e in entities)
        assert sorted(sqlite.vocabulary_rows()) == expected
        assert sorted(pg.vocabulary_rows()) == expected
        assert Vocabulary.from_store(pg) == Vocabulary.from_store(sqlite) == Vocabulary.from_entities(entities)
    finally:
        sqlite.close()
        pg.close()
