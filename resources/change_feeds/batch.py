"""What a change feed reports: the videos touched since the last look."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


@dataclass
class ChangeBatch:
    """What one poll read: the videos touched, and the messages to delete once they are handled."""

    video_ids: set[int] = field(default_factory=set)
    receipts: list[str] = field(default_factory=list)
    messages: int = 0
    unreadable: int = 0  # bodies that were no S3 event we can read: left to the reconcile
    elsewhere: int = 0  # changes outside this library (another bucket or prefix)
    resume: int | None = None  # where the next poll starts, for feeds that keep a position (folders)


class ChangeFeed(Protocol):
    """A source of changes: :meth:`poll` what changed (within about ``budget_s``), act on it, then
    :meth:`ack` it so that it is not reported again."""

    def poll(self, *, budget_s: float) -> ChangeBatch: ...

    def ack(self, batch: ChangeBatch) -> None: ...
