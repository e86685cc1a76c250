"""Bring the local stack up, down, or report on it.

``up`` installs what is missing (cached under ``$CALLVAULT_HOME``), starts what is not
running, and waits for each server to answer its own protocol. It is idempotent: a second
call finds everything running and returns at once, unless a server's configuration changed
(a newer callvault: Kafka's SASL_SSL listener), in which case that server is restarted once.
Generated secrets (MinIO root credentials, PostgreSQL password, the MinIO KMS key, the Kafka
SCRAM super user's password, the callvault master key) are written once to
``$CALLVAULT_HOME/callvault.toml`` (mode 0600) and never to the repository.
"""

from __future__ import annotations

import base64
import os
import secrets
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .servers import (
    KafkaServer,
    MinioServer,
    PortInUseError,
    PostgresServer,
    Server,
    ensure_ffmpeg,
    port_is_open,
)
from .settings import StackSettings

Say = Callable[[str], None]


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def _generated_sections(settings: StackSettings) -> dict[str, dict[str, object]]:
    """Fresh local secrets and the client settings that use them (only missing ones are kept)."""
    local = {
        "minio_root_user": "callvault",
        "minio_root_password": secrets.token_urlsafe(24),
        "minio_kms_key": base64.b64encode(secrets.token_bytes(32)).decode(),
        "postgres_password": secrets.token_urlsafe(24),
        "kafka_admin_password": secrets.token_urlsafe(24),
        "kafka_minio_password": secrets.token_urlsafe(24),  # MinIO's drop notifications (WRITE on one topic)
    }
    return {
        "local": local,
        "storage": {
            "endpoint_url": f"http://{settings.host}:{settings.minio_port}",
            "region": settings.minio_region,
            "access_key": local["minio_root_user"],
            "secret_key": local["minio_root_password"],
            "master_key": base64.b64encode(secrets.token_bytes(32)).decode(),
            "audit_anchor_key": base64.b64encode(secrets.token_bytes(32)).decode(),
        },
        "kafka": {"bootstrap_servers": f"{settings.host}:{settings.kafka_port}"},
        "access": {"jwt_secret": secrets.token_urlsafe(32)},
    }


_ADDED_CLIENT_SECRETS = {"storage": ("audit_anchor_key",)}


def ensure_local_config(settings: StackSettings) -> dict[str, str]:
    """Create the local secrets and client settings once (adding sections a newer callvault
    needs to an older file, never replacing a secret); return the server secrets."""
    path = settings.home / "callvault.toml"
    current: dict[str, dict[str, object]] = {}
    if path.exists():
        with path.open("rb") as fh:
            current = tomllib.load(fh)
    fresh = generated = _generated_sections(settings)
    if "local" in current:
        # The servers already run with the existing secrets: only add wholly missing sections,
        # and the local secrets a newer callvault introduced (never replacing one).
        added = {k: v for k, v in fresh["local"].items() if k not in current["local"]}
        fresh = {name: values for name, values in fresh.items() if name not in current}
        if added:
            fresh["local"] = {**current["local"], **added}
        # Client secrets a newer callvault introduced (the audit anchor key), never replacing one.
        for section, names in _ADDED_CLIENT_SECRETS.items():
            missing = {n: generated[section][n] for n in names if section in current and n not in current[section]}
            if missing:
                fresh[section] = {**current[section], **missing}
    if fresh:
        merged = {**current, **fresh}
        settings.home.mkdir(parents=True, exist_ok=True)
        lines = ["# Written by `callvault stack up` for the local stack. Secrets: keep out of version control."]
        for name, values in merged.items():
            lines.append(f"\n[{name}]")
            lines.extend(f"{key} = {_toml_value(val)}" for key, val in values.items())
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write("\n".join(lines) + "\n")
        current = merged
    return current["local"]  # type: ignore[return-value]


def postgres_url(settings: StackSettings, local: dict[str, str], database: str = "callvault") -> str:
    return (f"postgresql+psycopg://callvault:{local['postgres_password']}"
            f"@{settings.host}:{settings.postgres_port}/{database}")


