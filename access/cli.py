"""``callvault users|subjects|api``: the people who may use callvault, data-subject requests, the API.

Subject requests run as an ``--actor`` the policy allows (``ctx.obj.authorise``: a registered
internal-control user, audited with the OS user), for an existing tenant, through
``access.service`` in one unit of work. ``ctx.obj`` is ``callvault.bootstrap.Root``.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Callable

import typer

from core.errors import MalformedInput
from core.inputs import RecordingRef, day, one_of, parsed, recording_ref, whole
from core.vocabulary import Action, Relation, Role

from . import service
from .exceptions import NotFound
from .identities import load_user, revoke_user
from .settings import get_access_settings
from .subjects import Actor, write_export_zip
from .tokens import MAX_TOKEN_MINUTES, issue_token

users = typer.Typer(no_args_is_help=True, help="People who may use the API: roles, tenants, teams")
subjects = typer.Typer(no_args_is_help=True, help="Data-subject rights, by phone number (several at once)")

_TENANT = typer.Option(..., help="tenant (data controller) the request is for")
_ACTOR = typer.Option(..., help="registered internal-control user running the request (audited)")


class Team(tuple):
    """TENANT/TEAM/RELATION as ``(tenant, team, relation)`` (a class: Typer lists only plain types)."""


def _team(spec: str) -> Team:
    parts = spec.split("/")
    if len(parts) != 3 or not all(parts) or parts[2] not in set(Relation):
        raise MalformedInput(f"team {spec!r} is not TENANT/TEAM/RELATION: e.g. acme/collections-1/manager, "
                             f"the relation one of {', '.join(Relation)}")
    return Team(parts)


@users.command("add")
def users_add(
    ctx: typer.Context,
    user_id: str,
    role: Role = typer.Option(..., parser=parsed(one_of(Role, "role")), metavar="ROLE",
                              help=f"one of {', '.join(Role)}"),
    tenant: list[str] = typer.Option(..., help="an existing tenant (repeatable); * for a group-level user"),
    team: list[Team] = typer.Option(
        [], parser=parsed(_team), metavar="TENANT/TEAM/RELATION",
        help="relation = member, manager or coach (repeatable)"),
    agent: str = typer.Option(None, help="the agent id of a consultant's calls"),
    contract_end: date = typer.Option(None, parser=parsed(day), metavar="DAY", help="no access after this day"),
    name: str = typer.Option(None, help="display name"),
) -> None:
    """Register a user of existing tenants."""
    with ctx.obj.services().unit_of_work() as uow:
        user = service.add_user(uow, user_id=user_id, role=role, tenants=tenant, teams=team, agent_id=agent,
                                contract_end=contract_end, display_name=name)
        uow.commit()
    typer.echo(f"user {user.id} added: {user.role.value} of {', '.join(sorted(user.tenants))}")


@users.command("revoke")
def users_revoke(ctx: typer.Context, user_id: str) -> None:
    """Revoke a user at once: every request is refused, even with an unexpired token."""
    svc = ctx.obj.services()
    with svc.unit_of_work() as uow:
        revoke_user(uow.conn, user_id, keys=svc.keys, ledger=svc.ledger)
        uow.commit()
    typer.echo(f"user {user_id} revoked")


@users.command("token")
def users_token(ctx: typer.Context, user_id: str,
                minutes: int = typer.Option(None, parser=parsed(whole(1, MAX_TOKEN_MINUTES, "the lifetime (minutes)")),
                                            metavar="MINUTES",
                                            help=f"lifetime, at most {MAX_TOKEN_MINUTES} (default from settings)")
                ) -> None:
    """Print a bearer token for a user (HS256, signed with CALLVAULT_ACCESS_JWT_SECRET)."""
    with ctx.obj.services().engine.connect() as conn:
        if load_user(conn, user_id) is None:
            raise NotFound(f"user {user_id!r} does not exist", hint="add it with `callvault users add`")
    typer.echo(issue_token(user_id, get_access_settings(), ttl=timedelta(minutes=minutes) if minutes else None))


def _subject_run(ctx: typer.Context, request: Callable, *, actor: str, tenant: str, **kwargs):
    """Run a data-subject request for ``tenant`` once the policy allows ``actor`` to.

    A unit of work: the audit entries are appended at its commit (the append lock is not held
    across the object-store I/O), and the chain is anchored after an erasure or an export."""
    ctx.obj.require_tenant(tenant)
    user = ctx.obj.authorise(actor, Action.SUBJECT_REQUEST, tenant=tenant, target_type="tenant", target_id=tenant)
    svc = ctx.obj.services()
    with svc.unit_of_work() as uow:
        result = request(uow, svc, tenant=tenant, actor=Actor(user.id, user.role.value),
                         now=datetime.now(timezone.utc), **kwargs)
        uow.commit()
        return result


def _print_erasure(report) -> None:
    touched = {c["recording_id"] for c in report.erased_copies}
    whole_ = len(report.erased_recordings)
    typer.echo(f"erased {len(report.erased_copies)} copies of {len(touched)} recordings"
               f"{f' ({whole_} of them entirely)' if whole_ != len(touched) else ''}; "
               f"caller keys destroyed: {report.keys_destroyed}")
    for kept in report.kept_copies:
        typer.echo(f"kept {kept['tier']} copy {kept['copy_id']} (recording {kept['recording_id']}): "
                   f"legal hold: {kept['hold_reason']}")


@subjects.command("object")
def subjects_object(ctx: typer.Context, numbers: list[str], tenant: str = _TENANT, actor: str = _ACTOR) -> None:
    """Objection: never record these numbers again; erase what exists (except held copies)."""
    report = _subject_run(ctx, service.object_to, numbers=numbers, actor=actor, tenant=tenant)
    typer.echo(f"objection recorded for {len(numbers)} number(s) of tenant {tenant}: their future calls are not "
               "stored")
    _print_erasure(report)


@subjects.command("erase")
def subjects_erase(ctx: typer.Context,
                   numbers: list[str] = typer.Argument(None, help="caller numbers (any usual format)"),
                   tenant: str = _TENANT, actor: str = _ACTOR,
                   recording: list[RecordingRef] = typer.Option(
                       [], parser=parsed(recording_ref), metavar="RECORDING",
                       help="catalog id (UUID) or TENANT/TELEPHONY_ID (repeatable): how a call with a withheld "
                            "number is erased")) -> None:
    """Erasure: every copy, every version, and the caller key; held copies kept and listed."""
    if bool(numbers) == bool(recording):
        raise typer.BadParameter("give either phone numbers or --recording ids")
    if not recording:
        _print_erasure(_subject_run(ctx, service.erase, numbers=numbers, actor=actor, tenant=tenant))
        return
    for ref in recording:
        if ref.tenant is not None and ref.tenant != tenant:
            raise typer.BadParameter(f"--recording {ref} names tenant {ref.tenant}, not --tenant {tenant}")
    ctx.obj.require_tenant(tenant)
    ids = [ctx.obj.recording_id(ref) for ref in recording]
    _print_erasure(_subject_run(ctx, service.erase_recordings, recording_ids=ids, actor=actor, tenant=tenant))


@subjects.command("export")
def subjects_export(ctx: typer.Context, numbers: list[str], tenant: str = _TENANT, actor: str = _ACTOR,
                    out: Path = typer.Option(None, dir_okay=False,
                                             help="write the ZIP here (default: export-<id>.zip in the output "
                                                  "folder, CALLVAULT_LIFECYCLE_OUTPUT_DIR)")) -> None:
    """Access / portability: store a 36-month extract and write the ZIP (audio + JSON/CSV manifest)."""
    part: list[Path] = []
    ctx.obj.require_tenant(tenant)

    def run(uow, svc, **kw):  # the ZIP streams to a .part file, renamed once the extracts are committed
        result = service.export(uow, svc, **kw)
        if result.recordings:
            final = ctx.obj.output_file(out, f"export-{result.request_id}.zip")
            part.extend([final.with_name(final.name + ".part"), final])
            with part[0].open("wb") as f:
                write_export_zip(uow.conn, svc.store, svc.keys, tenant=kw["tenant"], request_id=result.request_id,
                                 out=f)
        return result

    try:
        result = _subject_run(ctx, run, numbers=numbers, actor=actor, tenant=tenant)
    except BaseException:
        for p in part[:1]:
            p.unlink(missing_ok=True)
        raise
    if not result.recordings:
        typer.echo("no recordings of these numbers")
        return
    path = part[0].replace(part[1])
    typer.echo(f"request {result.request_id}: {result.recordings} recordings -> {path.resolve()}")


@subjects.command("rectify")
def subjects_rectify(ctx: typer.Context, numbers: list[str], tenant: str = _TENANT, actor: str = _ACTOR,
                     new_number: str = typer.Option(None, help="the correct caller number"),
                     agent: str = typer.Option(None, help="the correct agent id"),
                     team: str = typer.Option(None, help="the correct team id")) -> None:
    """Rectification of the recordings of NUMBERS (before/after audited)."""
    n = _subject_run(ctx, service.rectify, numbers=numbers, actor=actor, tenant=tenant, new_number=new_number,
                     agent_id=agent, team_id=team)
    typer.echo(f"rectified {n} recordings")


@subjects.command("restrict")
def subjects_restrict(ctx: typer.Context, numbers: list[str], tenant: str = _TENANT, actor: str = _ACTOR) -> None:
    """Restriction: only internal control may play the numbers' recordings, later ones too, until lifted."""
    n = _subject_run(ctx, service.restrict, numbers=numbers, actor=actor, tenant=tenant)
    typer.echo(f"restricted {n} recordings; their numbers' later calls are restricted too, until `subjects lift`")


