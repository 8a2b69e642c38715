"""What an exported file carries (omnizoo's ``metadata_props``) and writing it into place."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..data.config import DataConfig
from ..data.labels import label_set_for
from ..registry.card import ModelCard
from ..registry.derive import current_card
from ..registry.local import ONNX_CARD_KEY

if TYPE_CHECKING:
    from torch import nn

__all__ = ["build_metadata", "finalise"]


_TWO_GB = 2**31 - 1


def build_metadata(
    model: nn.Module, data: DataConfig, card: Any, folded: bool, exporter: str, shape: Any
) -> dict[str, str]:
    from .._version import __version__

    name = getattr(card, "name", None) or f"{type(model).__module__}.{type(model).__qualname__}"
    c, h, w = shape
    if folded:
        order = "RGB"
        text = (
            f"uint8 NCHW {order} images, 0-255, already resized and cropped to {h}x{w} as "
            "omnizoo.data_config says; scaling and mean/std normalisation are in the graph"
        )
    else:
        text = (
            f"float32 NCHW tensors of {c}x{h}x{w}, preprocessed exactly as omnizoo.data_config "
            f"says (value range {list(data.value_range)}, {data.color_order}, mean/std applied)"
        )
    label_set = None
    if isinstance(card, ModelCard):
        card = current_card(model, card)  # a head replaced by hand: not the old label set
        label_set = label_set_for(card)  # timm cards name none: inferred, as get_labels does
    meta = {
        "omnizoo.version": __version__,
        "omnizoo.card": str(name),
        "omnizoo.data_config": json.dumps(data.to_dict(), sort_keys=True),
        "omnizoo.label_set": str(label_set or ""),
        "omnizoo.label_offset": str(getattr(card, "label_offset", 0) or 0),
        "omnizoo.output": str(getattr(card, "output", "logits") or "logits"),
        "omnizoo.preprocessing_folded": "1" if folded else "0",
        "omnizoo.input": text,
        "omnizoo.exporter": exporter,
    }
    report = getattr(model, "omnizoo_load_report", None)
    if report is not None:  # a model from create_model: say where its weights came from
        source = getattr(report, "source_file", None)
        meta["omnizoo.weights"] = Path(source).name if source else "none (random init)"
    num_classes = getattr(card, "num_classes", None)
    if num_classes is not None:
        meta["omnizoo.num_classes"] = str(num_classes)
    categories = getattr(card, "categories", None)
    if categories:
        meta["omnizoo.categories"] = json.dumps(list(categories))
    if isinstance(card, ModelCard):  # the whole card: omnizoo.read_card(path) gives it back
        meta[ONNX_CARD_KEY] = json.dumps(dataclasses.replace(card, data=data).to_dict())
    return meta


def _safe_size(proto: Any) -> bool:
    try:
        proto.ByteSize()
        return True
    except Exception:  # protobuf refuses to size messages over 2 GB
        return False


def finalise(tmp_file: Path, final_name: str, metadata: dict[str, str], doc: str) -> list[Path]:
    """Add metadata and re-save as one .onnx (+ one .data file when > 2 GB); the files made."""
    try:
        import onnx
    except ImportError as exc:
        from ..errors import DependencyError, pip_install

        raise DependencyError(f"ONNX export needs onnx: {pip_install('export')}") from exc

    proto = onnx.load(str(tmp_file), load_external_data=True)
    existing = {p.key: p for p in proto.metadata_props}
    for key, value in metadata.items():
        if key in existing:
            existing[key].value = value
        else:
            entry = proto.metadata_props.add()
            entry.key, entry.value = key, value
    proto.doc_string = doc
    proto.producer_name = proto.producer_name or "pytorch"
    out_dir = tmp_file.parent / "final"
    out_dir.mkdir()
    out = out_dir / final_name
    large = proto.ByteSize() > _TWO_GB if _safe_size(proto) else True
    if large:
        data_name = final_name + ".data"
        onnx.save_model(
            proto,
            str(out),
            save_as_external_data=True,
            all_tensors_to_one_file=True,
            location=data_name,
            size_threshold=1024,
        )
        return [out, out_dir / data_name]
    onnx.save_model(proto, str(out))
    return [out]
