"""A module's attributes defined in other modules and imported on first access (PEP 562), so a
handler's import does not build models a cold call does not need (issue 14: cold starts)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from importlib import import_module


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
