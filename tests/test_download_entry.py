"""One download entry point below ``download_weights``: outside ``weights/``, verified bytes
come only from ``omnizoo.weights.download.fetch_verified`` (the rule in
``omnizoo.weights.__init__`` and docs/cache.md). Read from the source, as tests/test_layers.py
reads imports: lazy imports inside functions count."""

from __future__ import annotations

import ast
from pathlib import Path

from test_layers import SRC, _imports, _modules, _resolve

#: The modules that make up the download chain, and what outside code may take from them.
CHAIN = ("omnizoo.weights.download", "omnizoo.weights.download_chain", "omnizoo.weights.lookup")
ENTRY = "fetch_verified"
#: Names of weights/download.py that get no bytes (the cache object of the settings in force).
NOT_DOWNLOADS = {"get_cache"}


def _chain_imports_outside_weights(root: Path = SRC) -> list[str]:
    """``module: name`` for every name a module outside ``omnizoo.weights`` imports from the
    download chain (package and test code under ``root``)."""
    found: list[str] = []
    for module, path in _modules().items():
        if module == "omnizoo.weights" or module.startswith("omnizoo.weights."):
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in _imports(tree, type_checking=True):
            if isinstance(node, ast.Import):
                found += [f"{module}: {a.name}" for a in node.names if a.name.startswith(CHAIN)]
                continue
            target = _resolve(module, path.name == "__init__.py", node)
            for alias in node.names:
                full = f"{target}.{alias.name}"
                if full in CHAIN:  # "from omnizoo.weights import download"
                    found.append(f"{module}: {full} (the module)")
                elif target in CHAIN:
                    found.append(f"{module}: {target}.{alias.name}")
    return found


def test_only_fetch_verified_is_called_from_outside_weights() -> None:
    allowed = {f"omnizoo.weights.download.{n}" for n in {ENTRY} | NOT_DOWNLOADS}
    wrong = [f for f in _chain_imports_outside_weights() if f.split(": ", 1)[1] not in allowed]
    assert not wrong, (
        "outside omnizoo.weights, verified bytes come only from "
        f"omnizoo.weights.download.{ENTRY}; found: {wrong}"
    )


def test_the_entry_point_is_the_one_callers_use() -> None:
    callers = {f.split(": ")[0] for f in _chain_imports_outside_weights() if f.endswith(ENTRY)}
    # create_model, download_weights / omnizoo lock, and the sources' side files
    assert {
        "omnizoo.registry.factory",
        "omnizoo.registry.downloads",
        "omnizoo.sources.timm.hub",
        "omnizoo.sources.onnx.manifest",
    } <= callers, callers


def test_download_module_exports_one_download_function() -> None:
    import omnizoo.weights.download as download

    assert set(download.__all__) == {ENTRY} | NOT_DOWNLOADS
