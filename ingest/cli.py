"""``callvault dlq|kafka|push|worker`` and ``keys ingest``: ingest's commands.

``ctx.obj`` is the composition root (``callvault.bootstrap.Root``): it builds the services,
checks tenants exist (``ctx.obj.require_tenant``), authorises an ``--actor``
(``ctx.obj.authorise``) and runs the worker it wires. Kafka clients are asyncio: each command
runs its coroutine to the end with ``asyncio.run``.
"""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import typer

from core.errors import CallvaultError
from core.inputs import amount, aware_time, one_of, parsed, span_ms, telephony_id, whole
from core.vocabulary import Action, AuditAction, Direction, PushOutcome
from lifecycle import service as lifecycle_service
from storage import audit
from storage.settings import get_storage_settings
from storage.transit import Quarantine

from . import dlq
from .exceptions import IngestErrorCode, KafkaAccessError
from .kafka_admin import grant_telephony, password_from_env
from .outcome import CallOutcome, push_and_wait
from .producer import Call, catalog_seal_keys, check_start, new_recording_id, push_call, resealer
from .service import Outcome
from .settings import get_ingest_settings, get_kafka_settings


class Span(tuple):
    """START_MS-END_MS as ``(start, end)`` (a class: Typer lists only plain types)."""


dlq_app = typer.Typer(no_args_is_help=True, help="The dead-letter topic: why calls were refused; replay once fixed")
kafka = typer.Typer(no_args_is_help=True, help="Kafka principals and per-tenant topics (SASL_SSL)")


def _dead_letters(ctx: typer.Context, release: bool = True) -> list[dlq.DeadLetter]:
    """The dead letters, released from quarantine with the catalog's keys (``release``)."""
    opener = None
    if release:
        svc = ctx.obj.services()
        quarantine = Quarantine(svc.keys)

        def opener(dead_letter_id):
            with svc.engine.connect() as conn:
                return quarantine.key_or_none(conn, dead_letter_id)
    return asyncio.run(dlq.read(get_kafka_settings(), opener))


@dlq_app.command("list")
def dlq_list(ctx: typer.Context, every: bool = typer.Option(
        False, "--all", help="also list each dead letter (position, reason, tenant, recording id)")) -> None:
    """Dead letters by reason and tenant, oldest first."""
    letters = _dead_letters(ctx, release=every)
    if not letters:
        typer.echo("the dead-letter topic is empty")
        return
    typer.echo(f"{len(letters)} dead letters")
    for reason, tenant, count, oldest in dlq.summary(letters):
        typer.echo(f"  {reason:<20} {tenant:<20} {count:>6}   oldest {oldest:%Y-%m-%d %H:%M:%S}Z")
    for d in letters if every else ():
        shown = d.masked()
        typer.echo(f"  {shown['position']:<10} {d.at:%Y-%m-%d %H:%M:%S}Z {d.reason:<20} {d.tenant:<20} "
                   f"{shown['recording_id']}")


@dlq_app.command("show")
def dlq_show(ctx: typer.Context, position: str = typer.Argument(
        ..., help="PARTITION:OFFSET (as `dlq list --all` prints), or OFFSET on partition 0")) -> None:
    """One dead letter: its reason and error, the number masked, the audio reduced to its size."""
    part, _, off = position.rpartition(":")
    if not (part or "0").isdigit() or not off.isdigit():
        raise typer.BadParameter(f"{position!r} is not PARTITION:OFFSET: two whole numbers, e.g. 0:42",
                                 param_hint="'POSITION'")
    partition, offset = int(part or 0), int(off)
    found = [d for d in _dead_letters(ctx) if (d.partition, d.offset) == (partition, offset)]
    if not found:
        raise CallvaultError(f"no dead letter at {partition}:{offset}", hint="`callvault dlq list` shows what is there")
    for name, value in found[0].masked().items():
        typer.echo(f"{name:>14}: {value}")


