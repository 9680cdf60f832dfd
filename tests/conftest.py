"""Shared fixtures: the recorded wire exchanges and a running FakeProvider."""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from lionpride.services.imodel import iModel
from lionpride.testing import FakeProvider

#: The recorded real exchanges: ``$LIONPRIDE_WIRE_DIR``, else ``../shared/wire`` beside the project.
WIRE_DIR = Path(
    os.environ.get("LIONPRIDE_WIRE_DIR")
    or Path(__file__).resolve().parents[1].parent / "shared" / "wire"
)


def wire_missing(directory: Path = WIRE_DIR) -> str:
    """Why the tests that replay recorded exchanges skip: what is missing and how to get it."""
    return (
        f"{directory} not found: the recorded real exchanges (wire/*.json) are not part of "
        "this repository; they live in the project's shared folder, which holds DESIGN.md "
        "and SPEC.md too. Put that folder beside the checkout as ../shared (so that "
        "../shared/wire exists), or set LIONPRIDE_WIRE_DIR to its wire directory"
    )


def wire_files(directory: Path = WIRE_DIR) -> list[Any]:
    """Every recorded exchange's path as a pytest param, or one skipped param saying why."""
    if not directory.is_dir():
        return [pytest.param(None, marks=pytest.mark.skip(reason=wire_missing(directory)))]
    return [pytest.param(path, id=path.stem) for path in sorted(directory.glob("*.json"))]


def wire_records(*kinds: str, directory: Path = WIRE_DIR) -> list[Any]:
    """Recorded exchanges whose kind starts with one of ``kinds`` (pytest params)."""
    if not directory.is_dir():
        return wire_files(directory)
    out = []
    for path in sorted(directory.glob("*.json")):
        record = json.loads(path.read_text())
        if record["kind"].startswith(kinds):
            out.append(pytest.param(record, id=path.stem))
    return out


@pytest.fixture
async def fake_provider() -> AsyncIterator[FakeProvider]:
    """A FakeProvider on a free loopback port."""
    async with FakeProvider() as fp:
        yield fp


def model_on(fp: FakeProvider, provider: str, **config: Any) -> iModel:
    """An iModel for ``provider`` pointed at ``fp`` with a test key (its warning silenced)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return iModel(
            provider=provider, base_url=fp.base_url(provider), api_key=SecretStr("k"), **config
        )
