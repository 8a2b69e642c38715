"""MkDocs hook: the API reference, generated from ``omnizoo.__all__`` at every build.

One page per public function or class (``reference/<name>.md``, a mkdocstrings ``:::`` directive
at its public path ``omnizoo.<name>``: nothing internal is documented as public), one page for
the exception classes, and an overview page; the "API reference" section of the nav is filled
in here, so a name added to ``__all__`` gets its page without touching mkdocs.yml. A public name
without a docstring, or a public callable whose docstring has no example (``>>>``), fails the
build (tests/test_public_api_docs.py holds the same policy for the docstrings themselves).
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File, Files

#: the folder of the module that defines a name -> the nav group it is listed under
GROUPS = {
    "registry": "Models and the registry",
    "values": "Models and the registry",
    "sources": "Models and the registry",
    "loading": "Models and the registry",
    "saved": "Models and the registry",
    "data": "Data",
    "inference": "Inference",
    "finetune": "Fine-tuning",
    "export": "Export",
}
ERRORS_PAGE = "reference/errors.md"
INDEX_PAGE = "reference/index.md"

#: the example of the errors page (run by tests/test_docs_site.py, as the docstrings' are)
ERRORS_EXAMPLE = """\
>>> import omnizoo
>>> try:
...     omnizoo.get_card("resnet5O")
... except LookupError as err:  # every omnizoo error also inherits the builtin to catch
...     print(type(err).__name__, isinstance(err, omnizoo.OmnizooError))
UnknownModelError True
"""


def _is_error(obj: object) -> bool:
    return isinstance(obj, type) and issubclass(obj, BaseException)


def _own_doc(obj: object) -> str:
    """The object's own docstring (a class does not inherit its base's here)."""
    doc = obj.__dict__.get("__doc__") if isinstance(obj, type) else getattr(obj, "__doc__", None)
    return inspect.cleandoc(doc) if isinstance(doc, str) else ""


def _type_checking_imports() -> set[str]:
    """The names ``omnizoo/__init__.py`` imports under ``if TYPE_CHECKING:``: what griffe (and
    type checkers) see of the lazily loaded names."""
    import ast

    import omnizoo

    tree = ast.parse(Path(omnizoo.__file__).read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING":
            for stmt in ast.walk(node):
                if isinstance(stmt, ast.ImportFrom):
                    names.update(alias.asname or alias.name for alias in stmt.names)
    return names


def public_names() -> dict[str, list[str]]:
    """``{group title: [names]}`` for every name of ``omnizoo.__all__`` but ``__version__``;
    raises PluginError naming each public name that is undocumented (or without an example)."""
    import omnizoo

    groups: dict[str, list[str]] = {}
    seen = _type_checking_imports()
    problems = [
        f"omnizoo.{name}: in _LAZY but not imported under `if TYPE_CHECKING:` in "
        "omnizoo/__init__.py (the reference is read from there, as type checkers read it)"
        for name in omnizoo._LAZY
        if name not in seen
    ]
    for name in omnizoo.__all__:
        if name == "__version__":
            continue
        obj = getattr(omnizoo, name)
        doc = _own_doc(obj)
        if _is_error(obj):
            group = "Errors"
        else:
            module = omnizoo._LAZY.get(name, "")
            group = GROUPS.get(module.split(".")[1] if module.count(".") else "", "Other")
            if ">>> " not in doc:
                problems.append(f"omnizoo.{name}: no example (>>>) in its docstring")
        if not doc:
            problems.append(f"omnizoo.{name}: no docstring")
        groups.setdefault(group, []).append(name)
    if problems:
        raise PluginError("undocumented public names:\n  " + "\n  ".join(problems))
    order = [*dict.fromkeys(GROUPS.values()), "Other", "Errors"]  # the pipeline's order
    return {group: groups[group] for group in order if group in groups}


def _summary(name: str) -> str:
    import omnizoo

    first = _own_doc(getattr(omnizoo, name)).split("\n\n")[0]
    return " ".join(first.split()).replace("|", "\\|")


def index_page(groups: dict[str, list[str]]) -> str:
    import omnizoo

    lines = [
        "# API reference",
        "",
        "Every public name of omnizoo: `omnizoo.__all__`, generated from the docstrings at each "
        "build. Any other module is internal and may change without notice.",
        "",
    ]
    for group, names in groups.items():
        lines += [f"## {group}", "", "| name | what it is |", "| --- | --- |"]
        for name in names:
            page = "errors.md#omnizoo." + name if group == "Errors" else f"{name}.md"
            lines.append(f"| [`omnizoo.{name}`]({page}) | {_summary(name)} |")
        lines.append("")
    lines += [
        '<h2 id="omnizoo.__version__"><code>omnizoo.__version__</code></h2>',
        "",
        "The installed version, a string (`omnizoo --version` prints it too).",
        "",
        "```python",
        ">>> import omnizoo",
        ">>> omnizoo.__version__",
        f"'{omnizoo.__version__}'",
        "```",
        "",
    ]
    return "\n".join(lines)


def errors_page(names: list[str]) -> str:
    import omnizoo.errors

    intro = inspect.cleandoc(omnizoo.errors.__doc__ or "")
    head, _, tree = intro.partition("::")
    lines = [
        "# Errors",
        "",
        head.strip() + ":",
        "",
        "```text",
        inspect.cleandoc(tree),
        "```",
        "",
        "## Example",
        "",
        "```python",
        ERRORS_EXAMPLE.rstrip(),
        "```",
        "",
    ]
    for name in names:
        lines += [f"::: omnizoo.{name}", "    options:", "      heading_level: 2", ""]
    return "\n".join(lines)


def _add(files: Files, config: Any, path: str, content: str) -> None:
    files.append(File.generated(config, path, content=content))


def on_config(config: Any) -> Any:
    """Fill the nav's "API reference" section."""
    groups = public_names()
    section: list[Any] = [{"Overview": INDEX_PAGE}]
    for group, names in groups.items():
        if group == "Errors":
            section.append({"Errors": ERRORS_PAGE})
        else:
            section.append({group: [{name: f"reference/{name}.md"} for name in names]})
    for entry in config["nav"] or []:
        if isinstance(entry, dict) and "API reference" in entry:
            entry["API reference"] = section
    return config


def on_files(files: Files, config: Any) -> Files:
    """Add the generated reference pages to the site."""
    groups = public_names()
    _add(files, config, INDEX_PAGE, index_page(groups))
    for group, names in groups.items():
        if group == "Errors":
            _add(files, config, ERRORS_PAGE, errors_page(names))
            continue
        for name in names:
            _add(files, config, f"reference/{name}.md", f"::: omnizoo.{name}\n")
    return files
