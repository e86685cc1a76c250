"""The ``callvault`` command. Thin: each command parses arguments and calls a service.

Errors of ours (``CallvaultError``) are printed as one clear message and exit code 1;
anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import json

import typer

from callvault.errors import CallvaultError

app = typer.Typer(no_args_is_help=True, add_completion=False, help="callvault: call-recording lifecycle pipeline")
stack_app = typer.Typer(no_args_is_help=True, help="Install, start, stop the local Kafka, MinIO and PostgreSQL")
app.add_typer(stack_app, name="stack")


def _err(message: str) -> None:
    typer.secho(message, fg=typer.colors.RED, err=True)


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
    if not all(s["answers"] for s in status.values()):
        raise typer.Exit(3)


def main() -> None:
    try:
        app()
    except CallvaultError as exc:
        _err(f"error: {exc}")
        raise SystemExit(1) from None
