"""The lionpride error tree.

Every failure the library raises is one of these. Transport and HTTP failures are translated
once, at the HTTP boundary, and chained to the original exception (``raise ... from exc``)::

    LionprideError
    ├── ValidationError          (also ValueError) bad input, never retried: a request
    │                            parameter, an argument, a value out of range
    ├── ConfigurationError       (also ValueError) bad setup: missing key, unknown provider,
    │   │                        limits out of range
    │   ├── TokenCalculationError    tiktoken or its encoding not available offline
    │   ├── ScriptError          a FakeProvider script that cannot be read or served
    │   └── UsageError           the ``lionpride`` command's flags or environment are wrong
    ├── ExistsError              duplicate registration
    │   └── MCPToolExistsError   (also ValueError) an MCP tool's registry name is taken
    ├── QueueFullError           executor queue at capacity (retryable)
    ├── ExecutionError           a call failed for another reason (retryable)
    │   ├── CLIError             an agent CLI failed without a result (not retryable)
    │   │   ├── ClaudeCodeError
    │   │   └── GeminiCodeError
    │   └── MCPToolError         an MCP tool reported an error (not retryable)
    ├── ConnectionError          (also builtins.ConnectionError) refused, reset, dropped
    │   ├── CircuitBreakerOpenError  the breaker is failing fast (``retry_after``)
    │   └── MCPConnectionError   an MCP server would not start or died
    ├── TimeoutError             (also builtins.TimeoutError) connect, idle or total deadline
    ├── WriteError               ``lionpride run`` could not write a result line
    └── APIError                 the provider answered, but not with a result
        ├── InvalidResponseError body empty, not JSON, or not the documented shape
        │   └── OutputValidationError  the answer does not fit the response_format model
        └── APIStatusError       any HTTP status >= 400 (408 and 409 retryable)
            ├── BadRequestError        400, 422
            ├── AuthenticationError    401
            ├── PermissionDeniedError  403
            ├── NotFoundError          404
            ├── RequestTooLargeError   413
            ├── RateLimitError         429 (retryable; ``retry_after`` when the server said;
            │                          not retryable when the body says a quota is spent
            │                          or the request can never fit)
            └── ServerError            5xx (retryable)
                └── OverloadedError    529 (retryable)

An error delivered inside an HTTP 200 stream (Groq's ``event: error``, OpenRouter's ``error`` field)
becomes the ``APIStatusError`` subclass of the status it carries.

Every class is defined here; the modules that raise some of them (``resilience``, the CLI
providers, ``mcps``, ``token_calculator``, ``lionpride.testing``) re-export them under their
old import paths.

HTTP errors carry ``status_code``, ``headers``, ``body`` and the provider's own message as
``str(e)``; none ever contains the API key. ``e.calling`` holds the failed ``Calling`` when the
error escapes ``iModel.invoke``.
"""

from __future__ import annotations

import builtins
from collections.abc import Mapping
from typing import Any, ClassVar

__all__ = [
    "APIError",
    "APIStatusError",
    "AuthenticationError",
    "BadRequestError",
    "CLIError",
    "CircuitBreakerOpenError",
    "ClaudeCodeError",
    "ConfigurationError",
    "ConnectionError",
    "ExecutionError",
    "ExistsError",
    "GeminiCodeError",
    "InvalidResponseError",
    "LionprideError",
    "MCPConnectionError",
    "MCPToolError",
    "MCPToolExistsError",
    "NotFoundError",
    "OutputValidationError",
    "OverloadedError",
    "PermissionDeniedError",
    "QueueFullError",
    "RateLimitError",
    "RequestTooLargeError",
    "ScriptError",
    "ServerError",
    "TimeoutError",
    "TokenCalculationError",
    "UsageError",
    "ValidationError",
    "WriteError",
    "error_for_status",
]


