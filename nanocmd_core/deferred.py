"""A module's attributes defined in other modules and imported on first access (PEP 562), so a
handler's import does not build models a cold call does not need (issue 14: cold starts); and the
request-type registries (commands, responses) whose built-in types are defined that way."""

from __future__ import annotations

import sys
from collections.abc import Callable, Collection, Mapping, MutableMapping
from importlib import import_module
from typing import Any, TypeVar

T = TypeVar("T")


def deferred_attributes(module_name: str, deferred: Mapping[str, str]) -> Callable[[str], object]:
    """The ``__getattr__`` for module ``module_name``: ``deferred`` maps an attribute's name to the
    module that defines it; the first access imports that module and keeps the value."""
    namespace = sys.modules[module_name].__dict__

    def __getattr__(name: str) -> object:
        module = deferred.get(name)
        if module is None:
            raise AttributeError(f"module {module_name!r} has no attribute {name!r}")
        value = getattr(import_module(module), name)
        namespace[name] = value
        return value

    return __getattr__


def register_type(types: MutableMapping[str, type[Any]], cls: type[T], *, builtin: bool = False) -> type[T]:
    """Make ``cls`` the type of its ``request_type`` in ``types``. ``builtin``: a built-in type its
    module defines on first use; a type registered for that request type meanwhile stays, as it
    would have replaced the built-in one registered at import."""
    request_type = getattr(cls, "request_type", "")
    if not request_type:
        raise ValueError(f"{cls.__name__} has an empty request_type")
    if builtin:
        types.setdefault(request_type, cls)
    else:
        types[request_type] = cls
    return cls


def registered_type(
    types: Mapping[str, type[T]], request_type: str, builtins: Collection[str], module_name: str
) -> type[T] | None:
    """The type registered for ``request_type``; for a built-in one not yet defined, ``module_name``
    (which registers the built-in types) is imported first."""
    cls = types.get(request_type)
    if cls is None and request_type in builtins and module_name not in sys.modules:
        import_module(module_name)
        cls = types.get(request_type)
    return cls
