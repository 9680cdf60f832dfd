"""Names of a package that load on first use (D9), for lionpride's package doors.

``lionpride.services`` and ``lionpride.services.types`` export names whose modules load
aiohttp and the providers; :func:`lazy_names` lets ``import lionpride.services`` stay cheap
and imports each name's module when the name is first read.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_names"]


def lazy_names(
    package: str, homes: Mapping[str, str], namespace: dict[str, Any]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The module ``__getattr__`` and ``__dir__`` of ``package``, whose public names live in
    other modules (``homes``: name → module) and are imported when first read.

    A name read once is stored in ``namespace`` (the package's globals), so later reads
    skip ``__getattr__``.
    """

    def __getattr__(name: str) -> Any:
        home = homes.get(name)
        if home is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(home), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted({*namespace, *homes})

    return __getattr__, __dir__
