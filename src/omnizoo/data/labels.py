"""Class names for a model's outputs, from what the source libraries declare.

Label sets are data the installed libraries already ship; omnizoo copies none by hand:

* ``imagenet-1k``: torchvision's ``torchvision.models._meta._IMAGENET_CATEGORIES`` (short
  names: "tabby", "tiger cat", "espresso"), falling back to timm's ``ImageNetInfo``;
* ``imagenet-12k`` / ``-21k`` / ``-22k`` / ``-21k-goog`` / ``-21k-miil`` / ``-22k-ms``: timm's
  ``ImageNetInfo(subset).label_descriptions()``;
* other tasks (COCO, VOC, Kinetics...), fine-tunes with ``labels=``: the card's own
  ``categories``;
* a head of another size with no names given (``label_set="generic"``), or outputs nobody
  named: ``class_0 .. class_{n-1}``. The card never keeps claiming the old label set:
  ``create_model(..., num_classes=3)``, a checkpoint with a 3-way head and a head replaced by
  hand all give 3 generic names (:mod:`omnizoo.registry.derive`).

:func:`read_labels_file` reads a labels file (one name per line, or JSON), as
``omnizoo predict --labels FILE`` takes it.

The first call writes the list as JSON under ``OMNIZOO_HOME/index/labels/``; later calls read
that file and import neither torch nor torchvision nor timm.

A card with ``label_offset=1`` (1001-way TF/Cadene heads) gets ``"background"`` at index 0, so
``labels[i]`` always names output ``i``.
"""

from __future__ import annotations

import json
import os
import re
import threading
from pathlib import Path
from typing import Any

from ..errors import ConfigurationError
from ..registry.card import GENERIC_LABELS

__all__ = [
    "BACKGROUND",
    "generic_labels",
    "get_labels",
    "label_set_for",
    "load_label_set",
    "read_labels_file",
]

BACKGROUND = "background"

# num_classes -> label set, as timm infers it (timm.data.imagenet_info._NUM_CLASSES_TO_SUBSET).
_BY_NUM_CLASSES = {
    1000: "imagenet-1k",
    11221: "imagenet-21k-miil",
    11821: "imagenet-12k",
    21841: "imagenet-22k",
    21842: "imagenet-22k-ms",
    21843: "imagenet-21k-goog",
}
_TIMM_SUBSETS = {
    "imagenet1k",
    "imagenet12k",
    "imagenet22k",
    "imagenet21k",
    "imagenet21kgoog",
    "imagenet21kmiil",
    "imagenet22kms",
}
_lock = threading.Lock()
_memory: dict[str, list[str]] = {}


def _normalise_set(name: str) -> str:
    key = re.sub(r"[-_\s]", "", name.lower())
    if key in ("imagenet", "in1k", "imagenet1000"):
        key = "imagenet1k"
    return key


def get_labels(name_or_model: Any) -> list[str]:
    """Names of a model's outputs: ``labels[i]`` names logit ``i``.

    Accepts a model name, a ModelCard, a model from ``create_model`` (``.omnizoo_card``), or a
    module with a ``num_classes`` attribute (timm models; ImageNet sets inferred from it).
    Outputs with no known names get their index as a string.
    """
    from .resolve import card_of

    card = card_of(name_or_model)
    if card is None:
        num_classes = getattr(name_or_model, "num_classes", None)
        if not isinstance(num_classes, int):
            raise ConfigurationError(
                f"cannot tell the labels of a {type(name_or_model).__name__}: it has no omnizoo "
                "card and no num_classes; pass labels= explicitly"
            )
        label_set = _BY_NUM_CLASSES.get(num_classes)
        if label_set is None:
            return generic_labels(num_classes)
        return load_label_set(label_set)
    return _labels_for_card(card)


def generic_labels(n: int) -> list[str]:
    """Names for outputs nobody named.

    >>> generic_labels(3)
    ['class_0', 'class_1', 'class_2']
    """
    return [f"class_{i}" for i in range(int(n))]


def read_labels_file(path: str | os.PathLike[str], num_classes: int | None = None) -> list[str]:
    """The class names in a labels file, ``labels[i]`` naming output ``i``:

    * ``.json``: a list of names, or an object mapping indices to names (Hugging Face's
      ``id2label``; every index from 0 to n-1 must be there), or an object with such a
      ``"labels"`` list or ``"id2label"`` object;
    * anything else: UTF-8 text, one name per line (surrounding whitespace and blank lines
      ignored).

    ``num_classes``: the number the model has; another count raises
    :class:`~omnizoo.errors.ConfigurationError`, as does an empty or malformed file.

    >>> import tempfile, pathlib
    >>> f = pathlib.Path(tempfile.mkdtemp(), "labels.txt")
    >>> _ = f.write_text("cat\\ndog\\n\\n")
    >>> read_labels_file(f, num_classes=2)
    ['cat', 'dog']
    """
    where = os.fspath(path)
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigurationError(f"cannot read the labels file {where}: {exc}") from exc
    if where.endswith(".json"):
        try:
            data: Any = json.loads(text)
        except ValueError as exc:
            raise ConfigurationError(f"{where} is not valid JSON: {exc}") from exc
        labels = _json_labels(data, where)
    else:
        labels = [line.strip() for line in text.splitlines() if line.strip()]
    if not labels:
        raise ConfigurationError(f"the labels file {where} holds no names")
    if num_classes is not None and len(labels) != int(num_classes):
        raise ConfigurationError(
            f"the labels file {where} has {len(labels)} names but the model has "
            f"{num_classes} outputs"
        )
    return labels


