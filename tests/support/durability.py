"""Watching a real worker ingest a batch of calls, and the invariants of "stored exactly once"
(``assert_stored_exactly_once``): what the durability tests and the fault suite check after a
worker, broker or store dies mid-batch. See ``tests/integration/test_ingest_durability.py``."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import sqlalchemy as sa
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from ingest.producer import Call
from ingest.service import recording_uuid
from lifecycle.reconcile import reconcile
from storage.catalog import tables as t
from storage.copies import object_key_for, read_copy
from storage.keys import KeyRing
from testbed.audio import sine_wav
from testbed.pipeline import Pipeline, decode_record, group_assignments  # noqa: F401 - re-exported

NOW = datetime.now(timezone.utc).replace(microsecond=0)
# faust reads these from the environment (no prefix): a dead member leaves the group after 10 s.
FAST_FAILOVER = {"BROKER_SESSION_TIMEOUT": "10", "BROKER_HEARTBEAT_INTERVAL": "1"}
DONE_TIMEOUT = 100.0  # from the kill to "every call has an outcome and the group lag is 0"


# -- calls ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Batch:
    calls: list[Call]
    durations_ms: dict[str, int]  # external id -> expected duration

    @property
    def ids(self) -> set[str]:
        return set(self.durations_ms)


def make_batch(n: int, prefix: str) -> Batch:
    """``n`` short calls with distinct ids, tones and durations (1, 1.5, 2 s); every 10th lasts 5 s
    (80 KB: over the 64 KiB inline limit, so it travels by claim check through the landing bucket).
    20 callers in three spellings, so first calls from one number also race for its caller key."""
    calls, durations = [], {}
    spellings = ("06 12 34 56 {:02d}", "+33 6 12 34 56 {:02d}", "06.12.34.56.{:02d}")
    for i in range(n):
        seconds = 5.0 if i % 10 == 9 else (1.0, 1.5, 2.0)[i % 3]
        external_id = f"{prefix}-{i:03d}"
        calls.append(Call(audio=sine_wav(seconds, freqs=(300.0 + 7 * i,)), tenant="acme",
                          agent_id=f"agent-{i % 5}", caller_number=spellings[i % 3].format(i % 20),
                          started_at=NOW - timedelta(minutes=30, seconds=i), recording_id=external_id,
                          team_id="team-a"))
        durations[external_id] = int(seconds * 1000)
    return Batch(calls, durations)


# -- Kafka observation ----------------------------------------------------------------------------
async def _consumer(pipeline: Pipeline) -> AIOKafkaConsumer:
    consumer = AIOKafkaConsumer(bootstrap_servers=pipeline.kafka.bootstrap_servers, enable_auto_commit=False,
                                auto_offset_reset="earliest")
    await consumer.start()
    return consumer


async def _read_outputs(pipeline: Pipeline) -> list[dict]:
    """Every record on the events and dead-letter topics, in order within each partition."""
    admin = AIOKafkaAdminClient(bootstrap_servers=pipeline.kafka.bootstrap_servers)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
    finally:
        await admin.close()
    # The worker declares both topics with the recordings topic's partition count.
    tps = [TopicPartition(topic, p) for topic in (pipeline.kafka.events_topic, pipeline.kafka.dlq_topic)
           if topic in existing for p in range(pipeline.kafka.partitions)]
    if not tps:
        return []
    consumer = await _consumer(pipeline)
    try:
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        end = await consumer.end_offsets(tps)
        out: list[dict] = []
        deadline = time.monotonic() + 30
        while any([await consumer.position(tp) < end[tp] for tp in tps]):
            assert time.monotonic() < deadline, "could not read the events topic to its end"
            for records in (await consumer.getmany(*tps, timeout_ms=500)).values():
                out.extend({**decode_record(r, pipeline.kafka.dlq_topic), "_partition": r.partition,
                            "_offset": r.offset, "_topic": r.topic} for r in records)
        return out
    finally:
        await consumer.stop()


def read_outputs(pipeline: Pipeline) -> list[dict]:
    return asyncio.run(_read_outputs(pipeline))


async def group_lag(pipeline: Pipeline) -> int:
    """Messages of the recordings topic not yet committed by the workers' consumer group."""
    group = pipeline.env["CALLVAULT_INGEST_APP_ID"]
    admin = AIOKafkaAdminClient(bootstrap_servers=pipeline.kafka.bootstrap_servers)
    await admin.start()
    consumer = await _consumer(pipeline)
    try:
        committed = await admin.list_consumer_group_offsets(group)
        tps = [TopicPartition(pipeline.kafka.recordings_topic, p) for p in range(pipeline.kafka.partitions)]
        end = await consumer.end_offsets(tps)
        lag = 0
        for tp in tps:
            meta = committed.get(tp)
            lag += end[tp] - (meta.offset if meta is not None and meta.offset >= 0 else 0)
        return lag
    finally:
        await consumer.stop()
        await admin.close()


