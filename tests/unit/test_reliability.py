"""Fault-bench bookkeeping (ltrr.reliability): hand-made journals with known answers."""

from __future__ import annotations

import pytest

from ltrr.reliability import (
    Call,
    Fault,
    Journal,
    failures_by_code,
    lost_acknowledged,
    read_journal,
    recovery_seconds,
    windows,
)


def S(t: float, code: str = "OK", degraded: bool = False, missing: tuple[str, ...] = ()) -> Call:
    return Call(t=t, rpc="Search", code=code, latency_s=0.01, degraded=degraded, missing=missing)


def F(t: float, event_id: str, code: str = "OK", duplicate: bool = False) -> Call:
    return Call(t=t, rpc="Feedback", code=code, latency_s=0.01, event_id=event_id, duplicate=duplicate)


def test_journal_round_trip_and_a_torn_last_line_is_ignored(tmp_path):
    path = tmp_path / "j.jsonl"
    j = Journal(path)
    j.call(S(1.0, degraded=True, missing=("vector",)))
    j.call(F(1.5, "e1"))
    j.fault(Fault("kill ingress", 1.2, 1.3, "actor x"))
    j.close()
    with path.open("a") as fh:
        fh.write('{"kind": "call", "t": 9')  # the writer died mid-line
    calls, faults = read_journal([path])
    assert calls == [S(1.0, degraded=True, missing=("vector",)), F(1.5, "e1")]
    assert faults == [Fault("kill ingress", 1.2, 1.3, "actor x")]


def test_lost_counts_acknowledged_ids_only():
    calls = [F(1, "a"), F(2, "b", duplicate=True), F(3, "c", code="UNAVAILABLE"), S(4)]
    assert lost_acknowledged(calls, ["a", "b"]) == []
    assert lost_acknowledged(calls, ["a"]) == ["b"]  # a duplicate ack is an ack
    assert lost_acknowledged(calls, []) == ["a", "b"]  # "c" was never acknowledged


def test_recovery_is_the_start_of_the_first_whole_streak():
    faults = [Fault("f1", 10.0, 10.5), Fault("f2", 30.0, 30.5)]
    calls = [S(9), S(11, "UNAVAILABLE"), S(12, degraded=True), S(13), S(14), S(15, degraded=True)]
    calls += [S(16), S(17), S(18), S(29)]
    calls += [S(31, "UNAVAILABLE")]  # f2 never recovers before the end
    assert recovery_seconds(calls, faults, streak=3) == [6.0, None]
    assert recovery_seconds(calls, faults, streak=1) == [3.0, None]
    with pytest.raises(ValueError, match="`streak` must be >= 1, got 0"):
        recovery_seconds(calls, faults, streak=0)


def test_windows_and_failures():
    faults = [Fault("kill meili", 10.0, 12.0)]
    calls = [S(1), F(2, "a"), S(11, degraded=True, missing=("lexical", "memory")), S(12, "UNAVAILABLE")]
    calls += [F(13, "b", "UNAVAILABLE"), S(14)]
    base, meili = windows(calls, faults, lost=["a"])
    assert (base.name, base.calls, dict(base.failed), base.degraded) == ("baseline", 2, {}, 0)
    assert (base.acknowledged, base.lost, meili.acknowledged, meili.lost) == (1, 1, 0, 0)
    assert (meili.name, meili.calls, dict(meili.failed), meili.degraded) == ("kill meili", 4, {"UNAVAILABLE": 2}, 1)
    assert dict(meili.missing) == {"lexical": 1, "memory": 1}
    assert failures_by_code(calls) == {"Feedback": {"UNAVAILABLE": 1}, "Search": {"UNAVAILABLE": 1}}
    # Issued before the fault, failed by it: the fault's window.
    in_flight = Call(t=9.5, rpc="Search", code="INTERNAL", latency_s=0.8)
    base, meili = windows([in_flight], faults)
    assert (base.calls, meili.calls, dict(meili.failed)) == (0, 1, {"INTERNAL": 1})
