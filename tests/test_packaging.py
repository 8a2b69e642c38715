"""Packaging by extras: the core install is torch + torchvision (and small pure-Python
helpers); each other source is an extra. A source whose library is missing lists nothing and
its names fail with the exact ``pip install "omnizoo[...]"``. Also: ``python -m omnizoo``,
Project-URLs, lower bounds that ``make test-oldest`` installs and tests, an sdist that carries
(and runs) its tests.

The core-only install is simulated in a subprocess whose ``sitecustomize`` wraps every
``sys.meta_path`` finder so that none finds an optional library, as if it were not installed
(``importlib.util.find_spec`` gives None for it, ``import`` raises ``ModuleNotFoundError``).
A real fresh core-only venv needs the network for torch: that test is marked slow.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import textwrap
from pathlib import Path
from typing import Any

import pytest
import tomllib

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PROJECT = PYPROJECT["project"]

#: extra -> the top-level modules it installs (what the blocker refuses in a core install).
EXTRA_MODULES = {
    "timm": ("timm",),
    "cadene": ("pretrainedmodels", "munch"),
    "efficientnet": ("efficientnet_pytorch",),
    "onnx": ("onnx", "onnxruntime"),
    "export": ("onnxscript",),
    "plot": ("matplotlib",),
    "ray": ("ray", "pyarrow"),
}

BLOCKER = """
import sys

BLOCKED = {blocked!r}


class _NotInstalled:
    \"\"\"A finder of sys.meta_path that no longer finds the optional libraries.\"\"\"

    def __init__(self, inner):
        self.inner = inner

    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            return None
        find = getattr(self.inner, "find_spec", None)
        return None if find is None else find(name, path, target)

    def __getattr__(self, attr):
        return getattr(self.inner, attr)


sys.meta_path[:] = [_NotInstalled(finder) for finder in sys.meta_path]
"""


def _requirement(spec: str) -> tuple[str, str | None]:
    m = re.match(r"^([A-Za-z0-9_.\-]+)(?:\[[^\]]*\])?\s*(?:>=\s*([\w.]+))?", spec)
    assert m, spec
    return m.group(1), m.group(2)


def test_the_core_is_torch_and_torchvision_and_each_source_is_an_extra() -> None:
    core = {_requirement(r)[0].lower() for r in PROJECT["dependencies"]}
    assert {"torch", "torchvision"} <= core
    heavy = {"timm", "pretrainedmodels", "efficientnet_pytorch", "onnx", "onnxruntime"}
    assert not core & heavy, core & heavy
    extras = {
        k: {_requirement(r)[0].lower() for r in v}
        for k, v in PROJECT["optional-dependencies"].items()
    }
    assert extras["timm"] == {"timm"}
    assert "pretrainedmodels" in extras["cadene"]
    assert extras["efficientnet"] == {"efficientnet_pytorch"}
    assert extras["onnx"] == {"onnx", "onnxruntime"}
    assert {"onnx", "onnxruntime", "onnxscript"} <= extras["export"]
    assert extras["all"] == {"omnizoo"}
    (everything,) = PROJECT["optional-dependencies"]["all"]
    assert set(everything.split("[", 1)[1].rstrip("]").split(",")) == set(EXTRA_MODULES)
    # each source names the extra that installs it
    from omnizoo.registry.adapters import get_adapter

    for source, extra in [
        ("timm", "timm"),
        ("cadene", "cadene"),
        ("efficientnet", "efficientnet"),
        ("onnx", "onnx"),
    ]:
        assert get_adapter(source).extra == extra


def _lower_bounds_script() -> Any:
    spec = importlib.util.spec_from_file_location("lower_bounds", ROOT / "scripts/lower_bounds.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _declared_bounds() -> dict[str, str]:
    """Normalised name -> lower bound, read here independently of scripts/lower_bounds.py."""
    specs = list(PROJECT["dependencies"])
    for name, values in PROJECT["optional-dependencies"].items():
        if name != "all":
            specs += values
    bounds: dict[str, set[str]] = {}
    for spec in specs:
        name, bound = _requirement(spec)
        assert bound is not None, f"{spec}: no lower bound"
        bounds.setdefault(re.sub(r"[-_.]+", "-", name).lower(), set()).add(bound)
    several = {k: v for k, v in bounds.items() if len(v) > 1}
    assert not several, f"one package, several lower bounds: {several}"
    return {k: v.pop() for k, v in sorted(bounds.items())}


def test_every_requirement_has_one_lower_bound_and_lower_bounds_py_pins_it() -> None:
    """The constraints `make test-oldest` installs are exactly pyproject's lower bounds."""
    declared = _declared_bounds()
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts/lower_bounds.py")],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert done.stdout.split() == [f"{k}=={v}" for k, v in declared.items()]
    assert {"torch", "torchvision", "numpy", "pillow", "timm", "onnx", "onnxruntime"} <= set(
        declared
    )


