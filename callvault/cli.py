"""The ``callvault`` command. Thin: each command parses arguments and calls a service.

Errors of ours (``CallvaultError``) are printed as one clear message and exit code 1;
anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import typer

from callvault.errors import CallvaultError

app = typer.Typer(no_args_is_help=True, add_completion=False, help="callvault: call-recording lifecycle pipeline")
stack_app = typer.Typer(no_args_is_help=True, help="Install, start, stop the local Kafka, MinIO and PostgreSQL")
app.add_typer(stack_app, name="stack")
storage_app = typer.Typer(no_args_is_help=True, help="Buckets, residency checks, catalog migrations, reconciliation")
app.add_typer(storage_app, name="storage")


def _err(message: str) -> None:
    typer.secho(message, fg=typer.colors.RED, err=True)


def _authorise(engine, actor: str, action, **kw):
    """The ``--actor`` as a registered user the policy allows ``action`` (``access.operators``);
    audited with the OS user; a refusal is one line and exit code 1."""
    from datetime import timezone

    from access.operators import authorise

    return authorise(engine, actor, action, now=datetime.now(timezone.utc), **kw)


@stack_app.command("up")
def stack_up() -> None:
    """Install what is missing, start what is not running, wait until each server answers."""
    from deploy.local.stack import Stack

    stack = Stack.from_settings()
    started = stack.up(say=typer.echo)
    typer.echo(f"stack ready ({'started: ' + ', '.join(started) if started else 'all already running'})")
    typer.echo(f"postgres url: {stack.postgres_url.split('@')[0].rsplit(':', 1)[0]}:***@{stack.postgres_url.split('@')[1]}")


@stack_app.command("down")
def stack_down() -> None:
    """Stop the local servers started by callvault."""
    from deploy.local.stack import Stack

    Stack.from_settings().down(say=typer.echo)


@stack_app.command("status")
def stack_status(as_json: bool = typer.Option(False, "--json", help="machine-readable output")) -> None:
    """Show whether each server runs and answers, where it listens and where its log is."""
    from deploy.local.stack import Stack

    status = Stack.from_settings().status()
    if as_json:
        typer.echo(json.dumps(status, indent=2))
    else:
        for name, s in status.items():
            state = "up" if s["answers"] else ("running, not answering" if s["running"] else "down")
            typer.echo(f"{name:<10} {state:<24} {s['address']:<22} log: {s['log']}")
            if "listeners" in s:
                sasl = "up" if s["sasl_ssl_open"] else "down (run `callvault stack up`)"
                typer.echo(f"{'':<10} {'SASL_SSL ' + sasl:<24} {s['listeners']['SASL_SSL']:<22} "
                           "(`callvault stack env` for client settings)")
    if not all(s["answers"] for s in status.values()):
        raise typer.Exit(3)


@stack_app.command("env")
def stack_env(reveal: bool = typer.Option(False, "--reveal", help="print the password itself, e.g. for "
                                                                  "eval \"$(callvault stack env --reveal)\"")) -> None:
    """Client settings for the local Kafka's SASL_SSL listener (as the worker's super-user principal)."""
    import shlex

    from deploy.local.stack import Stack

    stack = Stack.from_settings()
    for name, value in stack.kafka_client_env().items():
        if name.endswith("_PASSWORD") and not reveal:
            typer.echo(f"# {name}: [local] kafka_admin_password in {stack.settings.home / 'callvault.toml'} "
                       "(or --reveal)")
            continue
        typer.echo(f"export {name}={shlex.quote(value)}")
    typer.echo("# The PLAINTEXT listener (CALLVAULT_KAFKA_BOOTSTRAP_SERVERS="
               f"{stack.kafka.address}) is for the embedded demo only, on the loopback address.")


@storage_app.command("init")
def storage_init() -> None:
    """Create or fix the buckets (versioning, object lock, SSE, lifecycle backstop) and migrate the catalog."""
    from storage.admin import init_buckets, minio_admin_client
    from storage.catalog.migrate import upgrade
    from storage.ledger import init_ledger_bucket
    from storage.objectstore import s3_client
    from storage.residency import check_all, check_settings
    from storage.settings import get_catalog_settings, get_storage_settings

    settings = get_storage_settings()
    check_settings(settings)  # refuse before creating anything
    init_buckets(settings, say=typer.echo)
    init_ledger_bucket(minio_admin_client(settings), settings, say=typer.echo)
    check_all(s3_client(settings), settings)
    typer.echo(f"residency: buckets located in {settings.region} (allowed)")
    upgrade(get_catalog_settings().url)
    typer.echo("catalog: migrated to the latest schema")


@storage_app.command("check")
def storage_check() -> None:
    """Residency check: configured region, endpoint, and every bucket's actual location."""
    from storage.objectstore import s3_client
    from storage.residency import check_all
    from storage.settings import get_storage_settings

    settings = get_storage_settings()
    check_all(s3_client(settings), settings)
    typer.echo(f"residency ok: region {settings.region}, buckets in allowed regions")


