"""An ``.onnx`` file's omnizoo metadata: its one reader (:func:`read_onnx`) beside its writer
(:func:`onnx_metadata`, :func:`write_onnx`, what ``export_onnx`` uses).

``omnizoo.read_card(path)``, ``get_card(path)``, ``Predictor("x.onnx")`` and ``omnizoo predict
x.onnx`` all read a file through :func:`read_onnx`, so they see the same card. The file is
hostile input: it is read through :func:`omnizoo.weights.fsafe.read_input` (a regular file,
size-capped; a FIFO or device is refused without blocking), every ``omnizoo.*`` value is
checked by :mod:`omnizoo.schema`, and a classifier's class count, its categories and the
legacy ``omnizoo.num_classes`` must all agree with the width of the graph's output when the
graph declares it. A violation is one :class:`~omnizoo.errors.MetadataError` naming the file
and the key.

Keys read (all text, as ONNX stores them): ``omnizoo.card_json`` (the whole
:class:`~omnizoo.values.card.ModelCard` as JSON), ``omnizoo.data_config`` (JSON: the input
the graph takes), ``omnizoo.card`` (the model's name), ``omnizoo.num_classes``,
``omnizoo.categories`` (a JSON list), ``omnizoo.label_set``, ``omnizoo.label_offset``,
``omnizoo.output``, ``omnizoo.preprocessing_folded`` (``"0"``/``"1"``), ``omnizoo.exporter``
and ``omnizoo.weights``. Files written before ``omnizoo.card_json`` existed get a card rebuilt
from the other keys; other keys are ignored.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ConfigurationError, MetadataError
from ..schema import MAX_CLASSES, MAX_METADATA_BYTES, Fields, parse_json
from ..values.card import ModelCard, is_classification
from ..values.card_fields import OUTPUTS, card_from_fields
from ..values.data_config import DataConfig

if TYPE_CHECKING:
    from torch import nn

__all__ = [
    "MAX_ONNX_BYTES",
    "ONNX_CARD_KEY",
    "OnnxFile",
    "onnx_metadata",
    "read_onnx",
    "write_onnx",
]

#: The key of the whole card in an exported .onnx's metadata.
ONNX_CARD_KEY = "omnizoo.card_json"
#: protobuf cannot parse a message over 2 GiB (larger graphs keep weights in a .data file).
MAX_ONNX_BYTES = 2**31


@dataclass(frozen=True)
class OnnxFile:
    """What an .onnx file says about itself, checked.

    ``card`` is None for a file that omnizoo did not export (no ``omnizoo.card_json`` nor
    ``omnizoo.data_config``); ``output_width`` is the class dimension of the first output when
    the graph fixes it (``[N, C]`` or ``[N, C, 1, 1]``), else None.
    """

    path: Path
    metadata: dict[str, str]
    output_width: int | None
    folded: bool
    card: ModelCard | None


def read_onnx(path: str | Path) -> OnnxFile:
    """Read and check the metadata of the .onnx file ``path`` (its weights are not loaded)."""
    from ..weights import fsafe

    p = Path(path).expanduser()
    try:
        raw = fsafe.read_input(p, MAX_ONNX_BYTES)
    except FileNotFoundError:
        raise ConfigurationError(f"{p}: no such ONNX file") from None
    try:
        import onnx
    except ImportError as exc:
        from ..errors import DependencyError, pip_install

        raise DependencyError(f"reading {p} needs onnx: {pip_install('onnx')}") from exc
    try:
        proto = onnx.load_model_from_string(raw)
    except Exception as exc:  # protobuf's DecodeError and friends
        raise MetadataError(str(p), None, f"not a readable ONNX file ({exc})") from None
    del raw
    meta = _metadata(proto, p)
    width = _output_width(proto)
    f = Fields(meta, p)
    folded = f.choice("omnizoo.preprocessing_folded", ("0", "1"), "0") == "1"
    card = _card(f, meta, width)
    return OnnxFile(path=p, metadata=meta, output_width=width, folded=folded, card=card)


def _metadata(proto: Any, path: Path) -> dict[str, str]:
    meta: dict[str, str] = {}
    total = 0
    for prop in proto.metadata_props:
        total += len(prop.key) + len(prop.value)
        if total > MAX_METADATA_BYTES:
            raise MetadataError(
                str(path), None, f"metadata larger than {MAX_METADATA_BYTES:,} bytes; not read"
            )
        meta[prop.key] = prop.value
    return meta


def _output_width(proto: Any) -> int | None:
    """The class width a classifier's first output declares, or None when it is not fixed."""
    if not proto.graph.output:
        return None
    dims = proto.graph.output[0].type.tensor_type.shape.dim
    values = [d.dim_value if d.HasField("dim_value") else 0 for d in dims]
    if len(values) == 4 and values[2:] == [1, 1]:
        values = values[:2]  # [N, C, 1, 1] heads
    if len(values) != 2 or values[1] <= 0:
        return None  # a feature map, a detector's boxes or a dynamic width: nothing to check
    return int(values[1])