def test_lower_bounds_py_refuses_two_bounds_for_one_package(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(
        '[project]\ndependencies = ["numpy>=1.26.0"]\n'
        '[project.optional-dependencies]\nplot = ["NumPy>=2.0.0"]\nall = ["x[plot]"]\n'
    )
    with pytest.raises(ValueError, match=r"numpy: two lower bounds \(1\.26\.0 and 2\.0\.0\)"):
        _lower_bounds_script().lower_bounds(tmp_path / "pyproject.toml")


def test_every_bound_has_a_reason_beside_it() -> None:
    """pyproject says, on each requirement's line, which feature sets its bound (the dev
    tools excepted: they are no promise to users)."""
    text = (ROOT / "pyproject.toml").read_text()
    lines = text.split("[project]", 1)[1].split("\n[project.scripts]", 1)[0].splitlines()
    specs = list(PROJECT["dependencies"])
    for name, values in PROJECT["optional-dependencies"].items():
        if name not in ("all", "dev"):
            specs += values
    for spec in specs:
        found = [ln for ln in lines if f'"{spec}"' in ln]
        assert found, spec
        assert all("#" in ln.split(f'"{spec}"', 1)[1] for ln in found), (
            f"{spec}: say beside it which feature sets this bound"
        )


def test_installed_versions_are_within_the_declared_ranges() -> None:
    """Inside `make test-oldest`'s venv (it leaves floors.txt there): every package is exactly
    at its bound, and floors.txt is the current pyproject's, so raising a bound without
    re-running test-oldest fails here. Anywhere else (`make test`): nothing is below a bound,
    so a bound raised above what the newest venv holds fails too."""
    from packaging.version import Version

    declared = _declared_bounds()
    floors = Path(sys.prefix) / "floors.txt"
    if floors.is_file():
        assert floors.read_text().split() == [f"{k}=={v}" for k, v in declared.items()], (
            "pyproject's lower bounds changed since `make test-oldest` installed this venv"
        )
    for name, bound in declared.items():
        installed = importlib.metadata.version(name)
        if floors.is_file():
            assert Version(installed) == Version(bound), f"{name} {installed}, bound {bound}"
        else:
            assert Version(installed) >= Version(bound), f"{name} {installed} < bound {bound}"


def test_make_test_installs_the_newest_and_test_oldest_the_floors() -> None:
    """The Makefile keeps the promises scripts/lower_bounds.py's docstring makes."""
    make = (ROOT / "Makefile").read_text()
    recipes = dict(re.findall(r"^(\S+):[^\n]*\n((?:\t[^\n]*\n)+)", make, flags=re.M))
    newest = recipes["$(STAMP)"]
    assert "lower_bounds" not in newest and " -c " not in newest
    assert "--upgrade" in newest
    oldest = recipes["$(OLD_STAMP)"]
    assert "scripts/lower_bounds.py > $(OLD_VENV)/floors.txt" in oldest
    assert "-c $(OLD_VENV)/floors.txt" in oldest
    assert recipes["test-oldest"].replace("OLD_PY", "PY") == recipes["test"]
    assert ".venv-oldest/" in (ROOT / ".gitignore").read_text().split()
    assert "make test\n" in (ROOT / ".ci/run").read_text()


def test_project_urls_and_the_readme_install_section() -> None:
    urls = PROJECT["urls"]
    assert {"Homepage", "Documentation", "Changelog", "Issues"} <= set(urls)
    assert all(u.startswith("https://") for u in urls.values())
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Install", 1)[1].split("\n## ", 1)[0]
    for extra in (*EXTRA_MODULES, "all"):
        assert f'pip install "omnizoo[{extra}]"' in section, extra
    assert "pip install omnizoo\n" in section


def _core_only(tmp_path: Path, script: str) -> dict[str, object]:
    """Run ``script`` where only the core install is importable; it leaves ``out`` as JSON."""
    site = tmp_path / "core-only"
    site.mkdir()
    blocked = sorted(m for mods in EXTRA_MODULES.values() for m in mods)
    (site / "sitecustomize.py").write_text(BLOCKER.format(blocked=blocked))
    out = tmp_path / "out.json"
    code = textwrap.dedent(script) + f"\nimport json\njson.dump(out, open({str(out)!r}, 'w'))\n"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(site), str(ROOT / "src")]))
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return dict(json.loads(out.read_text()))


