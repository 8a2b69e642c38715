"""Shared fixtures. Every test runs offline against a private OMNIZOO_HOME.

* The card index is built once per test session (a session-wide home, set up before
  collection so that tests can be parametrised over ``omnizoo.list_models()``) because
  building it imports timm and torchvision; tests that need an empty weights cache ask for
  ``isolated_home``.
* No OMNIZOO_* variable of the developer's shell leaks into a test, nor any Hugging Face one
  (HF_TOKEN, HF_HUB_OFFLINE, ...); TORCH_HOME and HF_HOME point at empty folders, so files in
  the developer's own torch.hub and Hugging Face caches are never adopted by a test.
* Expensive artefacts are made once per session (under pytest-xdist: once per worker, each
  worker being its own session): the real EfficientNet-Lite0 checkpoint in timm's keys
  (``lite0_checkpoint``) and its ONNX export (``lite0_onnx``). They are shared, so they are
  read-only: a test that changes one works on a copy, and the session checks at its end that
  no test changed them.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from hubfiles import hub, hub_home  # noqa: F401  (a Hub-like origin and its empty cache)
from omnizoo import settings
from weightserver import weight_server  # noqa: F401  (the loopback weights server fixture)

_ENV_PREFIXES = ("OMNIZOO_", "HF_", "HUGGINGFACE_", "TORCH_HOME")


_SESSION_HOME: Path | None = None


def pytest_configure(config: pytest.Config) -> None:
    """Before collection: a private OMNIZOO_HOME for the whole session, so that parametrising
    over the registry never touches (or depends on) the developer's own cache."""
    global _SESSION_HOME
    _SESSION_HOME = Path(tempfile.mkdtemp(prefix="omnizoo-test-home-"))
    for key in list(os.environ):
        if key.startswith(_ENV_PREFIXES):
            del os.environ[key]
    os.environ["OMNIZOO_HOME"] = str(_SESSION_HOME)
    os.environ.update(_empty_ecosystem(_SESSION_HOME))
    settings.reset()


def _empty_ecosystem(home: Path) -> dict[str, str]:
    """TORCH_HOME and HF_HOME in the session's folder (empty unless a test fills them)."""
    return {"TORCH_HOME": str(home / "torch-home"), "HF_HOME": str(home / "hf-home")}


def pytest_unconfigure(config: pytest.Config) -> None:
    if _SESSION_HOME is not None:
        shutil.rmtree(_SESSION_HOME, ignore_errors=True)


@pytest.fixture(scope="session")
def session_home() -> Path:
    """An OMNIZOO_HOME shared by the whole session (card index built once)."""
    assert _SESSION_HOME is not None
    return _SESSION_HOME


def _shared_artefact(path: Path) -> Iterator[Path]:
    """Hand out ``path`` read-only; at the session's end, fail if a test changed its bytes."""
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    path.chmod(0o444)
    yield path
    assert hashlib.sha256(path.read_bytes()).hexdigest() == digest, (
        f"a test changed the shared {path.name}: copy a session artefact before changing it"
    )


@pytest.fixture(scope="session")
def lite0_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The real EfficientNet-Lite0 weights as a timm ``tf_efficientnet_lite0`` checkpoint
    (a ``.pth`` state dict), written once per session."""
    import torch

    from lite0_weights import timm_state_dict

    path = tmp_path_factory.mktemp("lite0") / "lite0_timm.pth"
    torch.save(timm_state_dict(), path)
    yield from _shared_artefact(path)


@pytest.fixture(scope="session")
def lite0_onnx(lite0_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """timm's tf_efficientnet_lite0 with the real weights, exported by omnizoo (its card,
    labels and preprocessing in the file's metadata), once per session."""
    from omnizoo import create_model, export_onnx

    model = create_model("timm:tf_efficientnet_lite0", checkpoint_path=lite0_checkpoint)
    path = export_onnx(model.eval(), tmp_path_factory.mktemp("lite0-onnx") / "lite0.onnx")
    yield from _shared_artefact(path)


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch, session_home: Path) -> Iterator[None]:
    for key in list(os.environ):
        if key.startswith(_ENV_PREFIXES):
            monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("OMNIZOO_HOME", str(session_home))
    monkeypatch.setenv("OMNIZOO_PROGRESS", "0")
    for key, value in _empty_ecosystem(session_home).items():
        monkeypatch.setenv(key, value)
    settings.reset()
    yield
    settings.reset()


@pytest.fixture
def isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh, empty OMNIZOO_HOME for this test only."""
    home = tmp_path / "omnizoo-home"
    monkeypatch.setenv("OMNIZOO_HOME", str(home))
    settings.reset()
    return home


#: Test files that must not run beside themselves on two xdist workers: each starts a Ray
#: cluster sized for the whole machine, or races processes against a clock-bound lock.
_SERIAL_GROUPS = {
    "test_distributed.py": "ray",
    "test_weights_concurrency.py": "processes",
    "test_weights_prune_race.py": "processes",
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Group the files above on one xdist worker each (``make test`` runs ``-n auto --dist
    loadgroup``; without xdist the marker is inert), and skip ``cuda``-marked tests cleanly on
    machines without a GPU."""
    for item in items:
        group = _SERIAL_GROUPS.get(item.path.name)
        if group is not None:
            item.add_marker(pytest.mark.xdist_group(group))
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except Exception:  # pragma: no cover - torch missing or broken
        has_cuda = False
    if has_cuda:
        return
    skip = pytest.mark.skip(reason="needs a CUDA device (none on this machine)")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)