class LionprideError(Exception):
    """Base of every error the library raises.

    Args:
        message: Human-readable text; ``default_message`` when omitted.
        details: Extra structured context, kept JSON-safe by convention.
        retryable: Overrides the class's ``default_retryable``.
        cause: The underlying exception, also set as ``__cause__``.
    """

    default_message: ClassVar[str] = "lionpride error"
    default_retryable: ClassVar[bool] = False

    def __init__(
        self,
        message: str | None = None,
        *,
        details: Mapping[str, Any] | None = None,
        retryable: bool | None = None,
        cause: BaseException | None = None,
    ) -> None:
        self.message = message if message is not None else self.default_message
        self.details: dict[str, Any] = dict(details or {})
        self.retryable = self.default_retryable if retryable is None else retryable
        self.calling: Any = None
        super().__init__(self.message)
        if cause is not None:
            self.__cause__ = cause

    def __str__(self) -> str:
        return self.message

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-safe description: type name, message, retryable, details."""
        out: dict[str, Any] = {
            "error": type(self).__name__,
            "message": self.message,
            "retryable": self.retryable,
        }
        if self.details:
            out["details"] = self.details
        return out


class ValidationError(LionprideError, ValueError):
    """Input that can never succeed as given."""

    default_message = "validation failed"


class ConfigurationError(LionprideError, ValueError):
    """A model, endpoint or provider that is set up wrongly (missing key, unknown provider)."""

    default_message = "invalid configuration"


class TokenCalculationError(ConfigurationError):
    """tiktoken is missing, or the encoding is not available without a download."""

    default_message = "token calculator unavailable"


class ScriptError(ConfigurationError):
    """A script file cannot be read or says something the FakeProvider cannot do."""

    default_message = "invalid FakeProvider script"


class UsageError(ConfigurationError):
    """The ``lionpride`` command line or environment is wrong; the message says what to fix
    (the command prints it and exits with code 2)."""

    default_message = "invalid command line"


class ExistsError(LionprideError):
    """Something with that name already exists."""

    default_message = "already exists"


class MCPToolExistsError(ExistsError, ValueError):
    """An MCP tool's registry name is taken (pass ``update=True`` to replace it)."""

    default_message = "MCP tool name already registered"


class QueueFullError(LionprideError):
    """The executor's queue is at capacity; try again later."""

    default_message = "queue is full"
    default_retryable = True


class ExecutionError(LionprideError):
    """A call failed for a reason that is not a transport or HTTP error."""

    default_message = "execution failed"
    default_retryable = True


class CLIError(ExecutionError):
    """An agent CLI failed without reporting a result: non-zero exit or unreadable output.

    Not retryable by default, since a run may have changed files before it failed.

    Attributes:
        returncode: The exit status, when the process ended.
        stderr: The last part of what the CLI wrote to stderr.
    """

    default_message = "agent CLI failed"
    default_retryable = False

    def __init__(self, message: str, *, returncode: int | None = None, stderr: str = "") -> None:
        self.returncode = returncode
        self.stderr = stderr
        super().__init__(message, details={"returncode": returncode} if returncode else None)


class ClaudeCodeError(CLIError):
    """The Claude Code CLI failed without reporting a result: non-zero exit or unreadable
    output (``returncode``, ``stderr`` as for :class:`CLIError`)."""

    default_message = "Claude Code CLI failed"


class GeminiCodeError(CLIError):
    """The Gemini CLI failed without reporting a result: non-zero exit or unreadable output
    (``returncode``, ``stderr`` as for :class:`CLIError`)."""

    default_message = "Gemini CLI failed"


class MCPToolError(ExecutionError):
    """An MCP tool reported an error; ``str(e)`` is the server's own message.

    Attributes:
        server: The server's name (``None`` for an unnamed inline config).
        tool: The remote tool's name.
    """

    default_message = "MCP tool failed"
    default_retryable = False

    def __init__(self, message: str, *, server: str | None, tool: str) -> None:
        self.server = server
        self.tool = tool
        super().__init__(message, details={"server": server, "tool": tool})


class ConnectionError(LionprideError, builtins.ConnectionError):
    """The connection was refused, reset or dropped before a full answer arrived."""

    default_message = "connection failed"
    default_retryable = True


