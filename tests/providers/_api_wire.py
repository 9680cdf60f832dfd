"""The recorded exchanges of ``wire/api/`` (Responses, embeddings, token counting), and models
pointed at a FakeProvider."""

from __future__ import annotations

import json
import warnings
from typing import Any

import pytest
from pydantic import SecretStr
from tests.conftest import WIRE_DIR, wire_missing

from lionpride.services import iModel
from lionpride.testing import FakeProvider

API_DIR = WIRE_DIR / "api"


def api_records(provider: str, *kinds: str) -> list[Any]:
    """Recordings of ``provider`` whose kind starts with one of ``kinds`` (pytest params)."""
    if not API_DIR.is_dir():
        return [pytest.param(None, marks=pytest.mark.skip(reason=wire_missing(API_DIR)))]
    out = []
    for path in sorted(API_DIR.glob("*.json")):
        record = json.loads(path.read_text())
        if record["provider"] == provider and record["kind"].startswith(kinds):
            out.append(pytest.param(record, id=path.stem))
    return out


def fake_model(fp: FakeProvider, provider: str, endpoint: str, **kwargs: Any) -> iModel:
    """``provider``'s model for ``endpoint`` on the FakeProvider; retries off unless given."""
    kwargs.setdefault("retry_config", None)
    with warnings.catch_warnings():
        # Names that are not built in are taken as OpenAI-compatible, with a warning.
        warnings.simplefilter("ignore", UserWarning)
        return iModel(
            provider=provider,
            endpoint=endpoint,
            base_url=fp.base_url(provider),
            api_key=SecretStr("k"),
            **kwargs,
        )