@storage_app.command("reconcile")
def storage_reconcile(
    repair: bool = typer.Option(False, "--repair", help="delete orphan objects and dangling rows (audited)"),
    grace_minutes: float = typer.Option(15.0, help="leave objects younger than this alone (in-flight writes)"),
) -> None:
    """Report orphan objects, rows whose object is missing and held copies whose object is missing;
    repair the first two only with --repair (held copies are never touched).

    Before anything else, replays the erasure ledger (after a catalog restore: keys destroyed and
    rows deleted again). Exits 4 while something is left: anything to repair (without --repair)
    or a held-copy incident."""
    from datetime import timedelta, timezone

    from callvault.bootstrap import services
    from lifecycle.erasures import replay_ledger
    from lifecycle.reconcile import reconcile

    svc = services()
    # First the erasure ledger, always (not only with --repair): after a catalog restore, an
    # erased caller must not come back, whatever else reconcile finds.
    replay_ledger(svc.engine, svc.store, svc.keys, svc.ledger, now=datetime.now(timezone.utc), say=typer.echo)
    report = reconcile(svc.engine, svc.store, svc.storage.recordings_bucket, repair=repair,
                       grace=timedelta(minutes=grace_minutes), say=typer.echo)
    if report.held_missing or report.held_orphans or (not repair and not report.clean):
        raise typer.Exit(4)


tenants_app = typer.Typer(no_args_is_help=True, help="Clients (data controllers) and their retention")
app.add_typer(tenants_app, name="tenants")


@tenants_app.command("add")
def tenants_add(tenant: str = typer.Argument(..., help="tenant slug, e.g. acme"),
                name: str = typer.Option(None, help="display name")) -> None:
    """Register a client; calls for unknown tenants are dead-lettered."""
    from datetime import datetime, timezone

    import sqlalchemy as sa

    from storage.catalog import tables as t
    from storage.catalog.db import make_engine

    with make_engine().begin() as conn:
        if conn.execute(sa.select(t.tenants.c.id).where(t.tenants.c.id == tenant)).first():
            typer.echo(f"tenant {tenant} already exists")
            return
        conn.execute(t.tenants.insert().values(id=tenant, name=name or tenant, created_at=datetime.now(timezone.utc)))
    typer.echo(f"tenant {tenant} added")


@tenants_app.command("set-retention")
def tenants_set_retention(
    tenant: str, tier: str, months: int,
    dry_run: bool = typer.Option(False, "--dry-run", help="preview: how many copies change, expire now, when"),
    actor: str = typer.Option(..., help="registered IT or internal-control user who asks (audited)"),
) -> None:
    """Override a tier's retention for a tenant; re-applies to existing copies."""
    from datetime import datetime, timezone

    from access.policy import Action
    from callvault.bootstrap import services
    from lifecycle.retention import set_retention

    svc = services()
    user = _authorise(svc.engine, actor, Action.RETENTION_SET, tenant=tenant, target_type="tenant",
                      target_id=tenant)
    with svc.engine.begin() as conn:
        change = set_retention(conn, tenant=tenant, tier=tier, months=months, bounds=svc.bounds,
                               now=datetime.now(timezone.utc), dry_run=dry_run, actor=user.id,
                               role=user.role.value)
    typer.echo(("dry run: " if dry_run else "") + change.summary())


copies_app = typer.Typer(no_args_is_help=True, help="Linked copies: monitoring, training, complaint extracts")
app.add_typer(copies_app, name="copies")


@copies_app.command("create")
def copies_create(
    recording_id: str,
    tier: str = typer.Option(..., help="monitoring, training or complaint-extract"),
    actor: str = typer.Option(..., help="registered user who asks, whose role may make that copy (audited)"),
    reason: str = typer.Option("", help="complaint or GDPR request reference (extracts)"),
    report: str = typer.Option(None, help="the coach's training report (training)"),
) -> None:
    """Copy a recording into another tier with its own clock."""
    import uuid
    from datetime import datetime, timezone

    from access.operators import source_target
    from access.policy import Action
    from callvault.bootstrap import services
    from lifecycle.copies import create_copy

    actions = {"monitoring": Action.COPY_MONITORING, "training": Action.COPY_TRAINING,
               "complaint-extract": Action.COPY_EXTRACT}
    if tier not in actions:
        raise typer.BadParameter(f"--tier is one of {', '.join(actions)}")
    try:
        rid = uuid.UUID(recording_id)
    except ValueError:
        raise typer.BadParameter("RECORDING_ID is the recording's catalog id (a UUID)") from None
    svc = services()
    now = datetime.now(timezone.utc)
    user = _authorise(svc.engine, actor, actions[tier], targets=source_target(svc.engine, rid, now),
                      target_type="recording", target_id=str(rid))
    with svc.engine.begin() as conn:
        info = create_copy(conn, svc.store, svc.keys, recording_id=rid, tier=tier, actor=user.id,
                           role=user.role.value, now=now, reason=reason, training_report=report)
    typer.echo(f"{'created' if info.created else 'exists'} {info.tier.value} copy {info.copy_id}, "
               f"expires {info.expires_at:%Y-%m-%d}")


holds_app = typer.Typer(no_args_is_help=True, help="Legal holds: nothing deletes a held copy")
app.add_typer(holds_app, name="holds")