def log_tail(path: Path, chars: int = 3000) -> str:
    return path.read_text(errors="replace")[-chars:] if path.exists() else "(no log)"


def check_alive(workers: dict[str, tuple[subprocess.Popen, Path]]) -> None:
    for name, (proc, log) in workers.items():
        if proc.poll() is not None:
            raise AssertionError(f"worker {name} exited ({proc.returncode}):\n{log_tail(log)}")


def wait_for_stored(pipeline: Pipeline, at_least: int, workers: dict[str, tuple[subprocess.Popen, Path]],
                    timeout: float = 90.0) -> int:
    """Poll the events topic (100 ms) until ``at_least`` ``stored`` events are there; return how many."""
    async def run() -> int:
        consumer = AIOKafkaConsumer(pipeline.kafka.events_topic, bootstrap_servers=pipeline.kafka.bootstrap_servers,
                                    auto_offset_reset="earliest", enable_auto_commit=False)
        await consumer.start()
        try:
            stored = 0
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                for records in (await consumer.getmany(timeout_ms=100)).values():
                    stored += sum(decode_record(r, "").get("type") == "stored" for r in records)
                if stored >= at_least:
                    return stored
                check_alive(workers)
            raise AssertionError(f"only {stored} stored events after {timeout}s:\n"
                                 + "\n".join(f"--- {n}\n{log_tail(log)}" for n, (_p, log) in workers.items()))
        finally:
            await consumer.stop()
    return asyncio.run(run())


def wait_until_done(pipeline: Pipeline, batch: Batch, workers: dict[str, tuple[subprocess.Popen, Path]],
                    timeout: float = DONE_TIMEOUT) -> list[dict]:
    """Until every call has an outcome event and the group has committed the whole topic.

    If the group has committed everything but calls still have no outcome, their messages were
    committed without being processed (lost): fail fast, naming them."""
    deadline = time.monotonic() + timeout
    committed_all_since: float | None = None
    while True:
        check_alive(workers)
        outputs = read_outputs(pipeline)
        done = {e["external_id"] for e in outputs if e.get("type") in {"stored", "duplicate"}}
        dead = [e for e in outputs if e.get("type") == "dead-letter"]
        assert not dead, f"dead-lettered: {[(d['reason'], d['error']) for d in dead]}"
        lag = asyncio.run(group_lag(pipeline))
        missing = batch.ids - done
        if lag == 0 and not missing:
            return outputs
        if lag == 0:
            committed_all_since = committed_all_since or time.monotonic()
            if time.monotonic() - committed_all_since > 15:
                raise AssertionError(f"the group committed every offset but {len(missing)} calls never got an "
                                     f"outcome (lost): {sorted(missing)}")
        else:
            committed_all_since = None
        if time.monotonic() > deadline:
            raise AssertionError(f"not done after {timeout}s: lag={lag}, {len(missing)} calls without outcome "
                                 f"{sorted(missing)[:10]}\n"
                                 + "\n".join(f"--- {n}\n{log_tail(log)}" for n, (_p, log) in workers.items()))
        time.sleep(1.0)