def _record(ctx: typer.Context, user, action: AuditAction, *, tenant: str | None, target_id: str, at: datetime,
            detail: dict) -> None:
    with ctx.obj.services().unit_of_work() as uow:
        audit.append(uow.conn, tenant=tenant, actor=user.id, role=user.role.value, action=action,
                     target_type="dead-letters", target_id=target_id, outcome="done", at=at, detail=detail)
        uow.commit()


@dlq_app.command("replay")
def dlq_replay(ctx: typer.Context,
               reason: str = typer.Option(None, parser=parsed(one_of(IngestErrorCode, "reason code")),
                                          metavar="REASON", help="only this reason code, e.g. unknown_tenant"),
               tenant: str = typer.Option(None, help="only this tenant (it must exist: add it first)"),
               actor: str = typer.Option(..., help="registered IT user (audited)")) -> None:
    """Send dead letters again to the recordings topic (idempotent: a stored call stays stored once)."""
    if tenant:
        ctx.obj.require_tenant(tenant)
    target = f"{reason or '*'}/{tenant or '*'}"
    user = ctx.obj.authorise(actor, Action.DLQ_MANAGE, tenant=tenant, target_type="dead-letters", target_id=target)
    svc, kafka_settings = ctx.obj.services(), get_kafka_settings()
    chosen = dlq.select(_dead_letters(ctx), reason=reason, tenant=tenant)
    reseal = resealer(catalog_seal_keys(svc.engine, svc.storage, kafka=kafka_settings))
    sent = asyncio.run(dlq.replay(kafka_settings, chosen, reseal=reseal))
    _record(ctx, user, AuditAction.DLQ_REPLAY, tenant=tenant, target_id=target, at=datetime.now(timezone.utc),
            detail={"replayed": sent, "positions": [d.position for d in chosen][:200]})
    typer.echo(f"replayed {sent} dead letters to the recordings topic")
    if len(chosen) > sent:
        typer.echo(f"skipped {len(chosen) - sent}: purged (caller erased, or past retention), or not sealable "
                   "(their tenant is not configured)")


@dlq_app.command("purge")
def dlq_purge(ctx: typer.Context,
              older_than_days: float = typer.Option(..., "--older-than", metavar="DAYS",
                                                    parser=parsed(amount(0, 3650, "the age (days)")),
                                                    help="delete dead letters older than this many days"),
              actor: str = typer.Option(..., help="registered IT user (audited)")) -> None:
    """Delete old dead letters from the topic (Kafka DeleteRecords), audited."""
    now, target = datetime.now(timezone.utc), f"older-than-{older_than_days:g}d"
    user = ctx.obj.authorise(actor, Action.DLQ_MANAGE, target_type="dead-letters", target_id=target)
    deleted = asyncio.run(dlq.purge(get_kafka_settings(), _dead_letters(ctx, release=False),
                                    older_than=now - timedelta(days=older_than_days)))
    _record(ctx, user, AuditAction.DLQ_PURGE, tenant=None, target_id=target, at=now, detail={"deleted": deleted})
    typer.echo(f"purged {deleted} dead letters older than {older_than_days:g} days")


@kafka.command("grant-telephony")
def kafka_grant_telephony(
    ctx: typer.Context,
    tenant: str = typer.Option(..., help="an existing tenant, e.g. acme"),
    user: str = typer.Option(None, help="SCRAM principal (default: telephony-<tenant>)"),
) -> None:
    """Create the tenant's recordings topic, its telephony principal (SCRAM-SHA-512) and ACLs
    WRITE+DESCRIBE on that topic only. Idempotent. A new principal's password is printed once
    (or taken from CALLVAULT_KAFKA_GRANT_PASSWORD, which also changes an existing one's)."""
    settings = get_kafka_settings()
    ctx.obj.require_tenant(tenant)
    try:
        settings.tenant_topic(tenant)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    env_password = password_from_env()
    grant = asyncio.run(grant_telephony(settings, tenant=tenant, user=user, password=env_password))
    typer.echo(f"topic     {grant.topic} ({'created' if grant.topic_created else 'exists'})")
    typer.echo(f"principal User:{grant.user} ({'created' if grant.user_created else 'exists'}): "
               f"WRITE, DESCRIBE on {grant.topic} (LITERAL)")
    if grant.password and not env_password:
        typer.echo(f"password  {grant.password}")
        typer.echo("          shown once: give it to the tenant's telephony (CALLVAULT_KAFKA_SASL_PASSWORD); "
                   "callvault keeps only its SCRAM hash in Kafka")
    typer.echo(f"telephony: CALLVAULT_KAFKA_SECURITY_PROTOCOL=SASL_SSL CALLVAULT_KAFKA_SASL_USERNAME={grant.user} "
               "CALLVAULT_KAFKA_PER_TENANT_TOPICS=true")


