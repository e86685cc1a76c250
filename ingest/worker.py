"""The faust app: consume ``callvault.recordings``, store, emit events, dead-letter rejects.

Delivery is at least once and nothing is lost:

- a message the sender got wrong (``IngestError``) goes to the dead-letter topic, in
  quarantine (``ingest.sealing``): the original encrypted under a key of its own, kept in the
  catalog and filed under the caller's number, so an erasure of that number purges it; its
  reason code, tenant and a PII-free message in the headers; the worker moves on;
- a failure of ours or of a server (object store, database down) is retried with backoff,
  forever, without acknowledging the event, so its offset is never committed;
- an unexpected exception (a bug) is retried a few times, then dead-lettered as
  ``internal_error`` (the message is kept whole there, ready to be replayed);
- the offset of an event is committed only after its recording is durably stored (or its
  dead-letter record is acknowledged by Kafka), because faust commits acknowledged events
  only, and an event is acknowledged when the agent has finished with it.

Logs carry recording ids and reason codes, never a phone number or audio.

Besides the shared topic, the worker reads every per-tenant topic (``callvault.tenant.<tenant>
.recordings``; found every ``CALLVAULT_KAFKA_TENANT_TOPICS_REFRESH_SECONDS``, so a tenant granted
while it runs is picked up within seconds), and there takes the tenant from the topic, which
only that tenant's principal may write: a body naming another is dead-lettered ``tenant_mismatch``.

Before the first message is handled, the erasure ledger is replayed (``lifecycle.erasures``),
so a catalog restored from a backup never revives an erased caller.

The pieces: ``ingest.runtime`` (what the worker is given, its thread pool, the ledger replay at
start), ``ingest.retry`` (the one backoff), ``ingest.agents`` (the batch agent),
``ingest.dead_letters`` (the dead-letter sender), ``ingest.drop_agent`` (objects dropped in the
landing bucket), ``ingest.background`` (start, per-tenant topics, sweep timer). This module
assembles them into a faust app; ``callvault.bootstrap`` builds the dependencies.
"""


from __future__ import annotations

from dataclasses import dataclass

import faust

from core.config import callvault_home

from .agents import BatchAgent
from .background import StartUp, SweepTimer, TenantTopicFollower
from .dead_letters import DeadLetterSender
from .drop_agent import DropAgent
from .kafka_client import faust_credentials
from .kafka_transport import App
from .runtime import WorkerDeps, WorkerRuntime
from .settings import IngestSettings, KafkaSettings
from .topics import topic_configs


@dataclass
class Topics:
    recordings: faust.TopicT
    dlq: faust.TopicT
    events: faust.TopicT
    drops: faust.TopicT  # the landing bucket's notifications (``ingest.drop``)


def _faust_app(kafka: KafkaSettings, settings: IngestSettings) -> faust.App:
    return App(
        settings.app_id,
        broker=f"kafka://{kafka.bootstrap_servers}",
        broker_credentials=faust_credentials(kafka),
        store="memory://",
        datadir=str(callvault_home() / "faust"),
        topic_partitions=kafka.partitions,
        consumer_auto_offset_reset="earliest",
        web_enabled=settings.web_port > 0,
        web_port=settings.web_port or 6066,
        web_host="127.0.0.1",
        web_bind=settings.metrics_host,  # faust's default is every address
        producer_max_request_size=17 * 1024 * 1024,  # a dead letter: the largest message, quarantined
        producer_acks=-1,
        broker_commit_every=100,
        broker_commit_interval=1.0,
    )


def _topics(app: faust.App, kafka: KafkaSettings) -> Topics:
    configs = topic_configs(kafka)
    topics = Topics(*(app.topic(name, key_serializer="raw", value_serializer="raw", partitions=kafka.partitions,
                                internal=True, config=configs[name])
                      for name in (kafka.recordings_topic, kafka.dlq_topic, kafka.events_topic)),
                    drops=app.topic(kafka.drop_topic, key_serializer="raw", value_serializer="raw", internal=True,
                                    config=configs[kafka.drop_topic]))
    # One list shared by the recordings topic and the agent's clones of it (faust copies the
    # reference): per-tenant topics are appended as they appear (faust 0.15's `pattern=` subscribes
    # to nothing), and a short lock makes the resubscription follow within a second or so.
    topics.recordings.topics = [kafka.recordings_topic]
    app.topics._resubscribe_sleep_lock_seconds = 1.0  # noqa: SLF001 - faust default 45 s
    return topics


def create_app(deps: WorkerDeps) -> faust.App:
    """The faust app of the worker, on ``deps`` (``callvault.bootstrap.build_worker_deps``)."""
    kafka, settings = deps.kafka, deps.settings
    app = _faust_app(kafka, settings)
    topics = _topics(app, kafka)
    runtime = WorkerRuntime(deps)
    dead_letters = DeadLetterSender(runtime, topics.dlq)
    app.agent(topics.recordings, name="callvault.ingest")(BatchAgent(runtime, topics.events, dead_letters).consume)
    app.agent(topics.drops, name="callvault.drop")(DropAgent(runtime, dead_letters).consume)
    app.task(StartUp(runtime, [topics.dlq, topics.events]).run)
    app.task(TenantTopicFollower(app, topics.recordings.topics, runtime).run)
    if settings.sweep_interval_seconds > 0:
        sweeper = SweepTimer(runtime, topics.events)
        app.timer(settings.sweep_interval_seconds, on_leader=True, name="callvault.sweep")(sweeper.run)
    app.callvault_topics = topics  # for tests
    return app


def run_worker(deps: WorkerDeps, loglevel: str = "info") -> None:
    """``callvault worker``: start the faust worker in this process until interrupted."""
    from faust.worker import Worker

    Worker(create_app(deps), loglevel=loglevel, quiet=True).execute_from_commandline()
