"""Imports run one way: no module of the add-on or the backend imports, directly or through others, a module
that imports it back (function-level imports count too: they hide a cycle, they do not remove it)."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("occnet_blender", "backend")
# The add-on's folders by role, each importing only those after it: the UI drives the scene's objects, which go
# through the worker link; the worker link knows neither.
ADDON_LAYERS = ("occnet_blender.ui", "occnet_blender.scene", "occnet_blender.worker")


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _imports(name: str, path: Path, modules: dict[str, Path], loading: bool = False) -> set[str]:
    """The project modules `name` imports; `from pkg import x` means the module pkg.x when there is one. With
    `loading`, only those it imports when it loads (not inside functions, not for type checking)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets = set()
    for node in _nodes(path, loading):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            if module.split(".")[0] not in PACKAGES:  # a relative import above the top (`..backend`): its target
                module = ".".join(module.split(".")[1:])
            submodules = {f"{module}.{alias.name}" for alias in node.names} & modules.keys()
            targets.update(submodules or {module})
    ancestors = {".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1)}  # imported anyway, first
    return {t for t in targets if t in modules and t != name and t not in ancestors}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state, stack = {}, []

    def visit(node: str) -> list[str] | None:
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_graph_sees_the_imports_it_must():
    modules = _modules()
    graph = {name: _imports(name, path, modules) for name, path in modules.items()}
    assert "occnet_blender.worker.client" in graph["occnet_blender.worker.jobs"]  # from .client import ...
    assert "occnet_blender.worker.jobs" in graph["occnet_blender.scene.blend"]  # from ..worker.jobs import ...
    assert "occnet_blender.scene.blend" in graph["occnet_blender.ui.properties"]  # from ..scene import blend
    assert "backend.protocol" in graph["occnet_blender.backend_parts"]  # from ..backend import protocol
    assert "backend.errors" in graph["backend.serve"]


@pytest.mark.parametrize("package", PACKAGES)
def test_imports_run_one_way(package):
    modules = _modules()
    graph = {name: _imports(name, path, modules) for name, path in modules.items() if name.startswith(package)}
    graph = {name: {t for t in targets if t in graph} for name, targets in graph.items()}
    cycle = _cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def _nodes(path: Path, loading: bool) -> list[ast.AST]:
    tree = ast.parse(path.read_text(), str(path))
    if not loading:
        return list(ast.walk(tree))
    found, todo = [], list(tree.body)
    while todo:
        node = todo.pop()
        found.append(node)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            todo.extend(node.orelse)
        elif isinstance(node, ast.If | ast.Try):
            todo.extend([*node.body, *node.orelse, *getattr(node, "handlers", []), *getattr(node, "finalbody", [])])
        elif isinstance(node, ast.ExceptHandler):
            todo.extend(node.body)
    return found


def _external(path: Path) -> set[str]:
    """The top-level names of what a module imports from outside the project when it loads."""
    found = set()
    for node in _nodes(path, loading=True):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            found.add(node.module.split(".")[0])
    return found - set(PACKAGES)


# What each layer may not load, directly or through what it imports: the engine-neutral core neither torch nor
# the wire protocol nor an engine; ONNX Runtime's part no torch; the protocol and the server no torch (the server
# loads the PyTorch engine only in a worker that runs it).
LAYERS = {
    "backend.surface": {"torch", "backend.protocol", "backend.serve", "backend.engines", "backend.runtime"},
    "backend.runtime": {"torch", "backend.protocol", "backend.serve", "backend.engines.pytorch"},
    "backend.engines.onnx_runtime": {"torch", "backend.engines.pytorch"},
    "backend.protocol": {"torch", "backend.engines.pytorch", "backend.runtime"},
    "backend.serve": {"torch", "backend.engines.pytorch"},
}


@pytest.mark.parametrize("layer", sorted(LAYERS))
def test_each_layer_loads_only_what_it_may(layer):
    modules = _modules()
    graph = {name: _imports(name, path, modules, loading=True) for name, path in modules.items()}
    reached, todo = set(), [m for m in modules if m == layer or m.startswith(layer + ".")]
    while todo:
        name = todo.pop()
        if name not in reached:
            reached.add(name)
            todo.extend(graph[name])
    external = set().union(*(_external(modules[m]) for m in reached))
    banned = LAYERS[layer]
    hits = sorted(m for m in reached if any(m == b or m.startswith(b + ".") for b in banned)) + sorted(
        external & banned
    )
    assert not hits, f"{layer} loads {hits}"


def test_the_addon_folders_import_one_way():
    def layer(name: str) -> int | None:
        return next((i for i, top in enumerate(ADDON_LAYERS) if name == top or name.startswith(top + ".")), None)

    modules = _modules()
    upward = [
        f"{name} -> {target}"
        for name, path in modules.items()
        if (own := layer(name)) is not None
        for target in _imports(name, path, modules)
        if (other := layer(target)) is not None and other < own
    ]
    assert not upward, "an import against the layers ui -> scene -> worker: " + ", ".join(upward)
