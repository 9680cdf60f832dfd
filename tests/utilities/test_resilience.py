"""Tests for the circuit breaker, retry with backoff and the server's retry hints."""

from __future__ import annotations

import asyncio
import builtins
import email.utils
import json
import logging
import re
from collections.abc import Awaitable
from typing import Any

import pytest

from lionpride import errors
from lionpride.core.clock import FakeClock
from lionpride.services.utilities.resilience import (
    HALF_OPEN_RETRY_AFTER,
    CircuitBreaker,
    CircuitBreakerOpenError,
    CircuitState,
    RetryConfig,
    no_backoff,
    parse_retry_after,
    retry_with_backoff,
    should_retry_header,
)

LOGGER = "lionpride.services.utilities.resilience"


class Script:
    """An async callable that plays a list of outcomes and records when it was called."""

    def __init__(self, clock: FakeClock, outcomes: list[Any]) -> None:
        self.clock = clock
        self.outcomes = list(outcomes)
        self.times: list[float] = []
        self.kwargs: list[dict[str, Any]] = []

    @property
    def calls(self) -> int:
        """Number of times the callable ran."""
        return len(self.times)

    async def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Return or raise the next scripted outcome."""
        self.times.append(self.clock.now())
        self.kwargs.append(kwargs)
        outcome = self.outcomes.pop(0)
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome


class Gate:
    """An async callable that blocks until released, then returns or raises."""

    def __init__(self) -> None:
        self.entered = 0
        self._release = asyncio.Event()
        self._outcome: Any = "ok"

    async def __call__(self) -> Any:
        """Wait for the release, then play the outcome."""
        self.entered += 1
        await self._release.wait()
        if isinstance(self._outcome, BaseException):
            raise self._outcome
        return self._outcome

    def release(self, outcome: Any = "ok") -> None:
        """Let every waiting call finish with ``outcome``."""
        self._outcome = outcome
        self._release.set()


async def ok() -> str:
    """Succeed."""
    return "ok"


async def boom() -> str:
    """Fail with a counted error."""
    raise errors.ServerError("boom", status_code=500)


async def settle() -> None:
    """Let started tasks reach their first await."""
    for _ in range(5):
        await asyncio.sleep(0)


async def trip(breaker: CircuitBreaker, times: int) -> None:
    """Record ``times`` failures on ``breaker``."""
    for _ in range(times):
        with pytest.raises(errors.ServerError):
            await breaker.execute(boom)


async def half_open(recovery_time: float = 1.0, **config: Any) -> tuple[FakeClock, CircuitBreaker]:
    """A breaker (threshold 1, ``config`` besides) tripped once and at the end of its
    recovery time, so that the next call is a probe; with its clock."""
    clock = FakeClock()
    breaker = CircuitBreaker(
        failure_threshold=1, recovery_time=recovery_time, clock=clock, **config
    )
    await trip(breaker, 1)
    await clock.advance(recovery_time)
    return clock, breaker


async def held(breaker: CircuitBreaker, *gates: Gate) -> list[asyncio.Task[Any]]:
    """One call per gate through ``breaker``, each let in and held at its gate."""
    calls = [asyncio.create_task(breaker.execute(gate)) for gate in gates]
    await settle()
    return calls


def rate_rule() -> tuple[FakeClock, CircuitBreaker]:
    """A breaker that opens on a failure rate of one half over 60 s (from 4 calls), with its
    clock; its consecutive-failure rule is out of reach."""
    clock = FakeClock()
    breaker = CircuitBreaker(
        failure_threshold=100, failure_rate_threshold=0.5, window=60.0, min_calls=4, clock=clock
    )
    return clock, breaker


async def run_advancing(clock: FakeClock, coro: Awaitable[Any], seconds: float = 100.0) -> Any:
    """Run ``coro`` while moving ``clock`` forward ``seconds``, then return its result."""
    task = asyncio.ensure_future(coro)
    await clock.advance(seconds)
    return await task


# --- circuit breaker ----------------------------------------------------------------------------


async def test_interleaved_successes_keep_breaker_closed() -> None:
    """Failures separated by successes are not consecutive and never open the breaker."""
    breaker = CircuitBreaker(failure_threshold=3, clock=FakeClock())
    await trip(breaker, 1)
    await breaker.execute(ok)
    await trip(breaker, 1)
    await breaker.execute(ok)
    await trip(breaker, 1)
    assert breaker.state is CircuitState.CLOSED
    assert breaker.failure_count == 1


async def test_consecutive_failures_open_and_reject_without_calling() -> None:
    """Three consecutive failures open the breaker; the next call fails fast without running."""
    clock = FakeClock()
    breaker = CircuitBreaker(failure_threshold=3, recovery_time=30.0, clock=clock)
    await trip(breaker, 3)
    assert breaker.state is CircuitState.OPEN
    assert breaker.last_failure_time == 0.0
    await clock.advance(10.0)
    func = Script(clock, ["never"])
    with pytest.raises(CircuitBreakerOpenError) as info:
        await breaker.execute(func)
    assert func.calls == 0
    assert info.value.retry_after == pytest.approx(20.0)
    assert info.value.details["retry_after"] == pytest.approx(20.0)
    assert info.value.retryable is True
    assert isinstance(info.value, builtins.ConnectionError)
    assert breaker.metrics["rejected_count"] == 1
    assert breaker.metrics["failure_count"] == 3


async def test_probe_success_closes_after_recovery_time() -> None:
    """After recovery_time the breaker is HALF_OPEN and one successful probe closes it."""
    clock = FakeClock()
    breaker = CircuitBreaker(failure_threshold=1, recovery_time=5.0, clock=clock)
    await trip(breaker, 1)
    await clock.advance(4.999)
    assert breaker.state is CircuitState.OPEN
    await clock.advance(0.001)
    assert breaker.state is CircuitState.HALF_OPEN
    assert await breaker.execute(ok) == "ok"
    assert breaker.state is CircuitState.CLOSED
    assert breaker.failure_count == 0
    moves = [(c["from"], c["to"]) for c in breaker.metrics["state_changes"]]
    assert moves == [("closed", "open"), ("open", "half_open"), ("half_open", "closed")]


async def test_probe_failure_reopens_for_a_new_recovery_period() -> None:
    """A failed probe reopens the breaker and restarts the recovery period from that moment."""
    clock = FakeClock()
    breaker = CircuitBreaker(failure_threshold=2, recovery_time=5.0, clock=clock)
    await trip(breaker, 2)
    await clock.advance(7.0)
    await trip(breaker, 1)
    assert breaker.state is CircuitState.OPEN
    with pytest.raises(CircuitBreakerOpenError) as info:
        await breaker.execute(ok)
    assert info.value.retry_after == pytest.approx(5.0)
    await clock.advance(5.0)
    assert breaker.state is CircuitState.HALF_OPEN


async def test_cancelled_probe_releases_its_slot() -> None:
    """A cancelled probe is neither success nor failure and frees its slot for the next probe."""
    _, breaker = await half_open()
    gate = Gate()
    [probe] = await held(breaker, gate)
    assert gate.entered == 1
    with pytest.raises(CircuitBreakerOpenError):
        await breaker.execute(ok)
    probe.cancel()
    with pytest.raises(asyncio.CancelledError):
        await probe
    assert breaker.state is CircuitState.HALF_OPEN
    assert breaker.metrics["success_count"] == 0
    assert breaker.metrics["failure_count"] == 1
    assert await breaker.execute(ok) == "ok"
    assert breaker.state is CircuitState.CLOSED


async def test_excluded_exception_in_probe_releases_slot() -> None:
    """A probe ending in an excluded exception passes it through uncounted and frees the slot."""
    clock, breaker = await half_open(excluded_exceptions=[errors.BadRequestError])
    bad = errors.BadRequestError("no", status_code=400)
    with pytest.raises(errors.BadRequestError) as info:
        await breaker.execute(Script(clock, [bad]))
    assert info.value is bad
    assert breaker.state is CircuitState.HALF_OPEN
    assert breaker.metrics["failure_count"] == 1
    assert await breaker.execute(ok) == "ok"
    assert breaker.state is CircuitState.CLOSED


async def test_excluded_exception_in_closed_is_not_counted() -> None:
    """Excluded exceptions never move the failure count toward the threshold."""
    breaker = CircuitBreaker(failure_threshold=1, excluded_exceptions=[ValueError])
    for _ in range(3):
        with pytest.raises(ValueError):
            await breaker.execute(Script(FakeClock(), [ValueError("x")]))
    assert breaker.state is CircuitState.CLOSED
    assert breaker.failure_count == 0


async def test_half_open_admits_exactly_max_concurrent_probes() -> None:
    """With half_open_max_calls=2 two probes run at once and a third is rejected unrun."""
    clock, breaker = await half_open(10.0, half_open_max_calls=2)
    gate = Gate()
    probes = await held(breaker, gate, gate)
    third = Script(clock, ["never"])
    with pytest.raises(CircuitBreakerOpenError) as info:
        await breaker.execute(third)
    assert gate.entered == 2
    assert third.calls == 0
    assert info.value.retry_after == HALF_OPEN_RETRY_AFTER
    gate.release()
    assert await asyncio.gather(*probes) == ["ok", "ok"]
    assert breaker.state is CircuitState.CLOSED


async def test_half_open_busy_retry_after_never_exceeds_recovery_time() -> None:
    """The busy-probe hint is capped by a short recovery_time."""
    _, breaker = await half_open(0.25)
    gate = Gate()
    [probe] = await held(breaker, gate)
    with pytest.raises(CircuitBreakerOpenError) as info:
        await breaker.execute(ok)
    assert info.value.retry_after == 0.25
    gate.release()
    await probe


async def test_late_failure_of_second_probe_does_not_touch_new_period() -> None:
    """A probe that finishes after another probe reopened the breaker cannot free a new slot."""
    clock, breaker = await half_open(half_open_max_calls=2)
    slow = Gate()
    [slow_probe] = await held(breaker, slow)
    await trip(breaker, 1)
    assert breaker.state is CircuitState.OPEN
    await clock.advance(1.0)
    gates = [Gate(), Gate()]
    probes = await held(breaker, *gates)
    slow.release(asyncio.CancelledError())
    with pytest.raises(asyncio.CancelledError):
        await slow_probe
    with pytest.raises(CircuitBreakerOpenError):
        await breaker.execute(ok)
    for g in gates:
        g.release()
    await asyncio.gather(*probes)
    assert breaker.state is CircuitState.CLOSED


async def test_stale_attempts_cannot_move_a_newer_half_open_period() -> None:
    """Calls admitted while CLOSED that end during a later HALF_OPEN neither reopen nor close it."""
    clock = FakeClock()
    breaker = CircuitBreaker(failure_threshold=1, recovery_time=1.0, clock=clock)
    failing, succeeding = Gate(), Gate()
    stale = await held(breaker, failing, succeeding)
    await trip(breaker, 1)
    await clock.advance(1.0)
    assert breaker.state is CircuitState.HALF_OPEN
    failing.release(errors.ServerError("late", status_code=500))
    succeeding.release()
    results = await asyncio.gather(*stale, return_exceptions=True)
    assert isinstance(results[0], errors.ServerError)
    assert results[1] == "ok"
    assert breaker.state is CircuitState.HALF_OPEN


async def test_closing_forgets_the_failure_rate_window() -> None:
    """Failures from before a recovery do not reopen the breaker after it closes."""
    clock = FakeClock()
    breaker = CircuitBreaker(
        failure_threshold=100,
        recovery_time=1.0,
        failure_rate_threshold=0.5,
        min_calls=2,
        clock=clock,
    )
    await trip(breaker, 2)
    assert breaker.state is CircuitState.OPEN
    await clock.advance(1.0)
    await breaker.execute(ok)
    await trip(breaker, 1)
    assert breaker.state is CircuitState.CLOSED


async def test_failure_rate_window_opens_breaker() -> None:
    """With a rate rule the breaker opens once min_calls calls show the failure rate."""
    _, breaker = rate_rule()
    await breaker.execute(ok)
    await trip(breaker, 1)
    await breaker.execute(ok)
    assert breaker.state is CircuitState.CLOSED
    await trip(breaker, 1)
    assert breaker.state is CircuitState.OPEN


async def test_failure_rate_window_forgets_old_calls() -> None:
    """Failures older than the window no longer count toward the failure rate."""
    clock, breaker = rate_rule()
    await trip(breaker, 2)
    await clock.advance(61.0)
    for _ in range(3):
        await breaker.execute(ok)
    await trip(breaker, 1)
    assert breaker.state is CircuitState.CLOSED


async def test_serialization_roundtrips_through_json() -> None:
    """to_dict is JSON-safe and from_dict rebuilds the same config as a fresh CLOSED breaker."""
    breaker = CircuitBreaker(
        failure_threshold=3,
        recovery_time=7.5,
        half_open_max_calls=2,
        excluded_exceptions=[ValueError, errors.BadRequestError, CircuitBreakerOpenError],
        name="api",
        failure_rate_threshold=0.4,
        window=30.0,
        min_calls=5,
    )
    await trip(breaker, 3)
    data = json.loads(json.dumps(breaker.to_dict()))
    assert data["excluded_exceptions"] == [
        "builtins.ValueError",
        "lionpride.errors.BadRequestError",
        "lionpride.errors.CircuitBreakerOpenError",
    ]
    restored = CircuitBreaker.from_dict(data)
    assert restored.to_dict() == breaker.to_dict()
    assert restored.state is CircuitState.CLOSED
    assert restored.excluded_exceptions == (
        ValueError,
        errors.BadRequestError,
        CircuitBreakerOpenError,
    )
    json.dumps(breaker.metrics)


@pytest.mark.parametrize("name", ["os.system", "subprocess.Popen", "builtins.print", "Nope"])
def test_from_dict_refuses_names_outside_allow_list(name: str) -> None:
    """Only builtin and lionpride.errors exception classes can be restored."""
    with pytest.raises(ValueError, match=re.escape(name)):
        CircuitBreaker.from_dict({"excluded_exceptions": [name]})


def test_from_dict_rejects_unknown_keys() -> None:
    """A misspelt key in a saved breaker config is an error, not silently ignored."""
    with pytest.raises(ValueError, match="failure_treshold"):
        CircuitBreaker.from_dict({"failure_treshold": 3})


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        ({"failure_threshold": 0}, "failure_threshold"),
        ({"failure_threshold": 2.5}, "failure_threshold"),
        ({"recovery_time": 0}, "recovery_time"),
        ({"recovery_time": float("nan")}, "recovery_time"),
        ({"recovery_time": float("inf")}, "recovery_time"),
        ({"half_open_max_calls": -1}, "half_open_max_calls"),
        ({"failure_rate_threshold": 1.5}, "failure_rate_threshold"),
        ({"failure_rate_threshold": 0.0}, "failure_rate_threshold"),
        ({"window": float("nan")}, "window"),
        ({"min_calls": 0}, "min_calls"),
    ],
)
def test_breaker_validation_names_the_parameter(kwargs: dict[str, Any], param: str) -> None:
    """Invalid breaker settings raise ValueError naming the parameter."""
    with pytest.raises(ValueError, match=param):
        CircuitBreaker(**kwargs)


def test_excluding_exception_logs_warning(caplog: pytest.LogCaptureFixture) -> None:
    """Excluding Exception warns that the breaker can never open: a log record, and a
    warning shown with no logging configured."""
    with pytest.warns(UserWarning, match="'lenient' excludes Exception"):
        CircuitBreaker(excluded_exceptions=[Exception], name="lenient")
    warnings = [r for r in caplog.records if r.name == LOGGER and r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "lenient" in warnings[0].getMessage()


async def test_ordinary_failures_log_nothing_loud(caplog: pytest.LogCaptureFixture) -> None:
    """Failures and rejections never log at WARNING or above, nor with a stack trace."""
    breaker = CircuitBreaker(failure_threshold=1, clock=FakeClock())
    await trip(breaker, 1)
    with pytest.raises(CircuitBreakerOpenError):
        await breaker.execute(ok)
    assert [r for r in caplog.records if r.levelno >= logging.WARNING or r.exc_info] == []


async def test_reset_closes_and_keeps_metrics() -> None:
    """reset() returns an open breaker to CLOSED without erasing its counters."""
    breaker = CircuitBreaker(failure_threshold=1, clock=FakeClock())
    await trip(breaker, 1)
    breaker.reset()
    assert breaker.state is CircuitState.CLOSED
    assert breaker.failure_count == 0
    assert await breaker.execute(ok) == "ok"
    assert breaker.metrics["failure_count"] == 1


async def test_state_changes_are_bounded() -> None:
    """Metrics keep only the last 100 state changes."""
    clock = FakeClock()
    breaker = CircuitBreaker(failure_threshold=1, recovery_time=1.0, clock=clock)
    for _ in range(60):
        await trip(breaker, 1)
        breaker.reset()
    changes = breaker.metrics["state_changes"]
    assert len(changes) == 100
    assert changes[-1] == {"time": 0.0, "from": "open", "to": "closed"}


# --- RetryConfig --------------------------------------------------------------------------------


def test_calculate_delay_without_jitter_is_the_capped_exponential() -> None:
    """Without jitter each wait is min(initial * base**n, max_delay)."""
    config = RetryConfig(jitter=False)
    assert [config.calculate_delay(n) for n in range(6)] == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0]
    assert config.calculate_delay(5000) == 8.0


def test_calculate_delay_with_full_jitter_stays_in_bounds() -> None:
    """With jitter each wait lies in [0, cap] and is not always the cap."""
    config = RetryConfig(initial_delay=1.0, max_delay=4.0)
    samples = [config.calculate_delay(3) for _ in range(200)]
    assert all(0.0 <= s <= 4.0 for s in samples)
    assert min(samples) < 2.0 < max(samples)


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        ({"max_retries": -1}, "max_retries"),
        ({"max_retries": 1.5}, "max_retries"),
        ({"initial_delay": 0}, "initial_delay"),
        ({"initial_delay": float("nan")}, "initial_delay"),
        ({"max_delay": float("inf")}, "max_delay"),
        ({"initial_delay": 2.0, "max_delay": 1.0}, "max_delay"),
        ({"exponential_base": 0}, "exponential_base"),
        ({"exponential_base": 0.5}, "exponential_base"),
    ],
)
def test_retry_config_validation_names_the_parameter(kwargs: dict[str, Any], param: str) -> None:
    """Invalid retry settings raise ValueError naming the parameter."""
    with pytest.raises(ValueError, match=param):
        RetryConfig(**kwargs)


def test_retry_config_roundtrips_through_json() -> None:
    """to_dict is JSON-safe and from_dict restores retry_on through the allow-list."""
    config = RetryConfig(max_retries=4, jitter=False, retry_on=(errors.RateLimitError, OSError))
    data = json.loads(json.dumps(config.to_dict()))
    assert data["retry_on"] == ["lionpride.errors.RateLimitError", "builtins.OSError"]
    assert RetryConfig.from_dict(data) == config
    assert RetryConfig.from_dict(RetryConfig().to_dict()) == RetryConfig()
    assert config.as_kwargs()["retry_on"] == (errors.RateLimitError, OSError)
    with pytest.raises(ValueError, match=re.escape("os.system")):
        RetryConfig.from_dict({"retry_on": ["os.system"]})


# --- retry_with_backoff -------------------------------------------------------------------------


async def test_rate_limit_waits_exactly_the_server_retry_after() -> None:
    """A 429 with retry_after=1 waits exactly 1.0 s on the clock, then succeeds."""
    clock = FakeClock()
    func = Script(clock, [errors.RateLimitError("slow", status_code=429, retry_after=1.0), "ok"])
    task = asyncio.ensure_future(retry_with_backoff(func, clock=clock))
    await clock.advance(0.999)
    assert not task.done()
    await clock.advance(0.001)
    assert await task == "ok"
    assert func.times == [0.0, 1.0]


async def test_server_errors_back_off_within_full_jitter_bounds() -> None:
    """503 then 500 then success takes three attempts with waits inside the jitter envelope."""
    clock = FakeClock()
    func = Script(
        clock,
        [
            errors.ServerError("unavailable", status_code=503),
            errors.ServerError("internal", status_code=500),
            "ok",
        ],
    )
    delays: list[tuple[int, float]] = []
    result = await run_advancing(
        clock,
        retry_with_backoff(func, clock=clock, on_retry=lambda n, e, d: delays.append((n, d))),
    )
    assert result == "ok"
    assert func.calls == 3
    assert [n for n, _ in delays] == [1, 2]
    assert 0.0 <= delays[0][1] <= 0.5
    assert 0.0 <= delays[1][1] <= 1.0
    assert func.times[1] == pytest.approx(delays[0][1])
    assert func.times[2] == pytest.approx(delays[0][1] + delays[1][1])


@pytest.mark.parametrize(
    "error", [errors.BadRequestError("bad", status_code=400), ValueError("nope")]
)
async def test_non_retryable_error_is_raised_unchanged_after_one_attempt(
    error: Exception,
) -> None:
    """A non-retryable error propagates at once as the very same object."""
    func = Script(FakeClock(), [error, "ok"])
    with pytest.raises(type(error)) as info:
        await retry_with_backoff(func)
    assert info.value is error
    assert func.calls == 1


async def test_max_retries_zero_makes_one_attempt() -> None:
    """max_retries=0 tries once and re-raises a retryable error."""
    error = errors.ServerError("down", status_code=503)
    func = Script(FakeClock(), [error, "ok"])
    with pytest.raises(errors.ServerError) as info:
        await retry_with_backoff(func, config=RetryConfig(max_retries=0))
    assert info.value is error
    assert func.calls == 1


async def test_last_error_is_reraised_after_all_attempts() -> None:
    """When every attempt fails the final attempt's error object is re-raised."""
    clock = FakeClock()
    failures = [builtins.ConnectionError("a"), TimeoutError("b"), builtins.ConnectionError("c")]
    func = Script(clock, list(failures))
    with pytest.raises(builtins.ConnectionError) as info:
        await run_advancing(clock, retry_with_backoff(func, clock=clock))
    assert info.value is failures[2]
    assert func.calls == 3


