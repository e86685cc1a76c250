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

from callvault.errors import CallvaultError

from .settings import StackSettings

KAFKA_POM = Path(__file__).parent / "kafka" / "pom.xml"
KAFKA_LOG4J = Path(__file__).parent / "kafka" / "log4j2.properties"


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
    """Apache Kafka in KRaft mode, one node acting as broker and controller."""

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

    def ports(self) -> list[int]:
        return [self.port, self.settings.kafka_controller_port]

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
        self.config_path.write_text("\n".join([
            "process.roles=broker,controller",
            "node.id=1",
            f"controller.quorum.voters=1@{s.host}:{s.kafka_controller_port}",
            f"listeners=PLAINTEXT://{s.host}:{self.port},CONTROLLER://{s.host}:{s.kafka_controller_port}",
            f"advertised.listeners=PLAINTEXT://{s.host}:{self.port}",
            "controller.listener.names=CONTROLLER",
            "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
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

    def command(self) -> tuple[list[str], dict[str, str]]:
        data = self.data_dir or self.settings.home / self.name / "data"
        data.mkdir(parents=True, exist_ok=True)
        env = {
            "MINIO_ROOT_USER": self.secrets["minio_root_user"],
            "MINIO_ROOT_PASSWORD": self.secrets["minio_root_password"],
            "MINIO_REGION": self.region or self.settings.minio_region,
            "MINIO_KMS_SECRET_KEY": f"callvault-local:{self.secrets['minio_kms_key']}",
            "MINIO_BROWSER": "off",
            "MINIO_UPDATE": "off",
        }
        return ([str(self.binary), "server", str(data), "--quiet", "--address", self.address,
                 "--console-address", f"{self.settings.host}:{self.console_port}"], env)

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
