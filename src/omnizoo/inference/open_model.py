"""Opening what a :class:`~omnizoo.Predictor` is given: a model name, a model, an ``.onnx`` file;
its card and labels. Label files and label counts have one home, :mod:`omnizoo.data.labels`
(:func:`read_label_file` and :func:`check_label_count` are importable from here too)."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..data.labels import check_label_count, read_label_file
from ..errors import ConfigurationError
from ..values.card import is_classification

if TYPE_CHECKING:
    from ..values.data_config import DataConfig

__all__ = [
    "as_image_list",
    "card_or_none",
    "check_label_count",
    "is_module",
    "labels_of",
    "open_model",
    "read_label_file",
]


def labels_of(card_or_model: Any, task: str) -> list[str]:
    """The labels of a card or model; a detection/segmentation module without a card (and
    without num_classes) has none (its outputs are then ``class_i``)."""
    from ..data.labels import get_labels

    try:
        return list(get_labels(card_or_model))
    except ConfigurationError:
        if is_classification(task):
            raise
        return []


def card_or_none(name: str) -> Any:
    from ..data.resolve import card_of
    from ..errors import OmnizooError

    try:
        return card_of(name)
    except OmnizooError:  # hf-hub:/local-dir: names have their card only once built
        return None


def is_module(model: Any) -> bool:
    import torch

    return isinstance(model, torch.nn.Module)


def open_model(
    name_or_model: Any,
    checkpoint_path: Any,
    data_config: DataConfig | None,
    *,
    trust: Any = None,
) -> tuple[Any, Any]:
    """``(model, card)`` for a name, an ``.onnx`` file or a model; torch models in eval mode.
    ``trust``: the globals a name's checkpoint may build (``create_model(trust=...)``)."""
    from ..data.resolve import card_of

    if isinstance(name_or_model, os.PathLike) or (
        isinstance(name_or_model, str) and name_or_model.lower().endswith(".onnx")
    ):
        path = Path(name_or_model)
        if path.suffix.lower() != ".onnx":
            raise ConfigurationError(
                "give a model name, a model or an .onnx file; for a checkpoint use checkpoint_path"
            )
        if checkpoint_path is not None:
            raise ConfigurationError("checkpoint_path goes with a model name, not an .onnx file")
        from .onnxfile import open_onnx_file

        model = open_onnx_file(path, data_config)
        return model, model.omnizoo_card
    if isinstance(name_or_model, str):
        from ..registry.factory import create_model

        if checkpoint_path is not None:
            model = create_model(name_or_model, checkpoint_path=Path(checkpoint_path), trust=trust)
        else:
            model = create_model(name_or_model, pretrained=True, trust=trust)
        card = getattr(model, "omnizoo_card", None) or card_of(name_or_model)
    else:
        if checkpoint_path is not None:
            raise ConfigurationError("checkpoint_path goes with a model name, not a model")
        model = name_or_model
        card = card_of(model)
    if callable(getattr(model, "eval", None)):
        model.eval()  # create_model returns train mode, as timm and torchvision do
    return model, card


def as_image_list(images: Any) -> Iterable[Any]:
    """One image or many -> an iterable of single images (a 4-D tensor is a batch)."""
    import numpy as np

    try:
        import torch

        if isinstance(images, torch.Tensor):
            return list(images.unbind(0)) if images.dim() == 4 else [images]
    except ImportError:  # pragma: no cover
        pass
    if isinstance(images, (str, os.PathLike, bytes, bytearray, memoryview, np.ndarray)):
        return [images]
    from PIL import Image

    if isinstance(images, Image.Image):
        return [images]
    if isinstance(images, Iterable):
        return images  # consumed lazily
    return [images]
