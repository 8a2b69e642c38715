"""The front door, the settings and the error hierarchy."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import omnizoo
from omnizoo import errors, settings


def test_all_is_sorted_and_resolves() -> None:
    assert omnizoo.__all__ == sorted(omnizoo.__all__)
    for name in omnizoo.__all__:
        assert getattr(omnizoo, name) is not None, name


def test_import_is_cheap() -> None:
    heavy = "'torch','timm','torchvision','onnxruntime','pretrainedmodels','efficientnet_pytorch'"
    code = f"import sys, omnizoo; print(sorted(m for m in ({heavy}) if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize(
    ("cls", "builtin"),
    [
        (errors.UnknownModelError, LookupError),
        (errors.NoPretrainedWeightsError, LookupError),
        (errors.InvalidNameError, ValueError),
        (errors.ConfigurationError, ValueError),
        (errors.UnsupportedError, ValueError),
        (errors.DependencyError, ImportError),
        (errors.DownloadError, OSError),
        (errors.OfflineError, OSError),
        (errors.RemoteNotFoundError, OSError),
        (errors.HashMismatchError, OSError),
        (errors.NotAWeightsFileError, OSError),
        (errors.FormatMismatchError, OSError),
        (errors.UnpinnedError, OSError),
        (errors.NotInLockError, OSError),
        (errors.LockFileError, ValueError),
        (errors.CacheError, OSError),
        (errors.CheckpointError, ValueError),
        (errors.UnsafeCheckpointError, ValueError),
        (errors.ImageLoadError, OSError),
        (errors.BackendError, RuntimeError),
        (errors.ExportError, RuntimeError),
    ],
)
def test_errors_inherit_builtin_and_base(cls: type[Exception], builtin: type[Exception]) -> None:
    assert issubclass(cls, errors.OmnizooError)
    assert issubclass(cls, builtin)


def test_error_messages_are_plain() -> None:
    exc = errors.UnknownModelError("resnet5", ["resnet50", "resnet18"])
    assert str(exc) == "unknown model 'resnet5'; did you mean 'resnet50', 'resnet18'?"
    assert str(errors.DownloadError("boom", url="http://x")) == "boom"


def test_settings_parse(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setenv("OMNIZOO_HOME", str(tmp_path))
    monkeypatch.setenv("OMNIZOO_OFFLINE", "1")
    monkeypatch.setenv(
        "OMNIZOO_MIRRORS",
        json.dumps({"https://a/": ["http://m1/", "http://m2/"], "https://b/": "http://m3/"}),
    )
    monkeypatch.setenv("OMNIZOO_SOURCE_ORDER", "timm,onnx")
    monkeypatch.setenv("OMNIZOO_LOCK", "~/project/omnizoo.lock")
    monkeypatch.setenv("OMNIZOO_HF_ORIGIN", "https://hub.internal/")
    settings.reset()
    s = settings.get_settings()
    assert s.lock is not None and s.lock.name == "omnizoo.lock" and "~" not in str(s.lock)
    assert s.hf_origin == "https://hub.internal"
    assert s.home == tmp_path and s.offline
    assert s.mirrors == {"https://a/": ("http://m1/", "http://m2/"), "https://b/": ("http://m3/",)}
    assert s.source_order == ("timm", "onnx")  # the rest follow in the table's order
    assert omnizoo.list_sources() == [
        "timm",
        "onnx",
        "torchvision",
        "cadene",
        "efficientnet",
        "user",
    ]
    assert s.weights_dir == tmp_path / "weights"


@pytest.mark.parametrize(
    ("var", "value", "fragment"),
    [
        ("OMNIZOO_OFFLINE", "maybe", "OMNIZOO_OFFLINE='maybe' is not a boolean"),
        ("OMNIZOO_MIRRORS", "{not json", "OMNIZOO_MIRRORS is not valid JSON"),
        ("OMNIZOO_MIRRORS", "[1]", "must be a JSON object"),
        ("OMNIZOO_MIRRORS", '{"https://a/": 3}', "must be a URL prefix or a list"),
        ("OMNIZOO_SOURCE_ORDER", "timm,ke ras", "not a comma list of source names"),
        ("OMNIZOO_READ_TIMEOUT", "soon", "is not a number"),
        ("OMNIZOO_RETRIES", "2.5", "must be an integer"),
        ("OMNIZOO_HF_ORIGIN", "huggingface.co", "is not an http(s) URL"),
    ],
)
def test_settings_errors_name_value_and_fix(
    monkeypatch: pytest.MonkeyPatch, var: str, value: str, fragment: str
) -> None:
    monkeypatch.setenv(var, value)
    settings.reset()
    with pytest.raises(errors.ConfigurationError, match=None) as info:
        settings.get_settings()
    assert fragment in str(info.value)


def test_unknown_source_in_order_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    # the order is checked against the table of sources where it is used
    monkeypatch.setenv("OMNIZOO_SOURCE_ORDER", "timm,keras")
    settings.reset()
    with pytest.raises(errors.ConfigurationError, match=r"unknown source\(s\) \['keras'\]"):
        omnizoo.list_sources()


def test_settings_override_restores() -> None:
    before = settings.get_settings()
    with settings.override(offline=True) as s:
        assert s.offline and settings.get_settings().offline
    assert settings.get_settings() == before
