"""``callvault tenants|copies|holds|lifecycle`` and ``storage reconcile``: lifecycle's commands.

Each parses its arguments (the readers of ``core.inputs``: a malformed value is a usage error,
exit code 2), has the ``--actor`` authorised (a registered user the policy allows;
``ctx.obj.authorise``, which the composition root wires to ``access.operators``), and calls
``lifecycle.service`` in one unit of work. ``ctx.obj`` is ``callvault.bootstrap.Root``. A
recording is named by its catalog id or as ``TENANT/TELEPHONY_ID`` (``ctx.obj.recording_id``).
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import typer

from core.inputs import (
    RecordingRef,
    amount,
    aware_time,
    copy_id,
    nonblank,
    one_of,
    parsed,
    recording_ref,
    tenant_slug,
    whole,
)
from core.vocabulary import COPY_ACTIONS, COPY_TIERS, Action, Tier

from . import service
from .erasures import replay_ledger
from .exceptions import NotFound
from .reconcile import reconcile as reconcile_store
from .report import html_chart, lifecycle_report, text_table
from .sweeper import count_due, sweep

tenants = typer.Typer(no_args_is_help=True, help="Clients (data controllers) and their retention")
copies = typer.Typer(no_args_is_help=True, help="Linked copies: monitoring, training, complaint extracts")
holds = typer.Typer(no_args_is_help=True, help="Legal holds: nothing deletes a held copy")
lifecycle = typer.Typer(no_args_is_help=True, help="Retention enforcement")


_RECORDING_HELP = "the recording: its catalog id (UUID) or TENANT/TELEPHONY_ID, e.g. acme/cv-3610fbaf"
_COPY = typer.Option([], parser=parsed(copy_id), metavar="COPY_ID", help="copy id, a UUID (repeatable)")
_RECORDING = typer.Option(None, parser=parsed(recording_ref), metavar="RECORDING",
                          help=f"every copy of {_RECORDING_HELP}")
_ACTOR_IC = typer.Option(..., help="registered internal-control user (audited)")


@tenants.command("add")
def tenants_add(ctx: typer.Context, tenant: str = typer.Argument(
                    ..., parser=parsed(tenant_slug), metavar="TENANT",
                    help="tenant slug: 2 to 63 lower-case letters, digits and inner hyphens, e.g. acme"),
                name: str = typer.Option(None, help="display name")) -> None:
    """Register a client; calls for unknown tenants are dead-lettered."""
    with ctx.obj.services().unit_of_work() as uow:
        added = service.add_tenant(uow, tenant=tenant, name=name, now=datetime.now(timezone.utc))
        uow.commit()
    typer.echo(f"tenant {tenant} added" if added else f"tenant {tenant} already exists")


# "-1" is read as a value (then refused as one), not as an unknown option.
@tenants.command("set-retention", context_settings={"ignore_unknown_options": True})
def tenants_set_retention(
    ctx: typer.Context, tenant: str,
    tier: Tier = typer.Argument(..., parser=parsed(one_of(Tier, "tier")), metavar="TIER",
                                help=f"one of {', '.join(Tier)}"),
    months: int = typer.Argument(..., parser=parsed(whole(1, 1200, "months")), metavar="MONTHS",
                                 help="the tier's retention for this tenant, in months (within the legal bounds)"),
    dry_run: bool = typer.Option(False, "--dry-run", help="preview: how many copies change, expire now, when"),
    actor: str = typer.Option(..., help="registered IT or internal-control user who asks (audited)"),
) -> None:
    """Override a tier's retention for a tenant; re-applies to existing copies."""
    user = ctx.obj.authorise(actor, Action.RETENTION_SET, tenant=tenant, target_type="tenant", target_id=tenant)
    svc = ctx.obj.services()
    with svc.unit_of_work() as uow:
        change = service.set_retention(uow, svc, tenant=tenant, tier=tier, months=months, dry_run=dry_run,
                                       now=datetime.now(timezone.utc), actor=user.id, role=user.role.value)
        uow.commit()
    typer.echo(("dry run: " if dry_run else "") + change.summary())


