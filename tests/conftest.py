"""Shared fixtures: the recorded wire exchanges and a running FakeProvider."""

from __future__ import annotations

import json
import warnings
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from lionpride.services.imodel import iModel
from lionpride.testing import FakeProvider

WIRE_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "wire"


def wire_records(*kinds: str) -> list[Any]:
    """Recorded exchanges whose kind starts with one of ``kinds`` (pytest params)."""
    if not WIRE_DIR.is_dir():
        return [pytest.param(None, marks=pytest.mark.skip(reason=f"{WIRE_DIR} is missing"))]
    out = []
    for path in sorted(WIRE_DIR.glob("*.json")):
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
