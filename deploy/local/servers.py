"""The local servers callvault installs and runs itself: Kafka, MinIO, PostgreSQL, ffmpeg.

Each server knows how to install itself into the cache (idempotently), whether it is
running (a pid file of ours whose process is alive), whether it answers (a real protocol
probe, not just an open port), and how to start and stop. ``deploy.local.stack`` drives
them; nothing here reads global state besides the settings passed in.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import socket
import struct
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from core.errors import CallvaultError

from .settings import StackSettings

KAFKA_POM = Path(__file__).parent / "kafka" / "pom.xml"
KAFKA_LOG4J = Path(__file__).parent / "kafka" / "log4j2.properties"
DROP_TARGET = "CALLVAULT"  # MinIO notification target id: arn:minio:sqs:<region>:CALLVAULT:kafka


class StackError(CallvaultError):
    code = "stack_error"


class ServerStartError(StackError):
    code = "server_start_failed"


class PortInUseError(StackError):
    code = "port_in_use"


class InstallError(StackError):
    code = "install_failed"


def port_is_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def tail(path: Path, lines: int = 25) -> str:
    if not path.exists():
        return f"(no log at {path})"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def run(cmd: list[str], *, what: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> str:
    """Run an install step; on failure name the step and show the end of its output."""
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=cwd, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        out = "\n".join((proc.stdout + proc.stderr).splitlines()[-20:])
        raise InstallError(f"{what} failed (exit {proc.returncode}): {' '.join(cmd)}\n{out}")
    return proc.stdout


def apt_install(*packages: str) -> None:
    if os.geteuid() != 0:
        raise InstallError(
            f"Debian packages {', '.join(packages)} are missing",
            hint=f"run: sudo apt-get install -y {' '.join(packages)}",
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        run(["apt-get", "install", "-y", "-q", *packages], what="apt-get install", env=env)
    except InstallError:
        run(["apt-get", "update", "-q"], what="apt-get update", env=env)
        run(["apt-get", "install", "-y", "-q", *packages], what="apt-get install", env=env)


@dataclass
class Server:
    """A long-running local server managed through a pid file."""

    name: str
    settings: StackSettings
    port: int
    secrets: dict[str, str] = field(default_factory=dict)

    @property
    def pid_file(self) -> Path:
        return self.settings.run_dir / f"{self.name}.pid"

    @property
    def log_file(self) -> Path:
        return self.settings.log_dir / f"{self.name}.log"

    @property
    def address(self) -> str:
        return f"{self.settings.host}:{self.port}"

    # -- to be provided by each server ------------------------------------------------
    def install(self, say) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def command(self) -> tuple[list[str], dict[str, str]]:  # pragma: no cover - interface
        raise NotImplementedError

    def answers(self) -> bool:  # pragma: no cover - interface
        raise NotImplementedError

    def ports(self) -> list[int]:
        return [self.port]

    def needs_restart(self) -> bool:
        """Running with a configuration older than the one just installed."""
        return False

    # -- shared behaviour ---------------------------------------------------------------
    def pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            return pid
        return pid

    def is_running(self) -> bool:
        return self.pid() is not None

    def check_ports_free(self) -> None:
        for port in self.ports():
            if port_is_open(self.settings.host, port):
                raise PortInUseError(
                    f"{self.name}: port {self.settings.host}:{port} is already in use by another process",
                    hint=f"stop that process or choose another port (CALLVAULT_STACK_{self.name.upper()}_PORT…)",
                )

    def start(self) -> None:
        cmd, env = self.command()
        self.settings.log_dir.mkdir(parents=True, exist_ok=True)
        self.settings.run_dir.mkdir(parents=True, exist_ok=True)
        with self.log_file.open("ab") as log:
            proc = subprocess.Popen(
                cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env={**os.environ, **env}, start_new_session=True,
            )
        self.pid_file.write_text(str(proc.pid))

    def wait_until_answers(self) -> None:
        deadline = time.monotonic() + self.settings.start_timeout
        while time.monotonic() < deadline:
            if self.answers():
                return
            if not self.is_running():
                break
            time.sleep(0.3)
        state = "exited" if not self.is_running() else f"did not answer within {self.settings.start_timeout:.0f}s"
        raise ServerStartError(
            f"{self.name} {state} on {self.address}; last lines of {self.log_file}:\n{tail(self.log_file)}",
        )

    def stop(self, timeout: float = 30.0) -> bool:
        pid = self.pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return False
        try:
            os.killpg(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.pid() is not None:
            time.sleep(0.2)
        if self.pid() is not None:
            os.killpg(pid, signal.SIGKILL)
        self.pid_file.unlink(missing_ok=True)
        return True


class KafkaServer(Server):
    """Apache Kafka in KRaft mode, one node acting as broker and controller.

    Two client listeners: PLAINTEXT on the loopback address, for the embedded demo and the
    stack's own administration (its clients are ``User:ANONYMOUS``, a super user), and
    SASL_SSL (SCRAM-SHA-512 over TLS with the local CA) for everything else. The
    StandardAuthorizer denies whatever no ACL allows; ``callvault kafka grant-telephony``
    adds a tenant's principal and its ACLs. SCRAM users are created through the running
    broker (``ensure_admin_user``), so a data directory formatted by an older callvault
    keeps working: only server.properties is rewritten, and the broker restarted once.
    """

    @property
    def libs(self) -> Path:
        # Keyed by the pom's content too, so editing the pom re-resolves instead of reusing stale jars.
        digest = hashlib.sha256(KAFKA_POM.read_bytes()).hexdigest()[:8]
        return self.settings.home / f"kafka-{self.settings.kafka_version}-{digest}" / "libs"

    @property
    def data_dir(self) -> Path:
        return self.settings.home / self.name / "data"

    @property
    def config_path(self) -> Path:
        return self.settings.home / self.name / "server.properties"

    @property
    def sasl_port(self) -> int:
        return self.settings.kafka_sasl_port

    @property
    def sasl_address(self) -> str:
        return f"{self.settings.host}:{self.sasl_port}"

    @property
    def tls(self):
        from .tls import LocalTls

        return LocalTls(self.settings.home / "kafka" / "tls")  # one local CA for every instance

    @property
    def admin_user(self) -> str:
        return self.settings.kafka_admin_user

    @property
    def _started_config(self) -> Path:
        return self.settings.run_dir / f"{self.name}.config.sha256"

    def ports(self) -> list[int]:
        return [self.port, self.settings.kafka_controller_port, self.sasl_port]

    def _config_digest(self) -> str:
        return hashlib.sha256(self.config_path.read_bytes()).hexdigest() if self.config_path.exists() else ""

    def needs_restart(self) -> bool:
        try:
            started = self._started_config.read_text().strip()
        except OSError:
            started = ""  # started by an older callvault: its configuration is unknown, so older
        # Also when its SASL_SSL listener is missing (restarted by an older callvault meanwhile).
        return started != self._config_digest() or (self.answers() and not port_is_open(self.settings.host,
                                                                                           self.sasl_port))

    def start(self) -> None:
        super().start()
        self._started_config.write_text(self._config_digest())

    def _java(self) -> str:
        java = shutil.which("java")
        if java is None:
            apt_install("default-jre-headless")
            java = shutil.which("java") or "java"
        return java

    def install(self, say) -> None:
        if not (self.libs / f"kafka_2.13-{self.settings.kafka_version}.jar").exists():
            if shutil.which("mvn") is None:
                apt_install("maven")
            say(f"kafka: resolving org.apache.kafka:kafka_2.13:{self.settings.kafka_version} from Maven Central")
            run(["mvn", "-q", "-B", "-f", str(KAFKA_POM), "dependency:copy-dependencies",
                 f"-Dkafka.version={self.settings.kafka_version}", "-DincludeScope=runtime",
                 f"-DoutputDirectory={self.libs}"], what="resolving Kafka with Maven")
        s = self.settings
        self.config_path.parent.mkdir(parents=True, exist_ok=True)
        if self.tls.ensure(s.host):
            say(f"kafka: local CA and broker certificate written to {self.tls.directory}")
        scram = "org.apache.kafka.common.security.scram.ScramLoginModule required;"
        self.config_path.write_text("\n".join([
            "process.roles=broker,controller",
            "node.id=1",
            f"controller.quorum.voters=1@{s.host}:{s.kafka_controller_port}",
            f"listeners=PLAINTEXT://{s.host}:{self.port},CONTROLLER://{s.host}:{s.kafka_controller_port},"
            f"SASL_SSL://{s.host}:{self.sasl_port}",
            f"advertised.listeners=PLAINTEXT://{s.host}:{self.port},SASL_SSL://{s.host}:{self.sasl_port}",
            "controller.listener.names=CONTROLLER",
            "inter.broker.listener.name=PLAINTEXT",
            "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SASL_SSL:SASL_SSL",
            # SASL_SSL: SCRAM-SHA-512 over TLS; the PEM keystore is the local CA's broker certificate.
            "sasl.enabled.mechanisms=SCRAM-SHA-512",
            f"listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config={scram}",
            "ssl.keystore.type=PEM",
            f"ssl.keystore.location={self.tls.keystore}",
            "ssl.truststore.type=PEM",
            f"ssl.truststore.location={self.tls.ca_file}",
            "ssl.client.auth=none",
            # Authorization: what no ACL allows is denied. Super users: the worker/admin principal,
            # and ANONYMOUS, i.e. the loopback PLAINTEXT listener (demo only) and the controller's.
            "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            f"super.users=User:ANONYMOUS;User:{self.admin_user}",
            "allow.everyone.if.no.acl.found=false",
            f"log.dirs={self.data_dir}",
            "num.partitions=4",
            "offsets.topic.replication.factor=1",
            "offsets.topic.num.partitions=8",
            "transaction.state.log.replication.factor=1",
            "transaction.state.log.min.isr=1",
            "group.initial.rebalance.delay.ms=0",
            "auto.create.topics.enable=true",
            "delete.topic.enable=true",
            "message.max.bytes=10485760",
            "",
        ]))
        if not (self.data_dir / "meta.properties").exists():
            say("kafka: formatting KRaft storage")
            cp = f"{self.libs}/*"
            cluster_id = run([self._java(), "-cp", cp, f"-Dlog4j2.configurationFile={KAFKA_LOG4J}",
                              "kafka.tools.StorageTool", "random-uuid"], what="kafka random-uuid").split()[-1]
            run([self._java(), "-cp", cp, f"-Dlog4j2.configurationFile={KAFKA_LOG4J}", "kafka.tools.StorageTool",
                 "format", "-t", cluster_id, "-c", str(self.config_path)], what="formatting Kafka storage")

    def command(self) -> tuple[list[str], dict[str, str]]:
        heap = self.settings.kafka_heap
        return ([self._java(), f"-Xms{heap}", f"-Xmx{heap}", "-XX:+UseG1GC",
                 f"-Dlog4j2.configurationFile={KAFKA_LOG4J}", "-cp", f"{self.libs}/*",
                 "kafka.Kafka", str(self.config_path)], {})

    def answers(self) -> bool:
        """Send a Kafka ApiVersions request (v0) and expect error code 0 back."""
        try:
            with socket.create_connection((self.settings.host, self.port), timeout=2) as sock:
                client = b"callvault-probe"
                body = struct.pack(">hhih", 18, 0, 7, len(client)) + client
                sock.sendall(struct.pack(">i", len(body)) + body)
                head = sock.recv(4)
                if len(head) < 4:
                    return False
                reply = sock.recv(struct.unpack(">i", head)[0])
                correlation, error = struct.unpack(">ih", reply[:6])
                return correlation == 7 and error == 0
        except OSError:
            return False

    def ensure_admin_user(self) -> None:
        """The SCRAM super user, through the running broker's PLAINTEXT listener (idempotent:
        its password is set again to the stored one)."""
        self._through_broker(f"creating SCRAM user {self.admin_user}", lambda admin: admin.upsert_scram_user(
            self.admin_user, self.secrets["kafka_admin_password"]))

    def ensure_drop_principal(self) -> None:
        """MinIO's principal for the S3 drop's notifications: WRITE and DESCRIBE on the drop topic,
        nothing else; the topic made with its retention (idempotent)."""
        from ingest.settings import KafkaSettings
        from ingest.topics import topic_configs

        kafka = KafkaSettings(bootstrap_servers=self.address)

        async def grant(admin) -> None:
            await admin.ensure_topic(kafka.drop_topic, kafka.partitions, topic_configs(kafka)[kafka.drop_topic])
            await admin.upsert_scram_user(kafka.drop_principal, self.secrets["kafka_minio_password"])
            await admin.allow_on_topic(kafka.drop_principal, kafka.drop_topic, ["WRITE", "DESCRIBE"])

        self._through_broker(f"granting {kafka.drop_principal} the drop topic", grant)

    def _through_broker(self, what: str, step) -> None:
        """An admin step on the PLAINTEXT listener, retried while the metadata quorum settles."""
        import asyncio

        from ingest.kafka_admin import KafkaAdmin
        from ingest.settings import KafkaSettings

        async def run() -> None:
            async with KafkaAdmin(KafkaSettings(bootstrap_servers=self.address)) as admin:
                await step(admin)

        deadline = time.monotonic() + self.settings.start_timeout
        while True:
            try:
                asyncio.run(run())
                return
            except CallvaultError as exc:  # the metadata quorum may still be settling right after a start
                if time.monotonic() > deadline:
                    raise ServerStartError(f"{self.name}: {what} failed: {exc}") from exc
                time.sleep(0.5)


class MinioServer(Server):
    """MinIO built from source with ``go install``, one drive, an EU region, SSE with a local key."""

    data_dir: Path | None = None
    region: str | None = None

    @property
    def binary(self) -> Path:
        return self.settings.home / f"minio-{self.settings.minio_version}" / "minio"

    def ports(self) -> list[int]:
        return [self.port, self.console_port]

    @property
    def console_port(self) -> int:
        return self.settings.minio_console_port if self.port == self.settings.minio_port else self.port + 1

    def install(self, say) -> None:
        if self.binary.exists():
            return
        if shutil.which("go") is None:
            apt_install("golang-go")
        say(f"minio: building github.com/minio/minio@{self.settings.minio_version} with go install (a few minutes, once)")
        env = {**os.environ, "GOBIN": str(self.binary.parent), "GOFLAGS": "-buildvcs=false"}
        run(["go", "install", f"github.com/minio/minio@{self.settings.minio_version}"],
            what="building MinIO", env=env, cwd=self.settings.home)

    @property
    def certs_dir(self) -> Path:
        return self.settings.home / self.name / "certs"

    @property
    def _started_config(self) -> Path:
        return self.settings.run_dir / f"{self.name}.config.sha256"

    def notify_env(self) -> dict[str, str]:
        """MinIO's Kafka notification target ``callvault`` (the S3 drop): SCRAM-SHA-512 over TLS to
        the local broker's SASL_SSL listener, as a principal that may only write the drop topic;
        events wait in a queue directory while Kafka is away (none is lost to a broker restart)."""
        from ingest.settings import KafkaSettings

        defaults = KafkaSettings.model_fields
        suffix = f"_{DROP_TARGET}"
        return {f"MINIO_NOTIFY_KAFKA_{name}{suffix}": value for name, value in {
            "ENABLE": "on", "BROKERS": f"{self.settings.host}:{self.settings.kafka_sasl_port}",
            "TOPIC": defaults["drop_topic"].default, "SASL": "on", "SASL_MECHANISM": "sha512",
            "SASL_USERNAME": defaults["drop_principal"].default, "SASL_PASSWORD": self.secrets["kafka_minio_password"],
            "TLS": "on", "QUEUE_DIR": str(self.settings.home / self.name / "notify-queue"),
        }.items()}

    def _trust_kafka_ca(self) -> None:
        """MinIO trusts what is in its certs directory's CAs/: the local CA that signed the broker."""
        from .tls import LocalTls

        ca = LocalTls(self.settings.home / "kafka" / "tls").ca_file
        if ca.exists():
            (self.certs_dir / "CAs").mkdir(parents=True, exist_ok=True)
            shutil.copyfile(ca, self.certs_dir / "CAs" / "callvault-local-ca.pem")

    def command(self) -> tuple[list[str], dict[str, str]]:
        data = self.data_dir or self.settings.home / self.name / "data"
        data.mkdir(parents=True, exist_ok=True)
        self._trust_kafka_ca()
        env = {
            "MINIO_ROOT_USER": self.secrets["minio_root_user"],
            "MINIO_ROOT_PASSWORD": self.secrets["minio_root_password"],
            "MINIO_REGION": self.region or self.settings.minio_region,
            "MINIO_KMS_SECRET_KEY": f"callvault-local:{self.secrets['minio_kms_key']}",
            "MINIO_BROWSER": "off",
            "MINIO_UPDATE": "off",
            **self.notify_env(),
        }
        return ([str(self.binary), "server", str(data), "--quiet", "--address", self.address,
                 "--console-address", f"{self.settings.host}:{self.console_port}", "--certs-dir",
                 str(self.certs_dir)], env)

    def _config_digest(self) -> str:
        cmd, env = self.command()
        return hashlib.sha256(repr((cmd, sorted(env.items()))).encode()).hexdigest()

    def start(self) -> None:
        super().start()
        self._started_config.write_text(self._config_digest())

    def needs_restart(self) -> bool:
        """Started with another configuration (an older callvault: no drop notification target)."""
        try:
            return self._started_config.read_text().strip() != self._config_digest()
        except OSError:
            return True

    def answers(self) -> bool:
        try:
            url = f"http://{self.address}/minio/health/ready"
            with urllib.request.urlopen(url, timeout=2) as resp:
                return resp.status == 200
        except OSError:
            return False