async def test_retry_after_longer_than_deadline_fails_now() -> None:
    """retry_after 5 s with 1 s left before the deadline raises at once without sleeping."""
    clock = FakeClock()
    error = errors.RateLimitError("slow", status_code=429, retry_after=5.0)
    func = Script(clock, [error, "ok"])
    with pytest.raises(errors.RateLimitError) as info:
        await retry_with_backoff(func, clock=clock, deadline=clock.now() + 1.0)
    assert info.value is error
    assert func.calls == 1
    assert clock.now() == 0.0


async def test_backoff_longer_than_deadline_fails_now() -> None:
    """A backoff wait that would pass the deadline re-raises instead of sleeping."""
    clock = FakeClock()
    func = Script(clock, [errors.ServerError("down", status_code=503), "ok"])
    config = RetryConfig(initial_delay=2.0, jitter=False)
    with pytest.raises(errors.ServerError):
        await retry_with_backoff(func, config=config, clock=clock, deadline=1.0)
    assert func.calls == 1


async def test_open_breaker_error_is_not_retried() -> None:
    """A CircuitBreakerOpenError whose retry_after exceeds max_delay fails fast."""
    error = CircuitBreakerOpenError(retry_after=30.0)
    func = Script(FakeClock(), [error, "ok"])
    with pytest.raises(CircuitBreakerOpenError) as info:
        await retry_with_backoff(func)
    assert info.value is error
    assert func.calls == 1
    unknown = Script(FakeClock(), [CircuitBreakerOpenError(), "ok"])
    with pytest.raises(CircuitBreakerOpenError):
        await retry_with_backoff(unknown)
    assert unknown.calls == 1