@copies.command("create")
def copies_create(
    ctx: typer.Context,
    recording: RecordingRef = typer.Argument(..., parser=parsed(recording_ref), metavar="RECORDING",
                                             help=_RECORDING_HELP),
    tier: Tier = typer.Option(..., parser=parsed(one_of(COPY_TIERS, "tier")), metavar="TIER",
                              help=f"one of {', '.join(COPY_TIERS)}"),
    actor: str = typer.Option(..., help="registered user who asks, whose role may make that copy (audited)"),
    reason: str = typer.Option("", help="complaint or GDPR request reference (extracts)"),
    report: str = typer.Option(None, help="the coach's training report (training)"),
) -> None:
    """Copy a recording into another tier with its own clock."""
    rid = ctx.obj.recording_id(recording)
    now = datetime.now(timezone.utc)
    user = ctx.obj.authorise(actor, COPY_ACTIONS[tier], targets=ctx.obj.source_target(rid, now),
                             target_type="recording", target_id=str(rid))
    svc = ctx.obj.services()
    with svc.unit_of_work() as uow:
        info = service.create_copy(uow, svc, recording_id=rid, tier=tier, actor=user.id, role=user.role.value,
                                   now=now, reason=reason, training_report=report)
        uow.commit()
    typer.echo(f"{'created' if info.created else 'exists'} {info.tier.value} copy {info.copy_id}, "
               f"expires {info.expires_at:%Y-%m-%d}")


def _authorise_hold(ctx: typer.Context, actor: str, action: Action, copy: list[uuid.UUID],
                    recording: RecordingRef | None):
    """The actor allowed ``action`` on every copy named (or every live copy of the recording);
    the policy rules first, then a target with no live copy is NotFound (nothing held, exit 1)."""
    if bool(copy) == bool(recording):
        raise typer.BadParameter("give either --copy (repeatable) or --recording")
    copy_ids, recording_id = list(dict.fromkeys(copy)) or None, ctx.obj.recording_id(recording) if recording else None
    targets = ctx.obj.copy_targets(copy_ids, recording_id)
    user = ctx.obj.authorise(actor, action, targets=targets,
                             target_type="recording" if recording_id else "copy",
                             target_id=str(recording_id) if recording_id else ",".join(map(str, copy_ids or [])))
    if len(targets) < len(copy_ids or [None]):
        what = f"recording {recording}" if recording else "copies " + ", ".join(map(str, copy_ids or []))
        raise NotFound(f"{what}: no live copy found", hint="it does not exist, or no longer (expired or erased)")
    return user, copy_ids, recording_id


@holds.command("set")
def holds_set(ctx: typer.Context, copy: list[uuid.UUID] = _COPY, recording: RecordingRef = _RECORDING,
              reason: str = typer.Option(..., parser=parsed(nonblank("the reason")),
                                         help="why (case or litigation reference)"),
              actor: str = _ACTOR_IC) -> None:
    """Place a legal hold (mirrored to S3 object legal hold where the bucket has object lock)."""
    user, copy_ids, recording_id = _authorise_hold(ctx, actor, Action.HOLD, copy, recording)
    svc = ctx.obj.services()
    with svc.unit_of_work() as uow:
        result = service.set_hold(uow, svc, copy_ids=copy_ids, recording_id=recording_id, reason=reason,
                                  actor=user.id, role=user.role.value, now=datetime.now(timezone.utc))
        uow.commit()
    typer.echo(f"held {len(result.changed)}, already held {len(result.unchanged)}, refused (being deleted) "
               f"{len(result.refused)}, mirrored to S3 {result.mirrored}")


@holds.command("release")
def holds_release(ctx: typer.Context, copy: list[uuid.UUID] = _COPY, recording: RecordingRef = _RECORDING,
                  actor: str = _ACTOR_IC) -> None:
    """Release a legal hold; the copy's retention applies again at the next sweep."""
    user, copy_ids, recording_id = _authorise_hold(ctx, actor, Action.RELEASE_HOLD, copy, recording)
    svc = ctx.obj.services()
    with svc.unit_of_work() as uow:
        result = service.release_hold(uow, svc, copy_ids=copy_ids, recording_id=recording_id, actor=user.id,
                                      role=user.role.value, now=datetime.now(timezone.utc))
        uow.commit()
    typer.echo(f"released {len(result.changed)}, not held {len(result.unchanged)}")


