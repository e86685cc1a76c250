"""`recordings list` and `recordings show` print whole ids in an 80-column terminal, and when piped
(rich then assumes 80 columns): an id cut to `5b0f7a4e…` cannot be given to the next command."""

from __future__ import annotations

from typing import Iterator

import pytest

from tests.support.cli import CliWorld, cli_world

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def world(minio, ledger_bucket, postgres_url, kafka_bootstrap, tmp_path_factory) -> Iterator[CliWorld]:
    with cli_world(minio, ledger_bucket, postgres_url, kafka_bootstrap, tmp_path_factory.mktemp("cli")) as w:
        yield w


@pytest.mark.parametrize("columns", ["80", "60"])
def test_ids_are_printed_whole_in_a_narrow_terminal(world, columns) -> None:
    narrow = type(world.cli)({**world.cli.env, "COLUMNS": columns})
    listed = narrow("recordings", "list", "--actor", "ic-1")
    assert listed.exit_code == 0, listed.output
    assert str(world.recording_id) in listed.stdout.replace("\n", ""), listed.stdout
    shown = narrow("recordings", "show", str(world.recording_id), "--actor", "ic-1")
    assert shown.exit_code == 0, shown.output
    assert str(world.copy_id) in shown.stdout, shown.stdout