async def test_open_breaker_error_with_short_retry_after_is_retried() -> None:
    """A breaker that will admit calls within max_delay is waited for and retried."""
    clock = FakeClock()
    func = Script(clock, [CircuitBreakerOpenError(retry_after=0.5), "ok"])
    assert await run_advancing(clock, retry_with_backoff(func, clock=clock)) == "ok"
    assert func.times == [0.0, 0.5]


async def test_retry_wraps_breaker_and_counts_every_attempt() -> None:
    """Retry around the breaker counts each attempt and stops once the breaker opens."""
    clock = FakeClock()
    breaker = CircuitBreaker(failure_threshold=2, recovery_time=30.0, clock=clock)
    func = Script(clock, [errors.ServerError("x", status_code=500) for _ in range(4)])
    with pytest.raises(CircuitBreakerOpenError):
        await run_advancing(
            clock,
            retry_with_backoff(
                breaker.execute, args=(func,), config=RetryConfig(max_retries=3), clock=clock
            ),
        )
    assert func.calls == 2
    assert breaker.metrics["failure_count"] == 2
    assert breaker.metrics["rejected_count"] == 1


async def test_func_kwargs_do_not_clash_with_retry_settings() -> None:
    """Keyword arguments named jitter or config reach func untouched."""
    func = Script(FakeClock(), ["ok"])
    await retry_with_backoff(func, args=(1,), kwargs={"jitter": "mine", "config": 7})
    assert func.kwargs == [{"jitter": "mine", "config": 7}]


