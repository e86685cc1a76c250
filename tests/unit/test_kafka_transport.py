"""callvault's faust transport answers aiokafka's assertions of a rebalance in progress the way
faust expects (the seek itself runs against the real broker in test_rebalance_storm)."""

import asyncio

import pytest
from aiokafka.errors import IllegalStateError
from faust.types import TP

from ingest.kafka_transport import App, Consumer, ConsumerThread, Transport


class Reassigning:
    """A consumer thread whose partitions were just taken away by a rebalance (aiokafka 0.14)."""

    def __init__(self):
        self.assigned = {TP("callvault.recordings", 0)}

    def assignment(self):
        return self.assigned

    def highwater(self, tp):
        raise AssertionError("Partition is not assigned")

    async def seek_to_committed(self):
        self.assigned = set()  # the rebalance began while the committed offsets were read
        raise AssertionError()


class Buggy(Reassigning):
    async def seek_to_committed(self):
        raise AssertionError("a bug, the assignment unchanged")


class Assigned:
    def highwater(self, tp):
        return 42


def consumer_on(thread) -> Consumer:
    consumer = Consumer.__new__(Consumer)
    consumer._thread = thread
    return consumer


def test_a_seek_overtaken_by_a_rebalance_is_the_error_faust_waits_out():
    with pytest.raises(IllegalStateError):
        asyncio.run(consumer_on(Reassigning()).seek_to_committed())


def test_an_assertion_without_a_rebalance_is_not_waited_out():
    with pytest.raises(AssertionError, match="a bug"):
        asyncio.run(consumer_on(Buggy()).seek_to_committed())


def test_the_highwater_of_a_partition_taken_away_is_unknown_not_a_crash():
    tp = TP("callvault.recordings", 0)
    assert consumer_on(Reassigning()).highwater(tp) is None
    assert consumer_on(Assigned()).highwater(tp) == 42


def test_the_app_runs_on_callvaults_transport():
    app = App("t", broker="kafka://127.0.0.1:1")
    assert isinstance(app.transport, Transport) and app.transport.Consumer is Consumer


class Rebalancing:
    """aiokafka's consumer while a rebalance has taken its assignment: a commit is refused."""

    def assignment(self):
        return set()

    async def commit(self, offsets):
        raise IllegalStateError("No partitions assigned")


def test_a_commit_whose_partitions_a_rebalance_took_is_not_made_and_not_a_crash():
    thread = ConsumerThread.__new__(ConsumerThread)
    thread._consumer = Rebalancing()
    assert asyncio.run(thread._commit({TP("callvault.recordings", 0): 12})) is False


def test_the_consumer_runs_on_callvaults_thread():
    app = App("t", broker="kafka://127.0.0.1:1")
    assert isinstance(app.consumer._thread, ConsumerThread)
