"""omnizoo: one registry, one ``create_model`` and one verified weights cache over
torchvision, timm, pretrainedmodels (Cadene), efficientnet_pytorch and the ONNX model zoo.

>>> import omnizoo
>>> "torchvision" in omnizoo.list_sources()
True

``omnizoo.__all__`` is the public API; every other module is internal. Attributes are loaded
lazily so that ``import omnizoo`` imports neither torch nor any model library.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._version import __version__
from .errors import (
    BackendError,
    CacheError,
    CheckpointError,
    ConfigurationError,
    DependencyError,
    DownloadError,
    ExportError,
    HashMismatchError,
    ImageLoadError,
    IntegrityError,
    InvalidNameError,
    MetadataError,
    NoPretrainedWeightsError,
    NotAWeightsFileError,
    OfflineError,
    OmnizooError,
    RemoteNotFoundError,
    UnknownModelError,
    UnknownSourceError,
    UnsafeCheckpointError,
    UnsupportedError,
)

# public name -> module that defines it (imported on first attribute access)
_LAZY: dict[str, str] = {
    "DataConfig": "omnizoo.values.data_config",
    "FeatureInfo": "omnizoo.sources.features",
    "LoadReport": "omnizoo.loading.report",
    "ModelCard": "omnizoo.values.card",
    "Prediction": "omnizoo.inference.predictor",
    "Predictor": "omnizoo.inference.predictor",
    "Resolution": "omnizoo.registry.resolution",
    "WeightsFile": "omnizoo.values.card",
    "benchmark": "omnizoo.inference.benchmark",
    "compute_mean_std": "omnizoo.data.stats",
    "create_model": "omnizoo.registry.factory",
    "create_transform": "omnizoo.data.transforms",
    "download_weights": "omnizoo.registry.downloads",
    "explain": "omnizoo.registry.resolution",
    "export_onnx": "omnizoo.export.onnx",
    "fit": "omnizoo.finetune.training",
    "freeze": "omnizoo.finetune.freeze",
    "get_card": "omnizoo.registry.registry",
    "get_labels": "omnizoo.data.labels",
    "list_models": "omnizoo.registry.registry",
    "list_sources": "omnizoo.registry.resolution",
    "param_groups": "omnizoo.finetune.param_groups",
    "read_card": "omnizoo.saved.folder",
    "register_model": "omnizoo.sources.user",
    "reset_classifier": "omnizoo.finetune.heads",
    "resolve_data_config": "omnizoo.data.resolve",
    "save_pretrained": "omnizoo.finetune.pretrained",
    "trainable_summary": "omnizoo.finetune.freeze",
    "unfreeze": "omnizoo.finetune.freeze",
    "validate": "omnizoo.inference.validate",
}

__all__ = [
    "BackendError",
    "CacheError",
    "CheckpointError",
    "ConfigurationError",
    "DataConfig",
    "DependencyError",
    "DownloadError",
    "ExportError",
    "FeatureInfo",
    "HashMismatchError",
    "ImageLoadError",
    "IntegrityError",
    "InvalidNameError",
    "LoadReport",
    "MetadataError",
    "ModelCard",
    "NoPretrainedWeightsError",
    "NotAWeightsFileError",
    "OfflineError",
    "OmnizooError",
    "Prediction",
    "Predictor",
    "RemoteNotFoundError",
    "Resolution",
    "UnknownModelError",
    "UnknownSourceError",
    "UnsafeCheckpointError",
    "UnsupportedError",
    "WeightsFile",
    "__version__",
    "benchmark",
    "compute_mean_std",
    "create_model",
    "create_transform",
    "download_weights",
    "explain",
    "export_onnx",
    "fit",
    "freeze",
    "get_card",
    "get_labels",
    "list_models",
    "list_sources",
    "param_groups",
    "read_card",
    "register_model",
    "reset_classifier",
    "resolve_data_config",
    "save_pretrained",
    "trainable_summary",
    "unfreeze",
    "validate",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'omnizoo' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from .data.labels import get_labels
    from .data.resolve import resolve_data_config
    from .data.stats import compute_mean_std
    from .data.transforms import create_transform
    from .export.onnx import export_onnx
    from .finetune.freeze import freeze, trainable_summary, unfreeze
    from .finetune.heads import reset_classifier
    from .finetune.param_groups import param_groups
    from .finetune.pretrained import save_pretrained
    from .finetune.training import fit
    from .inference.benchmark import benchmark
    from .inference.predictor import Prediction, Predictor
    from .inference.validate import validate
    from .loading.report import LoadReport
    from .registry.downloads import download_weights
    from .registry.factory import create_model
    from .registry.registry import get_card, list_models
    from .registry.resolution import Resolution, explain, list_sources
    from .saved.folder import read_card
    from .sources.features import FeatureInfo
    from .sources.user import register_model
    from .values.card import ModelCard, WeightsFile
    from .values.data_config import DataConfig