async def test_async_on_retry_is_awaited_with_attempt_numbers() -> None:
    """An async on_retry hook is awaited before each wait with the failed attempt's number."""
    clock = FakeClock()
    error = builtins.ConnectionError("reset")
    func = Script(clock, [error, error, "ok"])
    seen: list[tuple[int, BaseException, float]] = []

    async def hook(n: int, exc: BaseException, delay: float) -> None:
        seen.append((n, exc, delay))

    config = RetryConfig(jitter=False)
    await run_advancing(clock, retry_with_backoff(func, config=config, clock=clock, on_retry=hook))
    assert seen == [(1, error, 0.5), (2, error, 1.0)]


async def test_retry_on_overrides_the_default_filter() -> None:
    """An explicit retry_on retries exactly those classes and nothing else."""
    clock = FakeClock()
    func = Script(clock, [KeyError("k"), "ok"])
    config = RetryConfig(retry_on=(KeyError,))
    assert await run_advancing(clock, retry_with_backoff(func, config=config, clock=clock)) == "ok"
    error = errors.ServerError("down", status_code=503)
    func = Script(clock, [error, "ok"])
    with pytest.raises(errors.ServerError):
        await retry_with_backoff(func, config=config, clock=clock)
    assert func.calls == 1


async def test_retryable_false_on_connection_error_is_respected() -> None:
    """A lionpride error marked retryable=False is not retried even if it is a ConnectionError."""
    error = errors.ConnectionError("gone", retryable=False)
    func = Script(FakeClock(), [error, "ok"])
    with pytest.raises(errors.ConnectionError):
        await retry_with_backoff(func)
    assert func.calls == 1


