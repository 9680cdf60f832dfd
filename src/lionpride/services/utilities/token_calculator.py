"""TokenCalculator: exact text token counts with tiktoken, when it can work offline.

``pip install 'lionpride[tokens]'`` installs tiktoken, but its encodings are data files that
tiktoken downloads on first use. This library never triggers that download (a call must not
wait on a network fetch, and machines without internet would stall): the calculator is used
only when the encoding's file is already in tiktoken's cache (``TIKTOKEN_CACHE_DIR``,
``DATA_GYM_CACHE_DIR``, or the temp dir's ``data-gym-cache``), for example after
``python -c "import tiktoken; tiktoken.get_encoding('o200k_base')"`` on a connected machine.
Otherwise estimates fall back to the character heuristic of
:mod:`lionpride.services.utilities.tokens`.
"""

from __future__ import annotations

import functools
import hashlib
import os
import tempfile
from typing import Any

from lionpride import errors
from lionpride.errors import TokenCalculationError

__all__ = ["ENCODING_URLS", "TokenCalculationError", "TokenCalculator"]

#: Where tiktoken fetches each encoding from; its cache is keyed by the URL's SHA-1.
ENCODING_URLS: dict[str, str] = {
    "o200k_base": "https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken",
    "cl100k_base": "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken",
}


class TokenCalculator:
    """Counts text tokens with a tiktoken encoding.

    Args:
        encoding: A ready ``tiktoken.Encoding`` (anything with ``encode(text)``).

    Example:
        >>> calc = TokenCalculator.offline()  # None unless tiktoken and its cache are there
    """

    __slots__ = ("encoding",)

    def __init__(self, encoding: Any) -> None:
        if not callable(getattr(encoding, "encode", None)):
            raise errors.ValidationError(
                f"encoding must have an encode(text) method, got {encoding!r}"
            )
        self.encoding = encoding

    def count_text(self, text: str) -> int:
        """Tokens in ``text`` (special-token markers counted as plain text)."""
        return len(self.encoding.encode(text, disallowed_special=()))

    @classmethod
    def load(cls, encoding_name: str = "o200k_base") -> TokenCalculator:
        """The calculator for ``encoding_name``, from tiktoken's cache only.

        Raises:
            TokenCalculationError: tiktoken is not installed, the encoding is unknown, or its
                file is not cached (nothing is downloaded).
        """
        return _load(encoding_name)

    @classmethod
    def offline(cls, encoding_name: str = "o200k_base") -> TokenCalculator | None:
        """Like :meth:`load`, but ``None`` instead of an error."""
        try:
            return _load(encoding_name)
        except TokenCalculationError:
            return None


def cache_path(encoding_name: str) -> str | None:
    """Where tiktoken keeps ``encoding_name``'s file, or ``None`` when caching is off."""
    url = ENCODING_URLS.get(encoding_name)
    if url is None:
        raise TokenCalculationError(
            f"unknown encoding {encoding_name!r}; known: {', '.join(sorted(ENCODING_URLS))}"
        )
    cache_dir = os.environ.get(
        "TIKTOKEN_CACHE_DIR",
        os.environ.get("DATA_GYM_CACHE_DIR", os.path.join(tempfile.gettempdir(), "data-gym-cache")),
    )
    if cache_dir == "":
        return None
    return os.path.join(cache_dir, hashlib.sha1(url.encode()).hexdigest())


# Loading an encoding parses a multi-megabyte file: once per process and name is enough.
@functools.lru_cache(maxsize=4)
def _load(encoding_name: str) -> TokenCalculator:
    path = cache_path(encoding_name)
    if path is None or not os.path.exists(path):
        raise TokenCalculationError(
            f"tiktoken encoding {encoding_name!r} is not cached at {path}; it is never "
            "downloaded by lionpride"
        )
    try:
        import tiktoken
    except ImportError as exc:
        raise TokenCalculationError(
            "tiktoken is not installed: pip install 'lionpride[tokens]'"
        ) from exc
    try:
        return TokenCalculator(tiktoken.get_encoding(encoding_name))
    except Exception as exc:  # a corrupt cache file: fall back rather than fail calls
        raise TokenCalculationError(f"cannot load {encoding_name!r}: {exc}") from exc
