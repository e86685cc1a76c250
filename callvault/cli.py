"""The ``callvault`` command, assembled from each package's commands.

Each package owns its commands (``deploy.cli``, ``storage.cli``, ``lifecycle.cli``,
``ingest.cli``, ``access.cli``); this module only puts them under one name, gives them the
composition root (``callvault.bootstrap.Root``) as ``ctx.obj``, and is the one error path:
an error of ours (``CallvaultError``) is printed as one line naming what failed and what to
do, exit code 1; a usage error is click's, exit code 2. Anything else is a bug and keeps its
traceback.
"""

from __future__ import annotations

import click
import typer
from typer.core import TyperGroup

from access import cli as access_cli
from core.errors import CallvaultError
from deploy import cli as deploy_cli
from ingest import cli as ingest_cli
from lifecycle import cli as lifecycle_cli
from storage import cli as storage_cli

from .bootstrap import Root


class _Commands(TyperGroup):
    """The one error path of every command."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except CallvaultError as exc:
            typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
            raise typer.Exit(1) from None


app = typer.Typer(cls=_Commands, no_args_is_help=True, add_completion=False,
                  help="callvault: call-recording lifecycle pipeline")


@app.callback()
def _root(ctx: typer.Context) -> None:
    if ctx.obj is None:
        ctx.obj = Root()


storage_cli.storage.command("reconcile")(lifecycle_cli.storage_reconcile)
storage_cli.keys.command("ingest")(ingest_cli.keys_ingest)
GROUPS = (
    ("stack", deploy_cli.stack), ("storage", storage_cli.storage), ("tenants", lifecycle_cli.tenants),
    ("copies", lifecycle_cli.copies), ("holds", lifecycle_cli.holds), ("lifecycle", lifecycle_cli.lifecycle),
    ("users", access_cli.users), ("keys", storage_cli.keys), ("audit", storage_cli.audit_app),
    ("subjects", access_cli.subjects), ("dlq", ingest_cli.dlq_app), ("kafka", ingest_cli.kafka),
)
for name, group in GROUPS:
    app.add_typer(group, name=name)
app.command("push")(ingest_cli.push)


@app.command("demo")
def demo(timeout: float = typer.Option(120.0, help="seconds to wait for the worker")) -> None:
    """Run the pipeline end to end on the configured stack with generated speech calls."""
    from .demo import run_demo

    raise typer.Exit(run_demo(say=typer.echo, timeout=timeout))


app.command("worker")(ingest_cli.worker)
app.command("api")(access_cli.api)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
