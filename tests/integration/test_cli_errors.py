"""No traceback reaches a user (issue 19): every command, given what a person gets wrong, answers
one line, ``error: ...``, naming the bad value, and exits 2 for a usage error (the command line
cannot be read: an unknown option, a malformed id, a time without its offset, a number out of
range) or 1 for a refusal (an unknown tenant, recording, user or actor; an impossible start).

The commands are enumerated from the Typer app, so a new command is covered without a change
here: every command gets an unknown option, and every parameter gets the bad values of its
kind, read from its name (``KIND``). A parameter of no known kind fails
``test_every_parameter_has_a_kind`` until it is given one (or declared free text).
The commands run in-process (``tests.support.cli``) against a world on the real stack.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Iterator

import pytest
import typer

from callvault.cli import app
from tests.support.cli import NUMBER, CliWorld, cli_world

pytestmark = pytest.mark.integration

FREE = "free text"
# A parameter's kind, by name; (command, name) first.
KIND = {
    "tenant": "tenant", "recording": "recording", "copy": "copy", "actor": "actor", "user_id": "user",
    "started_at": "start", "now": "time", "first": "day-or-time", "last": "day-or-time", "start": "day-or-time",
    "end": "day-or-time", "contract_end": "day", "tier": "choice", "role": "choice", "direction": "choice",
    "loglevel": "choice", "months": "count", "minutes": "count", "batch_size": "count", "older_than_days": "count",
    "grace_minutes": "count", "port": "count", "timeout": "count", "limit": "count", "position": "position",
    "workers": "count", "processes": "count",
    "cursor": "cursor", "recording_id": "telephony-id", "redact": "span",
    **dict.fromkeys(["agent", "number", "numbers", "new_number", "team", "name", "reason", "report", "host", "user",
                     "audio", "out", "html_out"], FREE),
    ("tenants add", "tenant"): "new-tenant", ("users add", "user_id"): FREE, ("users add", "team"): "team",
    ("dlq replay", "reason"): "choice",
}
# The bad values of each kind: (value, exit code, what the one line must contain).
BAD = {
    "tenant": [("nosuch", 1, "'nosuch'")],
    "new-tenant": [("Bad Name!", 2, "'Bad Name!' is not a tenant slug")],
    "recording": [("not-an-id", 2, "TENANT/TELEPHONY_ID"), ("acme/no-such-call", 1, "acme/no-such-call not found")],
    "copy": [("not-a-uuid", 2, "'not-a-uuid' is not a catalog id")],
    "actor": [("nobody", 1, "'nobody' is not a registered user")],
    "user": [("nobody", 1, "user 'nobody' does not exist")],
    "time": [("2026-11-23T10:15:00", 2, "has no UTC offset"), ("yesterday", 2, "'yesterday' is not a time")],
    "start": [("2026-11-23T10:15:00", 2, "has no UTC offset"), ("2099-01-01T00:00:00Z", 1, "ahead of now"),
              ("1999-12-31T23:00:00+00:00", 1, "before 2000")],
    "day-or-time": [("2026-11-23T10:15:00", 2, "has no UTC offset"), ("2026-13-45", 2, "'2026-13-45'")],
    "day": [("2026-13-45", 2, "'2026-13-45' is not a day")],
    "count": [("-5", 2, "not '-5'"), ("99999999999", 2, "not '99999999999'"), ("many", 2, "not 'many'")],
    "choice": [("nonsense", 2, "'nonsense' is not one of")],
    "position": [("x:y", 2, "'x:y' is not PARTITION:OFFSET"), ("0:-1", 2, "'0:-1'")],
    "cursor": [("garbage!", 2, "'garbage!' is not one")],
    "telephony-id": [("a b", 2, "'a b'")],
    "span": [("5-3", 2, "'5-3' is not START_MS-END_MS"), ("1000", 2, "'1000'")],
    "team": [("acme/t1/boss", 2, "'acme/t1/boss' is not TENANT/TEAM/RELATION")],
}
# Values that let a command get as far as the bad one (required parameters, and the first of
# each group of which exactly one must be given).
BASE = {
    "tenant": "acme", "recording": "{recording}", "copy": "{copy}", "actor": "ic-1", "user_id": "ic-1",
    "started_at": "{now}", "first": "2026-11-01", "last": "2026-12-01", "months": "6", "role": "it",
    "position": "0:0", "older_than_days": "30", "audio": "{audio}", "agent": "a1", "numbers": NUMBER,
    "reason": "LIT-1", ("tenants set-retention", "tier"): "training", ("copies create", "tier"): "complaint-extract",
    ("users add", "user_id"): "new-user",
}
ONE_OF = {"holds set": ("recording", "copy"), "holds release": ("recording", "copy"),
          "subjects erase": ("numbers", "recording")}


def commands() -> Iterator[tuple[str, object]]:
    def walk(cmd, path):
        subs = getattr(cmd, "commands", None)
        if subs:
            for name, sub in subs.items():
                yield from walk(sub, [*path, name])
        else:
            yield " ".join(path), cmd
    yield from walk(typer.main.get_command(app), [])


def valued(cmd) -> list:
    """The parameters that take a value (flags take none)."""
    return [p for p in cmd.params if not getattr(p, "is_flag", False)]


def kind(name: str, param) -> str | None:
    return KIND.get((name, param.name), KIND.get(param.name))


def cases() -> Iterator:
    for name, cmd in commands():
        yield pytest.param(name, None, "--bogus-option", 2, "--bogus-option", id=f"{name}: unknown option")
        for param in valued(cmd):
            for value, code, says in BAD.get(kind(name, param) or FREE, []):
                yield pytest.param(name, param.name, value, code, says, id=f"{name}: {param.name}={value}")


def argv(world: CliWorld, name: str, varied: str | None, value: str) -> list[str]:
    cmd = dict(commands())[name]
    group = ONE_OF.get(name, ())
    given: dict[str, str] = {}
    for param in valued(cmd):
        base = BASE.get((name, param.name), BASE.get(param.name))
        wanted = param.required or (group and param.name == group[0] and varied not in group)
        if param.name == varied:
            given[param.name] = value
        elif wanted and base is not None:
            given[param.name] = base
    now = (datetime.now(timezone.utc) - timedelta(minutes=5)).isoformat()
    fill = {"{recording}": world.telephony_ref, "{copy}": str(world.copy_id), "{now}": now, "{audio}": str(world.audio)}
    args = name.split()
    for param in valued(cmd):
        if param.name in given:
            text = fill.get(given[param.name], given[param.name])
            args += [text] if param.param_type_name == "argument" else [param.opts[0], text]
    if varied is None:
        args.append(value)
    return args


@pytest.fixture(scope="module")
def world(minio, ledger_bucket, postgres_url, kafka_bootstrap, tmp_path_factory) -> Iterator[CliWorld]:
    with cli_world(minio, ledger_bucket, postgres_url, kafka_bootstrap, tmp_path_factory.mktemp("cli")) as w:
        yield w


def test_every_parameter_has_a_kind() -> None:
    unknown = [f"{name}: {p.name}" for name, cmd in commands() for p in valued(cmd) if kind(name, p) is None]
    assert unknown == [], "give these parameters a KIND (and BAD values) in this module"
    assert len(dict(commands())) >= 40


@pytest.mark.timeout(60)
@pytest.mark.parametrize(("name", "varied", "value", "code", "says"), list(cases()))
def test_a_bad_value_is_one_clean_line_and_the_right_exit_code(world, name, varied, value, code, says) -> None:
    args = argv(world, name, varied, value)
    result = world.cli(*args)
    shown = f"$ callvault {' '.join(args)}\n{result.output}"
    assert isinstance(result.exception, SystemExit), f"{shown}\n{result.exception!r}"
    assert result.exit_code == code, shown
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), shown
    assert says in lines[0], shown
    assert "Traceback" not in result.output and "╭" not in result.output, shown


@pytest.mark.parametrize("args", [["--bogus-option"], ["no-such-command"], ["tenants", "no-such-command"]])
def test_the_groups_answer_in_one_line_too(world, args) -> None:
    result = world.cli(*args)
    assert isinstance(result.exception, SystemExit) and result.exit_code == 2, result.output
    assert result.stderr.strip().startswith("error: ") and args[-1] in result.stderr, result.output
    assert "\n" not in result.stderr.strip() and "╭" not in result.output, result.output