@lifecycle.command("sweep")
def lifecycle_sweep(
    ctx: typer.Context,
    dry_run: bool = typer.Option(False, "--dry-run", help="count what would be deleted"),
    now: datetime = typer.Option(None, parser=parsed(aware_time), metavar="TIME",
                                 help="pretend it is this time, with its UTC offset, e.g. 2027-03-01T00:00:00Z"),
    batch_size: int = typer.Option(None, parser=parsed(whole(1, 100_000, "the batch size")), metavar="N",
                                   help="copies per batch (default from settings)"),
) -> None:
    """Delete every expired, unheld copy (objects with all versions, then rows); safe to kill and re-run."""
    svc = ctx.obj.services()
    at = now or datetime.now(timezone.utc)
    if dry_run:
        typer.echo(sweep(svc.engine, svc.store, now=at, dry_run=True).summary(dry_run=True))
        return
    with svc.engine.connect() as conn:
        due, _held = count_due(conn, at)
    with typer.progressbar(length=due, label="sweeping", file=None) as bar:
        report = sweep(svc.engine, svc.store, now=at, batch_size=batch_size or svc.lifecycle.sweep_batch_size,
                       progress=bar.update, anchors=svc.anchors)
    typer.echo(report.summary())


@lifecycle.command("report")
def lifecycle_report_cmd(
    ctx: typer.Context,
    html_out: Path = typer.Option(None, "--html", dir_okay=False, help="where to write the chart page "
                                  "(default: lifecycle-report-<time>.html in the output folder, "
                                  "CALLVAULT_LIFECYCLE_OUTPUT_DIR)"),
    tenant: list[str] = typer.Option([], help="only these tenants (repeatable)"),
) -> None:
    """Per tenant and tier: copies and bytes now, what expires in 7/30/90 days; table + HTML chart."""
    now = datetime.now(timezone.utc)
    ctx.obj.require_tenant(*tenant)
    path = ctx.obj.output_file(html_out, f"lifecycle-report-{now:%Y%m%dT%H%M%SZ}.html")
    with ctx.obj.services().engine.connect() as conn:
        rows = lifecycle_report(conn, now=now, tenants=tenant or None)
    typer.echo(text_table(rows))
    path.write_text(html_chart(rows, now=now))
    typer.echo(f"chart: {path.resolve()}")


def storage_reconcile(
    ctx: typer.Context,
    repair: bool = typer.Option(False, "--repair",
                                help="delete orphan objects, orphan versions and dangling rows (audited)"),
    grace_minutes: float = typer.Option(15.0, parser=parsed(amount(0, 10_080, "the grace period (minutes)")),
                                        metavar="MINUTES",
                                        help="leave objects younger than this alone (in-flight writes)"),
) -> None:
    """Report orphan objects, orphan versions (no row names them), rows whose object or recorded
    version is missing and held copies whose object is missing; repair the first three only with
    --repair (held copies and versions under legal hold or retention are never touched).

    Before anything else, replays the erasure ledger (after a catalog restore: keys destroyed and
    rows deleted again). Exits 4 while something is left: anything to repair (without --repair)
    or a held-copy incident (a protected version without its row included)."""
    svc = ctx.obj.services()
    # First the erasure ledger, always (not only with --repair): after a catalog restore, an
    # erased caller must not come back, whatever else reconcile finds.
    replay_ledger(svc.engine, svc.store, svc.keys, svc.ledger, now=datetime.now(timezone.utc), say=typer.echo)
    report = reconcile_store(svc.engine, svc.store, svc.storage.recordings_bucket, repair=repair,
                             grace=timedelta(minutes=grace_minutes), say=typer.echo)
    if report.held_missing or report.held_orphans or report.protected_versions or (not repair and not report.clean):
        raise typer.Exit(4)
