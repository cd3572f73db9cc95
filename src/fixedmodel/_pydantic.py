"""pydantic's ``BaseModel`` without importing pydantic at ``import fixedmodel`` time.

A value can only be a pydantic model if pydantic has been imported already, so checks read
the class from ``sys.modules`` and treat "pydantic not loaded" as "not a model". That keeps
``import fixedmodel`` light (pydantic costs about 80 ms) without a per-call import.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, cast

if TYPE_CHECKING:
    from pydantic import BaseModel


def loaded_base_model() -> type[BaseModel] | None:
    """Return ``pydantic.BaseModel`` if pydantic is loaded, else ``None``."""
    module = sys.modules.get("pydantic")
    return None if module is None else cast("type[BaseModel]", module.BaseModel)


def read_attribute(value: object, name: str) -> object:
    """Return ``getattr(value, name, None)``, quickly for pydantic models.

    litellm's answers keep ``usage`` among pydantic's extra fields and ``_hidden_params``
    among its private attributes. pydantic resolves both in a Python-level ``__getattr__``
    that costs 1-3 µs a lookup, where reading its dicts directly costs a few dozen ns; every
    call through the middleware reads them more than once. Anything else, or a name not in
    those dicts, falls back to ``getattr``.
    """
    # No typing.cast below: it is a function call at run time, and this runs on every call.
    fields = getattr(value, "__dict__", None)
    if isinstance(fields, dict) and name in fields:
        return fields[name]  # pyright: ignore[reportUnknownVariableType]
    where = "__pydantic_private__" if name.startswith("_") else "__pydantic_extra__"
    found = getattr(value, where, None)
    if isinstance(found, dict) and name in found:
        return found[name]  # pyright: ignore[reportUnknownVariableType]
    return getattr(value, name, None)
