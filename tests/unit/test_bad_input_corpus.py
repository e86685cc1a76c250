"""The bad-input corpus at the validation stage: pure, no Kafka, no storage, no ffmpeg.

The service-stage cases (tenant, claim check, audio) run in process against the real storage
in ``tests/integration/test_bad_input_corpus.py``, and every case through the real worker in
``tests/integration/test_ingest_e2e.py``.
"""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from ingest.exceptions import IngestErrorCode, InvalidMessage
from ingest.schema import parse_message
from tests.bad_input_corpus import CORPUS, World, Stage, good, leaked

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=timezone.utc)
WORLD = World(now=NOW)
MESSAGE_CASES = [case for case in CORPUS if case.stage is Stage.MESSAGE]


def test_the_corpus_holds_at_least_30_distinct_kinds() -> None:
    names = [case.name for case in CORPUS]
    assert len(names) >= 30
    assert len(set(names)) == len(names)
    assert len({case.key for case in CORPUS}) == len(CORPUS)
    assert all(case.says for case in CORPUS)
    # Every reason a sender can be blamed for, except a conflict (it needs a call stored first:
    # test_ingest_e2e.py::test_redelivery_is_a_duplicate_and_changed_audio_is_a_conflict) and a
    # worker crash (it needs the worker killed: test_poison_message.py) and a tenant mismatch (it
    # needs a per-tenant topic: test_kafka_auth.py).
    blamed = set(IngestErrorCode) - {IngestErrorCode.INGEST_ERROR, IngestErrorCode.AUDIO_ERROR,
                                     IngestErrorCode.ENCODING_FAILED, IngestErrorCode.INTERNAL_ERROR,
                                     IngestErrorCode.RECORDING_CONFLICT, IngestErrorCode.WORKER_CRASH,
                                     IngestErrorCode.TENANT_MISMATCH}
    assert {case.reason for case in CORPUS} == blamed


@pytest.mark.parametrize("case", MESSAGE_CASES, ids=[case.name for case in MESSAGE_CASES])
def test_each_malformed_message_is_refused_by_validation_with_its_reason(case) -> None:
    blob = case.build(WORLD)
    with pytest.raises(InvalidMessage) as info:
        parse_message(blob).check_clock(NOW)
    assert info.value.code == case.reason, str(info.value)
    assert case.says in str(info.value)
    assert leaked(str(info.value), blob) == []


def test_the_good_calls_sent_between_them_are_valid() -> None:
    msg = parse_message(good(WORLD, "good-1"))
    msg.check_clock(NOW)
    assert msg.recording_id == "good-1" and msg.caller_number == "+33612345678"
