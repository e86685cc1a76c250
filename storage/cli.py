"""``callvault storage|keys|audit``: buckets and catalog, master keys, the audit trail.

Commands get the composition root's parts from ``ctx.obj`` (``callvault.bootstrap.Root``):
``ctx.obj.services()`` builds the engine, object store and key ring once, from settings.
"""

from __future__ import annotations

import base64
import sys
from datetime import datetime
from pathlib import Path

import typer

from core.errors import CallvaultError, ConfigurationError
from core.inputs import day_or_time, parsed, whole

from . import audit
from .admin import init_buckets, minio_admin_client
from .catalog.migrate import upgrade
from .ledger import init_ledger_bucket
from .objectstore import s3_client
from .residency import check_all, check_settings
from .settings import get_catalog_settings, get_storage_settings

storage = typer.Typer(no_args_is_help=True, help="Buckets, residency checks, catalog migrations, reconciliation")
keys = typer.Typer(no_args_is_help=True, help="Master keys: versions, rotation, the number-hash key")
audit_app = typer.Typer(no_args_is_help=True, help="The tamper-evident audit trail")


@storage.command("init")
def storage_init() -> None:
    """Create or fix the buckets (versioning, object lock, SSE, lifecycle backstop) and migrate the catalog."""
    settings = get_storage_settings()
    check_settings(settings)  # refuse before creating anything
    init_buckets(settings, say=typer.echo)
    init_ledger_bucket(minio_admin_client(settings), settings, say=typer.echo)
    check_all(s3_client(settings), settings)
    typer.echo(f"residency: buckets located in {settings.region} (allowed)")
    upgrade(get_catalog_settings().url)
    typer.echo("catalog: migrated to the latest schema")


@storage.command("check")
def storage_check() -> None:
    """Residency check: configured region, endpoint, and every bucket's actual location."""
    settings = get_storage_settings()
    check_all(s3_client(settings), settings)
    typer.echo(f"residency ok: region {settings.region}, buckets in allowed regions")


@keys.command("status")
def keys_status(ctx: typer.Context) -> None:
    """Live caller keys per master-key version (a retired version may be destroyed once it shows 0)."""
    svc = ctx.obj.services()
    with svc.engine.connect() as conn:
        counts = svc.keys.versions_in_use(conn)
    typer.echo(f"current master key version: {svc.keys.master_version}")
    for version, n in sorted(counts.items()) or [("-", 0)]:
        typer.echo(f"  {version}: {n} live caller keys")
    typer.echo(f"number-hash key: {'pinned' if svc.keys.hash_key_pinned else 'derived from the master key'}")


@keys.command("hash-key")
def keys_hash_key(ctx: typer.Context) -> None:
    """Print the number-hash key (base64), to pin as CALLVAULT_STORAGE_NUMBER_HASH_KEY before a rotation.

    It cannot unwrap any key: it only keys the hashes the suppression list and lookups by number use."""
    typer.echo(base64.b64encode(ctx.obj.services().keys.hash_key).decode())


@keys.command("rotate-master")
def keys_rotate_master(ctx: typer.Context, batch_size: int = typer.Option(
        1000, parser=parsed(whole(1, 100_000, "the batch size")), metavar="N",
        help="caller keys re-wrapped per transaction")) -> None:
    """Re-wrap every live caller key under the current master key (CALLVAULT_STORAGE_MASTER_KEY).

    Before: set the new key and a new CALLVAULT_STORAGE_MASTER_KEY_VERSION, move the old key into
    CALLVAULT_STORAGE_RETIRED_MASTER_KEYS, and pin CALLVAULT_STORAGE_NUMBER_HASH_KEY. After: remove
    and destroy the old key; every catalog backup taken before is then unreadable. Resumable."""
    svc = ctx.obj.services()
    if not svc.keys.hash_key_pinned:
        raise CallvaultError("the number-hash key is derived from the master key: rotating the master would "
                             "change every number hash (suppression list, lookups by number)",
                             hint="before the rotation, with the old master key still current, run `callvault keys "
                                  "hash-key` and set its output as CALLVAULT_STORAGE_NUMBER_HASH_KEY")
    total = 0
    while done := _rotate_batch(svc, batch_size):
        total += done
        typer.echo(f"re-wrapped {total} caller keys under master key {svc.keys.master_version}")
    with svc.engine.connect() as conn:
        left = {v: n for v, n in svc.keys.versions_in_use(conn).items() if v not in (svc.keys.master_version, "tenant")}
    if left:
        typer.echo(f"still under other versions: {left}")
        return
    typer.echo(f"rotation done: {total} caller keys re-wrapped; every live key is under master key "
               f"{svc.keys.master_version}")
    typer.echo("now remove the retired master keys from the configuration and destroy them")