def _json_labels(data: Any, where: str) -> list[str]:
    if isinstance(data, dict):
        for key in ("labels", "id2label"):
            if key in data:
                return _json_labels(data[key], where)
        try:
            by_index = {int(k): v for k, v in data.items()}
        except (TypeError, ValueError):
            raise ConfigurationError(
                f"{where}: a JSON object of labels maps indices (0, 1, ...) to names"
            ) from None
        if sorted(by_index) != list(range(len(by_index))):
            raise ConfigurationError(f"{where}: the indices are not 0 .. {len(by_index) - 1}")
        data = [by_index[i] for i in range(len(by_index))]
    if not isinstance(data, list) or not all(isinstance(x, (str, int, float)) for x in data):
        raise ConfigurationError(f"{where}: expected a JSON list of names or an index->name object")
    return [str(x) for x in data]


def label_set_for(card: Any) -> str | None:
    """The named label set a card uses (``card.label_set``, else inferred from num_classes;
    ``"generic"`` for classes without names)."""
    if card.label_set:
        return str(card.label_set)
    if card.categories:
        return None
    if card.task not in ("classification", "quantized_classification"):
        return None
    return _BY_NUM_CLASSES.get(int(card.num_classes) - int(card.label_offset))


def _labels_for_card(card: Any) -> list[str]:
    offset = int(card.label_offset or 0)
    n = int(card.num_classes)
    if card.categories:
        labels = [str(c) for c in card.categories]
        if offset and len(labels) == n - offset:
            labels = [BACKGROUND, *labels]
        return labels
    label_set = label_set_for(card)
    if label_set is None or label_set == GENERIC_LABELS:
        return generic_labels(n)
    labels = load_label_set(label_set)
    if offset:
        labels = [BACKGROUND, *labels]
    if len(labels) != n:
        raise ConfigurationError(
            f"{card.name}: label set {label_set!r} has {len(labels)} names"
            + (" (with background)" if offset else "")
            + f" but the model has {n} outputs"
        )
    return labels


def load_label_set(name: str) -> list[str]:
    """A named label set (``"imagenet-1k"``, ``"imagenet-21k"``, ...), cached on disk as JSON."""
    key = _normalise_set(name)
    if key not in _TIMM_SUBSETS:
        raise ConfigurationError(
            f"unknown label set {name!r}; known: imagenet-1k, imagenet-12k, imagenet-21k, "
            "imagenet-22k, imagenet-21k-goog, imagenet-21k-miil, imagenet-22k-ms"
        )
    with _lock:
        cached = _memory.get(key)
    if cached is not None:
        return list(cached)
    path = _cache_path(key)
    labels = _read(path)
    if labels is None:
        labels, origin = _from_libraries(key)
        _write(path, labels, origin)
    with _lock:
        _memory[key] = labels
    return list(labels)


def _cache_path(key: str) -> Path:
    from ..settings import get_settings

    return get_settings().index_dir / "labels" / f"{key}.json"


def _read(path: Path) -> list[str] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    labels = data.get("labels") if isinstance(data, dict) else None
    if not isinstance(labels, list) or not labels or not all(isinstance(s, str) for s in labels):
        return None  # unreadable or damaged: rebuild from the libraries
    return labels


def _write(path: Path, labels: list[str], origin: str) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        tmp.write_text(json.dumps({"origin": origin, "labels": labels}, indent=0), encoding="utf-8")
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only home only costs the import next time


def _from_libraries(key: str) -> tuple[list[str], str]:
    if key == "imagenet1k":
        try:
            import torchvision
            from torchvision.models._meta import _IMAGENET_CATEGORIES

            origin = (
                f"torchvision {torchvision.__version__}: "
                "torchvision.models._meta._IMAGENET_CATEGORIES"
            )
            return [str(s) for s in _IMAGENET_CATEGORIES], origin
        except ImportError:
            pass
    try:
        import timm
        from timm.data import ImageNetInfo
    except ImportError as exc:
        from ..errors import DependencyError, pip_install

        raise DependencyError(
            f"the {key} label names come from timm, which is not installed: {pip_install('timm')}"
        ) from exc
    info = ImageNetInfo(key)
    origin = f"timm {timm.__version__}: timm.data.ImageNetInfo({key!r}).label_descriptions()"
    return [str(s) for s in info.label_descriptions()], origin