def _hold_targets(copy: list[str], recording: str | None):
    import uuid

    if bool(copy) == bool(recording):
        raise typer.BadParameter("give either --copy (repeatable) or --recording")
    return ([uuid.UUID(c) for c in copy] or None), (uuid.UUID(recording) if recording else None)


@holds_app.command("set")
def holds_set(copy: list[str] = typer.Option([], help="copy id (repeatable)"),
              recording: str = typer.Option(None, help="every copy of this recording"),
              reason: str = typer.Option(..., help="why (case or litigation reference)"),
              actor: str = typer.Option(..., help="registered internal-control user (audited)")) -> None:
    """Place a legal hold (mirrored to S3 object legal hold where the bucket has object lock)."""
    from datetime import datetime, timezone

    from access.operators import copy_targets
    from access.policy import Action
    from callvault.bootstrap import services
    from lifecycle.holds import set_hold

    copy_ids, recording_id = _hold_targets(copy, recording)
    svc = services()
    user = _authorise(svc.engine, actor, Action.HOLD, targets=copy_targets(svc.engine, copy_ids, recording_id),
                      target_type="recording" if recording_id else "copy",
                      target_id=str(recording_id) if recording_id else ",".join(map(str, copy_ids or [])))
    with svc.engine.begin() as conn:
        result = set_hold(conn, svc.store, copy_ids=copy_ids, recording_id=recording_id, reason=reason,
                          actor=user.id, role=user.role.value, now=datetime.now(timezone.utc), ledger=svc.ledger)
    typer.echo(f"held {len(result.changed)}, already held {len(result.unchanged)}, refused (being deleted) "
               f"{len(result.refused)}, mirrored to S3 {result.mirrored}")


@holds_app.command("release")
def holds_release(copy: list[str] = typer.Option([], help="copy id (repeatable)"),
                  recording: str = typer.Option(None, help="every copy of this recording"),
                  actor: str = typer.Option(..., help="registered internal-control user (audited)")) -> None:
    """Release a legal hold; the copy's retention applies again at the next sweep."""
    from datetime import datetime, timezone

    from access.operators import copy_targets
    from access.policy import Action
    from callvault.bootstrap import services
    from lifecycle.holds import release_hold

    copy_ids, recording_id = _hold_targets(copy, recording)
    svc = services()
    user = _authorise(svc.engine, actor, Action.RELEASE_HOLD,
                      targets=copy_targets(svc.engine, copy_ids, recording_id),
                      target_type="recording" if recording_id else "copy",
                      target_id=str(recording_id) if recording_id else ",".join(map(str, copy_ids or [])))
    with svc.engine.begin() as conn:
        result = release_hold(conn, svc.store, copy_ids=copy_ids, recording_id=recording_id, actor=user.id,
                              role=user.role.value, now=datetime.now(timezone.utc), ledger=svc.ledger)
    typer.echo(f"released {len(result.changed)}, not held {len(result.unchanged)}")


lifecycle_app = typer.Typer(no_args_is_help=True, help="Retention enforcement")
app.add_typer(lifecycle_app, name="lifecycle")


@lifecycle_app.command("sweep")
def lifecycle_sweep(
    dry_run: bool = typer.Option(False, "--dry-run", help="count what would be deleted"),
    now: datetime = typer.Option(None, formats=["%Y-%m-%dT%H:%M:%S%z"], help="pretend it is this time (UTC offset)"),
    batch_size: int = typer.Option(None, help="copies per batch (default from settings)"),
) -> None:
    """Delete every expired, unheld copy (objects with all versions, then rows); safe to kill and re-run."""
    from datetime import timezone

    from callvault.bootstrap import services
    from lifecycle.sweeper import count_due, sweep

    svc = services()
    at = now or datetime.now(timezone.utc)
    with svc.engine.connect() as conn:
        due, _held = count_due(conn, at)
    if dry_run:
        typer.echo(sweep(svc.engine, svc.store, now=at, dry_run=True).summary(dry_run=True))
        return
    with typer.progressbar(length=due, label="sweeping", file=None) as bar:
        report = sweep(svc.engine, svc.store, now=at, batch_size=batch_size or svc.lifecycle.sweep_batch_size,
                       progress=bar.update, anchors=svc.anchors)
    typer.echo(report.summary())


@lifecycle_app.command("report")
def lifecycle_report_cmd(
    html_out: Path = typer.Option(Path("lifecycle-report.html"), "--html", help="where to write the chart page"),
    tenant: list[str] = typer.Option([], help="only these tenants (repeatable)"),
) -> None:
    """Per tenant and tier: copies and bytes now, what expires in 7/30/90 days; table + HTML chart."""
    from datetime import timezone

    from callvault.bootstrap import services
    from lifecycle.report import html_chart, lifecycle_report, text_table

    now = datetime.now(timezone.utc)
    with services().engine.connect() as conn:
        rows = lifecycle_report(conn, now=now, tenants=tenant or None)
    typer.echo(text_table(rows))
    html_out.write_text(html_chart(rows, now=now))
    typer.echo(f"chart: {html_out.resolve()}")


users_app = typer.Typer(no_args_is_help=True, help="People who may use the API: roles, tenants, teams")
app.add_typer(users_app, name="users")


