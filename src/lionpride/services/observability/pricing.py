"""Model prices and the USD cost of a call.

The library ships a dated table (``prices.json``, USD per million tokens) for the current
OpenAI, Anthropic, Gemini and Groq models. :func:`default_prices` returns a fresh, private
:class:`PriceTable` loaded from it; each iModel owns its table, so registering a price on one
never changes another's. An unknown model costs ``None``, never a guess.
"""

from __future__ import annotations

import functools
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from os import PathLike
from pathlib import Path
from types import MappingProxyType
from typing import Any

from lionpride.services.types.response import Usage

__all__ = ["ModelPrice", "PriceTable", "default_prices"]

_PER_TOKEN = 1e-6  # prices are quoted per million tokens

# Suffixes that name a dated or pinned snapshot of the same model at the same price:
# OpenAI "-2024-07-18", Anthropic "-20250929", Gemini "-001", and the "-latest" aliases.
_SNAPSHOT_SUFFIX = re.compile(r"-(?:\d{4}-\d{2}-\d{2}|\d{8}|\d{3}|latest)$")


@dataclass(frozen=True, slots=True)
class ModelPrice:
    """USD per million tokens for one model.

    Attributes:
        input: Input tokens not served from the prompt cache.
        output: Output tokens (the visible part of the answer).
        cached_input: Input tokens read from the prompt cache; ``None`` = the input price.
        reasoning: Output tokens spent thinking; ``None`` = the output price.
    """

    input: float
    output: float
    cached_input: float | None = None
    reasoning: float | None = None

    def __post_init__(self) -> None:
        for name in ("input", "output", "cached_input", "reasoning"):
            value = getattr(self, name)
            if value is None and name in ("cached_input", "reasoning"):
                continue
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not math.isfinite(value)
                or value < 0
            ):
                raise ValueError(f"price {name!r} must be a finite number >= 0, got {value!r}")

    def cost(self, usage: Usage) -> float:
        """Return the USD cost of ``usage``, each kind of token at its own price.

        ``cached_tokens`` are part of ``input_tokens`` and ``reasoning_tokens`` part of
        ``output_tokens`` (see :class:`Usage`), so each token is priced exactly once.
        """
        # Counts come from pydantic-validated Usage (ints); clamp so inconsistent provider
        # reports (more cached than input) never produce a negative part.
        inp, out = usage.input_tokens, usage.output_tokens
        cached = usage.cached_tokens if usage.cached_tokens < inp else inp
        reasoning = usage.reasoning_tokens if usage.reasoning_tokens < out else out
        cached_price = self.input if self.cached_input is None else self.cached_input
        reasoning_price = self.output if self.reasoning is None else self.reasoning
        total = (
            (inp - cached) * self.input
            + cached * cached_price
            + (out - reasoning) * self.output
            + reasoning * reasoning_price
        )
        return total * _PER_TOKEN

    def to_dict(self) -> dict[str, float]:
        """Return the prices set, in the JSON file's shape."""
        out = {"input": self.input, "output": self.output}
        if self.cached_input is not None:
            out["cached_input"] = self.cached_input
        if self.reasoning is not None:
            out["reasoning"] = self.reasoning
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelPrice:
        """Build a price from ``{"input": ..., "output": ..., "cached_input": ...}``.

        Raises:
            ValueError: A missing or unknown key, or a price that is not a number >= 0.
        """
        unknown = set(data) - {"input", "output", "cached_input", "reasoning"}
        if unknown:
            raise ValueError(f"unknown price field(s): {', '.join(sorted(unknown))}")
        missing = {"input", "output"} - set(data)
        if missing:
            raise ValueError(f"missing price field(s): {', '.join(sorted(missing))}")
        return cls(
            input=data["input"],
            output=data["output"],
            cached_input=data.get("cached_input"),
            reasoning=data.get("reasoning"),
        )


#: Most distinct model names whose lookups are remembered (memory stays bounded).
_RESOLVED_MAX = 1024


