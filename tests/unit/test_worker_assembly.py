"""The worker is assembled from the dependencies it is given (no broker, no server: nothing
connects until the app starts). Its behaviour runs against the real stack in the integration
tests (test_ingest_e2e, test_poison_message, test_dlq, the fault suite)."""

import base64
import os

import pytest
from pydantic import SecretStr

from callvault.bootstrap import build_worker_deps
from core.errors import ConfigurationError
from ingest.runtime import WorkerDeps, WorkerRuntime
from ingest.settings import IngestSettings, KafkaSettings
from ingest.worker import create_app
from storage.settings import StorageSettings


@pytest.fixture
def deps(tmp_path, monkeypatch) -> WorkerDeps:
    monkeypatch.setenv("CALLVAULT_HOME", str(tmp_path))
    storage = StorageSettings(master_key=SecretStr(base64.b64encode(os.urandom(32)).decode()))
    kafka = KafkaSettings(recordings_topic="t.recordings", dlq_topic="t.recordings.dlq", events_topic="t.events")
    return build_worker_deps(storage, f"sqlite:///{tmp_path}/catalog.db",
                             IngestSettings(concurrency=3, sweep_interval_seconds=60), kafka)


def test_the_composition_root_builds_the_workers_dependencies_without_connecting(deps):
    assert deps.settings.concurrency == 3 and deps.kafka.recordings_topic == "t.recordings"
    assert deps.ledger.bucket == deps.ingest.storage.ledger_bucket
    assert deps.anchors is None  # no anchor key configured
    assert WorkerRuntime(deps).pool._max_workers == 3 + 2  # noqa: SLF001 - calls in flight + bookkeeping


def test_calls_in_flight_follow_the_storage_format_unless_set(monkeypatch):
    monkeypatch.delenv("CALLVAULT_INGEST_CONCURRENCY", raising=False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: {0, 1, 2})
    assert IngestSettings(storage_format="passthrough").in_flight == 12  # I/O-bound: 4 per core
    assert IngestSettings(storage_format="opus").in_flight == 3  # encoder-bound: one per core
    assert IngestSettings(storage_format="flac").in_flight == 3
    assert IngestSettings(storage_format="passthrough", concurrency=5).in_flight == 5
    monkeypatch.setenv("CALLVAULT_INGEST_CONCURRENCY", "7")
    assert IngestSettings(storage_format="opus").in_flight == 7


def test_the_app_has_the_batch_agent_the_drop_agent_and_the_sweep_timer(deps):
    app = create_app(deps)
    assert list(app.agents) == ["callvault.ingest", "callvault.drop"]
    assert app.callvault_topics.drops.get_topic_name() == deps.kafka.drop_topic
    assert app.callvault_topics.recordings.topics == ["t.recordings"]
    assert {app.callvault_topics.dlq.get_topic_name(), app.callvault_topics.events.get_topic_name()} == {
        "t.recordings.dlq", "t.events"}
    assert len(app._app_tasks) == 3  # noqa: SLF001 - start-up, per-tenant topics, sweep timer


def test_the_health_port_listens_where_the_metrics_port_does(deps):
    """faust binds its web server to every address by default: the worker's listens on loopback
    unless the metrics host says otherwise (a container)."""
    assert create_app(deps).conf.web_bind == "127.0.0.1"
    deps.ingest.settings = IngestSettings(metrics_host="0.0.0.0")
    assert create_app(deps).conf.web_bind == "0.0.0.0"


def test_no_sweep_timer_when_the_interval_is_zero(deps):
    deps.ingest.settings = IngestSettings(sweep_interval_seconds=0)
    assert len(create_app(deps)._app_tasks) == 2  # noqa: SLF001


def test_a_refused_region_stops_the_worker_before_anything_is_built(tmp_path):
    storage = StorageSettings(region="us-east-1", master_key=SecretStr(base64.b64encode(os.urandom(32)).decode()))
    with pytest.raises(ConfigurationError, match="us-east-1"):
        build_worker_deps(storage, f"sqlite:///{tmp_path}/catalog.db", IngestSettings(), KafkaSettings())