@users_app.command("add")
def users_add(
    user_id: str,
    role: str = typer.Option(..., help="consultant, manager, coach, internal-control or it"),
    tenant: list[str] = typer.Option(..., help="tenant slug (repeatable); * for a group-level user"),
    team: list[str] = typer.Option([], help="TENANT/TEAM/RELATION, relation = member, manager or coach (repeatable)"),
    agent: str = typer.Option(None, help="the agent id of a consultant's calls"),
    contract_end: datetime = typer.Option(None, formats=["%Y-%m-%d"], help="no access after this day"),
    name: str = typer.Option(None, help="display name"),
) -> None:
    """Register a user."""
    from callvault.bootstrap import services
    from access.identities import add_user

    teams = []
    for spec in team:
        parts = spec.split("/")
        if len(parts) != 3:
            raise typer.BadParameter(f"--team {spec!r}: expected TENANT/TEAM/RELATION, e.g. acme/collections-1/manager")
        teams.append(tuple(parts))
    with services().engine.begin() as conn:
        user = add_user(conn, user_id=user_id, role=role, tenants=tenant, teams=teams, agent_id=agent,
                        contract_end=contract_end.date() if contract_end else None, display_name=name)
    typer.echo(f"user {user.id} added: {user.role.value} of {', '.join(sorted(user.tenants))}")


@users_app.command("revoke")
def users_revoke(user_id: str) -> None:
    """Revoke a user at once: every request is refused, even with an unexpired token."""
    from callvault.bootstrap import services
    from access.identities import revoke_user

    with services().engine.begin() as conn:
        revoke_user(conn, user_id)
    typer.echo(f"user {user_id} revoked")


@users_app.command("token")
def users_token(user_id: str, minutes: int = typer.Option(None, help="lifetime (default from settings)")) -> None:
    """Print a bearer token for a user (HS256, signed with CALLVAULT_ACCESS_JWT_SECRET)."""
    from datetime import timedelta

    from access.identities import load_user
    from access.settings import get_access_settings
    from access.tokens import issue_token
    from callvault.bootstrap import services

    with services().engine.connect() as conn:
        if load_user(conn, user_id) is None:
            raise typer.BadParameter(f"user {user_id!r} does not exist; add it with `callvault users add`")
    typer.echo(issue_token(user_id, get_access_settings(), ttl=timedelta(minutes=minutes) if minutes else None))


keys_app = typer.Typer(no_args_is_help=True, help="Master keys: versions, rotation, the number-hash key")
app.add_typer(keys_app, name="keys")


@keys_app.command("status")
def keys_status() -> None:
    """Live caller keys per master-key version (a retired version may be destroyed once it shows 0)."""
    from callvault.bootstrap import services

    svc = services()
    with svc.engine.connect() as conn:
        counts = svc.keys.versions_in_use(conn)
    typer.echo(f"current master key version: {svc.keys.master_version}")
    for version, n in sorted(counts.items()) or [("-", 0)]:
        typer.echo(f"  {version}: {n} live caller keys")
    typer.echo(f"number-hash key: {'pinned' if svc.keys.hash_key_pinned else 'derived from the master key'}")


@keys_app.command("hash-key")
def keys_hash_key() -> None:
    """Print the number-hash key (base64), to pin as CALLVAULT_STORAGE_NUMBER_HASH_KEY before a rotation.

    It cannot unwrap any key: it only keys the hashes the suppression list and lookups by number use."""
    import base64

    from callvault.bootstrap import services

    typer.echo(base64.b64encode(services().keys.hash_key).decode())


@keys_app.command("ingest")
def keys_ingest(tenant: str = typer.Option(..., help="tenant slug")) -> None:
    """The tenant's current ingest public key (JSON), for a producer of your own to seal messages to.

    HPKE (RFC 9180) base mode, DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-256-GCM. The info is
    "callvault.sealed/v1", the tenant and the key id, each as a 4-byte big-endian length and its
    UTF-8 bytes; HPKE's output (enc || ciphertext) goes base64 in the envelope's "sealed". Ask
    again before ``use_until``."""
    import json

    from callvault.bootstrap import services
    from ingest.producer import catalog_seal_keys
    from ingest.settings import get_kafka_settings

    svc = services()
    current = catalog_seal_keys(svc.engine, svc.storage, kafka=get_kafka_settings())(tenant)
    typer.echo(json.dumps({**current.to_json(), "suite": "DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-256-GCM",
                           "envelope": "callvault.sealed/v1"}, indent=2))


