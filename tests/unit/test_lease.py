"""Cluster-wide leases (ltrr.lease): an advisory lock on a real PostgreSQL server, a flock across processes."""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import re
from pathlib import Path
from typing import Any

import psycopg
import pytest

from ltrr.config import AppConfig
from ltrr.errors import Aborted, BackendUnavailable
from ltrr.lease import LEASE_CLASS, FileLease, LeaseGate, PgLease, lease_for, lease_key, waiting_message

GUARD_S = 30.0  # a bound on waits for child processes, never reached when the test passes


def terminate(dsn: str, lease: PgLease) -> None:
    """Cut ``lease``'s session from a third connection, as the server does when its client vanished;
    returns once the backend is gone (``pg_terminate_backend``'s timeout: it waits for the exit)."""
    pid = lease.backend_pid
    assert pid is not None
    with psycopg.connect(dsn, autocommit=True) as admin:
        assert admin.execute("SELECT pg_terminate_backend(%s, 10000)", (pid,)).fetchone() == (True,)


def holders(dsn: str, name: str) -> list[int]:
    """The server pids holding lease ``name``'s advisory lock, read from ``pg_locks``."""
    cls, key = lease_key(name)
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND classid::bigint = %s "
            "AND objid::bigint = %s AND objsubid = 2",
            (cls & 0xFFFFFFFF, key & 0xFFFFFFFF),
        ).fetchall()
    return [r[0] for r in rows]


# -- names and keys -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["", "Learner", "1st", "a b", "x" * 64, "trainer/../x"])
def test_invalid_names_are_refused(tmp_path: Path, name: str) -> None:
    msg = f"`name` must be 1 to 63 characters of a-z, 0-9, '_' or '-', starting with a letter, got {name!r}"
    for make in (lambda: FileLease(tmp_path / "x.lease", name), lambda: PgLease("dbname=x", name)):
        with pytest.raises(ValueError, match=re.escape(msg)):
            make()


@pytest.mark.parametrize("dsn", ["", "   ", "not a dsn = = ="])
def test_invalid_dsn_is_refused(dsn: str) -> None:
    with pytest.raises(ValueError, match=r"^`dsn` must be a PostgreSQL connection string"):
        PgLease(dsn, "learner")


def test_keys_are_stable_and_distinct() -> None:
    # blake2b(b"learner", digest_size=4) = 0x7bc1... read as a signed int4: the same in every process
    cls, key = lease_key("learner")
    assert cls == LEASE_CLASS == int.from_bytes(b"leas", "big")
    assert lease_key("learner") == (cls, key) and -(2**31) <= key < 2**31
    assert lease_key("trainer") != lease_key("learner")