async def test_no_backoff_skips_waits_only_inside_the_block() -> None:
    """Inside no_backoff() retries happen without waiting; outside they wait again."""
    clock = FakeClock()
    with no_backoff():
        func = Script(clock, [errors.ServerError("x", status_code=503)] * 2 + ["ok"])
        result = await asyncio.wait_for(retry_with_backoff(func, clock=clock), 5.0)
    assert result == "ok"
    assert func.times == [0.0, 0.0, 0.0]
    func = Script(clock, [errors.ServerError("x", status_code=503), "ok"])
    task = asyncio.ensure_future(retry_with_backoff(func, clock=clock))
    await settle()
    assert clock.sleepers == 1
    await clock.advance(1.0)
    assert await task == "ok"


async def test_cancellation_during_backoff_propagates() -> None:
    """Cancelling the caller while it waits to retry raises CancelledError and stops retrying."""
    clock = FakeClock()
    func = Script(clock, [errors.ServerError("x", status_code=503), "ok"])
    task = asyncio.ensure_future(retry_with_backoff(func, clock=clock))
    await settle()
    assert clock.sleepers == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await clock.advance(10.0)
    assert func.calls == 1


async def test_cancellation_inside_attempt_is_never_retried() -> None:
    """A CancelledError raised by func propagates immediately."""
    func = Script(FakeClock(), [asyncio.CancelledError(), "ok"])
    with pytest.raises(asyncio.CancelledError):
        await retry_with_backoff(func, config=RetryConfig(retry_on=(BaseException,)))
    assert func.calls == 1