# -- the invariants -------------------------------------------------------------------------------
def assert_stored_exactly_once(pipeline: Pipeline, batch: Batch, outputs: list[dict]) -> dict[str, int]:
    n = len(batch.calls)
    bucket = pipeline.storage.recordings_bucket
    with pipeline.engine.connect() as conn:
        rows = {r.external_id: r for r in conn.execute(sa.select(t.recordings))}
        copies = conn.execute(sa.select(t.copies)).mappings().all()
    assert len(rows) == n and set(rows) == batch.ids, f"recordings: {len(rows)} rows for {n} calls"
    assert len(copies) == n, f"copies: {len(copies)} rows for {n} calls"
    copy_by_recording = {c["recording_id"]: c for c in copies}
    assert len(copy_by_recording) == n  # one copy per recording
    for external_id, row in rows.items():
        assert row.id == recording_uuid("acme", external_id)
        copy = copy_by_recording[row.id]
        assert copy["tier"] == "production" and copy["bucket"] == bucket
        assert copy["object_key"] == object_key_for("acme", row.id, "production")
        assert abs(row.duration_ms - batch.durations_ms[external_id]) < 60, (external_id, row.duration_ms)
    copy_keys = {c["object_key"] for c in copies}

    # The bucket: exactly the catalogued objects; older versions only under those keys (a call
    # stored again after a crash between its upload and its commit), never a delete marker.
    objects = [o.key for o in pipeline.store.list(bucket)]
    assert len(objects) == n and set(objects) == copy_keys, f"{len(objects)} objects for {n} copies"
    versions = pipeline.store.client.list_object_versions(Bucket=bucket)
    assert not versions.get("DeleteMarkers")
    version_keys = [v["Key"] for v in versions.get("Versions", [])]
    assert set(version_keys) == copy_keys
    report = reconcile(pipeline.engine, pipeline.store, bucket, repair=False, grace=timedelta(0))
    assert report.clean, report.summary()
    assert report.objects_seen == report.rows_seen == n

    keys = KeyRing.from_settings(pipeline.storage)
    with pipeline.engine.connect() as conn:
        for copy in copies:
            assert read_copy(conn, pipeline.store, keys, copy["id"])[:4] == b"OggS"

    assert list(pipeline.store.list(pipeline.storage.landing_bucket)) == []  # claim checks cleaned up
    assert not [e for e in outputs if e.get("type") == "dead-letter"]

    # Events: per call, one `stored` (with the catalogued copy), then only `duplicate`s.
    per_call: dict[str, list[dict]] = defaultdict(list)
    for e in sorted(outputs, key=lambda e: (e["_topic"], e["_partition"], e["_offset"])):
        per_call[e["external_id"]].append(e)
    assert set(per_call) == batch.ids
    bad, no_stored_event = {}, []
    for external_id, events in per_call.items():
        types = [e["type"] for e in events]
        if set(types) == {"duplicate"}:
            # The worker died after the catalog commit, before Kafka acknowledged `stored`: the
            # redelivery's `duplicate` repeats what was stored, so consumers still learn it.
            no_stored_event.append(external_id)
            row = rows[external_id]
            assert events[0]["copy_id"] == str(copy_by_recording[row.id]["id"]), events[0]
            assert events[0]["duration_ms"] == row.duration_ms and events[0]["expires_at"]
            continue
        if types[0] != "stored" or types.count("stored") != 1 or set(types[1:]) - {"duplicate"}:
            bad[external_id] = types
            continue
        stored = events[0]
        row = rows[external_id]
        assert stored["recording_id"] == str(row.id)
        assert stored["copy_id"] == str(copy_by_recording[row.id]["id"])
    assert not bad, f"calls whose events are not exactly one `stored` then `duplicate`s: {bad}"
    counts = {"stored": n, "duplicates": sum(len(v) - 1 for v in per_call.values())}
    counts["duplicate_only"] = len(no_stored_event)
    return counts
