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
