"""Request schemas: ``RequestSchema``, the base a saved backend's schema is found by, and
``RequestModel``, the base of the HTTP providers' flat schemas.

A backend is saved with its request schema's name (``module.Class``) and loaded with the
schema of that name among the defined subclasses of :class:`RequestSchema`: the subclasses are
the registry, so a saved config can name no other class.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict
from pydantic_core import PydanticUndefined

from lionpride import errors

__all__ = ["RequestModel", "RequestSchema", "request_schema", "request_schema_name"]


class RequestSchema(BaseModel):
    """Base of every request schema a backend can be saved with (found again by name)."""


def request_schema_name(schema: type[BaseModel] | None) -> str | None:
    """The name a request schema is saved as (``module.Class``), or ``None``.

    Raises:
        NotImplementedError: A schema that is not a :class:`RequestSchema` (it could not be
            found again on load).
    """
    if schema is None:
        return None
    name = _name(schema)
    if _schemas().get(name) is not schema:
        raise NotImplementedError(
            f"request_options {name} is not a RequestSchema subclass and cannot be "
            "serialized; subclass lionpride.services.types.request.RequestModel"
        )
    return name


def request_schema(name: object) -> type[RequestSchema]:
    """The defined request schema saved as ``name``.

    Raises:
        ValueError: No defined :class:`RequestSchema` has that name.
    """
    schema = _schemas().get(name) if isinstance(name, str) else None
    if schema is None:
        raise errors.ValidationError(
            f"unknown request_options {name!r} (not a defined request schema)"
        )
    return schema


def _name(schema: type[BaseModel]) -> str:
    return f"{schema.__module__}.{schema.__qualname__}"


def _schemas() -> dict[str, type[RequestSchema]]:
    """Every defined request schema by name."""
    out: dict[str, type[RequestSchema]] = {}
    todo: list[type[RequestSchema]] = [RequestSchema]
    while todo:
        klass = todo.pop()
        out[_name(klass)] = klass
        todo.extend(klass.__subclasses__())
    return out


class RequestModel(RequestSchema):
    """Base of the provider request schemas: unknown keys are an error, not silently dropped.

    ``extra_body`` (where a schema declares it) is merged into the sent JSON for
    server-specific parameters (vLLM's ``top_k``, ...) that the schema does not know. Fields
    hold plain JSON values (no nested models), so :meth:`to_payload` can read them directly.
    """

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    #: Non-``None`` defaults, sent even when the caller did not set them.
    _sent_defaults: ClassVar[dict[str, Any]] = {}

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        cls._sent_defaults = {
            name: field.default
            for name, field in cls.model_fields.items()
            if field.default is not None and field.default is not PydanticUndefined
        }

    def to_payload(self) -> dict[str, Any]:
        """The request as sent: what was set, plus non-``None`` defaults, without ``None``s.

        Equal to ``model_dump(exclude_none=True)`` for these flat schemas, at a quarter of
        the cost (this runs once per call).
        """
        data = self.__dict__
        out = dict(self._sent_defaults)
        for name in self.__pydantic_fields_set__:
            value = data[name]
            if value is None:
                out.pop(name, None)
            else:
                out[name] = value
        return out
