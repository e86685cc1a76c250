"""The worker's one backoff (``ingest.retry.RetryPolicy``): bounded, never shrinking, capped."""

import asyncio

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ingest.retry import RetryPolicy

policies = st.builds(RetryPolicy, base=st.floats(0.001, 10.0), max_doublings=st.integers(0, 12),
                     cap=st.floats(0.001, 600.0))
attempts = st.integers(1, 10_000)


def test_the_default_waits_1_2_4_8_16_then_30_seconds():
    assert [RetryPolicy().delay(n) for n in range(1, 9)] == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]


@given(policies, attempts)
def test_the_delay_is_positive_and_never_over_the_cap(policy, attempt):
    assert 0 < policy.delay(attempt) <= policy.cap


@given(policies, attempts)
def test_the_delay_never_decreases_from_one_attempt_to_the_next(policy, attempt):
    assert policy.delay(attempt) <= policy.delay(attempt + 1)


@given(policies, attempts)
def test_the_delay_stops_growing_after_max_doublings(policy, attempt):
    assert policy.delay(policy.max_doublings + attempt) == policy.delay(policy.max_doublings)


@pytest.mark.parametrize("failures", [0, 1, 5])
def test_until_done_retries_until_the_call_succeeds_reporting_each_failure(failures):
    policy = RetryPolicy(base=0.0001, cap=0.001)
    calls, reported = [], []

    async def flaky() -> str:
        calls.append(1)
        if len(calls) <= failures:
            raise ConnectionError("broker down")
        return "acked"

    def on_failure(attempt: int, delay: float, exc: Exception) -> None:
        reported.append((attempt, delay, type(exc)))

    assert asyncio.run(policy.until_done(flaky, on_failure)) == "acked"
    assert len(calls) == failures + 1
    assert reported == [(n, policy.delay(n), ConnectionError) for n in range(1, failures + 1)]


def test_until_done_lets_cancellation_through():
    async def main() -> None:
        async def never() -> None:
            await asyncio.sleep(3600)

        task = asyncio.create_task(RetryPolicy().until_done(never, lambda *_: None))
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