@keys_app.command("rotate-master")
def keys_rotate_master(batch_size: int = typer.Option(1000, min=1, help="caller keys re-wrapped per transaction")) -> None:
    """Re-wrap every live caller key under the current master key (CALLVAULT_STORAGE_MASTER_KEY).

    Before: set the new key and a new CALLVAULT_STORAGE_MASTER_KEY_VERSION, move the old key into
    CALLVAULT_STORAGE_RETIRED_MASTER_KEYS, and pin CALLVAULT_STORAGE_NUMBER_HASH_KEY. After: remove
    and destroy the old key; every catalog backup taken before is then unreadable. Resumable."""
    from callvault.bootstrap import services

    svc = services()
    if not svc.keys.hash_key_pinned:
        raise CallvaultError("the number-hash key is derived from the master key: rotating the master would "
                             "change every number hash (suppression list, lookups by number)",
                             hint="before the rotation, with the old master key still current, run `callvault keys "
                                  "hash-key` and set its output as CALLVAULT_STORAGE_NUMBER_HASH_KEY")
    total = 0
    while True:
        with svc.engine.begin() as conn:
            done = svc.keys.rotate(conn, batch_size=batch_size)
        if not done:
            break
        total += done
        typer.echo(f"re-wrapped {total} caller keys under master key {svc.keys.master_version}")
    with svc.engine.connect() as conn:
        left = {v: n for v, n in svc.keys.versions_in_use(conn).items() if v not in (svc.keys.master_version, "tenant")}
    typer.echo(f"rotation done: {total} caller keys re-wrapped; every live key is under master key "
               f"{svc.keys.master_version}" if not left else f"still under other versions: {left}")
    if not left:
        typer.echo("now remove the retired master keys from the configuration and destroy them")


audit_app = typer.Typer(no_args_is_help=True, help="The tamper-evident audit trail")
app.add_typer(audit_app, name="audit")


@audit_app.command("verify")
def audit_verify() -> None:
    """Walk the hash chain and check it against the signed anchors; exit 1 naming the first
    edited, deleted, reordered or rewritten entry, or a cut tail."""
    from access.audit import verify
    from callvault.bootstrap import services
    from callvault.errors import CallvaultError

    svc = services()
    try:
        with svc.engine.connect() as conn:
            result = verify(conn, svc.anchors)
    except CallvaultError as exc:
        _err(f"audit trail not verified: {exc}")
        raise typer.Exit(1) from None
    if not result.ok:
        where = f" at entry seq={result.first_bad_seq}" if result.first_bad_seq is not None else ""
        _err(f"audit trail broken{where}: {result.problem}")
        raise typer.Exit(1)
    anchored = (f"; {result.anchors} signed anchors match, the newest at seq={result.anchored_seq} "
                f"({result.unanchored} newer entries covered by the chain only)" if result.anchored_seq else "")
    typer.echo(f"audit trail intact: {result.entries} entries{anchored}")
    for note in result.notes:
        typer.echo(f"note: {note}")


@audit_app.command("anchor")
def audit_anchor() -> None:
    """Write the chain's head now to the object-locked ledger bucket, signed (also done on a timer)."""
    from callvault.bootstrap import services

    svc = services()
    if svc.anchors is None:
        _err("no anchor key: set CALLVAULT_STORAGE_AUDIT_ANCHOR_KEY (base64, 32 bytes)")
        raise typer.Exit(1)
    head = svc.anchors.write(svc.engine)
    typer.echo(f"anchored seq={head.seq} ({head.count} entries)" if head else "nothing new to anchor")


def _day(value: str) -> datetime:
    from datetime import timezone

    try:
        day = datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r}: give a date (2026-11-01) or a time with offset") from None
    return day if day.tzinfo else day.replace(tzinfo=timezone.utc)


@audit_app.command("export")
def audit_export(
    start: str = typer.Option(..., "--from", help="first day (or time) included, e.g. 2026-11-01 (UTC)"),
    end: str = typer.Option(..., "--to", help="first day (or time) excluded, e.g. 2026-12-01 (UTC)"),
    out: Path = typer.Option(None, "--out", help="write here (default: standard output)"),
    tenant: list[str] = typer.Option([], help="only this tenant's entries (repeatable; default: all)"),
) -> None:
    """Entries of a period as JSON Lines for a SIEM, streamed (ids and hashes; never audio or a number)."""
    import sys

    from access.audit import export_jsonl
    from callvault.bootstrap import services

    first, last = _day(start), _day(end)
    if last <= first:
        raise typer.BadParameter("--to must be after --from")
    with services().engine.connect() as conn:
        if out is None:
            n = export_jsonl(conn, sys.stdout, start=first, end=last, tenants=frozenset(tenant) or None)
        else:
            with out.open("w", encoding="utf-8") as fh:
                n = export_jsonl(conn, fh, start=first, end=last, tenants=frozenset(tenant) or None)
    typer.echo(f"{n} entries", err=True)


subjects_app = typer.Typer(no_args_is_help=True, help="Data-subject rights, by phone number (several at once)")
app.add_typer(subjects_app, name="subjects")

_TENANT = typer.Option(..., help="tenant (data controller) the request is for")
_ACTOR = typer.Option(..., help="registered internal-control user running the request (audited)")


def _subject_run(fn, *, actor: str, scope: str, **kwargs):
    """Run a data-subject request for tenant ``scope`` once the policy allows ``actor`` to."""
    from datetime import timezone

    from access.policy import Action
    from access.subjects import Actor
    from callvault.bootstrap import services

    svc = services()
    user = _authorise(svc.engine, actor, Action.SUBJECT_REQUEST, tenant=scope, target_type="tenant",
                      target_id=scope)
    # A unit of work: the audit entries are appended at its commit (the append lock is not held
    # across the object-store I/O), and the chain is anchored after an erasure or an export.
    with svc.unit_of_work() as uow:
        result = fn(uow.conn, svc, actor=Actor(user.id, user.role.value), now=datetime.now(timezone.utc), **kwargs)
        uow.commit()
        return result


