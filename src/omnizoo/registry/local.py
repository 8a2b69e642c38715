"""Models saved by ``omnizoo.save_pretrained``, and the cards that travel with weights files.

A saved folder holds ``model.safetensors`` and ``card.json``::

    {"format": "omnizoo.pretrained", "format_version": 1, "omnizoo_version": "0.1.0",
     "source": "timm", "architecture": "resnet18", "num_classes": 3, "labels": [...],
     "data_config": {...},                       # for people and other tools to read
     "card": {...},                              # the fine-tune's ModelCard (labels, DataConfig)
     "base": {...},                              # the ModelCard its architecture is built from
     "build": {"num_classes": 3, "in_chans": null, "features_only": false,
               "out_indices": null, "kwargs": {}, "dtype": "float32"},
     "weights": {"file": "model.safetensors", "sha256": "...", "size": 46830571},
     "lineage": {"base_weights": "timm:resnet18.a1_in1k", "base_sha256": "...", ...}}

``create_model(folder)`` (or ``"local:folder"``) rebuilds the base architecture with the saved
head size, loads the weights strictly (after checking their sha256 against ``card.json``) and
attaches the saved card, so labels and preprocessing come back with the model. The same card
is in the safetensors metadata (``omnizoo.card``), so ``create_model(arch,
checkpoint_path=".../model.safetensors")`` brings the labels too, and in an exported ``.onnx``
(``omnizoo.card_json``): :func:`read_card` reads any of the three.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import CheckpointError, ConfigurationError, HashMismatchError
from .card import ModelCard
from .names import local_location

__all__ = [
    "CARD_FILE",
    "FORMAT",
    "FORMAT_VERSION",
    "ONNX_CARD_KEY",
    "SAFETENSORS_CARD_KEY",
    "WEIGHTS_FILE",
    "Saved",
    "checkpoint_card",
    "local_folder",
    "read_card",
    "read_saved",
    "safetensors_metadata",
]

CARD_FILE = "card.json"
WEIGHTS_FILE = "model.safetensors"
FORMAT = "omnizoo.pretrained"
FORMAT_VERSION = 1
#: The key of the card in a saved safetensors file's metadata, and in an exported .onnx's.
SAFETENSORS_CARD_KEY = "omnizoo.card"
ONNX_CARD_KEY = "omnizoo.card_json"
_MAX_HEADER = 100_000_000


@dataclass(frozen=True)
class Saved:
    """What a saved folder's ``card.json`` says (see the module docstring)."""

    folder: Path
    card: ModelCard
    base: ModelCard
    build: dict[str, Any] = field(default_factory=dict)
    weights: dict[str, Any] = field(default_factory=dict)
    lineage: dict[str, Any] = field(default_factory=dict)
    version: str = ""

    @property
    def weights_path(self) -> Path:
        return self.folder / str(self.weights.get("file") or WEIGHTS_FILE)


def local_folder(name: Any) -> Path | None:
    """The saved folder a ``create_model``/``get_card`` argument means, or None: a
    ``pathlib.Path``, a ``"local:<folder>"`` name, or a string naming an existing folder that
    holds a ``card.json`` (a registry name never contains a path separator, so ``"runs/ft"``
    is a folder; a bare ``"resnet50"`` is a folder only if ``./resnet50/card.json`` exists)."""
    if isinstance(name, os.PathLike):
        return Path(name).expanduser()
    if not isinstance(name, str):
        return None
    location = local_location(name)
    if location is not None:
        return Path(location).expanduser()
    text = name.strip()
    if (os.sep in text or text.startswith((".", "~"))) and ":" not in text.split(os.sep, 1)[0]:
        path = Path(text).expanduser()
        if path.is_dir() or path.suffix == "":
            return path
    path = Path(text).expanduser()
    if text and (path / CARD_FILE).is_file():
        return path
    return None


def _card(data: Any, where: str) -> ModelCard:
    if not isinstance(data, dict):
        raise ConfigurationError(f"{where}: expected a model card (a JSON object)")
    try:
        return ModelCard.from_dict(data)
    except (TypeError, ValueError, KeyError) as exc:
        raise ConfigurationError(f"{where}: not a valid model card ({exc})") from exc


def read_saved(folder: str | os.PathLike[str]) -> Saved:
    """Read a folder written by ``save_pretrained`` (raises
    :class:`~omnizoo.errors.ConfigurationError` naming what is wrong)."""
    root = Path(folder).expanduser()
    path = root / CARD_FILE
    if not path.is_file():
        what = "no such folder" if not root.exists() else f"no {CARD_FILE} in it"
        raise ConfigurationError(
            f"{root}: {what}; a folder written by omnizoo.save_pretrained(model, folder) "
            f"holds {CARD_FILE} and {WEIGHTS_FILE}"
        )
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ConfigurationError(f"cannot read {path}: {exc}") from exc
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise ConfigurationError(f"{path} is not an omnizoo card (format {FORMAT!r})")
    version = doc.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ConfigurationError(
            f"{path}: format version {version!r}; this omnizoo reads up to {FORMAT_VERSION} "
            "(upgrade omnizoo)"
        )
    build = doc.get("build") or {}
    weights = doc.get("weights") or {}
    if not isinstance(build, dict) or not isinstance(weights, dict):
        raise ConfigurationError(f"{path}: 'build' and 'weights' must be JSON objects")
    return Saved(
        folder=root,
        card=_card(doc.get("card"), f"{path} (card)"),
        base=_card(doc.get("base"), f"{path} (base)"),
        build=build,
        weights=weights,
        lineage=dict(doc.get("lineage") or {}),
        version=str(doc.get("omnizoo_version") or ""),
    )