class PostgresServer(Server):
    """PostgreSQL from Debian, in a cluster directory the project owns, on its own port."""

    @property
    def data_dir(self) -> Path:
        return self.settings.postgres_dir / "data"

    @staticmethod
    def bin_dir() -> Path | None:
        versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"))
        return versions[-1].parent if versions else None

    def _as_owner(self, cmd: list[str]) -> list[str]:
        return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd

    def install(self, say) -> None:
        if self.bin_dir() is None:
            say("postgres: installing Debian's postgresql package")
            apt_install("postgresql")
        if (self.data_dir / "PG_VERSION").exists():
            return
        say(f"postgres: initialising a cluster in {self.data_dir}")
        self.settings.postgres_dir.mkdir(parents=True, exist_ok=True)
        pwfile = self.settings.postgres_dir / "pwfile"
        pwfile.write_text(self.secrets["postgres_password"] + "\n")
        if os.geteuid() == 0:
            shutil.chown(self.settings.postgres_dir, "postgres", "postgres")
            shutil.chown(pwfile, "postgres", "postgres")
        pwfile.chmod(0o600)
        run(self._as_owner([str(self.bin_dir() / "initdb"), "-D", str(self.data_dir), "-U", "callvault",
                            f"--pwfile={pwfile}", "--auth=scram-sha-256", "-E", "UTF8", "--locale=C.UTF-8"]),
            what="initdb")
        pwfile.unlink()

    def start(self) -> None:
        self.settings.log_dir.mkdir(parents=True, exist_ok=True)
        log = self.settings.postgres_dir / "postgres.log"
        sockdir = self.settings.postgres_dir
        run(self._as_owner([str(self.bin_dir() / "pg_ctl"), "-D", str(self.data_dir), "-l", str(log), "-o",
                            f"-p {self.port} -k {sockdir} -c listen_addresses={self.settings.host}", "start"]),
            what="pg_ctl start")
        if self.log_file.is_symlink() or self.log_file.exists():
            self.log_file.unlink()
        self.log_file.symlink_to(log)

    def pid(self) -> int | None:
        try:
            pid = int((self.data_dir / "postmaster.pid").read_text().splitlines()[0])
            os.kill(pid, 0)
            return pid
        except (OSError, ValueError, IndexError):
            return None

    def answers(self) -> bool:
        proc = subprocess.run([str(self.bin_dir() / "pg_isready"), "-h", self.settings.host, "-p", str(self.port)],
                              capture_output=True)
        return proc.returncode == 0

    def stop(self, timeout: float = 30.0) -> bool:
        if self.pid() is None:
            return False
        run(self._as_owner([str(self.bin_dir() / "pg_ctl"), "-D", str(self.data_dir), "-m", "fast", "stop"]),
            what="pg_ctl stop")
        return True

    def ensure_database(self, name: str = "callvault") -> None:
        url_env = {**os.environ, "PGPASSWORD": self.secrets["postgres_password"]}
        psql = [shutil.which("psql") or str(self.bin_dir() / "psql"), "-h", self.settings.host, "-p", str(self.port),
                "-U", "callvault", "-d", "postgres", "-tAc"]
        exists = run([*psql, f"SELECT 1 FROM pg_database WHERE datname='{name}'"], what="psql", env=url_env)
        if exists.strip() != "1":
            run([*psql, f'CREATE DATABASE "{name}"'], what="creating the callvault database", env=url_env)


def ensure_ffmpeg(say) -> str:
    path = shutil.which("ffmpeg")
    if path is None:
        say("ffmpeg: installing Debian's ffmpeg package")
        apt_install("ffmpeg")
        path = shutil.which("ffmpeg")
    if path is None:
        raise InstallError("ffmpeg is not on PATH after installing it", hint="install Debian's ffmpeg package")
    return path
