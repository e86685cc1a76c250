"""``callvault demo``: the pipeline end to end on the embedded defaults.

Brings nothing up by itself (``scripts/demo`` runs ``stack up`` first). It initialises the
buckets and the SQLite catalog, registers a demo tenant, starts a worker, makes a handful of
speech-like calls with ffmpeg's flite voice (µ-law, stereo agent/customer, a payment span to
silence, a number that objected, a malformed message), pushes them through Kafka and prints
what was stored, suppressed and dead-lettered. It registers one demo user for each role a
person may have (again and again: what exists is kept) and ends with the next step: the
command that serves the API and the console, those users, and the command that prints their
tokens.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Callable

from aiokafka import AIOKafkaConsumer

from access.identities import add_user, load_user
from access.settings import get_access_settings
from core.config import callvault_home
from core.phone import normalise_number
from core.vocabulary import Relation, Role
from ingest.kafka_client import client_options, kafka_errors
from ingest.producer import Call, Producer
from ingest.settings import get_ingest_settings, get_kafka_settings
from ingest.topics import ensure_topics
from lifecycle import service as lifecycle_service
from lifecycle.deps import Services
from storage.admin import init_buckets, minio_admin_client
from storage.catalog.db import UnitOfWork
from storage.catalog.migrate import upgrade
from storage.ledger import init_ledger_bucket
from storage.settings import get_storage_settings
from storage.suppressions import suppress

from .bootstrap import services

TENANT = "demo"
TEAM = "collections-1"
OBJECTOR = "+33 6 11 22 33 44"
# One user per role, over the demo's calls: agent-01 answered two of them, all are team collections-1's.
DEMO_USERS: tuple[tuple[str, Role, dict], ...] = (
    ("demo-consultant", Role.CONSULTANT, {"agent_id": "agent-01"}),
    ("demo-manager", Role.MANAGER, {"teams": [(TENANT, TEAM, Relation.MANAGER.value)]}),
    ("demo-coach", Role.COACH, {"teams": [(TENANT, TEAM, Relation.COACH.value)]}),
    ("demo-control", Role.INTERNAL_CONTROL, {}),
    ("demo-it", Role.IT, {}),
)


def speech(text: str, path: Path, *, codec: list[str], voice: str = "slt", stereo_with: str | None = None) -> bytes:
    """Synthesise speech with ffmpeg's flite filter; with ``stereo_with``, agent left, customer right."""
    inputs = ["-f", "lavfi", "-i", f"flite=text='{text}':voice={voice}"]
    if stereo_with:
        inputs += ["-f", "lavfi", "-i", f"flite=text='{stereo_with}':voice=kal"]
        # The agent speaks first (left), the customer answers (right): distinct channels.
        fmt = "aresample=8000,aformat=sample_fmts=s16:channel_layouts=mono"
        graph = ["-filter_complex", f"[0:a]{fmt},apad[a];[1:a]{fmt},adelay=3500[b];[a][b]join=inputs=2:channel_layout=stereo[out]",
                 "-map", "[out]", "-shortest"]
    else:
        graph = ["-ar", "8000", "-ac", "1"]
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", *inputs, *graph, *codec, str(path)],
                   check=True, stdin=subprocess.DEVNULL)
    return path.read_bytes()


