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

Every one of them may come from someone else (a downloaded folder, a shared checkpoint), so
each is read as hostile input: ``card.json`` through :func:`omnizoo.weights.fsafe.read_input`
(a regular file of at most :data:`~omnizoo.schema.MAX_METADATA_BYTES`), every field checked by
:mod:`omnizoo.schema` (:mod:`.card_schema` for the cards) before anything is built, the weights
file a plain name inside the folder, and a violation one
:class:`~omnizoo.errors.MetadataError` naming the file and the field. Unknown keys are ignored.
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import CheckpointError, ConfigurationError, HashMismatchError, MetadataError
from ..schema import MAX_CLASSES, MAX_METADATA_BYTES, Fields, parse_json
from ..values.card import ModelCard
from ..values.card_fields import card_from_fields, sha256_field
from ..values.data_config import MAX_CHANNELS, DataConfig
from ..values.names import local_location
from .onnx_metadata import ONNX_CARD_KEY, read_onnx

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
_MAX_HEADER = 100_000_000
#: The dtypes a saved model may be rebuilt in (what ``save_pretrained`` records).
_DTYPES = (
    "float32",
    "float16",
    "bfloat16",
    "float64",
    "float8_e4m3fn",
    "float8_e5m2",
    "float8_e4m3fnuz",
    "float8_e5m2fnuz",
)
#: ``build.kwargs`` go to the upstream builder: bounded like every size a file may claim.
_KWARGS_DEPTH = 8


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
        """The weights file (its name was checked to be a plain file name in the folder)."""
        return self.folder / str(self.weights.get("file") or WEIGHTS_FILE)

    @property
    def card_path(self) -> Path:
        return self.folder / CARD_FILE


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


def read_saved(folder: str | os.PathLike[str]) -> Saved:
    """Read a folder written by ``save_pretrained``: a missing ``card.json`` is a
    :class:`~omnizoo.errors.ConfigurationError`, anything wrong inside it one
    :class:`~omnizoo.errors.MetadataError` naming the field (nothing is built before every
    field passed)."""
    from ..weights import fsafe

    root = Path(folder).expanduser()
    path = root / CARD_FILE
    missing = ConfigurationError(
        f"{root}: {'no such folder' if not root.exists() else f'no {CARD_FILE} in it'}; a "
        f"folder written by omnizoo.save_pretrained(model, folder) holds {CARD_FILE} and "
        f"{WEIGHTS_FILE}"
    )
    if not os.path.lexists(path):
        raise missing
    try:
        raw = fsafe.read_input(path, MAX_METADATA_BYTES)
    except FileNotFoundError:  # a dangling symlink
        raise missing from None
    doc = Fields(parse_json(raw, str(path)), path)
    if doc.optional_text("format", max_len=256) != FORMAT:
        raise doc.error("format", f"not {FORMAT!r}: this is not an omnizoo card")
    version = doc.integer("format_version", lo=1)
    if version > FORMAT_VERSION:
        raise doc.error(
            "format_version",
            f"{version}; this omnizoo reads up to {FORMAT_VERSION} (upgrade omnizoo)",
        )
    card = card_from_fields(doc.object("card"))
    base = card_from_fields(doc.object("base"))
    build = _build(doc.optional_object("build") or Fields({}, path, "build"))
    if build["num_classes"] is not None and build["num_classes"] != card.num_classes:
        raise doc.error(
            "build.num_classes",
            f"{build['num_classes']}, but the card has {card.num_classes} classes",
        )
    _informational(doc)
    lineage = doc.optional_object("lineage")
    return Saved(
        folder=root,
        card=card,
        base=base,
        build=build,
        weights=_weights(doc.optional_object("weights") or Fields({}, path, "weights"), root),
        lineage={} if lineage is None else dict(lineage.data),
        version=doc.optional_text("omnizoo_version", max_len=256) or "",
    )


