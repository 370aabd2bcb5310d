"""A stand-in for :mod:`dataclasses`, for interpreters that lack it (bookworm's python3-minimal).

depmin declares its records with the standard ``@dataclass``; where the standard
library has no ``dataclasses`` (Debian 12's python3.11-minimal, the interpreter an
image without Python installs for one build step), :mod:`depmin.compat` serves
this module under that name instead.  It implements what depmin's records use,
with the standard semantics: ``dataclass(init, repr, eq, frozen, unsafe_hash)``,
``field(default, default_factory, init, repr, compare, hash)``, ``__post_init__``,
inheritance of fields, ``replace``, ``fields``, ``is_dataclass``, ``asdict`` and
``FrozenInstanceError``.  The tests build the same classes with both and compare.
"""

from __future__ import annotations

import copy
from typing import Any, Callable


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()


class FrozenInstanceError(AttributeError):
    """Assigning to a field of a frozen record."""


class Field:
    __slots__ = ("name", "type", "default", "default_factory", "init", "repr", "compare", "hash", "metadata")

    def __init__(self, default: Any, default_factory: Any, init: bool, repr: bool, compare: bool,
                 hash: bool | None, metadata: Any) -> None:  # fmt: skip
        if default is not MISSING and default_factory is not MISSING:
            raise ValueError("cannot specify both default and default_factory")
        self.name = ""
        self.type: Any = None
        self.default = default
        self.default_factory = default_factory
        self.init = init
        self.repr = repr
        self.compare = compare
        self.hash = hash
        self.metadata = metadata or {}

    def __repr__(self) -> str:
        return f"Field(name={self.name!r},default={self.default!r},default_factory={self.default_factory!r})"


def field(
    *, default: Any = MISSING, default_factory: Any = MISSING, init: bool = True, repr: bool = True,
    hash: bool | None = None, compare: bool = True, metadata: Any = None, kw_only: bool = False,
) -> Any:  # fmt: skip
    return Field(default, default_factory, init, repr, compare, hash, metadata)


def _is_classvar(annotation: Any) -> bool:
    text = annotation if isinstance(annotation, str) else repr(annotation)
    return text.startswith(("ClassVar", "typing.ClassVar", "t.ClassVar"))


def _collect(cls: type) -> dict[str, Field]:
    fields: dict[str, Field] = {}
    for base in reversed(cls.__mro__[1:]):
        fields.update(getattr(base, "__dataclass_fields__", {}))
    for name, annotation in cls.__dict__.get("__annotations__", {}).items():
        if _is_classvar(annotation):
            continue
        value = cls.__dict__.get(name, MISSING)
        f = value if isinstance(value, Field) else Field(value, MISSING, True, True, True, None, None)
        if isinstance(f.default, (list, dict, set)):
            raise ValueError(f"mutable default {type(f.default)} for field {name} is not allowed")
        f.name, f.type = name, annotation
        if isinstance(value, Field):
            if f.default is MISSING:
                delattr(cls, name)
            else:
                setattr(cls, name, f.default)
        fields.pop(name, None)
        fields[name] = f
    return fields