# --- server hints -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after-ms": "1500"}, 1.5),
        ({"Retry-After-Ms": "250", "Retry-After": "9"}, 0.25),
        ({"Retry-After": "3"}, 3.0),
        ({"retry-after": "0.5"}, 0.5),
        ({"retry-after": "-4"}, None),
        ({"retry-after-ms": "-5", "retry-after": "2"}, 2.0),
        ({"retry-after-ms": "soon", "retry-after": "2"}, 2.0),
        ({"retry-after": "soon"}, None),
        ({"retry-after": "nan"}, None),
        ({}, None),
    ],
)
def test_parse_retry_after_headers(headers: dict[str, str], expected: float | None) -> None:
    """Headers are read in order (ms, seconds), case-insensitively; garbage and negative
    numbers give None (no hint: the caller backs off)."""
    assert parse_retry_after(headers) == expected


def test_parse_retry_after_http_date() -> None:
    """An HTTP-date in retry-after becomes the seconds from now until that moment."""
    now = 1_700_000_000.0
    later = email.utils.formatdate(now + 30, usegmt=True)
    assert parse_retry_after({"Retry-After": later}, now=now) == pytest.approx(30.0)
    earlier = email.utils.formatdate(now - 30, usegmt=True)
    assert parse_retry_after({"Retry-After": earlier}, now=now) == 0.0


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            {
                "error": {
                    "code": 429,
                    "details": [
                        {"@type": "type.googleapis.com/google.rpc.QuotaFailure"},
                        {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "37s"},
                    ],
                }
            },
            37.0,
        ),
        (
            '[{"error": {"details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo",'
            ' "retryDelay": "1.5s"}]}}]',
            1.5,
        ),
        ({"error": {"details": [{"@type": "google.rpc.RetryInfo", "retryDelay": "x"}]}}, None),
        ({"error": "plain"}, None),
        ("not json", None),
    ],
)
def test_parse_retry_after_gemini_body(body: Any, expected: float | None) -> None:
    """Gemini's RetryInfo.retryDelay in the error body is read when headers say nothing."""
    assert parse_retry_after({}, body) == expected


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"x-should-retry": "true"}, True),
        ({"X-Should-Retry": "False"}, False),
        ({"x-should-retry": "maybe"}, None),
        ({}, None),
    ],
)
def test_should_retry_header(headers: dict[str, str], expected: bool | None) -> None:
    """x-should-retry is read case-insensitively; other values mean the server did not say."""
    assert should_retry_header(headers) is expected


