"""Tool: a Python function as a backend, with a JSON schema for LLM tool definitions.

A :class:`Tool` wraps one callable. Its parameter schema comes, in order of priority, from the
``request_options`` pydantic model, from an explicit ``tool_schema``, or from the function's
signature and Google-style docstring. Arguments are validated against it before the function
runs, so a bad argument fails in ``iModel.create_calling`` with a ``ValueError`` naming it.

Tools cannot be serialized: a function is code, not configuration (seed Pitfall 1). The schema
helpers (docstring parsing, type to JSON schema, argument checks, rendering, the Gemini dialect)
live in the private module ``_tool_schema``.
"""

from __future__ import annotations

import asyncio
import copy
import inspect
import json
from collections import abc
from typing import Any, Literal, Unpack

import pydantic
from pydantic import ConfigDict, Field, PrivateAttr, model_validator

from lionpride import errors
from lionpride.core.element import Element
from lionpride.services.types._tool_schema import (
    _explain,
    _gemini_schema,
    _JSONSchema,
    _parse_docstring,
    _quoted,
    _signature_schema,
    _ts_type,
    _type_problem,
    _unwrap_definition,
)
from lionpride.services.types.backend import (
    Calling,
    CallOptions,
    NormalizedResponse,
    ServiceBackend,
    ServiceConfig,
)

__all__ = ["Tool", "ToolCalling", "ToolConfig"]

_SERIALIZE_MESSAGE = (
    "Tool backends cannot be serialized: a Python function is code, not configuration. "
    "Rebuild the Tool from its function at start-up (Endpoint backends serialize)."
)


class ToolConfig(ServiceConfig):
    """Configuration of a :class:`Tool`; ``provider`` defaults to ``"tool"``."""

    provider: str = Field(default="tool", min_length=1, max_length=50)


