"""``Predictor("model.onnx")``: an ONNX file as a model with a card, straight to onnxruntime.

Files written by :func:`omnizoo.export_onnx` carry their whole card in their
``metadata_props``; it is read by the same reader as ``omnizoo.read_card(path)``
(:func:`omnizoo.saved.onnx_metadata.read_onnx`: every value checked, the class count equal to
the graph's output width), so the Predictor and ``read_card`` see the same card. For any other
file, ``data_config=`` is required (and ``labels=`` names the outputs; without it they are
numbered). A graph exported with its preprocessing folded in (uint8 input) is refused: the
Predictor feeds float tensors.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ConfigurationError, UnsupportedError

if TYPE_CHECKING:
    from ..values.card import ModelCard
    from ..values.data_config import DataConfig

__all__ = ["onnx_file_card", "open_onnx_file"]


def onnx_file_card(path: Path, data_config: DataConfig | None = None) -> ModelCard:
    """The :class:`~omnizoo.values.card.ModelCard` of an ONNX file, from its metadata;
    ``data_config`` overrides (or, for a file omnizoo did not export, supplies) its input."""
    from ..saved.onnx_metadata import read_onnx
    from ..values.card import ModelCard

    info = read_onnx(path)
    if info.folded:
        raise UnsupportedError(
            f"{path} takes uint8 images with the preprocessing folded in; the Predictor feeds "
            "float tensors: export with fold_preprocessing=False for it"
        )
    card = info.card
    if card is not None:
        notes = (*card.notes, f"ONNX file {path}")
        if data_config is not None:
            return dataclasses.replace(card, data=data_config, notes=notes)
        return dataclasses.replace(card, notes=notes)
    if data_config is None:
        raise ConfigurationError(
            f"{path} does not say how its input is preprocessed (it was not exported by "
            "omnizoo): pass data_config= (e.g. resolve_data_config('resnet50')) and labels="
        )
    return ModelCard(
        source="file",
        arch=path.name,
        task="classification",
        num_classes=info.output_width or 1000,
        data=data_config,
        notes=(f"ONNX file {path}",),
    )


def open_onnx_file(path: Path, data_config: DataConfig | None = None) -> Any:
    """An :class:`~omnizoo.sources.onnx.model.OnnxModel` for ``path`` with its card."""
    from ..sources.onnx.model import OnnxModel

    return OnnxModel(path, card=onnx_file_card(path, data_config))
