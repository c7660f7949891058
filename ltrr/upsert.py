"""Write a streamed upload in batches, as it is read, and never commit a torn tail.

``UpsertEntities`` is a client stream. Holding it whole before writing would make
memory grow with the upload; writing each message at once would make a thousand
transactions. :func:`write_in_batches` validates each message as it arrives and
commits every ``batch_size`` of them in one catalog transaction, so memory is
bounded by one batch.

**What is committed when the stream does not end cleanly.** Ray's gRPC input
stream ends iteration in the same way when the client cancels as when it
finishes (``StopAsyncIteration``), so the caller passes ``cancelled`` (Ray's
``is_cancelled()``), which is checked before each commit:

- every full batch read before the break is committed, and reported;
- the last, partial batch of a cancelled or broken stream is dropped: the
  client never said it was complete;
- an invalid message stops the upload: the batches before it stay committed,
  nothing of its own batch is written, and the error says how many were.

Each raised :class:`UploadStopped` carries the :class:`UpsertProgress` so far.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import AsyncIterator, Awaitable, Callable, TypeVar

from ltrr.errors import Aborted, InvalidRequest

M = TypeVar("M")
E = TypeVar("E")


@dataclass
class UpsertProgress:
    """Counts of one upload: messages ``received`` and ``committed``, catalog rows ``changed``."""

    received: int = 0
    committed: int = 0
    changed: int = 0
    batches: int = 0
    dropped: int = 0


class UploadStopped(Aborted):
    """The upload ended before its end: cancelled, broken, or an invalid message.

    ``progress`` says what was committed; ``cause`` is the error (``None`` if cancelled).
    """

    def __init__(self, reason: str, progress: UpsertProgress, cause: BaseException | None = None) -> None:
        # Not super(): UploadInvalid's MRO puts InvalidRequest's (field, message) __init__ next.
        Exception.__init__(self, f"{reason}; {progress.committed} entities before it were committed")
        self.reason = reason
        self.progress = progress
        self.cause = cause


class UploadInvalid(UploadStopped, InvalidRequest):
    """An invalid message stopped the upload (``INVALID_ARGUMENT``, not ``ABORTED``: it is the caller's
    fault; the batches before it were committed)."""

    def __init__(self, cause: InvalidRequest, progress: UpsertProgress) -> None:
        UploadStopped.__init__(self, str(cause), progress, cause)
        self.field = cause.field
        self.message = f"{cause.message}; {progress.committed} entities before it were committed"


async def write_in_batches(
    messages: AsyncIterator[M],
    parse: Callable[[int, M], E],
    commit: Callable[[list[E]], Awaitable[int]],
    *,
    batch_size: int,
    cancelled: Callable[[], bool] = lambda: False,
) -> UpsertProgress:
    """Parse each message (``parse(index, message)``), commit full batches, then the tail.

    ``commit(batch)`` writes one batch in one transaction and returns the rows it changed.
    Raises :class:`UploadInvalid` for an invalid message and :class:`UploadStopped` for a
    cancelled or broken stream; both after committing every full batch before the stop.
    """
    if batch_size < 1:
        raise ValueError(f"`batch_size` must be >= 1, got {batch_size}")
    progress = UpsertProgress()
    batch: list[E] = []

    async def flush() -> None:
        nonlocal batch
        progress.changed += await commit(batch)
        progress.committed += len(batch)
        progress.batches += 1
        batch = []

    try:
        async for msg in messages:
            try:
                batch.append(parse(progress.received, msg))
            except InvalidRequest as exc:
                progress.dropped = len(batch)
                raise UploadInvalid(exc, progress) from exc
            progress.received += 1
            if len(batch) >= batch_size:
                if cancelled():
                    break
                await flush()
    except UploadStopped:
        raise
    except Exception as exc:  # noqa: BLE001 - the stream broke: keep what was committed, drop the tail
        progress.dropped = len(batch)
        raise UploadStopped(f"upload stream broke ({type(exc).__name__})", progress, exc) from exc
    if cancelled():
        progress.dropped = len(batch)
        raise UploadStopped("upload cancelled by the client", progress)
    if batch:
        await flush()
    return progress
