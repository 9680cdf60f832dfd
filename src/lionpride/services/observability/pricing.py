"""Model prices and the USD cost of a call.

The library ships a dated table (``prices.json``, USD per million tokens) for the current
OpenAI, Anthropic, Gemini and Groq models, with prompt-cache read and write prices and the
batch API's prices where the providers publish them. :func:`default_prices` returns a fresh, private
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

from lionpride import errors
from lionpride.services.types.response import Usage

__all__ = ["ModelPrice", "PriceTable", "default_prices"]

_PER_TOKEN = 1e-6  # prices are quoted per million tokens

# Suffixes that name a dated or pinned snapshot of the same model at the same price:
# OpenAI "-2024-07-18", Anthropic "-20250929", Gemini "-001", and the "-latest" aliases.
_SNAPSHOT_SUFFIX = re.compile(r"-(?:\d{4}-\d{2}-\d{2}|\d{8}|\d{3}|latest)$")


#: The optional prices of a :class:`ModelPrice`, in the JSON file's order.
_OPTIONAL = (
    "cached_input",
    "cache_write",
    "cache_write_1h",
    "reasoning",
    "batch_input",
    "batch_output",
)


@dataclass(frozen=True, slots=True)
class ModelPrice:
    """USD per million tokens for one model.

    Attributes:
        input: Input tokens neither read from nor written to the prompt cache.
        output: Output tokens (the visible part of the answer).
        cached_input: Input tokens read from the prompt cache; ``None`` = the input price.
        cache_write: Input tokens written to the prompt cache with the five-minute lifetime
            (Anthropic: 1.25 times input); ``None`` = the input price (OpenAI and Gemini charge
            no more for a write).
        cache_write_1h: Input tokens written with the one-hour lifetime (Anthropic: twice the
            input); ``None`` = the ``cache_write`` price.
        reasoning: Output tokens spent thinking; ``None`` = the output price.
        batch_input: Input through the provider's batch API; with ``batch_output``, the
            ratio by which :meth:`cost` scales every input-side (output-side) price when
            ``batch=True``; ``None`` = no batch price published.
        batch_output: Output through the provider's batch API.
    """

    input: float
    output: float
    cached_input: float | None = None
    reasoning: float | None = None
    cache_write: float | None = None
    cache_write_1h: float | None = None
    batch_input: float | None = None
    batch_output: float | None = None

    def __post_init__(self) -> None:
        for name in ("input", "output", *_OPTIONAL):
            value = getattr(self, name)
            if value is None and name in _OPTIONAL:
                continue
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not math.isfinite(value)
                or value < 0
            ):
                raise errors.ValidationError(
                    f"price {name!r} must be a finite number >= 0, got {value!r}"
                )
        if (self.batch_input is None) != (self.batch_output is None):
            raise errors.ValidationError(
                "batch_input and batch_output are given together or not at all"
            )

    def cost(self, usage: Usage, *, batch: bool = False) -> float:
        """Return the USD cost of ``usage``, each kind of token at its own price.

        ``cached_tokens`` and ``cache_write_tokens`` are part of ``input_tokens`` and
        ``reasoning_tokens`` part of ``output_tokens`` (see :class:`Usage`), so each token is
        priced exactly once. ``batch=True`` prices the call as the provider's batch API
        would: the batch discount applies to cache reads and writes alike.

        Raises:
            ValueError: ``batch=True`` for a model with no batch price.
        """
        # Counts are non-negative ints (``usage_of`` builds Usage only from such, or
        # validates); clamp so inconsistent provider reports (more cached than input) never
        # produce a negative part. Conditionals, not min(): this runs on every priced call.
        inp, out = usage.input_tokens, usage.output_tokens
        cached = usage.cached_tokens if usage.cached_tokens < inp else inp
        written = usage.cache_write_tokens
        if written > inp - cached:
            written = inp - cached
        written_1h = (
            usage.cache_write_1h_tokens if usage.cache_write_1h_tokens < written else written
        )
        reasoning = usage.reasoning_tokens if usage.reasoning_tokens < out else out
        cached_price = self.input if self.cached_input is None else self.cached_input
        write_price = self.input if self.cache_write is None else self.cache_write
        write_1h_price = write_price if self.cache_write_1h is None else self.cache_write_1h
        reasoning_price = self.output if self.reasoning is None else self.reasoning
        input_cost = (
            (inp - cached - written) * self.input
            + cached * cached_price
            + (written - written_1h) * write_price
            + written_1h * write_1h_price
        )
        output_cost = (out - reasoning) * self.output + reasoning * reasoning_price
        if batch:
            if self.batch_input is None or self.batch_output is None:
                raise errors.ValidationError("no batch price for this model")
            input_cost *= self.batch_input / self.input if self.input else 0.0
            output_cost *= self.batch_output / self.output if self.output else 0.0
        return (input_cost + output_cost) * _PER_TOKEN

    def to_dict(self) -> dict[str, float]:
        """Return the prices set, in the JSON file's shape."""
        out = {"input": self.input, "output": self.output}
        for name in _OPTIONAL:
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelPrice:
        """Build a price from ``{"input": ..., "output": ..., "cached_input": ...}``.

        Raises:
            ValueError: A missing or unknown key, or a price that is not a number >= 0.
        """
        unknown = set(data) - {"input", "output", *_OPTIONAL}
        if unknown:
            raise errors.ValidationError(f"unknown price field(s): {', '.join(sorted(unknown))}")
        missing = {"input", "output"} - set(data)
        if missing:
            raise errors.ValidationError(f"missing price field(s): {', '.join(sorted(missing))}")
        return cls(
            input=data["input"],
            output=data["output"],
            **{name: data.get(name) for name in _OPTIONAL},
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
            raise errors.ValidationError("model name must not be empty")
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
        cache_write: float | None = None,
        cache_write_1h: float | None = None,
        batch_input: float | None = None,
        batch_output: float | None = None,
    ) -> None:
        """Add or replace a model's price (USD per million tokens; see :class:`ModelPrice`).

        Raises:
            ValueError: An empty name, or a price that is not a finite number >= 0.
        """
        price = ModelPrice(
            input=input,
            output=output,
            cached_input=cached_input,
            reasoning=reasoning,
            cache_write=cache_write,
            cache_write_1h=cache_write_1h,
            batch_input=batch_input,
            batch_output=batch_output,
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

    def cost(self, model: str | None, usage: Usage | None, *, batch: bool = False) -> float | None:
        """Return the USD cost of ``usage`` on ``model``; ``None`` if either is unknown.

        ``batch=True`` asks what the same tokens cost through the provider's batch API
        (``None`` when the table has no batch price for the model).
        """
        if model is None or usage is None:
            return None
        price = self.price_for(model)
        if price is None or (batch and price.batch_input is None):
            return None
        return price.cost(usage, batch=batch)

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
            raise errors.ValidationError('a price table needs a "models" object of model → prices')
        parsed = {}
        for model, fields in models.items():
            if not isinstance(fields, Mapping):
                raise errors.ValidationError(f"prices of {model!r} must be an object")
            try:
                parsed[model] = ModelPrice.from_dict(fields)
            except ValueError as exc:
                raise errors.ValidationError(f"{model!r}: {exc}") from exc
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
        raise errors.ValidationError(f"price table is not valid JSON: {exc}") from exc
    if not isinstance(data, Mapping):
        raise errors.ValidationError("a price table must be a JSON object")
    return data
