"""Kafka security settings and per-tenant topic names (pure: no broker)."""

import ssl

import pytest
from pydantic import SecretStr, ValidationError

from ingest.kafka_client import client_options
from ingest.settings import KafkaSettings


def test_a_tenant_topic_is_named_from_the_tenant_and_parses_back() -> None:
    kafka = KafkaSettings()
    assert kafka.tenant_topic("acme") == "callvault.tenant.acme.recordings"
    assert kafka.tenant_of("callvault.tenant.acme.recordings") == "acme"
    assert kafka.tenant_of("callvault.tenant.a-1.recordings") == "a-1"


@pytest.mark.parametrize("topic", ["callvault.recordings", "callvault.recordings.dlq", "callvault.events",
                                   "callvault.tenant..recordings", "callvault.tenant.a.b.recordings",
                                   "callvault.tenant.Acme.recordings", "callvault.tenant.acme.recordings.dlq"])
def test_no_other_topic_passes_for_a_tenant_topic(topic: str) -> None:
    assert KafkaSettings().tenant_of(topic) is None


def test_a_shared_topic_named_like_a_tenant_topic_is_refused() -> None:
    with pytest.raises(ValidationError, match="per-tenant topic"):
        KafkaSettings(dlq_topic="callvault.tenant.acme.recordings")


def test_a_tenant_that_is_not_a_slug_has_no_topic() -> None:
    with pytest.raises(ValueError):
        KafkaSettings().tenant_topic("acme.recordings.dlq")


def test_producers_use_the_tenant_topic_only_when_asked() -> None:
    assert KafkaSettings().topic_for("acme") == "callvault.recordings"
    assert KafkaSettings(per_tenant_topics=True).topic_for("acme") == "callvault.tenant.acme.recordings"


def test_sasl_ssl_needs_credentials() -> None:
    with pytest.raises(ValidationError, match="SASL_USERNAME"):
        KafkaSettings(security_protocol="SASL_SSL")


def test_client_options_carry_sasl_and_tls() -> None:
    plain = client_options(KafkaSettings(bootstrap_servers="b:1"))
    assert plain == {"bootstrap_servers": "b:1", "security_protocol": "PLAINTEXT"}
    sasl = client_options(KafkaSettings(security_protocol="SASL_SSL", sasl_username="u", sasl_password=SecretStr("p")))
    assert (sasl["security_protocol"], sasl["sasl_mechanism"], sasl["sasl_plain_username"],
            sasl["sasl_plain_password"]) == ("SASL_SSL", "SCRAM-SHA-512", "u", "p")
    assert isinstance(sasl["ssl_context"], ssl.SSLContext)