class PriceTable:
    """Prices by model name, extendable by the user.

    Lookup takes the exact name first (case-insensitive), then the name without a snapshot
    suffix (``gpt-4o-mini-2024-07-18`` → ``gpt-4o-mini``, ``claude-sonnet-4-5-20250929`` →
    ``claude-sonnet-4-5``, ``gemini-2.0-flash-001`` → ``gemini-2.0-flash``). Nothing looser:
    a model the table does not name has no price.

    Args:
        prices: Initial prices by model name.
        taken: The date the prices were read from the providers' pages.
    """

    def __init__(
        self, prices: Mapping[str, ModelPrice] | None = None, *, taken: str | None = None
    ) -> None:
        self.taken = taken
        self._prices: dict[str, ModelPrice] = {}
        # Lookups as asked (any case, with snapshot suffixes), cleared on every change.
        self._resolved: dict[str, ModelPrice | None] = {}
        for model, price in (prices or {}).items():
            self._set(model, price)

    def __len__(self) -> int:
        return len(self._prices)

    def __contains__(self, model: object) -> bool:
        return isinstance(model, str) and self.price_for(model) is not None

    def __repr__(self) -> str:
        return f"PriceTable({len(self._prices)} models, taken={self.taken!r})"

    def _set(self, model: str, price: ModelPrice) -> None:
        key = model.strip().lower()
        if not key:
            raise ValueError("model name must not be empty")
        self._prices[key] = price
        self._resolved.clear()

    def register_price(
        self,
        model: str,
        *,
        input: float,
        output: float,
        cached_input: float | None = None,
        reasoning: float | None = None,
    ) -> None:
        """Add or replace a model's price (USD per million tokens).

        Raises:
            ValueError: An empty name, or a price that is not a finite number >= 0.
        """
        price = ModelPrice(
            input=input, output=output, cached_input=cached_input, reasoning=reasoning
        )
        self._set(model, price)

    def price_for(self, model: str) -> ModelPrice | None:
        """Return the price of ``model``, or ``None`` when the table does not name it."""
        try:
            return self._resolved[model]
        except KeyError:
            pass
        key = model.strip().lower()
        price = self._prices.get(key)
        if price is None:
            base = _SNAPSHOT_SUFFIX.sub("", key)
            if base != key:
                price = self._prices.get(base)
        if len(self._resolved) < _RESOLVED_MAX:
            self._resolved[model] = price
        return price

    def cost(self, model: str | None, usage: Usage | None) -> float | None:
        """Return the USD cost of ``usage`` on ``model``; ``None`` if either is unknown."""
        if model is None or usage is None:
            return None
        price = self.price_for(model)
        return None if price is None else price.cost(usage)

    def to_dict(self) -> dict[str, Any]:
        """Return the table in the JSON file's shape (``taken`` and ``models``)."""
        out: dict[str, Any] = {
            "models": {model: price.to_dict() for model, price in sorted(self._prices.items())}
        }
        if self.taken is not None:
            out["taken"] = self.taken
        return out

    def update_from_dict(self, data: Mapping[str, Any]) -> None:
        """Add or replace the prices under ``data["models"]``; ``taken`` replaces ours.

        Raises:
            ValueError: The mapping has no ``models`` object, or a price is invalid.
        """
        models = data.get("models")
        if not isinstance(models, Mapping):
            raise ValueError('a price table needs a "models" object of model → prices')
        parsed = {}
        for model, fields in models.items():
            if not isinstance(fields, Mapping):
                raise ValueError(f"prices of {model!r} must be an object")
            try:
                parsed[model] = ModelPrice.from_dict(fields)
            except ValueError as exc:
                raise ValueError(f"{model!r}: {exc}") from exc
        # Validate everything first so a bad file leaves the table unchanged.
        for model, price in parsed.items():
            self._set(model, price)
        if data.get("taken") is not None:
            self.taken = str(data["taken"])

    def load_json(self, path: str | PathLike[str]) -> None:
        """Add or replace prices from a JSON file shaped like the shipped ``prices.json``.

        Raises:
            OSError: The file cannot be read.
            ValueError: It is not JSON, or not a price table.
        """
        self.update_from_dict(_read_json(Path(path).read_text(encoding="utf-8")))

    @classmethod
    def from_json(cls, path: str | PathLike[str]) -> PriceTable:
        """Build a table from a JSON file shaped like the shipped ``prices.json``."""
        table = cls()
        table.load_json(path)
        return table


def default_prices() -> PriceTable:
    """Return a new table holding the shipped prices (yours to extend or override)."""
    taken, models = _shipped()
    return PriceTable(models, taken=taken)


@functools.cache
def _shipped() -> tuple[str | None, Mapping[str, ModelPrice]]:
    # Cache the parsed prices (immutable), never a table: every caller mutates its own copy.
    text = resources.files(__package__).joinpath("prices.json").read_text(encoding="utf-8")
    staging = PriceTable()
    staging.update_from_dict(_read_json(text))
    return staging.taken, MappingProxyType(staging._prices)


def _read_json(text: str) -> Mapping[str, Any]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"price table is not valid JSON: {exc}") from exc
    if not isinstance(data, Mapping):
        raise ValueError("a price table must be a JSON object")
    return data
