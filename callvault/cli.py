"""The ``callvault`` command, assembled from each package's commands.

Each package owns its commands (``deploy.cli``, ``storage.cli``, ``lifecycle.cli``,
``ingest.cli``, ``access.cli``); this module only puts them under one name, gives them the
composition root (``callvault.bootstrap.Root``) as ``ctx.obj``, and is the one error path.
Every failure a person can cause is one line on stderr, ``error: ...``, naming the value and
what to do:

- exit code 2, a usage error: the command line cannot be read (an unknown option, a missing
  argument, a value of the wrong form or out of range: Typer's usage errors, and
  ``MalformedInput`` from the readers of ``core.inputs``, wherever it is raised);
- exit code 1, a refusal: the command was understood and refused or failed (an unknown tenant
  or recording, a decision of the policy, a server that does not answer: ``CallvaultError``).

Some commands add their own codes (``storage reconcile`` 4, ``stack status`` 3). Anything
else is a bug and keeps its traceback.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from typing import Iterator

import typer
from typer.core import TyperGroup

from access import cli as access_cli
from access import recordings_cli
from core.errors import CallvaultError, MalformedInput
from core.inputs import amount, parsed
from deploy import cli as deploy_cli
from ingest import cli as ingest_cli
from lifecycle import cli as lifecycle_cli
from storage import cli as storage_cli
from storage.catalog.db import catalog_errors

from .bootstrap import Root


def _fail(message: str, code: int) -> typer.Exit:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    return typer.Exit(code)


@contextmanager
def _one_line() -> Iterator[None]:
    try:
        with catalog_errors():  # a catalog that does not answer, or is not migrated: one line too
            yield
    except MalformedInput as exc:
        raise _fail(str(exc), 2) from None
    except CallvaultError as exc:
        raise _fail(str(exc), 1) from None
    except typer.TyperException as exc:  # Typer's usage errors (exit code 2) and file errors (1)
        if type(exc).__name__ == "NoArgsIsHelpError":
            raise  # a group without arguments: its help
        code = getattr(exc, "exit_code", 1)
        where = getattr(getattr(exc, "ctx", None), "command_path", None)
        see = f" (see `{where} --help`)" if code == 2 and where else ""
        raise _fail(exc.format_message() + see, code) from None


class _Commands(TyperGroup):
    """The one error path of every command: the top level's own options are parsed in
    ``parse_args``, every subcommand's arguments and body run in ``invoke``."""

    def parse_args(self, ctx: typer.Context, args: list[str]) -> list[str]:
        with _one_line():
            return super().parse_args(ctx, args)

    def invoke(self, ctx: typer.Context):
        with _one_line():
            return super().invoke(ctx)


app = typer.Typer(cls=_Commands, no_args_is_help=True, add_completion=False,
                  help="callvault: call-recording lifecycle pipeline")


@app.callback()
def _root(ctx: typer.Context) -> None:
    if ctx.obj is None:
        ctx.obj = Root()
    # aiokafka logs a refused connection itself ("Unable connect to ...") before our one line says
    # it; with no logging configured that went to stderr through logging's last resort. A worker
    # configures logging: its handlers still get aiokafka's records (a NullHandler stops nothing).
    logging.getLogger("aiokafka").addHandler(logging.NullHandler())


storage_cli.storage.command("reconcile")(lifecycle_cli.storage_reconcile)
storage_cli.keys.command("ingest")(ingest_cli.keys_ingest)
GROUPS = (
    ("stack", deploy_cli.stack), ("storage", storage_cli.storage), ("tenants", lifecycle_cli.tenants),
    ("copies", lifecycle_cli.copies), ("holds", lifecycle_cli.holds), ("lifecycle", lifecycle_cli.lifecycle),
    ("users", access_cli.users), ("keys", storage_cli.keys), ("audit", storage_cli.audit_app),
    ("subjects", access_cli.subjects), ("dlq", ingest_cli.dlq_app), ("kafka", ingest_cli.kafka),
    ("recordings", recordings_cli.recordings),
)
for name, group in GROUPS:
    app.add_typer(group, name=name)
app.command("push")(ingest_cli.push)


@app.command("demo")
def demo(timeout: float = typer.Option(120.0, parser=parsed(amount(1, 3600, "the timeout (seconds)")),
                                       metavar="SECONDS", help="seconds to wait for the worker")) -> None:
    """Run the pipeline end to end on the configured stack with generated speech calls."""
    from .demo import run_demo

    raise typer.Exit(run_demo(say=typer.echo, timeout=timeout))


app.command("worker")(ingest_cli.worker)
app.command("api")(access_cli.api)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
