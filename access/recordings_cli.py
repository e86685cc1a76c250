"""``callvault recordings list|show``: the recordings a user may see, as the API shows them.

Both run as an ``--actor`` (a registered user; ``ctx.obj.authorise`` audits the decision with
the OS user) and show only what the policy lets that user see: ``list`` is the API's own search
(``access.service.search_recordings``: the same filters, scope and tiers, numbers masked for
IT), ``show`` the recording's detail with the copies the user may see, named by its catalog id
or as ``TENANT/TELEPHONY_ID``. ``ctx.obj`` is ``callvault.bootstrap.Root``.
"""

from __future__ import annotations

from datetime import datetime, timezone

import typer
from rich.console import Console
from rich.table import Column, Table

from core.errors import MalformedInput
from core.inputs import RecordingRef, day_or_time, one_of, parsed, recording_ref, whole
from core.vocabulary import Action, Tier

from . import service
from .api.search import Cursor, Found
from .exceptions import BadRequest, NotFound

recordings = typer.Typer(no_args_is_help=True, help="Recordings a user may see: search them, show one")

MAX_PAGE = 200  # as the API's pages
_ACTOR = typer.Option(..., help="registered user whose view this is (policy-scoped, audited)")


def _cursor(text: str) -> Cursor:
    try:
        return Cursor.decode(text)
    except BadRequest:
        raise MalformedInput(f"cursor {text!r} is not one: pass the --cursor a previous page printed") from None


@recordings.command("list")
def recordings_list(
    ctx: typer.Context, actor: str = _ACTOR,
    tenant: str = typer.Option(None, help="only this tenant's calls"),
    agent: str = typer.Option(None, help="only this agent's calls"),
    team: str = typer.Option(None, help="only this team's calls"),
    tier: Tier = typer.Option(None, parser=parsed(one_of(Tier, "tier")), metavar="TIER",
                              help=f"only recordings with a copy in this tier: {', '.join(Tier)}"),
    start: datetime = typer.Option(None, "--from", parser=parsed(day_or_time), metavar="DAY|TIME",
                                   help="calls started at or after: 2026-11-01 (UTC) or 2026-11-01T08:00:00+01:00"),
    end: datetime = typer.Option(None, "--to", parser=parsed(day_or_time), metavar="DAY|TIME",
                                 help="calls started before"),
    number: str = typer.Option(None, help="the caller's number (any usual format; IT: under break-glass only)"),
    limit: int = typer.Option(50, parser=parsed(whole(1, MAX_PAGE, "the page size")), metavar="N",
                              help=f"recordings per page (at most {MAX_PAGE})"),
    cursor: Cursor = typer.Option(None, parser=parsed(_cursor), metavar="CURSOR", help="the next page's cursor"),
) -> None:
    """Search the recordings the actor may see, newest first (the API's search)."""
    if tenant:
        ctx.obj.require_tenant(tenant)
    if start and end and end <= start:
        raise typer.BadParameter(f"--to {end.isoformat()} must be after --from {start.isoformat()}")
    filters = service.Filters(number=number, agent=agent, team=team, start=start, end=end, tier=tier, tenant=tenant)
    user = ctx.obj.authorise(actor, Action.SEARCH if number is None else Action.SEARCH_BY_NUMBER, tenant=tenant,
                             own_tenants=True, target_type="recordings", target_id=tenant or "own tenants",
                             detail=filters.audited())
    svc = ctx.obj.services()
    with svc.unit_of_work() as uow:
        page, following = service.search_recordings(uow, svc, user=user, filters=filters, limit=limit,
                                                    cursor=cursor, now=datetime.now(timezone.utc))
    if not page:
        typer.echo("no recordings match (of those you may see)")
        return
    table = Table(_ID("recording"), Column("telephony id", overflow="fold"), "started (UTC)", "caller", "agent / team", "length", "copies",
                  title=f"{len(page)} recording{'s' if len(page) != 1 else ''}{' (masked numbers)' if any(f.mask_numbers for f in page) else ''}")
    for found in page:
        rec = found.recording
        table.add_row(str(rec["id"]), f"{rec['tenant_id']}/{rec['external_id']}", _when(rec["started_at"]),
                      found.caller_number, f"{rec['agent_id']} / {rec['team_id'] or '-'}", _length(rec),
                      "\n".join(_copy_line(c) for c in found.copies))
    Console(soft_wrap=False).print(table)
    if following is not None:
        typer.echo(f"more: add --cursor {following.encode()}")


@recordings.command("show")
def recordings_show(ctx: typer.Context, recording: RecordingRef = typer.Argument(
        ..., parser=parsed(recording_ref), metavar="RECORDING",
        help="its catalog id (UUID) or TENANT/TELEPHONY_ID, e.g. acme/cv-3610fbaf"), actor: str = _ACTOR) -> None:
    """One recording: its metadata and the copies the actor may see (tier, expiry, hold)."""
    rid = ctx.obj.recording_id(recording)
    targets = ctx.obj.copy_targets(None, rid)
    user = ctx.obj.authorise(actor, Action.VIEW_METADATA, targets=targets, any_target=True,
                             target_type="recording", target_id=str(rid))
    svc = ctx.obj.services()
    with svc.unit_of_work() as uow:
        found = service.recording_for(uow, svc, user=user, recording_id=rid, now=datetime.now(timezone.utc))
    if found is None:
        raise NotFound(f"recording {recording} not found", hint="it does not exist, or no longer (expired or erased)")
    _print_detail(found)


def _print_detail(found: Found) -> None:
    rec = found.recording
    facts = Table.grid(padding=(0, 2))
    for name, value in (
        ("recording", str(rec["id"])), ("telephony id", f"{rec['tenant_id']}/{rec['external_id']}"),
        ("started", _when(rec["started_at"])), ("direction", rec["direction"]),
        ("caller", found.caller_number + (" (masked)" if found.mask_numbers else "")),
        ("agent / team", f"{rec['agent_id']} / {rec['team_id'] or '-'}"),
        ("audio", f"{_length(rec)}, {rec['audio_format']}, {rec['channels']} channel(s)"),
        ("silenced", ", ".join(f"{a}-{b} ms" for a, b in rec["redactions"] or []) or "nothing"),
        ("restricted", f"yes, since {_when(rec['restricted_at'])}" if rec["restricted"] else "no"),
        ("stored", _when(rec["created_at"])),
    ):
        facts.add_row(name, value)
    copies = Table(_ID("copy"), "tier", "created", "expires", "legal hold", title="copies you may see")
    for c in found.copies:
        hold = f"held: {c['hold_reason']} ({c['hold_actor']}, {_when(c['hold_at'])})" if c["hold"] else "-"
        copies.add_row(str(c["id"]), str(c["tier"]), _when(c["created_at"]), _when(c["expires_at"]), hold)
    console = Console(soft_wrap=False)
    console.print(facts)
    console.print(copies)


def _ID(header: str) -> Column:
    """A UUID column printed whole however narrow the terminal (or a pipe, 80 columns to rich): an id
    cut to `5b0f7a4e…` cannot be given to the next command. The other columns wrap instead."""
    return Column(header, no_wrap=True, min_width=36)


def _when(at: datetime | None) -> str:
    return at.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ") if at else "-"


def _length(rec) -> str:
    return f"{rec['duration_ms'] / 1000:.1f} s" if rec["duration_ms"] is not None else "-"


def _copy_line(copy) -> str:
    return f"{copy['tier']} until {copy['expires_at']:%Y-%m-%d}" + (" (held)" if copy["hold"] else "")
