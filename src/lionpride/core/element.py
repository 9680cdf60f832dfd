"""Element: identity (``id``, ``created_at``, ``metadata``) and allow-listed serialization."""

from __future__ import annotations

import datetime as dt
import os
import random
from typing import Any, ClassVar, Literal
from uuid import UUID, SafeUUID

from pydantic import BaseModel, ConfigDict, Field, field_validator

from lionpride import errors

__all__ = ["Element", "new_id", "to_uuid"]

_CLASS_KEY = "lion_class"

# Ids come from a private generator seeded from os.urandom: half the cost of uuid4() (one
# syscall per id), untouched by a user's random.seed(), and reseeded in a forked child so
# that two workers never share a sequence.
_rng = random.Random()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_rng.seed)
_V4_CLEAR = ~((0xF000 << 64) | (0xC000 << 48))
_V4_SET = (0x4000 << 64) | (0x8000 << 48)


def new_id() -> UUID:
    """A random (version 4) UUID."""
    # What UUID(int=...) makes, without its argument checks: the value is in range.
    uid = object.__new__(UUID)
    object.__setattr__(uid, "int", (_rng.getrandbits(128) & _V4_CLEAR) | _V4_SET)
    object.__setattr__(uid, "is_safe", SafeUUID.unknown)
    return uid


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Element(BaseModel):
    """Base of every identified object.

    ``from_dict`` resolves ``metadata["lion_class"]`` only among ``Element`` subclasses that
    are already defined (an allow-list built as classes are created), never by importing a
    dotted path named in the data.
    """

    model_config = ConfigDict(
        arbitrary_types_allowed=True,
        validate_assignment=True,
        use_enum_values=True,
        extra="forbid",
    )

    _registry: ClassVar[dict[str, type[Element]]] = {}

    id: UUID = Field(default_factory=new_id, frozen=True)
    created_at: dt.datetime = Field(default_factory=_utcnow, frozen=True)
    metadata: dict[str, Any] = Field(default_factory=dict)

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        Element._registry[cls.class_name(full=True)] = cls
        Element._registry.setdefault(cls.class_name(), cls)

    @field_validator("metadata", mode="before")
    @classmethod
    def _falsy_metadata(cls, value: Any) -> Any:
        return value or {}

    @classmethod
    def class_name(cls, full: bool = False) -> str:
        """Return ``"Cls"`` or ``"module.Cls"``, without generic brackets."""
        name = cls.__qualname__.split("[", 1)[0]
        return f"{cls.__module__}.{name}" if full else name

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Element) and other.id == self.id

    def __hash__(self) -> int:
        return hash(self.id)

    def __bool__(self) -> bool:
        return True

    def to_dict(
        self, mode: Literal["python", "json", "db"] = "python", **dump_kw: Any
    ) -> dict[str, Any]:
        """Dump to a dict that records the class in ``metadata["lion_class"]``.

        Args:
            mode: ``"python"`` keeps UUID/datetime objects, ``"json"`` makes everything
                JSON-safe, ``"db"`` is JSON-safe with ``metadata`` renamed ``node_metadata``.
            **dump_kw: Passed to ``model_dump``.
        """
        if mode not in ("python", "json", "db"):
            raise errors.ValidationError(f"mode must be 'python', 'json' or 'db', got {mode!r}")
        data = self.model_dump(mode="python" if mode == "python" else "json", **dump_kw)
        meta = dict(data.get("metadata") or {})
        meta[_CLASS_KEY] = self.class_name(full=True)
        data["metadata"] = meta
        if mode == "db":
            data["node_metadata"] = data.pop("metadata")
        return data

    @classmethod
    def resolve_class(cls, name: str) -> type[Element]:
        """Return the already-defined Element subclass called ``name``, else ``ValueError``."""
        target = Element._registry.get(name)
        if target is None:
            raise errors.ValidationError(
                f"unknown lion_class {name!r}: no Element subclass of that name is defined in "
                "this process (import its module first; iModel.from_dict loads the built-in "
                "providers itself)"
            )
        if not issubclass(target, cls):
            raise errors.ValidationError(
                f"lion_class {name!r} is not a subclass of {cls.class_name()}"
            )
        return target

    @classmethod
    def from_dict(cls, data: dict[str, Any], **kw: Any) -> Element:
        """Rebuild an Element (or the subclass named in ``metadata["lion_class"]``)."""
        if not isinstance(data, dict):
            raise errors.ValidationError(f"from_dict needs a dict, got {type(data).__name__}")
        data = dict(data)
        if "node_metadata" in data:
            data["metadata"] = data.pop("node_metadata")
        meta = dict(data.get("metadata") or {})
        name = meta.pop(_CLASS_KEY, None)
        data["metadata"] = meta
        target = cls.resolve_class(name) if name else cls
        if target is not cls and _own_from_dict(target):
            # The named class restores itself (an endpoint finds its request schema again,
            # an iModel rebuilds its limits): hand it the dict as it was written.
            return target.from_dict({**data, "metadata": {**meta, _CLASS_KEY: name}}, **kw)
        return target.model_validate({**data, **kw})


def _own_from_dict(klass: type[Element]) -> bool:
    """Whether ``klass`` (or a base below Element) defines its own ``from_dict``."""
    return klass.from_dict.__func__ is not Element.from_dict.__func__  # type: ignore[attr-defined]


def to_uuid(value: Any) -> UUID:
    """Coerce a UUID, its string form, or an Element to a UUID (``ValueError`` otherwise)."""
    if isinstance(value, UUID):
        return value
    if isinstance(value, Element):
        return value.id
    if isinstance(value, str):
        try:
            return UUID(value)
        except ValueError:
            pass
    raise errors.ValidationError(f"cannot convert {value!r} to a UUID")
