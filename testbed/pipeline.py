"""A running ingest pipeline: a real ``callvault worker`` process on scratch topics, buckets and
a PostgreSQL schema (``scratch_pipeline``), with helpers to push calls and await their events;
and the environment of any callvault process over given settings (``service_env``)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

import sqlalchemy as sa
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment

from ingest import sealing
from ingest.producer import Call, Producer, catalog_seal_keys
from ingest.settings import KafkaSettings
from storage.admin import init_buckets, minio_admin_client
from storage.catalog import tables as t
from storage.catalog.db import make_engine
from storage.keys import KeyRing
from storage.ledger import init_ledger_bucket
from storage.objectstore import ObjectStore
from storage.settings import StorageSettings
from storage.transit import Quarantine


@dataclass
class Pipeline:
    kafka: KafkaSettings
    storage: StorageSettings
    engine: sa.Engine
    store: ObjectStore
    env: dict[str, str]
    log_path: Path
    inline_max_bytes: int
    process: subprocess.Popen | None = None
    seen: list[dict] = field(default_factory=list)

    # -- worker process -------------------------------------------------------------------
    def start_worker(self) -> None:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen([sys.executable, "-m", "callvault.cli", "worker", "-l", "info"],
                                        env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, start_new_session=True)

    def stop_worker(self, sig: int = 15) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, sig)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, 9)
                self.process.wait(10)

    @property
    def seal_keys(self):
        """Producers seal to the tenant's ingest key, from this pipeline's catalog."""
        if "_seal_keys" not in self.__dict__:
            self.__dict__["_seal_keys"] = catalog_seal_keys(self.engine, self.storage, kafka=self.kafka)
        return self.__dict__["_seal_keys"]

    def worker_log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    # -- producing ----------------------------------------------------------------------------
    def push(self, *calls: Call) -> list[str]:
        async def run() -> list[str]:
            async with Producer(self.kafka, self.storage, inline_max_bytes=self.inline_max_bytes,
                                seal_keys=self.seal_keys) as producer:
                return await producer.push_many(calls)
        return asyncio.run(run())

    def push_raw(self, *messages: tuple[bytes | None, bytes]) -> None:
        async def run() -> None:
            async with Producer(self.kafka, self.storage, seal_keys=self.seal_keys) as producer:
                for key, value in messages:
                    await producer.send_raw(key, value)
        asyncio.run(run())

    # -- observing ----------------------------------------------------------------------------
    def wait_for(self, predicate, *, count: int, timeout: float = 90.0) -> list[dict]:
        """Read events and dead letters until ``count`` records match ``predicate``."""
        async def run() -> list[dict]:
            consumer = AIOKafkaConsumer(self.kafka.events_topic, self.kafka.dlq_topic,
                                        bootstrap_servers=self.kafka.bootstrap_servers,
                                        auto_offset_reset="earliest", enable_auto_commit=False)
            await consumer.start()
            try:
                deadline = time.monotonic() + timeout
                self.seen.clear()
                while time.monotonic() < deadline:
                    batch = await consumer.getmany(timeout_ms=500)
                    for records in batch.values():
                        for r in records:
                            self.seen.append(self._released(decode_record(r, self.kafka.dlq_topic)))
                    matched = [e for e in self.seen if predicate(e)]
                    if len(matched) >= count:
                        return matched
                    if self.process and self.process.poll() is not None:
                        raise AssertionError(f"worker exited ({self.process.returncode}):\n{self.worker_log()}")
            finally:
                await consumer.stop()
            raise AssertionError(f"timed out: {len([e for e in self.seen if predicate(e)])}/{count} matched; "
                                 f"seen {self.seen[-5:]}\nworker log:\n{self.worker_log()}")
        return asyncio.run(run())

    def release_key(self, dead_letter_id) -> bytes | None:
        """A dead letter's quarantine key from this pipeline's catalog (None once purged)."""
        with self.engine.connect() as conn:
            return Quarantine(KeyRing.from_settings(self.storage)).key_or_none(conn, dead_letter_id)

    def _released(self, event: dict) -> dict:
        """A dead letter with its ``original``: the quarantine record opened with the catalog's key
        (None once purged)."""
        if event.get("type") != "dead-letter":
            return event
        dead_letter_id = sealing.quarantine_id(event["value"] or b"")
        key = self.release_key(dead_letter_id) if dead_letter_id else None
        return {**event, "original": None if key is None else sealing.release(event["value"], key=key)}

    def count(self, table: sa.Table) -> int:
        with self.engine.connect() as conn:
            return conn.execute(sa.select(sa.func.count()).select_from(table)).scalar()


def decode_record(record, dlq_topic: str) -> dict:
    if record.topic == dlq_topic:
        headers = {k: v.decode() for k, v in record.headers}
        return {"type": "dead-letter", "reason": headers.get("callvault-reason"),
                "error": headers.get("callvault-error"), "key": record.key, "value": record.value}
    return json.loads(record.value)


async def create_topics(bootstrap: str, names: list[str], partitions: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(n, num_partitions=partitions, replication_factor=1) for n in names])
    finally:
        await admin.close()


async def drop_topics(bootstrap: str, prefix: str) -> None:
    """Delete every topic whose name starts with ``prefix`` (the worker's own included)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        doomed = [n for n in await admin.list_topics() if n.startswith(prefix)]
        if doomed:
            await admin.delete_topics(doomed)
    finally:
        await admin.close()


@contextmanager
def scratch_pipeline(bootstrap: str, storage: StorageSettings, catalog_url: str, log_path: Path, *, prefix: str,
                     partitions: int = 4, inline_max_bytes: int = 64 * 1024,
                     env: dict[str, str] | None = None) -> Iterator[Pipeline]:
    """A pipeline, its worker not started yet, on topics named after ``prefix`` (tenant topics
    too: no one else's), the buckets of ``storage`` (made as ``storage init`` makes them) and the
    catalog at ``catalog_url`` (migrated already) with tenant ``acme``. After: the worker stopped
    and the topics deleted; the buckets and the schema are the caller's."""
    kafka = KafkaSettings(bootstrap_servers=bootstrap, recordings_topic=f"{prefix}.recordings",
                          dlq_topic=f"{prefix}.recordings.dlq", events_topic=f"{prefix}.events", partitions=partitions,
                          tenant_topic_prefix=f"{prefix}.tenant.")
    asyncio.run(create_topics(bootstrap, [kafka.recordings_topic], partitions))
    init_buckets(storage, say=lambda _m: None)
    init_ledger_bucket(minio_admin_client(storage), storage, say=lambda _m: None)  # the fault suite's own MinIO
    engine = make_engine(catalog_url, echo=False)
    with engine.begin() as conn:
        conn.execute(t.tenants.insert().values(id="acme", name="Acme", created_at=datetime.now(timezone.utc)))
    worker_env = {
        **service_env(storage, catalog_url),
        "CALLVAULT_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "CALLVAULT_KAFKA_RECORDINGS_TOPIC": kafka.recordings_topic,
        "CALLVAULT_KAFKA_DLQ_TOPIC": kafka.dlq_topic,
        "CALLVAULT_KAFKA_EVENTS_TOPIC": kafka.events_topic,
        "CALLVAULT_KAFKA_PARTITIONS": str(partitions),
        "CALLVAULT_KAFKA_TENANT_TOPIC_PREFIX": kafka.tenant_topic_prefix,
        "CALLVAULT_INGEST_APP_ID": prefix,
        "CALLVAULT_INGEST_WEB_PORT": "0",
        "CALLVAULT_INGEST_METRICS_PORT": "0",
        "CALLVAULT_INGEST_INLINE_MAX_BYTES": str(inline_max_bytes),
        **(env or {}),
    }
    log_path.unlink(missing_ok=True)
    pipe = Pipeline(kafka=kafka, storage=storage, engine=engine, store=ObjectStore.from_settings(storage),
                    env=worker_env, log_path=log_path, inline_max_bytes=inline_max_bytes)
    try:
        yield pipe
    finally:
        pipe.stop_worker()
        engine.dispose()
        asyncio.run(drop_topics(bootstrap, prefix))


def service_env(storage: StorageSettings, catalog_url: str) -> dict[str, str]:
    """Environment for a callvault process using these storage settings and this catalog."""
    return {
        **os.environ,
        "CALLVAULT_STORAGE_ENDPOINT_URL": storage.endpoint_url or "",
        "CALLVAULT_STORAGE_REGION": storage.region or "",
        "CALLVAULT_STORAGE_ACCESS_KEY": storage.access_key.get_secret_value(),
        "CALLVAULT_STORAGE_SECRET_KEY": storage.secret_key.get_secret_value(),
        "CALLVAULT_STORAGE_MASTER_KEY": storage.master_key.get_secret_value(),
        "CALLVAULT_STORAGE_RECORDINGS_BUCKET": storage.recordings_bucket,
        "CALLVAULT_STORAGE_LANDING_BUCKET": storage.landing_bucket,
        "CALLVAULT_STORAGE_EXPORTS_BUCKET": storage.exports_bucket,
        "CALLVAULT_STORAGE_LEDGER_BUCKET": storage.ledger_bucket,
        "CALLVAULT_STORAGE_LEDGER_PREFIX": storage.ledger_prefix,
        "CALLVAULT_STORAGE_LEDGER_RETENTION_DAYS": str(storage.ledger_retention_days),
        "CALLVAULT_CATALOG_URL": catalog_url,
    }


async def group_assignments(pipeline: Pipeline) -> tuple[str, list[set[int]]]:
    """The group's state and, per member, the recordings partitions assigned to it."""
    group = pipeline.env["CALLVAULT_INGEST_APP_ID"]
    admin = AIOKafkaAdminClient(bootstrap_servers=pipeline.kafka.bootstrap_servers)
    await admin.start()
    try:
        [response] = await admin.describe_consumer_groups([group])
        [(_err, _group, state, _ptype, _protocol, members, *_)] = response.groups
        assigned = []
        for member in members:
            assignment = member[4]
            parts: set[int] = set()
            if assignment:
                decoded = ConsumerProtocolMemberAssignment.decode(assignment)
                parts = {p for topic, ps in decoded.assignment if topic == pipeline.kafka.recordings_topic
                         for p in ps}
            assigned.append(parts)
        return state, assigned
    finally:
        await admin.close()


def wait_for_members(pipeline: Pipeline, members: int, timeout: float = 90.0) -> None:
    """Until the workers' group is stable with ``members`` members holding every recordings partition
    between them (faust's assignor gave 3 members of 4 partitions 2, 2 and none)."""
    deadline = time.monotonic() + timeout
    while True:
        state, assigned = asyncio.run(group_assignments(pipeline))
        if (state == "Stable" and len(assigned) == members  # faust may leave a member without one
                and set().union(*assigned) == set(range(pipeline.kafka.partitions))):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"the group never balanced over {members} workers: {state} {assigned}")
        time.sleep(0.5)
