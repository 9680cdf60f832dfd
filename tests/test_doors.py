"""The doors: every name a door exports imports, and its ``__all__`` is sorted."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

#: The user's doors first, then the packages' own.
DOORS = [
    "lionpride.services",
    "lionpride.errors",
    "lionpride.testing",
    "lionpride.core",
    "lionpride.services.distributed",
    "lionpride.services.execution",
    "lionpride.services.mcps",
    "lionpride.services.observability",
    "lionpride.services.providers",
    "lionpride.services.streaming",
    "lionpride.services.types",
    "lionpride.services.utilities",
]


def _ruff_order(name: str) -> tuple[int, str]:
    """The order ruff's RUF022 keeps: constants, then classes, then everything else."""
    kind = 0 if name.isupper() else 1 if name[:1].isupper() else 2
    return kind, name


@pytest.mark.parametrize("door", DOORS)
def test_every_exported_name_imports_and_all_is_sorted(door: str) -> None:
    """Each name in a door's __all__ is importable from it, and __all__ is sorted."""
    module = importlib.import_module(door)
    names = list(module.__all__)
    assert names == sorted(names, key=_ruff_order)
    for name in names:
        assert getattr(module, name) is not None, name
    assert set(names) <= set(dir(module))


def test_the_services_door_exports_what_users_need() -> None:
    """The seed's names and the configuration values are one import away."""
    import lionpride.services as services

    needed = {
        "Calling",
        "CircuitBreaker",
        "Endpoint",
        "EndpointConfig",
        "HookPhase",
        "HookRegistry",
        "Limits",
        "RateLimitedExecutor",
        "RetryConfig",
        "ServiceBackend",
        "ServiceRegistry",
        "StreamChunk",
        "Tool",
        "iModel",
    }
    assert needed <= set(services.__all__)
    from lionpride.services.utilities.resilience import CircuitBreaker

    assert services.CircuitBreaker is CircuitBreaker


def test_importing_the_services_door_loads_no_provider() -> None:
    """``import lionpride.services`` stays cheap: neither aiohttp nor pydantic loads."""
    code = (
        "import sys, lionpride.services; "
        "print(sorted(m for m in ('aiohttp', 'pydantic') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
