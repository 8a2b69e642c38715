"""The card a model carries, kept true to the model: when its head no longer has the card's
number of outputs (replaced by hand, or loaded from a checkpoint with another head), the card
no longer claims the old label set.

>>> import torch
>>> from omnizoo.registry.card import ModelCard
>>> model = torch.nn.Sequential()
>>> model.add_module("fc", torch.nn.Linear(8, 3))
>>> card = ModelCard(source="torchvision", arch="x", num_classes=1000, label_set="imagenet-1k",
...                  classifier=("fc",))
>>> head_size(model, card)
3
>>> fixed = current_card(model, card)
>>> fixed.num_classes, fixed.label_set
(3, 'generic')
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from ..loading.heads import classifier_width
from .card import GENERIC_LABELS, ModelCard

__all__ = ["CLASSIFICATION_TASKS", "current_card", "head_size", "with_labels"]

CLASSIFICATION_TASKS = ("classification", "quantized_classification")


def head_size(model: Any, card: ModelCard) -> int | None:
    """The number of outputs of the model's classifier (the last of ``card.classifier`` that
    the model has; 0 for an ``Identity``), or None when it cannot be told."""
    return classifier_width(model, card.classifier)


def with_labels(
    card: ModelCard,
    num_classes: int,
    labels: Sequence[str] | None = None,
    *,
    why: str,
) -> ModelCard:
    """``card`` for a head of ``num_classes`` outputs: named by ``labels``, or, without them,
    ``class_0 .. class_{n-1}`` (``label_set="generic"``); the metrics of the old head and its
    background offset go, and a note says what happened."""
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
    return dataclasses.replace(
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


def current_card(model: Any, card: ModelCard) -> ModelCard:
    """``card``, or when the model's classifier no longer has ``card.num_classes`` outputs
    (a head replaced by hand), a card for the head it has, with unnamed classes."""
    if card.task not in CLASSIFICATION_TASKS:
        return card
    n = head_size(model, card)
    if n is None or n == card.num_classes:
        return card
    return with_labels(card, n, why="the classifier was replaced after the card was made")
