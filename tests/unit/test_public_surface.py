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


LAZY_PACKAGES = ("fixedmodel", "fixedmodel.routing", "fixedmodel.stores", "fixedmodel.testing")


def _checker_imports(package: str) -> dict[str, str]:
    """The names a package's ``__init__.py`` imports for the type checkers, and from where."""
    path = importlib.import_module(package).__file__
    assert path is not None
    tree = ast.parse(Path(path).read_text(encoding="utf-8"))
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


@pytest.mark.parametrize("package", LAZY_PACKAGES)
def test_the_lazy_homes_say_what_the_checkers_see(package: str) -> None:
    module = importlib.import_module(package)
    assert _checker_imports(package) == module._HOME_OF
    assert list(module._HOME_OF) == module.__all__


@pytest.mark.parametrize("package", LAZY_PACKAGES)
def test_every_public_name_resolves_to_its_home(package: str) -> None:
    module = importlib.import_module(package)
    for name in module.__all__:
        value = getattr(module, name)
        home = importlib.import_module(module._HOME_OF[name])
        assert value is (home if home.__name__ == f"{package}.{name}" else getattr(home, name))
    assert set(module.__all__) <= set(dir(module))
    with pytest.raises(AttributeError, match=f"module '{package}' has no attribute 'with_retry'"):
        _ = module.with_retry


def test_the_subpackages_are_attributes_of_fixedmodel_at_once() -> None:
    # A fresh interpreter: in this one every subpackage is imported (and set) already.
    probe = (
        "import fixedmodel\n"
        "print(fixedmodel.routing.with_budget.__name__, fixedmodel.stores.__name__,\n"
        "      fixedmodel.middleware.__name__, fixedmodel.testing.FakeACompletion.__name__)\n"
    )
    assert _fresh(probe) == (
        "with_budget fixedmodel.stores fixedmodel.middleware FakeACompletion\n"
    )


# Threads released together in a fresh interpreter, each reading one name (or importing one
# module) for the first time; prints what failed.
_AT_ONCE = """
import importlib, sys, threading
import fixedmodel
names = sys.argv[1:]
barrier = threading.Barrier(len(names))
failed = []
def touch(name):
    barrier.wait()
    try:
        if "." in name:
            importlib.import_module(name)
        else:
            getattr(fixedmodel, name)
    except BaseException as error:
        failed.append(f"{name}: {error!r}")
threads = [threading.Thread(target=touch, args=(name,)) for name in names]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
print(failed)
"""


@pytest.mark.heavy
@pytest.mark.parametrize(
    "names",
    [
        [name for name in fixedmodel.__all__ if name.endswith(("Store", "Error"))],
        [
            "fixedmodel.stores.redis_budget",
            "fixedmodel.stores.redis_limiter",
            "fixedmodel.stores.redis_cooldown",
            "fixedmodel.routing.budget",
            "fixedmodel.routing.load_balancing",
            "fixedmodel.testing._fakes",
        ],
    ],
    ids=["names", "modules"],
)
def test_threads_reading_names_for_the_first_time_at_once_all_get_them(
    names: list[str],
) -> None:
    # A package importing its submodules in __init__ deadlocked here (or gave a partly run
    # module) in most fresh interpreters.
    for _ in range(4):
        assert _fresh(_AT_ONCE, *names) == "[]\n"


def _fresh(code: str, *args: str) -> str:
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    done = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, check=True
    )
    return done.stdout


def test_import_fixedmodel_loads_no_layer_until_used() -> None:
    # A fresh interpreter: this one has imported everything already.
    probe = (
        "import sys, fixedmodel\n"
        "heavy = ('litellm', 'tenacity', 'redis', 'fixedmodel.routing', 'fixedmodel._batch',\n"
        "         'fixedmodel.stores', 'fixedmodel._workers', 'fixedmodel.middleware.tracing')\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
        "import fixedmodel.stores, fixedmodel.testing\n"
        "print(sorted(m for m in sys.modules if m.startswith(('fixedmodel.stores.',\n"
        "                                                     'fixedmodel.testing.'))))\n"
        "fixedmodel.with_budget\n"
        "print('fixedmodel.routing' in sys.modules)\n"
    )
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, env=env, check=True
    )
    assert done.stdout.split("\n")[:3] == ["[]", "[]", "True"]