def make_calls(workdir: Path, now: datetime) -> list[tuple[str, Call]]:
    mulaw = ["-c:a", "pcm_mulaw"]
    base = dict(tenant=TENANT, started_at=now - timedelta(minutes=3), team_id=TEAM)
    return [
        ("µ-law WAV, inbound", Call(
            audio=speech("Hello, I am calling about my invoice from last month.", workdir / "a.wav", codec=mulaw),
            agent_id="agent-01", caller_number="06 12 34 56 78", recording_id=f"demo-{uuid.uuid4().hex[:8]}",
            **base)),
        ("stereo, agent left / customer right, FLAC", Call(
            audio=speech("Good morning, this is Claire from the collections department.", workdir / "b.flac",
                         codec=["-c:a", "flac"], stereo_with="Yes, I can pay the remaining balance on Friday."),
            agent_id="agent-02", caller_number="+33 1 23 45 67 89", direction="outbound",
            recording_id=f"demo-{uuid.uuid4().hex[:8]}", **base)),
        ("payment span silenced (1.0 s to 3.5 s)", Call(
            audio=speech("My card number is four nine seven one, one two three four, five six seven eight.",
                         workdir / "c.wav", codec=mulaw),
            agent_id="agent-01", caller_number="07.98.76.54.32", redactions=((1000, 3500),),
            recording_id=f"demo-{uuid.uuid4().hex[:8]}", **base)),
        ("a number that objected to recording", Call(
            audio=speech("Please do not record this call.", workdir / "d.wav", codec=mulaw),
            agent_id="agent-03", caller_number=OBJECTOR, recording_id=f"demo-{uuid.uuid4().hex[:8]}", **base)),
    ]


async def _push_and_watch(calls: list[Call], bad: bytes, timeout: float) -> list[dict]:
    """Push the calls and the bad message, then read events and dead letters about *them*."""
    kafka, storage = get_kafka_settings(), get_storage_settings()
    await ensure_topics(kafka)
    bad_key = f"demo-bad-{uuid.uuid4().hex[:8]}".encode()
    wanted = {c.recording_id for c in calls}
    async with Producer(kafka, storage, inline_max_bytes=get_ingest_settings().inline_max_bytes) as producer:
        await producer.push_many(calls)
        await producer.send_raw(bad_key, bad)
    consumer = AIOKafkaConsumer(kafka.events_topic, kafka.dlq_topic, **client_options(kafka),
                                auto_offset_reset="earliest", enable_auto_commit=False)
    async with kafka_errors(kafka):
        await consumer.start()
    seen: list[dict] = []
    try:
        deadline = time.monotonic() + timeout
        while len(seen) < len(calls) + 1 and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                for r in records:
                    if r.topic == kafka.dlq_topic and r.key == bad_key:
                        headers = dict(r.headers)
                        seen.append({"type": "dead-letter", "reason": headers["callvault-reason"].decode(),
                                     "error": headers["callvault-error"].decode()})
                    elif r.topic == kafka.events_topic:
                        event = json.loads(r.value)
                        if event.get("external_id") in wanted:
                            seen.append(event)
        return seen
    finally:
        await consumer.stop()