class CircuitBreakerOpenError(ConnectionError):
    """The breaker refused the call without running it.

    Args:
        message: Human-readable text; ``default_message`` when omitted.
        retry_after: Seconds until the breaker may admit a call again, when known.
        details: Extra structured context; ``retry_after`` is added to it.
    """

    default_message = "Circuit breaker is open"

    def __init__(
        self,
        message: str | None = None,
        *,
        retry_after: float | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        merged = dict(details or {})
        if retry_after is not None:
            merged["retry_after"] = retry_after
        super().__init__(message, details=merged, retryable=True)
        self.retry_after = retry_after

    @property
    def state(self) -> str | None:
        """``"open"`` (failing fast until ``retry_after``), ``"half_open"`` (every probe
        slot busy), or ``None`` when the raiser did not say."""
        state = self.details.get("state")
        return state if isinstance(state, str) else None


class MCPConnectionError(ConnectionError):
    """An MCP server would not start, refused the connection, or died during a call."""

    default_message = "MCP server connection failed"


class TimeoutError(LionprideError, builtins.TimeoutError):
    """A connect, read, idle or total deadline passed."""

    default_message = "timed out"
    default_retryable = True


class WriteError(LionprideError):
    """A result line could not be written; the message names the file and the reason."""

    default_message = "cannot write the result"


class APIError(LionprideError):
    """The provider answered, but not with a usable result.

    Attributes:
        status_code: The HTTP status (200 for errors found inside a 200 body or stream).
        headers: Response headers (lower-cased names).
        body: The decoded error body (dict) or its raw text.
        provider: The provider's name, when known.
        retry_after: Seconds the server asked us to wait, when it said.
        request_id: The provider's id of the request (``x-request-id``, Anthropic's
            ``request-id``), to quote to its support; ``None`` when it sent none.
    """

    default_message = "API error"

    def __init__(
        self,
        message: str | None = None,
        *,
        status_code: int | None = None,
        headers: Mapping[str, str] | None = None,
        body: Any = None,
        provider: str | None = None,
        retry_after: float | None = None,
        details: Mapping[str, Any] | None = None,
        retryable: bool | None = None,
        cause: BaseException | None = None,
    ) -> None:
        self.status_code = status_code
        self.headers: dict[str, str] = dict(headers or {})
        self.body = body
        self.provider = provider
        self.retry_after = retry_after
        merged = dict(details or {})
        if status_code is not None:
            merged.setdefault("status_code", status_code)
        if retry_after is not None:
            merged.setdefault("retry_after", retry_after)
        super().__init__(message, details=merged, retryable=retryable, cause=cause)

    @property
    def request_id(self) -> str | None:
        """The provider's id of the request, from the response headers."""
        headers = self.headers
        return headers.get("x-request-id") or headers.get("request-id")


class InvalidResponseError(APIError):
    """The body was empty, not JSON, or not the shape the provider documents."""

    default_message = "invalid response body"


class OutputValidationError(InvalidResponseError):
    """The answer is not valid for the pydantic model given as ``response_format``.

    Attributes:
        text: The answer's text, as the model wrote it.
        validation_message: What pydantic found wrong with it.
    """

    default_message = "the answer does not fit the response_format model"

    def __init__(
        self,
        message: str | None = None,
        *,
        text: str = "",
        validation_message: str = "",
        **kwargs: Any,
    ) -> None:
        super().__init__(message, **kwargs)
        self.text = text
        self.validation_message = validation_message


class APIStatusError(APIError):
    """The provider answered with an HTTP error status."""

    default_message = "HTTP error status"


class BadRequestError(APIStatusError):
    """400 or 422: the request is malformed; fix it before trying again."""

    default_message = "bad request"


class AuthenticationError(APIStatusError):
    """401: the API key is missing, wrong or revoked."""

    default_message = "authentication failed"


class PermissionDeniedError(APIStatusError):
    """403: the key may not use this resource."""

    default_message = "permission denied"


class NotFoundError(APIStatusError):
    """404: no such model or path."""

    default_message = "not found"


class RequestTooLargeError(APIStatusError):
    """413: the request body is larger than the provider accepts."""

    default_message = "request too large"


class RateLimitError(APIStatusError):
    """429: slow down; ``retry_after`` says for how long when the server told us.

    ``retryable`` is false for a 429 that no wait cures: a spent billing quota, a per-day
    quota, or a single request larger than the per-minute limit.
    """

    default_message = "rate limited"
    default_retryable = True


class ServerError(APIStatusError):
    """5xx: the provider failed; usually transient."""

    default_message = "server error"
    default_retryable = True


class OverloadedError(ServerError):
    """529: the provider is overloaded for everyone (Anthropic)."""

    default_message = "provider overloaded"


_BY_STATUS: dict[int, type[APIStatusError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    413: RequestTooLargeError,
    422: BadRequestError,
    429: RateLimitError,
    529: OverloadedError,
}

#: Statuses retried although they are not 429 or 5xx (as the official SDKs do).
_RETRYABLE_OTHER = frozenset({408, 409})


def error_for_status(
    status_code: int,
    message: str,
    *,
    headers: Mapping[str, str] | None = None,
    body: Any = None,
    provider: str | None = None,
    retry_after: float | None = None,
    retryable: bool | None = None,
) -> APIStatusError:
    """Build the typed error for an HTTP error status.

    Args:
        status_code: The HTTP status (>= 400).
        message: The provider's own error message.
        headers: Response headers.
        body: Decoded error body.
        provider: Provider name for context.
        retry_after: Seconds to wait, parsed from headers or body.
        retryable: Overrides the status default (e.g. ``x-should-retry``).
    """
    cls = _BY_STATUS.get(status_code)
    if cls is None:
        cls = ServerError if status_code >= 500 else APIStatusError
    if retryable is None and cls is APIStatusError:
        retryable = status_code in _RETRYABLE_OTHER
    return cls(
        message,
        status_code=status_code,
        headers=headers,
        body=body,
        provider=provider,
        retry_after=retry_after,
        retryable=retryable,
    )
