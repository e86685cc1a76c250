"""A faust app on callvault's transport (``ingest.kafka_transport``) whose first seek to the
committed offsets is overtaken by a resubscription, as when the worker follows a new per-tenant
topic during a recovery: it must wait for the new assignment, then consume.

Run as ``python faust_rebalance_app.py worker`` with SMOKE_BROKER, SMOKE_TOPIC, SMOKE_SECOND,
SMOKE_OUT and SMOKE_DATADIR set; SMOKE_PLAIN=1 runs it on faust's own app instead (the crash).
"""

import os
from pathlib import Path

import faust
from aiokafka.consumer.consumer import AIOKafkaConsumer

from ingest.kafka_transport import App

committed = AIOKafkaConsumer.committed
overtaken = []


async def committed_then_resubscribed(self, tp):
    """The first ``committed`` of the recovery's seek returns after the subscription changed:
    aiokafka drops the assignment until the group has rebalanced."""
    offset = await committed(self, tp)
    if offset and not overtaken:  # aiokafka seeks only where an offset was committed
        overtaken.append(tp)
        state = self._subscription
        state.subscribe(set(state.subscription.topics) | {os.environ["SMOKE_SECOND"]}, listener=state.listener)
        Path(os.environ["SMOKE_OUT"] + ".overtaken").write_text(str(tp))
    return offset


AIOKafkaConsumer.committed = committed_then_resubscribed
app = (faust.App if os.environ.get("SMOKE_PLAIN") else App)(
    f"rebalance-{os.environ['SMOKE_TOPIC']}",
    broker=f"kafka://{os.environ['SMOKE_BROKER']}",
    store="memory://",
    web_enabled=False,
    datadir=os.environ["SMOKE_DATADIR"],
    topic_partitions=1,
    consumer_auto_offset_reset="earliest",
)
topic = app.topic(os.environ["SMOKE_TOPIC"], key_serializer="raw", value_serializer="raw", partitions=1)


@app.agent(topic)
async def consume(stream):
    async for event in stream.events():
        Path(os.environ["SMOKE_OUT"]).write_bytes(event.key + b"=" + event.value)
        os._exit(0)


if __name__ == "__main__":
    app.main()