class Tool(ServiceBackend):
    """A Python function (sync or async) behind the backend contract.

    Coroutine functions are awaited on the event loop; plain functions run in a worker
    thread (``asyncio.to_thread``) so they never block it. A timeout (the call's, else
    ``config.timeout``) cannot stop a thread: a sync tool that times out keeps running in its
    thread until the function returns, and its result is discarded. Exceptions raised by the
    function propagate unchanged and are recorded on the Calling.

    Args:
        func_callable: The function; it must be callable and have a ``__name__``.
        config: ``None`` (name = the function's ``__name__``), a dict (``name`` and
            ``provider`` filled in when absent) or a :class:`ToolConfig`. Its
            ``request_options`` model, when set, defines and validates the arguments.
        tool_schema: A JSON-schema object for the parameters, used when there is no
            ``request_options``; OpenAI (``{"type": "function", "function": {...}}``) and
            Anthropic (``input_schema``) tool definitions are unwrapped.

    Raises:
        ValueError: ``func_callable`` is not a named callable, or the config is invalid.
    """

    model_config = ConfigDict(extra="forbid")

    config: ToolConfig = Field(frozen=True)
    func_callable: abc.Callable[..., Any] = Field(frozen=True, exclude=True)
    tool_schema: dict[str, Any] | None = Field(default=None, frozen=True)

    _schema: _JSONSchema = PrivateAttr(default_factory=dict)
    _description: str = PrivateAttr(default="")
    _params: frozenset[str] | None = PrivateAttr(default=None)  # None: takes **kwargs
    _open: bool = PrivateAttr(default=False)  # arguments beyond the schema are allowed
    _is_async: bool = PrivateAttr(default=False)
    _positional: tuple[str, ...] = PrivateAttr(default=())  # positional-only parameters

    @model_validator(mode="before")
    @classmethod
    def _fill_config(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        func = data.get("func_callable")
        if not callable(func) or not isinstance(getattr(func, "__name__", None), str):
            raise errors.ValidationError(
                f"func_callable must be a callable with a __name__, got {func!r} "
                f"({type(func).__name__})"
            )
        config = data.get("config")
        if config is None:
            config = ToolConfig(name=func.__name__)
        elif isinstance(config, dict):
            config = {**config}
            config["name"] = config.get("name") or func.__name__
            config["provider"] = config.get("provider") or "tool"
        elif isinstance(config, ServiceConfig) and not isinstance(config, ToolConfig):
            config = ToolConfig(**{k: getattr(config, k) for k in ServiceConfig.model_fields})
        elif not isinstance(config, ToolConfig):
            raise errors.ValidationError(
                f"config must be None, a dict or a ToolConfig, got {type(config).__name__}"
            )
        return {**data, "config": config}

    def model_post_init(self, context: Any, /) -> None:
        """Build the schema once; config, function and schema are frozen afterwards."""
        func = self.func_callable
        self._is_async = inspect.iscoroutinefunction(func) or inspect.iscoroutinefunction(
            type(func).__call__
        )
        summary, arg_docs = _parse_docstring(inspect.getdoc(func) or "")
        sig = _signature_schema(func, arg_docs)
        self._params = None if sig.var_keyword else sig.names
        self._positional = sig.positional_only
        options = self.config.request_options
        explicit = _unwrap_definition(self.tool_schema) if self.tool_schema is not None else None
        if options is not None:
            schema = options.model_json_schema()
            self._open = options.model_config.get("extra") == "allow"
        elif explicit is not None:
            schema = explicit[0]
            summary = explicit[1] or summary
            self._open = bool(schema.get("additionalProperties"))
        else:
            schema = sig.schema
            self._open = sig.var_keyword
        self._schema = schema
        self._description = summary or str(schema.get("description") or "")

    # -- identity and definitions --------------------------------------------------------

    @property
    def event_type(self) -> type[Calling]:
        """Tools run as :class:`ToolCalling`."""
        return ToolCalling

    @property
    def function_name(self) -> str:
        """The wrapped function's ``__name__``."""
        return str(self.func_callable.__name__)

    @property
    def description(self) -> str:
        """What the tool does: the docstring's first paragraph (or the schema's)."""
        return self._description

    @property
    def schema(self) -> _JSONSchema:  # type: ignore[override]  # BaseModel.schema is deprecated
        """The JSON schema of the parameters (a copy)."""
        return copy.deepcopy(self._schema)

    @property
    def required_fields(self) -> frozenset[str]:
        """Names of the arguments that must be given."""
        return frozenset(self._schema.get("required") or ())

    @property
    def rendered(self) -> str:
        """The signature as short TypeScript-like text, for prompts."""
        props: dict[str, _JSONSchema] = self._schema.get("properties") or {}
        lines = [f"// {self._description}"] if self._description else []
        if not props:
            return "\n".join([*lines, f"{self.name}()"])
        lines.append(f"{self.name}(")
        required = self.required_fields
        for key, prop in props.items():
            text = f"  {key}{'' if key in required else '?'}: {_ts_type(prop)}"
            if "default" in prop:
                text += f" = {json.dumps(prop['default'])}"
            text += ","
            if prop.get("description"):
                text += f" // {prop['description']}"
            lines.append(text)
        lines.append(")")
        return "\n".join(lines)

    def to_openai(self) -> dict[str, Any]:
        """The tool as an OpenAI Chat Completions ``tools`` entry."""
        function: dict[str, Any] = {"name": self.name}
        if self._description:
            function["description"] = self._description
        function["parameters"] = self.schema
        return {"type": "function", "function": function}

    def to_anthropic(self) -> dict[str, Any]:
        """The tool as an Anthropic Messages ``tools`` entry."""
        out: dict[str, Any] = {"name": self.name}
        if self._description:
            out["description"] = self._description
        out["input_schema"] = self.schema
        return out

    def to_gemini(self) -> dict[str, Any]:
        """The tool as one Gemini ``functionDeclaration``.

        Gemini's schema dialect has no ``$ref``, ``additionalProperties``, ``title`` or
        ``default``: references are inlined, unions with ``null`` become ``nullable``, and
        unsupported keys are dropped. A tool without parameters has no ``parameters`` key,
        because Gemini rejects an object schema with no properties.
        """
        out: dict[str, Any] = {"name": self.name}
        if self._description:
            out["description"] = self._description
        if self._schema.get("properties"):
            out["parameters"] = _gemini_schema(self._schema, self._schema.get("$defs") or {}, 0)
        return out

    # -- calls ---------------------------------------------------------------------------

    def create_payload(self, request: dict[str, Any]) -> dict[str, Any]:
        """Validate the arguments and return the ones to pass to the function.

        With ``request_options`` the model validates (defaults and coercion apply);
        otherwise required arguments, unknown names and JSON types are checked against the
        schema. Only names the function accepts are passed on.

        Raises:
            ValueError: A missing, unknown or invalid argument (named in the message).
        """
        args = dict(request)
        self._reject_unknown(args)
        options = self.config.request_options
        if options is not None:
            try:
                args = options.model_validate(args).model_dump()
            except pydantic.ValidationError as exc:
                raise errors.ValidationError(f"{self.name}: {_explain(exc)}", cause=exc) from exc
        else:
            missing = [k for k in self._schema.get("required") or () if k not in args]
            if missing:
                raise errors.ValidationError(
                    f"{self.name}: missing required argument(s) {_quoted(missing)}"
                )
            props = self._schema.get("properties") or {}
            for key, value in args.items():
                problem = _type_problem(value, props.get(key, {}), self._schema, 0)
                if problem is not None:
                    raise errors.ValidationError(
                        f"{self.name}: invalid argument {key!r}: {problem}"
                    )
        if self._params is not None:
            args = {k: v for k, v in args.items() if k in self._params}
        return args

    def _reject_unknown(self, args: dict[str, Any]) -> None:
        if self._open:
            return
        valid = set(self._schema.get("properties") or ())
        options = self.config.request_options
        if options is not None:
            valid.update(options.model_fields)
        unknown = [k for k in args if k not in valid]
        if unknown:
            raise errors.ValidationError(
                f"{self.name}: unknown argument(s) {_quoted(unknown)}; "
                f"valid: {', '.join(sorted(valid)) or '(none)'}"
            )

    async def call(
        self, request: dict[str, Any], **options: Unpack[CallOptions]
    ) -> NormalizedResponse:
        """Run the function once with ``request`` as keyword arguments.

        Raises:
            lionpride.errors.TimeoutError: The function did not finish within ``timeout``
                (else ``config.timeout``) seconds; a sync function keeps running in its thread.
            Exception: Whatever the function raised, unchanged.
        """
        args = dict(request)
        timeout = options.get("timeout")
        limit = timeout if timeout is not None else self.config.timeout
        try:
            async with asyncio.timeout(limit) as scope:
                result = await self._run(args)
        except TimeoutError as exc:
            if not scope.expired():
                raise  # the function's own TimeoutError, unchanged
            raise errors.TimeoutError(
                f"tool {self.name!r} did not finish within {limit}s", cause=exc
            ) from exc
        return NormalizedResponse(
            status="success", data=result, raw_response={"result": result, "arguments": args}
        )

    async def _run(self, args: dict[str, Any]) -> Any:
        kwargs = dict(args)
        positional = [kwargs.pop(name) for name in self._positional if name in kwargs]
        if self._is_async:
            return await self.func_callable(*positional, **kwargs)
        result = await asyncio.to_thread(self.func_callable, *positional, **kwargs)
        # A plain function may hand back an awaitable (a lambda around a coroutine function).
        if inspect.isawaitable(result):
            result = await result
        return result

    # -- serialization -------------------------------------------------------------------

    def to_dict(
        self, mode: Literal["python", "json", "db"] = "python", **dump_kw: Any
    ) -> dict[str, Any]:
        """Always raises: a function cannot be stored as configuration.

        Raises:
            NotImplementedError: Always.
        """
        raise NotImplementedError(_SERIALIZE_MESSAGE)

    @classmethod
    def from_dict(cls, data: dict[str, Any], **kw: Any) -> Element:
        """Always raises: a function cannot be restored from configuration.

        Raises:
            NotImplementedError: Always.
        """
        raise NotImplementedError(_SERIALIZE_MESSAGE)


class ToolCalling(Calling):
    """One call of a :class:`Tool`; ``payload`` holds the validated arguments."""

    backend: Tool = Field(exclude=True)
