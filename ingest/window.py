"""The acknowledgement window: calls finish in any order, their offsets are committed in order.

Kafka commits one offset per partition, meaning "everything before this is done". A worker that
keeps several calls in flight sees them finish out of order, so a finished call may be
acknowledged only once every call taken before it from its partition is finished too (stored,
duplicate, or dead-lettered). ``AckWindow`` keeps, per partition (a *lane*), the calls taken and
not yet acknowledged, in the order they were taken; ``finish`` returns the calls that may now be
acknowledged, in order: the finished prefix of the lane, never a call behind an unfinished one.

Pure bookkeeping (no Kafka, no clock): the agent (``ingest.agents``) feeds it events.
"""

from __future__ import annotations

from collections import deque
from typing import Generic, Hashable, TypeVar

T = TypeVar("T")


class AckWindow(Generic[T]):
    """Calls taken and not acknowledged yet, per lane, in the order they were taken."""

    def __init__(self) -> None:
        self._lanes: dict[Hashable, deque[list]] = {}  # lane -> [[item, finished], ...]
        self._entries: dict[int, tuple[Hashable, list]] = {}  # id(item) -> (lane, its entry)

    def __len__(self) -> int:
        """Calls taken and not acknowledged (finished behind an unfinished one included)."""
        return len(self._entries)

    def add(self, lane: Hashable, item: T) -> None:
        """A call taken from ``lane``: after every call taken from it before."""
        if id(item) in self._entries:
            raise ValueError(f"{item!r} is in the window already: a call is taken once per delivery")
        entry = [item, False]
        self._lanes.setdefault(lane, deque()).append(entry)
        self._entries[id(item)] = (lane, entry)

    def finish(self, item: T) -> list[T]:
        """``item`` is done: the calls of its lane that may be acknowledged now, in order (none
        while an earlier call of the lane is unfinished). They leave the window."""
        try:
            lane, entry = self._entries[id(item)]
        except KeyError:
            raise ValueError(f"{item!r} is not in the window (finished twice, or never taken)") from None
        entry[1] = True
        queue, ready = self._lanes[lane], []
        while queue and queue[0][1]:
            done = queue.popleft()[0]
            del self._entries[id(done)]
            ready.append(done)
        if not queue:
            del self._lanes[lane]
        return ready

    def unfinished(self) -> int:
        """Calls taken and not finished."""
        return sum(1 for _lane, entry in self._entries.values() if not entry[1])
