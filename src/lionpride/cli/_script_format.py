"""The ``fake-provider --script`` file format, as ``lionpride fake-provider --help`` shows it.

Kept apart from the command itself so that building the parser (``lionpride --help``) loads
nothing but this text; :mod:`lionpride.testing._script_file` reads the files.
"""

from __future__ import annotations

__all__ = ["SCRIPT_FORMAT"]

#: The ``--script`` file format, shown by ``lionpride fake-provider --help``.
SCRIPT_FORMAT = """\
script file (--script FILE), served in order before the generated replies:
  {"replies": [
    {"status": 429, "headers": {"retry-after": "1"}},
    {"text": "Paris.", "delay": 0.5},
    {"tool_calls": [{"name": "get_weather", "arguments": {"city": "Paris"}}]},
    {"path": "/messages", "status": 529, "repeat": 2},
    {"chunks": ["data: {\\"n\\": 1}\\n\\n"], "stall_after": 1},
    {"wire": "recordings/openai_text.json"}
  ]}
reply fields:
  status, headers      HTTP status (default 200) and response headers
  body                 a JSON value sent as JSON, or a string sent verbatim
  text, tool_calls     the generated reply's text, and the tool calls it makes
  usage                provider-native usage numbers replacing the computed ones
  delay                seconds before the response (latency)
  chunks, chunk_delay  a streamed body, written piece by piece with this pause
  stall_after          send this many pieces, then stall with the connection open
  drop, truncate       close without answering; cut the body after N bytes
  wire                 replay a recorded exchange (path relative to the script file)
  path, repeat         only for request paths containing this text; serve N times
"""