def _rotate_batch(svc, batch_size: int) -> int:
    with svc.unit_of_work() as uow:
        done = svc.keys.rotate(uow.conn, batch_size=batch_size)
        uow.commit()
    return done


@audit_app.command("verify")
def audit_verify(ctx: typer.Context) -> None:
    """Walk the hash chain and check it against the signed anchors; exit 1 naming the first
    edited, deleted, reordered or rewritten entry, or a cut tail."""
    svc = ctx.obj.services()
    try:
        with svc.engine.connect() as conn:
            result = audit.verify(conn, svc.anchors)
    except CallvaultError as exc:
        raise CallvaultError(f"audit trail not verified: {exc}") from None
    if not result.ok:
        where = f" at entry seq={result.first_bad_seq}" if result.first_bad_seq is not None else ""
        raise CallvaultError(f"audit trail broken{where}: {result.problem}")
    anchored = (f"; {result.anchors} signed anchors match, the newest at seq={result.anchored_seq} "
                f"({result.unanchored} newer entries covered by the chain only)" if result.anchored_seq else "")
    typer.echo(f"audit trail intact: {result.entries} entries{anchored}")
    for note in result.notes:
        typer.echo(f"note: {note}")


@audit_app.command("anchor")
def audit_anchor(ctx: typer.Context) -> None:
    """Write the chain's head now to the object-locked ledger bucket, signed (also done on a timer)."""
    svc = ctx.obj.services()
    if svc.anchors is None:
        raise ConfigurationError("CALLVAULT_STORAGE_AUDIT_ANCHOR_KEY", "no anchor key is set",
                                 hint="set it to 32 random bytes in base64")
    head = svc.anchors.write(svc.engine)
    typer.echo(f"anchored seq={head.seq} ({head.count} entries)" if head else "nothing new to anchor")


@audit_app.command("export")
def audit_export(
    ctx: typer.Context,
    first: datetime = typer.Option(..., "--from", parser=parsed(day_or_time), metavar="DAY|TIME",
                                   help="first day (UTC) or time (with its offset) included, e.g. 2026-11-01"),
    last: datetime = typer.Option(..., "--to", parser=parsed(day_or_time), metavar="DAY|TIME",
                                  help="first day (UTC) or time (with its offset) excluded, e.g. 2026-12-01"),
    out: Path = typer.Option(None, "--out", dir_okay=False, help="write here (default: standard output)"),
    tenant: list[str] = typer.Option([], help="only this tenant's entries (repeatable; default: all)"),
) -> None:
    """Entries of a period as JSON Lines for a SIEM, streamed (ids and hashes; never audio or a number)."""
    if last <= first:
        raise typer.BadParameter(f"--to {last.isoformat()} must be after --from {first.isoformat()}")
    ctx.obj.require_tenant(*tenant)
    if out is not None:
        out = ctx.obj.output_file(out, out.name)
    with ctx.obj.services().engine.connect() as conn:
        if out is None:
            n = audit.export_jsonl(conn, sys.stdout, start=first, end=last, tenants=frozenset(tenant) or None)
        else:
            with out.open("w", encoding="utf-8") as fh:
                n = audit.export_jsonl(conn, fh, start=first, end=last, tenants=frozenset(tenant) or None)
    typer.echo(f"{n} entries", err=True)