@subjects.command("lift")
def subjects_lift(ctx: typer.Context, numbers: list[str], tenant: str = _TENANT, actor: str = _ACTOR) -> None:
    """Lift a restriction."""
    n = _subject_run(ctx, service.restrict, numbers=numbers, actor=actor, tenant=tenant, lift=True)
    typer.echo(f"lifted the restriction of {n} recordings")


def api(ctx: typer.Context,
        host: str = typer.Option(None, help="listen address (default: CALLVAULT_ACCESS_API_HOST)"),
        port: int = typer.Option(None, parser=parsed(whole(1, 65_535, "the port")), metavar="PORT",
                                 help="port (default: CALLVAULT_ACCESS_API_PORT)"),
        workers: int = typer.Option(1, parser=parsed(whole(1, 64, "the number of workers")), metavar="N",
                                    help="API processes sharing the port (each with its own catalog pool); "
                                         "1 by default, like uvicorn: scale a container by replicas, a host "
                                         "by about one per core")) -> None:
    """Serve the HTTP API (OpenAPI at /openapi.json) with uvicorn until interrupted."""
    import uvicorn

    from .api import create_app
    from .api.metrics import shared_between_processes

    settings = get_access_settings()
    ctx.obj.services()  # built first, so a refused setting (residency) stops here with its message
    # "auto": uvloop and httptools (uvicorn[standard], a dependency) when importable, else asyncio and h11.
    typer.echo(f"serving with {_server_flavour()}, {workers} worker process{'es' if workers > 1 else ''}", err=True)
    # No access log: a query string may hold a phone number; the API counts routes in /metrics.
    where = dict(host=host or settings.api_host, port=port or settings.api_port, access_log=False, loop="auto",
                 http="auto")
    if workers == 1:
        uvicorn.run(create_app(ctx.obj.services, settings, push_producer=ctx.obj.push_producer), **where)
        return
    # Each worker process builds its own app, services and pool (the composition root's factory);
    # /metrics adds up every process's counts.
    with shared_between_processes():
        uvicorn.run(ctx.obj.api_app_factory, factory=True, workers=workers, **where)


def _server_flavour() -> str:
    """What uvicorn's "auto" picks here: the event loop and the HTTP parser."""
    import importlib.util

    loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    return f"{loop} event loop, {'httptools' if importlib.util.find_spec('httptools') else 'h11'} HTTP parser"
