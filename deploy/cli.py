"""``callvault stack``: install, start, stop and inspect the local servers (``deploy.local.stack``)."""

from __future__ import annotations

import json
import shlex

import typer

from .local.stack import Stack

stack = typer.Typer(no_args_is_help=True, help="Install, start, stop the local Kafka, MinIO and PostgreSQL")


@stack.command("up")
def stack_up() -> None:
    """Install what is missing, start what is not running, wait until each server answers."""
    local = Stack.from_settings()
    started = local.up(say=typer.echo)
    typer.echo(f"stack ready ({'started: ' + ', '.join(started) if started else 'all already running'})")
    user_part, host_part = local.postgres_url.split("@", 1)
    typer.echo(f"postgres url: {user_part.rsplit(':', 1)[0]}:***@{host_part}")


@stack.command("down")
def stack_down() -> None:
    """Stop the local servers started by callvault."""
    Stack.from_settings().down(say=typer.echo)


@stack.command("status")
def stack_status(as_json: bool = typer.Option(False, "--json", help="machine-readable output")) -> None:
    """Show whether each server runs and answers, where it listens and where its log is."""
    status = Stack.from_settings().status()
    if as_json:
        typer.echo(json.dumps(status, indent=2))
    else:
        for name, s in status.items():
            _print_status(name, s)
    if not all(s["answers"] for s in status.values()):
        raise typer.Exit(3)


def _print_status(name: str, s: dict) -> None:
    state = "up" if s["answers"] else ("running, not answering" if s["running"] else "down")
    typer.echo(f"{name:<10} {state:<24} {s['address']:<22} log: {s['log']}")
    if "listeners" in s:
        sasl = "up" if s["sasl_ssl_open"] else "down (run `callvault stack up`)"
        typer.echo(f"{'':<10} {'SASL_SSL ' + sasl:<24} {s['listeners']['SASL_SSL']:<22} "
                   "(`callvault stack env` for client settings)")


@stack.command("env")
def stack_env(reveal: bool = typer.Option(False, "--reveal", help="print the password itself, e.g. for "
                                                                  "eval \"$(callvault stack env --reveal)\"")) -> None:
    """Client settings for the local Kafka's SASL_SSL listener (as the worker's super-user principal)."""
    local = Stack.from_settings()
    for name, value in local.kafka_client_env().items():
        if name.endswith("_PASSWORD") and not reveal:
            typer.echo(f"# {name}: [local] kafka_admin_password in {local.settings.home / 'callvault.toml'} "
                       "(or --reveal)")
            continue
        typer.echo(f"export {name}={shlex.quote(value)}")
    typer.echo("# The PLAINTEXT listener (CALLVAULT_KAFKA_BOOTSTRAP_SERVERS="
               f"{local.kafka.address}) is for the embedded demo only, on the loopback address.")
