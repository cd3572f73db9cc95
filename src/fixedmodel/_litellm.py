"""The one place that imports litellm, lazily.

Importing litellm costs seconds and a few hundred MB, so ``import fixedmodel`` must not do it.
Everything that needs the module at run time calls :func:`litellm_module`.
"""

from __future__ import annotations

import os
from types import ModuleType

from fixedmodel import _pickling

_COST_MAP_ENV = "LITELLM_LOCAL_MODEL_COST_MAP"

_module: ModuleType | None = None


def litellm_module() -> ModuleType:
    """Import litellm on first use and return the module.

    Before the first import, ``LITELLM_LOCAL_MODEL_COST_MAP=True`` is set unless the user set
    the variable already: otherwise litellm downloads its price list at import time and stalls
    on machines without internet access (BerriAI/litellm#22159).
    """
    global _module
    if _module is None:
        os.environ.setdefault(_COST_MAP_ENV, "True")
        import litellm

        _module = litellm
        _pickling.register_exception_pickling()  # see docs/workers.md: errors travel
    return _module
