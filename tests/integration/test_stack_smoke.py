"""The real servers answer, and each client library we build on can talk to them."""

from __future__ import annotations

import asyncio
import io
import math
import os
import struct
import subprocess
import sys
import time
import wave
from pathlib import Path

import pytest
import sqlalchemy as sa
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

pytestmark = pytest.mark.integration


def test_every_server_answers(stack):
    status = stack.status()
    assert set(status) == {"kafka", "minio", "postgres"}
    assert all(s["answers"] for s in status.values()), status


def test_aiokafka_produce_then_consume(kafka_bootstrap, scratch_topic):
    async def roundtrip() -> tuple[bytes, bytes]:
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
        await admin.start()
        await admin.create_topics([NewTopic(scratch_topic, num_partitions=2, replication_factor=1)])
        await admin.close()
        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
        await producer.start()
        await producer.send_and_wait(scratch_topic, b"payload", key=b"rec-1")
        await producer.stop()
        consumer = AIOKafkaConsumer(scratch_topic, bootstrap_servers=kafka_bootstrap, group_id=scratch_topic,
                                    auto_offset_reset="earliest", enable_auto_commit=False)
        await consumer.start()
        try:
            msg = await asyncio.wait_for(consumer.getone(), 30)
            await consumer.commit()
            committed = await consumer.committed(TopicPartition(scratch_topic, msg.partition))
            assert committed == msg.offset + 1
        finally:
            await consumer.stop()
        return msg.key, msg.value

    assert asyncio.run(roundtrip()) == (b"rec-1", b"payload")


def test_faust_app_consumes_from_the_real_broker(kafka_bootstrap, scratch_topic, tmp_path):
    out = tmp_path / "consumed"
    env = {**os.environ, "SMOKE_BROKER": kafka_bootstrap, "SMOKE_TOPIC": scratch_topic,
           "SMOKE_OUT": str(out), "SMOKE_DATADIR": str(tmp_path / "faust")}
    app = Path(__file__).with_name("faust_smoke_app.py")

    async def produce() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
        await admin.start()
        await admin.create_topics([NewTopic(scratch_topic, num_partitions=1, replication_factor=1)])
        await admin.close()
        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
        await producer.start()
        await producer.send_and_wait(scratch_topic, b"hello-faust", key=b"k1")
        await producer.stop()

    asyncio.run(produce())
    proc = subprocess.Popen([sys.executable, str(app), "worker", "-l", "warn"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        output, _ = proc.communicate(timeout=90)
    except subprocess.TimeoutExpired:
        proc.kill()
        output, _ = proc.communicate()
    assert out.exists(), output.decode(errors="replace")[-3000:]
    assert out.read_bytes() == b"k1=hello-faust"


def test_boto3_and_minio_sdk_put_get(minio, scratch_bucket):
    s3 = minio.boto3_client()
    s3.put_object(Bucket=scratch_bucket, Key="a/one", Body=b"boto3-bytes")
    client = minio.minio_client()
    client.put_object(scratch_bucket, "a/two", io.BytesIO(b"minio-bytes"), length=11)

    assert client.get_object(scratch_bucket, "a/one").read() == b"boto3-bytes"
    assert s3.get_object(Bucket=scratch_bucket, Key="a/two")["Body"].read() == b"minio-bytes"
    assert s3.get_bucket_location(Bucket=scratch_bucket)["LocationConstraint"] == "eu-west-3"


def _roundtrip(engine: sa.Engine) -> list[tuple]:
    meta = sa.MetaData()
    table = sa.Table("smoke", meta, sa.Column("id", sa.Integer, primary_key=True), sa.Column("label", sa.Text))
    meta.create_all(engine)
    with engine.begin() as conn:
        conn.execute(table.insert(), [{"id": 1, "label": "première"}, {"id": 2, "label": "second"}])
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.select(table).order_by(table.c.id))]


def test_sqlalchemy_row_roundtrip_on_sqlite(sqlite_engine):
    assert _roundtrip(sqlite_engine) == [(1, "première"), (2, "second")]


def test_sqlalchemy_row_roundtrip_on_postgres(pg_engine):
    assert _roundtrip(pg_engine) == [(1, "première"), (2, "second")]
    with pg_engine.connect() as conn:
        assert conn.execute(sa.text("SELECT version()")).scalar().startswith("PostgreSQL")


def _sine_wav(seconds: float, rate: int = 8000, freq: float = 440.0) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(b"".join(struct.pack("<h", int(12000 * math.sin(2 * math.pi * freq * i / rate)))
                               for i in range(int(seconds * rate))))
    return buf.getvalue()


def test_ffmpeg_decodes_a_generated_wav_via_pydub(stack, tmp_path):
    from pydub import AudioSegment

    wav = _sine_wav(1.5)
    segment = AudioSegment.from_file(io.BytesIO(wav), format="wav")
    assert len(segment) == 1500
    # A real ffmpeg transcode and back: Opus in Ogg keeps the duration within a frame.
    ogg = tmp_path / "x.ogg"
    segment.export(ogg, format="ogg", codec="libopus")
    back = AudioSegment.from_file(ogg)
    assert abs(len(back) - 1500) < 30
    assert back.rms > 1000
