"""The error tree: one module holds every class, drawn whole in its docstring."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
from typing import Any

import pytest
from pydantic import SecretStr

import lionpride
from lionpride import errors
from lionpride.services import ServiceBackend, iModel
from lionpride.services.types import NormalizedResponse, ServiceConfig

#: The command line keeps its own usage errors: they never leave ``lionpride`` the program.
_NOT_LIBRARY = ("lionpride.cli", "lionpride.testing")


def library_modules() -> list[Any]:
    """Every module of the library (not the command line, not the test helpers)."""
    out = []
    for info in pkgutil.walk_packages(lionpride.__path__, "lionpride."):
        if not info.name.startswith(_NOT_LIBRARY):
            out.append(importlib.import_module(info.name))
    return out


def test_every_library_exception_class_is_in_errors_and_its_tree() -> None:
    """No module defines an exception class of its own; each class of ``lionpride.errors``
    is a LionprideError and is named in the tree of the module docstring."""
    defined_elsewhere = [
        f"{module.__name__}.{name}"
        for module in library_modules()
        for name, value in vars(module).items()
        if inspect.isclass(value)
        and issubclass(value, BaseException)
        and value.__module__ == module.__name__
        and module is not errors
    ]
    assert defined_elsewhere == []
    tree = errors.__doc__ or ""
    for name in errors.__all__:
        value = getattr(errors, name)
        if inspect.isclass(value):
            assert issubclass(value, errors.LionprideError), name
            assert re.search(rf"(── |^    ){name}\b", tree, re.M), name


@pytest.mark.parametrize(
    ("old_home", "name"),
    [
        ("lionpride.services.utilities.resilience", "CircuitBreakerOpenError"),
        ("lionpride.services.utilities.token_calculator", "TokenCalculationError"),
        ("lionpride.services.providers._cli_process", "CLIError"),
        ("lionpride.services.providers.claude_code", "ClaudeCodeError"),
        ("lionpride.services.providers.gemini_code", "GeminiCodeError"),
        ("lionpride.services.mcps", "MCPToolExistsError"),
        ("lionpride.services.mcps._pool", "MCPConnectionError"),
        ("lionpride.services.mcps._pool", "MCPToolError"),
    ],
)
def test_moved_errors_keep_their_old_import_paths(old_home: str, name: str) -> None:
    """A class moved into lionpride.errors is the same class under its old path."""
    assert getattr(importlib.import_module(old_home), name) is getattr(errors, name)


def test_a_saved_breaker_naming_the_old_path_still_loads() -> None:
    """A retry config saved with the breaker error's old dotted name restores."""
    from lionpride.services.utilities.resilience import RetryConfig

    old = "lionpride.services.utilities.resilience.CircuitBreakerOpenError"
    restored = RetryConfig.from_dict({"retry_on": [old]})
    assert restored.retry_on == (errors.CircuitBreakerOpenError,)


async def test_request_validation_raises_validation_error() -> None:
    """A misspelt parameter, and whatever ValueError a backend's own checks raise, reach
    the caller as lionpride.errors.ValidationError (still a ValueError)."""
    model = iModel(provider="openai", base_url="http://127.0.0.1:9", api_key=SecretStr("k"))
    with pytest.raises(errors.ValidationError, match="temprature"):
        await model.create_calling(model="gpt-4o-mini", messages=[], temprature=0.2)

    class Strict(ServiceBackend):
        def create_payload(self, request: dict[str, Any]) -> dict[str, Any]:
            raise ValueError(f"no field {next(iter(request))!r} here")

        async def call(self, request: dict[str, Any], **kwargs: Any) -> NormalizedResponse:
            raise AssertionError("never called")

    strict = iModel(backend=Strict(config=ServiceConfig(provider="local", name="strict")))
    with pytest.raises(errors.ValidationError, match="no field 'rows' here") as caught:
        await strict.invoke(rows=3)
    assert isinstance(caught.value, ValueError) and isinstance(caught.value.__cause__, ValueError)


def test_bad_model_configuration_raises_configuration_error() -> None:
    """A bad setup (no backend, stray arguments, an invalid config value) is a
    ConfigurationError naming the problem."""
    with pytest.raises(errors.ConfigurationError, match="backend or provider"):
        iModel()
    with pytest.raises(errors.ConfigurationError, match="timeout"):
        iModel(provider="openai", api_key=SecretStr("k"), timeout="soon")