def run_demo(say: Callable[[str], None] = print, timeout: float = 120.0) -> int:
    svc = services()
    now = datetime.now(timezone.utc)
    _prepare(svc, now, say)
    log_path = callvault_home() / "logs" / "demo-worker.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    say(f"2/5 starting a worker (log: {log_path})")
    env = {**os.environ, "CALLVAULT_INGEST_WEB_PORT": "0", "CALLVAULT_INGEST_METRICS_PORT": "0"}
    worker = subprocess.Popen([sys.executable, "-m", "callvault.cli", "worker", "-l", "info"], env=env,
                              stdout=log_path.open("ab"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                              start_new_session=True)
    try:
        events = _push_calls(now, timeout, say)
    finally:
        worker.terminate()
        try:
            worker.wait(30)
        except subprocess.TimeoutExpired:
            worker.kill()
    ok = _summarise(svc, events, say)
    if not ok:
        say(f"demo did not end as expected; see {log_path}")
        return 1
    _hand_over(say)
    return 0


def _prepare(svc: Services, now: datetime, say: Callable[[str], None]) -> None:
    say("1/5 buckets and catalog")
    init_buckets(svc.storage, say=lambda m: say(f"    {m}"))
    init_ledger_bucket(minio_admin_client(svc.storage), svc.storage, say=lambda m: say(f"    {m}"))
    upgrade(svc.engine)
    with svc.unit_of_work() as uow:
        lifecycle_service.add_tenant(uow, tenant=TENANT, name="Demo collections", now=now)
        suppress(uow.conn, tenant=TENANT, number_hash=svc.keys.number_hash(TENANT, normalise_number(OBJECTOR)),
                 actor="demo")
        added = _add_demo_users(uow, now)
        uow.commit()
    say(f"    tenant {TENANT!r} ready; one number on its suppression list")
    say(f"    demo users: {len(added)} added, {len(DEMO_USERS) - len(added)} already there")


def _add_demo_users(uow: UnitOfWork, now: datetime) -> list[str]:
    """One user per role for the demo tenant; the ones already registered are left as they are."""
    added = []
    for user_id, role, extra in DEMO_USERS:
        if load_user(uow.conn, user_id) is None:
            add_user(uow.conn, user_id=user_id, role=role.value, tenants=[TENANT], now=now,
                     display_name=f"Demo {role.value}", **extra)
            added.append(user_id)
    return added


def _command() -> str:
    """How to call callvault from here: plain ``callvault`` when it is this one on the PATH."""
    ours = Path(sys.executable).with_name("callvault")
    on_path = shutil.which("callvault")
    if on_path and Path(on_path).resolve() == ours.resolve():
        return "callvault"
    try:
        return str(ours.relative_to(Path.cwd()))
    except ValueError:
        return str(ours)


def _hand_over(say: Callable[[str], None]) -> None:
    """The next step: serve the API and console, sign in as a demo user."""
    cv, access = _command(), get_access_settings()
    serve, token = f"{cv} api", f"{cv} users token demo-control"
    width = max(len(serve), len(token))
    say("Next: see the calls in the web console")
    say(f"    {serve:<{width}}  # serves the API and the console until Ctrl-C")
    say(f"    then open http://{access.api_host}:{access.api_port}/console/ in a browser")
    say(f"    demo users (tenant {TENANT!r}), one per role:")
    for user_id, role, _ in DEMO_USERS:
        say(f"        {user_id:<16} {role.value}")
    say(f"    {token:<{width}}  # a token to paste on the sign-in page (any user above)")


def _push_calls(now: datetime, timeout: float, say: Callable[[str], None]) -> list[dict]:
    with tempfile.TemporaryDirectory() as tmp:
        say("3/5 synthesising calls with ffmpeg (flite voices)")
        labelled = make_calls(Path(tmp), now)
        for label, call in labelled:
            say(f"    {call.recording_id}: {label} ({len(call.audio) // 1024} KiB)")
        say("    + one malformed message")
        say("4/5 pushing through Kafka and waiting for the worker")
        return asyncio.run(_push_and_watch([c for _, c in labelled], b'{"schema": "callvault.recording/v1"}',
                                           timeout=timeout))


def _summarise(svc: Services, events: list[dict], say: Callable[[str], None]) -> bool:
    say("5/5 summary")
    by_type: dict[str, list[dict]] = {}
    for e in events:
        by_type.setdefault(e["type"], []).append(e)
    with svc.unit_of_work() as uow:
        for e in by_type.get("stored", []):
            row = lifecycle_service.recording_by_external_id(uow, tenant=TENANT, external_id=e["external_id"])
            say(f"    stored      {e['external_id']}: {row['duration_ms'] / 1000:.1f} s, {row['channels']} ch, "
                f"{row['audio_format']}, silenced {row['redactions'] or 'nothing'}, tier production until "
                f"{e['expires_at'][:10]}")
    for e in by_type.get("suppressed", []):
        say(f"    suppressed  {e['external_id']}: objecting number, nothing stored")
    for e in by_type.get("dead-letter", []):
        say(f"    dead-letter {e['reason']}: {e['error'][:100]}")
    counts = {k: len(v) for k, v in by_type.items()}
    say(f"    totals: {counts}")
    return counts == {"stored": 3, "suppressed": 1, "dead-letter": 1}
