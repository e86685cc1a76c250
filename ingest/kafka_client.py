"""How every callvault Kafka client connects: one place builds the aiokafka options.

The producer (``callvault push``), the topic and dead-letter tools, the demo, the admin
operations and the faust worker all take their security options from ``client_options``,
so turning on SASL_SSL is one setting for all of them:

    PLAINTEXT   the embedded demo only: the local broker's loopback listener
    SSL         TLS; with ``ssl_certfile``/``ssl_keyfile``, mutual TLS (principal from the cert)
    SASL_SSL    TLS + SCRAM (``sasl_username``/``sasl_password``)

aiokafka's connection and authorization errors are translated here (``kafka_errors``) into
``KafkaAccessError``, which names the listener and the setting to check.
"""

from __future__ import annotations

import ssl
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, AsyncIterator

from aiokafka import errors as kerrors
from aiokafka.helpers import create_ssl_context

from core.errors import ConfigurationError

from .exceptions import KafkaAccessError
from .settings import KafkaSettings

CREDENTIALS_HINT = "check CALLVAULT_KAFKA_SASL_USERNAME/PASSWORD"


def client_options(kafka: KafkaSettings) -> dict[str, Any]:
    """The keyword arguments of AIOKafkaProducer/Consumer/AdminClient for these settings."""
    options: dict[str, Any] = {"bootstrap_servers": kafka.bootstrap_servers,
                               "security_protocol": kafka.security_protocol}
    if kafka.security_protocol in ("SSL", "SASL_SSL"):
        options["ssl_context"] = _ssl_context(kafka)
    if kafka.security_protocol == "SASL_SSL":
        options.update(sasl_mechanism=kafka.sasl_mechanism, sasl_plain_username=kafka.sasl_username,
                       sasl_plain_password=kafka.sasl_password.get_secret_value() if kafka.sasl_password else None)
    return options


def _ssl_context(kafka: KafkaSettings) -> ssl.SSLContext:
    """The TLS context; a CA, certificate or key file that is missing or unreadable is named with its setting."""
    for setting, path in (("CALLVAULT_KAFKA_SSL_CAFILE", kafka.ssl_cafile),
                          ("CALLVAULT_KAFKA_SSL_CERTFILE", kafka.ssl_certfile),
                          ("CALLVAULT_KAFKA_SSL_KEYFILE", kafka.ssl_keyfile)):
        if path and not Path(path).is_file():
            raise ConfigurationError(setting, f"{str(path)!r} is not a file",
                                     hint="`callvault stack env` prints the local stack's CA")
    try:
        return create_ssl_context(cafile=str(kafka.ssl_cafile) if kafka.ssl_cafile else None,
                                  certfile=str(kafka.ssl_certfile) if kafka.ssl_certfile else None,
                                  keyfile=str(kafka.ssl_keyfile) if kafka.ssl_keyfile else None)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigurationError("CALLVAULT_KAFKA_SSL_CAFILE/_CERTFILE/_KEYFILE",
                                 f"cannot be loaded: {getattr(exc, 'reason', None) or exc}",
                                 hint="PEM files: the CA that signed the broker, the client's certificate and key") from None


def faust_credentials(kafka: KafkaSettings):
    """The same options as faust's ``broker_credentials`` (None: PLAINTEXT)."""
    import faust
    from faust.types.auth import SASLMechanism

    options = client_options(kafka)
    if kafka.security_protocol == "SASL_SSL":
        return faust.SASLCredentials(username=options["sasl_plain_username"],
                                     password=options["sasl_plain_password"],
                                     ssl_context=options["ssl_context"],
                                     mechanism=SASLMechanism(options["sasl_mechanism"]))
    if kafka.security_protocol == "SSL":
        return faust.SSLCredentials(options["ssl_context"])
    return None


def describe(kafka: KafkaSettings) -> str:
    who = f" as {kafka.sasl_username}" if kafka.security_protocol == "SASL_SSL" else ""
    return f"the Kafka listener {kafka.security_protocol}://{kafka.bootstrap_servers}{who}"


def access_error(kafka: KafkaSettings, exc: BaseException) -> KafkaAccessError | None:
    """Our error for an aiokafka failure to connect, authenticate or be authorized; None otherwise."""
    where = describe(kafka)
    text = str(exc)
    if isinstance(exc, kerrors.SaslAuthenticationFailed) or "Authentication failed" in text \
            or "SaslAuthenticat" in type(exc).__name__:
        return KafkaAccessError(f"{where} refused the credentials", hint=CREDENTIALS_HINT)
    if isinstance(exc, (kerrors.TopicAuthorizationFailedError, kerrors.GroupAuthorizationFailedError,
                        kerrors.ClusterAuthorizationFailedError)):
        return KafkaAccessError(f"{where} is not authorized: {type(exc).__name__} ({exc})",
                                hint="an operator grants it with `callvault kafka grant-telephony`")
    if isinstance(exc, ssl.SSLError):
        return KafkaAccessError(f"TLS with {where} failed: {exc.reason or type(exc).__name__}",
                                hint="check CALLVAULT_KAFKA_SSL_CAFILE (the CA that signed the broker certificate)")
    if isinstance(exc, OSError):  # after ssl.SSLError (an OSError too): what a broker asked directly said
        return KafkaAccessError(f"cannot connect to {where}: {exc.strerror or exc}",
                                hint="is the broker up? check CALLVAULT_KAFKA_BOOTSTRAP_SERVERS")
    if isinstance(exc, (kerrors.KafkaConnectionError, kerrors.UnrecognizedBrokerVersion, kerrors.NoBrokersAvailable)):
        hint = (f"a SASL_SSL listener refuses clients that do not authenticate; {CREDENTIALS_HINT}"
                if kafka.security_protocol != "SASL_SSL" else f"is it up? {CREDENTIALS_HINT}")
        return KafkaAccessError(f"cannot connect to {where}: {type(exc).__name__}", hint=hint)
    return None


@asynccontextmanager
async def kafka_errors(kafka: KafkaSettings) -> AsyncIterator[None]:
    """Translate aiokafka's connection/authorization errors into ``KafkaAccessError``."""
    try:
        yield
    except KafkaAccessError:
        raise
    except Exception as exc:
        diagnosed = None
        if isinstance(exc, kerrors.KafkaConnectionError):
            # aiokafka's bootstrap error hides why (refused credentials, TLS); ask one broker directly.
            diagnosed = await _diagnose(kafka)
        # The diagnosis when it tells more; else the bootstrap error itself (a refused connection).
        ours = (diagnosed is not None and access_error(kafka, diagnosed)) or access_error(kafka, exc)
        if ours is None:
            raise
        raise ours from exc


async def _diagnose(kafka: KafkaSettings) -> BaseException | None:
    from aiokafka.conn import create_conn

    host, _, port = kafka.bootstrap_servers.split(",")[0].strip().rpartition(":")
    options = {k: v for k, v in client_options(kafka).items() if k != "bootstrap_servers"}
    try:
        conn = await create_conn(host, int(port), request_timeout_ms=10000, **options)
    except Exception as exc:  # noqa: BLE001 - this is the answer we are after
        return exc
    conn.close()
    return None