def check_weights(saved: Saved) -> Path:
    """The saved weights file, after checking its size and sha256 against ``card.json``."""
    from ..weights.hashing import hash_file

    path = saved.weights_path
    if not path.is_file():
        raise CheckpointError(f"{saved.folder}: the weights file {path.name} is missing")
    expected = saved.weights.get("sha256")
    if expected:
        actual, size = hash_file(path)
        if actual != expected:
            raise HashMismatchError(
                f"{path}: sha256 {actual} ({size} bytes), but {CARD_FILE} records {expected}: "
                "the weights were changed or damaged after they were saved"
            )
    return path


def safetensors_metadata(path: str | os.PathLike[str]) -> dict[str, str]:
    """The ``__metadata__`` of a safetensors file (its header only is read); {} for any
    other file."""
    try:
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                return {}
            n = int.from_bytes(head, "little")
            if not 2 <= n < _MAX_HEADER:
                return {}
            header = json.loads(f.read(n))
    except (OSError, ValueError, UnicodeDecodeError):
        return {}
    meta = header.get("__metadata__") if isinstance(header, dict) else None
    if not isinstance(meta, dict):
        return {}
    return {str(k): str(v) for k, v in meta.items()}


def checkpoint_card(path: str | os.PathLike[str]) -> ModelCard | None:
    """The card a weights file written by ``save_pretrained`` carries, or None."""
    raw = safetensors_metadata(path).get(SAFETENSORS_CARD_KEY)
    if not raw:
        return None
    try:
        return _card(json.loads(raw), f"{path} (metadata)")
    except (ValueError, ConfigurationError):
        return None


def read_card(path: str | os.PathLike[str]) -> ModelCard:
    """The card saved with a model: a ``save_pretrained`` folder (or its ``card.json``), a
    ``model.safetensors`` it wrote, or an ``.onnx`` file written by ``export_onnx`` (its
    metadata; files from before ``omnizoo.card_json`` existed give a card rebuilt from the
    other ``omnizoo.*`` keys).

    An ONNX card's ``extra["onnx"]`` says how the file's input differs from the card's
    DataConfig (``preprocessing_folded``: uint8 images in, normalisation inside the graph).
    """
    p = Path(path).expanduser()
    if p.is_dir() or p.name == CARD_FILE:
        return read_saved(p if p.is_dir() else p.parent).card
    if p.suffix.lower() == ".onnx":
        return _onnx_card(p)
    card = checkpoint_card(p)
    if card is None:
        raise ConfigurationError(
            f"{p} carries no omnizoo card (expected a save_pretrained folder, its "
            "model.safetensors, or an .onnx file from export_onnx)"
        )
    return card


def _onnx_card(path: Path) -> ModelCard:
    import dataclasses

    meta = _onnx_metadata(path)
    raw = meta.get(ONNX_CARD_KEY)
    if raw:
        try:
            card = _card(json.loads(raw), f"{path} ({ONNX_CARD_KEY})")
        except ValueError as exc:
            raise ConfigurationError(f"{path}: {ONNX_CARD_KEY} is not JSON ({exc})") from exc
    else:
        card = _legacy_onnx_card(path, meta)
    extra = dict(card.extra)
    extra["onnx"] = {
        "path": str(path),
        "preprocessing_folded": meta.get("omnizoo.preprocessing_folded") == "1",
        "exporter": meta.get("omnizoo.exporter"),
        "weights": meta.get("omnizoo.weights"),
    }
    return dataclasses.replace(card, extra=extra)


def _onnx_metadata(path: Path) -> dict[str, str]:
    if not path.is_file():
        raise ConfigurationError(f"{path}: no such file")
    try:
        import onnx
    except ImportError as exc:
        from ..errors import DependencyError, pip_install

        raise DependencyError(f"reading {path} needs onnx: {pip_install('onnx')}") from exc
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf's DecodeError and friends
        raise ConfigurationError(f"{path} is not a readable ONNX file ({exc})") from exc
    return {p.key: p.value for p in proto.metadata_props}


def _legacy_onnx_card(path: Path, meta: dict[str, str]) -> ModelCard:
    """A card from the ``omnizoo.*`` keys every export has written."""
    from ..data.config import DataConfig
    from .names import parse_name, split_body

    if "omnizoo.data_config" not in meta:
        raise ConfigurationError(f"{path} was not exported by omnizoo (no omnizoo.* metadata)")
    name = meta.get("omnizoo.card", "") or "onnx:exported"
    try:
        parsed = parse_name(name)
        source, (arch, tag) = parsed.source or "onnx", split_body(parsed.body)[-1]
    except Exception:
        source, arch, tag = "onnx", path.stem, None
    categories = meta.get("omnizoo.categories")
    return ModelCard(
        source=source,
        arch=arch,
        tag=tag,
        num_classes=int(meta.get("omnizoo.num_classes") or 1000),
        label_set=meta.get("omnizoo.label_set") or None,
        categories=tuple(json.loads(categories)) if categories else None,
        label_offset=int(meta.get("omnizoo.label_offset") or 0),
        data=DataConfig.from_dict(json.loads(meta["omnizoo.data_config"])),
        output=meta.get("omnizoo.output") or "logits",
        notes=(f"card rebuilt from the metadata of {path.name}",),
    )
