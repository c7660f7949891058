"""Batched upload writes (ltrr.upsert): bounded memory, and no torn tail on cancel or break."""

from __future__ import annotations

import asyncio
from typing import AsyncIterator

import pytest

from ltrr.errors import Aborted, InvalidRequest
from ltrr.upsert import UploadInvalid, UploadStopped, write_in_batches


def parse(i: int, msg: str) -> str:
    if msg == "bad":
        raise InvalidRequest(f"entities[{i}].title", "must not be empty")
    return msg.upper()


class Sink:
    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.largest_in_flight = 0

    async def commit(self, batch: list[str]) -> int:
        self.batches.append(list(batch))
        return len(batch) - batch.count("SAME")


async def stream(items: list[str], *, fail_after: int | None = None) -> AsyncIterator[str]:
    for i, item in enumerate(items):
        if fail_after is not None and i == fail_after:
            raise ConnectionResetError("peer went away")
        yield item


def run(coro):
    return asyncio.run(coro)


def test_full_batches_then_the_tail():
    sink = Sink()
    items = [f"e{i}" for i in range(7)] + ["same"]
    progress = run(write_in_batches(stream(items), parse, sink.commit, batch_size=3))
    assert [len(b) for b in sink.batches] == [3, 3, 2]
    assert (progress.received, progress.committed, progress.changed, progress.batches) == (8, 8, 7, 3)


def test_memory_holds_one_batch_at_most():
    held: list[int] = []

    async def commit(batch: list[str]) -> int:
        held.append(len(batch))
        return len(batch)

    run(write_in_batches(stream([str(i) for i in range(1000)]), parse, commit, batch_size=64))
    assert max(held) == 64 and sum(held) == 1000


def test_a_cancelled_stream_commits_nothing_of_its_partial_batch():
    sink = Sink()
    state = {"cancelled": False}

    async def cancelling() -> AsyncIterator[str]:
        for i in range(5):
            yield f"e{i}"
        state["cancelled"] = True  # Ray's input stream then simply ends, as if complete

    with pytest.raises(UploadStopped) as ei:
        run(write_in_batches(cancelling(), parse, sink.commit, batch_size=2, cancelled=lambda: state["cancelled"]))
    assert [len(b) for b in sink.batches] == [2, 2]
    p = ei.value.progress
    assert (p.received, p.committed, p.dropped) == (5, 4, 1)
    assert isinstance(ei.value, Aborted)
    assert str(ei.value) == "upload cancelled by the client; 4 entities before it were committed"


def test_a_broken_stream_keeps_full_batches_and_drops_the_tail():
    sink = Sink()
    with pytest.raises(UploadStopped) as ei:
        run(write_in_batches(stream([f"e{i}" for i in range(9)], fail_after=7), parse, sink.commit, batch_size=3))
    assert [len(b) for b in sink.batches] == [3, 3]
    assert (ei.value.progress.committed, ei.value.progress.dropped) == (6, 1)
    assert isinstance(ei.value.cause, ConnectionResetError)
    assert str(ei.value) == "upload stream broke (ConnectionResetError); 6 entities before it were committed"


def test_an_invalid_message_is_invalid_argument_and_says_what_was_committed():
    sink = Sink()
    items = ["a", "b", "c", "d", "bad", "f"]
    with pytest.raises(UploadInvalid) as ei:
        run(write_in_batches(stream(items), parse, sink.commit, batch_size=2))
    assert isinstance(ei.value, InvalidRequest)
    assert ei.value.field == "entities[4].title"
    assert str(ei.value) == "entities[4].title: must not be empty; 4 entities before it were committed"
    assert sink.batches == [["A", "B"], ["C", "D"]]


def test_batch_size_is_validated():
    with pytest.raises(ValueError, match=r"`batch_size` must be >= 1, got 0"):
        run(write_in_batches(stream([]), parse, Sink().commit, batch_size=0))