@pytest.mark.parametrize("recovery_time", [0.25, 2.0, 8.0, 30.0])
async def test_an_open_breaker_fails_fast_whatever_its_recovery_time(
    recovery_time: float,
) -> None:
    """A call that meets an open breaker fails at once, no sleep and no attempt, even when
    recovery_time is below the retry backoff cap; after recovery_time the next call probes."""
    clock = FakeClock()
    breaker = CircuitBreaker(failure_threshold=1, recovery_time=recovery_time, clock=clock)
    await trip(breaker, 1)
    func = Script(clock, ["ok"])
    with pytest.raises(CircuitBreakerOpenError) as info:
        await retry_with_backoff(breaker.execute, args=(func,), clock=clock)
    assert func.calls == 0 and clock.now() == 0.0
    assert info.value.state == "open" and info.value.retry_after == pytest.approx(recovery_time)
    await clock.advance(recovery_time)
    assert await retry_with_backoff(breaker.execute, args=(func,), clock=clock) == "ok"
    assert breaker.state is CircuitState.CLOSED


async def test_busy_probe_slots_are_waited_for_briefly() -> None:
    """A half-open breaker whose probe slot is taken is not failed fast: the next call waits
    HALF_OPEN_RETRY_AFTER for the probe's outcome, then goes through the closed breaker."""
    clock = FakeClock()
    breaker = CircuitBreaker(failure_threshold=1, recovery_time=5.0, clock=clock)
    await trip(breaker, 1)
    await clock.advance(5.0)
    gate = Gate()
    probe = asyncio.ensure_future(breaker.execute(gate))
    await settle()
    waiter = Script(clock, ["ok"])
    second = asyncio.ensure_future(retry_with_backoff(breaker.execute, args=(waiter,), clock=clock))
    await settle()
    gate.release()
    assert await probe == "ok" and waiter.calls == 0
    await clock.advance(HALF_OPEN_RETRY_AFTER)
    assert await second == "ok" and waiter.times == [5.0 + HALF_OPEN_RETRY_AFTER]
