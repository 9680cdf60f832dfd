"""TokenCalculator: tiktoken counts when available offline, never a download."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from pydantic import SecretStr

from lionpride.services.providers import OAIChatEndpoint
from lionpride.services.utilities import token_calculator
from lionpride.services.utilities.token_calculator import (
    ENCODING_URLS,
    TokenCalculationError,
    TokenCalculator,
)
from lionpride.services.utilities.tokens import estimate_prompt_tokens


class ByteCounter:
    """A stand-in encoding: one token per UTF-8 byte."""

    def encode(self, text: str, disallowed_special: object = ()) -> list[int]:
        """Every byte is a token."""
        return list(text.encode())


def test_uncached_encoding_is_refused_without_download(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With an empty cache, load() raises naming the path and offline() is None."""
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))
    token_calculator._load.cache_clear()
    with pytest.raises(TokenCalculationError, match="not cached"):
        TokenCalculator.load()
    assert TokenCalculator.offline() is None
    with pytest.raises(TokenCalculationError, match="unknown encoding"):
        TokenCalculator.load("p50k_nope")


def test_cache_path_follows_tiktokens_convention(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The cache file is the SHA-1 of the encoding's URL inside the cache directory."""
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))
    url = ENCODING_URLS["o200k_base"]
    expected = tmp_path / hashlib.sha1(url.encode()).hexdigest()
    assert token_calculator.cache_path("o200k_base") == str(expected)
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", "")
    assert token_calculator.cache_path("o200k_base") is None


def test_counts_come_from_the_encoding() -> None:
    """count_text and the prompt estimate use the encoding instead of characters / 4."""
    calc = TokenCalculator(ByteCounter())
    assert calc.count_text("héllo") == 6
    payload = {"messages": [{"role": "user", "content": "a" * 40}]}
    assert estimate_prompt_tokens(payload, calc.count_text) == 4 + 40
    assert estimate_prompt_tokens(payload) == 4 + 10
    with pytest.raises(ValueError):
        TokenCalculator(object())


def test_endpoint_estimates_use_an_available_calculator(monkeypatch: pytest.MonkeyPatch) -> None:
    """An endpoint resolves the calculator once and counts the prompt with it."""
    calls: list[int] = []

    def offline(cls: type[TokenCalculator], encoding_name: str = "o200k_base") -> TokenCalculator:
        calls.append(1)
        return TokenCalculator(ByteCounter())

    monkeypatch.setattr(TokenCalculator, "offline", classmethod(offline))
    ep = OAIChatEndpoint(api_key=SecretStr("k"))
    payload = ep.create_payload(
        {"model": "m", "messages": [{"role": "user", "content": "b" * 20}], "max_tokens": 7}
    )
    assert ep.estimate_tokens(payload) == 4 + 20 + 7
    assert ep.estimate_tokens(payload) == 4 + 20 + 7
    assert calls == [1]
