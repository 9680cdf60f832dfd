"""RequestModel: the base of the providers' request schemas."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict
from pydantic_core import PydanticUndefined

__all__ = ["RequestModel"]


class RequestModel(BaseModel):
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
