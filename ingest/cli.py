"""``callvault dlq|kafka|push|worker`` and ``keys ingest``: ingest's commands.

``ctx.obj`` is the composition root (``callvault.bootstrap.Root``): it builds the services,
authorises an ``--actor`` (``ctx.obj.authorise``) and runs the worker it wires. Kafka clients
are asyncio: each command runs its coroutine to the end with ``asyncio.run``.
"""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import typer

from core.errors import CallvaultError
from core.vocabulary import Action, AuditAction
from storage import audit
from storage.settings import get_storage_settings
from storage.transit import Quarantine

from . import dlq
from .kafka_admin import grant_telephony, password_from_env
from .producer import Call, catalog_seal_keys, push_call, resealer
from .settings import get_ingest_settings, get_kafka_settings

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
    try:
        partition, offset = int(part or 0), int(off)
    except ValueError:
        raise typer.BadParameter("give PARTITION:OFFSET, e.g. 0:42") from None
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
def dlq_replay(ctx: typer.Context, reason: str = typer.Option(None, help="only this reason code, e.g. unknown_tenant"),
               tenant: str = typer.Option(None, help="only this tenant"),
               actor: str = typer.Option(..., help="registered IT user (audited)")) -> None:
    """Send dead letters again to the recordings topic (idempotent: a stored call stays stored once)."""
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
              older_than_days: float = typer.Option(..., "--older-than", min=0,
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
    tenant: str = typer.Option(..., help="tenant slug, e.g. acme"),
    user: str = typer.Option(None, help="SCRAM principal (default: telephony-<tenant>)"),
) -> None:
    """Create the tenant's recordings topic, its telephony principal (SCRAM-SHA-512) and ACLs
    WRITE+DESCRIBE on that topic only. Idempotent. A new principal's password is printed once
    (or taken from CALLVAULT_KAFKA_GRANT_PASSWORD, which also changes an existing one's)."""
    settings = get_kafka_settings()
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


def keys_ingest(ctx: typer.Context, tenant: str = typer.Option(..., help="tenant slug")) -> None:
    """The tenant's current ingest public key (JSON), for a producer of your own to seal messages to.

    HPKE (RFC 9180) base mode, DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-256-GCM. The info is
    "callvault.sealed/v1", the tenant and the key id, each as a 4-byte big-endian length and its
    UTF-8 bytes; HPKE's output (enc || ciphertext) goes base64 in the envelope's "sealed". Ask
    again before ``use_until``."""
    svc = ctx.obj.services()
    current = catalog_seal_keys(svc.engine, svc.storage, kafka=get_kafka_settings())(tenant)
    typer.echo(json.dumps({**current.to_json(), "suite": "DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-256-GCM",
                           "envelope": "callvault.sealed/v1"}, indent=2))


def _spans(redact: list[str]) -> tuple[tuple[int, int], ...]:
    spans = []
    for span in redact:
        try:
            start, end = (int(x) for x in span.split("-", 1))
        except ValueError:
            raise typer.BadParameter(f"--redact {span!r}: expected START_MS-END_MS, e.g. 12000-45000") from None
        spans.append((start, end))
    return tuple(spans)


def push(
    audio: Path = typer.Argument(..., exists=True, dir_okay=False, help="audio file (wav, mp3, ogg, opus, flac)"),
    tenant: str = typer.Option(..., help="tenant slug"),
    agent: str = typer.Option(..., help="agent id"),
    number: str = typer.Option(None, help="caller number (any usual format); omit it for a withheld number"),
    started_at: datetime = typer.Option(..., formats=["%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%d %H:%M:%S%z"],
                                        help="call start with its UTC offset, e.g. 2026-11-23T10:15:00+01:00"),
    team: str = typer.Option(None, help="team id"),
    direction: str = typer.Option("inbound", help="inbound or outbound"),
    recording_id: str = typer.Option(None, help="telephony recording id (default: generated)"),
    redact: list[str] = typer.Option([], help="START_MS-END_MS span to silence (payment); repeatable"),
) -> None:
    """Push one finished call onto Kafka, as the telephony system does; prints the recording id."""
    spans = _spans(redact)
    if started_at.tzinfo is None:
        raise typer.BadParameter("--started-at needs a UTC offset, e.g. 2026-11-23T10:15:00+01:00")
    call = Call(audio=audio.read_bytes(), tenant=tenant, agent_id=agent, caller_number=number,
                started_at=started_at, recording_id=recording_id, team_id=team, direction=direction,
                redactions=spans)
    typer.echo(push_call(call, get_kafka_settings(), get_storage_settings(),
                         inline_max_bytes=get_ingest_settings().inline_max_bytes))


def worker(ctx: typer.Context,
           loglevel: str = typer.Option("info", "--loglevel", "-l", help="crit, error, warn, info or debug")) -> None:
    """Run the ingest worker (faust) until interrupted."""
    ctx.obj.run_worker(loglevel)
