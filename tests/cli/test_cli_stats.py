"""The CLI's summaries come from the model's own metrics, in process and in `lionpride run`."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from tests.cli._subprocess import run_cli

from lionpride.cli._stats import Stopwatch, Summary, ms, secs
from lionpride.services import iModel
from lionpride.services.observability import ModelMetrics, default_prices
from lionpride.services.types.response import Usage
from lionpride.services.utilities.resilience import no_backoff
from lionpride.testing import FakeProvider, Reply

MESSAGES = [{"role": "user", "content": "Hi"}]
LIMITED = Reply(status=429, headers={"retry-after": "0"})


async def test_summary_reads_the_models_metrics(fake_provider: FakeProvider) -> None:
    """A 429 retried, a success and a 400 show up in the summary as the model counted them."""
    fake_provider.script(LIMITED, Reply(), Reply(status=400))
    model = iModel(
        provider="openai", base_url=fake_provider.base_url("openai"), api_key=SecretStr("k")
    )
    clock = Stopwatch()
    async with model:
        with no_backoff():
            ok = await model.invoke(model="gpt-4o-mini", messages=MESSAGES)
            await model.invoke(model="gpt-4o-mini", messages=MESSAGES, raise_on_error=False)
        clock.stop()
        summary = Summary.of(model, clock.elapsed)
    assert (summary.calls, summary.successes, summary.failures) == (2, 1, 1)
    assert (summary.retries, summary.rate_limited) == (1, 1)
    assert summary.failures_text() == "BadRequestError 1"
    assert ok.usage is not None and ok.cost is not None
    assert (summary.tokens_in, summary.tokens_out) == (
        ok.usage.input_tokens,
        ok.usage.output_tokens,
    )
    assert summary.cost_usd == ok.cost == default_prices().cost("gpt-4o-mini", ok.usage)
    assert summary.cost_text() == f"${ok.cost:.4f}"
    assert summary.p50 is not None and summary.p99 is not None and summary.p50 <= summary.p99
    assert summary.rate == pytest.approx(2 / clock.elapsed)
    # The stopwatch is frozen: reading it later gives the same wall time.
    assert clock.elapsed == summary.elapsed


def test_cost_and_latency_text() -> None:
    """Unpriced calls read n/a (or a note when some were priced); no latency reads '-'."""
    metrics = ModelMetrics()
    empty = Summary.from_snapshot(metrics.snapshot(), 1.0)
    assert (empty.p50, ms(empty.p50), secs(empty.p99)) == (None, "-", "-")
    usage = Usage(input_tokens=10, output_tokens=5)
    metrics.record_call(status="completed", duration=0.25, usage=usage)
    assert Summary.from_snapshot(metrics.snapshot(), 1.0).cost_text() == "n/a"
    metrics.record_call(status="completed", duration=0.25, usage=usage, cost=0.5)
    priced = Summary.from_snapshot(metrics.snapshot(), 2.0)
    assert priced.cost_text() == "$0.5000 (+1 unpriced)"
    assert (ms(priced.p50), secs(priced.p99)) == ("250ms", "0.250s")
    assert priced.rate == 1.0 and priced.tokens == 30


async def test_run_summary_reports_the_models_counts(tmp_path: Path) -> None:
    """`lionpride run` prints retries, 429s, failures by type, rejected requests and the rate."""
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    lines: list[dict[str, Any]] = [
        {"custom_id": f"r{i}", "model": "gpt-test", "messages": MESSAGES} for i in range(3)
    ]
    lines.append({"custom_id": "bad", "model": "gpt-test", "messages": MESSAGES, "bogus": 1})
    src.write_text("".join(json.dumps(line) + "\n" for line in lines))
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")}
    env["OPENAI_API_KEY"] = "test"
    async with FakeProvider() as fp:
        fp.script(LIMITED, Reply(), Reply(status=400))
        args = ["run", str(src), "-o", str(out), "--provider", "openai"]
        args += ["--base-url", fp.base_url("openai"), "--concurrency", "1"]
        args += ["--limit-requests", "600", "--capacity-refresh-time", "60"]
        code, _, err = await run_cli(*args, env=env)
    assert code == 1, err
    assert "3 sent: 2 succeeded, 1 failed; 1 rejected before sending" in err
    assert "retries 1, 429s 1" in err
    assert "failures: BadRequestError 1" in err
    assert "cost n/a" in err  # gpt-test has no price
    assert "(configured 10.0 req/s)" in err
