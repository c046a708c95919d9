"""A queue between two threads bounded by the bytes in flight (decoded frames read ahead of an
encoder): :class:`ByteBudgetQueue`."""

from __future__ import annotations

import queue
import threading


class Stopped(Exception):
    """The consumer stopped taking items: the producer should end."""


class ByteBudgetQueue:
    """A producer -> consumer queue bounded by bytes the consumer has not finished with: a put of
    ``nbytes`` blocks while that would exceed ``budget``, but only if the consumer has something to
    take, so an item larger than the whole budget still passes and the two sides never wait on
    each other. The consumer calls :meth:`release` once done with an item's bytes, and
    :meth:`stop` when it leaves, which makes the producer's next put raise :class:`Stopped`."""

    def __init__(self, budget: int) -> None:
        self._items: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._budget, self._held = budget, 0
        self._waiting = 0  # items put and not yet taken
        self._cond = threading.Condition()
        self.stopped = threading.Event()

    def put(self, item: object, nbytes: int = 0) -> None:
        """Queue ``item`` of ``nbytes``; raises :class:`Stopped` once the consumer has stopped."""
        with self._cond:
            while nbytes and self._held + nbytes > self._budget and self._waiting and not self.stopped.is_set():
                self._cond.wait(0.5)
            if self.stopped.is_set():
                raise Stopped
            self._held += nbytes
            self._waiting += 1
        self._items.put(item)

    def get(self, block: bool = True) -> object | None:
        """The next item; None when ``block`` is False and nothing is waiting."""
        try:
            item = self._items.get(block=block)
        except queue.Empty:
            return None
        with self._cond:
            self._waiting -= 1
            self._cond.notify_all()
        return item

    def stop(self) -> None:
        """The consumer is leaving: a waiting or later put raises :class:`Stopped`."""
        with self._cond:
            self.stopped.set()
            self._cond.notify_all()

    def release(self, nbytes: int) -> None:
        """The consumer is done with ``nbytes``: the producer may put that much more."""
        with self._cond:
            self._held -= nbytes
            self._cond.notify_all()
