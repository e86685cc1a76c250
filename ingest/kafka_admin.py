"""Kafka principals and ACLs: a tenant's telephony may write its own topic, and nothing else.

The broker binds a producer to its tenant: each tenant has a recordings topic of its own
(``callvault.tenant.<tenant>.recordings``) and a SCRAM principal (``telephony-<tenant>`` or
any name an operator chooses) allowed WRITE and DESCRIBE on that topic only (LITERAL ACLs).
The worker takes the tenant of such a message from the topic, not from the body.

Everything goes through the Kafka admin API (no Java tools), so it works against any
deployment the configured settings reach, with a super-user principal (``callvault-worker``)
or, on the local stack, the loopback PLAINTEXT listener. aiokafka 0.14 has the ACL requests
but not the SCRAM ones (KIP-554): those two are declared here from the Kafka protocol spec.
Every operation is idempotent: topics and ACLs that exist are left, a user that exists keeps
its password unless a new one is given.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from dataclasses import dataclass
from typing import TypeAlias

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.protocol.admin import CreateAclsRequest
from aiokafka.protocol.api import Request, RequestStruct, Response
from aiokafka.protocol.types import (
    CompactArray,
    CompactBytes,
    CompactString,
    Int8,
    Int16,
    Int32,
    Schema,
    TaggedFields,
)

from core.errors import CallvaultError

from .kafka_client import client_options, kafka_errors
from .settings import KafkaSettings
from .topics import topic_configs

SCRAM_MECHANISMS = {"SCRAM-SHA-256": (1, "sha256"), "SCRAM-SHA-512": (2, "sha512")}
SCRAM_ITERATIONS = 8192
RESOURCE_NOT_FOUND = 91
# org.apache.kafka.common.acl / resource codes
TOPIC, LITERAL, ALLOW = 2, 3, 3
WRITE, DESCRIBE = 4, 8
OPERATIONS = {"WRITE": WRITE, "DESCRIBE": DESCRIBE}


class KafkaAdminError(CallvaultError):
    code = "kafka_admin_failed"


# -- KIP-554 requests (flexible versions) ------------------------------------------------
class DescribeUserScramCredentialsResponse_v0(Response):
    API_KEY = 50
    API_VERSION = 0
    SCHEMA = Schema(
        ("throttle_time_ms", Int32), ("error_code", Int16), ("error_message", CompactString("utf-8")),
        ("results", CompactArray(
            ("user", CompactString("utf-8")), ("error_code", Int16), ("error_message", CompactString("utf-8")),
            ("credential_infos", CompactArray(("mechanism", Int8), ("iterations", Int32), ("tags", TaggedFields))),
            ("tags", TaggedFields))),
        ("tags", TaggedFields))


class DescribeUserScramCredentialsRequest_v0(RequestStruct):
    FLEXIBLE_VERSION = True
    API_KEY = 50
    API_VERSION = 0
    RESPONSE_TYPE = DescribeUserScramCredentialsResponse_v0
    SCHEMA = Schema(("users", CompactArray(("name", CompactString("utf-8")), ("tags", TaggedFields))),
                    ("tags", TaggedFields))


class DescribeUserScramCredentialsRequest(Request[DescribeUserScramCredentialsRequest_v0]):
    API_KEY = 50

    def __init__(self, users: list[str]) -> None:
        self.users = users

    def build(self, request_struct_class: type[DescribeUserScramCredentialsRequest_v0]) -> RequestStruct:
        return request_struct_class([(name, {}) for name in self.users], {})


class AlterUserScramCredentialsResponse_v0(Response):
    API_KEY = 51
    API_VERSION = 0
    SCHEMA = Schema(
        ("throttle_time_ms", Int32),
        ("results", CompactArray(("user", CompactString("utf-8")), ("error_code", Int16),
                                 ("error_message", CompactString("utf-8")), ("tags", TaggedFields))),
        ("tags", TaggedFields))


class AlterUserScramCredentialsRequest_v0(RequestStruct):
    FLEXIBLE_VERSION = True
    API_KEY = 51
    API_VERSION = 0
    RESPONSE_TYPE = AlterUserScramCredentialsResponse_v0
    SCHEMA = Schema(
        ("deletions", CompactArray(("name", CompactString("utf-8")), ("mechanism", Int8), ("tags", TaggedFields))),
        ("upsertions", CompactArray(("name", CompactString("utf-8")), ("mechanism", Int8), ("iterations", Int32),
                                    ("salt", CompactBytes), ("salted_password", CompactBytes),
                                    ("tags", TaggedFields))),
        ("tags", TaggedFields))


Upsertion: TypeAlias = tuple[str, int, int, bytes, bytes, dict]


class AlterUserScramCredentialsRequest(Request[AlterUserScramCredentialsRequest_v0]):
    API_KEY = 51

    def __init__(self, *, deletions: list[tuple[str, int]] = (), upsertions: list[Upsertion] = ()) -> None:
        self.deletions, self.upsertions = list(deletions), list(upsertions)

    def build(self, request_struct_class: type[AlterUserScramCredentialsRequest_v0]) -> RequestStruct:
        return request_struct_class([(n, m, {}) for n, m in self.deletions], self.upsertions, {})


def scram_upsertion(user: str, password: str, mechanism: str = "SCRAM-SHA-512") -> Upsertion:
    """The client computes the salted password (RFC 5802 Hi()); the password never travels."""
    code, digest = SCRAM_MECHANISMS[mechanism]
    salt = secrets.token_bytes(32)
    salted = hashlib.pbkdf2_hmac(digest, password.encode(), salt, SCRAM_ITERATIONS)
    return (user, code, SCRAM_ITERATIONS, salt, salted, {})


# -- operations -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Grant:
    tenant: str
    user: str
    topic: str
    password: str | None  # set when this call created or changed it: shown once, stored nowhere
    topic_created: bool
    user_created: bool


class KafkaAdmin:
    """An admin connection with the configured credentials; an async context manager."""

    def __init__(self, kafka: KafkaSettings) -> None:
        self.kafka = kafka
        self._admin = AIOKafkaAdminClient(**client_options(kafka))

    async def __aenter__(self) -> "KafkaAdmin":
        async with kafka_errors(self.kafka):
            await self._admin.start()
        return self

    async def __aexit__(self, *exc) -> None:
        await self._admin.close()

    async def _send(self, request: Request) -> Response:
        async with kafka_errors(self.kafka):
            return await self._admin._send_request(request)  # noqa: SLF001 - aiokafka has no public hook

    async def scram_users(self, users: list[str]) -> set[str]:
        """The ones among ``users`` that have a SCRAM credential."""
        response = (await self._send(DescribeUserScramCredentialsRequest(users))).to_object()
        found = set()
        for result in response["results"]:
            if result["error_code"] == 0 and result["credential_infos"]:
                found.add(result["user"])
            elif result["error_code"] not in (0, RESOURCE_NOT_FOUND):
                raise KafkaAdminError(f"describing SCRAM user {result['user']}: {result['error_message']}")
        return found

    async def upsert_scram_user(self, user: str, password: str, mechanism: str = "SCRAM-SHA-512") -> None:
        await self._alter(AlterUserScramCredentialsRequest(upsertions=[scram_upsertion(user, password, mechanism)]))

    async def delete_scram_user(self, user: str, mechanism: str = "SCRAM-SHA-512") -> None:
        await self._alter(AlterUserScramCredentialsRequest(deletions=[(user, SCRAM_MECHANISMS[mechanism][0])]),
                          missing_ok=True)

    async def _alter(self, request: AlterUserScramCredentialsRequest, *, missing_ok: bool = False) -> None:
        for result in (await self._send(request)).to_object()["results"]:
            code = result["error_code"]
            if code and not (missing_ok and code == RESOURCE_NOT_FOUND):
                raise KafkaAdminError(f"SCRAM user {result['user']}: {result['error_message']} (error {code})")

    async def allow_on_topic(self, principal: str, topic: str, operations: list[str]) -> None:
        """LITERAL ALLOW ACLs for ``User:principal`` on one topic (creating an existing ACL is a no-op)."""
        for op in operations:
            response = (await self._send(CreateAclsRequest(TOPIC, topic, LITERAL, f"User:{principal}", "*",
                                                           OPERATIONS[op], ALLOW))).to_object()
            for result in response["creation_responses"]:
                if result["error_code"]:
                    raise KafkaAdminError(f"ACL {op} on {topic} for {principal}: {result['error_message']}")

    async def ensure_topic(self, name: str, partitions: int, configs: dict[str, str] | None = None) -> bool:
        async with kafka_errors(self.kafka):
            if name in set(await self._admin.list_topics()):
                return False
            await self._admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1,
                                                      topic_configs=configs or {})])
        return True

    async def delete_topics(self, names: list[str]) -> None:
        async with kafka_errors(self.kafka):
            await self._admin.delete_topics(names)


async def grant_telephony(kafka: KafkaSettings, *, tenant: str, user: str | None = None,
                          password: str | None = None, partitions: int | None = None) -> Grant:
    """Create (idempotently) the tenant's topic, its telephony principal and its ACLs.

    A new principal gets ``password`` or a generated one (returned once); an existing one
    keeps its password unless ``password`` is given (then it is changed)."""
    user = user or f"telephony-{tenant}"
    topic = kafka.tenant_topic(tenant)
    async with KafkaAdmin(kafka) as admin:
        # A tenant topic keeps messages as long as the shared one: ingest keys outlive it by a day.
        created = await admin.ensure_topic(topic, partitions or kafka.partitions,
                                           topic_configs(kafka)[kafka.recordings_topic])
        exists = user in await admin.scram_users([user])
        if password is None and not exists:
            password = secrets.token_urlsafe(24)
        if password is not None:
            await admin.upsert_scram_user(user, password, kafka.sasl_mechanism)
        await admin.allow_on_topic(user, topic, ["WRITE", "DESCRIBE"])
    return Grant(tenant=tenant, user=user, topic=topic, password=password, topic_created=created,
                 user_created=not exists)


def password_from_env(name: str = "CALLVAULT_KAFKA_GRANT_PASSWORD") -> str | None:
    return os.environ.get(name) or None
