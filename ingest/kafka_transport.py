"""faust's Kafka transport, with its seek made safe against a rebalance that starts meanwhile.

After each rebalance faust's recovery seeks every assigned partition to its committed offset
(``perform_seek``): one ``committed`` round trip per partition, then a seek. A rebalance that
starts in that window (a per-tenant topic subscribed, a member joining or leaving) clears
aiokafka's assignment, and aiokafka 0.14 then fails the seek with a bare ``AssertionError``,
where it used to raise ``IllegalStateError``. faust's recovery treats ``IllegalStateError`` as
"another rebalance started" and waits for it; anything else crashes the worker. Seen in CI:
the worker died while subscribing to a tenant topic, and its calls stayed queued.

``Consumer.seek_to_committed`` gives that race its old name back, so recovery waits for the
new assignment and seeks again then. Nothing is lost either way: no offset moves, and the next
recovery seeks to the committed offsets, which only ever follow stored calls.

It reaches the commit too: faust checks the acknowledged offsets against the assignment, flushes
its producer, then commits; a rebalance in between left aiokafka no assignment, and its
``IllegalStateError`` crashed the worker. ``ConsumerThread._commit`` does not commit then.

The same race reaches ``highwater``, which faust reads for each fetched record (its monitor):
a record of a partition the rebalance has just taken away made it assert, and the fetcher died.
It answers None there, as it does before a partition's first fetch. faust still hands that
record to the agent; its partition's new owner reads it again: a duplicate, which ingest answers
as such (every write is idempotent on the recording id).
"""

from __future__ import annotations

import logging
from typing import Mapping

import faust
from aiokafka.errors import IllegalStateError
from faust.transport.drivers import aiokafka as driver
from faust.types import TP

log = logging.getLogger("callvault.ingest")


class ConsumerThread(driver.AIOKafkaConsumerThread):
    async def _commit(self, offsets: Mapping[TP, int]) -> bool:
        """faust's commit, unless a rebalance took every partition of ``offsets`` meanwhile (the
        agent's acks are checked against the assignment before the producer's flush, the commit
        after it): aiokafka refuses a commit with no assignment (``IllegalStateError``), which
        faust's commit answers by crashing the worker. Not committed, as faust answers a commit
        of revoked partitions: the calls are delivered again and are duplicates."""
        assigned = self._ensure_consumer().assignment()
        if not any(tp in assigned for tp in offsets):
            log.info("a rebalance took the partitions of this commit: their calls come again (duplicates)")
            return False
        return await super()._commit(offsets)


class Consumer(driver.Consumer):
    def _new_consumer_thread(self) -> ConsumerThread:
        return ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    async def seek_to_committed(self) -> Mapping[TP, int]:
        before = self.assignment()
        try:
            return await super().seek_to_committed()
        except AssertionError as exc:  # aiokafka: "assignment is not None", "No partitions are currently assigned"
            if self.assignment() == before and before:
                raise  # no rebalance: a bug, and it must show, not be waited out
            log.info("the assignment changed while seeking to committed offsets: seeking again after the rebalance")
            raise IllegalStateError("the assignment changed while seeking to committed offsets") from exc

    def highwater(self, tp: TP) -> int | None:
        """The partition's last offset, or None (as before its first fetch) once a rebalance took
        the partition away between the fetch and this record: faust reads it for every record
        it hands on, for its monitor only, and aiokafka asserts ("Partition is not assigned")."""
        try:
            return super().highwater(tp)
        except AssertionError:
            return None


class Transport(driver.Transport):
    Consumer = Consumer


class App(faust.App):
    """faust's app on :class:`Transport` (the broker URL must be ``kafka://``, as callvault's is)."""

    def _new_transport(self) -> Transport:
        return Transport(self.conf.broker_consumer, self)