def _card(f: Fields, meta: dict[str, str], width: int | None) -> ModelCard | None:
    """The card the metadata holds, checked against itself and the graph; None if none."""
    parsed: dict[str, Any] = dict(meta)
    for key in (ONNX_CARD_KEY, "omnizoo.data_config", "omnizoo.categories"):
        if key in meta:
            parsed[key] = parse_json(meta[key], str(f.path), key)
    f = Fields(parsed, f.path)
    data_fields = f.optional_object("omnizoo.data_config")
    data = None if data_fields is None else DataConfig.from_fields(data_fields)
    categories = f.optional_str_list("omnizoo.categories", max_items=MAX_CLASSES)
    legacy_n = f.optional_integer("omnizoo.num_classes", lo=0, hi=MAX_CLASSES)
    legacy = {
        "label_set": f.optional_text("omnizoo.label_set", max_len=256) or None,
        "label_offset": f.optional_integer("omnizoo.label_offset", lo=0, hi=1) or 0,
        "output": f.choice("omnizoo.output", OUTPUTS, "logits"),
    }
    whole = f.optional_object(ONNX_CARD_KEY)
    if whole is not None:
        card = card_from_fields(whole)
        where = f"{ONNX_CARD_KEY}.num_classes"
        if data is not None:
            card = dataclasses.replace(card, data=data)  # the input the graph itself takes
    elif data is not None:
        card = _legacy_card(f, data, categories, legacy_n, width, legacy)
        where = "omnizoo.num_classes"
    else:
        return None
    n = card.num_classes
    if legacy_n is not None and legacy_n != n:
        raise f.error("omnizoo.num_classes", f"{legacy_n}, but {ONNX_CARD_KEY} says {n}")
    if categories is not None and len(categories) not in (n, n - card.label_offset):
        raise f.error("omnizoo.categories", f"{len(categories)} names for {n} classes")
    if width is not None and n and is_classification(card.task) and n != width:
        raise f.error(where, f"{n} classes, but the graph's output has {width}")
    extra = dict(card.extra)
    extra["onnx"] = {
        "path": str(f.path),
        "preprocessing_folded": meta.get("omnizoo.preprocessing_folded") == "1",
        "exporter": f.optional_text("omnizoo.exporter", max_len=256),
        "weights": f.optional_text("omnizoo.weights", max_len=4096),
    }
    return dataclasses.replace(card, extra=extra)


def _legacy_card(
    f: Fields,
    data: DataConfig,
    categories: list[str] | None,
    num_classes: int | None,
    width: int | None,
    legacy: dict[str, Any],
) -> ModelCard:
    """A card from the ``omnizoo.*`` keys every export has written."""
    from ..values.names import parse_name, split_body

    path = Path(f.path)
    name = f.optional_text("omnizoo.card", max_len=512) or "onnx:exported"
    try:
        parsed = parse_name(name)
        source, (arch, tag) = parsed.source or "onnx", split_body(parsed.body)[-1]
    except Exception:  # any name this omnizoo cannot parse: the file's own name
        source, arch, tag = "onnx", path.stem, None
    if num_classes is None:
        num_classes = width or (len(categories) + legacy["label_offset"] if categories else 1000)
    return ModelCard(
        source=source,
        arch=arch,
        tag=tag,
        num_classes=num_classes,
        categories=tuple(categories) if categories else None,
        data=data,
        **legacy,
        notes=(f"card rebuilt from the metadata of {path.name}",),
    )


_TWO_GB = 2**31 - 1


def onnx_metadata(
    model: nn.Module,
    data: DataConfig,
    card: Any,
    label_set: str | None,
    folded: bool,
    exporter: str,
    shape: Any,
) -> dict[str, str]:
    """The ``metadata_props`` ``export_onnx`` writes (what :func:`read_onnx` reads back):
    ``card`` is the card of the model as it is now (``registry.derive.current_card``),
    ``label_set`` the label set its classes are named by."""
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


def write_onnx(tmp_file: Path, final_name: str, metadata: dict[str, str], doc: str) -> list[Path]:
    """Add ``metadata`` to the exported graph ``tmp_file`` and save it as one .onnx (+ one
    .data file when > 2 GB) in a new ``final/`` folder beside it; the files made."""
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