def test_lease_for_picks_the_backend(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LTRR_EVENTS_DSN", raising=False)
    app = AppConfig.model_validate({"events_path": str(tmp_path / "events.sqlite")})
    lease = lease_for(app, "learner")
    assert isinstance(lease, FileLease) and lease.path == tmp_path / "events.sqlite.learner.lease"
    app = AppConfig.model_validate({"events_path": str(tmp_path / "events.sqlite"), "events_dsn": "dbname=a"})
    lease = lease_for(app, "trainer")
    assert isinstance(lease, PgLease) and lease.name == "trainer" and "dbname=a" in lease.dsn
    monkeypatch.setenv("LTRR_EVENTS_DSN", "dbname=b password=secret")
    lease = lease_for(app, "trainer")
    assert isinstance(lease, PgLease) and "dbname=b" in lease.dsn and "secret" not in repr(lease)


# -- PostgreSQL ---------------------------------------------------------------------------------------


def test_only_one_pg_lease_acquires(pg_dsn: str) -> None:
    a, b, other = PgLease(pg_dsn, "learner"), PgLease(pg_dsn, "learner"), PgLease(pg_dsn, "trainer")
    try:
        assert a.acquire() is True
        assert a.acquire() is True, "acquiring a held lease again is a no-op"
        assert b.acquire() is False and b.acquire() is False
        assert a.held is True and b.held is False
        assert other.acquire() is True, "another name is another lock"
        assert holders(pg_dsn, "learner") == [a.backend_pid], "held once, not stacked by the second acquire"
        a.release()
        assert a.held is False and holders(pg_dsn, "learner") == []
        assert b.acquire() is True and b.held is True
        assert a.acquire() is False
    finally:
        for lease in (a, b, other):
            lease.release()


def test_a_killed_holder_loses_the_lease_and_the_other_takes_it(pg_dsn: str) -> None:
    first, second = PgLease(pg_dsn, "learner"), PgLease(pg_dsn, "learner")
    try:
        assert first.acquire() and not second.acquire()
        terminate(pg_dsn, first)  # the holder's session is cut: its pod died, or the network
        assert second.acquire() is True, "the lock went with the session"
        assert first.held is False, "held asks the server, and the session is gone"
        assert first.acquire() is False, "a new session of the first does not get it back while the second holds it"
        assert holders(pg_dsn, "learner") == [second.backend_pid]
        second.release()
        assert first.acquire() is True
    finally:
        first.release()
        second.release()


def test_blocking_acquire_and_the_context_manager(pg_dsn: str) -> None:
    with PgLease(pg_dsn, "learner") as lease:
        assert lease.held
        assert not PgLease(pg_dsn, "learner").acquire()
    assert holders(pg_dsn, "learner") == [], "leaving the block released it"


def test_the_session_bounds_how_long_a_dead_holder_keeps_the_lease(pg_dsn: str) -> None:
    lease = PgLease(pg_dsn, "learner")
    try:
        assert lease.acquire()
        conn = lease._conn
        assert conn is not None
        # no idle timeout may cut a live holder's session (module docstring)
        assert conn.execute("SHOW idle_session_timeout").fetchone() == ("0",)
        assert conn.execute("SHOW idle_in_transaction_session_timeout").fetchone() == ("0",)
        # TCP keepalive on the client's socket; the server's settings read 0 on this Unix socket
        params = conn.info.get_parameters()
        assert (params["keepalives"], params["keepalives_idle"], params["keepalives_interval"]) == ("1", "10", "5")
        assert (params["keepalives_count"], params["tcp_user_timeout"]) == ("3", "20000")
        assert params["application_name"] == "ltrr-lease-learner"
    finally:
        lease.release()


def test_a_dsn_keepalive_wins_over_the_default(pg_dsn: str) -> None:
    lease = PgLease(pg_dsn + " keepalives_idle=3", "learner")
    try:
        assert lease.acquire()
        assert lease._conn is not None and lease._conn.info.get_parameters()["keepalives_idle"] == "3"
    finally:
        lease.release()


def test_an_unreachable_server_is_backend_unavailable(tmp_path: Path) -> None:
    lease = PgLease(f"host={tmp_path} port=1 dbname=x user=x password=hunter2 connect_timeout=2", "learner")
    with pytest.raises(BackendUnavailable, match=r"^lease 'learner' on .*password=\*\*\*") as info:
        lease.acquire()
    assert "hunter2" not in str(info.value)
    assert lease.held is False


def test_fenced_writes_commit_only_while_the_lease_is_held(pg_dsn: str) -> None:
    with psycopg.connect(pg_dsn, autocommit=True) as admin:
        admin.execute("CREATE TABLE t (x INT)")
    first, second = PgLease(pg_dsn, "learner"), PgLease(pg_dsn, "learner")
    try:
        with pytest.raises(Aborted, match=r"^the learner lease is not held: nothing was written$"):
            first.fenced(lambda cur: cur.execute("INSERT INTO t VALUES (0)"))
        assert first.acquire()
        first.fenced(lambda cur: cur.execute("INSERT INTO t VALUES (1)"))
        terminate(pg_dsn, first)
        assert second.acquire()
        with pytest.raises(Aborted, match=r"^the learner lease was lost while writing"):
            first.fenced(lambda cur: cur.execute("INSERT INTO t VALUES (2)"))
        with pytest.raises(Aborted, match=r"^the learner lease is not held: nothing was written$"):
            first.fenced(lambda cur: cur.execute("INSERT INTO t VALUES (3)"))
        with pytest.raises(BackendUnavailable, match=r"^write under the learner lease failed: .*no_such_table"):
            second.fenced(lambda cur: cur.execute("INSERT INTO no_such_table VALUES (4)"))
        assert second.held, "a failed statement rolls back its transaction, and the lease stays"
        with psycopg.connect(pg_dsn, autocommit=True) as admin:
            assert admin.execute("SELECT x FROM t").fetchall() == [(1,)]
    finally:
        first.release()
        second.release()


# -- flock ---------------------------------------------------------------------------------------------


def _hold(path: str, locked: Any, done: Any) -> None:
    """A child process: take the file lease, say so, and keep it until told on ``done`` (or killed).
    Pipes only: a process killed inside an ``mp.Event`` wait leaves the event's lock taken."""
    lease = FileLease(path, "learner")
    locked.send(lease.acquire())
    done.poll(GUARD_S)
    lease.release()


def test_a_file_lease_excludes_another_process_until_it_dies(tmp_path: Path) -> None:
    path = tmp_path / "events.sqlite.learner.lease"
    ctx = mp.get_context("spawn")
    parent_end, child_end = ctx.Pipe(duplex=False)
    done_r, done_w = ctx.Pipe(duplex=False)
    child = ctx.Process(target=_hold, args=(str(path), child_end, done_r))
    child.start()
    here = FileLease(path, "learner")
    try:
        assert parent_end.poll(GUARD_S) and parent_end.recv() is True, "the child holds it"
        assert here.acquire() is False and here.held is False
        pid, _host = path.read_text().split()
        assert int(pid) == child.pid, "the file names its holder"
        child.kill()  # a crash: no release; the kernel drops the lock with the process
        child.join(GUARD_S)
        assert child.exitcode is not None
        assert here.acquire() is True and here.held is True
        assert path.read_text().split()[0] == str(os.getpid())
    finally:
        done_w.send(True)
        if child.is_alive():
            child.kill()
            child.join(GUARD_S)
        here.release()


def test_file_leases_in_one_process_exclude_each_other(tmp_path: Path) -> None:
    a, b = FileLease(tmp_path / "x.lease", "learner"), FileLease(tmp_path / "x.lease", "learner")
    assert a.acquire() and a.acquire(), "acquiring a held lease again is a no-op"
    assert not b.acquire()
    a.release()
    assert not a.held and b.acquire() and b.held
    b.release()
    with a:
        assert a.held and not b.acquire()
    assert b.acquire()
    b.release()


def test_a_replaced_lock_file_is_not_held(tmp_path: Path) -> None:
    path = tmp_path / "x.lease"
    a, b = FileLease(path, "learner"), FileLease(path, "learner")
    assert a.acquire()
    path.unlink()  # someone deleted it: a new file is a new lock, which another process could take
    assert a.held is False
    assert b.acquire() and b.held
    assert not a.acquire()
    b.release()


# -- the gate a writer's loop asks ---------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_the_gate_waits_logs_once_and_retries_every_retry_s(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    holder = FileLease(tmp_path / "x.lease", "learner")
    assert holder.acquire()
    clock = Clock()
    gate = LeaseGate(FileLease(tmp_path / "x.lease", "learner"), retry_s=5.0, clock=clock)
    caplog.set_level(logging.INFO, logger="ltrr.lease")
    assert [gate.check() for _ in range(3)] == [False, False, False]
    assert gate.state == "waiting" and gate.acquisitions == 0
    assert [r.getMessage() for r in caplog.records] == [waiting_message("learner")]
    assert waiting_message("learner") == "waiting for the learner lease (another one holds it)"
    holder.release()
    assert gate.check() is False, "no new attempt before retry_s passed"
    clock.t = 5.0
    assert gate.check() is True and gate.state == "held" and gate.acquisitions == 1
    assert gate.check() is True and gate.acquisitions == 1, "held: no new acquisition"
    gate.release()
    assert gate.state == "waiting" and not holder.held
    assert holder.acquire() and holder.held
    holder.release()


def test_the_gate_notices_a_lost_lease_and_takes_it_again(pg_dsn: str, caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    gate = LeaseGate(PgLease(pg_dsn, "learner"), retry_s=5.0, clock=clock)
    other = PgLease(pg_dsn, "learner")
    try:
        assert gate.check() and gate.acquisitions == 1 and gate.fence is gate.lease
        caplog.set_level(logging.INFO, logger="ltrr.lease")
        assert isinstance(gate.lease, PgLease)
        terminate(pg_dsn, gate.lease)
        assert other.acquire()
        assert gate.check() is False and gate.state == "waiting"
        messages = [r.getMessage() for r in caplog.records]
        lost = "lost the learner lease; writing stops until it is acquired again"
        assert messages == [lost, waiting_message("learner")]
        other.release()
        clock.t = 5.0
        assert gate.check() is True and gate.acquisitions == 2, "a new holding: the writer reloads its state"
    finally:
        gate.release()
        other.release()


def test_a_file_gate_has_no_fence(tmp_path: Path) -> None:
    assert LeaseGate(FileLease(tmp_path / "x.lease", "learner")).fence is None
