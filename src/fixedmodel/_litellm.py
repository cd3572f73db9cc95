"""The one place that imports litellm, lazily.

Importing litellm costs seconds and a few hundred MB, so ``import fixedmodel`` must not do it.
Everything that needs the module at run time calls :func:`litellm_module`.
"""

from __future__ import annotations

import os
from types import ModuleType
from typing import Any

from fixedmodel import _pickling

_COST_MAP_ENV = "LITELLM_LOCAL_MODEL_COST_MAP"
# Set to 1 to keep litellm's "Give Feedback / Get Help" banner (see _quiet_banner).
BANNER_ENV = "FIXEDMODEL_LITELLM_BANNER"

_module: ModuleType | None = None


def litellm_module() -> ModuleType:
    """Import litellm on first use and return the module.

    Before the first import, ``LITELLM_LOCAL_MODEL_COST_MAP=True`` is set unless the user set
    the variable already: otherwise litellm downloads its price list at import time and stalls
    on machines without internet access (BerriAI/litellm#22159). After it, litellm's help
    banner is switched off (:func:`_quiet_banner`).
    """
    global _module
    if _module is None:
        os.environ.setdefault(_COST_MAP_ENV, "True")
        import litellm

        _quiet_banner(litellm)
        _module = litellm
        _pickling.register_exception_pickling()  # see docs/workers.md: errors travel
    return _module


def _quiet_banner(litellm: Any) -> None:  # Any: litellm's module attributes are untyped
    """Set ``litellm.suppress_debug_info`` unless ``FIXEDMODEL_LITELLM_BANNER=1``.

    litellm prints "Give Feedback / Get Help ... litellm.turn_on_debug()" on stdout for every
    provider error it maps, the ones retries and fallbacks then handle included (over a hundred
    times in one batch against a provider answering 503 for a few seconds), and for a model
    string it cannot place. A library must not write to its user's stdout; the error itself
    still propagates with its message. A process-wide setting, documented in docs/design.md.
    """
    if os.environ.get(BANNER_ENV, "").strip() not in ("1", "true", "True", "yes"):
        # litellm boundary: a module attribute litellm reads before printing the banner.
        litellm.suppress_debug_info = True
