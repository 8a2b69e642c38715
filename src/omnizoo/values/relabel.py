"""Relabelling a card: the one rule for naming a head's classes and for a card that no longer
describes published weights.

Every layer that changes what a model's outputs are (``create_model(num_classes=, labels=)``,
``reset_classifier``, ``save_pretrained``, a head replaced by hand, the Predictor's fallback
names) goes through these: unnamed outputs are ``class_0 .. class_{n-1}``, a label list must
have one name per output, and a card whose head or weights changed loses the published
metrics, tag and origin of the weights it no longer has.

>>> generic_labels(3)
['class_0', 'class_1', 'class_2']
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from ..errors import ConfigurationError
from .card import GENERIC_LABELS, ModelCard, WeightsFile
from .lineage import Start, lineage_of, summary

__all__ = [
    "check_label_count",
    "generic_label",
    "generic_labels",
    "strip_claims",
    "with_labels",
    "with_saved_file",
]

_METRIC_FIELDS = frozenset(("top1", "top5", "metrics_dataset", "gflops"))


def generic_label(index: int) -> str:
    """The name of output ``index`` when nobody named it.

    >>> generic_label(7)
    'class_7'
    """
    return f"class_{int(index)}"


def generic_labels(n: int) -> list[str]:
    """Names for ``n`` outputs nobody named.

    >>> generic_labels(3)
    ['class_0', 'class_1', 'class_2']
    """
    return [generic_label(i) for i in range(int(n))]


def check_label_count(
    given: int | Sequence[str] | None,
    outputs: int,
    what: str = "classes",
    *,
    source: str | None = None,
) -> None:
    """Refuse labels whose count does not match the model's output size. ``given`` is a
    count or the label list itself (None: nothing to check; a bare string is refused, it is
    not a list of names); ``source`` is the label file they came from, named in the message.

    >>> check_label_count(3, 3)
    >>> check_label_count(["cat", "dog"], 1000)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    omnizoo.errors.ConfigurationError: 2 labels given, but the model outputs 1000 classes: ...
    """
    if given is None:
        return
    if isinstance(given, str):
        raise ConfigurationError(
            f"labels: a string ({given[:40]!r}) for a model with {outputs} outputs; give a "
            "list of one name per class"
        )
    count = given if isinstance(given, int) else len(given)
    if int(count) != int(outputs):
        where = f"{source}: " if source else ""
        raise ConfigurationError(
            f"{where}{count} labels given, but the model outputs {outputs} {what}: give one "
            "label per output, in order"
        )


def strip_claims(
    card: ModelCard, weights: WeightsFile | None, lineage: dict[str, Any]
) -> ModelCard:
    """``card`` as a model that is not the published one: no tag, no published metrics, no
    upstream origin; ``weights`` and ``lineage`` (with its summary) as given."""
    lineage["summary"] = summary(lineage)
    drop_gflops = bool(lineage.get("new_head") is not None or lineage.get("in_chans"))
    drop_gflops = drop_gflops or bool(lineage.get("features_only"))
    dropped = _METRIC_FIELDS if drop_gflops else _METRIC_FIELDS - {"gflops"}
    return dataclasses.replace(
        card,
        tag=None,
        is_default=False,
        weights=weights,
        top1=None,
        top5=None,
        metrics_dataset=None,
        extra_metrics=(),
        gflops=None if drop_gflops else card.gflops,
        provenance=tuple(
            (k, v) for k, v in card.provenance if k not in dropped and "metric" not in k
        ),
        origin=None,
        lineage=lineage,
    )


def with_labels(
    card: ModelCard,
    num_classes: int,
    labels: Sequence[str] | None = None,
    *,
    why: str,
    new_head: bool = True,
) -> ModelCard:
    """``card`` for a head of ``num_classes`` outputs: named by ``labels``, or, without them,
    ``class_0 .. class_{n-1}`` (``label_set="generic"``); the metrics of the old head and its
    background offset go, and a note says what happened.

    ``new_head`` (the default: ``reset_classifier``) means the classifier was re-initialised:
    the card then also loses its weights file, its tag and its GFLOPs, and its lineage records
    ``new_head``. ``new_head=False`` only names the classes of the head the model has."""
    if labels is not None:
        categories: tuple[str, ...] | None = tuple(str(x) for x in labels)
        label_set = None
        note = f"{why}: {num_classes} classes, labels given"
    else:
        categories = None
        label_set = GENERIC_LABELS if num_classes else None
        note = (
            f"{why}: {num_classes} classes without names (class_0 .. class_{num_classes - 1}); "
            "pass labels=[...] to name them"
            if num_classes
            else f"{why}: no classifier (num_classes=0)"
        )
    out = dataclasses.replace(
        card,
        num_classes=num_classes,
        label_set=label_set,
        categories=categories,
        label_offset=0,
        top1=None,
        top5=None,
        metrics_dataset=None,
        extra_metrics=(),
        notes=(*card.notes, note),
    )
    if not new_head:
        return out
    lineage = lineage_of(card)
    lineage["new_head"] = int(num_classes)
    return dataclasses.replace(strip_claims(out, None, lineage), num_params=None)


def with_saved_file(
    card: ModelCard, filename: str, sha256: str | None, size: int | None
) -> ModelCard:
    """``card`` (a saved model's, from ``registry.derive.saved_card``) with the folder's own
    weights file."""
    return dataclasses.replace(card, weights=Start.saved(card, filename, sha256, size).file)
