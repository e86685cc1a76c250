"""Calls finish in any order; offsets are acknowledged in order, never past an unfinished call.

``AckWindow`` on its own (random finish orders over several partitions), then the agent's
sliding window with a stand-in stream and handler (no Kafka): calls finish in a random order,
no more than ``in_flight`` run at once, every call is acknowledged once, in offset order within
its partition and only when all before it are finished; a suspect runs alone."""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field
from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.agents import BatchAgent
from ingest.settings import IngestSettings
from ingest.window import AckWindow


@dataclass(frozen=True)
class Call:
    partition: int
    offset: int


calls_and_order = st.lists(st.integers(0, 3), min_size=1, max_size=40).flatmap(
    lambda parts: st.tuples(st.just(parts), st.permutations(range(len(parts)))))


def _calls(parts: list[int]) -> list[Call]:
    offsets: dict[int, int] = {}
    out = []
    for p in parts:
        offsets[p] = offsets.get(p, -1) + 1
        out.append(Call(p, offsets[p]))
    return out


@given(calls_and_order)
def test_the_window_never_releases_a_call_behind_an_unfinished_one_and_releases_all(case):
    parts, order = case
    calls = _calls(parts)
    window: AckWindow[Call] = AckWindow()
    for c in calls:
        window.add(c.partition, c)
    finished: set[Call] = set()
    acked: list[Call] = []
    for i in order:
        finished.add(calls[i])
        released = window.finish(calls[i])
        for c in released:
            earlier = [x for x in calls if x.partition == c.partition and x.offset < c.offset]
            assert all(x in finished for x in earlier), f"{c} released before an unfinished earlier call"
        acked.extend(released)
        assert window.unfinished() == len(calls) - len(finished)
    assert sorted(acked, key=lambda c: (c.partition, c.offset)) == sorted(calls, key=lambda c: (c.partition,
                                                                                                c.offset))
    for p in set(parts):
        assert [c.offset for c in acked if c.partition == p] == sorted(c.offset for c in calls if c.partition == p)
    assert len(window) == 0


def test_a_call_finished_twice_or_never_taken_is_refused():
    window: AckWindow[Call] = AckWindow()
    a = Call(0, 0)
    window.add(0, a)
    with pytest.raises(ValueError, match="already"):
        window.add(0, a)
    assert window.finish(a) == [a]
    with pytest.raises(ValueError, match="not in the window"):
        window.finish(a)


# -- the agent's sliding window, with stand-ins for faust and the catalog ----------------------
@dataclass(eq=False)
class FakeEvent:
    partition: int
    offset: int
    key: bytes = b"k"
    message: SimpleNamespace = field(init=False)

    def __post_init__(self) -> None:
        self.message = SimpleNamespace(topic="t", partition=self.partition, offset=self.offset,
                                       tp=("t", self.partition))


class FakeStream:
    def __init__(self) -> None:
        self.acked: list[FakeEvent] = []

    async def ack(self, event: FakeEvent) -> bool:
        self.acked.append(event)
        return True


class Harness:
    """The agent's ``take`` driven by hand: handling takes a random time; suspects are listed."""

    def __init__(self, in_flight: int, seed: int, suspects: set[tuple[int, int]] = frozenset()) -> None:
        runtime = SimpleNamespace(deps=SimpleNamespace(settings=IngestSettings(concurrency=in_flight), kafka=None),
                                  bookkeeping=self._bookkeeping)
        self.agent = BatchAgent(runtime, events=None, dead_letters=None)
        self.agent.handle = self._handle
        self.agent._start = lambda deliveries, now: {d for d in deliveries if d[1:] in suspects}
        self.agent._begin = lambda deliveries, now: [1 for _ in deliveries]
        self.agent._finish = self._finish_rows
        self.random = random.Random(seed)
        self.finished: set[tuple[int, int]] = set()
        self.unfinished_rows: set[tuple[int, int]] = set()
        self.running = self.max_running = 0
        self.suspect_alone: list[bool] = []
        self.suspects = suspects

    async def _bookkeeping(self, fn, *args):
        await asyncio.sleep(self.random.random() / 1000)
        return fn(*args)

    def _finish_rows(self, deliveries) -> None:
        for _topic, p, o in deliveries:
            assert (p, o) in self.finished, "attempts row dropped before the call was finished"

    async def _handle(self, event: FakeEvent) -> None:
        self.running += 1
        self.max_running = max(self.max_running, self.running)
        if (event.partition, event.offset) in self.suspects:
            self.suspect_alone.append(self.running == 1)
        await asyncio.sleep(self.random.random() / 200)
        self.finished.add((event.partition, event.offset))
        self.running -= 1


async def _drive(h: Harness, batches: list[list[FakeEvent]], stream: FakeStream) -> None:
    checked_acks = 0
    for batch in batches:
        await h.agent.take(stream, batch)
        await h.agent._until(lambda: len(h.agent.window) < 2 * h.agent.in_flight)
    deadline = asyncio.get_running_loop().time() + 30
    while len(stream.acked) < sum(len(b) for b in batches):
        assert asyncio.get_running_loop().time() < deadline, "not every call was acknowledged"
        await asyncio.sleep(0.001)
        for event in stream.acked[checked_acks:]:
            assert all((event.partition, o) in h.finished for o in range(event.offset + 1))
        checked_acks = len(stream.acked)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(0, 3), min_size=1, max_size=30), st.integers(1, 6), st.integers(1, 8),
       st.integers(0, 2**32))
def test_the_agent_acknowledges_in_order_as_calls_finish_never_past_an_unfinished_one(parts, in_flight, take,
                                                                                       seed):
    offsets: dict[int, int] = {}
    events = []
    for p in parts:
        offsets[p] = offsets.get(p, -1) + 1
        events.append(FakeEvent(p, offsets[p]))
    batches = [events[i:i + take] for i in range(0, len(events), take)]
    h, stream = Harness(in_flight, seed), FakeStream()
    asyncio.run(_drive(h, batches, stream))
    assert sorted((e.partition, e.offset) for e in stream.acked) == sorted((e.partition, e.offset) for e in events)
    for p in offsets:
        assert [e.offset for e in stream.acked if e.partition == p] == list(range(offsets[p] + 1))
    assert h.max_running <= in_flight


def test_a_suspect_runs_alone_and_its_neighbours_are_still_acknowledged_in_order():
    events = [FakeEvent(i % 2, i // 2) for i in range(12)]
    h, stream = Harness(4, seed=7, suspects={(0, 2), (1, 3)}), FakeStream()
    asyncio.run(_drive(h, [events[:6], events[6:]], stream))
    assert h.suspect_alone == [True, True]
    for p in (0, 1):
        assert [e.offset for e in stream.acked if e.partition == p] == list(range(6))