@dataclass
class Stack:
    settings: StackSettings
    kafka: KafkaServer
    minio: MinioServer
    postgres: PostgresServer

    @classmethod
    def from_settings(cls, settings: StackSettings | None = None, *, instance: str = "") -> "Stack":
        """The stack these settings describe. A named ``instance`` is a second, independent set
        of servers (own names, pid files, logs and data; the installs are shared), which needs
        its own ports and PostgreSQL directory in ``settings``: the fault tests stop and restart
        theirs without disturbing the main stack."""
        settings = settings or StackSettings()
        local = ensure_local_config(settings)
        suffix = f"-{instance}" if instance else ""
        return cls(
            settings=settings,
            kafka=KafkaServer(f"kafka{suffix}", settings, settings.kafka_port, local),
            minio=MinioServer(f"minio{suffix}", settings, settings.minio_port, local),
            postgres=PostgresServer(f"postgres{suffix}", settings, settings.postgres_port, local),
        )

    @property
    def servers(self) -> list[Server]:
        return [self.postgres, self.kafka, self.minio]  # MinIO after Kafka: it trusts Kafka's CA, notifies it

    @property
    def postgres_url(self) -> str:
        return postgres_url(self.settings, self.postgres.secrets)

    def up(self, say: Say = print) -> list[str]:
        """Start what is not running; return the names of the servers this call started."""
        ffmpeg = ensure_ffmpeg(say)
        say(f"ffmpeg     {ffmpeg}")
        started: list[str] = []
        for server in self.servers:
            server.install(say)
            if server.is_running() and server.needs_restart():
                say(f"{server.name}: configuration changed, restarting")
                server.stop()
            if server.is_running():
                if not server.answers():
                    server.wait_until_answers()
            else:
                if server.answers():
                    raise PortInUseError(
                        f"{server.name}: something not started by callvault already answers on {server.address}",
                        hint="stop it, or point CALLVAULT_STACK_* ports elsewhere",
                    )
                server.check_ports_free()
                say(f"{server.name}: starting")
                server.start()
                started.append(server.name)
            server.wait_until_answers()
            say(f"{server.name:<10} up on {server.address}  log: {server.log_file}")
        self.postgres.ensure_database()
        self.kafka.ensure_admin_user()
        self.kafka.ensure_drop_principal()
        say(f"{self.kafka.name + ' sasl':<10} SASL_SSL on {self.kafka.sasl_address} (SCRAM-SHA-512 user "
            f"{self.kafka.admin_user}, CA {self.kafka.tls.ca_file}); `callvault stack env` shows the client settings")
        return started

    def down(self, say: Say = print) -> None:
        for server in reversed(self.servers):
            stopped = server.stop()
            say(f"{server.name:<10} {'stopped' if stopped else 'was not running'}")

    def status(self) -> dict[str, dict[str, object]]:
        status = {
            s.name: {"running": s.is_running(), "answers": s.answers(), "address": s.address,
                     "log": str(s.log_file)}
            for s in self.servers
        }
        status[self.kafka.name]["listeners"] = {"PLAINTEXT": self.kafka.address, "SASL_SSL": self.kafka.sasl_address}
        status[self.kafka.name]["sasl_ssl_open"] = port_is_open(self.settings.host, self.kafka.sasl_port)
        return status

    def kafka_client_env(self) -> dict[str, str]:
        """Client settings for the SASL_SSL listener, as the super user (the worker's principal)."""
        return {
            "CALLVAULT_KAFKA_BOOTSTRAP_SERVERS": self.kafka.sasl_address,
            "CALLVAULT_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "CALLVAULT_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
            "CALLVAULT_KAFKA_SASL_USERNAME": self.kafka.admin_user,
            "CALLVAULT_KAFKA_SASL_PASSWORD": self.kafka.secrets["kafka_admin_password"],
            "CALLVAULT_KAFKA_SSL_CAFILE": str(self.kafka.tls.ca_file),
        }


def disk_usage(path: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for f in files:
            try:
                total += (Path(root) / f).lstat().st_size
            except OSError:
                pass
    return total