def _init(cls: type, fields: dict[str, Field], frozen: bool) -> Callable[..., None]:
    params: list[str] = []
    body: list[str] = []
    env: dict[str, Any] = {"MISSING": MISSING, "_set": object.__setattr__}
    seen_default = False
    for f in fields.values():
        if f.init:
            if f.default is not MISSING:
                env[f"_d_{f.name}"] = f.default
                params.append(f"{f.name}=_d_{f.name}")
                seen_default = True
            elif f.default_factory is not MISSING:
                env[f"_f_{f.name}"] = f.default_factory
                params.append(f"{f.name}=MISSING")
                seen_default = True
            elif seen_default:
                raise TypeError(f"non-default argument {f.name!r} follows default argument")
            else:
                params.append(f.name)
        if f.default_factory is not MISSING:
            env[f"_f_{f.name}"] = f.default_factory
            value = f"_f_{f.name}() if {f.name} is MISSING else {f.name}" if f.init else f"_f_{f.name}()"
        elif f.init:
            value = f.name
        elif f.default is not MISSING:
            value = f"_d_{f.name}"
            env[value] = f.default
        else:
            continue
        body.append(f"_set(self, {f.name!r}, {value})" if frozen else f"self.{f.name} = {value}")
    if hasattr(cls, "__post_init__"):
        body.append("self.__post_init__()")
    src = f"def __init__(self, {', '.join(params)}):\n    " + "\n    ".join(body or ["pass"]) + "\n"
    exec(src, env)  # noqa: S102 - the source is built here from field names only
    init: Callable[..., None] = env["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    return init


def dataclass(
    cls: type | None = None, *, init: bool = True, repr: bool = True, eq: bool = True,
    order: bool = False, unsafe_hash: bool = False, frozen: bool = False, **_: Any,
) -> Any:  # fmt: skip
    def wrap(cls: type) -> type:
        fields = _collect(cls)
        add: dict[str, Any] = {}  # what the class gets, set at the end
        add["__dataclass_fields__"] = fields
        add["__dataclass_params__"] = {"frozen": frozen, "eq": eq}
        if init:
            add["__init__"] = _init(cls, fields, frozen)
        if repr:
            shown = [f.name for f in fields.values() if f.repr]

            def __repr__(self: Any) -> str:
                inner = ", ".join(f"{n}={getattr(self, n)!r}" for n in shown)
                return f"{type(self).__qualname__}({inner})"

            add["__repr__"] = __repr__
        compared = [f.name for f in fields.values() if f.compare]
        if eq:

            def __eq__(self: Any, other: Any) -> Any:
                if other.__class__ is not self.__class__:
                    return NotImplemented
                return tuple(getattr(self, n) for n in compared) == tuple(getattr(other, n) for n in compared)

            add["__eq__"] = __eq__
        hashed = [f.name for f in fields.values() if (f.compare if f.hash is None else f.hash)]
        if unsafe_hash or (eq and frozen):

            def __hash__(self: Any) -> int:
                return hash(tuple(getattr(self, n) for n in hashed))

            add["__hash__"] = __hash__
        elif eq and "__hash__" not in cls.__dict__:
            add["__hash__"] = None
        if frozen:

            def __setattr__(self: Any, name: str, value: Any) -> None:
                raise FrozenInstanceError(f"cannot assign to field {name!r}")

            def __delattr__(self: Any, name: str) -> None:
                raise FrozenInstanceError(f"cannot delete field {name!r}")

            add["__setattr__"] = __setattr__
            add["__delattr__"] = __delattr__
        for name, value in add.items():
            setattr(cls, name, value)
        return cls

    return wrap if cls is None else wrap(cls)


def fields(obj: Any) -> tuple[Field, ...]:
    return tuple(obj.__dataclass_fields__.values())


def is_dataclass(obj: Any) -> bool:
    return hasattr(obj, "__dataclass_fields__")


def replace(obj: Any, **changes: Any) -> Any:
    for f in obj.__dataclass_fields__.values():
        if not f.init:
            if f.name in changes:
                raise ValueError(f"field {f.name} is declared with init=False, "
                                 "it cannot be specified with replace()")  # fmt: skip
            continue
        changes.setdefault(f.name, getattr(obj, f.name))
    return obj.__class__(**changes)


def asdict(obj: Any) -> dict[str, Any]:
    def walk(value: Any) -> Any:
        if is_dataclass(value) and not isinstance(value, type):
            return {f.name: walk(getattr(value, f.name)) for f in fields(value)}
        if isinstance(value, (list, tuple)):
            return type(value)(walk(v) for v in value)
        if isinstance(value, dict):
            return {walk(k): walk(v) for k, v in value.items()}
        return copy.deepcopy(value)

    return walk(obj)  # type: ignore[no-any-return]
