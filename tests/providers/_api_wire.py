"""The recorded exchanges of ``wire/api/`` (Responses, embeddings, token counting)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from tests.conftest import WIRE_DIR

API_DIR = WIRE_DIR / "api"


def api_records(provider: str, *kinds: str) -> list[Any]:
    """Recordings of ``provider`` whose kind starts with one of ``kinds`` (pytest params)."""
    if not API_DIR.is_dir():
        return [pytest.param(None, marks=pytest.mark.skip(reason=f"{API_DIR} is missing"))]
    out = []
    for path in sorted(API_DIR.glob("*.json")):
        record = json.loads(path.read_text())
        if record["provider"] == provider and record["kind"].startswith(kinds):
            out.append(pytest.param(record, id=path.stem))
    return out
