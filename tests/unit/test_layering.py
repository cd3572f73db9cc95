"""The imports of src/fixedmodel run one way: down the layers, in no circle.

Read from the source with ``ast`` (nothing is imported), counting every import: at module
level, inside functions, and under ``if TYPE_CHECKING:``, since each is a dependency a reader
has to follow. The layers, bottom to top:

0. the foundation: the top-level modules the rest builds on (``_protocols``, ``_params``,
   ``_bind``, ``_resources``, ``_streams``, ``_cooldown``, ``_limits``, ``errors``, ...);
1. ``stores``;
2. ``middleware``;
3. ``routing``;
4. what runs many calls or faces the user: the batch runners (``_batch*``,
   ``_provider_batch``), ``_workers``, the command line (``cli``, ``_cli_*``), the package's
   face (``fixedmodel/__init__.py``) and the test kit (``fixedmodel.testing``).

A module imports from its own layer or below, never above; configuration two layers share
lives below both (``RateLimit`` in ``_limits``, ``CooldownPolicy`` in ``_cooldown``).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "fixedmodel"

_TOP = (
    "fixedmodel._batch",
    "fixedmodel._provider_batch",
    "fixedmodel._workers",
    "fixedmodel.cli",
    "fixedmodel._cli",
    "fixedmodel.__main__",
    "fixedmodel.testing",
)
_LAYERS = ("foundation", "stores", "middleware", "routing", "runners, CLI, face, test kit")


def _modules(root: Path) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _imported(module: str, path: Path, modules: dict[str, Path]) -> Iterator[str]:
    """The modules of the package that ``module`` imports (the longest name that is a file)."""

    def file_of(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, base] if base else parent)
            # "from fixedmodel import _pickling" imports a module; "from x import name" x.
            names = [
                f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                for alias in node.names
            ]
        else:
            continue
        for name in names:
            target = file_of(name) if name.split(".")[0] == "fixedmodel" else None
            if target is not None and target != module:
                yield target


def _graph(root: Path) -> dict[str, set[str]]:
    modules = _modules(root)
    return {module: set(_imported(module, path, modules)) for module, path in modules.items()}


def _layer(module: str) -> int:
    if module == "fixedmodel" or module.startswith(_TOP):
        return 4
    for index, name in ((3, "routing"), (2, "middleware"), (1, "stores")):
        if module == f"fixedmodel.{name}" or module.startswith(f"fixedmodel.{name}."):
            return index
    return 0


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component: list[str] = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_walk_sees_the_package() -> None:
    graph = _graph(SRC)
    assert "fixedmodel.middleware.retries" in graph
    assert "fixedmodel._protocols" in graph["fixedmodel.middleware.retries"]
    assert "fixedmodel.testing._fakes" in graph["fixedmodel.testing"]


def test_product_code_never_imports_the_test_kit() -> None:
    graph = _graph(SRC)
    offenders = sorted(
        f"{module} -> {target}"
        for module, targets in graph.items()
        if not module.startswith("fixedmodel.testing")
        for target in targets
        if target.startswith("fixedmodel.testing")
    )
    assert offenders == [], "product code imports the test kit: " + ", ".join(offenders)


def test_no_import_circle() -> None:
    circles = _circles(_graph(SRC))
    assert circles == [], f"modules that import each other in a circle: {circles}"


def test_imports_run_down_the_layers() -> None:
    graph = _graph(SRC)
    upward = sorted(
        f"{module} ({_LAYERS[_layer(module)]}) -> {target} ({_LAYERS[_layer(target)]})"
        for module, targets in graph.items()
        for target in targets
        if _layer(target) > _layer(module)
    )
    assert upward == [], "imports that run up a layer: " + ", ".join(upward)