def _print_erasure(report) -> None:
    typer.echo(f"erased {len(report.erased_copies)} copies of {len(report.erased_recordings)} recordings; "
               f"caller keys destroyed: {report.keys_destroyed}")
    for kept in report.kept_copies:
        typer.echo(f"kept {kept['tier']} copy {kept['copy_id']} (recording {kept['recording_id']}): "
                   f"legal hold: {kept['hold_reason']}")


@subjects_app.command("object")
def subjects_object(numbers: list[str], tenant: str = _TENANT, actor: str = _ACTOR) -> None:
    """Objection: never record these numbers again; erase what exists (except held copies)."""
    from access.subjects import object_to_recording

    _print_erasure(_subject_run(
        lambda conn, svc, **kw: object_to_recording(conn, svc.store, svc.keys, svc.ledger, **kw),
        tenant=tenant, numbers=numbers, actor=actor, scope=tenant))


@subjects_app.command("erase")
def subjects_erase(numbers: list[str] = typer.Argument(None, help="caller numbers (any usual format)"),
                   tenant: str = _TENANT, actor: str = _ACTOR,
                   recording: list[str] = typer.Option([], help="recording id (repeatable): how a call with a "
                                                                "withheld number is erased")) -> None:
    """Erasure: every copy, every version, and the caller key; held copies kept and listed."""
    import uuid

    from access.subjects import erase, erase_recordings

    if bool(numbers) == bool(recording):
        raise typer.BadParameter("give either phone numbers or --recording ids")
    if recording:
        try:
            ids = [uuid.UUID(r) for r in recording]
        except ValueError:
            raise typer.BadParameter("--recording takes the recording's catalog id (a UUID)") from None
        _print_erasure(_subject_run(
            lambda conn, svc, **kw: erase_recordings(conn, svc.store, svc.keys, svc.ledger, **kw),
            tenant=tenant, recording_ids=ids, actor=actor, scope=tenant))
        return
    _print_erasure(_subject_run(lambda conn, svc, **kw: erase(conn, svc.store, svc.keys, svc.ledger, **kw),
                                tenant=tenant, numbers=numbers, actor=actor, scope=tenant))


@subjects_app.command("export")
def subjects_export(numbers: list[str], tenant: str = _TENANT, actor: str = _ACTOR,
                    out: Path = typer.Option(None, help="write the ZIP here (default: export-<id>.zip)")) -> None:
    """Access / portability: store a 36-month extract and write the ZIP (audio + JSON/CSV manifest)."""
    from access.subjects import export, write_export_zip

    part: list[Path] = []

    def run(conn, svc, **kw):  # the ZIP streams to a .part file, renamed once the extracts are committed
        result = export(conn, svc.store, svc.keys, **kw)
        if result.recordings:
            part.append((out or Path(f"export-{result.request_id}.zip")).with_suffix(".zip.part"))
            with part[0].open("wb") as f:
                write_export_zip(conn, svc.store, svc.keys, tenant=kw["tenant"], request_id=result.request_id, out=f)
        return result

    try:
        result = _subject_run(run, tenant=tenant, numbers=numbers, actor=actor, scope=tenant)
    except BaseException:
        for p in part:
            p.unlink(missing_ok=True)
        raise
    if not result.recordings:
        typer.echo("no recordings of these numbers")
        return
    path = part[0].replace(out or Path(f"export-{result.request_id}.zip"))
    typer.echo(f"request {result.request_id}: {result.recordings} recordings -> {path.resolve()}")


@subjects_app.command("rectify")
def subjects_rectify(numbers: list[str], tenant: str = _TENANT, actor: str = _ACTOR,
                     new_number: str = typer.Option(None, help="the correct caller number"),
                     agent: str = typer.Option(None, help="the correct agent id"),
                     team: str = typer.Option(None, help="the correct team id")) -> None:
    """Rectification of the recordings of NUMBERS (before/after audited)."""
    import sqlalchemy as sa

    from access.subjects import hashes, rectify
    from storage.catalog import tables as t

    def run(conn, svc, **kw):
        ids = conn.execute(sa.select(t.recordings.c.id).where(
            t.recordings.c.tenant_id == tenant,
            t.recordings.c.number_hash.in_(hashes(svc.keys, tenant, numbers)))).scalars().all()
        return rectify(conn, svc.keys, tenant=tenant, recording_ids=ids, caller_number=new_number, agent_id=agent,
                       team_id=team, **kw) if ids else 0

    typer.echo(f"rectified {_subject_run(run, actor=actor, scope=tenant)} recordings")


@subjects_app.command("restrict")
def subjects_restrict(numbers: list[str], tenant: str = _TENANT, actor: str = _ACTOR) -> None:
    """Restriction: only internal control may play these recordings until lifted."""
    from access.subjects import restrict

    n = _subject_run(lambda conn, svc, **kw: restrict(conn, svc.keys, **kw), tenant=tenant, numbers=numbers,
                     actor=actor, scope=tenant)
    typer.echo(f"restricted {n} recordings")


