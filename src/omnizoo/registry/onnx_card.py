"""The one reader of an ``.onnx`` file's omnizoo metadata (what ``export_onnx`` writes).

``omnizoo.read_card(path)``, ``get_card(path)``, ``Predictor("x.onnx")`` and ``omnizoo predict
x.onnx`` all read a file through :func:`read_onnx`, so they see the same card. The file is
hostile input: it is read through :func:`omnizoo.weights.fsafe.read_input` (a regular file,
size-capped; a FIFO or device is refused without blocking), every ``omnizoo.*`` value is
checked by :mod:`omnizoo.schema`, and a classifier's class count, its categories and the
legacy ``omnizoo.num_classes`` must all agree with the width of the graph's output when the
graph declares it. A violation is one :class:`~omnizoo.errors.MetadataError` naming the file
and the key.

Keys read (all text, as ONNX stores them): ``omnizoo.card_json`` (the whole
:class:`~omnizoo.registry.card.ModelCard` as JSON), ``omnizoo.data_config`` (JSON: the input
the graph takes), ``omnizoo.card`` (the model's name), ``omnizoo.num_classes``,
``omnizoo.categories`` (a JSON list), ``omnizoo.label_set``, ``omnizoo.label_offset``,
``omnizoo.output``, ``omnizoo.preprocessing_folded`` (``"0"``/``"1"``), ``omnizoo.exporter``
and ``omnizoo.weights``. Files written before ``omnizoo.card_json`` existed get a card rebuilt
from the other keys; other keys are ignored.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..data.config import DataConfig
from ..errors import ConfigurationError, MetadataError
from ..schema import MAX_CLASSES, MAX_METADATA_BYTES, Fields, parse_json
from .card import ModelCard, is_classification
from .card_schema import OUTPUTS, card_from_fields

__all__ = ["MAX_ONNX_BYTES", "ONNX_CARD_KEY", "OnnxFile", "read_onnx"]

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
    from .names import parse_name, split_body

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