def keys_ingest(ctx: typer.Context, tenant: str = typer.Option(..., help="an existing tenant")) -> None:
    """The tenant's current ingest public key (JSON), for a producer of your own to seal messages to.

    HPKE (RFC 9180) base mode, DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-256-GCM. The info is
    "callvault.sealed/v1", the tenant and the key id, each as a 4-byte big-endian length and its
    UTF-8 bytes; HPKE's output (enc || ciphertext) goes base64 in the envelope's "sealed". Ask
    again before ``use_until``."""
    ctx.obj.require_tenant(tenant)
    svc = ctx.obj.services()
    current = catalog_seal_keys(svc.engine, svc.storage, kafka=get_kafka_settings())(tenant)
    typer.echo(json.dumps({**current.to_json(), "suite": "DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-256-GCM",
                           "envelope": "callvault.sealed/v1"}, indent=2))


def push(
    ctx: typer.Context,
    audio: Path = typer.Argument(..., exists=True, dir_okay=False, help="audio file (wav, mp3, ogg, opus, flac)"),
    tenant: str = typer.Option(..., help="an existing tenant"),
    agent: str = typer.Option(..., help="agent id"),
    number: str = typer.Option(None, help="caller number (any usual format); omit it for a withheld number"),
    started_at: datetime = typer.Option(..., parser=parsed(aware_time), metavar="TIME",
                                        help="call start with its UTC offset, e.g. 2026-11-23T10:15:00+01:00"),
    team: str = typer.Option(None, help="team id"),
    direction: Direction = typer.Option(Direction.INBOUND, parser=parsed(one_of(Direction, "direction")),
                                        metavar="DIRECTION", help="inbound or outbound"),
    recording_id: str = typer.Option(None, parser=parsed(telephony_id), metavar="TELEPHONY_ID",
                                     help="telephony recording id (default: generated)"),
    redact: list[Span] = typer.Option(
        [], parser=parsed(lambda text: Span(span_ms(text))), metavar="START_MS-END_MS",
        help="span to silence (payment), repeatable; one running past the end of the audio is cut there, "
             "one starting after it has the call dead-lettered"),
    wait: bool = typer.Option(True, "--wait/--no-wait", help="wait for the worker's outcome (default), or not"),
    timeout: float = typer.Option(60.0, parser=parsed(amount(1, 3600, "the timeout (seconds)")),
                                  metavar="SECONDS", help="how long to wait for the outcome"),
) -> None:
    """Push one finished call onto Kafka, as the telephony system does, and say what became of it:
    stored, suppressed, duplicate, or dead-lettered with its reason (exit code 1, as on a timeout).
    Unknown tenants and impossible start times are refused before anything is sent."""
    ctx.obj.require_tenant(tenant)
    check_start(started_at, now=datetime.now(timezone.utc),
                max_ahead=timedelta(seconds=get_ingest_settings().max_clock_skew_seconds))
    call = Call(audio=audio.read_bytes(), tenant=tenant, agent_id=agent, caller_number=number,
                started_at=started_at, recording_id=recording_id or new_recording_id(), team_id=team,
                direction=direction, redactions=tuple(redact))
    ref = f"{tenant}/{call.recording_id}"
    kafka, storage, inline = get_kafka_settings(), get_storage_settings(), get_ingest_settings().inline_max_bytes
    if not wait:
        push_call(call, kafka, storage, inline_max_bytes=inline)
        typer.echo(ref)
        return
    try:
        outcome = push_and_wait(call, kafka, storage, inline_max_bytes=inline, timeout=timeout)
    except KafkaAccessError as exc:
        raise KafkaAccessError(f"{exc.message}; nothing was sent", hint="; ".join(filter(None, (
            exc.hint, "waiting reads the events and dead-letter topics: a producer that may not (a telephony "
                      "principal) pushes with --no-wait")))) from None
    _say_outcome(ctx, ref, timeout, outcome)


