"""JSON on the wire: compact UTF-8 request bodies and response bodies decoded UTF-8 first.

Both run once per call, so both skip work the general ``json`` functions do each time.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from json import encoder as json_encoder
from typing import Any

__all__ = ["json_dumps", "json_loads"]


def _not_json(obj: Any) -> Any:
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")


# The encoder is built once: ``json.dumps`` with arguments builds a new one per call, which
# costs more than encoding a typical request body.
_make_encoder: Any = getattr(json_encoder, "c_make_encoder", None)
_encode_chunks: Callable[[Any, int], Any] | None = None
if _make_encoder is not None:
    _encode_chunks = _make_encoder(
        None, _not_json, json_encoder.encode_basestring, None, ":", ",", False, False, True
    )
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


def json_dumps(obj: Any) -> bytes:
    """``obj`` as compact UTF-8 JSON (non-ASCII text kept as is, not escaped).

    Raises:
        TypeError: Something in ``obj`` is not JSON serializable.
    """
    if _encode_chunks is not None:
        return "".join(_encode_chunks(obj, 0)).encode()
    return _ENCODER.encode(obj).encode()


def json_loads(data: bytes) -> Any:
    """Decode a JSON body.

    JSON between systems is UTF-8 (RFC 8259): decoding it as such first skips the encoding
    sniffing of ``json.loads(bytes)``, which still gets a BOM or UTF-16 when that fails.

    Raises:
        ValueError: Not JSON.
    """
    try:
        return json.loads(data.decode())
    except ValueError:
        return json.loads(data)