def test_a_core_install_lists_torchvision_and_names_the_extra_for_the_rest(
    tmp_path: Path,
) -> None:
    out = _core_only(
        tmp_path,
        """
        import contextlib, io
        import omnizoo
        from omnizoo.cli.main import main

        out = {}
        try:
            import timm  # noqa: F401
            out["timm_importable"] = True
        except ModuleNotFoundError:
            out["timm_importable"] = False
        out["models"] = omnizoo.list_models("resnet1*")
        out["by_source"] = {s: len(omnizoo.list_models(source=s)) for s in omnizoo.list_sources()}
        errors = {}
        for name in ["timm:resnet18", "cadene:resnet18", "efficientnet:efficientnet-b0",
                     "onnx:resnet50-v1-7", "tf_efficientnet_lite0"]:
            try:
                omnizoo.create_model(name)
            except Exception as exc:
                errors[name] = [type(exc).__name__, str(exc)]
        out["errors"] = errors
        model = omnizoo.create_model("torchvision:resnet18")
        out["labels"] = omnizoo.get_labels(model)[:2]
        try:
            omnizoo.export_onnx(model, "unused.onnx", input_size=32)
        except Exception as exc:
            out["export"] = [type(exc).__name__, str(exc)]
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            out["cli_rc"] = main(["info", "timm:resnet18"])
        out["cli_err"] = err.getvalue()
        """,
    )
    assert out["timm_importable"] is False
    assert out["models"] and all(str(n).startswith("torchvision:") for n in out["models"])
    counts = out["by_source"]
    assert isinstance(counts, dict) and counts["torchvision"] > 50
    for source in ("timm", "cadene", "efficientnet", "onnx"):
        assert counts[source] == 0, source
    errors = out["errors"]
    assert isinstance(errors, dict)
    for name, extra in [
        ("timm:resnet18", "timm"),
        ("cadene:resnet18", "cadene"),
        ("efficientnet:efficientnet-b0", "efficientnet"),
        ("onnx:resnet50-v1-7", "onnx"),
    ]:
        kind, message = errors[name]
        assert kind == "DependencyError" and f'pip install "omnizoo[{extra}]"' in message, message
    kind, message = errors["tf_efficientnet_lite0"]  # a bare name: every source that may know it
    assert kind == "UnknownModelError" and 'pip install "omnizoo[timm]"' in message, message
    assert out["labels"] == ["tench", "goldfish"]
    kind, message = out["export"]
    assert kind == "DependencyError" and 'pip install "omnizoo[export]"' in message, message
    assert out["cli_rc"] == 1 and 'pip install "omnizoo[timm]"' in str(out["cli_err"])


def test_python_dash_m_omnizoo() -> None:
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    done = subprocess.run(
        [sys.executable, "-m", "omnizoo", "--version"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    import omnizoo

    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"omnizoo {omnizoo.__version__}"


def test_the_sdist_carries_its_tests_and_runs_them(tmp_path: Path) -> None:
    """Built from the tracked files (offline, no build isolation); unpacked, a test of its
    own suite runs from it."""
    tree = tmp_path / "tree"
    files = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    for name in files:
        if (ROOT / name).is_file():
            (tree / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, tree / name)
    dist = tmp_path / "dist"
    build = (
        "import sys; from setuptools import build_meta; "
        f"print(build_meta.build_sdist({str(dist)!r}))"
    )
    done = subprocess.run(
        [sys.executable, "-c", build], cwd=tree, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    (sdist,) = dist.glob("omnizoo-*.tar.gz")
    with tarfile.open(sdist) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
        tar.extractall(tmp_path / "unpacked", filter="data")
    for needed in (
        "tests/conftest.py",
        "tests/test_packaging.py",
        "tests/weightserver.py",
        "examples/images/cat.jpg",
        "examples/tinyzoo/pyproject.toml",
        "docs/adding-a-source.md",
        "Makefile",
        "src/omnizoo/py.typed",
    ):
        assert needed in names, needed
    (root,) = (tmp_path / "unpacked").iterdir()
    env = dict(os.environ, PYTHONPATH=str(root / "src"))
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_layers.py"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:]
    assert " passed" in done.stdout


@pytest.mark.slow
def test_a_fresh_core_only_venv(tmp_path: Path) -> None:
    """A real venv with only the core install (needs the network for torch: slow, opt-in)."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    py = venv / "bin" / "python"
    subprocess.run([str(py), "-m", "pip", "install", "-q", str(ROOT)], check=True, timeout=3600)
    code = (
        "import omnizoo\n"
        "assert omnizoo.list_models('resnet18*') == ['torchvision:resnet18']\n"
        "try:\n    omnizoo.create_model('timm:resnet18')\nexcept Exception as e:\n"
        "    assert 'pip install \"omnizoo[timm]\"' in str(e), e\nelse:\n    raise SystemExit(1)\n"
    )
    subprocess.run([str(py), "-c", code], check=True, timeout=600, cwd=tmp_path)
