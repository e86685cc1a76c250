"""Kafka security on the real broker's SASL_SSL listener: who may connect, who may write where,
and a tenant bound by its topic (per-tenant topics and telephony principals)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import urllib.request
import uuid
from datetime import datetime, timedelta, timezone
from typing import Iterator

import pytest
import sqlalchemy as sa
from pydantic import SecretStr

from deploy.local.stack import Stack
from ingest.exceptions import KafkaAccessError
from ingest.kafka_admin import Grant, KafkaAdmin, grant_telephony
from ingest.producer import Call, Producer
from ingest.schema import build_message
from ingest.settings import KafkaSettings
from storage.catalog import tables as t
from tests.audio_fixtures import sine_wav
from tests.conftest import unique

pytestmark = pytest.mark.integration
NOW = datetime.now(timezone.utc).replace(microsecond=0)


@pytest.fixture(scope="module")
def sasl_env(stack: Stack) -> dict[str, str]:
    """The super user's client settings for the SASL_SSL listener (as `callvault stack env` prints)."""
    return stack.kafka_client_env()


def settings_from(env: dict[str, str], **overrides) -> KafkaSettings:
    return KafkaSettings(**{"bootstrap_servers": env["CALLVAULT_KAFKA_BOOTSTRAP_SERVERS"],
                            "security_protocol": "SASL_SSL", "sasl_username": env["CALLVAULT_KAFKA_SASL_USERNAME"],
                            "sasl_password": SecretStr(env["CALLVAULT_KAFKA_SASL_PASSWORD"]),
                            "ssl_cafile": env["CALLVAULT_KAFKA_SSL_CAFILE"], **overrides})


@pytest.fixture
def tenants(sasl_env) -> Iterator[tuple[KafkaSettings, Grant, Grant]]:
    """Two tenants' topics and telephony principals under a prefix of this test's own; dropped after."""
    admin = settings_from(sasl_env, tenant_topic_prefix=f"{unique('auth')}.tenant.")
    suffix = uuid.uuid4().hex[:8]
    a = asyncio.run(grant_telephony(admin, tenant="acme", user=f"telephony-acme-{suffix}"))
    b = asyncio.run(grant_telephony(admin, tenant="globex", user=f"telephony-globex-{suffix}"))
    yield admin, a, b

    async def drop() -> None:
        async with KafkaAdmin(admin) as kafka:
            await kafka.delete_topics([a.topic, b.topic])
            for grant in (a, b):
                await kafka.delete_scram_user(grant.user)

    asyncio.run(drop())


def as_principal(admin: KafkaSettings, grant: Grant) -> KafkaSettings:
    return admin.model_copy(update={"sasl_username": grant.user, "sasl_password": SecretStr(grant.password),
                                    "per_tenant_topics": True})


def send(kafka: KafkaSettings, topic: str, value: bytes = b"{}") -> None:
    async def run() -> None:
        async with Producer(kafka, storage=None) as producer:  # type: ignore[arg-type] - inline only
            await producer.send_raw(b"k", value, topic=topic)
    asyncio.run(run())


