"""Public names a package imports on first use (a module ``__getattr__``, PEP 562).

A package that imports its submodules in its ``__init__`` can deadlock (or hand out a partly
run module) when two threads import it and one of those submodules at once, in opposite
orders: each holds one module's import lock and waits for the other's. So fixedmodel's
packages import nothing of their own at import time; each keeps a table of where its names
live, and this module's ``__getattr__`` imports a name's home when it is first read.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping

__all__ = ["first_use"]


def first_use(
    package: str, homes: Mapping[str, str], namespace: dict[str, object]
) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """The ``__getattr__`` and ``__dir__`` of ``package``.

    ``__getattr__`` imports ``homes[name]`` and keeps the value; ``__dir__`` lists what is
    there and every name of ``homes``.

    Args:
        package: The package's dotted name, for the error message.
        homes: Public name -> the module it lives in; a name whose home is
            ``f"{package}.{name}"`` is a submodule.
        namespace: The package's ``globals()``, where a value found is kept, so that the
            next read does not come here.

    Returns:
        The two functions. ``__getattr__`` raises ``AttributeError`` (naming the attribute)
        for a name not in ``homes``, as Python does for any module.
    """

    def __getattr__(name: str) -> object:
        home = homes.get(name)
        if home is None:
            msg = f"module {package!r} has no attribute {name!r}"
            raise AttributeError(msg)
        if home == f"{package}.{name}":  # A submodule: importing it sets it here.
            return importlib.import_module(home)
        if home.startswith("litellm"):
            from fixedmodel._litellm import litellm_module

            litellm_module()  # litellm's own settings first (see fixedmodel._litellm)
        value: object = getattr(importlib.import_module(home), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted({*namespace, *homes})

    return __getattr__, __dir__