def _build(f: Fields) -> dict[str, Any]:
    """How the architecture is rebuilt: every size bounded before anything is allocated."""
    out_indices: Any = None
    if "out_indices" in f and not isinstance(f.data["out_indices"], list):
        out_indices = f.integer("out_indices", lo=-64, hi=64)
    else:
        out_indices = f.optional_integer_list("out_indices", lo=-64, hi=64)
    kwargs = f.optional_object("kwargs")
    if kwargs is not None:
        _check_kwargs(kwargs.data, f, "kwargs", 0)
    dtype = f.data.get("dtype")
    return {
        "num_classes": f.optional_integer("num_classes", lo=0, hi=MAX_CLASSES),
        "in_chans": f.optional_integer("in_chans", lo=1, hi=MAX_CHANNELS),
        "features_only": bool(f.optional_flag("features_only")),
        "out_indices": out_indices,
        "kwargs": {} if kwargs is None else dict(kwargs.data),
        "dtype": None if dtype is None else f.choice("dtype", _DTYPES),
    }


def _check_kwargs(value: Any, f: Fields, where: str, depth: int) -> None:
    """JSON values only, nested at most a few levels, every number within the bounds a size
    may have (``img_size=60000`` would allocate like a 60000x60000 input)."""
    if depth > _KWARGS_DEPTH:
        raise f.error(where, f"nested deeper than {_KWARGS_DEPTH} levels")
    if isinstance(value, dict):
        for key, item in value.items():
            _check_kwargs(item, f, f"{where}.{key}", depth + 1)
    elif isinstance(value, list):
        if len(value) > 4096:
            raise f.error(where, "more than 4096 items")
        for i, item in enumerate(value):
            _check_kwargs(item, f, f"{where}[{i}]", depth + 1)
    elif isinstance(value, str):
        if len(value) > 4096:
            raise f.error(where, "longer than 4096 characters")
    elif (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and not -MAX_CLASSES <= value <= MAX_CLASSES  # NaN fails this too
    ):
        raise f.error(where, f"{value} is out of range [{-MAX_CLASSES}, {MAX_CLASSES}]")


def _weights(f: Fields, folder: Path) -> dict[str, Any]:
    """The weights entry: a plain file name in the folder, its sha256 and size if recorded."""
    name = f.file_inside("file", folder).name if "file" in f else WEIGHTS_FILE
    return {
        "file": name,
        "sha256": sha256_field(f, "sha256"),
        "size": f.optional_integer("size", lo=0),
        "format": f.optional_text("format", max_len=64),
    }


def _informational(doc: Fields) -> None:
    """The top-level copies written for people and other tools: typed like the rest."""
    doc.optional_text("source", max_len=256)
    doc.optional_text("architecture", max_len=256)
    doc.optional_integer("num_classes", lo=0, hi=MAX_CLASSES)
    doc.optional_str_list("labels", max_items=MAX_CLASSES)
    data = doc.optional_object("data_config")
    if data is not None:
        DataConfig.from_fields(data)


def check_weights(saved: Saved) -> Path:
    """The saved weights file to load, after checking it against ``card.json``.

    It must be a regular file in the folder. A symlink leading out of the folder is read
    only when ``card.json`` records a sha256 and the file it leads to matches it (the path
    returned is then that file's, so the bytes hashed are the bytes loaded); a recorded
    sha256 is checked for every file.
    """
    from ..weights import fsafe

    path = saved.weights_path
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        raise CheckpointError(f"{saved.folder}: the weights file {path.name} is missing") from None
    expected = saved.weights.get("sha256")
    if stat.S_ISLNK(st.st_mode):
        target = path.resolve()
        if not target.is_relative_to(saved.folder.resolve()) and not expected:
            raise MetadataError(
                str(saved.card_path),
                "weights.file",
                f"{path.name} is a symbolic link to {target}, outside {saved.folder}, and "
                f"{CARD_FILE} records no sha256 to check it by; copy the file into the folder "
                "or record its sha256",
            )
        path = target
    try:
        if expected:
            actual, size = fsafe.hash_regular(path)
        else:
            os.close(fsafe.open_regular(path))
    except FileNotFoundError:
        raise CheckpointError(f"{saved.folder}: the weights file {path.name} is missing") from None
    except OSError as exc:  # a FIFO, a device, a directory
        raise MetadataError(
            str(saved.card_path),
            "weights.file",
            f"{path} is not a regular file ({exc.strerror or exc})",
        ) from None
    if expected and actual != expected:
        raise HashMismatchError(
            f"{path}: sha256 {actual} ({size} bytes), but {CARD_FILE} records {expected}: "
            "the weights were changed or damaged after they were saved"
        )
    return path