@subjects_app.command("lift")
def subjects_lift(numbers: list[str], tenant: str = _TENANT, actor: str = _ACTOR) -> None:
    """Lift a restriction."""
    from access.subjects import restrict

    n = _subject_run(lambda conn, svc, **kw: restrict(conn, svc.keys, lift=True, **kw), tenant=tenant,
                     numbers=numbers, actor=actor, scope=tenant)
    typer.echo(f"lifted the restriction of {n} recordings")


dlq_app = typer.Typer(no_args_is_help=True, help="The dead-letter topic: why calls were refused; replay once fixed")
app.add_typer(dlq_app, name="dlq")


def _dead_letters(release: bool = True):
    """The dead letters, released from quarantine with the catalog's keys (``release``)."""
    import asyncio

    from ingest.dlq import read
    from ingest.settings import get_kafka_settings

    opener = None
    if release:
        from callvault.bootstrap import services
        from storage.transit import Quarantine

        svc = services()
        quarantine = Quarantine(svc.keys)

        def opener(dead_letter_id):
            with svc.engine.connect() as conn:
                return quarantine.key_or_none(conn, dead_letter_id)
    return asyncio.run(read(get_kafka_settings(), opener))


@dlq_app.command("list")
def dlq_list(every: bool = typer.Option(False, "--all", help="also list each dead letter (position, reason, "
                                                                  "tenant, recording id)")) -> None:
    """Dead letters by reason and tenant, oldest first."""
    from ingest.dlq import summary

    letters = _dead_letters(release=every)
    if not letters:
        typer.echo("the dead-letter topic is empty")
        return
    typer.echo(f"{len(letters)} dead letters")
    for reason, tenant, count, oldest in summary(letters):
        typer.echo(f"  {reason:<20} {tenant:<20} {count:>6}   oldest {oldest:%Y-%m-%d %H:%M:%S}Z")
    if every:
        for d in letters:
            shown = d.masked()
            typer.echo(f"  {shown['position']:<10} {d.at:%Y-%m-%d %H:%M:%S}Z {d.reason:<20} {d.tenant:<20} "
                       f"{shown['recording_id']}")


@dlq_app.command("show")
def dlq_show(position: str = typer.Argument(..., help="PARTITION:OFFSET (as `dlq list --all` prints), or OFFSET "
                                                      "on partition 0")) -> None:
    """One dead letter: its reason and error, the number masked, the audio reduced to its size."""
    part, _, off = position.rpartition(":")
    try:
        partition, offset = int(part or 0), int(off)
    except ValueError:
        raise typer.BadParameter("give PARTITION:OFFSET, e.g. 0:42") from None
    found = [d for d in _dead_letters() if (d.partition, d.offset) == (partition, offset)]
    if not found:
        raise CallvaultError(f"no dead letter at {partition}:{offset}", hint="`callvault dlq list` shows what is there")
    for name, value in found[0].masked().items():
        typer.echo(f"{name:>14}: {value}")


@dlq_app.command("replay")
def dlq_replay(reason: str = typer.Option(None, help="only this reason code, e.g. unknown_tenant"),
               tenant: str = typer.Option(None, help="only this tenant"),
               actor: str = typer.Option(..., help="registered IT user (audited)")) -> None:
    """Send dead letters again to the recordings topic (idempotent: a stored call stays stored once)."""
    import asyncio
    from datetime import timezone

    from access import audit
    from callvault.bootstrap import services
    from ingest.dlq import replay, select
    from ingest.settings import get_kafka_settings

    from ingest.producer import catalog_seal_keys, resealer

    from access.policy import Action

    svc = services()
    user = _authorise(svc.engine, actor, Action.DLQ_MANAGE, tenant=tenant, target_type="dead-letters",
                      target_id=f"{reason or '*'}/{tenant or '*'}")
    chosen = select(_dead_letters(), reason=reason, tenant=tenant)
    sent = asyncio.run(replay(get_kafka_settings(), chosen,
                              reseal=resealer(catalog_seal_keys(svc.engine, svc.storage, kafka=get_kafka_settings()))))
    with services().engine.begin() as conn:
        audit.append(conn, tenant=tenant, actor=user.id, role=user.role.value, action="dlq:replay",
                     target_type="dead-letters",
                     target_id=f"{reason or '*'}/{tenant or '*'}", outcome="done", at=datetime.now(timezone.utc),
                     detail={"replayed": sent, "positions": [d.position for d in chosen][:200]})
    typer.echo(f"replayed {sent} dead letters to the recordings topic")
    if len(chosen) > sent:
        typer.echo(f"skipped {len(chosen) - sent}: purged (caller erased, or past retention), or not sealable "
                   "(their tenant is not configured)")