def _say_outcome(ctx: typer.Context, ref: str, timeout: float, outcome: CallOutcome | None) -> None:
    if outcome is None:
        raise CallvaultError(f"pushed {ref}, but no outcome came within {timeout:g} s",
                             hint="the call waits on the topic until a worker handles it: is one running "
                                  f"(`callvault worker`)? `callvault recordings show {ref} --actor ...` finds it "
                                  "once stored")
    if outcome.kind == PushOutcome.DEAD_LETTERED:
        raise CallvaultError(f"{ref} was dead-lettered, nothing stored: {outcome.reason}: {outcome.error}",
                             hint=f"`callvault dlq show {outcome.position}` shows it; fix the cause and "
                                  "push it again (or `callvault dlq replay`)")
    event = outcome.event
    if outcome.kind == Outcome.STORED:
        tenant, _, external_id = ref.partition("/")
        with ctx.obj.services().unit_of_work() as uow:
            row = lifecycle_service.recording_by_external_id(uow, tenant=tenant, external_id=external_id)
        silenced = ", ".join(f"{a}-{b} ms" for a, b in (row["redactions"] if row else None) or []) or "nothing"
        typer.echo(f"stored {ref} as recording {event['recording_id']}: {(event['duration_ms'] or 0) / 1000:.1f} s, "
                   f"silenced {silenced}; production copy {event['copy_id']} until {event['expires_at'][:10]}")
        typer.echo(f"see it: callvault recordings show {ref} --actor USER")
    elif outcome.kind == Outcome.DUPLICATE:
        typer.echo(f"duplicate: {ref} was already stored as recording {event['recording_id']}; nothing changed")
    elif outcome.kind == Outcome.SUPPRESSED:
        typer.echo(f"suppressed: the caller of {ref} objected to being recorded; nothing stored")
    elif outcome.kind == Outcome.ERASED_ON_ARRIVAL:
        typer.echo(f"erased-on-arrival: an erasure reached {ref} before it arrived (this call, or its caller's calls made "
                   "until the erasure); nothing stored")
    else:
        typer.echo(f"{outcome.kind}: {ref} was not stored (its production retention had already passed, "
                   f"{(event.get('expires_at') or '')[:10]})")


_LOGLEVELS = ("crit", "error", "warn", "info", "debug")


def worker(ctx: typer.Context,
           loglevel: str = typer.Option("info", "--loglevel", "-l", parser=parsed(one_of(_LOGLEVELS, "log level")),
                                        metavar="LEVEL", help=", ".join(_LOGLEVELS)),
           processes: int | None = typer.Option(None, "--processes", "-p", parser=parsed(whole(1, 64, "the worker processes")),
                                                metavar="N", help=(
               "worker processes on this host, one consumer group (default CALLVAULT_INGEST_PROCESSES, 1); "
               "at most the recordings topic's partitions"))) -> None:
    """Run the ingest worker (faust) until interrupted; with --processes N, N of them."""
    settings = get_ingest_settings()
    n = processes or settings.processes
    if n > 1:
        from .processes import supervise

        raise typer.Exit(supervise(n, loglevel, settings, get_kafka_settings()))
    ctx.obj.run_worker(loglevel)