def safetensors_metadata(path: str | os.PathLike[str]) -> dict[str, str]:
    """The ``__metadata__`` of a safetensors file (its header only is read); {} for any
    other file. The file is opened as a regular file (a FIFO never blocks here)."""
    from ..weights import fsafe

    try:
        fd = fsafe.open_regular(path, follow=True)
    except OSError:
        return {}
    try:
        with os.fdopen(fd, "rb", closefd=False) as f:
            head = f.read(8)
            if len(head) < 8:
                return {}
            n = int.from_bytes(head, "little")
            if not 2 <= n < _MAX_HEADER:
                return {}
            header = json.loads(f.read(n))
    except (OSError, ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        return {}
    finally:
        os.close(fd)
    meta = header.get("__metadata__") if isinstance(header, dict) else None
    if not isinstance(meta, dict):
        return {}
    return {str(k): str(v) for k, v in meta.items()}


def checkpoint_card(path: str | os.PathLike[str]) -> ModelCard | None:
    """The card a weights file written by ``save_pretrained`` carries, or None; a card that
    is there but fails the schema is a :class:`~omnizoo.errors.MetadataError`."""
    raw = safetensors_metadata(path).get(SAFETENSORS_CARD_KEY)
    if not raw:
        return None
    where = os.fspath(path)
    doc = parse_json(raw, where, SAFETENSORS_CARD_KEY)
    return card_from_fields(Fields(doc, where, SAFETENSORS_CARD_KEY))


def read_card(path: str | os.PathLike[str]) -> ModelCard:
    """The card saved with a model: a ``save_pretrained`` folder (or its ``card.json``), a
    ``model.safetensors`` it wrote, or an ``.onnx`` file written by ``export_onnx`` (its
    metadata, read by :func:`omnizoo.saved.onnx_metadata.read_onnx`; files from before
    ``omnizoo.card_json`` existed give a card rebuilt from the other ``omnizoo.*`` keys).

    An ONNX card's ``extra["onnx"]`` says how the file's input differs from the card's
    DataConfig (``preprocessing_folded``: uint8 images in, normalisation inside the graph).

    >>> from omnizoo import read_card
    >>> read_card("runs/ft").lineage                                  # doctest: +SKIP
    {'from': 'timm:resnet18.a1_in1k'}

    Raises:
        ConfigurationError: the path holds no omnizoo card (no ``card.json``, an ``.onnx`` not
            exported by omnizoo, a safetensors file without one).
        MetadataError: a card that is there but fails the schema (the field is named).
    """
    p = Path(path).expanduser()
    if p.is_dir() or p.name == CARD_FILE:
        return read_saved(p if p.is_dir() else p.parent).card
    if p.suffix.lower() == ".onnx":
        card = read_onnx(p).card
        if card is None:
            raise ConfigurationError(f"{p} was not exported by omnizoo (no omnizoo.* metadata)")
        return card
    card = checkpoint_card(p)
    if card is None:
        raise ConfigurationError(
            f"{p} carries no omnizoo card (expected a save_pretrained folder, its "
            "model.safetensors, or an .onnx file from export_onnx)"
        )
    return card
