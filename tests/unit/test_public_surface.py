"""The public surface is in one place: ``fixedmodel.__all__``, and the API page names it all.

A name a public subpackage or module lists in its own ``__all__`` (``fixedmodel.routing``,
``fixedmodel.stores``, ``fixedmodel.middleware.cache``, ...) is either re-exported by
``fixedmodel`` as the same object, or not listed there (private). The namespaces users reach
as modules keep their own lists: ``fixedmodel.errors``, ``fixedmodel.responses``, the test kit
``fixedmodel.testing`` and the command line ``fixedmodel.cli``.
"""

from __future__ import annotations

import ast
import importlib
import os
import pkgutil
import re
import subprocess
import sys
from pathlib import Path

import pytest

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


def _checker_imports() -> dict[str, str]:
    """The names ``fixedmodel/__init__.py`` imports for the type checkers, and from where."""
    tree = ast.parse(Path(fixedmodel.__file__).read_text(encoding="utf-8"))
    blocks = [
        node
        for node in tree.body
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING"
    ]
    found: dict[str, str] = {}
    for node in (statement for block in blocks for statement in block.body):
        if isinstance(node, ast.ImportFrom) and node.module:
            for alias in node.names:
                module = node.module
                if module == "fixedmodel":  # A submodule: fixedmodel.errors, ...
                    module = f"fixedmodel.{alias.name}"
                found[alias.asname or alias.name] = module
    return found


def test_the_lazy_homes_say_what_the_checkers_see() -> None:
    checked = _checker_imports()
    assert checked == fixedmodel._HOME_OF
    assert list(fixedmodel._HOME_OF) == fixedmodel.__all__


def test_every_public_name_resolves_to_its_home() -> None:
    for name in fixedmodel.__all__:
        value = getattr(fixedmodel, name)
        home = importlib.import_module(fixedmodel._HOME_OF[name])
        assert value is (home if home.__name__ == f"fixedmodel.{name}" else getattr(home, name))
    assert set(fixedmodel.__all__) <= set(dir(fixedmodel))
    with pytest.raises(AttributeError, match="has no attribute 'with_retry'"):
        _ = fixedmodel.with_retry  # type: ignore[attr-defined]  # pyright: ignore[reportAttributeAccessIssue]


def test_import_fixedmodel_loads_no_layer_until_used() -> None:
    # A fresh interpreter: this one has imported everything already.
    probe = (
        "import sys, fixedmodel\n"
        "heavy = ('litellm', 'tenacity', 'redis', 'fixedmodel.routing', 'fixedmodel._batch',\n"
        "         'fixedmodel.stores', 'fixedmodel._workers', 'fixedmodel.middleware.tracing')\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
        "fixedmodel.with_budget\n"
        "print('fixedmodel.routing' in sys.modules)\n"
    )
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, env=env, check=True
    )
    assert done.stdout.split("\n")[:2] == ["[]", "True"]
