"""The package's import graph follows the layers of docs/design.md, with no cycles.

Every ``import`` of an omnizoo module is read from the source (module level and inside
functions alike: a lazy import is still a dependency; ``if TYPE_CHECKING:`` blocks are
annotations only and are skipped). A module may import its own layer or a lower one, and no
two modules may import each other, directly or through others.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"

#: (module prefix, layer): the longest matching prefix decides a module's layer.
LAYERS: tuple[tuple[str, int], ...] = (
    ("omnizoo.errors", 0),
    ("omnizoo.settings", 0),
    ("omnizoo.schema", 0),
    ("omnizoo._version", 0),
    ("omnizoo.values", 1),  # card, names, data config, lineage, relabelling: plain data
    ("omnizoo.weights", 2),
    ("omnizoo.loading", 3),
    ("omnizoo.saved", 3),  # the files omnizoo writes for a model, each reader by its writer
    ("omnizoo.sources", 4),
    ("omnizoo.registry", 5),
    ("omnizoo.data", 6),
    ("omnizoo.inference", 7),
    ("omnizoo.finetune", 7),
    ("omnizoo.export", 7),
    ("omnizoo.overview", 7),
    ("omnizoo.cli", 8),
    ("omnizoo.__main__", 9),
    ("omnizoo", 9),  # the package's front door (lazy attribute map)
)


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted((SRC / "omnizoo").rglob("*.py"))}


def _layer(module: str) -> int:
    best = max((p for p, _ in LAYERS if module == p or module.startswith(p + ".")), key=len)
    return dict(LAYERS)[best]


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST, type_checking: bool) -> Iterator[ast.Import | ast.ImportFrom]:
    stack = [tree]
    while stack:
        node = stack.pop()
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child) and not type_checking:
                stack.extend(child.orelse)
                continue
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                yield child
            stack.append(child)


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".")
    if not is_package:
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def import_graph(type_checking: bool = False) -> dict[str, set[str]]:
    """omnizoo module -> the omnizoo modules it imports (at run time; with ``type_checking``
    also those imported under ``if TYPE_CHECKING:`` for annotations)."""
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        deps: set[str] = set()
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in _imports(tree, type_checking):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                target = _resolve(name, path.name == "__init__.py", node)
                # "from pkg import mod" imports the submodule when there is one
                targets = [
                    f"{target}.{a.name}" if f"{target}.{a.name}" in modules else target
                    for a in node.names
                ]
            for target in targets:
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target.startswith("omnizoo") and target != name:
                    deps.add(target)
        graph[name] = deps
    return graph


def _ancestors(module: str) -> set[str]:
    """The packages a module sits in, below the front door: importing ``omnizoo.weights``
    from ``omnizoo.weights.cache`` is free, importing ``omnizoo`` itself never is (it
    would run the front door, and hide a dependency on whatever it re-exports)."""
    parts = module.split(".")
    return {".".join(parts[:i]) for i in range(2, len(parts))}


def test_every_module_has_a_layer() -> None:
    for module in _modules():
        assert _layer(module) >= 0, module


def test_imports_point_down_the_layers() -> None:
    graph = import_graph()
    upward = sorted(
        f"{m} (layer {_layer(m)}) imports {d} (layer {_layer(d)})"
        for m, deps in graph.items()
        for d in deps
        if _layer(d) > _layer(m) and d not in _ancestors(m)
    )
    assert not upward, "imports against the layers:\n" + "\n".join(upward)


def test_inner_modules_never_import_the_front_door() -> None:
    graph = import_graph(type_checking=True)
    offenders = sorted(m for m, deps in graph.items() if "omnizoo" in deps and m != "omnizoo")
    assert not offenders, "modules importing the package front door: " + ", ".join(offenders)


def test_no_import_cycles() -> None:
    # annotations count too: a cycle through ``if TYPE_CHECKING:`` is still two modules that
    # cannot be understood (or moved) one without the other
    graph = import_graph(type_checking=True)
    # a package's __init__ is only executed on the way to its modules: the edges that matter
    # are the ones between real modules
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    cycles: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w in _ancestors(v):
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    assert not cycles, "import cycles: " + "; ".join(" <-> ".join(c) for c in cycles)


def _folder(module: str) -> str:
    """The top-level folder (package) a module belongs to: ``omnizoo.values.card`` ->
    ``omnizoo.values``; a top-level module is its own folder."""
    return ".".join(module.split(".")[:2])


def folder_graph() -> dict[str, set[str]]:
    """folder -> the folders its modules import (annotations included)."""
    out: dict[str, set[str]] = {}
    for module, deps in import_graph(type_checking=True).items():
        here = _folder(module)
        out.setdefault(here, set()).update(_folder(d) for d in deps if _folder(d) != here)
    return out


def test_folders_are_layers() -> None:
    # the picture docs/build-path.md draws: a folder holds one layer, so no two folders import
    # each other (the module graph being acyclic is not enough: registry/ once held both the
    # card values every source needs and the lookups built on the sources)
    graph = folder_graph()
    both = sorted(
        f"{a} <-> {b}" for a, deps in graph.items() for b in deps if a < b and a in graph.get(b, ())
    )
    assert not both, "folders importing each other: " + "; ".join(both)
    upward = sorted(
        f"{a} (layer {_layer(a)}) imports {b} (layer {_layer(b)})"
        for a, deps in graph.items()
        for b in deps
        if _layer(b) > _layer(a) and b != "omnizoo"
    )
    assert not upward, "folders importing a higher layer:\n" + "\n".join(upward)


def test_every_folder_has_one_layer() -> None:
    # a folder's modules all sit in the folder's layer (no module-level exceptions hiding a
    # second layer inside one folder)
    mixed = sorted(m for m in _modules() if m.count(".") >= 1 and _layer(m) != _layer(_folder(m)))
    assert not mixed, "modules in another layer than their folder: " + ", ".join(mixed)


def test_build_path_doc_draws_the_folders() -> None:
    # docs/build-path.md's folder drawing lists exactly the folders and their imports
    doc = (SRC.parent / "docs" / "build-path.md").read_text(encoding="utf-8")
    drawing = doc.split("<!-- folder-imports -->")[1]
    drawn: dict[str, set[str]] = {}
    for line in drawing.splitlines():
        if "->" in line:
            name, deps = line.split("->", 1)
            drawn[name.strip()] = {d.strip() for d in deps.split(",") if d.strip()}
    real = {
        f.removeprefix("omnizoo."): {d.removeprefix("omnizoo.") for d in deps}
        for f, deps in folder_graph().items()
        if f != "omnizoo" and deps
    }
    assert drawn == real, f"docs/build-path.md draws {drawn}; the code imports {real}"


@pytest.mark.parametrize(
    ("module", "layer"),
    [("omnizoo.loading.fit", 3), ("omnizoo.sources.timm.build", 4), ("omnizoo.cli.main", 8)],
)
def test_layer_table(module: str, layer: int) -> None:
    assert _layer(module) == layer


def test_the_guard_sees_lazy_and_relative_imports() -> None:
    graph = import_graph()
    # a function-level relative import (factory imports the weights download lazily)
    assert "omnizoo.weights.download" in graph["omnizoo.registry.factory"]
    # "from .. import x" style and package-relative imports resolve to real modules
    assert "omnizoo.loading.fit" in graph["omnizoo.sources.torchvision.build"]
