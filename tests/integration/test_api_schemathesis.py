"""Schemathesis against the API's own OpenAPI document: no generated request, valid or not,
gets a 5xx. The app is served over real HTTP by uvicorn (``tests.support.server``, as for the
browser tests) over real MinIO + PostgreSQL, once with a token of each role (internal
control, who may call every operation, gets the most examples; the others reach the refusal
paths: 403s, hidden ids, IT's number search), with a bounded number of examples per operation.

The schema is read once at import from an app that connects to nothing (``create_app``
builds services lazily); each test sends its cases to the served app of its own fresh world. (Not
``schemathesis.pytest.from_fixture``: in schemathesis 4.32 it sets ``node._nodeid``, which
pytest 9 no longer has.)

Half of the generated UUIDs in paths are swapped for ids that exist, so fuzzed ranges,
bodies and query strings also reach real recordings, copies and audio, not only 404s.
"""

from __future__ import annotations

import uuid
from typing import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from access.api import create_app
from access.settings import AccessSettings
from tests.support.server import served
from tests.support.world import SECRET, USERS, World, build_world

pytestmark = pytest.mark.integration

APP = create_app(settings=AccessSettings(jwt_secret=SECRET))
schema = schemathesis.openapi.from_dict(APP.openapi())


@pytest.fixture
def world(pg_engine, store, keys, scratch_bucket, storage_settings) -> Iterator[World]:
    with served(build_world(pg_engine, store, keys, scratch_bucket, storage_settings)) as w:
        yield w


def _real_ids(case, world) -> None:
    existing = {"copy_id": world.copies["own/production"], "recording_id": world.recordings["own"]}
    for name, real in existing.items():
        value = (case.path_parameters or {}).get(name)
        try:
            parsed = uuid.UUID(str(value))
        except ValueError:
            continue  # malformed on purpose (negative mode): keep it
        if parsed.int % 2 == 0:
            case.path_parameters[name] = str(real)


# One user of each role of ``tests.support.world.USERS`` (internal control: the group-level one).
ROLES = {"internal-control": "control-group", "consultant": "consultant-1", "manager": "manager-1",
         "coach": "coach-1", "it": "it-1"}


def test_every_role_is_fuzzed():
    assert {u["role"] for u in USERS if u["user_id"] in ROLES.values()} == set(ROLES)


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_operation_answers_a_server_error(case, world):
    _real_ids(case, world)
    case.call_and_validate(base_url=world.url, headers=world.auth(ROLES["internal-control"]),
                           checks=[not_a_server_error])


@pytest.mark.parametrize("role", [r for r in ROLES if r != "internal-control"])
@schema.parametrize()
@settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_operation_answers_a_server_error_to_any_role(case, world, role):
    _real_ids(case, world)
    case.call_and_validate(base_url=world.url, headers=world.auth(ROLES[role]), checks=[not_a_server_error])
