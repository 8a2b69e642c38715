"""Opening what a :class:`~omnizoo.Predictor` is given: a model name, a model, an ``.onnx`` file;
its card and labels (a label file: :func:`read_label_file`)."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ConfigurationError

if TYPE_CHECKING:
    from ..data.config import DataConfig

__all__ = [
    "as_image_list",
    "card_or_none",
    "check_label_count",
    "is_module",
    "labels_of",
    "open_model",
    "read_label_file",
]


def read_label_file(path: str | os.PathLike[str]) -> list[str]:
    """The labels in a text file, one per line (in output order; blank lines at the end are
    ignored, a blank line before the last label is an error).

    >>> import tempfile, pathlib
    >>> f = pathlib.Path(tempfile.mkdtemp()) / "labels.txt"
    >>> _ = f.write_text("cat\\ndog\\n\\n")
    >>> read_label_file(f)
    ['cat', 'dog']
    """
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise ConfigurationError(f"cannot read the label file {file}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigurationError(f"{file} is not a UTF-8 text file of labels") from None
    lines = [line.strip() for line in text.splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    if not lines:
        raise ConfigurationError(f"the label file {file} holds no labels")
    blank = [n for n, line in enumerate(lines, 1) if not line]
    if blank:
        raise ConfigurationError(
            f"the label file {file} has a blank line {blank[0]}: one label per line, in the "
            "model's output order"
        )
    return lines


def check_label_count(given: int, outputs: int, what: str = "classes") -> None:
    """Refuse labels whose count does not match the model's output size.

    >>> check_label_count(3, 3)
    >>> check_label_count(2, 1000)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    omnizoo.errors.ConfigurationError: 2 labels given, but the model outputs 1000 classes: ...
    """
    if given != outputs:
        raise ConfigurationError(
            f"{given} labels given, but the model outputs {outputs} {what}: give one label per "
            "output, in order"
        )


def labels_of(card_or_model: Any, task: str) -> list[str]:
    """The labels of a card or model; a detection/segmentation module without a card (and
    without num_classes) is labelled by output index."""
    from ..data.labels import get_labels

    try:
        return list(get_labels(card_or_model))
    except ConfigurationError:
        if task in ("classification", "quantized_classification"):
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
    name_or_model: Any, checkpoint_path: Any, data_config: DataConfig | None
) -> tuple[Any, Any]:
    """``(model, card)`` for a name, an ``.onnx`` file or a model; torch models in eval mode."""
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
            model = create_model(name_or_model, checkpoint_path=Path(checkpoint_path))
        else:
            model = create_model(name_or_model, pretrained=True)
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
