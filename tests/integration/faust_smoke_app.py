"""A minimal faust app for the smoke test: consume one message, write it to a file, exit.

Run as ``python faust_smoke_app.py worker`` with SMOKE_BROKER, SMOKE_TOPIC, SMOKE_OUT set.
"""

import os
from pathlib import Path

import faust

app = faust.App(
    f"smoke-{os.environ['SMOKE_TOPIC']}",
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
