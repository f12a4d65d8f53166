"""The package's shape: no import cycles between its modules and sub-packages.

A cycle means two modules cannot be understood (or changed) one at a time;
lazy imports inside functions hide cycles from Python but not from a reader,
so they count here too.
"""

from __future__ import annotations

import ast
from pathlib import Path

from conftest import REPO

PACKAGE = REPO / "mlpspec"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def unit(module: str) -> str:
    """The node a module belongs to: a sub-package (`mlpspec.spec`) as a whole, else itself."""
    parts = module.split(".")
    if len(parts) > 2 or (PACKAGE / parts[-1]).is_dir() and len(parts) == 2:
        return ".".join(parts[:2])
    return module


def imports(path: Path, modules: set[str]) -> set[str]:
    """The mlpspec modules `path` imports anywhere in it (top level or inside functions)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            # `from mlpspec import rng` imports the module mlpspec.rng.
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in found if name in modules}


def unit_graph(package: Path = PACKAGE) -> dict[str, set[str]]:
    """unit -> units it imports, without the package root and without self-edges."""
    paths = {module_name(p): p for p in package.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in paths.items():
        if name == "mlpspec":
            continue
        edges = {unit(m) for m in imports(path, set(paths)) if m != "mlpspec"}
        graph.setdefault(unit(name), set()).update(edges - {unit(name)})
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one node (Tarjan)."""
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
            component = []
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


def test_the_graph_sees_lazy_imports_and_sub_packages():
    graph = unit_graph()
    assert "mlpspec.spec" in graph and "mlpspec.data" in graph and "mlpspec.nn" in graph
    assert "mlpspec.data" in graph["mlpspec.spec"] or "mlpspec.spec" in graph["mlpspec.data"]
    # pipeline imports the stages inside its methods only.
    assert "mlpspec.train" in graph["mlpspec.pipeline"]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


# Cycles that exist and are known, each to be broken by whoever owns it; the
# list may only shrink. The registry maps every name to its spec class and
# engine, and the spec and the ONNX writer look names up in it lazily.
KNOWN_CYCLES = [["mlpspec.onnx_export", "mlpspec.registry", "mlpspec.spec"]]


def test_no_import_cycles_but_the_known_ones():
    assert cycles(unit_graph()) == KNOWN_CYCLES


def test_training_and_evaluation_and_spec_and_data_are_in_no_cycle():
    """evaluate imports train (build_loss), never the other way; data imports spec, not back."""
    graph = unit_graph()
    in_cycles = {unit for cycle in cycles(graph) for unit in cycle}
    assert {"mlpspec.train", "mlpspec.evaluate", "mlpspec.data"}.isdisjoint(in_cycles)
    assert "mlpspec.evaluate" not in graph["mlpspec.train"]
    assert "mlpspec.data" not in graph["mlpspec.spec"]