def test_unauthenticated_clients_are_refused_with_a_clear_error(sasl_env, stack, tmp_path, pg_schema_url):
    wrong = settings_from(sasl_env, sasl_password=SecretStr("not-the-password"))
    with pytest.raises(KafkaAccessError) as refused:
        send(wrong, "callvault.recordings")
    assert "SASL_SSL://127.0.0.1" in str(refused.value) and "refused the credentials" in str(refused.value)
    assert "check CALLVAULT_KAFKA_SASL_USERNAME/PASSWORD" in str(refused.value)

    no_sasl = KafkaSettings(bootstrap_servers=sasl_env["CALLVAULT_KAFKA_BOOTSTRAP_SERVERS"])
    with pytest.raises(KafkaAccessError) as plain:
        send(no_sasl, "callvault.recordings")
    assert "cannot connect" in str(plain.value) and "CALLVAULT_KAFKA_SASL_USERNAME/PASSWORD" in str(plain.value)

    # The CLI: one line naming the listener and the settings to check, no traceback (push checks
    # its tenant in the catalog first, so the catalog has one).
    wav = tmp_path / "call.wav"
    wav.write_bytes(sine_wav(1.0))
    catalog = sa.create_engine(pg_schema_url)
    with catalog.begin() as conn:
        conn.execute(t.tenants.insert().values(id="acme", name="Acme", created_at=NOW))
    catalog.dispose()
    env = {**__import__("os").environ, **sasl_env, "CALLVAULT_KAFKA_SASL_PASSWORD": "not-the-password",
           "CALLVAULT_CATALOG_URL": pg_schema_url}
    done = subprocess.run([sys.executable, "-m", "callvault.cli", "push", str(wav), "--tenant", "acme", "--agent",
                           "a1", "--started-at", NOW.strftime("%Y-%m-%dT%H:%M:%S%z")],
                          env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1, done.stderr
    assert "refused the credentials" in done.stderr and "CALLVAULT_KAFKA_SASL_USERNAME/PASSWORD" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_telephony_principal_writes_its_own_tenant_topic_only(tenants):
    admin, a, b = tenants
    as_a = as_principal(admin, a)
    send(as_a, a.topic)  # its own
    for forbidden in (b.topic, admin.recordings_topic):
        with pytest.raises(KafkaAccessError) as denied:
            send(as_a, forbidden)
        assert "TopicAuthorizationFailed" in str(denied.value) and a.user in str(denied.value)


def test_grant_is_idempotent_and_keeps_the_password(tenants):
    admin, a, _b = tenants
    again = asyncio.run(grant_telephony(admin, tenant="acme", user=a.user))
    assert (again.topic_created, again.user_created, again.password) == (False, False, None)
    send(as_principal(admin, a), a.topic)  # the first password still works


def _metric(port: int, name: str, label: str) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    for line in text.splitlines():
        if line.startswith(name) and label in line:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_the_worker_over_sasl_ssl_takes_the_tenant_from_the_topic(pipeline, sasl_env):
    """(c) a body naming another tenant is dead-lettered tenant_mismatch and counted, nothing
    stored; (d) the principal's own calls are stored end to end. The tenant is granted while
    the worker runs: it must find the new topic by itself."""
    pipeline.stop_worker()
    prefix = pipeline.kafka.recordings_topic.removesuffix(".recordings")
    admin = settings_from(sasl_env, tenant_topic_prefix=f"{prefix}.tenant.", partitions=2)
    with pipeline.engine.begin() as conn:
        conn.execute(t.tenants.insert().values(id="globex", name="Globex", created_at=NOW))
    metrics_port = 19466 + uuid.uuid4().int % 500
    pipeline.env.update({**sasl_env, "CALLVAULT_KAFKA_TENANT_TOPIC_PREFIX": admin.tenant_topic_prefix,
                         "CALLVAULT_KAFKA_TENANT_TOPICS_REFRESH_SECONDS": "1",
                         "CALLVAULT_INGEST_METRICS_PORT": str(metrics_port)})
    pipeline.start_worker()
    user = f"telephony-acme-{uuid.uuid4().hex[:8]}"
    grant = asyncio.run(grant_telephony(admin, tenant="acme", user=user))  # while the worker runs
    as_a = as_principal(admin, grant)
    try:
        started = time.monotonic()

        async def push() -> None:
            async with Producer(as_a, pipeline.storage, inline_max_bytes=pipeline.inline_max_bytes,
                                seal_keys=pipeline.seal_keys) as producer:
                await producer.push(Call(audio=sine_wav(2.0), tenant="acme", agent_id="a1",
                                         caller_number="06 12 34 56 78", started_at=NOW - timedelta(minutes=5),
                                         recording_id="tel-own"))
                forged = build_message(recording_id="tel-forged", tenant="globex", started_at=NOW - timedelta(minutes=5),
                                       caller_number="06 12 34 56 78", agent_id="a1", audio=sine_wav(1.0),
                                       audio_format="wav")
                await producer.send_raw(b"tel-forged", forged.to_bytes(), topic=grant.topic)
        asyncio.run(push())

        records = pipeline.wait_for(lambda e: e.get("type") == "stored" or e.get("type") == "dead-letter", count=2,
                                    timeout=45)
        took = time.monotonic() - started
        by_kind = {e["type"]: e for e in records}
        assert by_kind["stored"]["tenant"] == "acme" and by_kind["stored"]["external_id"] == "tel-own"
        assert by_kind["dead-letter"]["reason"] == "tenant_mismatch" and by_kind["dead-letter"]["key"] == b"tel-forged"
        assert "globex" not in by_kind["dead-letter"]["error"] and "612345678" not in by_kind["dead-letter"]["error"]
        with pipeline.engine.connect() as conn:
            stored = conn.execute(sa.select(t.recordings.c.tenant_id, t.recordings.c.external_id)).all()
        assert [tuple(r) for r in stored] == [("acme", "tel-own")]  # nothing under globex
        assert _metric(metrics_port, "callvault_ingest_rejected_total", 'code="tenant_mismatch"') == 1.0
        assert took < 30, f"a tenant granted while the worker ran took {took:.0f}s to be served"
    finally:
        async def drop() -> None:
            async with KafkaAdmin(admin) as kafka:
                await kafka.delete_scram_user(user)
        asyncio.run(drop())
