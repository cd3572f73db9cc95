"""The public surface is in one place: ``fixedmodel.__all__``, and the API page names it all.

A name a public subpackage or module lists in its own ``__all__`` (``fixedmodel.routing``,
``fixedmodel.stores``, ``fixedmodel.middleware.cache``, ...) is either re-exported by
``fixedmodel`` as the same object, or not listed there (private). The namespaces users reach
as modules keep their own lists: ``fixedmodel.errors``, ``fixedmodel.responses``, the test kit
``fixedmodel.testing`` and the command line ``fixedmodel.cli``.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
from pathlib import Path

import fixedmodel

API_PAGE = Path(__file__).resolve().parents[2] / "docs" / "api.md"
NAMESPACES = ("fixedmodel.errors", "fixedmodel.responses", "fixedmodel.testing", "fixedmodel.cli")


def _public_modules() -> list[str]:
    names: list[str] = []
    for info in pkgutil.walk_packages(fixedmodel.__path__, "fixedmodel."):
        private = any(part.startswith("_") for part in info.name.split(".")[1:])
        namespace = info.name.startswith(NAMESPACES)
        if not private and not namespace:
            names.append(info.name)
    return names


def test_the_walk_finds_the_public_modules() -> None:
    modules = _public_modules()
    assert "fixedmodel.routing" in modules
    assert "fixedmodel.stores.redis_limiter" in modules


def test_names_public_in_a_subpackage_are_public_in_fixedmodel() -> None:
    missing: list[str] = []
    for name in _public_modules():
        module = importlib.import_module(name)
        for public in getattr(module, "__all__", ()):
            if public not in fixedmodel.__all__:
                missing.append(f"{name}.{public} (not in fixedmodel.__all__)")
            elif getattr(fixedmodel, public) is not getattr(module, public):
                missing.append(f"{name}.{public} (fixedmodel.{public} is another object)")
    assert missing == [], "public only in a subpackage: " + ", ".join(missing)


def test_the_api_page_names_every_public_name() -> None:
    page = API_PAGE.read_text(encoding="utf-8")
    unnamed = [name for name in fixedmodel.__all__ if not re.search(rf"\b{name}\b", page)]
    assert unnamed == [], f"not on docs/api.md: {unnamed}"