@dlq_app.command("purge")
def dlq_purge(older_than_days: float = typer.Option(..., "--older-than", min=0,
                                                    help="delete dead letters older than this many days"),
              actor: str = typer.Option(..., help="registered IT user (audited)")) -> None:
    """Delete old dead letters from the topic (Kafka DeleteRecords), audited."""
    import asyncio
    from datetime import timedelta, timezone

    from access import audit
    from callvault.bootstrap import services
    from ingest.dlq import purge
    from ingest.settings import get_kafka_settings

    from access.policy import Action

    now = datetime.now(timezone.utc)
    user = _authorise(services().engine, actor, Action.DLQ_MANAGE, target_type="dead-letters",
                      target_id=f"older-than-{older_than_days:g}d")
    deleted = asyncio.run(purge(get_kafka_settings(), _dead_letters(release=False), older_than=now - timedelta(days=older_than_days)))
    with services().engine.begin() as conn:
        audit.append(conn, tenant=None, actor=user.id, role=user.role.value, action="dlq:purge",
                     target_type="dead-letters",
                     target_id=f"older-than-{older_than_days:g}d", outcome="done", at=now, detail={"deleted": deleted})
    typer.echo(f"purged {deleted} dead letters older than {older_than_days:g} days")


kafka_app = typer.Typer(no_args_is_help=True, help="Kafka principals and per-tenant topics (SASL_SSL)")
app.add_typer(kafka_app, name="kafka")


@kafka_app.command("grant-telephony")
def kafka_grant_telephony(
    tenant: str = typer.Option(..., help="tenant slug, e.g. acme"),
    user: str = typer.Option(None, help="SCRAM principal (default: telephony-<tenant>)"),
) -> None:
    """Create the tenant's recordings topic, its telephony principal (SCRAM-SHA-512) and ACLs
    WRITE+DESCRIBE on that topic only. Idempotent. A new principal's password is printed once
    (or taken from CALLVAULT_KAFKA_GRANT_PASSWORD, which also changes an existing one's)."""
    import asyncio

    from ingest.kafka_admin import grant_telephony, password_from_env
    from ingest.settings import get_kafka_settings

    kafka = get_kafka_settings()
    try:
        kafka.tenant_topic(tenant)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    env_password = password_from_env()
    grant = asyncio.run(grant_telephony(kafka, tenant=tenant, user=user, password=env_password))
    typer.echo(f"topic     {grant.topic} ({'created' if grant.topic_created else 'exists'})")
    typer.echo(f"principal User:{grant.user} ({'created' if grant.user_created else 'exists'}): "
               f"WRITE, DESCRIBE on {grant.topic} (LITERAL)")
    if grant.password and not env_password:
        typer.echo(f"password  {grant.password}")
        typer.echo("          shown once: give it to the tenant's telephony (CALLVAULT_KAFKA_SASL_PASSWORD); "
                   "callvault keeps only its SCRAM hash in Kafka")
    typer.echo(f"telephony: CALLVAULT_KAFKA_SECURITY_PROTOCOL=SASL_SSL CALLVAULT_KAFKA_SASL_USERNAME={grant.user} "
               "CALLVAULT_KAFKA_PER_TENANT_TOPICS=true")


@app.command("push")
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
    from ingest.producer import Call, push_call
    from ingest.settings import get_ingest_settings, get_kafka_settings
    from storage.settings import get_storage_settings

    spans = []
    for span in redact:
        try:
            start, end = (int(x) for x in span.split("-", 1))
        except ValueError:
            raise typer.BadParameter(f"--redact {span!r}: expected START_MS-END_MS, e.g. 12000-45000") from None
        spans.append((start, end))
    if started_at.tzinfo is None:
        raise typer.BadParameter("--started-at needs a UTC offset, e.g. 2026-11-23T10:15:00+01:00")
    call = Call(audio=audio.read_bytes(), tenant=tenant, agent_id=agent, caller_number=number,
                started_at=started_at, recording_id=recording_id, team_id=team, direction=direction,
                redactions=tuple(spans))
    typer.echo(push_call(call, get_kafka_settings(), get_storage_settings(),
                         inline_max_bytes=get_ingest_settings().inline_max_bytes))


@app.command("demo")
def demo(timeout: float = typer.Option(120.0, help="seconds to wait for the worker")) -> None:
    """Run the pipeline end to end on the configured stack with generated speech calls."""
    from callvault.demo import run_demo

    raise typer.Exit(run_demo(say=typer.echo, timeout=timeout))


@app.command("worker")
def worker(loglevel: str = typer.Option("info", "--loglevel", "-l", help="crit, error, warn, info or debug")) -> None:
    """Run the ingest worker (faust) until interrupted."""
    from callvault.bootstrap import build_worker_deps
    from ingest.worker import run_worker

    run_worker(build_worker_deps(), loglevel)


@app.command("api")
def api(host: str = typer.Option(None, help="listen address (default: CALLVAULT_ACCESS_API_HOST)"),
        port: int = typer.Option(None, help="port (default: CALLVAULT_ACCESS_API_PORT)")) -> None:
    """Serve the HTTP API (OpenAPI at /openapi.json) with uvicorn until interrupted."""
    import uvicorn

    from access.api import create_app
    from access.settings import get_access_settings
    from callvault.bootstrap import services

    settings = get_access_settings()
    # Services first, so a refused setting (residency, missing secret) stops here with its message.
    # No access log: a query string may hold a phone number; the API counts routes in /metrics.
    uvicorn.run(create_app(services(), settings), host=host or settings.api_host, port=port or settings.api_port,
                access_log=False)


def main() -> None:
    try:
        app()
    except CallvaultError as exc:
        _err(f"error: {exc}")
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
