"""An Element restored in a process that has not defined its class says what to do."""

from __future__ import annotations

import json
import os
import subprocess
import sys

_SCRIPT = """
import json, sys
from lionpride.services.types.endpoint import Endpoint
saved = json.loads(sys.argv[1])
try:
    Endpoint.from_dict(saved)
except ValueError as exc:
    print("refused:", exc)
import lionpride.services.providers  # noqa: F401  (defines the built-in endpoints)
print("loaded:", type(Endpoint.from_dict(saved)).__name__)
"""


def test_unknown_class_names_the_import_that_defines_it() -> None:
    """A saved endpoint restored before its provider module is imported is refused with the
    hint to import it; once imported, the same dict loads."""
    from lionpride.services.providers.anthropic_messages import AnthropicMessagesEndpoint

    saved = AnthropicMessagesEndpoint(api_key="sk-test").to_dict(mode="json")
    out = subprocess.run(
        [sys.executable, "-c", _SCRIPT, json.dumps(saved)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        env={**os.environ, "ANTHROPIC_API_KEY": "sk-test"},  # keys come from the environment
    ).stdout
    assert "refused: unknown lion_class" in out
    assert "import its module first" in out
    assert "loaded: AnthropicMessagesEndpoint" in out
