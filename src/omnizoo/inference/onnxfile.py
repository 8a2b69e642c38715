"""``Predictor("model.onnx")``: an ONNX file as a model with a card, straight to onnxruntime.

Files written by :func:`omnizoo.export_onnx` carry what the Predictor needs in their
``metadata_props``: the DataConfig (``omnizoo.data_config``), the labels (``omnizoo.label_set``,
``omnizoo.categories``, ``omnizoo.label_offset``), the output kind (``omnizoo.output``). For
any other file, ``data_config=`` is required (and ``labels=`` names the outputs; without it
they are numbered). A graph exported with its preprocessing folded in (uint8 input) is refused:
the Predictor feeds float tensors.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ConfigurationError, UnsupportedError

if TYPE_CHECKING:
    from ..data.config import DataConfig

__all__ = ["onnx_file_card", "open_onnx_file"]


def _num_outputs(proto: Any) -> int | None:
    dims = proto.graph.output[0].type.tensor_type.shape.dim if proto.graph.output else []
    last = dims[-1].dim_value if len(dims) >= 2 else 0
    if len(dims) == 4 and dims[2].dim_value == 1 and dims[3].dim_value == 1:
        last = dims[1].dim_value  # [N, C, 1, 1] heads
    return int(last) if last else None


def onnx_file_card(path: Path, data_config: DataConfig | None = None) -> Any:
    """A :class:`~omnizoo.registry.card.ModelCard` for an ONNX file, from its metadata."""
    import onnx

    from ..data.config import DataConfig
    from ..registry.card import ModelCard

    if not path.is_file():
        raise ConfigurationError(f"{path}: no such ONNX file")
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as exc:
        raise ConfigurationError(f"{path} is not a readable ONNX file: {exc}") from None
    meta = {p.key: p.value for p in proto.metadata_props}
    if meta.get("omnizoo.preprocessing_folded") == "1":
        raise UnsupportedError(
            f"{path} takes uint8 images with the preprocessing folded in; the Predictor feeds "
            "float tensors: export with fold_preprocessing=False for it"
        )
    data = data_config
    if data is None and "omnizoo.data_config" in meta:
        data = DataConfig.from_dict(json.loads(meta["omnizoo.data_config"]))
    if data is None:
        raise ConfigurationError(
            f"{path} does not say how its input is preprocessed (it was not exported by "
            "omnizoo): pass data_config= (e.g. resolve_data_config('resnet50')) and labels="
        )
    categories = json.loads(meta["omnizoo.categories"]) if "omnizoo.categories" in meta else None
    num_classes = meta.get("omnizoo.num_classes")
    n = int(num_classes) if num_classes else _num_outputs(proto)
    return ModelCard(
        source="file",
        arch=path.name,
        task="classification",
        num_classes=n if n is not None else (len(categories) if categories else 1000),
        label_set=meta.get("omnizoo.label_set") or None,
        categories=tuple(categories) if categories else None,
        label_offset=int(meta.get("omnizoo.label_offset") or 0),
        data=data,
        output=meta.get("omnizoo.output") or "logits",
        notes=(f"ONNX file {path}",),
    )


def open_onnx_file(path: Path, data_config: DataConfig | None = None) -> Any:
    """An :class:`~omnizoo.sources.onnx.model.OnnxModel` for ``path`` with its card."""
    from ..sources.onnx.model import OnnxModel

    return OnnxModel(path, card=onnx_file_card(path, data_config))
